//! notifyd end to end: bad input gets the right 4xx problem+json naming the field, never a
//! 5xx, and nothing already accepted is lost. Also auth and the OpenAPI spec.

use std::time::Duration;

use notify_tests::{Notifyd, in_secs};
use serde_json::{Value, json};

fn valid() -> Value {
    json!({"to": {"email": "ok@example.com"}, "content": {"subject": "s", "text": "t"}})
}

fn with(path: &[&str], value: Value) -> Value {
    let mut body = valid();
    let mut at = &mut body;
    for key in &path[..path.len() - 1] {
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = value;
    body
}

#[tokio::test]
async fn hostile_notification_bodies_get_problem_json_naming_the_field() {
    let d = Notifyd::start(&[]).await;
    d.put("/v1/templates/smsonly", json!({"sms": "hi"})).await;
    let cases: Vec<(&str, Value, u16, Vec<&str>)> = vec![
        (
            "unknown field (typo)",
            with(&["sendAt"], json!(in_secs(60.0))),
            422,
            vec!["sendAt"],
        ),
        (
            "unknown nested field",
            with(&["content", "body"], json!("x")),
            422,
            vec!["content.body"],
        ),
        (
            "bad address",
            with(&["to"], json!({"email": "not-an-address"})),
            422,
            vec!["to.email"],
        ),
        (
            "bad phone",
            json!({"to": {"phone": "010-1234-5678"}, "channels": ["sms"], "content": {"sms": "x"}}),
            422,
            vec!["to.phone"],
        ),
        (
            "two recipients",
            with(&["to"], json!({"email": "a@example.com", "user_id": "u"})),
            422,
            vec!["to"],
        ),
        (
            "no recipient",
            json!({"content": {"subject": "s", "text": "t"}}),
            422,
            vec!["to"],
        ),
        (
            "to is a string",
            with(&["to"], json!("a@example.com")),
            422,
            vec!["to"],
        ),
        (
            "channels is a string",
            with(&["channels"], json!("email")),
            422,
            vec!["channels"],
        ),
        (
            "unknown channel",
            with(&["channels"], json!(["email", "fax"])),
            422,
            vec!["channels[1]"],
        ),
        (
            "duplicate channel",
            with(&["channels"], json!(["email", "email"])),
            422,
            vec!["channels[1]"],
        ),
        (
            "empty channels",
            with(&["channels"], json!([])),
            422,
            vec!["channels"],
        ),
        (
            "subject is a number",
            with(&["content", "subject"], json!(5)),
            422,
            vec!["content.subject"],
        ),
        (
            "email without subject",
            with(&["content"], json!({"text": "t"})),
            422,
            vec!["content.subject"],
        ),
        (
            "content and template",
            with(&["template"], json!({"id": "smsonly"})),
            422,
            vec!["content"],
        ),
        (
            "neither content nor template",
            json!({"to": {"email": "a@example.com"}}),
            422,
            vec!["content"],
        ),
        (
            "sms to an email address",
            with(&["channels"], json!(["sms"])),
            422,
            vec!["channels", "content.sms"],
        ),
        (
            "unparseable send_at",
            with(&["send_at"], json!("next tuesday")),
            422,
            vec!["send_at"],
        ),
        (
            "send_at without offset",
            with(&["send_at"], json!("2030-01-01T09:00:00")),
            422,
            vec!["send_at"],
        ),
        (
            "send_at is a number",
            with(&["send_at"], json!(1767225600)),
            422,
            vec!["send_at"],
        ),
        (
            "send_at far in the future",
            with(&["send_at"], json!(in_secs(400.0 * 86400.0))),
            422,
            vec!["send_at"],
        ),
        (
            "send_at long past",
            with(&["send_at"], json!("2001-01-01T00:00:00Z")),
            422,
            vec!["send_at"],
        ),
        (
            "unknown template",
            json!({"to": {"email": "a@example.com"}, "template": {"id": "nope"}}),
            422,
            vec!["template.id"],
        ),
        (
            "template lacks the email parts",
            json!({"to": {"email": "a@example.com"}, "template": {"id": "smsonly"}}),
            422,
            vec!["template.id"],
        ),
        (
            "template data not an object",
            json!({"to": {"email": "a@example.com"}, "template": {"id": "smsonly", "data": [1]}}),
            422,
            vec!["template.data"],
        ),
        (
            "unknown user",
            with(&["to"], json!({"user_id": "ghost"})),
            422,
            vec!["to.user_id"],
        ),
        (
            "bad user id",
            with(&["to"], json!({"user_id": "has space"})),
            422,
            vec!["to.user_id"],
        ),
        ("body is an array", json!([1, 2]), 422, vec!["body"]),
        (
            "many errors at once",
            json!({"to": {"email": "x"}, "channels": ["fax"], "content": {"subject": 1, "text": "t"}, "send_at": "soon", "extra": 1}),
            422,
            vec![
                "extra",
                "to.email",
                "channels[0]",
                "content.subject",
                "send_at",
            ],
        ),
    ];
    for (name, body, status, fields) in cases {
        let a = d.post("/v1/notifications", body).await;
        assert_eq!(a.status, status, "{name}: {}", a.text);
        assert_eq!(
            a.header("content-type"),
            Some("application/problem+json"),
            "{name}"
        );
        assert_eq!(a.body["status"], status, "{name}");
        assert!(
            a.body["title"].is_string()
                && a.body["type"].is_string()
                && a.body["detail"].is_string(),
            "{name}: {}",
            a.text
        );
        let mut got = a.fields();
        got.sort();
        let mut want: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{name}: {}", a.text);
    }
    // None of it was stored.
    assert_eq!(d.get("/v1/notifications").await.body["items"], json!([]));
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let d = Notifyd::start(&[]).await;
    let raw = |body: Vec<u8>| {
        d.send(
            d.request(reqwest::Method::POST, "/v1/notifications")
                .header("content-type", "application/json")
                .body(body),
        )
    };
    for (name, body) in [
        ("malformed", b"{\"to\": ".to_vec()),
        ("empty", Vec::new()),
        ("not utf-8", vec![0xff, 0xfe, b'{']),
        ("trailing garbage", b"{} x".to_vec()),
    ] {
        let a = raw(body).await;
        assert_eq!(a.status, 400, "{name}: {}", a.text);
        assert_eq!(
            a.header("content-type"),
            Some("application/problem+json"),
            "{name}"
        );
    }
    let huge = format!(
        "{{\"to\":{{\"email\":\"a@example.com\"}},\"content\":{{\"subject\":\"s\",\"text\":\"{}\"}}}}",
        "x".repeat(300 * 1024)
    );
    let a = raw(huge.into_bytes()).await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    // A part over its own limit inside a body under 256 KiB.
    let big_part = "y".repeat(200 * 1024);
    let a = d.post("/v1/notifications", json!({"to": {"email": "a@example.com"}, "content": {"subject": "s", "text": big_part}})).await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert_eq!(a.fields(), ["content.text"]);
    // Wrong Idempotency-Key.
    let a = d
        .send(
            d.request(reqwest::Method::POST, "/v1/notifications")
                .header("Idempotency-Key", "x".repeat(300))
                .json(&valid()),
        )
        .await;
    assert_eq!(a.status, 422);
    assert_eq!(a.fields(), ["Idempotency-Key"]);
    // A body of thousands of unknown keys: the first 20 are named, then a count, and the
    // answer stays small (it was 3.4 MB for a 247 KB body).
    let mut many = valid();
    for i in 0..10_000 {
        many[format!("unknown_{i:05}")] = json!(1);
    }
    let a = d.post("/v1/notifications", many).await;
    assert_eq!(a.status, 422);
    let fields = a.fields();
    assert_eq!(fields.len(), 21, "{fields:?}");
    assert_eq!(fields[20], "body");
    assert!(a.text.contains("9980 more fields"), "{}", a.text);
    assert!(a.text.len() < 16 * 1024, "{} bytes", a.text.len());
    // Every answer says what it is, and is not sniffed into something else.
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        d.get("/v1/notifications")
            .await
            .header("x-content-type-options"),
        Some("nosniff")
    );
}

