//! A simulated AWS run: the real fanout and dispatch code over adapters that make the calls the
//! AWS adapters make, each taking a modelled time (10 ms a DynamoDB call, 20 ms an SQS batch,
//! 60 ms an SES send), at the concurrency `template.yaml` allows (fanout MaximumConcurrency 32,
//! reached as Lambda scales an SQS event source: 5 invocations at first, 5 more a second;
//! dispatch 20 invocations of up to 10 messages in parallel). tokio's clock is paused, so time
//! passes only in modelled calls: the run prints simulated wall time, the AWS calls per 1M
//! recipients, and from them the AWS cost per 1M emails beside SES's own $100.
//!
//! Then the fan-out alone of a far bigger group (10M members by default), its memberships
//! written through the store's adds as the API makes them: the time until every dispatch
//! message is queued, split by segments, beside one chain over the same group in the same run.
//!
//! cargo run --release -p notify-bench --bin aws_simulated [-- N [FANOUT_N]]

use notify_core::ports::{DeliveryStore, NotificationStore};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::Mutex;
use tokio::time::Instant;

use notify_aws::store::{COUNT_SHARDS, MEMBER_SEGMENTS};
use notify_bench::sim::{Latency, SimEmail, SimQueues, SimStore};
use notify_bench::{member, peak_rss_mib, populated_in, thousands, with_users};
use notify_core::domain::notification::{Content, Status, Target};
use notify_core::domain::template::Parts;
use notify_core::domain::{Channel, EmailAddress, SendAt};
use notify_core::jobs::FanoutJob;
use notify_core::memory::MemoryStore;
use notify_core::memory::RecordingSms;
use notify_core::ports::GroupStore;
use notify_core::ports::SystemClock;
use notify_core::services::accept::NewNotification;
use notify_core::services::dispatch::{Dispatch, DispatchSettings};
use notify_core::services::fanout::{Fanout, FanoutSettings};
use tokio::sync::mpsc::UnboundedReceiver;

/// The template's settings.
const PAGE: usize = 2000;
const PER_JOB: usize = 100;
const FANOUT_BUDGET: Duration = Duration::from_secs(40);
const FANOUT_CONCURRENCY: usize = 32;
const DISPATCH_CONCURRENCY: usize = 20;
const DISPATCH_BATCH: usize = 10;
const LAMBDA_GB: f64 = 0.25;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N"))
        .unwrap_or(1_000_000);
    let fanout_n: usize = std::env::args()
        .nth(2)
        .map(|a| a.parse().expect("FANOUT_N"))
        .unwrap_or(10_000_000);
    let cpu = std::time::Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(run(n));
    rt.block_on(big_fanout(fanout_n));
    println!(
        "(simulation took {:.1?} of real time on this machine)",
        cpu.elapsed()
    );
}

