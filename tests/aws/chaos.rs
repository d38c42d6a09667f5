//! The AWS path under every fault AWS documents, all at once, through the fault proxy
//! (`support/aws_fault_proxy.py`): transaction conflicts, throttling and 500s on every service,
//! partial batches, SQS delivering twice and after visibility timeouts, Lambda killing
//! invocations at their timeout, and a scheduler that fires at the earliest moment allowed.
//! Every recipient must get each message exactly once and every count must be exact.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use notify_aws::wiring;
use notify_tests::aws::{ApiAnswer, ApiHandler, AwsWorld, WorldOptions, api_event};
use notify_tests::lambdas::{LambdaSettings, Lambdas};
use notify_tests::test_log::TestLog;
use serde_json::{Value, json};

const MEMBERS: usize = 300;
const SINGLES: usize = 100;
const WITH_SMS: usize = 20;
/// Singles sent a few seconds ahead (a reserved send within SQS's delay).
const RESERVED: usize = 10;

fn every_fault() -> Value {
    json!({
        "dynamodb.transaction_conflict": 0.10,
        "dynamodb.throttle": 0.05,
        "dynamodb.internal_error": 0.02,
        "dynamodb.unprocessed": 0.20,
        "sqs.batch_failed": 0.20,
        "sqs.internal_error": 0.03,
        "sqs.duplicate": 0.10,
        "ses.throttle": 0.10,
        "sns.throttle": 0.30,
        "scheduler.internal_error": 0.10,
    })
}

fn no_faults() -> Value {
    let mut rates = every_fault();
    for v in rates.as_object_mut().unwrap().values_mut() {
        *v = json!(0.0);
    }
    rates
}

/// A world whose functions run with short timeouts, so that kills and visibility timeouts
/// happen within a test.
async fn world(faults: Value) -> AwsWorld {
    world_with(options(faults)).await
}

/// Short visibility timeouts, so that a message a kill or a failure left comes back soon.
fn options(faults: Value) -> WorldOptions {
    WorldOptions {
        faults: Some(faults),
        fanout_visibility: 8,
        dispatch_visibility: 8,
        ..WorldOptions::default()
    }
}

async fn world_with(options: WorldOptions) -> AwsWorld {
    let mut w = AwsWorld::start_with(options).await;
    w.config.fanout_page_size = 100;
    w.config.recipients_per_job = 10;
    w.config.fanout_time_budget_secs = 2;
    // Sends stop 3 s before the 5 s timeout: enough for an outcome's write through a few of
    // the SDK's retries, as 5 s of 30 are on AWS.
    w.config.dispatch_time_budget_secs = 2;
    w.config.dispatch_send_reserve_ms = 2500;
    w.config.dispatch_lease_secs = 6;
    w.config.retry_base_secs = 1;
    w
}

fn settings() -> LambdaSettings {
    LambdaSettings {
        fanout_timeout: Duration::from_secs(5),
        dispatch_timeout: Duration::from_secs(5),
        dispatch_batch: 10,
        dispatch_concurrency: 3,
        fanout_concurrency: 4,
    }
}

