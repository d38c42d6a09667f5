//! Shared pieces of the benchmarks: a populated in-memory world, and the peak memory of this process.

use notify_core::domain::user::{ChannelPrefs, User};
use notify_core::domain::{EmailAddress, GroupId, UserId};
use notify_core::memory::MemoryStore;
use notify_core::ports::{GroupStore, UserStore};

/// The simulated AWS adapters live with the tests, which pin their calls to the real ones.
pub use notify_tests::sim;

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn member(i: usize) -> UserId {
    UserId::parse(&format!("u{i:08}")).unwrap()
}

/// A store with `n` users, all in group `everyone`.
pub async fn populated(n: usize) -> (MemoryStore, GroupId) {
    populated_in(MemoryStore::default(), n).await
}

/// `store` with `n` users, all in group `everyone`.
pub async fn populated_in(store: MemoryStore, n: usize) -> (MemoryStore, GroupId) {
    let group = with_users(&store, n).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let ids: Vec<UserId> = chunk.iter().map(|i| member(*i)).collect();
        store.add_members(&group, &ids).await.unwrap();
    }
    (store, group)
}

/// Puts users `0..n` in `store`, and an empty group `everyone`.
pub async fn with_users(store: &MemoryStore, n: usize) -> GroupId {
    let group = GroupId::parse("everyone").unwrap();
    store.put_group(&group, "Everyone").await.unwrap();
    for i in 0..n {
        let id = member(i);
        let email = EmailAddress::parse(&format!("{id}@example.com")).unwrap();
        store
            .put_user(&User {
                id,
                email: Some(email),
                phone: None,
                timezone: None,
                locale: None,
                channels: ChannelPrefs::default(),
            })
            .await
            .unwrap();
    }
    group
}

/// `n` with thousands separators, for reports.
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An SMTP server's raw capacity in emails per second: a plain client (Python's smtplib,
/// `tests/support/smtp_blast.py`) sending `messages` on `connections` connections, each
/// message the bytes of `message` (or a tiny one).
pub fn smtp_capacity(port: u16, messages: usize, connections: usize, message: Option<&str>) -> f64 {
    let file = message.map(|m| {
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), m.as_bytes()).expect("write the message");
        file
    });
    let mut blast = std::process::Command::new(notify_tests::python());
    blast
        .arg(notify_tests::repo_root().join("tests/support/smtp_blast.py"))
        .args([
            "--port",
            &port.to_string(),
            "--messages",
            &messages.to_string(),
            "--connections",
            &connections.to_string(),
        ]);
    if let Some(file) = &file {
        blast.arg("--message-file").arg(file.path());
    }
    let out = blast.output().expect("run smtp_blast.py");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .expect("a rate")
}

/// The tiny message `smtp_capacity` sends when given none.
pub const TINY_MESSAGE: &str =
    "From: bench@example.com\r\nTo: raw@example.com\r\nSubject: Bench\r\n\r\nHello\r\n";
