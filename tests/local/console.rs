//! The web console, in a real headless browser (Debian's Chromium, driven by Selenium from
//! tests/support/console_browser.py) against the real notifyd; and the routes it reads, over
//! plain HTTP.

use std::time::Duration;

use notify_tests::{Notifyd, python, repo_root};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

/// Markup that tries, every way it can, to run script in the console or in its own frame.
const HOSTILE_HTML: &str = r#"<h1>Hostile</h1>
<script>document.body.setAttribute('data-ran','1'); parent.document.body.setAttribute('data-pwned','1'); top.pwned = sessionStorage.getItem('notify.apiKey'); parent.document.title = 'pwned';</script>
<img src="x" onerror="document.body.setAttribute('data-ran','1'); parent.document.title = 'pwned'">
<svg onload="document.body.setAttribute('data-ran','1')"></svg>
<iframe srcdoc="<script>parent.parent.document.title='pwned'</script>"></iframe>
<a href="javascript:parent.document.title='pwned'">click</a>"#;

const HOSTILE_SUBJECT: &str =
    r#"<img src=x onerror="document.body.setAttribute('data-pwned','1')">"#;

#[tokio::test]
async fn a_person_signs_in_sends_watches_it_complete_and_reads_the_email_safely() {
    let d = Notifyd::start(&[]).await;
    let members: Vec<(String, Value)> = ["ada", "bob", "cy"]
        .iter()
        .map(|u| (u.to_string(), json!({"email": format!("{u}@example.com")})))
        .collect();
    d.put_group_of("launch", members).await;
    assert_eq!(
        d.put("/v1/suppressions/gone@example.com", json!({}))
            .await
            .status,
        200
    );

    // Reserved an hour ahead: the browser opens its page while it is `scheduled`, then the
    // script moves it to now through the API (not a few seconds ahead, which a browser slow to
    // start on a loaded machine reached after the send had completed).
    let send_at = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1))
        .round(jiff::Unit::Second)
        .unwrap();
    let reserved = d
        .post(
            "/v1/notifications",
            json!({"to": {"group_id": "launch"}, "send_at": send_at.to_string(),
                   "content": {"subject": "Doors open soon", "text": "In a moment."}}),
        )
        .await;
    assert_eq!(reserved.status, 202, "{}", reserved.text);
    assert_eq!(reserved.body["status"], "scheduled");

    let shots = repo_root().join("target/console-screenshots");
    let scenario = json!({
        "group": "launch",
        "reserved": reserved.body["id"],
        "subject": "Launch day",
        "text": "We are live. Thank you.",
        "html": "<p>We are <b>live</b>. Thank you.</p>",
        "hostile_to": "mallory@example.com",
        "hostile_subject": HOSTILE_SUBJECT,
        "hostile_html": HOSTILE_HTML,
    });
    let script = repo_root().join("tests/support/console_browser.py");
    let out = tokio::process::Command::new(python())
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}", d.port))
        .arg(d.api_key())
        .arg(&shots)
        .arg(scenario.to_string())
        .output()
        .await
        .expect("run the browser script");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser script failed (Chromium and chromedriver come from ./scripts/test):\n{stderr}"
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the script's JSON report");

    assert_eq!(seen["sign_in_label"], "API key");
    assert_eq!(seen["wrong_key_status"], "That API key was refused.");
    assert_eq!(seen["key_in_url"], false, "the key is never in a URL");
    assert_eq!(seen["key_in_session_storage"], true);
    assert_eq!(seen["key_in_local_storage"], false);
    assert_eq!(seen["outbox_link_visible"], true);

    // The open page followed the reserved send to `completed`, with no reload.
    assert_eq!(seen["reserved_first_status"], "scheduled", "{seen}");
    let statuses = seen["reserved_statuses"].as_array().unwrap();
    assert_eq!(statuses.first(), Some(&json!("scheduled")), "{seen}");
    assert_eq!(statuses.last(), Some(&json!("completed")), "{seen}");
    assert_eq!(seen["reserved_counts"]["sent"], 3, "{seen}");
    assert_eq!(seen["reserved_url_unchanged"], true);

    // The send the browser made is the API's: three members, all sent.
    let id = seen["sent_id"].as_str().unwrap();
    let n = d.wait_status(id, &["completed"], WAIT).await;
    assert_eq!(n.body["to"], json!({"group_id": "launch"}));
    assert_eq!(
        seen["counts"],
        json!({"recipients": 3, "pending": 0, "sent": 3, "failed": 0, "skipped": 0, "delivered": 0, "bounced": 0, "complained": 0}),
        "{seen}"
    );
    assert_eq!(n.body["counts"], seen["counts"]);
    let summary = seen["summary_text"].as_str().unwrap();
    assert!(
        summary.contains("To\ngroup: launch") && !summary.contains("object"),
        "{summary}"
    );
    assert_eq!(seen["failed_rows"], 0);
    assert_eq!(seen["sent_rows"], 3);

    assert_eq!(seen["message_subject"], "Launch day");
    assert_eq!(seen["message_text"], "We are live. Thank you.");
    assert_eq!(seen["frame_text"], "We are live. Thank you.");

    // The hostile email rendered (its heading shows) and nothing of it ran.
    assert_eq!(seen["hostile_frame_marker"], Value::Null, "{seen}");
    assert_eq!(seen["console_marker"], Value::Null, "{seen}");
    assert!(!seen["console_title"].as_str().unwrap().contains("pwned"));
    assert_eq!(seen["hostile_subject_shown"], HOSTILE_SUBJECT, "as text");
    assert_eq!(seen["console_images"], 0, "the subject's <img> is text");
    assert_eq!(
        seen["frame_sandbox"], "",
        "sandboxed, with no allow-scripts"
    );

    assert!(
        seen["outbox_subjects"]
            .as_array()
            .unwrap()
            .contains(&json!("Launch day")),
        "{seen}"
    );
    assert_eq!(seen["outbox_email_text"], "We are live. Thank you.");
    assert_eq!(seen["group_members"], json!(["ada", "bob", "cy"]));
    assert_eq!(seen["suppressions"], json!(["gone@example.com"]));
    assert_eq!(
        seen["focused_after_load"], "main",
        "a new page focuses its content"
    );
    assert_eq!(
        seen["tab_order"],
        json!(["Send a notification", seen["hostile_id"], seen["sent_id"]]),
        "Tab walks the page's links in order, newest send first: {seen}"
    );
    assert_eq!(seen["opened_by_keyboard"], format!("#/notifications/{id}"));
    assert_eq!(seen["key_after_sign_out"], Value::Null);

    for page in [
        "sign-in",
        "notification",
        "message",
        "hostile-message",
        "outbox",
        "group",
    ] {
        let png = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is a screenshot",
            png.display()
        );
    }
}

