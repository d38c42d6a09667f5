//! Outgoing webhooks on notifyd, over real HTTP, each request checked by the Standard Webhooks
//! reference library (PyPI `standardwebhooks`) in the receiver: the events of a send and of an
//! unsubscribe arrive signed; a failing endpoint gets the event again with the same
//! `webhook-id`; one down for a while gets everything when it is back; one that keeps failing is
//! disabled with the reason, until enabled; the secret is shown once; a deleted endpoint gets
//! nothing more; internal addresses are refused unless allowed; bad input is named field by
//! field.

use std::time::Duration;

use notify_tests::{Notifyd, SmtpSink, WebhookReceiver};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn of_type<'a>(got: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    got.iter()
        .filter(|r| r["payload"]["type"] == event_type)
        .collect()
}

#[tokio::test]
async fn events_arrive_signed_at_least_once_and_stop_when_the_endpoint_is_deleted() {
    let receiver = WebhookReceiver::start().await;
    let smtp = SmtpSink::start().await;
    // The receiver is on loopback: allowed here. Short pauses between attempts, so that a
    // day of retries takes a second.
    let d = Notifyd::start(&[
        ("NOTIFY_SMTP_URL", &smtp.url()),
        ("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("NOTIFY_WEBHOOK_RETRY_PAUSES", "0.2,0.2,0.2"),
    ])
    .await;

    let made = d
        .post(
            "/v1/webhooks",
            json!({"url": receiver.url(), "description": "billing",
                   "events": ["delivery.sent", "notification.completed", "user.unsubscribed"]}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let secret = made.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        made.headers["location"],
        format!("/v1/webhooks/{id}").as_str()
    );
    // The secret is shown once.
    let listed = d.get("/v1/webhooks").await;
    assert_eq!(listed.body["items"][0]["id"], id.as_str());
    assert!(
        listed.body["items"][0].get("secret").is_none(),
        "{}",
        listed.text
    );
    assert!(
        d.get(&format!("/v1/webhooks/{id}"))
            .await
            .body
            .get("secret")
            .is_none()
    );
    // The endpoint fails the first delivery: it comes again after the first pause.
    receiver.configure(&secret, 1).await;

    d.put_group_of(
        "news",
        vec![("ada".into(), json!({"email": "ada@example.org"}))],
    )
    .await;
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"group_id": "news"}, "content": {"subject": "Hi", "text": "Hello"}}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let notification = a.body["id"].as_str().unwrap().to_owned();
    d.wait_status(&notification, &["completed"], WAIT).await;
    let got = receiver
        .wait_for(WAIT, |got| {
            ["delivery.sent", "notification.completed"]
                .iter()
                .all(|t| of_type(got, t).iter().any(|r| r["status"] == 204))
        })
        .await;
    assert!(
        got.iter().all(|r| r["verified"] == true),
        "every request verifies: {got:?}"
    );
    let sent = of_type(&got, "delivery.sent");
    let sent_ok = sent.iter().find(|r| r["status"] == 204).expect("delivered");
    assert_eq!(
        sent_ok["payload"]["data"]["notification_id"],
        notification.as_str()
    );
    assert_eq!(sent_ok["payload"]["data"]["user_id"], "ada");
    assert_eq!(sent_ok["payload"]["data"]["channel"], "email");
    let completed = of_type(&got, "notification.completed");
    assert_eq!(
        completed.last().unwrap()["payload"]["data"]["status"],
        "completed"
    );
    // The one answered 503 came again with the same webhook-id.
    let failed = got
        .iter()
        .find(|r| r["status"] == 503)
        .expect("one failed on purpose");
    let again: Vec<&Value> = got
        .iter()
        .filter(|r| r["webhook_id"] == failed["webhook_id"])
        .collect();
    assert_eq!(again.len(), 2, "{got:?}");
    assert_eq!(again[1]["status"], 204);

    // The one-click unsubscribe of the email is an event too, once: the link posted 50
    // times (anyone holding the email can) changes the preference once, and is one event;
    // past 10 posts a minute the link is answered 429.
    let mail = smtp.wait_for(1, WAIT).await;
    let link = mail[0].header("List-Unsubscribe").unwrap();
    let link = link.trim_start_matches('<').trim_end_matches('>');
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let r = reqwest::Client::new().post(link).send().await.unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    // The link's bucket refills at one every 6 s: a slow machine may let one more through.
    let answered = statuses.iter().filter(|s| **s == 200).count();
    assert!((10..=12).contains(&answered), "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        50 - answered,
        "{statuses:?}"
    );
    receiver
        .wait_for(WAIT, |got| !of_type(got, "user.unsubscribed").is_empty())
        .await;
    // Time for any further event to arrive, had one been emitted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = receiver.received();
    let unsubscribed = of_type(&got, "user.unsubscribed");
    let events: std::collections::HashSet<String> = unsubscribed
        .iter()
        .map(|r| r["webhook_id"].to_string())
        .collect();
    assert_eq!(events.len(), 1, "{unsubscribed:?}");
    assert_eq!(
        unsubscribed[0]["payload"]["data"],
        json!({"user_id": "ada", "category": "news", "channel": "email"})
    );

    // Deleted: a later send posts nothing.
    assert_eq!(d.delete(&format!("/v1/webhooks/{id}")).await.status, 204);
    assert_eq!(d.get(&format!("/v1/webhooks/{id}")).await.status, 404);
    let before = receiver.received().len();
    let b = d
        .post(
            "/v1/notifications",
            json!({"to": {"email": "bob@example.org"}, "content": {"subject": "Hi", "text": "Hello"}}),
        )
        .await;
    d.wait_status(b.body["id"].as_str().unwrap(), &["completed"], WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received().len(), before);
}

