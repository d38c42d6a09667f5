//! `GET /metrics` on `notifyd`: Prometheus text, behind the API key, with the values of a known
//! send. (The real binary: the recorder is one per process.)

use std::time::Duration;

use notify_tests::Notifyd;
use serde_json::json;

/// The value of the sample `name{labels}`, where every label in `labels` matches.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let series = l.split_whitespace().next().unwrap_or("");
            series == name || series.starts_with(&format!("{name}{{"))
        })
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_a_known_send_in_prometheus_text() {
    let d = Notifyd::start_process(&[]).await;
    let users = (0..3)
        .map(|i| {
            (
                format!("m{i}"),
                json!({"email": format!("m{i}@example.org")}),
            )
        })
        .chain([("nomail".to_owned(), json!({"phone": "+14155550100"}))])
        .collect();
    d.put_group_of("g", users).await;
    let a = d
        .post(
            "/v1/notifications",
            json!({"to": {"group_id": "g"}, "content": {"subject": "s", "text": "t"}}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let id = a.body["id"].as_str().unwrap().to_owned();
    d.wait_status(&id, &["completed"], Duration::from_secs(20))
        .await;

    let anonymous = reqwest::get(d.url("/metrics")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let m = d.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = &m.text;
    let value = |name, labels: &[&str]| {
        sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    assert_eq!(
        value("notify_notifications_accepted_total", &["when=\"now\""]),
        1.0
    );
    let sent = ["channel=\"email\"", "outcome=\"sent\""];
    assert_eq!(value("notify_deliveries_total", &sent), 3.0);
    let skipped = ["channel=\"email\"", "outcome=\"skipped\""];
    assert_eq!(value("notify_deliveries_total", &skipped), 1.0);
    assert_eq!(value("notify_fanout_recipients_total", &[]), 4.0);
    assert_eq!(value("notify_fanout_pages_total", &[]), 1.0);
    assert_eq!(
        value(
            "notify_provider_latency_seconds_count",
            &["channel=\"email\""]
        ),
        3.0
    );
    assert!(value("notify_dispatch_duration_seconds_count", &[]) >= 1.0);
}
