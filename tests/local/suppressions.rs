//! The suppression list on notifyd: a suppressed address is skipped with its reason before any
//! SMTP or webhook call, on a direct send and on a group send; lifting it lets mail through
//! again; bad input is named.

use std::time::Duration;

use notify_tests::{Notifyd, SmtpSink, Webhook};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_suppressed_address_is_skipped_until_the_suppression_is_lifted() {
    let smtp = SmtpSink::start().await;
    let hook = Webhook::start().await;
    let d = Notifyd::start(&[
        ("NOTIFY_SMTP_URL", &smtp.url()),
        ("NOTIFY_SMS_WEBHOOK_URL", &hook.url),
    ])
    .await;
    // The address in another case than the user's: still the same mailbox.
    let s = d
        .put(
            "/v1/suppressions/Gone@Example.com",
            json!({"reason": "bounce"}),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(s.body["address"], "gone@example.com");
    assert_eq!(s.body["channel"], "email");
    assert_eq!(s.body["reason"], "bounce");
    let phone = d.put("/v1/suppressions/%2B821012345678", json!({})).await;
    assert_eq!(phone.status, 200, "{}", phone.text);
    assert_eq!(
        (&phone.body["channel"], &phone.body["reason"]),
        (&json!("sms"), &json!("manual"))
    );

    for (user, email, phone) in [
        ("gone", "gone@example.com", "+821012345678"),
        ("here", "here@example.com", "+821099998888"),
    ] {
        let u = d
            .put(
                &format!("/v1/users/{user}"),
                json!({"email": email, "phone": phone}),
            )
            .await;
        assert_eq!(u.status, 200, "{}", u.text);
    }
    d.put("/v1/groups/all", json!({"name": "All"})).await;
    for user in ["gone", "here"] {
        let m = d
            .put(&format!("/v1/groups/all/members/{user}"), json!(null))
            .await;
        assert!(m.status == 204 || m.status == 200, "{}", m.text);
    }
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"group_id": "all"}, "channels": ["email", "sms"],
                   "content": {"subject": "News", "text": "Hello", "sms": "Hello"}}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let n = d.wait_status(&id, &["completed"], WAIT).await;
    assert_eq!(
        n.body["counts"],
        json!({"recipients": 4, "pending": 0, "sent": 2, "failed": 0, "skipped": 2, "delivered": 0, "bounced": 0, "complained": 0}),
        "{}",
        n.text
    );
    let deliveries = d.get(&format!("/v1/notifications/{id}/deliveries")).await;
    let items = deliveries.body["items"].as_array().unwrap();
    for item in items.iter().filter(|i| i["user_id"] == "gone") {
        assert_eq!(item["status"], "skipped", "{item}");
        let why = if item["channel"] == "email" {
            "suppressed: bounce"
        } else {
            "suppressed: manual"
        };
        assert_eq!(item["error"], why);
    }
    assert_eq!(smtp.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(smtp.messages()[0].rcpt_tos, ["here@example.com"]);
    assert_eq!(hook.wait_for(1, WAIT).await.len(), 1);
    assert!(hook.bodies()[0].to_string().contains("+821099998888"));

    let list = d.get("/v1/suppressions?limit=1").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["items"][0]["address"], "+821012345678");
    let cursor = list.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = d
        .get(&format!("/v1/suppressions?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(rest.body["items"][0]["address"], "gone@example.com");
    assert_eq!(rest.body["next_cursor"], json!(null));

    // Lifted: the next send reaches the address.
    assert_eq!(
        d.delete("/v1/suppressions/gone@example.com").await.status,
        204
    );
    assert_eq!(
        d.delete("/v1/suppressions/gone@example.com").await.status,
        404
    );
    assert_eq!(d.get("/v1/suppressions/gone@example.com").await.status, 404);
    let b = d
        .post(
            "/v1/notifications",
            json!({"to": {"user_id": "gone"}, "content": {"subject": "Back", "text": "Hi"}}),
        )
        .await;
    let id = b.body["id"].as_str().unwrap().to_owned();
    d.wait_status(&id, &["completed"], WAIT).await;
    let mails = smtp.wait_for(2, WAIT).await;
    assert_eq!(mails[1].rcpt_tos, ["gone@example.com"]);
}

#[tokio::test]
async fn bad_suppressions_are_named_and_change_nothing() {
    let d = Notifyd::start(&[]).await;
    let a = d.put("/v1/suppressions/not-an-address", json!({})).await;
    assert_eq!(
        (a.status, a.fields()),
        (422, vec!["address".to_owned()]),
        "{}",
        a.text
    );
    let a = d.put("/v1/suppressions/%2B12", json!({})).await;
    assert_eq!(
        (a.status, a.fields()),
        (422, vec!["address".to_owned()]),
        "{}",
        a.text
    );
    let a = d
        .put(
            "/v1/suppressions/a@example.com",
            json!({"reason": "angry", "why": 1}),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text);
    let mut fields = a.fields();
    fields.sort();
    assert_eq!(fields, ["reason", "why"]);
    let a = d.put("/v1/suppressions/a@example.com", json!([1])).await;
    assert_eq!(
        (a.status, a.fields()),
        (422, vec!["body".to_owned()]),
        "{}",
        a.text
    );
    let a = d.get("/v1/suppressions?limit=0").await;
    assert_eq!(
        (a.status, a.fields()),
        (422, vec!["limit".to_owned()]),
        "{}",
        a.text
    );
    let a = d.get("/v1/suppressions?cursor=%25%25").await;
    assert_eq!(a.status, 422, "{}", a.text);
    let list = d.get("/v1/suppressions").await;
    assert_eq!(list.body["items"], json!([]), "nothing was stored");
    let anonymous = reqwest::Client::new()
        .get(d.url("/v1/suppressions"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