async fn run(n: usize) {
    let (memory, group) = populated_in(MemoryStore::with_member_segments(MEMBER_SEGMENTS), n).await;
    let store = Arc::new(SimStore::new(memory, Latency::AWS));
    let (queues, fanout_rx, dispatch_rx) = SimQueues::new(Latency::AWS, true);
    let dispatch_rx = dispatch_rx.unwrap();
    let email = Arc::new(SimEmail {
        latency: Latency::AWS,
        calls: Default::default(),
    });
    let app = queues.app(store.clone());
    let fanout = fanout_over(&store, &queues);
    let dispatch = Arc::new(
        Dispatch::new(
            store.clone(),
            email.clone(),
            Arc::new(RecordingSms::default()),
            Arc::new(SystemClock),
            // The AWS defaults, with a time budget that never cuts a simulated job short.
            DispatchSettings {
                time_budget: Duration::from_secs(3600),
                ..DispatchSettings::new(EmailAddress::parse("news@example.com").unwrap())
            },
        )
        // A group send's emails carry unsubscribe links, as on AWS.
        .with_unsubscribe(app.unsubscribe.clone())
        .with_webhooks(app.webhooks.clone()),
    );

    let request = news_to(group);
    let start = Instant::now();
    let accepted = app.accept(request, None).await.unwrap();

    let fanout_task = tokio::spawn(fanout_source(
        fanout.clone(),
        fanout_rx,
        FANOUT_CONCURRENCY,
        start,
    ));
    // The dispatch event source: up to 20 invocations at once, each up to 10 messages in parallel.
    let dispatch_rx = Arc::new(Mutex::new(dispatch_rx));
    let durations: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..DISPATCH_CONCURRENCY {
        let (rx, dispatch, durations) = (dispatch_rx.clone(), dispatch.clone(), durations.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let mut batch = Vec::new();
                {
                    let mut rx = rx.lock().await;
                    match rx.recv().await {
                        Some(job) => batch.push(job),
                        None => break,
                    }
                    while batch.len() < DISPATCH_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                }
                let t = Instant::now();
                join_all(batch.iter().map(|job| dispatch.handle(job))).await;
                durations.lock().unwrap().push(t.elapsed());
            }
        }));
    }
    let (fanout_invocations, fanout_done) = fanout_task.await.unwrap();
    loop {
        let n = store
            .inner
            .get_notification(&accepted.id)
            .await
            .unwrap()
            .unwrap();
        if n.status != Status::Sending && n.status != Status::Queued {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_sent = start.elapsed();
    let queue_calls = queues.calls.snapshot();
    drop(queues);
    drop(fanout);
    for w in workers {
        w.abort();
    }
    let dispatch_invocations = durations.lock().unwrap().clone();
    let counts = store.counts(&accepted.id).await.unwrap();
    assert_eq!((counts.sent, counts.pending), (n as u64, 0), "{counts:?}");

    println!(
        "simulated AWS run, {} members, latencies {:?}",
        thousands(n as f64),
        Latency::AWS
    );
    println!(
        "  fanout:   all {} dispatch messages queued after {:.1} s (simulated), {} invocations",
        thousands(n.div_ceil(PER_JOB) as f64),
        fanout_done.as_secs_f64(),
        fanout_invocations.len()
    );
    println!(
        "  dispatch: all {} emails sent after {:.1} s: {} emails/s at {DISPATCH_CONCURRENCY} x {DISPATCH_BATCH} messages in parallel",
        thousands(n as f64),
        all_sent.as_secs_f64(),
        thousands(n as f64 / all_sent.as_secs_f64())
    );
    // The floor at this concurrency: SES calls alone, back to back, 200 at a time.
    let floor = Latency::AWS.ses_send.as_secs_f64() * n as f64
        / (DISPATCH_CONCURRENCY * DISPATCH_BATCH) as f64;
    println!(
        "  baseline: SES calls alone at the same concurrency take {floor:.1} s; the whole run takes {:.2}x that",
        all_sent.as_secs_f64() / floor
    );

    println!(
        "\n  hottest partition key per table and index, writes in its busiest simulated second (DynamoDB takes ~1,000):"
    );
    for (table, (pk, writes)) in store.partitions.hottest() {
        println!("    {table:<6} {writes:>6} writes/s  ({pk})");
    }
    println!("\n  {}", hot_keys_at_10k_notifications_per_second().await);

    // Calls per 1M recipients, and what they cost (us-east-1 on-demand list prices).
    let scale = 1_000_000.0 / n as f64;
    let mut calls = store.calls.snapshot();
    calls.extend(queue_calls);
    calls.extend(email.calls.snapshot());
    println!("\n  AWS calls per 1M recipients:");
    for (op, c) in &calls {
        println!("    {op:<22} {:>12}", thousands(*c as f64 * scale));
    }
    // DynamoDB units: items are under 1 KB, but for the fanned-out pages' records (their extra
    // units counted as written). Writes 1 WRU, transactional writes 2 WRU per item (our
    // transactions have 2 items); consistent reads 1 RRU; a key of a BatchGetItem half a RRU
    // read eventually consistently (profiles, opt-outs, suppressions), one consistently; a
    // Query of 2,000 memberships (~80 bytes each) 20 RRU.
    let get = |k: &str| *calls.get(k).unwrap_or(&0) as f64 * scale;
    let wru = get("PutItem")
        + get("UpdateItem")
        + get("DeleteItem")
        + 4.0 * get("TransactWriteItems")
        + 25.0 * get("BatchWriteItem")
        + store
            .page_record_extra_wru
            .load(std::sync::atomic::Ordering::Relaxed) as f64
            * scale;
    // The counts: one consistent read of each of the COUNT_SHARDS small items.
    let keys = |tally: &std::sync::atomic::AtomicU64| {
        tally.load(std::sync::atomic::Ordering::Relaxed) as f64 * scale
    };
    let rru = get("GetItem")
        + 0.5 * keys(&store.eventual_keys)
        + keys(&store.consistent_keys)
        + 20.0 * get("Query")
        + COUNT_SHARDS as f64 * get("BatchGetItem (counts)");
    let ddb = wru * 0.625e-6 + rru * 0.125e-6;
    // SQS: every call is a request (a batch of 10 jobs of ~7.5 KiB is 2 billed 64 KiB chunks),
    // plus the event source mapping's ReceiveMessage and DeleteMessageBatch per Lambda batch.
    let sqs_requests = 2.0 * get("SQS SendMessageBatch")
        + get("SQS SendMessage")
        + 2.0 * (dispatch_invocations.len() as f64 + fanout_invocations.len() as f64) * scale;
    let sqs = sqs_requests * 0.40e-6;
    let gb_s = LAMBDA_GB
        * (dispatch_invocations
            .iter()
            .chain(fanout_invocations.iter())
            .map(Duration::as_secs_f64)
            .sum::<f64>())
        * scale;
    let lambda_requests = (dispatch_invocations.len() + fanout_invocations.len()) as f64 * scale;
    let lambda = gb_s * 0.0000133334 + lambda_requests * 0.20e-6;
    let scheduler = 1.0 * 1.0e-6; // one schedule per reserved send, whatever its size
    let ses = 100.0;
    let ours = ddb + sqs + lambda + scheduler;
    println!("\n  AWS cost per 1M emails:");
    println!(
        "    DynamoDB   {:>10}  ({} WRU, {} RRU)",
        format!("${ddb:.3}"),
        thousands(wru),
        thousands(rru)
    );
    println!(
        "    SQS        {:>10}  ({} requests)",
        format!("${sqs:.3}"),
        thousands(sqs_requests)
    );
    println!(
        "    Lambda     {:>10}  ({} GB-s arm64, {} invocations)",
        format!("${lambda:.3}"),
        thousands(gb_s),
        thousands(lambda_requests)
    );
    println!(
        "    Scheduler  {:>10}  (one schedule per reserved send)",
        format!("${scheduler:.6}")
    );
    println!(
        "    total      {:>10}  = {:.1}% of SES's own ${ses:.0} per 1M (ratio {:.3})",
        format!("${ours:.3}"),
        100.0 * ours / ses,
        ours / ses
    );
}

/// The group send of both runs.
fn news_to(group: notify_core::domain::GroupId) -> NewNotification {
    NewNotification {
        to: Target::GroupId(group),
        channels: vec![Channel::Email],
        content: Content::Inline(Parts {
            subject: Some("News".into()),
            text: Some("Hello everyone".into()),
            ..Default::default()
        }),
        send_at: SendAt::Now,
        category: None,
    }
}

/// The fanout function with the template's settings.
fn fanout_over(store: &Arc<SimStore>, queues: &Arc<SimQueues>) -> Arc<Fanout> {
    Arc::new(Fanout {
        store: store.clone(),
        queues: queues.clone(),
        clock: Arc::new(SystemClock),
        settings: FanoutSettings {
            page_size: PAGE,
            recipients_per_job: PER_JOB,
            time_budget: FANOUT_BUDGET,
            ..FanoutSettings::default()
        },
    })
}

/// The fanout queue's event source: one invocation per message, continuations and segments
/// included, at most `max` at once, reached as Lambda scales an SQS event source (five
/// invocations at first, up to 300 more a minute); until no message is left and none runs.
/// The invocations' durations, and when the last one ended.
async fn fanout_source(
    fanout: Arc<Fanout>,
    mut jobs: UnboundedReceiver<FanoutJob>,
    max: usize,
    start: Instant,
) -> (Vec<Duration>, Duration) {
    let mut running = tokio::task::JoinSet::new();
    let mut invocations = Vec::new();
    loop {
        let allowed = (5 + 5 * start.elapsed().as_secs() as usize).min(max);
        while running.len() < allowed {
            let Ok(job) = jobs.try_recv() else { break };
            let fanout = fanout.clone();
            running.spawn(async move {
                let t = Instant::now();
                fanout.handle(&job).await.unwrap();
                t.elapsed()
            });
        }
        if running.is_empty() && jobs.is_empty() {
            return (invocations, start.elapsed());
        }
        tokio::select! {
            Some(done) = running.join_next() => invocations.push(done.unwrap()),
            // A new message, or a second more of scaling.
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// The fan-out of a group of `n`, its members added through the store as the API adds them
/// (16 requests of 1,000 at once), then fanned out by segments at the template's concurrency;
/// beside one chain over the same group. Dispatch jobs are counted, not sent.
async fn big_fanout(n: usize) {
    println!(
        "\nfan-out alone of a group of {} members",
        thousands(n as f64)
    );
    let segmented = fanout_only(n, MEMBER_SEGMENTS, FANOUT_CONCURRENCY).await;
    let chain = fanout_only(n, 1, 1).await;
    println!(
        "  baseline: one chain over the same group (as before segments): all queued after {:.1} s",
        chain.as_secs_f64()
    );
    println!(
        "  ratio:    by segments in {:.3}x the time of one chain",
        segmented.as_secs_f64() / chain.as_secs_f64()
    );
    println!(
        "  (peak RSS of this process {:.0} MiB: the simulated table of {} users is in memory; a fanout holds a page of {PAGE} per invocation)",
        peak_rss_mib(),
        thousands(n as f64)
    );
}

/// One fan-out of `n` members over `segments`, at most `concurrency` invocations at once; the
/// simulated time until every dispatch message was queued.
async fn fanout_only(n: usize, segments: u32, concurrency: usize) -> Duration {
    let memory = MemoryStore::with_member_segments(segments);
    let group = with_users(&memory, n).await;
    // The adds as the API makes them: 16 requests of 1,000 members at once.
    let loader = Arc::new(SimStore::new(memory, Latency::AWS));
    let adds_started = Instant::now();
    let requests: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(<[usize]>::to_vec)
        .collect();
    let requests = Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let mut adders = Vec::new();
    for _ in 0..16 {
        let (loader, requests, group) = (loader.clone(), requests.clone(), group.clone());
        adders.push(tokio::spawn(async move {
            loop {
                let Some(ids) = requests.lock().unwrap().next() else {
                    break;
                };
                let ids: Vec<_> = ids.into_iter().map(member).collect();
                loader.add_members(&group, &ids).await.unwrap();
            }
        }));
    }
    for a in adders {
        a.await.unwrap();
    }
    let adds = adds_started.elapsed();
    let hottest_adds = loader.partitions.hottest();
    let memory = Arc::into_inner(loader).unwrap().into_inner();

    let store = Arc::new(SimStore::new(memory, Latency::AWS));
    let (queues, fanout_rx, _) = SimQueues::new(Latency::AWS, false);
    let app = queues.app(store.clone());
    let fanout = fanout_over(&store, &queues);
    let request = news_to(group);
    let start = Instant::now();
    let accepted = app.accept(request, None).await.unwrap();
    let (invocations, done) = fanout_source(fanout, fanout_rx, concurrency, start).await;
    let counts = store.counts(&accepted.id).await.unwrap();
    assert_eq!(
        (counts.recipients, counts.pending),
        (n as u64, n as u64),
        "every member counted once: {counts:?}"
    );
    let jobs = queues
        .dispatch_jobs
        .load(std::sync::atomic::Ordering::Relaxed);
    if segments > 1 {
        println!(
            "  members added through the store, 16 requests of 1,000 at once: {} in {:.0} s simulated; hottest partition key, writes in its busiest second:",
            thousands(n as f64),
            adds.as_secs_f64()
        );
        for (table, (pk, writes)) in hottest_adds {
            println!("    {table:<6} {writes:>6} writes/s  ({pk})");
        }
        println!(
            "  by {segments} segments, up to {concurrency} invocations at once: all {} dispatch messages queued after {:.1} s (simulated), {} invocations; counts exact ({} recipients, all pending)",
            thousands(jobs as f64),
            done.as_secs_f64(),
            invocations.len(),
            thousands(counts.recipients as f64)
        );
        println!("  hottest partition key during the fan-out:");
        for (table, (pk, writes)) in store.partitions.hottest() {
            println!("    {table:<6} {writes:>6} writes/s  ({pk})");
        }
    }
    done
}

/// 10,000 notifications accepted in one simulated second, each then going through the writes
/// of a one-recipient send (queued, sending, one delivery claimed and sent, fanned out,
/// completed), as the services make them: the hottest partition key of the table and of each
/// index in that second.
async fn hot_keys_at_10k_notifications_per_second() -> String {
    const RATE: usize = 10_000;
    let store = Arc::new(SimStore::new(
        notify_core::memory::MemoryStore::default(),
        Latency::AWS,
    ));
    let (queues, _fanout_rx, _) = SimQueues::new(Latency::AWS, false);
    let app = queues.app(store.clone());
    let mut sends = Vec::with_capacity(RATE);
    for i in 0..RATE {
        let (app, store) = (app.clone(), store.clone());
        sends.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros((i * 1_000_000 / RATE) as u64)).await;
            let address = EmailAddress::parse(&format!("r{i}@example.com")).unwrap();
            let request = NewNotification {
                to: Target::Email(address.clone()),
                channels: vec![Channel::Email],
                content: Content::Inline(Parts {
                    subject: Some("Hi".into()),
                    text: Some("One".into()),
                    ..Default::default()
                }),
                send_at: SendAt::Now,
                category: None,
            };
            let key = notify_core::domain::IdempotencyKey::parse(&format!("k{i}")).unwrap();
            let idem = notify_core::services::accept::IdempotentRequest::new(
                key,
                &serde_json::json!({"i": i}),
            );
            let id = app.accept(request, Some(idem)).await.unwrap().id;
            store
                .transition(&id, &[Status::Queued], Status::Sending)
                .await
                .unwrap();
            let recipient = notify_core::domain::delivery::Recipient::email(address);
            let delivery =
                notify_core::domain::delivery::Delivery::pending(&id, &recipient, Channel::Email);
            store
                .insert_deliveries(
                    &id,
                    "",
                    &notify_core::domain::fanned_out_page::FannedOutPage::default(),
                    &[Channel::Email],
                    std::slice::from_ref(&delivery),
                )
                .await
                .unwrap();
            store.mark_fanned_out(&id, None).await.unwrap();
            let now = jiff::Timestamp::now();
            store
                .claim_delivery(&delivery, now, now + jiff::SignedDuration::from_secs(40))
                .await
                .unwrap();
            let sent = notify_core::domain::delivery::Outcome::Sent {
                provider_message_id: "m".into(),
                at: now,
            };
            store.record_outcome(&delivery.key, &sent).await.unwrap();
            store
                .transition(&id, &[Status::Sending], Status::Completed)
                .await
                .unwrap();
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    let mut lines = vec![format!(
        "{RATE} notifications accepted in one second, each sent to one recipient: hottest partition key"
    )];
    for (table, (pk, writes)) in store.partitions.hottest() {
        lines.push(format!("    {table:<6} {writes:>6} writes/s  ({pk})"));
    }
    lines.join("\n")
}
