//! A test's log, kept in a file so that a failure can quote what happened to the notifications
//! it names: the functions run in the test's process, and their spans carry the notification id.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

/// The test's log: every `notify_*` event at `info` and up, others at `warn`, in a file of its
/// own under the system's temporary directory.
pub struct TestLog {
    path: PathBuf,
}

impl TestLog {
    pub fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join("notify-test-logs");
        std::fs::create_dir_all(&dir).expect("a directory for test logs");
        let path = dir.join(format!("{name}-{}.log", std::process::id()));
        let file = Arc::new(File::create(&path).expect("a test log file"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,notify_core=info,notify_aws=info")
            .with_ansi(false)
            .with_writer(file)
            .try_init();
        Self { path }
    }

    /// The last `n` lines that mention any of `needles`, for a failure's message.
    pub fn lines_about(&self, needles: &[&str], n: usize) -> String {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| needles.iter().any(|s| l.contains(s)))
            .collect();
        let start = lines.len().saturating_sub(n);
        format!(
            "{} of {} lines of {} about them:\n{}",
            lines.len() - start,
            lines.len(),
            self.path.display(),
            lines[start..].join("\n")
        )
    }
}
