//! What the four Lambdas do with an event. The functions' `main.rs` only wire these up, and
//! the tests drive the same code with events read from an SQS emulator.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use tokio::time::Instant;
use tracing::Instrument;

use notify_core::backoff::Backoff;
use notify_core::jobs::{Chore, DispatchJob, FanoutMessage};
use notify_core::ports::MAX_QUEUE_DELAY;
use notify_core::services::dispatch::Dispatch;
use notify_core::services::fanout::Fanout;

use crate::queues::SqsQueues;
use notify_core::ports::error_chain;

fn parse<T: serde::de::DeserializeOwned>(record: &SqsMessage) -> Option<T> {
    record
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
}

/// Fanout: one job per message, in order. A failed message goes back to the queue and, after
/// `maxReceiveCount` receives, to its dead-letter queue.
pub async fn fanout_event(fanout: &Fanout, event: SqsEvent, max_receives: u32) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in &event.records {
        let span = tracing::info_span!(
            "sqs_record",
            message_id = record.message_id.as_deref().unwrap_or_default()
        );
        if let Some(failed) = fanout_record(fanout, record, max_receives)
            .instrument(span)
            .await
        {
            response.add_failure(failed);
        }
    }
    response
}

/// One fanout record: `Some(message id)` if it is to come back.
async fn fanout_record(fanout: &Fanout, record: &SqsMessage, max_receives: u32) -> Option<String> {
    let message_id = record.message_id.clone().unwrap_or_default();
    let Some(message) = parse::<FanoutMessage>(record) else {
        tracing::error!(message_id, "not a fanout job");
        return Some(message_id);
    };
    let e = match fanout.handle_message(&message).await {
        Ok(report) => {
            tracing::info!(
                ?message,
                deliveries = report.deliveries,
                jobs = report.dispatch_jobs,
                continued = report.continued,
                segments = report.segments,
                ignored = report.ignored,
                "fanout"
            );
            return None;
        }
        Err(e) => e,
    };
    tracing::error!(?message, error = %error_chain(&e), "fanout failed");
    let receives: u32 = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    if receives >= max_receives {
        // Its last receive: rather than leave the notification `sending` for ever behind a
        // dead-lettered job, put a fresh copy back, 15 minutes on. A job that can never pass
        // keeps logging this error for an operator to see.
        tracing::error!(
            ?message,
            receives,
            "a fanout job keeps failing: put back for later instead of dead-lettered"
        );
        let put_back = match &message {
            FanoutMessage::Job(job) => fanout.queues.send_fanout_after(job, MAX_QUEUE_DELAY).await,
            FanoutMessage::Chore {
                chore: chore @ Chore::PurgeGroup { .. },
            } => fanout.queues.send_chore(chore).await,
            // The next sweep comes in minutes anyway.
            FanoutMessage::Chore {
                chore: Chore::Sweep,
            } => Ok(()),
        };
        match put_back {
            Ok(()) => return None,
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "could not put the fanout job back")
            }
        }
    }
    Some(message_id)
}

/// The dispatch Lambda's state: the service, and how to retry a message.
pub struct DispatchConsumer {
    pub dispatch: Dispatch,
    pub queues: Arc<SqsQueues>,
    /// The visibility timeout a retried message gets, by receive count.
    pub backoff: Backoff,
    /// The queue's `maxReceiveCount`.
    pub max_receives: u32,
    /// How long a job whose channel is paused waits before it comes back.
    pub pause: Duration,
}

