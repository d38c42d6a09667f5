//! Metrics on AWS: CloudWatch Embedded Metric Format, JSON lines in the functions' logs that
//! CloudWatch turns into metrics (namespace `notify`), written after each invocation: no API
//! call, nothing at init. The names are the core's (`notify_core::services::metrics`), the same
//! as `notifyd`'s `/metrics`.

use std::sync::OnceLock;

use metrics_cloudwatch_embedded::{Builder, Collector};

static COLLECTOR: OnceLock<Option<&'static Collector>> = OnceLock::new();

/// Installs the recorder for this function (its name is a dimension of every metric).
pub fn init(function: &'static str) {
    COLLECTOR.get_or_init(|| {
        Builder::new()
            .cloudwatch_namespace("notify")
            .with_dimension("function", function)
            .init()
            .map_err(|e| tracing::warn!(error = %e, "no metrics: another recorder is installed"))
            .ok()
    });
}

/// Writes what was counted since the last flush, as one EMF document.
pub fn flush_to(writer: impl std::io::Write) -> std::io::Result<()> {
    match COLLECTOR.get().copied().flatten() {
        Some(collector) => collector.flush(writer),
        None => Ok(()),
    }
}

/// After an invocation: to standard output, where Lambda's log stream takes it.
pub fn flush() {
    if let Err(e) = flush_to(std::io::stdout().lock()) {
        tracing::warn!(error = %e, "could not write the metrics");
    }
}
