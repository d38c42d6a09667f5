//! The consumers of the local queues: receive jobs, run the core service, acknowledge or
//! retry with backoff. Stops taking jobs on shutdown and finishes the ones in hand.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use notify_core::backoff::Backoff;
use notify_core::jobs::{DispatchJob, FanoutMessage, WebhookJob};
use notify_core::services::dispatch::Dispatch;
use notify_core::services::fanout::Fanout;
use notify_core::services::webhooks::Webhooks;

use crate::queue::{Leased, QueueName, SqliteQueues};
use notify_core::ports::error_chain;

#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Jobs handled at once.
    pub concurrency: usize,
    /// How long a received job stays invisible; a worker that dies gives it back after this.
    pub visibility: Duration,
    /// Receives before a job is dead-lettered.
    pub max_receives: u32,
    /// Delay before a job asked to retry comes back; doubles per receive, with jitter.
    pub backoff: Backoff,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            visibility: Duration::from_secs(120),
            max_receives: 10,
            backoff: Backoff {
                base: Duration::from_secs(2),
                max: Duration::from_secs(300),
            },
        }
    }
}

/// How long a full worker waits for more of its jobs to end before it receives again.
const GATHER: Duration = Duration::from_millis(2);

/// What a handler asks of the queue once it is done with a job.
pub enum Verdict {
    Done,
    RetryLater(String),
    DeadLetter(String),
}

/// Runs `handle` over the jobs of `queue` until `shutdown`.
pub async fn run<F, Fut>(
    queues: SqliteQueues,
    queue: QueueName,
    settings: WorkerSettings,
    shutdown: CancellationToken,
    handle: F,
) where
    F: Fn(Leased) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Verdict> + Send + 'static,
{
    let handle = Arc::new(handle);
    let ready = queues.ready(queue);
    let mut in_flight: JoinSet<()> = JoinSet::new();
    loop {
        let woken = ready.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if shutdown.is_cancelled() {
            break;
        }
        let room = settings.concurrency.saturating_sub(in_flight.len());
        if room == 0 {
            // Full: wait for a job to finish, not for the queue.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = in_flight.join_next() => {}
            }
            // Under load jobs end one at a time, and a receive for each would make this loop's
            // round trips to the database (a group commit each) the limit on jobs per second:
            // ~650 here with one-recipient jobs, half what the SMTP server takes. Gather a
            // quarter of the room first, waiting at most `GATHER`.
            let gather = (settings.concurrency / 4).max(1);
            let until = tokio::time::Instant::now() + GATHER;
            while settings.concurrency - in_flight.len() < gather {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(_) = in_flight.join_next() => {}
                    _ = tokio::time::sleep_until(until) => break,
                }
            }
            continue;
        }
        let jobs = match queues
            .receive(queue, room, settings.visibility, settings.max_receives)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(queue = queue.as_str(), error = %error_chain(&e), "receive failed");
                Vec::new()
            }
        };
        let got = jobs.len();
        for job in jobs {
            let (queues, handle) = (queues.clone(), handle.clone());
            in_flight.spawn(async move {
                let (id, receives) = (job.id, job.receives);
                let result = match handle(job).await {
                    Verdict::Done => queues.ack(id).await,
                    Verdict::RetryLater(why) => queues.retry(id, settings.backoff.delay(receives), Some(why)).await,
                    Verdict::DeadLetter(why) => {
                        tracing::error!(queue = queue.as_str(), job = id, error = why, "job dead-lettered");
                        queues.dead_letter(id, why).await
                    }
                };
                if let Err(e) = result {
                    // The lease runs out and the job comes back: nothing is lost.
                    tracing::error!(queue = queue.as_str(), job = id, error = %error_chain(&e), "could not settle a job");
                }
            });
        }
        if got == room {
            continue;
        }
        // Nothing more visible now: wait for a new job, the next visible one, or shutdown.
        let wait = match queues.next_visible_at(queue).await {
            Ok(Some(at)) => Duration::from_millis(
                (at - jiff::Timestamp::now().as_millisecond()).clamp(1, 60_000) as u64,
            ),
            _ => Duration::from_secs(60),
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = &mut woken => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// The fanout consumer.
pub fn fanout_handler(
    fanout: Arc<Fanout>,
) -> impl Fn(Leased) -> std::pin::Pin<Box<dyn Future<Output = Verdict> + Send>> + Send + Sync + 'static
{
    move |job: Leased| {
        let fanout = fanout.clone();
        Box::pin(async move {
            let Ok(parsed) = serde_json::from_str::<FanoutMessage>(&job.payload) else {
                return Verdict::DeadLetter("not a fanout job".into());
            };
            match fanout.handle_message(&parsed).await {
                Ok(_) => Verdict::Done,
                Err(e) => Verdict::RetryLater(e.to_string()),
            }
        })
    }
}

/// The dispatch consumer. On a job's last receive (`max_receives`), deliveries still pending
/// are marked failed before the job is dead-lettered, so that the notification finishes and
/// `POST /v1/notifications/{id}/retry` can send them again.
pub fn dispatch_handler(
    dispatch: Arc<Dispatch>,
    max_receives: u32,
) -> impl Fn(Leased) -> std::pin::Pin<Box<dyn Future<Output = Verdict> + Send>> + Send + Sync + 'static
{
    move |job: Leased| {
        let dispatch = dispatch.clone();
        Box::pin(async move {
            let Ok(parsed) = serde_json::from_str::<DispatchJob>(&job.payload) else {
                return Verdict::DeadLetter("not a dispatch job".into());
            };
            let why = match dispatch.handle(&parsed).await {
                Ok(report) if !report.retry && report.rest.is_none() => return Verdict::Done,
                Ok(_) => "some deliveries will be retried".to_owned(),
                Err(e) => e.to_string(),
            };
            if job.receives < max_receives {
                return Verdict::RetryLater(why);
            }
            let reason = format!("dead-lettered after {} receives: {why}", job.receives);
            match dispatch.give_up(&parsed, &reason).await {
                Ok(marked) => {
                    tracing::warn!(id = %parsed.notification_id, marked, "pending deliveries marked failed")
                }
                Err(e) => {
                    tracing::error!(id = %parsed.notification_id, error = %error_chain(&e), "could not mark the pending deliveries failed")
                }
            }
            Verdict::DeadLetter(reason)
        })
    }
}

/// The webhook consumer: a job's failed posts come back as a new job after their pause, so a
/// job is done once handled; only a job that could not be handled (the store or the queue
/// failed) is retried as it is.
pub fn webhook_handler(
    webhooks: Arc<Webhooks>,
) -> impl Fn(Leased) -> std::pin::Pin<Box<dyn Future<Output = Verdict> + Send>> + Send + Sync + 'static
{
    move |job: Leased| {
        let webhooks = webhooks.clone();
        Box::pin(async move {
            let Ok(parsed) = serde_json::from_str::<WebhookJob>(&job.payload) else {
                return Verdict::DeadLetter("not a webhook job".into());
            };
            match webhooks.deliver(&parsed).await {
                Ok(_) => Verdict::Done,
                Err(e) => Verdict::RetryLater(e.to_string()),
            }
        })
    }
}
