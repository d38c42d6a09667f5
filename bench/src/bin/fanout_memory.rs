//! Fanout planning on in-memory adapters: a group of N members (default 1,000,000) turned into
//! dispatch jobs, with no latency. Prints recipients per second, peak memory, and the ratio to a
//! baseline measured in the same run: the least any fanout must do (read each page of members,
//! read their profiles, serialize each recipient once).
//!
//! cargo run --release -p notify-bench --bin fanout_memory [-- N]

use notify_core::ports::{GroupStore, UserStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify_bench::sim::{Latency, SimQueues, SimStore};
use notify_bench::{peak_rss_mib, populated, thousands};
use notify_core::domain::Channel;
use notify_core::domain::delivery::Recipient;
use notify_core::domain::notification::{Content, Target};
use notify_core::domain::template::Parts;
use notify_core::jobs::FanoutJob;
use notify_core::memory::MemoryStore;
use notify_core::ports::SystemClock;
use notify_core::services::accept::NewNotification;
use notify_core::services::fanout::{Fanout, FanoutSettings};

const PAGE: usize = 2000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N"))
        .unwrap_or(1_000_000);
    let t = Instant::now();
    let (memory, group) = populated(n).await;
    let rss_data = peak_rss_mib();
    println!(
        "set-up: {} users in one group in {:.1?}, peak RSS {:.0} MiB",
        thousands(n as f64),
        t.elapsed(),
        rss_data
    );

    let store = Arc::new(SimStore::new(memory, Latency::NONE));
    let (queues, mut fanout_rx, _) = SimQueues::new(Latency::NONE, false);
    let app = queues.app(store.clone());
    let request = NewNotification {
        to: Target::GroupId(group.clone()),
        channels: vec![Channel::Email],
        content: Content::Inline(Parts {
            subject: Some("Hello".into()),
            text: Some("Hello everyone".into()),
            ..Default::default()
        }),
        send_at: notify_core::domain::SendAt::Now,
        category: None,
    };
    app.accept(request, None).await.unwrap();
    let job: FanoutJob = fanout_rx.recv().await.unwrap();
    let fanout = Fanout {
        store: store.clone(),
        queues: queues.clone(),
        clock: Arc::new(SystemClock),
        settings: FanoutSettings {
            page_size: PAGE,
            time_budget: Duration::from_secs(3600),
            ..FanoutSettings::default()
        },
    };
    let t = Instant::now();
    let report = fanout.handle(&job).await.unwrap();
    let ours = t.elapsed();
    let rss_after = peak_rss_mib();
    assert_eq!(report.deliveries, n);
    let jobs = queues
        .dispatch_jobs
        .load(std::sync::atomic::Ordering::Relaxed);
    let bytes = queues
        .dispatch_bytes
        .load(std::sync::atomic::Ordering::Relaxed);

    // Baseline: read every page and serialize every recipient once, nothing else.
    let t = Instant::now();
    let mut cursor = None;
    let mut serialized = 0usize;
    loop {
        let page = MemoryStore::list_members(&store.inner, &group, PAGE, cursor.as_deref())
            .await
            .unwrap();
        for user in store.inner.get_users(&page.items).await.unwrap() {
            serialized += serde_json::to_vec(&Recipient::from_user(&user))
                .unwrap()
                .len();
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let floor = t.elapsed();
    assert!(serialized > 0);

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "fanout:   {} recipients in {:.2?}: {} recipients/s, {} pages, {} dispatch jobs ({:.0} recipients, {:.1} KiB each)",
        thousands(n as f64),
        ours,
        thousands(rate(ours)),
        report.pages,
        thousands(jobs as f64),
        n as f64 / jobs as f64,
        bytes as f64 / jobs as f64 / 1024.0
    );
    println!(
        "baseline: read and serialize each recipient once: {:.2?}, {} recipients/s",
        floor,
        thousands(rate(floor))
    );
    println!(
        "ratio:    fanout takes {:.2}x the baseline's time",
        ours.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "memory:   peak RSS {:.0} MiB with the data loaded, {:.0} MiB after the fanout: +{:.0} MiB for the fanout (one page at a time)",
        rss_data,
        rss_after,
        rss_after - rss_data
    );
}
