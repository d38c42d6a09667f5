//! The shipped artefacts as deployed: `aws-local up` runs the five function binaries as
//! processes under their Runtime APIs, with the environment, batch sizes, timeouts and
//! concurrency `template.yaml` gives them (100 recipients a dispatch job, metrics on), behind
//! the AWS fault proxy. A group send far larger than one job goes through them with single
//! sends beside it. Every member gets exactly one email, every notification completes, and
//! the functions' own EMF lines count what was sent. In-process handler tests never installed
//! the EMF recorder: this is the test that saw its hang (issue 31).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method as M;
use serde_json::{Value, json};

use crate::aws_local::{Up, call, sent, up_with};

/// The EMF documents among a function's log lines.
fn emf_documents(log: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|d| d.get("_aws").is_some())
        .collect()
}

/// The sum of `metric` over documents whose dimensions include every `(name, value)`.
fn emf_sum(docs: &[Value], metric: &str, labels: &[(&str, &str)]) -> f64 {
    docs.iter()
        .filter(|d| labels.iter().all(|(k, v)| d[*k] == *v))
        .filter_map(|d| d.get(metric))
        .map(|v| match v {
            Value::Array(values) => values.iter().filter_map(Value::as_f64).sum(),
            other => other.as_f64().unwrap_or(0.0),
        })
        .sum()
}

/// Each document keeps to CloudWatch's limits: at most 100 values a metric, 100 metrics.
fn check_limits(function: &str, docs: &[Value]) {
    for d in docs {
        let defined = d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap_or_else(|| panic!("{function}: no metric directive in {d}"));
        assert!(defined.len() <= 100, "{function}: {d}");
        for m in defined {
            let name = m["Name"].as_str().unwrap();
            let value = d
                .get(name)
                .unwrap_or_else(|| panic!("{function}: {name} has no value in {d}"));
            if let Some(values) = value.as_array() {
                assert!(
                    values.len() <= 100,
                    "{function}: {} values of {name}",
                    values.len()
                );
            }
        }
    }
}

/// How many posts were tried again after a 5xx (each may have been accepted and counted).
static RETRIED_POSTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Posts a notification as a client would: a 5xx is tried again under the same key.
async fn post_notification(up: &Up, key: &str, body: Value) -> String {
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let response = client
            .post(format!("{}/v1/notifications", up.api))
            .bearer_auth(&up.key)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            202 => return answer["id"].as_str().unwrap().to_owned(),
            500..=599 => {
                RETRIED_POSTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            _ => panic!("{key}: {status} {answer}"),
        }
    }
    panic!("{key}: the api kept failing");
}

