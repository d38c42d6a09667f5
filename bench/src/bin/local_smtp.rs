//! Local end to end: notifyd (release build) sends one notification to a group of N members
//! (default 100,000) through a real SMTP server on loopback (aiosmtpd), and prints emails per
//! second beside that server's raw capacity, measured in the same run by a plain SMTP client
//! (Python's smtplib) on as many connections as notifyd uses.
//!
//! ./scripts/test --no-run  (sets up .venv), then:
//! cargo build --release -p notifyd && NOTIFYD_BIN=target/release/notifyd cargo run --release -p notify-bench --bin local_smtp [-- N]

use std::time::{Duration, Instant};

use futures::StreamExt;
use notify_bench::{TINY_MESSAGE, smtp_capacity, thousands};
use notify_tests::{Notifyd, SmtpSink};
use serde_json::json;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N"))
        .unwrap_or(100_000);
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start_process(&[("NOTIFY_SMTP_URL", &smtp.url()), ("RUST_LOG", "warn")]).await;
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let d = &d;
            async move {
                assert_eq!(
                    d.put(
                        &format!("/v1/users/b{i:07}"),
                        json!({"email": format!("b{i:07}@example.com")})
                    )
                    .await
                    .status,
                    200
                )
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    d.put("/v1/groups/all", json!({"name": "All"})).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let ids: Vec<String> = chunk.iter().map(|i| format!("b{i:07}")).collect();
        assert_eq!(
            d.post("/v1/groups/all/members", json!({"add": ids}))
                .await
                .status,
            200
        );
    }
    println!(
        "set-up: {} users and memberships in {:.1?}",
        thousands(n as f64),
        t.elapsed()
    );

    let t = Instant::now();
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"group_id": "all"}, "content": {"subject": "Bench", "text": "Hello"}}),
        )
        .await;
    assert_eq!(a.status, 202);
    // Polled by counting lines, not parsing them: the harness shares the cores it measures.
    while smtp.count() < n {
        assert!(
            t.elapsed() < Duration::from_secs(3600),
            "emails stopped arriving at {}",
            smtp.count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ours = t.elapsed();
    let per_recipient = smtp.per_recipient();
    assert_eq!(per_recipient.len(), n, "every member got an email");
    assert!(per_recipient.values().all(|c| *c == 1), "and only one");
    let rate = n as f64 / ours.as_secs_f64();
    println!(
        "notifyd:  {} emails delivered to the SMTP server in {:.1?}: {} emails/s",
        thousands(n as f64),
        ours,
        thousands(rate)
    );

    // The same server's raw capacity: smtplib, 16 connections (notifyd's pool), a tenth as many
    // messages; once with a tiny message, once with the bytes of one notifyd sent (headers,
    // unsubscribe links: the server parses and stores more of each).
    let sent = smtp.first_message().expect("a message arrived").data;
    let messages = (n / 10).max(1000);
    let tiny = smtp_capacity(smtp.port, messages, 16, None);
    let same = smtp_capacity(smtp.port, messages, 16, Some(&sent));
    println!(
        "baseline: a plain SMTP client (smtplib, 16 connections) to the same server: {} emails/s with a {}-byte message, {} emails/s with the {}-byte message notifyd sent",
        thousands(tiny),
        TINY_MESSAGE.len(),
        thousands(same),
        sent.len()
    );
    println!(
        "ratio:    notifyd reaches {:.2}x the server's raw capacity for the same message ({:.2}x its capacity for the tiny one)",
        rate / same,
        rate / tiny
    );
}
