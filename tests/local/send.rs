//! notifyd end to end: sends now, by SMTP and webhook, and into the outbox.

use std::time::Duration;

use notify_tests::{Notifyd, SmtpSink, Webhook};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn immediate_email_reaches_the_smtp_server_and_completes() {
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start(&[
        ("NOTIFY_SMTP_URL", &smtp.url()),
        ("NOTIFY_EMAIL_FROM", "alerts@example.com"),
    ])
    .await;
    let user = d
        .put(
            "/v1/users/ada",
            json!({"email": "ada@example.com", "timezone": "Asia/Seoul", "locale": "en-GB"}),
        )
        .await;
    assert_eq!(user.status, 200, "{}", user.text);
    assert_eq!(user.body["user_id"], "ada");
    assert_eq!(
        user.body["channels"],
        json!({"email": true, "sms": true, "in_app": true, "push": true})
    );

    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"user_id": "ada"}, "content": {"subject": "Build 42", "text": "It passed.", "html": "<b>It passed.</b>"}}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.body["status"], "queued");
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ntf_"));
    assert_eq!(
        a.header("location").unwrap(),
        format!("/v1/notifications/{id}")
    );

    let mails = smtp.wait_for(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.rcpt_tos, ["ada@example.com"]);
    assert_eq!(m.mail_from, "alerts@example.com");
    assert_eq!(m.header("Subject").unwrap(), "Build 42");
    assert!(
        m.header("Content-Type")
            .unwrap()
            .starts_with("multipart/alternative")
    );
    assert!(m.data.contains("It passed."));
    assert!(m.header("Message-ID").unwrap().contains(&id));

    let n = d.wait_status(&id, &["completed"], WAIT).await;
    assert_eq!(n.body["status"], "completed", "{}", n.text);
    assert_eq!(
        n.body["counts"],
        json!({"recipients": 1, "pending": 0, "sent": 1, "failed": 0, "skipped": 0, "delivered": 0, "bounced": 0, "complained": 0})
    );
    assert_eq!(n.body["to"], json!({"user_id": "ada"}));
    assert_eq!(n.body["channels"], json!(["email"]));

    let deliveries = d.get(&format!("/v1/notifications/{id}/deliveries")).await;
    assert_eq!(deliveries.status, 200);
    let items = deliveries.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["user_id"], "ada");
    assert_eq!(items[0]["channel"], "email");
    assert_eq!(items[0]["address"], "ada@example.com");
    assert_eq!(items[0]["status"], "sent");
    assert_eq!(items[0]["attempts"], 1);
    assert!(items[0]["sent_at"].is_string());
    assert!(
        items[0]["provider_message_id"]
            .as_str()
            .unwrap()
            .contains(&id)
    );
    assert!(deliveries.body["next_cursor"].is_null());
}

#[tokio::test]
async fn template_renders_data_and_the_user_profile() {
    let smtp = SmtpSink::start().await;
    let hook = Webhook::start().await;
    let d = Notifyd::start(&[
        ("NOTIFY_SMTP_URL", &smtp.url()),
        ("NOTIFY_SMS_WEBHOOK_URL", &hook.url),
    ])
    .await;
    d.put(
        "/v1/users/u1",
        json!({"email": "kim@example.com", "phone": "+821012345678", "locale": "ko-KR"}),
    )
    .await;
    let t = d
        .put(
            "/v1/templates/welcome",
            json!({"subject": "Welcome, {{ name }}", "text": "Hi {{ name }} ({{ user.locale }}), your plan is {{ plan | upper }}.", "html": "<p>{{ name }}</p>", "sms": "Hi {{ name }}!"}),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(
        d.get("/v1/templates/welcome").await.body["subject"],
        "Welcome, {{ name }}"
    );

    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"user_id": "u1"}, "channels": ["email", "sms"], "template": {"id": "welcome", "data": {"name": "<Ada>", "plan": "pro"}}}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let mails = smtp.wait_for(1, WAIT).await;
    let m = &mails[0];
    assert_eq!(m.header("Subject").unwrap(), "Welcome, <Ada>");
    assert!(
        m.data.contains("Hi <Ada> (ko-KR), your plan is PRO."),
        "{}",
        m.data
    );
    // HTML parts are escaped, text parts are not.
    assert!(m.data.contains("&lt;Ada&gt;"), "{}", m.data);
    let sms = hook.wait_for(1, WAIT).await;
    assert_eq!(sms[0], json!({"to": "+821012345678", "body": "Hi <Ada>!"}));
    let n = d
        .wait_status(a.body["id"].as_str().unwrap(), &["completed"], WAIT)
        .await;
    assert_eq!(n.body["counts"]["sent"], 2);
}