/// Waits until every notification is `completed` (or the bound passes), reading through the
/// API; answers each one's last state.
async fn wait_completed(up: &Up, ids: &[String], bound: Duration) -> HashMap<String, Value> {
    let start = Instant::now();
    let mut done = HashMap::new();
    loop {
        for id in ids
            .iter()
            .filter(|id| !done.contains_key(*id))
            .cloned()
            .collect::<Vec<_>>()
        {
            let (status, n) = call(up, M::GET, &format!("/v1/notifications/{id}"), None).await;
            if status == 200 && n["status"] == "completed" {
                done.insert(id, n);
            }
        }
        if done.len() == ids.len() {
            return done;
        }
        if start.elapsed() > bound {
            let mut pending = Vec::new();
            for id in ids.iter().filter(|id| !done.contains_key(*id)) {
                pending.push(
                    call(up, M::GET, &format!("/v1/notifications/{id}"), None)
                        .await
                        .1,
                );
            }
            panic!(
                "{} of {} notifications not completed within {bound:?}: {pending:?}",
                pending.len(),
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The emails the emulator's SES took, counted by recipient.
fn emails_by_recipient(up: &Up) -> HashMap<String, usize> {
    let sent = sent(up);
    let mut by = HashMap::new();
    for m in sent["emails"].as_array().unwrap() {
        let raw = m["raw_data"].as_str().unwrap();
        let to = raw
            .lines()
            .find_map(|l| l.strip_prefix("To: "))
            .unwrap_or_default()
            .trim()
            .to_owned();
        *by.entry(to).or_insert(0) += 1;
    }
    by
}

/// Makes `members` users `m0000`… with an email each, and the group `big` of all of them.
async fn big_group(up: &Up, members: usize) {
    futures::stream::iter(0..members)
        .map(|i| async move {
            let (status, body) = call(
                up,
                M::PUT,
                &format!("/v1/users/m{i:04}"),
                Some(json!({"email": format!("m{i:04}@example.org")})),
            )
            .await;
            assert_eq!(status, 200, "{body}");
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let (status, body) = call(up, M::PUT, "/v1/groups/big", Some(json!({"name": "Big"}))).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = (0..members).map(|i| format!("m{i:04}")).collect();
    // 200 a request: on moto, 1,000 members in one request can outlast the api function's
    // 10 s timeout on a loaded machine (a CI run saw the gateway's 503), which is about moto's
    // write speed, not what these tests check.
    for chunk in ids.chunks(200) {
        let (status, body) = call(
            up,
            M::POST,
            "/v1/groups/big/members",
            Some(json!({"add": chunk, "remove": []})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// A group send of `members` and `singles` single sends through `up`; checks that each
/// recipient got exactly one email and that every notification completed with all sent.
async fn send_and_check(up: &Up, members: usize, singles: usize, bound: Duration) {
    let mut ids = vec![
        post_notification(
            up,
            "group-send",
            json!({"to": {"group_id": "big"}, "content": {"subject": "To all", "text": "Hello"}}),
        )
        .await,
    ];
    for i in 0..singles {
        ids.push(
            post_notification(
                up,
                &format!("single-{i}"),
                json!({"to": {"email": format!("single{i}@example.net")},
                       "content": {"subject": "To one", "text": "Hello"}}),
            )
            .await,
        );
    }
    let done = wait_completed(up, &ids, bound).await;
    let group = &done[&ids[0]];
    assert_eq!(group["counts"]["sent"], members, "{group}");
    assert_eq!(group["counts"]["failed"], 0, "{group}");
    for id in &ids[1..] {
        assert_eq!(done[id]["counts"]["sent"], 1, "{}", done[id]);
    }
    let emails = emails_by_recipient(up);
    let mut wrong = Vec::new();
    for to in (0..members)
        .map(|i| format!("m{i:04}@example.org"))
        .chain((0..singles).map(|i| format!("single{i}@example.net")))
    {
        let n = emails.get(&to).copied().unwrap_or(0);
        if n != 1 {
            wrong.push((to, n));
        }
    }
    assert!(
        wrong.is_empty(),
        "recipients without exactly one email: {wrong:?}"
    );
    assert_eq!(emails.values().sum::<usize>(), members + singles);
}

#[tokio::test]
async fn a_2000_member_group_and_singles_go_through_the_shipped_functions_under_faults_and_their_emf_counts_them()
 {
    const MEMBERS: usize = 2000;
    const SINGLES: usize = 20;
    let logs = tempfile::tempdir().unwrap();
    // The proxy starts with no faults, so that setting up the users is plain; the faults
    // begin with the sends.
    let up = up_with(&["--faults", "{}", "--log-dir", logs.path().to_str().unwrap()]);
    big_group(&up, MEMBERS).await;

    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(up.state_dir.path().join("state.json")).unwrap(),
    )
    .unwrap();
    let proxy = state["proxy"].as_str().expect("the fault proxy's URL");
    let faults = json!({
        "dynamodb.throttle": 0.03,
        "dynamodb.transaction_conflict": 0.03,
        "dynamodb.internal_error": 0.01,
        "dynamodb.unprocessed": 0.1,
        "sqs.batch_failed": 0.05,
        "sqs.internal_error": 0.01,
        "sqs.duplicate": 0.05,
        "ses.throttle": 0.02,
    });
    let set = reqwest::Client::new()
        .post(format!("{proxy}/_faults"))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success(), "{}", set.text().await.unwrap());

    send_and_check(&up, MEMBERS, SINGLES, Duration::from_secs(300)).await;

    let injected: Value = reqwest::get(format!("{proxy}/_faults"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    eprintln!("faults injected: {}", injected["injected"]);

    // Each function's metrics, as CloudWatch would extract them from its log group. The
    // dispatch function flushes after each invocation; so the sums are complete once every
    // notification completed and the last invocation answered.
    let dispatch = emf_documents(&logs.path().join("DispatchFunction.log"));
    let fanout = emf_documents(&logs.path().join("FanoutFunction.log"));
    let api = emf_documents(&logs.path().join("ApiFunction.log"));
    for (name, docs) in [("dispatch", &dispatch), ("fanout", &fanout), ("api", &api)] {
        assert!(!docs.is_empty(), "{name} wrote no EMF document");
        check_limits(name, docs);
        assert!(
            docs.iter().all(|d| d["function"] == name),
            "{name}: {docs:?}"
        );
    }
    let total = (MEMBERS + SINGLES) as f64;
    let start = Instant::now();
    loop {
        let dispatch = emf_documents(&logs.path().join("DispatchFunction.log"));
        let sent = emf_sum(
            &dispatch,
            "notify_deliveries_total",
            &[("channel", "email"), ("outcome", "sent")],
        );
        if sent >= total || start.elapsed() > Duration::from_secs(10) {
            assert_eq!(
                sent, total,
                "notify_deliveries_total{{outcome=sent}} in dispatch's EMF"
            );
            let latencies: usize = dispatch
                .iter()
                .filter(|d| d["channel"] == "email")
                .filter_map(|d| d["notify_provider_latency_seconds"].as_array())
                .map(Vec::len)
                .sum();
            assert!(
                latencies >= MEMBERS + SINGLES,
                "{latencies} provider latencies for {total} sends"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        emf_sum(&fanout, "notify_fanout_recipients_total", &[]),
        total,
        "fanout's EMF"
    );
    // A post answered 5xx may have been accepted and counted before its answer failed.
    let accepted = emf_sum(
        &api,
        "notify_notifications_accepted_total",
        &[("when", "now")],
    );
    let retried = RETRIED_POSTS.load(std::sync::atomic::Ordering::SeqCst) as f64;
    assert!(
        (1 + SINGLES) as f64 <= accepted && accepted <= (1 + SINGLES) as f64 + retried,
        "api's EMF: {accepted} accepted, {retried} posts tried again"
    );
}

#[tokio::test]
async fn aws_local_up_sends_to_a_1000_member_group() {
    let up = up_with(&[]);
    big_group(&up, 1000).await;
    send_and_check(&up, 1000, 0, Duration::from_secs(180)).await;
}
