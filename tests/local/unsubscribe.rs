//! Preferences and RFC 8058 one-click unsubscribe on notifyd, over real HTTP and SMTP: a group
//! send's emails carry `List-Unsubscribe` and `List-Unsubscribe-Post`; the link's GET only
//! shows a page; its POST, without an API key, turns the category off for that user, and the
//! next send skips them; a forged or altered link changes nothing; a transactional category
//! reaches everyone with no link; bad preferences are named field by field.

use std::time::Duration;

use notify_tests::{Notifyd, SmtpSink};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

async fn send_news(d: &Notifyd, category: Option<&str>) -> serde_json::Value {
    let mut body = json!({"to": {"group_id": "news"},
        "content": {"subject": "News", "text": "Hello"}});
    if let Some(c) = category {
        body["category"] = json!(c);
    }
    let a = d.post("/v1/notifications", body).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let id = a.body["id"].as_str().unwrap().to_owned();
    d.wait_status(&id, &["completed"], WAIT).await.body
}

#[tokio::test]
async fn one_click_unsubscribe_turns_a_category_off_and_the_next_send_skips_the_user() {
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    let users = ["ada", "bob", "cy"];
    d.put_group_of(
        "news",
        users
            .iter()
            .map(|u| (u.to_string(), json!({"email": format!("{u}@example.org")})))
            .collect(),
    )
    .await;
    // Bob turned the news off on email through the backend.
    let p = d
        .put(
            "/v1/users/bob/preferences",
            json!({"categories": {"news": {"email": false}}}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.body["categories"]["news"], json!({"email": false}));

    let n = send_news(&d, None).await;
    assert_eq!(
        n["category"], "news",
        "a group send's category is its group"
    );
    assert_eq!(
        (&n["counts"]["sent"], &n["counts"]["skipped"]),
        (&json!(2), &json!(1))
    );
    let mails = smtp.wait_for(2, WAIT).await;
    let ada = mails
        .iter()
        .find(|m| m.rcpt_tos == ["ada@example.org"])
        .expect("an email to Ada");
    assert_eq!(
        ada.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let link = ada.header("List-Unsubscribe").expect("List-Unsubscribe");
    let link = link
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    let prefix = d.url("/u/");
    assert!(link.starts_with(&prefix), "{link} is under {prefix}");

    let anonymous = reqwest::Client::new();
    // A scanner's GET: a page with a button, and nothing changes.
    let page = anonymous.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    // The page loads nothing and cannot be framed (a framed button could be clicked for the
    // user).
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\">"), "{html}");
    let prefs = d.get("/v1/users/ada/preferences").await;
    assert_eq!(prefs.body["categories"], json!({}), "a GET changes nothing");

    // Altered, forged and malformed links: 404 problem+json, nothing changes.
    let token = &link[prefix.len()..];
    let (payload, signature) = token.split_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    for bad in [
        format!("{payload}.{flipped}{}", &signature[1..]),
        format!("Ym9iCm5ld3M.{signature}"),
        "nonsense".to_owned(),
        "%FF%FE".to_owned(),
    ] {
        let r = anonymous
            .post(format!("{prefix}{bad}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{bad}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{bad}"
        );
    }
    let prefs = d.get("/v1/users/ada/preferences").await;
    assert_eq!(prefs.body["categories"], json!({}));

    // The mail client's one click: a POST with no API key.
    for _ in 0..2 {
        let r = anonymous
            .post(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let prefs = d.get("/v1/users/ada/preferences").await;
    assert_eq!(prefs.body["categories"], json!({"news": {"email": false}}));

    let n = send_news(&d, None).await;
    assert_eq!(
        (&n["counts"]["sent"], &n["counts"]["skipped"]),
        (&json!(1), &json!(2))
    );
    let mails = smtp.wait_for(3, WAIT).await;
    assert_eq!(mails[2].rcpt_tos, ["cy@example.org"]);
    let deliveries = d
        .get(&format!(
            "/v1/notifications/{}/deliveries",
            n["id"].as_str().unwrap()
        ))
        .await;
    let ada_row = deliveries.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["user_id"] == "ada")
        .unwrap()
        .clone();
    assert_eq!(ada_row["status"], "skipped");
    assert_eq!(ada_row["error"], "unsubscribed: news");

    // A transactional category reaches everyone, with no link.
    let c = d
        .put("/v1/categories/news", json!({"transactional": true}))
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    let n = send_news(&d, Some("news")).await;
    assert_eq!(
        (&n["counts"]["sent"], &n["counts"]["skipped"]),
        (&json!(3), &json!(0))
    );
    let mails = smtp.wait_for(6, WAIT).await;
    assert!(
        mails[3..]
            .iter()
            .all(|m| m.header("List-Unsubscribe").is_none())
    );
}

#[tokio::test]
async fn bad_preferences_and_categories_are_named_field_by_field() {
    let d = Notifyd::start(&[]).await;
    d.put("/v1/users/ada", json!({"email": "ada@example.org"}))
        .await;
    let r = d
        .put(
            "/v1/users/ada/preferences",
            json!({"categories": {"bad id!": {"email": "no", "fax": true}, "ok": {"sms": false}}, "extra": 1}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "extra",
        "categories.bad id!",
        "categories.bad id!.email",
        "categories.bad id!.fax",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    let unchanged = d.get("/v1/users/ada/preferences").await;
    assert_eq!(unchanged.body["categories"], json!({}), "nothing stored");
    let r = d
        .put("/v1/users/nobody/preferences", json!({"categories": {}}))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = d
        .put("/v1/categories/news", json!({"transactional": "yes"}))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["errors"][0]["field"], "transactional");
    let r = d.put("/v1/categories/news", json!({})).await;
    assert_eq!(r.body["errors"][0]["field"], "transactional", "required");
    assert_eq!(d.get("/v1/categories/news").await.status, 404);
}

#[tokio::test]
async fn one_client_address_gets_120_unsubscribe_calls_a_minute() {
    let d = Notifyd::start(&[]).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    // Each a different (forged) link: only the client's address is the same.
    for i in 0..140 {
        let r = client
            .get(d.url(&format!("/u/forged{i}.sig{i}")))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..120].iter().all(|s| *s == 404), "{statuses:?}");
    // The bucket refills at two a second: a slow machine may let one or two more through.
    assert!(
        statuses[120..].iter().filter(|s| **s == 429).count() >= 15,
        "{statuses:?}"
    );
}
