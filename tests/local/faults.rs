//! notifyd against an SMTP server that fails on purpose: 20% of messages get 451, 5% get 421
//! (throttling), and three chosen addresses get 550. Every other address gets exactly one email;
//! the three are `failed` with the server's answer, and a retry sends to them and no one else.

use std::time::Duration;

use notify_tests::{Notifyd, SinkFaults, SmtpSink};
use serde_json::json;

const MEMBERS: usize = 5_000;

fn address(i: usize) -> String {
    format!("f{i:05}@example.com")
}

#[tokio::test]
async fn transient_errors_and_throttling_are_retried_and_permanent_ones_recorded() {
    let rejected: Vec<String> = [11, 2222, 4999].iter().map(|i| address(*i)).collect();
    let smtp = SmtpSink::start_with(SinkFaults {
        fail_4xx_rate: 0.20,
        throttle_rate: 0.05,
        reject: rejected.clone(),
    })
    .await;
    let d = Notifyd::start(&[
        ("NOTIFY_SMTP_URL", &smtp.url()),
        ("NOTIFY_MAX_ATTEMPTS", "12"),
        ("NOTIFY_RETRY_BASE_MS", "100"),
    ])
    .await;
    d.put_group_of(
        "faulty",
        (0..MEMBERS)
            .map(|i| (format!("f{i:05}"), json!({"email": address(i)})))
            .collect(),
    )
    .await;
    let a = d.post("/v1/notifications", json!({"to": {"group_id": "faulty"}, "content": {"subject": "Retry me", "text": "Hello"}})).await;
    let id = a.body["id"].as_str().unwrap();
    let started = std::time::Instant::now();
    let n = d
        .wait_status(
            id,
            &["completed", "partially_failed", "failed"],
            Duration::from_secs(600),
        )
        .await;
    assert_eq!(n.body["status"], "partially_failed", "{}", n.text);
    assert_eq!(
        n.body["counts"],
        json!({"recipients": MEMBERS, "pending": 0, "sent": MEMBERS - 3, "failed": 3, "skipped": 0, "delivered": 0, "bounced": 0, "complained": 0})
    );

    let per_address = smtp.per_recipient();
    for i in 0..MEMBERS {
        let want = usize::from(!rejected.contains(&address(i)));
        assert_eq!(
            per_address.get(&address(i)).copied().unwrap_or(0),
            want,
            "{}",
            address(i)
        );
    }
    // The permanent failures carry the server's answer; retried deliveries show their attempts.
    let mut failed = Vec::new();
    let mut retried = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/notifications/{id}/deliveries?limit=1000&cursor={c}"),
            None => format!("/v1/notifications/{id}/deliveries?limit=1000"),
        };
        let page = d.get(&path).await;
        for row in page.body["items"].as_array().unwrap() {
            if row["status"] == "failed" {
                failed.push((
                    row["address"].as_str().unwrap().to_owned(),
                    row["error"].as_str().unwrap().to_owned(),
                    row["attempts"].as_u64().unwrap(),
                ));
            }
            if row["attempts"].as_u64().unwrap() > 1 {
                retried += 1;
            }
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    failed.sort();
    assert_eq!(
        failed.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
        rejected
    );
    for (address, error, attempts) in &failed {
        assert!(error.contains("550"), "{address}: {error}");
        assert_eq!(*attempts, 1, "{address}: a permanent error is not retried");
    }
    // About a quarter of the first attempts failed on purpose.
    assert!(
        retried > MEMBERS / 10,
        "only {retried} deliveries were retried"
    );
    eprintln!(
        "{retried} of {MEMBERS} deliveries needed more than one attempt; the send took {:?}",
        started.elapsed()
    );

    // The three fix their mailboxes: a retry sends to them once, and to no one else.
    smtp.accept_all();
    let r = d
        .post(&format!("/v1/notifications/{id}/retry"), json!(null))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let n = d
        .wait_status(
            id,
            &["completed", "partially_failed", "failed"],
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(n.body["status"], "completed", "{}", n.text);
    assert_eq!(
        n.body["counts"],
        json!({"recipients": MEMBERS, "pending": 0, "sent": MEMBERS, "failed": 0, "skipped": 0, "delivered": 0, "bounced": 0, "complained": 0})
    );
    let per_address = smtp.per_recipient();
    assert_eq!(per_address.len(), MEMBERS);
    assert!(
        per_address.values().all(|n| *n == 1),
        "one email per address in all"
    );
    assert_eq!(
        d.post(&format!("/v1/notifications/{id}/retry"), json!(null))
            .await
            .status,
        409,
        "nothing failed any more"
    );
}

#[tokio::test]
async fn a_configured_email_rate_spaces_the_sends() {
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start(&[
        ("NOTIFY_SMTP_URL", &smtp.url()),
        ("NOTIFY_EMAIL_PER_SECOND", "40"),
    ])
    .await;
    for i in 0..81 {
        let a = d
            .post(
                "/v1/notifications",
                json!({"to": {"email": address(i)}, "content": {"subject": "Paced", "text": "x"}}),
            )
            .await;
        assert_eq!(a.status, 202);
    }
    let mut received: Vec<_> = smtp
        .wait_for(81, Duration::from_secs(60))
        .await
        .iter()
        .map(|m| m.received_at)
        .collect();
    received.sort();
    // 81 sends at 40 per second: the first at once, the last 80 × 25 ms = 2 s later at least.
    let spread = received[80].duration_since(received[0]);
    assert!(
        spread >= jiff::SignedDuration::from_millis(1950),
        "81 emails in {spread:?}"
    );
}
