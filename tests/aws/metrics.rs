//! Metrics on AWS: the EMF document a function writes after an invocation, parsed, with the
//! values of a known send through the real handlers.

use serde_json::{Value, json};

use notify_aws::metrics;
use notify_tests::aws::{ApiHandler, AwsWorld, api_event};

/// The documents whose dimensions include every `(name, value)` in `labels`.
fn value(docs: &[Value], metric: &str, labels: &[(&str, &str)]) -> Option<Value> {
    docs.iter()
        .filter(|d| labels.iter().all(|(k, v)| d[*k] == *v))
        .find_map(|d| d.get(metric).cloned())
}

#[tokio::test]
async fn a_known_send_writes_its_metrics_as_emf() {
    metrics::init("test");
    let w = AwsWorld::start().await;
    let mut api = ApiHandler::new(&w);
    for i in 0..3 {
        let put = api_event(
            "api-put-user.json",
            Some(&format!("/v1/users/e{i}")),
            Some(json!({"email": format!("e{i}@example.org")})),
        );
        assert_eq!(api.call(put).await.status, 200);
    }
    let group = api_event(
        "api-put-user.json",
        Some("/v1/groups/g"),
        Some(json!({"name": "G"})),
    );
    assert_eq!(api.call(group).await.status, 200);
    let add = api_event(
        "api-post-notification-now.json",
        Some("/v1/groups/g/members"),
        Some(json!({"add": ["e0", "e1", "e2"]})),
    );
    assert_eq!(api.call(add).await.status, 200);
    let send = api_event(
        "api-post-notification-now.json",
        None,
        Some(json!({"to": {"group_id": "g"}, "content": {"subject": "s", "text": "t"}})),
    );
    assert_eq!(api.call(send).await.status, 202);
    w.run_queues().await;

    let mut out = Vec::new();
    metrics::flush_to(&mut out).unwrap();
    let docs: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!docs.is_empty());
    for d in &docs {
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "notify",
            "{d}"
        );
        assert_eq!(d["function"], "test");
    }
    let get = |metric, labels: &[(&str, &str)]| {
        value(&docs, metric, labels).unwrap_or_else(|| panic!("no {metric} {labels:?} in {docs:?}"))
    };
    assert_eq!(
        get("notify_notifications_accepted_total", &[("when", "now")]),
        1
    );
    assert_eq!(
        get(
            "notify_deliveries_total",
            &[("channel", "email"), ("outcome", "sent")]
        ),
        3
    );
    assert_eq!(get("notify_fanout_recipients_total", &[]), 3);
    assert_eq!(get("notify_fanout_pages_total", &[]), 1);
    let latencies = get("notify_provider_latency_seconds", &[("channel", "email")]);
    assert_eq!(latencies.as_array().unwrap().len(), 3);
    assert!(get("notify_dispatch_duration_seconds", &[]).is_array());

    // Flushed once: the next document starts from zero.
    let mut again = Vec::new();
    metrics::flush_to(&mut again).unwrap();
    assert!(again.is_empty(), "{}", String::from_utf8_lossy(&again));
}