/// A client that retries what the API says is retryable (503), with the same request and the
/// same Idempotency-Key; every 503 must be problem+json.
async fn call(api: &mut ApiHandler, event: Value) -> ApiAnswer {
    for _ in 0..40 {
        let a = api.call(event.clone()).await;
        assert_ne!(a.status, 500, "never a bare 500: {:?}", a.body);
        if a.status != 503 {
            return a;
        }
        assert_eq!(
            a.headers["content-type"], "application/problem+json",
            "{:?}",
            a.headers
        );
        assert_eq!(a.body["status"], 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the API kept answering 503");
}

fn with_key(mut event: Value, key: &str) -> Value {
    event["headers"]["idempotency-key"] = json!(key);
    event
}

/// A group `prefix` of `n` users `<prefix>00`.. with an email address each.
async fn group_of(api: &mut ApiHandler, prefix: &str, n: usize) {
    for i in 0..n {
        let body = json!({"email": format!("{prefix}{i:02}@example.org")});
        let path = format!("/v1/users/{prefix}{i:02}");
        let a = api
            .call(api_event("api-put-user.json", Some(&path), Some(body)))
            .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    let path = format!("/v1/groups/{prefix}");
    let a = api
        .call(api_event(
            "api-put-group.json",
            Some(&path),
            Some(json!({"name": prefix})),
        ))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i:02}")).collect();
    let add = json!({"add": ids, "remove": []});
    let path = format!("/v1/groups/{prefix}/members");
    let a = api
        .call(api_event(
            "api-change-group-members.json",
            Some(&path),
            Some(add),
        ))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
}

fn phone(i: usize) -> String {
    format!("+1555{:07}", i)
}

async fn setup_users(api: &mut ApiHandler) {
    for i in 0..MEMBERS {
        let body = json!({"email": format!("m{i:03}@example.org")});
        let a = call(
            api,
            api_event(
                "api-put-user.json",
                Some(&format!("/v1/users/m{i:03}")),
                Some(body),
            ),
        )
        .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    for i in 0..SINGLES {
        let mut body = json!({"email": format!("s{i:03}@example.net")});
        if i < WITH_SMS {
            body["phone"] = json!(phone(i));
        }
        let a = call(
            api,
            api_event(
                "api-put-user.json",
                Some(&format!("/v1/users/s{i:03}")),
                Some(body),
            ),
        )
        .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    let a = call(
        api,
        api_event(
            "api-put-group.json",
            Some("/v1/groups/everyone"),
            Some(json!({"name": "Everyone"})),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let ids: Vec<String> = (0..MEMBERS).map(|i| format!("m{i:03}")).collect();
    for chunk in ids.chunks(100) {
        let add = api_event(
            "api-change-group-members.json",
            Some("/v1/groups/everyone/members"),
            Some(json!({"add": chunk, "remove": []})),
        );
        let a = call(api, add).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    let g = call(
        api,
        api_event("api-get-group.json", Some("/v1/groups/everyone"), None),
    )
    .await;
    assert_eq!(g.body["member_count"], MEMBERS, "{:?}", g.body);
}

async fn wait_final(
    api: &mut ApiHandler,
    log: &TestLog,
    ids: &[String],
    timeout: Duration,
) -> HashMap<String, Value> {
    let deadline = Instant::now() + timeout;
    let mut done = HashMap::new();
    let mut last = Value::Null;
    while done.len() < ids.len() {
        for id in ids
            .iter()
            .filter(|id| !done.contains_key(*id))
            .cloned()
            .collect::<Vec<_>>()
        {
            let n = call(
                api,
                api_event(
                    "api-get-notification.json",
                    Some(&format!("/v1/notifications/{id}")),
                    None,
                ),
            )
            .await;
            let status = n.body["status"].as_str().unwrap_or_default().to_owned();
            if !["queued", "scheduled", "sending"].contains(&status.as_str()) {
                done.insert(id, n.body);
            } else {
                last = n.body;
            }
        }
        if done.len() < ids.len() {
            let left: Vec<&String> = ids
                .iter()
                .filter(|id| !done.contains_key(*id))
                .take(5)
                .collect();
            assert!(
                Instant::now() < deadline,
                "{} of {} notifications not final, e.g. {left:?}; the last of them read: {last}\n{}",
                ids.len() - done.len(),
                ids.len(),
                log.lines_about(&left.iter().map(|s| s.as_str()).collect::<Vec<_>>(), 80)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    done
}

/// One notification's final state, as `wait_final` waits for it.
async fn wait_final_one(api: &mut ApiHandler, log: &TestLog, id: &str, timeout: Duration) -> Value {
    let mut finals = wait_final(api, log, &[id.to_owned()], timeout).await;
    finals
        .remove(id)
        .expect("wait_final returns every id it waited for")
}

fn count_by(values: impl Iterator<Item = String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_every_fault_at_once_each_message_arrives_exactly_once_and_counts_are_exact() {
    let log = TestLog::start("chaos-every-fault");
    // The template's 10 receives before the dead-letter queue, not the tests' 5. Retries wait
    // 1, 2, 4 ... s: the 10th receive comes ~8.5 min after the first, hence the long wait below.
    //
    // And twice the other chaos tests' time scale (10 s timeouts, 4 s budgets, a 5 s send
    // reserve, a 12 s lease). Here the functions, moto and the fault proxy share two cores
    // under 30 jobs at once: a DynamoDB call takes 50-200 ms, not AWS's 5, so against a 5 s
    // timeout a job's reads before its first send outlasted its budget, and a 100-member
    // fanout page its timeout, often enough that receives ran out (failed here and in CI).
    // At this scale a call is still ~50 times slower, against the timeout, than on AWS.
    let mut w = world_with(WorldOptions {
        dispatch_max_receives: 10,
        fanout_visibility: 16,
        dispatch_visibility: 16,
        ..options(every_fault())
    })
    .await;
    w.config.fanout_time_budget_secs = 4;
    w.config.dispatch_time_budget_secs = 4;
    w.config.dispatch_send_reserve_ms = 5000;
    w.config.dispatch_lease_secs = 12;
    let proxy = w.proxy.as_ref().unwrap();
    let mut api = ApiHandler::new(&w);
    setup_users(&mut api).await;

    let lambdas = Lambdas::start(
        &w,
        wiring::fanout(&w.config, &w.sdk),
        wiring::dispatch(&w.config, &w.sdk).unwrap(),
        LambdaSettings {
            fanout_timeout: Duration::from_secs(10),
            dispatch_timeout: Duration::from_secs(10),
            ..settings()
        },
    );
    let mut ids = Vec::new();
    let group = json!({"to": {"group_id": "everyone"}, "content": {"subject": "To all", "text": "Once each"}});
    let a = call(
        &mut api,
        with_key(
            api_event("api-post-notification-now.json", None, Some(group)),
            "group-1",
        ),
    )
    .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    ids.push(a.body["id"].as_str().unwrap().to_owned());
    for i in 0..SINGLES {
        let mut body = json!({"to": {"user_id": format!("s{i:03}")}, "content": {"subject": "Just you", "text": "Once", "sms": "Once"}});
        if i < WITH_SMS {
            body["channels"] = json!(["email", "sms"]);
        }
        if i >= SINGLES - RESERVED {
            body["send_at"] =
                json!((jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5)).to_string());
        }
        let a = call(
            &mut api,
            with_key(
                api_event("api-post-notification-now.json", None, Some(body)),
                &format!("single-{i}"),
            ),
        )
        .await;
        assert_eq!(a.status, 202, "{:?}", a.body);
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }

    let started = Instant::now();
    let finals = wait_final(&mut api, &log, &ids, Duration::from_secs(600)).await;
    let took = started.elapsed();
    let report = proxy.report().await;
    proxy.set(no_faults()).await;
    let stats = &lambdas.stats;
    let (fanouts, dispatches) = (
        stats.fanout_invocations.load(Ordering::Relaxed),
        stats.dispatch_invocations.load(Ordering::Relaxed),
    );
    let killed = (
        stats.killed_fanout.load(Ordering::Relaxed),
        stats.killed_dispatch.load(Ordering::Relaxed),
    );
    lambdas.stop().await;
    eprintln!(
        "all final in {took:?}: {fanouts} fanout and {dispatches} dispatch invocations, {killed:?} (fanout, dispatch) killed at their timeout; \
         faults injected: {}",
        report["injected"]
    );

    for (id, n) in &finals {
        assert_eq!(n["status"], "completed", "{id}: {n}");
        assert_eq!(n["counts"]["pending"], 0, "{n}");
        assert_eq!(n["counts"]["failed"], 0, "{n}");
        assert_eq!(n["counts"]["skipped"], 0, "{n}");
        assert_eq!(n["counts"]["sent"], n["counts"]["recipients"], "{n}");
    }
    assert_eq!(finals[&ids[0]]["counts"]["recipients"], MEMBERS);

    let emails = count_by(
        w.moto
            .raw_emails()
            .await
            .iter()
            .map(|e| e["destinations"][0].as_str().unwrap().to_owned()),
    );
    let mut want: Vec<String> = (0..MEMBERS)
        .map(|i| format!("m{i:03}@example.org"))
        .collect();
    want.extend((0..SINGLES).map(|i| format!("s{i:03}@example.net")));
    let missing: Vec<&String> = want.iter().filter(|a| !emails.contains_key(*a)).collect();
    let repeated: Vec<(&String, &usize)> = emails.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} addresses got nothing: {missing:?}",
        missing.len()
    );
    assert!(
        repeated.is_empty(),
        "{} addresses got more than one email: {repeated:?}",
        repeated.len()
    );
    assert_eq!(emails.len(), want.len());
    let sms = count_by(
        w.moto
            .sms()
            .await
            .iter()
            .map(|s| s["phone_number"].as_str().unwrap().to_owned()),
    );
    assert_eq!(
        sms,
        (0..WITH_SMS)
            .map(|i| (phone(i), 1))
            .collect::<HashMap<_, _>>()
    );

    // Each fault really happened.
    for fault in every_fault().as_object().unwrap().keys() {
        if fault == "scheduler.internal_error" {
            continue; // sends due within 15 minutes make no schedule
        }
        assert!(
            report["injected"][fault].as_u64().unwrap_or(0) > 0,
            "{fault} was never injected: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_aws_keeps_failing_the_api_answers_503_and_a_retry_with_the_same_key_sends_once() {
    let log = TestLog::start("chaos-aws-keeps-failing");
    let w = world(no_faults()).await;
    let proxy = w.proxy.as_ref().unwrap();
    let mut api = ApiHandler::new(&w);
    let body = json!({"to": {"email": "retry@example.org"}, "content": {"subject": "Once", "text": "Only once"}});
    let post = with_key(
        api_event("api-post-notification-now.json", None, Some(body)),
        "client-retry-1",
    );

    // DynamoDB fails every call: nothing is stored, the answer says to retry.
    proxy.set(json!({"dynamodb.internal_error": 1.0})).await;
    let a = api.call(post.clone()).await;
    assert_eq!(a.status, 503, "{:?}", a.body);
    assert_eq!(a.headers["content-type"], "application/problem+json");
    assert_eq!(a.headers["retry-after"], "1");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{:?}",
        a.body
    );

    // The notification is stored, then SQS fails: still 503, and nothing is lost.
    proxy
        .set(json!({"dynamodb.internal_error": 0.0, "sqs.internal_error": 1.0}))
        .await;
    let a = api.call(post.clone()).await;
    assert_eq!(a.status, 503, "{:?}", a.body);

    // The client's retry with the same key: the same notification, sent once.
    proxy.set(no_faults()).await;
    let lambdas = Lambdas::start(
        &w,
        wiring::fanout(&w.config, &w.sdk),
        wiring::dispatch(&w.config, &w.sdk).unwrap(),
        settings(),
    );
    let a = api.call(post.clone()).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let again = api.call(post.clone()).await;
    assert_eq!(again.body["id"], a.body["id"], "a replay");
    let n = wait_final_one(&mut api, &log, &id, Duration::from_secs(60)).await;
    assert_eq!(n["status"], "completed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    lambdas.stop().await;
    let to = w
        .moto
        .raw_emails()
        .await
        .iter()
        .filter(|e| e["destinations"][0] == "retry@example.org")
        .count();
    assert_eq!(to, 1);
}

/// A dispatch invocation killed at its timeout in the middle of a batch: nothing is lost, and
/// only a send that was in SES's hands at the kill can repeat. With a send reserve longer than
/// a send, no send is cut off and nothing repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dispatch_killed_at_its_timeout_loses_nothing_and_repeats_only_a_send_cut_off() {
    let log = TestLog::start("chaos-dispatch-killed");
    const GROUP: usize = 40;
    for (reserve_ms, may_repeat) in [(50, true), (1500, false)] {
        // Every kill uses up one of the message's receives, and how many sends fit in an
        // invocation depends on the machine: enough receives that a slow one still finishes
        // (the dead-letter queue after kills is not what this test is about).
        let mut w = world_with(WorldOptions {
            dispatch_max_receives: 40,
            ..options(json!({"ses.delay_ms": 300}))
        })
        .await;
        w.config.dispatch_time_budget_secs = 60;
        w.config.dispatch_send_reserve_ms = reserve_ms;
        w.config.dispatch_lease_secs = 3;
        let mut api = ApiHandler::new(&w);
        group_of(&mut api, "k", GROUP).await;
        let lambdas = Lambdas::start(
            &w,
            wiring::fanout(&w.config, &w.sdk),
            wiring::dispatch(&w.config, &w.sdk).unwrap(),
            LambdaSettings {
                dispatch_timeout: Duration::from_secs(2),
                ..settings()
            },
        );
        let body = json!({"to": {"group_id": "k"}, "content": {"subject": "Cut", "text": "Off"}});
        let a = api
            .call(api_event(
                "api-post-notification-now.json",
                None,
                Some(body),
            ))
            .await;
        let id = a.body["id"].as_str().unwrap().to_owned();
        let n = wait_final_one(&mut api, &log, &id, Duration::from_secs(300)).await;
        assert_eq!(n["status"], "completed", "{}", n);
        assert_eq!(n["counts"]["sent"], GROUP);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let killed = lambdas.stats.killed_dispatch.load(Ordering::Relaxed);
        lambdas.stop().await;
        let emails = count_by(
            w.moto
                .raw_emails()
                .await
                .iter()
                .map(|e| e["destinations"][0].as_str().unwrap().to_owned()),
        );
        assert_eq!(emails.len(), GROUP, "every member got the email");
        let repeats: usize = emails.values().map(|n| n - 1).sum();
        eprintln!(
            "send reserve {reserve_ms} ms: {killed} dispatch invocations killed, {repeats} sends repeated"
        );
        if may_repeat {
            assert!(killed > 0, "the kills happened");
            // At most the sends in flight at each kill: one per message of the batch.
            assert!(
                repeats <= killed * 10,
                "{repeats} repeats for {killed} kills"
            );
        } else {
            assert_eq!(repeats, 0, "no send was cut off");
        }
    }
}

/// SES pauses the account's sending: the deliveries wait, pending, without using up attempts
/// and without a call per delivery, and go out once SES sends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_ses_account_makes_deliveries_wait_not_fail() {
    let log = TestLog::start("chaos-ses-paused");
    const GROUP: usize = 30;
    let mut w = world(json!({"ses.paused": 1.0})).await;
    w.config.channel_pause_secs = 2;
    let proxy = w.proxy.as_ref().unwrap();
    let mut api = ApiHandler::new(&w);
    group_of(&mut api, "p", GROUP).await;
    let lambdas = Lambdas::start(
        &w,
        wiring::fanout(&w.config, &w.sdk),
        wiring::dispatch(&w.config, &w.sdk).unwrap(),
        settings(),
    );
    let body =
        json!({"to": {"group_id": "p"}, "content": {"subject": "Paused", "text": "Then sent"}});
    let a = api
        .call(api_event(
            "api-post-notification-now.json",
            None,
            Some(body),
        ))
        .await;
    let id = a.body["id"].as_str().unwrap().to_owned();

    // Every segment fanned out, then a while of the pause.
    let get = api_event(
        "api-get-notification.json",
        Some(&format!("/v1/notifications/{id}")),
        None,
    );
    let fanned_out = std::time::Instant::now();
    while api.call(get.clone()).await.body["counts"]["recipients"] != GROUP {
        assert!(
            fanned_out.elapsed() < Duration::from_secs(60),
            "the fanout did not end"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let n = api.call(get).await;
    assert_eq!(n.body["status"], "sending", "{}", n.body);
    assert_eq!(
        n.body["counts"]["pending"], GROUP,
        "nothing failed while paused: {}",
        n.body
    );
    let calls = proxy.report().await["injected"]["ses.paused"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        (1..=12).contains(&calls),
        "a few calls find the pause, not one per delivery per receive: {calls}"
    );

    proxy.set(json!({"ses.paused": 0.0})).await;
    let n = wait_final_one(&mut api, &log, &id, Duration::from_secs(60)).await;
    assert_eq!(n["status"], "completed", "{}", n);
    assert_eq!(n["counts"]["sent"], GROUP);
    tokio::time::sleep(Duration::from_secs(1)).await;
    lambdas.stop().await;
    let emails = count_by(
        w.moto
            .raw_emails()
            .await
            .iter()
            .map(|e| e["destinations"][0].as_str().unwrap().to_owned()),
    );
    assert_eq!(emails.len(), GROUP);
    assert!(emails.values().all(|n| *n == 1));
    let d = api
        .call(api_event(
            "api-get-deliveries.json",
            Some(&format!("/v1/notifications/{id}/deliveries")),
            None,
        ))
        .await;
    for d in d.body["items"].as_array().unwrap() {
        assert_eq!(d["attempts"], 1, "the pause used up no attempt: {d}");
    }
}
