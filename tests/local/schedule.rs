//! notifyd end to end: reserved sends, cancel, reschedule, crash and restart, shutdown.

use std::time::Duration;

use jiff::Timestamp;
use notify_tests::{Notifyd, SmtpSink, in_secs};
use serde_json::json;

fn email_at(to: &str, send_at: &str) -> serde_json::Value {
    json!({"to": {"email": to}, "content": {"subject": "Reminder", "text": "It is time."}, "send_at": send_at})
}

#[tokio::test]
async fn a_scheduled_email_arrives_no_earlier_than_send_at_and_within_a_second() {
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    let send_at = in_secs(2.0);
    let a = d
        .post("/v1/notifications", email_at("later@example.com", &send_at))
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.body["status"], "scheduled");
    let expected: Timestamp = send_at.parse().unwrap();
    assert_eq!(
        a.body["send_at"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .unwrap(),
        expected
    );
    let id = a.body["id"].as_str().unwrap();
    assert_eq!(
        d.get(&format!("/v1/notifications/{id}")).await.body["status"],
        "scheduled"
    );

    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    let lag = mails[0].received_at.duration_since(expected);
    assert!(
        lag >= jiff::SignedDuration::ZERO,
        "arrived {lag:?} before send_at"
    );
    assert!(
        lag <= jiff::SignedDuration::from_secs(1),
        "arrived {lag:?} after send_at"
    );
    assert_eq!(
        d.wait_status(id, &["completed"], Duration::from_secs(5))
            .await
            .body["status"],
        "completed"
    );
}

#[tokio::test]
async fn a_cancelled_notification_sends_nothing() {
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    let a = d
        .post(
            "/v1/notifications",
            email_at("cancel@example.com", &in_secs(1.5)),
        )
        .await;
    let id = a.body["id"].as_str().unwrap();
    let c = d.delete(&format!("/v1/notifications/{id}")).await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.body["status"], "cancelled");
    assert_eq!(
        d.delete(&format!("/v1/notifications/{id}")).await.status,
        200,
        "cancelling twice is fine"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(smtp.messages().is_empty());
    assert_eq!(
        d.get(&format!("/v1/notifications/{id}")).await.body["status"],
        "cancelled"
    );
    let r = d
        .patch(
            &format!("/v1/notifications/{id}"),
            json!({"send_at": in_secs(60.0)}),
        )
        .await;
    assert_eq!(
        r.status, 409,
        "a cancelled notification cannot be rescheduled"
    );
}

#[tokio::test]
async fn a_started_notification_cannot_be_cancelled_or_moved() {
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"email": "now@example.com"}, "content": {"subject": "s", "text": "t"}}),
        )
        .await;
    let id = a.body["id"].as_str().unwrap();
    d.wait_status(id, &["completed"], Duration::from_secs(10))
        .await;
    let c = d.delete(&format!("/v1/notifications/{id}")).await;
    assert_eq!(c.status, 409, "{}", c.text);
    assert_eq!(c.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        d.patch(
            &format!("/v1/notifications/{id}"),
            json!({"send_at": in_secs(60.0)})
        )
        .await
        .status,
        409
    );
    assert_eq!(
        d.delete("/v1/notifications/ntf_01kkkkkkkkkkkkkkkkkkkkkkkk")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn reschedule_moves_the_send() {
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    let a = d
        .post(
            "/v1/notifications",
            email_at("moved@example.com", &in_secs(1.0)),
        )
        .await;
    let id = a.body["id"].as_str().unwrap();
    let new_at = in_secs(3.0);
    let r = d
        .patch(
            &format!("/v1/notifications/{id}"),
            json!({"send_at": new_at}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "scheduled");
    assert_eq!(
        r.body["send_at"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .unwrap(),
        new_at.parse::<Timestamp>().unwrap()
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(smtp.messages().is_empty(), "nothing at the old time");
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    let lag = mails[0].received_at.duration_since(new_at.parse().unwrap());
    assert!(
        lag >= jiff::SignedDuration::ZERO && lag <= jiff::SignedDuration::from_secs(1),
        "lag {lag:?}"
    );

    // Moving a reserved send to the past sends it now.
    let b = d
        .post(
            "/v1/notifications",
            email_at("soon@example.com", &in_secs(3600.0)),
        )
        .await;
    let id = b.body["id"].as_str().unwrap();
    let r = d
        .patch(
            &format!("/v1/notifications/{id}"),
            json!({"send_at": in_secs(-1.0)}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "queued");
    let mails = smtp.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 2);
}

#[tokio::test]
async fn kill_9_before_send_at_then_restart_delivers_exactly_once() {
    let smtp = SmtpSink::start().await;
    let mut d = Notifyd::start_process(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    let soon = in_secs(1.5);
    let later = in_secs(4.0);
    let a = d
        .post("/v1/notifications", email_at("crash1@example.com", &soon))
        .await;
    let b = d
        .post("/v1/notifications", email_at("crash2@example.com", &later))
        .await;
    assert_eq!((a.status, b.status), (202, 202));
    d.kill9();
    // Down while the first one comes due: it fires at once on restart; the second on time.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(smtp.messages().is_empty());
    d.restart().await;
    let mails = smtp.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails_after = smtp.messages();
    assert_eq!(
        mails_after.len(),
        2,
        "exactly once each: {:?}",
        mails.iter().map(|m| &m.rcpt_tos).collect::<Vec<_>>()
    );
    let second = mails_after
        .iter()
        .find(|m| m.rcpt_tos == ["crash2@example.com"])
        .unwrap();
    let lag = second.received_at.duration_since(later.parse().unwrap());
    assert!(
        lag >= jiff::SignedDuration::ZERO && lag <= jiff::SignedDuration::from_secs(1),
        "lag {lag:?}"
    );
    for id in [&a.body["id"], &b.body["id"]] {
        let n = d
            .wait_status(id.as_str().unwrap(), &["completed"], Duration::from_secs(5))
            .await;
        assert_eq!(n.body["counts"]["sent"], 1);
    }
}

#[tokio::test]
async fn kill_9_right_after_the_202_loses_nothing() {
    let smtp = SmtpSink::start().await;
    let mut d = Notifyd::start_process(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let a = d
            .post("/v1/notifications", json!({"to": {"email": format!("k{i}@example.com")}, "content": {"subject": "s", "text": "t"}}))
            .await;
        assert_eq!(a.status, 202);
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    d.kill9();
    d.restart().await;
    for id in &ids {
        let n = d
            .wait_status(id, &["completed"], Duration::from_secs(180))
            .await;
        assert_eq!(n.body["status"], "completed", "{}", n.text);
    }
    let mut got: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| m.rcpt_tos[0].clone())
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 20, "every accepted notification was delivered");
}

#[tokio::test]
async fn sigterm_stops_cleanly_with_exit_0_and_keeps_scheduled_work() {
    let smtp = SmtpSink::start().await;
    let mut d = Notifyd::start_process(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    let a = d
        .post(
            "/v1/notifications",
            email_at("after-restart@example.com", &in_secs(2.0)),
        )
        .await;
    let status = d.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        d.log()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", d.port)).is_err(),
        "no longer listening"
    );
    d.restart().await;
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(
        d.wait_status(
            a.body["id"].as_str().unwrap(),
            &["completed"],
            Duration::from_secs(5)
        )
        .await
        .body["status"],
        "completed"
    );
}