#[tokio::test]
async fn the_console_is_served_with_a_policy_that_forbids_inline_script_and_framing() {
    let d = Notifyd::start(&[]).await;
    let client = reqwest::Client::new();
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let r = client.get(d.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} needs no key: it holds no data");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        let csp = header("content-security-policy");
        let script_src: Vec<&str> = csp
            .split(';')
            .map(str::trim)
            .filter(|d| d.starts_with("script-src"))
            .collect();
        assert_eq!(script_src, ["script-src 'self'"], "no inline script: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
    }
    let page = client
        .get(d.url("/console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<script>"), "no inline script in the page");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing from a CDN"
    );
}

#[tokio::test]
async fn a_deliverys_message_renders_each_channel_and_bad_requests_are_named() {
    let d = Notifyd::start(&[]).await;
    assert_eq!(
        d.put(
            "/v1/users/ada",
            json!({"email": "ada@example.com", "phone": "+821012345678"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        d.put(
            "/v1/templates/welcome",
            json!({"subject": "Hi {{ user.id }}", "text": "Code {{ code }}", "html": "<p>Code <b>{{ code }}</b></p>",
                   "sms": "Code {{ code }}", "in_app": {"title": "Welcome", "body": "Code {{ code }}", "url": "/start"}})
        )
        .await
        .status,
        200
    );
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"user_id": "ada"}, "channels": ["email", "sms", "in_app"],
                   "template": {"id": "welcome", "data": {"code": "<42>"}}}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let id = a.body["id"].as_str().unwrap().to_owned();
    d.wait_status(&id, &["completed"], WAIT).await;

    let deliveries = d.get(&format!("/v1/notifications/{id}/deliveries")).await;
    let items = deliveries.body["items"].as_array().unwrap();
    assert!(
        items.iter().all(|i| i["recipient"] == "ada"),
        "{}",
        deliveries.text
    );

    let email = d
        .get(&format!(
            "/v1/notifications/{id}/deliveries/ada/email/message"
        ))
        .await;
    assert_eq!(email.status, 200, "{}", email.text);
    assert_eq!(email.body["channel"], "email");
    assert_eq!(email.body["email"]["subject"], "Hi ada");
    assert_eq!(email.body["email"]["to"], "ada@example.com");
    assert_eq!(
        email.body["email"]["text"].as_str().unwrap().trim(),
        "Code <42>"
    );
    assert!(
        email.body["email"]["html"]
            .as_str()
            .unwrap()
            .contains("<b>&lt;42&gt;</b>"),
        "the data is escaped in the HTML part: {}",
        email.text
    );
    let headers = email.body["email"]["headers"].as_array().unwrap();
    let message_id = headers.iter().find(|h| h["name"] == "Message-ID").unwrap();
    assert!(message_id["value"].as_str().unwrap().contains(&id));
    // The same message the outbox holds: rendering is the same code as the send.
    let outbox = d.get("/v1/outbox/emails").await;
    assert_eq!(outbox.status, 200, "{}", outbox.text);
    let sent = &outbox.body["items"][0];
    assert_eq!(sent["subject"], email.body["email"]["subject"]);
    assert_eq!(sent["html"], email.body["email"]["html"]);
    assert_eq!(sent["text"], email.body["email"]["text"]);
    let one = d
        .get(&format!(
            "/v1/outbox/emails/{}",
            sent["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["subject"], "Hi ada");

    let sms = d
        .get(&format!(
            "/v1/notifications/{id}/deliveries/ada/sms/message"
        ))
        .await;
    assert_eq!(sms.status, 200, "{}", sms.text);
    assert_eq!(
        sms.body["sms"],
        json!({"to": "+821012345678", "body": "Code <42>"})
    );
    let outbox_sms = d.get("/v1/outbox/sms").await;
    assert_eq!(outbox_sms.body["items"][0]["body"], "Code <42>");
    let in_app = d
        .get(&format!(
            "/v1/notifications/{id}/deliveries/ada/in_app/message"
        ))
        .await;
    assert_eq!(
        in_app.body["in_app"],
        json!({"title": "Welcome", "body": "Code <42>", "url": "/start"})
    );

    // Filters: by channel and status, on the server.
    let only_sms = d
        .get(&format!("/v1/notifications/{id}/deliveries?channel=sms"))
        .await;
    let items = only_sms.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["channel"], "sms");
    let none = d
        .get(&format!("/v1/notifications/{id}/deliveries?status=failed"))
        .await;
    assert_eq!(none.body["items"], json!([]));

    // Bad input: every bad field named; unknown things 404; nothing else read.
    let bad = d
        .get(&format!(
            "/v1/notifications/{id}/deliveries?status=lost&channel=fax"
        ))
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(bad.fields(), ["status", "channel"]);
    let bad = d
        .get("/v1/notifications/nope/deliveries/ada/fax/message")
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(bad.fields(), ["id", "channel"]);
    for path in [
        format!("/v1/notifications/{id}/deliveries/bob/email/message"),
        format!("/v1/notifications/{id}/deliveries/email:ada@example.com/email/message"),
        format!("/v1/notifications/{id}/deliveries/ada/push/message"),
        "/v1/notifications/ntf_01kkkkkkkkkkkkkkkkkkkkkkkk/deliveries/ada/email/message".to_owned(),
        "/v1/outbox/emails/..%2F..%2Fapi-key".to_owned(),
        "/v1/outbox/emails/.hidden".to_owned(),
        "/v1/outbox/emails/nope".to_owned(),
    ] {
        let a = d.get(&path).await;
        assert_eq!(a.status, 404, "{path}: {}", a.text);
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
    }
    let bad = d.get("/v1/outbox/emails?limit=0").await;
    assert_eq!(bad.fields(), ["limit"]);
    // The outbox is the API key's, like everything it shows.
    let anonymous = d
        .send(reqwest::Client::new().get(d.url("/v1/outbox/emails")))
        .await;
    assert_eq!(anonymous.status, 401);

    // A template deleted since: the message cannot be rendered, and the answer says why.
    assert_eq!(d.delete("/v1/templates/welcome").await.status, 204);
    let gone = d
        .get(&format!(
            "/v1/notifications/{id}/deliveries/ada/email/message"
        ))
        .await;
    assert_eq!(gone.status, 409, "{}", gone.text);
    assert!(
        gone.body["detail"].as_str().unwrap().contains("deleted"),
        "{}",
        gone.text
    );
}

#[tokio::test]
async fn with_an_smtp_server_there_is_no_outbox() {
    let smtp = notify_tests::SmtpSink::start().await;
    let d = Notifyd::start(&[
        ("NOTIFY_SMTP_URL", &smtp.url()),
        ("NOTIFY_SMS_WEBHOOK_URL", "http://127.0.0.1:9/sms"),
    ])
    .await;
    let a = d.get("/v1/outbox/emails").await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert!(a.body["detail"].as_str().unwrap().contains("outbox"));
}