#[tokio::test]
async fn hostile_users_templates_and_ids() {
    let d = Notifyd::start(&[]).await;
    let cases: Vec<(&str, &str, Value, u16, Vec<&str>)> = vec![
        (
            "/v1/users/u1",
            "bad email",
            json!({"email": "@@"}),
            422,
            vec!["email"],
        ),
        (
            "/v1/users/u1",
            "bad phone",
            json!({"phone": "12345"}),
            422,
            vec!["phone"],
        ),
        (
            "/v1/users/u1",
            "bad tz",
            json!({"timezone": "Mars/Olympus"}),
            422,
            vec!["timezone"],
        ),
        (
            "/v1/users/u1",
            "bad locale",
            json!({"locale": "en_US!"}),
            422,
            vec!["locale"],
        ),
        (
            "/v1/users/u1",
            "channels wrong type",
            json!({"channels": {"email": "yes"}}),
            422,
            vec!["channels.email"],
        ),
        (
            "/v1/users/u1",
            "unknown channel pref",
            json!({"channels": {"fax": true}}),
            422,
            vec!["channels.fax"],
        ),
        (
            "/v1/users/u1",
            "unknown field",
            json!({"mail": "a@example.com"}),
            422,
            vec!["mail"],
        ),
        (
            "/v1/users/has%20space",
            "bad id",
            json!({}),
            422,
            vec!["user_id"],
        ),
        (
            "/v1/templates/t1",
            "does not compile",
            json!({"subject": "{{ name", "text": "{% for %}"}),
            422,
            vec!["subject", "text"],
        ),
        (
            "/v1/templates/t1",
            "empty template",
            json!({}),
            422,
            vec!["body"],
        ),
        (
            "/v1/templates/t1",
            "unknown part",
            json!({"body": "x"}),
            422,
            vec!["body"],
        ),
    ];
    for (path, name, body, status, fields) in cases {
        let a = d.put(path, body).await;
        assert_eq!(a.status, status, "{name}: {}", a.text);
        assert_eq!(
            a.header("content-type"),
            Some("application/problem+json"),
            "{name}"
        );
        assert_eq!(a.fields(), fields, "{name}: {}", a.text);
    }
    let long_id = format!("/v1/users/{}", "a".repeat(129));
    assert_eq!(d.get(&long_id).await.status, 422);
    // A path id that does not parse is a 422 naming the parameter, on every route alike.
    for (path, field) in [
        ("/v1/notifications/not-an-id", "id"),
        ("/v1/notifications/not-an-id/deliveries", "id"),
        ("/v1/users/a%20b", "user_id"),
        ("/v1/templates/%C3%A9", "template_id"),
        ("/v1/groups/a!b/members", "group_id"),
    ] {
        let a = d.get(path).await;
        assert_eq!(
            (a.status, a.fields()),
            (422, vec![field.to_owned()]),
            "{path}: {}",
            a.text
        );
    }
    let both = d.put("/v1/groups/a!b/members/c%20d", json!({})).await;
    assert_eq!(both.fields(), ["group_id", "user_id"], "{}", both.text);
    assert_eq!(both.status, 422);
    assert_eq!(d.get("/v1/notifications?limit=0").await.fields(), ["limit"]);
    assert_eq!(
        d.get("/v1/notifications?limit=abc").await.fields(),
        ["limit"]
    );
    assert_eq!(
        d.get("/v1/notifications?status=done").await.fields(),
        ["status"]
    );
    let a = d
        .send(
            d.request(
                reqwest::Method::PATCH,
                "/v1/notifications/ntf_01kkkkkkkkkkkkkkkkkkkkkkkk",
            )
            .json(&json!({"sendAt": "x"})),
        )
        .await;
    assert_eq!(a.status, 422);
    let nf = d.get("/v1/nothing-here").await;
    assert_eq!(
        (nf.status, nf.header("content-type")),
        (404, Some("application/problem+json"))
    );
    let mna = d
        .send(d.request(reqwest::Method::POST, "/v1/users/u1"))
        .await;
    assert_eq!(
        (mna.status, mna.header("content-type")),
        (405, Some("application/problem+json"))
    );
}

