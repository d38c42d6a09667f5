//! Metrics on AWS: CloudWatch Embedded Metric Format, JSON lines in the functions' logs that
//! CloudWatch turns into metrics (namespace `notify`), written after each invocation: no API
//! call, nothing at init. The names are the core's (`notify_core::services::metrics`), the same
//! as `notifyd`'s `/metrics`. The recorder is [`crate::emf::EmfRecorder`]: recording never
//! blocks the function's one thread and never drops a value.

use std::sync::OnceLock;

use crate::emf::EmfRecorder;

static RECORDER: OnceLock<Option<&'static EmfRecorder>> = OnceLock::new();

/// Installs the recorder for this function (its name is a dimension of every metric).
pub fn init(function: &'static str) {
    RECORDER.get_or_init(|| {
        let recorder: &'static EmfRecorder = Box::leak(Box::new(EmfRecorder::new(
            "notify",
            vec![("function".into(), function.into())],
        )));
        metrics::set_global_recorder(recorder)
            .map_err(|e| tracing::warn!(error = %e, "no metrics: another recorder is installed"))
            .ok()
            .map(|()| recorder)
    });
}

/// Writes what was counted since the last flush, as EMF documents.
pub fn flush_to(writer: impl std::io::Write) -> std::io::Result<()> {
    match RECORDER.get().copied().flatten() {
        Some(recorder) => recorder.flush(writer),
        None => Ok(()),
    }
}

/// After an invocation: to standard output, where Lambda's log stream takes it.
pub fn flush() {
    if let Err(e) = flush_to(std::io::stdout().lock()) {
        tracing::warn!(error = %e, "could not write the metrics");
    }
}
