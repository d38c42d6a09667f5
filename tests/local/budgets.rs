//! A template is its author's code run on our machine: every render has a budget (issue 32).
//! On notifyd, over real HTTP and SMTP: a template that runs away on any data is refused at
//! `PUT` naming its part; one that runs away only on a send's real data fails that delivery
//! permanently, at once, and the service answers throughout and after a restart; a template
//! that renders 50 MB is refused; the console's preview keeps to the same budget.

use std::time::{Duration, Instant};

use notify_tests::{Notifyd, SmtpSink};
use serde_json::json;

const NESTED: &str = "{% for i in range(100000) %}{% for j in range(100000) %}{% for k in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}";

#[tokio::test]
async fn a_template_that_runs_away_on_any_data_is_refused_at_put_naming_its_part() {
    let d = Notifyd::start(&[]).await;
    let cases = [
        ("loops", json!({"subject": "Hi", "text": NESTED}), "text"),
        (
            "huge",
            json!({"subject": "Hi", "html": r#"{{ "x" * 50000000 }}"#}),
            "html",
        ),
        (
            "long subject",
            json!({"subject": r#"{{ "s" * 5000 }}"#, "text": "t"}),
            "subject",
        ),
        (
            "recursion",
            json!({"sms": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"}),
            "sms",
        ),
    ];
    for (name, body, part) in cases {
        let started = Instant::now();
        let a = d
            .put(&format!("/v1/templates/{}", name.replace(' ', "-")), body)
            .await;
        assert_eq!(a.status, 422, "{name}: {}", a.text);
        let fields: Vec<&str> = a.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [part], "{name}: {}", a.text);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} took {:?}",
            started.elapsed()
        );
        assert_eq!(
            d.get(&format!("/v1/templates/{}", name.replace(' ', "-")))
                .await
                .status,
            404,
            "{name}: nothing stored"
        );
    }
    // An ordinary template with a loop is stored.
    let ok = d
        .put(
            "/v1/templates/order",
            json!({"subject": "Order", "text": "{% for l in lines %}{{ l }}\n{% endfor %}"}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[tokio::test]
async fn a_template_that_runs_away_on_real_data_fails_its_delivery_permanently_and_the_service_answers()
 {
    let smtp = SmtpSink::start().await;
    let mut d = Notifyd::start_process(&[("NOTIFY_SMTP_URL", &smtp.url())]).await;
    // Loops as long as the data asks: harmless on the sample data of the trial render.
    let runaway = "{% for i in range(n) %}{% for j in range(n) %}{% for k in range(n) %}x{% endfor %}{% endfor %}{% endfor %}";
    let put = d
        .put(
            "/v1/templates/runaway",
            json!({"subject": "Hi", "text": runaway}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let mut ids = Vec::new();
    for i in 0..4 {
        let a = d
            .post(
                "/v1/notifications",
                json!({"to": {"email": format!("r{i}@example.org")},
                       "template": {"id": "runaway", "data": {"n": 100000}}}),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.text);
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    let ok = d
        .post(
            "/v1/notifications",
            json!({"to": {"email": "fine@example.org"}, "content": {"subject": "s", "text": "t"}}),
        )
        .await;
    // The service answers while those render: health, and the send beside them.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for _ in 0..10 {
        let h = client
            .get(d.url("/healthz"))
            .send()
            .await
            .expect("/healthz answers");
        assert!(h.status().is_success());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fine = d
        .wait_status(
            ok.body["id"].as_str().unwrap(),
            &["completed"],
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(fine.body["counts"]["sent"], 1, "{}", fine.text);
    for id in &ids {
        let n = d
            .wait_status(
                id,
                &["failed", "completed", "partially_failed"],
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(n.body["status"], "failed", "{}", n.text);
        let deliveries = d.get(&format!("/v1/notifications/{id}/deliveries")).await;
        let delivery = &deliveries.body["items"][0];
        assert_eq!(delivery["status"], "failed", "{}", deliveries.text);
        assert_eq!(
            delivery["attempts"], 1,
            "a budget failure is never retried: {}",
            deliveries.text
        );
        assert!(
            delivery["error"].as_str().unwrap().contains("budget"),
            "{}",
            deliveries.text
        );
    }
    // After a restart nothing of it comes back, and the template can be deleted.
    d.terminate();
    d.restart().await;
    let h = client
        .get(d.url("/healthz"))
        .send()
        .await
        .expect("/healthz answers after a restart");
    assert!(h.status().is_success());
    assert_eq!(d.delete("/v1/templates/runaway").await.status, 204);
    assert_eq!(smtp.count(), 1, "only the fine send went out");
}

#[tokio::test]
async fn half_sent_requests_cannot_exhaust_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Notifyd::start_process(&[
        ("NOTIFY_HEADER_READ_TIMEOUT_SECS", "2"),
        ("NOTIFY_MAX_CONNECTIONS", "64"),
    ])
    .await;
    // A small file limit, as a container or a default `ulimit -n` gives: fewer descriptors
    // than the connections about to be held.
    let pid = d.pid().unwrap().to_string();
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=128:128"])
        .status()
        .expect("prlimit (util-linux)");
    assert!(limited.success());
    let mut held = Vec::new();
    for _ in 0..150 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", d.port))
            .await
            .unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: notifyd\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    // A new client still gets answers while they are held.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for _ in 0..3 {
        let h = client
            .get(d.url("/healthz"))
            .send()
            .await
            .expect("a new client is answered while 150 half-sent requests are held");
        assert!(h.status().is_success());
    }
    // The half-sent requests were cut off at the header timeout.
    let mut first = held.swap_remove(0);
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), first.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "a half-sent request was still open after 10 s"
    );
}
