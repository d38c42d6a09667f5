//! Delivery under faults on the AWS path: the real dispatch handler with SES behind a
//! fault-injecting wrapper (20% transient errors, 5% throttling, three suppressed addresses),
//! against moto, with the SQS visibility backoff and the event source mapping played by the test.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use notify_aws::email::SesEmail;
use notify_aws::handlers::{DispatchConsumer, dispatch_event, fanout_event};
use notify_aws::wiring;
use notify_tests::aws::{ApiHandler, AwsWorld, api_event};
use notify_tests::faults::FaultyEmail;
use serde_json::{Value, json};

const MEMBERS: usize = 200;
const REJECTED: [usize; 3] = [7, 77, 177];

fn address(i: usize) -> String {
    format!("f{i:03}@example.org")
}

/// Hands the handlers what is on the queues until the notification is final, as the event
/// source mappings would: a reported message stays invisible for the backoff it was given.
pub(crate) async fn run_until_final(
    w: &AwsWorld,
    api: &mut ApiHandler,
    dispatch: &DispatchConsumer,
    id: &str,
) -> (Value, usize) {
    let fanout = wiring::fanout(&w.config, &w.sdk);
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut reported = 0;
    loop {
        assert!(Instant::now() < deadline, "the send did not finish");
        let e = w.receive_event(&w.config.fanout_queue_url, 1).await;
        if !e.records.is_empty() {
            let r = fanout_event(&fanout, e.clone(), w.config.fanout_max_receives).await;
            assert!(r.batch_item_failures.is_empty(), "{r:?}");
            w.settle(&w.config.fanout_queue_url, &e, &r).await;
            continue;
        }
        let e = w.receive_event(&w.config.dispatch_queue_url, 10).await;
        if !e.records.is_empty() {
            let r =
                dispatch_event(dispatch, e.clone(), notify_tests::aws::dispatch_deadline()).await;
            reported += r.batch_item_failures.len();
            w.settle(&w.config.dispatch_queue_url, &e, &r).await;
            continue;
        }
        let n = api
            .call(api_event(
                "api-get-notification.json",
                Some(&format!("/v1/notifications/{id}")),
                None,
            ))
            .await;
        if !["queued", "sending"].contains(&n.body["status"].as_str().unwrap()) {
            return (n.body, reported);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn emails_per_address(w: &AwsWorld) -> HashMap<String, usize> {
    let mut per_address = HashMap::new();
    for e in w.moto.raw_emails().await {
        *per_address
            .entry(e["destinations"][0].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    per_address
}

#[tokio::test]
async fn transient_errors_and_throttling_end_in_one_email_each_and_retry_sends_only_the_failed() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let w = AwsWorld::start().await;
    let mut api = ApiHandler::new(&w);
    futures::stream::iter(0..MEMBERS)
        .map(|i| {
            let mut api = api.clone();
            async move {
                let a = api
                    .call(api_event(
                        "api-put-user.json",
                        Some(&format!("/v1/users/f{i:03}")),
                        Some(json!({"email": address(i)})),
                    ))
                    .await;
                assert_eq!(a.status, 200);
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    assert_eq!(
        api.call(api_event(
            "api-put-user.json",
            Some("/v1/groups/all"),
            Some(json!({"name": "All"}))
        ))
        .await
        .status,
        200
    );
    let ids: Vec<String> = (0..MEMBERS).map(|i| format!("f{i:03}")).collect();
    let add = api
        .call(api_event(
            "api-post-notification-now.json",
            Some("/v1/groups/all/members"),
            Some(json!({"add": ids})),
        ))
        .await;
    assert_eq!(add.status, 200, "{:?}", add.body);

    let ses = SesEmail::new(aws_sdk_sesv2::Client::new(&w.sdk), None);
    let faulty = Arc::new(FaultyEmail::new(
        ses,
        0.20,
        0.05,
        REJECTED.iter().map(|i| address(*i)),
    ));
    let dispatch = wiring::dispatch_with(&w.config, &w.sdk, faulty.clone()).unwrap();

    let body = json!({"to": {"group_id": "all"}, "content": {"subject": "Bad day", "text": "Still arrives"}});
    let a = api
        .call(api_event(
            "api-post-notification-now.json",
            None,
            Some(body),
        ))
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let (n, reported) = run_until_final(&w, &mut api, &dispatch, &id).await;
    let (transient, throttles) = (
        faulty.injected_transient.load(Ordering::Relaxed),
        faulty.injected_throttles.load(Ordering::Relaxed),
    );
    eprintln!(
        "first send: {:?}, {transient} transient errors and {throttles} throttles injected, {reported} messages retried",
        started.elapsed()
    );
    assert!(
        transient >= MEMBERS / 10 && throttles >= 3,
        "the faults happened: {transient} transient, {throttles} throttles"
    );
    assert!(
        reported > 0,
        "messages with transient errors came back through the queue"
    );
    assert_eq!(n["status"], "partially_failed", "{n}");
    assert_eq!(
        n["counts"],
        json!({"recipients": MEMBERS, "pending": 0, "sent": MEMBERS - 3, "failed": 3, "skipped": 0, "delivered": 0, "bounced": 0, "complained": 0})
    );

    let per_address = emails_per_address(&w).await;
    for i in 0..MEMBERS {
        let want = usize::from(!REJECTED.contains(&i));
        assert_eq!(
            per_address.get(&address(i)).copied().unwrap_or(0),
            want,
            "{}",
            address(i)
        );
    }
    let mut failed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut e = api_event(
            "api-get-deliveries.json",
            Some(&format!("/v1/notifications/{id}/deliveries")),
            None,
        );
        e["rawQueryString"] = json!(
            cursor
                .as_ref()
                .map(|c| format!("limit=100&cursor={c}"))
                .unwrap_or("limit=100".into())
        );
        e["queryStringParameters"] = json!({"limit": "100"});
        if let Some(c) = &cursor {
            e["queryStringParameters"]["cursor"] = json!(c);
        }
        let page = api.call(e).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        failed.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["status"] == "failed")
                .cloned(),
        );
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(failed.len(), 3);
    for d in &failed {
        assert!(
            d["error"].as_str().unwrap().contains("MessageRejected"),
            "{d}"
        );
        assert_eq!(d["attempts"], 1, "a permanent error is not retried: {d}");
    }

    // The three fix their mailboxes; a retry sends to them, and to no one else.
    faulty.heal();
    let retry = api_event(
        "api-retry-notification.json",
        Some(&format!("/v1/notifications/{id}/retry")),
        None,
    );
    let r = api.call(retry.clone()).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["status"], "sending");
    assert_eq!(
        api.call(retry).await.status,
        409,
        "a second retry while the first runs"
    );
    let (n, _) = run_until_final(&w, &mut api, &dispatch, &id).await;
    assert_eq!(n["status"], "completed", "{n}");
    assert_eq!(
        n["counts"],
        json!({"recipients": MEMBERS, "pending": 0, "sent": MEMBERS, "failed": 0, "skipped": 0, "delivered": 0, "bounced": 0, "complained": 0})
    );
    let per_address = emails_per_address(&w).await;
    for i in 0..MEMBERS {
        assert_eq!(
            per_address.get(&address(i)).copied().unwrap_or(0),
            1,
            "{}",
            address(i)
        );
    }
}

#[tokio::test]
async fn a_retried_message_is_hidden_for_its_backoff_and_its_last_receive_marks_pending_deliveries_failed()
 {
    let w = AwsWorld::start().await;
    let mut api = ApiHandler::new(&w);
    let ses = SesEmail::new(aws_sdk_sesv2::Client::new(&w.sdk), None);
    // Every send fails transiently on its first two attempts.
    let dispatch = wiring::dispatch_with(
        &w.config,
        &w.sdk,
        Arc::new(FaultyEmail::new(ses, 1.0, 0.0, [])),
    )
    .unwrap();
    let body =
        json!({"to": {"email": "down@example.org"}, "content": {"subject": "s", "text": "t"}});
    let a = api
        .call(api_event(
            "api-post-notification-now.json",
            None,
            Some(body),
        ))
        .await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    let fanout = wiring::fanout(&w.config, &w.sdk);
    let e = w.receive_event(&w.config.fanout_queue_url, 1).await;
    fanout_event(&fanout, e.clone(), w.config.fanout_max_receives).await;
    w.settle(&w.config.fanout_queue_url, &e, &Default::default())
        .await;

    let e = w.receive_event(&w.config.dispatch_queue_url, 10).await;
    assert_eq!(e.records.len(), 1);
    let r = dispatch_event(&dispatch, e.clone(), notify_tests::aws::dispatch_deadline()).await;
    assert_eq!(r.batch_item_failures.len(), 1);
    // The backoff (one second here) keeps it away; the queue's own timeout is 180 s.
    assert!(
        w.receive_event(&w.config.dispatch_queue_url, 10)
            .await
            .records
            .is_empty(),
        "not back at once"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut again = w.receive_event(&w.config.dispatch_queue_url, 10).await;
    assert_eq!(again.records.len(), 1, "back after the backoff");

    // Say this is the queue's last receive (maxReceiveCount): the delivery still pending after
    // it is marked failed, and the message goes on to the dead-letter queue.
    again.records[0].attributes.insert(
        "ApproximateReceiveCount".into(),
        w.config.dispatch_max_receives.to_string(),
    );
    let r = dispatch_event(
        &dispatch,
        again.clone(),
        notify_tests::aws::dispatch_deadline(),
    )
    .await;
    assert_eq!(
        r.batch_item_failures.len(),
        1,
        "reported, so SQS moves it to the DLQ"
    );
    let n = api
        .call(api_event(
            "api-get-notification.json",
            Some(&format!("/v1/notifications/{id}")),
            None,
        ))
        .await;
    assert_eq!(n.body["status"], "failed", "{:?}", n.body);
    let d = api
        .call(api_event(
            "api-get-deliveries.json",
            Some(&format!("/v1/notifications/{id}/deliveries")),
            None,
        ))
        .await;
    let error = d.body["items"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("dead-lettered after 5 receives"),
        "{error}"
    );
    assert!(w.moto.raw_emails().await.is_empty());
}
