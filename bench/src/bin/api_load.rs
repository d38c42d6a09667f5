//! Local API load: `notifyd` (release build) with a real SMTP server on loopback, and a load
//! generator in this process doing `POST /v1/notifications` (one email recipient each) from C
//! connections for S seconds. Prints accepted requests per second, latency percentiles, errors,
//! and the time until every accepted email has reached the SMTP server.
//!
//! Baselines, in the same run: `GET /healthz` on the same server at the same concurrency (the
//! HTTP stack and this load generator, with no storage), so the ratio says what accepting a
//! notification costs over answering at all; and the SMTP server's raw capacity for the message
//! notifyd sent (a plain smtplib client, 16 connections, as `local_smtp` measures it), so the
//! end-to-end rate says how close a burst of single sends comes to what the server takes.
//!
//! ./scripts/test --no-run  (sets up .venv), then:
//! cargo build --release -p notifyd && NOTIFYD_BIN=target/release/notifyd cargo run --release -p notify-bench --bin api_load [-- SECONDS CONNECTIONS]

use std::time::{Duration, Instant};

use notify_bench::{smtp_capacity, thousands};
use notify_tests::{Notifyd, SmtpSink};
use serde_json::json;

struct Run {
    ok: usize,
    errors: usize,
    /// Microseconds, sorted.
    latencies: Vec<u64>,
    elapsed: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i] as f64 / 1000.0
    }

    fn print(&self, what: &str) {
        println!(
            "{what}: {} ok in {:.1?} = {} req/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
            thousands(self.ok as f64),
            self.elapsed,
            thousands(self.per_second()),
            self.percentile(0.50),
            self.percentile(0.99),
            self.percentile(1.0),
            self.errors
        );
    }
}

/// `connections` tasks, each sending one request after the other until `duration` is over.
async fn load(d: &Notifyd, duration: Duration, connections: usize, post: bool) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let client = client.clone();
            let (post_url, health_url, key) = (d.url("/v1/notifications"), d.url("/healthz"), d.key.clone());
            tokio::spawn(async move {
                let (mut ok, mut errors, mut latencies) = (0, 0, Vec::with_capacity(200_000));
                let mut i = 0usize;
                while Instant::now() < deadline {
                    let request = if post {
                        let body =
                            json!({"to": {"email": format!("c{c}-{i}@example.com")}, "content": {"subject": "Load", "text": "Hello"}});
                        client.post(&post_url).bearer_auth(&key).json(&body)
                    } else {
                        client.get(&health_url)
                    };
                    let t = Instant::now();
                    let accepted = match request.send().await {
                        Ok(r) => r.status().as_u16() == if post { 202 } else { 200 } && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    latencies.push(t.elapsed().as_micros() as u64);
                    if accepted {
                        ok += 1
                    } else {
                        errors += 1
                    }
                    i += 1;
                }
                (ok, errors, latencies)
            })
        })
        .collect();
    let mut run = Run {
        ok: 0,
        errors: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (ok, errors, latencies) = t.await.unwrap();
        run.ok += ok;
        run.errors += errors;
        run.latencies.extend(latencies);
    }
    run.elapsed = started.elapsed();
    run.latencies.sort_unstable();
    run
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("SECONDS"))
        .unwrap_or(30);
    let connections: usize = std::env::args()
        .nth(2)
        .map(|a| a.parse().expect("CONNECTIONS"))
        .unwrap_or(32);
    let smtp = SmtpSink::start().await;
    let d = Notifyd::start_process(&[("NOTIFY_SMTP_URL", &smtp.url()), ("RUST_LOG", "warn")]).await;
    println!(
        "notifyd with aiosmtpd on loopback; {connections} connections; this machine: {} cores",
        num_cpus()
    );

    let baseline = load(
        &d,
        Duration::from_secs(seconds.div_ceil(3)),
        connections,
        false,
    )
    .await;
    baseline.print("baseline GET /healthz     ");

    let started = Instant::now();
    let run = load(&d, Duration::from_secs(seconds), connections, true).await;
    let at_last_request = smtp.count();
    run.print("POST /v1/notifications    ");
    while smtp.count() < run.ok {
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "emails stopped arriving at {}",
            smtp.count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = started.elapsed();
    println!(
        "all {} accepted emails at the SMTP server {:.1?} after the first request ({:.1?} after the last): {} emails/s end to end",
        thousands(run.ok as f64),
        all,
        all.saturating_sub(run.elapsed),
        thousands(run.ok as f64 / all.as_secs_f64())
    );
    let end_to_end = run.ok as f64 / all.as_secs_f64();
    // After the burst: the backlog on its way out, with the cores no longer answering requests.
    let drain = (run.ok - at_last_request.min(run.ok)) as f64
        / all.saturating_sub(run.elapsed).as_secs_f64();
    let sent = smtp.first_message().expect("a message arrived").data;
    let raw = smtp_capacity(smtp.port, (run.ok / 10).max(1000), 16, Some(&sent));
    println!(
        "baseline: a plain SMTP client (smtplib, 16 connections) to the same server: {} emails/s with the {}-byte message notifyd sent",
        thousands(raw),
        sent.len()
    );
    println!(
        "{} emails had reached the server when the last request was answered; the other {} went out at {} emails/s after it",
        thousands(at_last_request as f64),
        thousands((run.ok - at_last_request.min(run.ok)) as f64),
        thousands(drain)
    );
    println!(
        "ratio: accepting a notification runs at {:.2}x the requests per second of GET /healthz; end to end, emails reach the server at {:.2}x its raw capacity ({:.2}x after the burst)",
        run.per_second() / baseline.per_second(),
        end_to_end / raw,
        drain / raw
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