#[tokio::test]
async fn an_endpoint_down_for_a_while_gets_everything_and_one_that_keeps_failing_is_disabled() {
    let receiver = WebhookReceiver::start().await;
    let d = Notifyd::start(&[
        ("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("NOTIFY_WEBHOOK_RETRY_PAUSES", "0.2,0.2,0.2"),
    ])
    .await;
    let made = d
        .post(
            "/v1/webhooks",
            json!({"url": receiver.url(), "events": ["notification.completed"]}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let id = made.body["id"].as_str().unwrap().to_owned();
    let send = || async {
        let a = d
            .post(
                "/v1/notifications",
                json!({"to": {"email": "ada@example.org"}, "content": {"subject": "s", "text": "t"}}),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.text);
        let n = a.body["id"].as_str().unwrap().to_owned();
        d.wait_status(&n, &["completed"], WAIT).await;
        n
    };

    // Down for three attempts of four: the event arrives on the fourth.
    receiver
        .configure(made.body["secret"].as_str().unwrap(), 3)
        .await;
    let first = send().await;
    let got = receiver
        .wait_for(WAIT, |got| got.iter().any(|r| r["status"] == 204))
        .await;
    assert_eq!(
        got.iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [503, 503, 503, 204]
    );
    assert_eq!(got[3]["payload"]["data"]["notification_id"], first.as_str());
    assert!(got.iter().all(|r| r["webhook_id"] == got[0]["webhook_id"]));

    // Down for good: after the last attempt the endpoint is disabled, with the reason.
    receiver
        .configure(made.body["secret"].as_str().unwrap(), 1000)
        .await;
    send().await;
    let mut disabled = Value::Null;
    for _ in 0..100 {
        disabled = d.get(&format!("/v1/webhooks/{id}")).await.body["disabled"].clone();
        if !disabled.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = disabled["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("failed every attempt"), "{disabled}");
    assert_eq!(
        receiver.received().len(),
        4 + 4,
        "four attempts, then no more"
    );
    send().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 8, "disabled: nothing is sent");

    // Enabled again (and the endpoint fixed): events flow.
    receiver
        .configure(made.body["secret"].as_str().unwrap(), 0)
        .await;
    let enabled = d
        .post(&format!("/v1/webhooks/{id}/enable"), json!(null))
        .await;
    assert_eq!(enabled.status, 200, "{}", enabled.text);
    assert!(enabled.body["disabled"].is_null());
    let last = send().await;
    let got = receiver
        .wait_for(WAIT, |got| {
            got.iter()
                .any(|r| r["payload"]["data"]["notification_id"] == last.as_str())
        })
        .await;
    assert_eq!(got.last().unwrap()["status"], 204);
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allowed() {
    let d = Notifyd::start(&[]).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost:8080/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hook",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        // Special-purpose blocks beyond the private ones (benchmarking, IETF protocol
        // assignments, reserved), and IPv6 forms that carry the metadata service's IPv4
        // address (NAT64, 6to4, IPv4-compatible) or lie outside global unicast. Literals:
        // registration refuses them without a packet sent.
        "http://198.18.0.1/hook",
        "http://192.0.0.192/hook",
        "http://240.0.0.1/hook",
        "http://[64:ff9b::a9fe:a9fe]/hook",
        "http://[2002:a9fe:a9fe::1]/hook",
        "http://[::a9fe:a9fe]/hook",
        "http://[fec0::1]/hook",
        "http://[2001::1]/hook",
    ] {
        let r = d
            .post(
                "/v1/webhooks",
                json!({"url": url, "events": ["delivery.sent"]}),
            )
            .await;
        assert_eq!(r.status, 422, "{url}: {}", r.text);
        assert_eq!(r.body["errors"][0]["field"], "url", "{url}");
    }
    assert_eq!(d.get("/v1/webhooks").await.body["items"], json!([]));
}

#[tokio::test]
async fn bad_webhooks_are_named_field_by_field() {
    let d = Notifyd::start(&[("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    let r = d
        .post(
            "/v1/webhooks",
            json!({"url": "ftp://files.example.com", "events": ["delivery.opened", "delivery.sent", "delivery.sent"], "extra": 1}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in ["extra", "url", "events[0]", "events[2]"] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    let r = d
        .post("/v1/webhooks", json!({"url": "https://h.example"}))
        .await;
    assert_eq!(r.body["errors"][0]["field"], "events", "{}", r.text);
    let r = d
        .post("/v1/webhooks", json!({"events": ["delivery.sent"]}))
        .await;
    assert_eq!(r.body["errors"][0]["field"], "url", "{}", r.text);
    // A secret of our own must be whsec_ and 24 to 64 bytes of base64.
    let oversized = format!("whsec_{}", "QUFB".repeat(40));
    for secret in [oversized.as_str(), "not-a-secret", "whsec_c2hvcnQ="] {
        let r = d
            .post(
                "/v1/webhooks",
                json!({"url": "https://h.example", "events": ["delivery.sent"], "secret": secret}),
            )
            .await;
        assert_eq!(r.status, 422, "{secret}: {}", r.text);
        assert_eq!(r.body["errors"][0]["field"], "secret", "{secret}");
    }
    assert_eq!(d.get("/v1/webhooks").await.body["items"], json!([]));
    assert_eq!(
        d.delete("/v1/webhooks/whk_01KAZ3Q1P3V1NQ9ZC7W2QF6T1R")
            .await
            .status,
        404
    );
}