#[tokio::test]
async fn sms_reaches_the_webhook_and_a_channel_opt_out_is_skipped() {
    let hook = Webhook::start().await;
    let d = Notifyd::start(&[("NOTIFY_SMS_WEBHOOK_URL", &hook.url)]).await;
    let a = d
        .post("/v1/notifications", json!({"to": {"phone": "+14155550123"}, "channels": ["sms"], "content": {"sms": "Your code is 123456"}}))
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let got = hook.wait_for(1, WAIT).await;
    assert_eq!(
        got,
        [json!({"to": "+14155550123", "body": "Your code is 123456"})]
    );

    d.put("/v1/users/quiet", json!({"email": "q@example.com", "phone": "+14155550124", "channels": {"email": true, "sms": false}})).await;
    let b = d
        .post(
            "/v1/notifications",
            json!({"to": {"user_id": "quiet"}, "channels": ["sms"], "content": {"sms": "hello"}}),
        )
        .await;
    let id = b.body["id"].as_str().unwrap();
    let n = d.wait_status(id, &["completed"], WAIT).await;
    assert_eq!(
        n.body["counts"],
        json!({"recipients": 1, "pending": 0, "sent": 0, "failed": 0, "skipped": 1, "delivered": 0, "bounced": 0, "complained": 0})
    );
    let rows = d.get(&format!("/v1/notifications/{id}/deliveries")).await;
    assert_eq!(rows.body["items"][0]["status"], "skipped");
    assert!(
        rows.body["items"][0]["error"]
            .as_str()
            .unwrap()
            .contains("opted out")
    );
    assert_eq!(hook.bodies().len(), 1, "the opted-out user got nothing");
}

#[tokio::test]
async fn a_webhook_that_refuses_for_good_fails_the_delivery() {
    let hook = Webhook::start().await;
    *hook.answer.lock().unwrap() = 400;
    let d = Notifyd::start(&[("NOTIFY_SMS_WEBHOOK_URL", &hook.url)]).await;
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"phone": "+14155550123"}, "channels": ["sms"], "content": {"sms": "x"}}),
        )
        .await;
    let id = a.body["id"].as_str().unwrap();
    let n = d.wait_status(id, &["failed"], WAIT).await;
    assert_eq!(n.body["status"], "failed", "{}", n.text);
    let rows = d.get(&format!("/v1/notifications/{id}/deliveries")).await;
    assert!(
        rows.body["items"][0]["error"]
            .as_str()
            .unwrap()
            .contains("400"),
        "{}",
        rows.text
    );
}