#[tokio::test]
async fn bad_input_loses_nothing_already_accepted() {
    let d = Notifyd::start(&[]).await;
    let good = d
        .post(
            "/v1/notifications",
            json!({"to": {"email": "keep@example.com"}, "content": {"subject": "s", "text": "t"}, "send_at": in_secs(3600.0)}),
        )
        .await;
    assert_eq!(good.status, 202);
    for _ in 0..20 {
        let a = d
            .send(
                d.request(reqwest::Method::POST, "/v1/notifications")
                    .body("{{{{"),
            )
            .await;
        assert_eq!(a.status, 400);
    }
    let id = good.body["id"].as_str().unwrap();
    let n = d.get(&format!("/v1/notifications/{id}")).await;
    assert_eq!(n.body["status"], "scheduled");
    assert_eq!(d.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn every_v1_route_needs_the_api_key() {
    let d = Notifyd::start(&[]).await;
    let client = reqwest::Client::new();
    for (method, path) in [
        ("GET", "/v1/notifications"),
        ("POST", "/v1/notifications"),
        ("GET", "/v1/users/a"),
        ("PUT", "/v1/templates/t"),
    ] {
        for auth in [None, Some("Bearer wrong"), Some("Basic dGVzdA==")] {
            let mut req = client.request(method.parse().unwrap(), d.url(path));
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let a = d.send(req).await;
            assert_eq!(a.status, 401, "{method} {path} {auth:?}");
            assert_eq!(a.header("content-type"), Some("application/problem+json"));
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        }
    }
    assert_eq!(d.send(client.get(d.url("/healthz"))).await.status, 200);
    assert_eq!(d.send(client.get(d.url("/openapi.json"))).await.status, 200);
}

#[tokio::test]
async fn a_generated_api_key_is_saved_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let mut d = Notifyd::start_process(&[]).await;
    // The harness passes NOTIFY_API_KEY; start a second one without it.
    d.kill9();
    let parent = tempfile::tempdir().unwrap();
    // A directory notifyd makes itself (the tempdir is 0700 already).
    let data = parent.path().join("data");
    let dir = &data;
    let port = notify_tests::free_port();
    let out = std::process::Command::new(std::env::var("NOTIFYD_BIN").unwrap_or_else(|_| {
        std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("notifyd")
            .display()
            .to_string()
    }))
    .env_clear()
    .env("NOTIFY_ADDR", format!("127.0.0.1:{port}"))
    .env("NOTIFY_DATA_DIR", dir)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let mut child = out;
    let key_path = dir.join("api-key");
    let up = notify_tests::wait_until(Duration::from_secs(20), || {
        key_path.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(up, "notifyd did not start");
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let client = reqwest::Client::new();
    let ok = client
        .get(format!("http://127.0.0.1:{port}/v1/notifications"))
        .bearer_auth(key.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The data directory and everything in it are this user's alone: the database holds
    // webhook secrets, the outbox reset links and unsubscribe tokens.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700);
    for file in ["notify.db", "lock"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(key.trim()),
        "printed once at first start"
    );
}

#[tokio::test]
async fn the_served_openapi_spec_and_the_routes_agree() {
    let d = Notifyd::start(&[]).await;
    let spec = d.get("/openapi.json").await;
    assert_eq!(spec.status, 200);
    assert_eq!(spec.body["openapi"].as_str().unwrap().get(..3), Some("3.1"));
    let paths = spec.body["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in ["get", "put", "post", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            documented.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path
                .replace("{user_id}", "u1")
                .replace("{template_id}", "t1")
                .replace("{group_id}", "g1")
                .replace("{category_id}", "c1")
                .replace("{token}", "not-a-token")
                .replace("{webhook_id}", "whk_01KAZ3Q1P3V1NQ9ZC7W2QF6T1R")
                .replace("{id}", "ntf_01kkkkkkkkkkkkkkkkkkkkkkkk");
            let a = d
                .send(
                    d.request(method.to_uppercase().parse().unwrap(), &concrete)
                        .json(&json!({})),
                )
                .await;
            // Served: anything but "no such route" / "method not allowed".
            assert!(
                a.status != 405 && !a.body["type"].as_str().unwrap_or("").ends_with("/no-route"),
                "{method} {path} is documented but not served: {}",
                a.text
            );
            assert!(a.status < 500, "{method} {path}: {}", a.text);
        }
    }
    // And everything served is documented.
    for route in [
        "GET /healthz",
        "GET /openapi.json",
        "PUT /v1/users/{user_id}",
        "GET /v1/users/{user_id}",
        "DELETE /v1/users/{user_id}",
        "PUT /v1/templates/{template_id}",
        "GET /v1/templates/{template_id}",
        "DELETE /v1/templates/{template_id}",
        "PUT /v1/groups/{group_id}",
        "GET /v1/groups/{group_id}",
        "DELETE /v1/groups/{group_id}",
        "GET /v1/groups/{group_id}/members",
        "POST /v1/groups/{group_id}/members",
        "PUT /v1/groups/{group_id}/members/{user_id}",
        "DELETE /v1/groups/{group_id}/members/{user_id}",
        "POST /v1/notifications",
        "GET /v1/notifications",
        "GET /v1/notifications/{id}",
        "DELETE /v1/notifications/{id}",
        "PATCH /v1/notifications/{id}",
        "GET /v1/notifications/{id}/deliveries",
        "GET /v1/users/{user_id}/preferences",
        "PUT /v1/users/{user_id}/preferences",
        "GET /v1/categories/{category_id}",
        "PUT /v1/categories/{category_id}",
        "DELETE /v1/categories/{category_id}",
        "GET /u/{token}",
        "POST /v1/webhooks",
        "GET /v1/webhooks",
        "GET /v1/webhooks/{webhook_id}",
        "DELETE /v1/webhooks/{webhook_id}",
        "POST /v1/webhooks/{webhook_id}/enable",
        "POST /u/{token}",
    ] {
        assert!(
            documented.contains(&route.to_owned()),
            "{route} is served but not documented"
        );
    }
}

#[tokio::test]
async fn smtp_credentials_without_tls_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(notify_tests::notifyd_bin())
        .env_clear()
        .env(
            "NOTIFY_ADDR",
            format!("127.0.0.1:{}", notify_tests::free_port()),
        )
        .env("NOTIFY_DATA_DIR", dir.path())
        .env("NOTIFY_API_KEY", "test-key-0123456789")
        .env("NOTIFY_SMTP_URL", "smtp://user:secret@127.0.0.1:2525")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NOTIFY_SMTP_URL") && stderr.contains("clear text"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the password is not echoed: {stderr}"
    );
}

#[tokio::test]
async fn the_debug_log_holds_no_unsubscribe_token_and_no_webhook_query_secret() {
    // A closed port on loopback: the webhook post fails, and its failure is logged.
    let closed = notify_tests::free_port();
    let d = Notifyd::start_process(&[
        ("RUST_LOG", "debug"),
        ("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("NOTIFY_WEBHOOK_RETRY_PAUSES", "0.1"),
    ])
    .await;
    let hook = d
        .post(
            "/v1/webhooks",
            json!({"url": format!("http://127.0.0.1:{closed}/hook?secret=s3cr3t-query"),
                   "events": ["delivery.sent"]}),
        )
        .await;
    assert_eq!(hook.status, 201, "{}", hook.text);
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
    d.wait_status(
        a.body["id"].as_str().unwrap(),
        &["completed"],
        Duration::from_secs(10),
    )
    .await;
    // The unsubscribe link from the email in the outbox, posted.
    let outbox = d.data_dir.path().join("outbox/email");
    let email = std::fs::read_dir(&outbox)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .find(|m| m.contains("List-Unsubscribe:"))
        .expect("an email with an unsubscribe link");
    let link = email
        .lines()
        .find_map(|l| l.strip_prefix("List-Unsubscribe: <"))
        .unwrap()
        .trim_end_matches('>')
        .to_owned();
    let token = link.rsplit('/').next().unwrap().to_owned();
    assert!(token.len() > 20, "{link}");
    let r = reqwest::Client::new().post(&link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Until the webhook's failures are in the log.
    let logged = notify_tests::wait_until(Duration::from_secs(10), || {
        d.log().contains("webhook post failed")
    })
    .await;
    let log = d.log();
    assert!(logged, "no webhook failure logged:\n{log}");
    assert!(
        log.contains("/u/{token}"),
        "the request span names the route"
    );
    assert!(!log.contains(&token), "the unsubscribe token is in the log");
    assert!(
        !log.contains("s3cr3t-query"),
        "the webhook URL's query is in the log"
    );
}

#[tokio::test]
async fn a_client_past_30_failed_authentications_a_minute_is_answered_429_but_known_keys_get_in() {
    let d = Notifyd::start(&[]).await;
    // The deployment's key, used once: known in memory from now on.
    assert_eq!(d.get("/v1/notifications").await.status, 200);
    let wrong = |i: usize| {
        d.send(
            reqwest::Client::new()
                .get(d.url("/v1/notifications"))
                .bearer_auth(format!("nk_wrong_{i}")),
        )
    };
    for i in 0..30 {
        assert_eq!(wrong(i).await.status, 401, "failure {i}");
    }
    // The bucket refills at one failure every 2 s: a slow machine may see a further 401 now
    // and then, never a run of them.
    let mut later = Vec::new();
    for i in 30..60 {
        let a = wrong(i).await;
        if a.status == 429 {
            assert!(a.header("retry-after").is_some());
        }
        later.push(a.status);
    }
    assert!(
        later.iter().filter(|s| **s == 429).count() >= 20,
        "{later:?}"
    );
    // No credential is still a plain 401; the known key still gets in.
    let none = d
        .send(reqwest::Client::new().get(d.url("/v1/notifications")))
        .await;
    assert_eq!(none.status, 401);
    assert_eq!(d.get("/v1/notifications").await.status, 200);
}