/// Dispatch: the messages of a batch in parallel; only those with a delivery left to retry
/// (or that failed outright) are reported back, so the others are deleted. A reported message
/// first gets a visibility timeout from the backoff, so it returns later instead of at once;
/// on its last receive its pending deliveries are marked failed before it goes to the DLQ.
///
/// `deadline` is when Lambda kills the invocation (the context's deadline): no send starts
/// that could not be recorded before it.
pub async fn dispatch_event(
    consumer: &DispatchConsumer,
    event: SqsEvent,
    deadline: Instant,
) -> SqsBatchResponse {
    let outcomes = join_all(event.records.iter().map(|record| {
        // The ten records of a batch run at once: a span each keeps their logs apart.
        let span = tracing::info_span!(
            "sqs_record",
            message_id = record.message_id.as_deref().unwrap_or_default()
        );
        dispatch_record(consumer, record, deadline).instrument(span)
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for failed in outcomes.into_iter().flatten() {
        response.add_failure(failed);
    }
    response
}

/// One record of a dispatch batch: `Some(message id)` if it is to come back.
async fn dispatch_record(
    consumer: &DispatchConsumer,
    record: &SqsMessage,
    deadline: Instant,
) -> Option<String> {
    {
        let message_id = record.message_id.clone().unwrap_or_default();
        let Some(job) = parse::<DispatchJob>(record) else {
            tracing::error!(message_id, "not a dispatch job");
            return Some(message_id);
        };
        let why = match consumer.dispatch.handle_until(&job, deadline).await {
            Ok(report) => {
                tracing::info!(id = %job.notification_id, sent = report.sent, failed = report.failed, skipped = report.skipped, already_done = report.already_done, throttled = report.throttled, deferred = report.deferred, retry = report.retry, rest = report.rest.as_ref().map(|r| r.items.len()), "dispatch");
                if let Some(rest) = &report.rest
                    && let Err(e) = consumer
                        .queues
                        .send_dispatch_after(rest, Duration::ZERO)
                        .await
                {
                    // The whole job comes back instead; its done deliveries are found done.
                    tracing::warn!(id = %job.notification_id, error = %error_chain(&e), "could not queue the rest of a job");
                    consumer.retry_later(record, &job, "out of time").await;
                    return Some(message_id);
                }
                if !report.retry {
                    return None;
                }
                if report.paused {
                    // A paused channel may stay paused for hours: the job waits as a new message
                    // (its receive count starts again), and this one is done.
                    match consumer
                        .queues
                        .send_dispatch_after(&job, consumer.pause)
                        .await
                    {
                        Ok(()) => return None,
                        Err(e) => {
                            tracing::warn!(id = %job.notification_id, error = %error_chain(&e), "could not put a paused job back")
                        }
                    }
                }
                if let Some(after) = report.retry_after {
                    // Another worker holds the job: waiting for it is not a failure, so the
                    // wait must not use up this message's receives (a busy job's copies, from
                    // SQS's duplicates and killed workers, would reach the dead-letter queue
                    // and fail deliveries no one tried). A fresh copy comes back after the
                    // lease; only if it cannot be queued does this message come back instead.
                    match consumer.queues.send_dispatch_after(&job, after).await {
                        Ok(()) => return None,
                        Err(e) => {
                            tracing::warn!(id = %job.notification_id, error = %error_chain(&e), "could not queue a busy job's copy; its message comes back instead");
                            consumer.retry_after(record, &job, after).await;
                            return Some(message_id);
                        }
                    }
                }
                "some deliveries will be retried".to_owned()
            }
            Err(e) => {
                tracing::error!(id = %job.notification_id, error = %error_chain(&e), "dispatch failed");
                e.to_string()
            }
        };
        consumer.retry_later(record, &job, &why).await;
        Some(message_id)
    }
}

/// The moment an invocation is killed, from the Lambda context's deadline (milliseconds since
/// the Unix epoch), on tokio's clock.
pub fn deadline_from_epoch_millis(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

impl DispatchConsumer {
    /// Brings the message back after `after` rather than the backoff: a job another worker
    /// holds, which is free within one lease.
    async fn retry_after(&self, record: &SqsMessage, job: &DispatchJob, after: Duration) {
        let Some(receipt) = record.receipt_handle.as_deref() else {
            return;
        };
        if let Err(e) = self.queues.delay_dispatch(receipt, after).await {
            tracing::warn!(id = %job.notification_id, error = %error_chain(&e), "could not delay a busy job's message");
        }
    }

    async fn retry_later(&self, record: &SqsMessage, job: &DispatchJob, why: &str) {
        let receives: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        if receives >= self.max_receives {
            let reason = format!("dead-lettered after {receives} receives: {why}");
            match self.dispatch.give_up(job, &reason).await {
                Ok(marked) => {
                    tracing::warn!(id = %job.notification_id, marked, "pending deliveries marked failed")
                }
                Err(e) => {
                    tracing::error!(id = %job.notification_id, error = %error_chain(&e), "could not mark the pending deliveries failed")
                }
            }
            return;
        }
        let Some(receipt) = record.receipt_handle.as_deref() else {
            return;
        };
        if let Err(e) = self
            .queues
            .delay_dispatch(receipt, self.backoff.delay(receives))
            .await
        {
            // The message still comes back, after the queue's own visibility timeout.
            tracing::warn!(id = %job.notification_id, error = %error_chain(&e), "could not delay a retried message");
        }
    }
}

/// The feedback Lambda's state: the store, and SNS's list of opted-out numbers.
pub struct FeedbackConsumer {
    pub store: Arc<dyn notify_core::ports::Store>,
    /// Where `delivery.delivered`, `.bounced` and `.complained` events go.
    pub webhooks: Arc<notify_core::services::webhooks::Webhooks>,
    pub sms_opt_outs: crate::sms_opt_outs::SmsOptOuts,
}

/// Feedback: SES events from the feedback queue; a permanent bounce or a complaint suppresses
/// the address, and an event about a delivery marks it (`delivered`, `bounced`, `complained`).
/// The stack's schedule also puts `{"chore": "sms_opt_outs"}` there: SNS's opted-out numbers
/// are copied onto the suppression list. A record whose writes failed comes back; one that is
/// neither goes, after a few receives, to the dead-letter queue.
pub async fn feedback_event(consumer: &FeedbackConsumer, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in &event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("sqs_record", message_id);
        let body = record.body.as_deref().unwrap_or_default();
        let done = if is_sms_opt_out_chore(body) {
            sync_sms_opt_outs(consumer).instrument(span).await
        } else {
            feedback_record(consumer, record).instrument(span).await
        };
        if !done {
            response.add_failure(message_id);
        }
    }
    response
}

fn is_sms_opt_out_chore(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| v["chore"] == "sms_opt_outs")
}

async fn sync_sms_opt_outs(consumer: &FeedbackConsumer) -> bool {
    match consumer
        .sms_opt_outs
        .sync(consumer.store.as_ref(), jiff::Timestamp::now())
        .await
    {
        Ok(added) => {
            tracing::info!(added, "SMS opt-outs copied to the suppression list");
            true
        }
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "could not copy the SMS opt-outs");
            false
        }
    }
}

