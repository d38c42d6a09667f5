//! `kill -9` of notifyd three times during a 20,000-member group send, restarting each time.
//! No member is missed, and the duplicates are at most the sends in flight at each kill: the
//! dispatch workers (16, one send each at a time) could each have had a message accepted by the
//! SMTP server whose outcome was not yet recorded.

use std::time::{Duration, Instant};

use notify_tests::{Notifyd, SmtpSink};
use serde_json::json;

const MEMBERS: usize = 20_000;
const KILLS_AT: [usize; 3] = [2_000, 8_000, 14_000];
/// notifyd's dispatch workers: at most this many sends are in flight when it dies.
const IN_FLIGHT: usize = 16;

fn address(i: usize) -> String {
    format!("k{i:05}@example.com")
}

#[tokio::test]
async fn three_kills_during_a_20000_member_send_miss_no_one() {
    let smtp = SmtpSink::start().await;
    let mut d = Notifyd::start_process(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    d.put_group_of(
        "crash",
        (0..MEMBERS)
            .map(|i| (format!("k{i:05}"), json!({"email": address(i)})))
            .collect(),
    )
    .await;
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"group_id": "crash"}, "content": {"subject": "Crash", "text": "Hello"}}),
        )
        .await;
    assert_eq!(a.status, 202);
    let id = a.body["id"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let mut at_kill = Vec::new();
    for kill_at in KILLS_AT {
        while smtp.messages().len() < kill_at {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "stuck before {kill_at} emails"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        d.kill9();
        at_kill.push(smtp.messages().len());
        d.restart().await;
    }
    let n = d
        .wait_status(
            &id,
            &["completed", "partially_failed", "failed"],
            Duration::from_secs(300),
        )
        .await;
    assert_eq!(n.body["status"], "completed", "{}", n.text);
    assert_eq!(
        n.body["counts"],
        json!({"recipients": MEMBERS, "pending": 0, "sent": MEMBERS, "failed": 0, "skipped": 0, "delivered": 0, "bounced": 0, "complained": 0})
    );

    let per_address = smtp.per_recipient();
    let emails: usize = per_address.values().sum();
    let missed: Vec<String> = (0..MEMBERS)
        .map(address)
        .filter(|a| !per_address.contains_key(a))
        .collect();
    assert!(
        missed.is_empty(),
        "{} members got nothing, e.g. {:?}",
        missed.len(),
        &missed[..missed.len().min(5)]
    );
    let duplicates = emails - MEMBERS;
    eprintln!(
        "kills at {at_kill:?} emails received; {} emails for {MEMBERS} members: {duplicates} duplicates (bound {}), {:?} in all",
        emails,
        KILLS_AT.len() * IN_FLIGHT,
        started.elapsed()
    );
    assert!(
        duplicates <= KILLS_AT.len() * IN_FLIGHT,
        "{duplicates} duplicates"
    );
    assert!(
        per_address.values().all(|n| *n <= 2),
        "no one got more than one repeat"
    );
}