#[tokio::test]
async fn without_smtp_and_webhook_messages_land_in_the_outbox() {
    let d = Notifyd::start(&[]).await;
    let a = d.post("/v1/notifications", json!({"to": {"email": "bob@example.com"}, "content": {"subject": "Hi", "text": "Body"}})).await;
    let b = d.post("/v1/notifications", json!({"to": {"phone": "+821012345678"}, "channels": ["sms"], "content": {"sms": "Text"}})).await;
    for id in [&a.body["id"], &b.body["id"]] {
        let n = d
            .wait_status(id.as_str().unwrap(), &["completed"], WAIT)
            .await;
        assert_eq!(n.body["status"], "completed", "{}", n.text);
    }
    let outbox = d.data_dir.path().join("outbox");
    let emls: Vec<_> = std::fs::read_dir(outbox.join("email"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(emls.len(), 1);
    assert_eq!(emls[0].extension().unwrap(), "eml");
    let eml = std::fs::read_to_string(&emls[0]).unwrap();
    assert!(
        eml.contains("To: bob@example.com") && eml.contains("Subject: Hi") && eml.contains("Body"),
        "{eml}"
    );
    let sms = std::fs::read_to_string(outbox.join("sms.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(sms.lines().next().unwrap()).unwrap();
    assert_eq!(line["to"], "+821012345678");
    assert_eq!(line["body"], "Text");
}

#[tokio::test]
async fn the_same_idempotency_key_twice_sends_once() {
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    let body = json!({"to": {"email": "once@example.com"}, "content": {"subject": "Once", "text": "Only once"}});
    let post = |body: serde_json::Value, key: &'static str| {
        let req = d
            .request(reqwest::Method::POST, "/v1/notifications")
            .header("Idempotency-Key", key)
            .json(&body);
        d.send(req)
    };
    let first = post(body.clone(), "order-7-shipped").await;
    let second = post(body.clone(), "order-7-shipped").await;
    assert_eq!(first.status, 202);
    assert_eq!(second.status, 202);
    assert_eq!(first.body, second.body, "the first response, replayed");
    assert_eq!(second.header("idempotent-replayed"), Some("true"));

    let mut other = body.clone();
    other["content"]["text"] = json!("Something else");
    let conflict = post(other, "order-7-shipped").await;
    assert_eq!(conflict.status, 409, "{}", conflict.text);
    assert_eq!(
        conflict.header("content-type"),
        Some("application/problem+json")
    );

    let id = first.body["id"].as_str().unwrap();
    d.wait_status(id, &["completed"], WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 1);
    let list = d.get("/v1/notifications").await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "one notification stored"
    );
}

#[tokio::test]
async fn lists_are_newest_first_and_paginate() {
    let d = Notifyd::start(&[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let a = d
            .post("/v1/notifications", json!({"to": {"email": format!("p{i}@example.com")}, "content": {"subject": "s", "text": "t"}, "send_at": notify_tests::in_secs(3600.0)}))
            .await;
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/notifications?limit=2&cursor={c}"),
            None => "/v1/notifications?limit=2".to_owned(),
        };
        let page = d.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for item in page.body["items"].as_array().unwrap() {
            assert_eq!(item["status"], "scheduled");
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(
        d.get("/v1/notifications?status=scheduled").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        d.get("/v1/notifications?status=completed").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let bad = d.get("/v1/notifications?cursor=garbage").await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.fields(), ["cursor"]);
}

#[tokio::test]
async fn users_and_templates_round_trip_and_delete() {
    let d = Notifyd::start(&[]).await;
    let put = d
        .put(
            "/v1/users/x",
            json!({"phone": "+821012345678", "channels": {"sms": false}}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let got = d.get("/v1/users/x").await;
    assert_eq!(got.body, put.body);
    assert_eq!(
        got.body["channels"],
        json!({"email": true, "sms": false, "in_app": true, "push": true})
    );
    assert_eq!(d.delete("/v1/users/x").await.status, 204);
    assert_eq!(d.get("/v1/users/x").await.status, 404);
    assert_eq!(d.delete("/v1/users/x").await.status, 404);
    assert_eq!(
        d.put("/v1/templates/t", json!({"sms": "{{ a }}"}))
            .await
            .status,
        200
    );
    assert_eq!(d.delete("/v1/templates/t").await.status, 204);
    assert_eq!(d.get("/v1/templates/t").await.status, 404);
}
