//! Lateness of reserved sends on the AWS path: `sent_at - send_at` of each delivery, with the
//! functions on moto behind the fault proxy and EventBridge Scheduler played at minute
//! precision, firing each one-shot schedule at the earliest moment it may (the first second of
//! the minute it names). Two paths: sends due beyond the queue's delay (a schedule for the minute
//! before, then held back on the queue until `send_at`), and sends due within it (`DelaySeconds`).
//! The baseline, from the same run: when Scheduler fired, against `send_at`, which is what a send
//! would have had without the hold-back.
//!
//! ./scripts/test --no-run && cargo run -p notify-bench --bin reserved_lateness [-- N]

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use notify_aws::wiring;
use notify_tests::aws::{ApiHandler, AwsWorld, WorldOptions, api_event};
use notify_tests::lambdas::{LambdaSettings, Lambdas};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N"))
        .unwrap_or(40);
    println!(
        "reserved sends on the AWS path (moto, the fault proxy, a minute-precision scheduler), {n} per path"
    );
    for (path, queue_delay_max) in [
        ("EventBridge schedule, then held back on the queue", 0),
        ("SQS DelaySeconds (due within 15 min)", 900),
    ] {
        let (lateness, fires) = run(n, queue_delay_max).await;
        let early = lateness.iter().filter(|l| **l < 0.0).count();
        println!(
            "  {path}: lateness p50 {:.3} s, p99 {:.3} s, max {:.3} s; {early} of {n} early",
            pct(&lateness, 0.5),
            pct(&lateness, 0.99),
            pct(&lateness, 1.0)
        );
        if !fires.is_empty() {
            println!(
                "    baseline, Scheduler's own fires against send_at: p50 {:.1} s, min {:.1} s, max {:.1} s ({} of {} before send_at)",
                pct(&fires, 0.5),
                pct(&fires, 0.0),
                pct(&fires, 1.0),
                fires.iter().filter(|f| **f < 0.0).count(),
                fires.len()
            );
        }
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sorted lateness of each send (seconds), and sorted fire times against send_at.
async fn run(n: usize, queue_delay_max: u64) -> (Vec<f64>, Vec<f64>) {
    let mut w = AwsWorld::start_with(WorldOptions {
        faults: Some(json!({})),
        fanout_visibility: 8,
        dispatch_visibility: 8,
        ..WorldOptions::default()
    })
    .await;
    w.config.queue_delay_max_secs = queue_delay_max;
    let mut api = ApiHandler::new(&w);
    let lambdas = Lambdas::start(
        &w,
        wiring::fanout(&w.config, &w.sdk),
        wiring::dispatch(&w.config, &w.sdk).unwrap(),
        LambdaSettings::default(),
    );
    // Spread over the next 100 s at odd milliseconds, so that every second of a minute is hit.
    let start = Timestamp::now() + SignedDuration::from_secs(5);
    let mut sends = Vec::new();
    for i in 0..n {
        let at = start + SignedDuration::from_millis((i as i64 * 100_000 / n as i64) + 137);
        let body = json!({"to": {"email": format!("late{i}@example.org")}, "content": {"subject": "On time", "text": "?"}, "send_at": at.to_string()});
        let a = api
            .call(api_event(
                "api-post-notification-scheduled.json",
                Some("/v1/notifications"),
                Some(body),
            ))
            .await;
        assert_eq!(a.status, 202, "{:?}", a.body);
        sends.push((a.body["id"].as_str().unwrap().to_owned(), at));
    }
    let mut lateness = Vec::new();
    for (id, at) in &sends {
        loop {
            let d = api
                .call(api_event(
                    "api-get-deliveries.json",
                    Some(&format!("/v1/notifications/{id}/deliveries")),
                    None,
                ))
                .await;
            if let Some(sent) = d.body["items"][0]["sent_at"].as_str() {
                let sent: Timestamp = sent.parse().unwrap();
                lateness.push(sent.duration_since(*at).as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let fires: Vec<f64> = lambdas
        .stats
        .fires
        .lock()
        .unwrap()
        .iter()
        .filter_map(|f| {
            sends
                .iter()
                .find(|(id, _)| *id == f.name)
                .map(|(_, at)| f.fired_at.duration_since(*at).as_secs_f64())
        })
        .collect();
    lambdas.stop().await;
    lateness.sort_by(f64::total_cmp);
    let mut fires = fires;
    fires.sort_by(f64::total_cmp);
    (lateness, fires)
}
