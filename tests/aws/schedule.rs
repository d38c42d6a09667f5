//! Reserved sends on AWS as EventBridge Scheduler really fires them: anywhere within the minute
//! its `at()` names (the test scheduler fires at the earliest moment allowed: the first second
//! of that minute, or at once when that minute has come), and a reschedule that meets a
//! schedule that has just fired and deleted itself. Each sends once, never before `send_at`.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use notify_aws::wiring;
use notify_tests::aws::{ApiHandler, AwsWorld, WorldOptions, api_event};
use notify_tests::lambdas::{LambdaSettings, Lambdas};
use serde_json::{Value, json};

/// A world where every reserved send gets an EventBridge schedule (no SQS delay shortcut), so
/// that schedules within seconds can be tested.
async fn world(faults: Value) -> AwsWorld {
    let mut w = AwsWorld::start_with(WorldOptions {
        faults: Some(faults),
        fanout_visibility: 8,
        dispatch_visibility: 8,
        ..WorldOptions::default()
    })
    .await;
    w.config.queue_delay_max_secs = 0;
    w.config.retry_base_secs = 1;
    w
}

async fn user(api: &mut ApiHandler, id: &str) {
    let body = json!({"email": format!("{id}@example.org")});
    let a = api
        .call(api_event(
            "api-put-user.json",
            Some(&format!("/v1/users/{id}")),
            Some(body),
        ))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
}

async fn reserve(api: &mut ApiHandler, user: &str, at: Timestamp) -> String {
    let body = json!({"to": {"user_id": user}, "content": {"subject": "Later", "text": "At its time"}, "send_at": at.to_string()});
    let a = api
        .call(api_event(
            "api-post-notification-scheduled.json",
            Some("/v1/notifications"),
            Some(body),
        ))
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.body["status"], "scheduled");
    a.body["id"].as_str().unwrap().to_owned()
}

/// The delivery of a one-recipient notification once it is final.
async fn delivered(api: &mut ApiHandler, id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let n = api
            .call(api_event(
                "api-get-notification.json",
                Some(&format!("/v1/notifications/{id}")),
                None,
            ))
            .await;
        if n.body["status"] == "completed" {
            let d = api
                .call(api_event(
                    "api-get-deliveries.json",
                    Some(&format!("/v1/notifications/{id}/deliveries")),
                    None,
                ))
                .await;
            return d.body["items"][0].clone();
        }
        assert!(Instant::now() < deadline, "not sent in time: {}", n.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sent_at(delivery: &Value) -> Timestamp {
    delivery["sent_at"].as_str().unwrap().parse().unwrap()
}

async fn emails_to(w: &AwsWorld, address: &str) -> usize {
    w.moto
        .raw_emails()
        .await
        .iter()
        .filter(|e| e["destinations"][0] == address)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_that_fires_early_in_its_minute_sends_once_at_send_at_not_before() {
    let w = world(json!({"scheduler.internal_error": 0.3})).await;
    let mut api = ApiHandler::new(&w);
    user(&mut api, "early").await;
    user(&mut api, "now").await;
    let lambdas = Lambdas::start(
        &w,
        wiring::fanout(&w.config, &w.sdk),
        wiring::dispatch(&w.config, &w.sdk).unwrap(),
        LambdaSettings::default(),
    );

    // 20 s ahead: the schedule names the minute before send_at's, which has come, so the test
    // scheduler fires it at once, about 20 s early.
    let early_at = Timestamp::now() + SignedDuration::from_secs(20);
    let early = reserve(&mut api, "early", early_at).await;
    // 2 s ahead: a schedule in the current minute.
    let now_at = Timestamp::now() + SignedDuration::from_secs(2);
    let now = reserve(&mut api, "now", now_at).await;

    let d = delivered(&mut api, &now, Duration::from_secs(60)).await;
    assert!(
        sent_at(&d) >= now_at,
        "sent at {} before send_at {now_at}",
        sent_at(&d)
    );
    let d = delivered(&mut api, &early, Duration::from_secs(60)).await;
    assert!(
        sent_at(&d) >= early_at,
        "sent at {} before send_at {early_at}",
        sent_at(&d)
    );

    let fires = lambdas.stats.fires.lock().unwrap().clone();
    let fire = fires
        .iter()
        .find(|f| f.name == early)
        .expect("the schedule fired");
    assert!(
        fire.fired_at < early_at - SignedDuration::from_secs(10),
        "it fired early: {fire:?}, send_at {early_at}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    lambdas.stop().await;
    assert_eq!(emails_to(&w, "early@example.org").await, 1);
    assert_eq!(emails_to(&w, "now@example.org").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reschedule_that_meets_a_schedule_just_fired_sends_once_at_the_new_time() {
    let w = world(json!({})).await;
    let proxy = w.proxy.as_ref().unwrap();
    let mut api = ApiHandler::new(&w);
    user(&mut api, "moved").await;
    // Far enough that the test scheduler does not fire it by itself.
    let id = reserve(
        &mut api,
        "moved",
        Timestamp::now() + SignedDuration::from_hours(2),
    )
    .await;

    // The reschedule's UpdateSchedule meets the schedule gone: it fired (the proxy deletes it
    // in between) and its fanout job is on its way.
    proxy.set(json!({"scheduler.update_races_fire": 1.0})).await;
    let new_at = Timestamp::now() + SignedDuration::from_secs(15);
    let patch = api_event(
        "api-reschedule-notification.json",
        Some(&format!("/v1/notifications/{id}")),
        Some(json!({"send_at": new_at.to_string()})),
    );
    let a = api.call(patch).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    proxy.set(json!({"scheduler.update_races_fire": 0.0})).await;
    let raced = proxy.report().await["raced"].clone();
    assert_eq!(raced, json!([id]), "the race happened");
    let schedule = w
        .scheduler()
        .get_schedule()
        .name(&id)
        .group_name(&w.config.schedule_group)
        .send()
        .await;
    assert!(
        schedule.is_ok(),
        "the schedule was made again for the new time"
    );
    // The fire that raced the update arrives.
    w.sqs()
        .send_message()
        .queue_url(&w.config.fanout_queue_url)
        .message_body(json!({"notification_id": id}).to_string())
        .send()
        .await
        .unwrap();

    let lambdas = Lambdas::start(
        &w,
        wiring::fanout(&w.config, &w.sdk),
        wiring::dispatch(&w.config, &w.sdk).unwrap(),
        LambdaSettings::default(),
    );
    let d = delivered(&mut api, &id, Duration::from_secs(60)).await;
    assert!(
        sent_at(&d) >= new_at,
        "sent at {} before send_at {new_at}",
        sent_at(&d)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    lambdas.stop().await;
    assert_eq!(emails_to(&w, "moved@example.org").await, 1);
}