/// One feedback record: whether it is done with.
async fn feedback_record(consumer: &FeedbackConsumer, record: &SqsMessage) -> bool {
    let store = consumer.store.as_ref();
    let now = jiff::Timestamp::now();
    let feedback = match crate::feedback::read(record.body.as_deref().unwrap_or_default(), now) {
        Ok(feedback) => feedback,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "feedback message");
            return false;
        }
    };
    for s in &feedback.suppress {
        if let Err(e) = store.put_suppression(s).await {
            tracing::warn!(error = %error_chain(&e), "could not suppress an address");
            return false;
        }
        tracing::info!(reason = s.reason.as_str(), channel = %s.address.channel(), "address suppressed");
    }
    if let Some(report) = &feedback.delivery {
        let key = &report.key;
        match store
            .record_feedback(key, &report.provider_message_id, report.status)
            .await
        {
            Ok(applied) => {
                tracing::info!(id = %key.notification_id, status = report.status.as_str(), applied, "delivery reported");
                if applied {
                    emit_report(consumer, report).await;
                }
            }
            Err(e) => {
                tracing::warn!(id = %key.notification_id, error = %error_chain(&e), "could not record a delivery report");
                return false;
            }
        }
    }
    if feedback.suppress.is_empty() && feedback.delivery.is_none() {
        tracing::info!(event_type = feedback.event_type, "SES event, nothing to do");
    }
    true
}

/// The webhook event of a delivery report that applied. A report that applied is not applied
/// again when its message comes back, so a failure here is logged, not retried by the queue.
async fn emit_report(consumer: &FeedbackConsumer, report: &crate::feedback::DeliveryReport) {
    use notify_core::domain::delivery::DeliveryStatus;
    use notify_core::domain::webhook::EventType;
    let event_type = match report.status {
        DeliveryStatus::Delivered => EventType::DeliveryDelivered,
        DeliveryStatus::Bounced => EventType::DeliveryBounced,
        DeliveryStatus::Complained => EventType::DeliveryComplained,
        _ => return,
    };
    let event = notify_core::services::webhooks::delivery_event(
        event_type,
        jiff::Timestamp::now(),
        &report.key,
        None,
        serde_json::json!({"provider_message_id": report.provider_message_id}),
    );
    if let Err(e) = consumer.webhooks.emit(vec![event]).await {
        tracing::error!(id = %report.key.notification_id, error = %error_chain(&e), "webhook event lost");
    }
}

/// The webhook Lambda: each job's events posted to its endpoint; failed posts come back as
/// new, delayed jobs, so only a job that could not be handled at all is reported back.
pub async fn webhook_event(
    webhooks: &notify_core::services::webhooks::Webhooks,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in &event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("sqs_record", message_id);
        let Some(job) = parse::<notify_core::jobs::WebhookJob>(record) else {
            tracing::error!(message_id, "not a webhook job");
            response.add_failure(message_id);
            continue;
        };
        if let Err(e) = webhooks.deliver(&job).instrument(span).await {
            tracing::warn!(webhook = %job.webhook_id, error = %error_chain(&e), "webhook job failed");
            response.add_failure(message_id);
        }
    }
    response
}
