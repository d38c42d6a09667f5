//! The parts of AWS that move messages between the functions, played as AWS plays them:
//!
//! - the SQS event source mappings: a batch received (through the fault proxy, so a message can
//!   come twice), the function invoked with it, the records it does not report as failed
//!   deleted, the others left to come back after their visibility timeout;
//! - Lambda's timeout: an invocation still running at its function's `Timeout` is killed (its
//!   future dropped, wherever it is, a provider call included) and nothing of its batch is
//!   deleted;
//! - EventBridge Scheduler, as `notify_aws_local::scheduler` plays it: a one-shot `at()`
//!   schedule fires at the earliest moment its minute allows.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use notify_aws::handlers::{DispatchConsumer, dispatch_event, fanout_event};
pub use notify_aws_local::scheduler::Fire;
use notify_aws_local::scheduler::Scheduler;
use notify_core::services::fanout::Fanout;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::aws::{AwsWorld, sqs_event};

#[derive(Debug, Clone)]
pub struct LambdaSettings {
    pub fanout_timeout: Duration,
    pub dispatch_timeout: Duration,
    /// The event source mapping's batch size for dispatch (fanout's is 1).
    pub dispatch_batch: i32,
    /// Dispatch invocations at once (`MaximumConcurrency`).
    pub dispatch_concurrency: usize,
    /// Fanout invocations at once: a group send is a job per segment of its memberships.
    pub fanout_concurrency: usize,
}

impl Default for LambdaSettings {
    fn default() -> Self {
        Self {
            fanout_timeout: Duration::from_secs(60),
            dispatch_timeout: Duration::from_secs(30),
            dispatch_batch: 10,
            dispatch_concurrency: 2,
            fanout_concurrency: 4,
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub fanout_invocations: AtomicUsize,
    pub dispatch_invocations: AtomicUsize,
    /// Invocations killed at their timeout.
    pub killed_fanout: AtomicUsize,
    pub killed_dispatch: AtomicUsize,
    pub fires: Mutex<Vec<Fire>>,
}

/// The event source mappings and the scheduler, running until `stop`.
pub struct Lambdas {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    pub stats: Arc<Stats>,
}

type Handler = Arc<
    dyn Fn(
            aws_lambda_events::sqs::SqsEvent,
            Instant,
        ) -> futures::future::BoxFuture<'static, aws_lambda_events::sqs::SqsBatchResponse>
        + Send
        + Sync,
>;

impl Lambdas {
    pub fn start(
        world: &AwsWorld,
        fanout: Fanout,
        dispatch: DispatchConsumer,
        settings: LambdaSettings,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let fanout = Arc::new(fanout);
        let max_receives = world.config.fanout_max_receives;
        let dispatch = Arc::new(dispatch);
        let mut tasks = Vec::new();
        let fanout_handler: Handler = Arc::new(move |event, _deadline| {
            let fanout = fanout.clone();
            Box::pin(async move { fanout_event(&fanout, event, max_receives).await })
        });
        for _ in 0..settings.fanout_concurrency {
            tasks.push(tokio::spawn(mapping(
                world,
                world.config.fanout_queue_url.clone(),
                1,
                settings.fanout_timeout,
                fanout_handler.clone(),
                stats.clone(),
                stop.clone(),
                |s| (&s.fanout_invocations, &s.killed_fanout),
            )));
        }
        for _ in 0..settings.dispatch_concurrency {
            let dispatch = dispatch.clone();
            let handler: Handler = Arc::new(move |event, deadline| {
                let dispatch = dispatch.clone();
                Box::pin(async move { dispatch_event(&dispatch, event, deadline).await })
            });
            tasks.push(tokio::spawn(mapping(
                world,
                world.config.dispatch_queue_url.clone(),
                settings.dispatch_batch,
                settings.dispatch_timeout,
                handler,
                stats.clone(),
                stop.clone(),
                |s| (&s.dispatch_invocations, &s.killed_dispatch),
            )));
        }
        tasks.push(tokio::spawn(scheduler(world, stats.clone(), stop.clone())));
        Self { stop, tasks, stats }
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn mapping(
    world: &AwsWorld,
    queue_url: String,
    batch: i32,
    timeout: Duration,
    handler: Handler,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    counters: fn(&Stats) -> (&AtomicUsize, &AtomicUsize),
) -> impl std::future::Future<Output = ()> + Send + 'static {
    // The mapping's own SQS calls go through the proxy too: AWS's receives fail and repeat.
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    async move {
        while !stop.load(Ordering::Relaxed) {
            let received = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(batch)
                // Short polls: moto's long poll does not wake when a delayed message becomes
                // visible (AWS's does), which would add up to a second to every delayed send.
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await;
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let event = sqs_event(&messages);
            counters(&stats).0.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + timeout;
            let Ok(response) =
                tokio::time::timeout_at(deadline, handler(event.clone(), deadline)).await
            else {
                // Killed at the timeout: the whole batch comes back after its visibility timeout.
                counters(&stats).1.fetch_add(1, Ordering::Relaxed);
                let ids: Vec<String> = messages
                    .iter()
                    .filter_map(|m| {
                        let body: serde_json::Value =
                            serde_json::from_str(m.body().unwrap_or_default()).ok()?;
                        Some(body["notification_id"].as_str()?.to_owned())
                    })
                    .collect();
                tracing::warn!(queue = %queue_url, ?ids, "invocation killed at its timeout");
                continue;
            };
            let failed: Vec<&str> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            for m in &messages {
                if !failed.contains(&m.message_id().unwrap_or_default()) {
                    // A failed delete leaves the message to come back: at-least-once.
                    let _ = sqs
                        .delete_message()
                        .queue_url(&queue_url)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .send()
                        .await;
                }
            }
        }
    }
}

fn scheduler(
    world: &AwsWorld,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    // EventBridge's own moves: straight to moto, never faulted.
    let mut scheduler = Scheduler::new(
        &world.direct,
        vec![world.config.schedule_group.clone()],
        [(
            world.config.fanout_queue_arn.clone(),
            world.config.fanout_queue_url.clone(),
        )]
        .into(),
    );
    async move {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let fired = scheduler.fire_due().await;
            stats.fires.lock().unwrap().extend(fired);
        }
    }
}
