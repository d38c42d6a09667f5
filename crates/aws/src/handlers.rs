//! What the three Lambdas do with an event. The functions' `main.rs` only wire these up, and
//! the tests drive the same code with events read from an SQS emulator.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;

use notify_core::jobs::{DispatchJob, FanoutJob};
use notify_core::services::dispatch::Dispatch;
use notify_core::services::fanout::Fanout;

fn parse<T: serde::de::DeserializeOwned>(record: &SqsMessage) -> Option<T> {
    record.body.as_deref().and_then(|b| serde_json::from_str(b).ok())
}

/// Fanout: one job per message, in order. A failed message goes back to the queue and, after
/// `maxReceiveCount` receives, to its dead-letter queue.
pub async fn fanout_event(fanout: &Fanout, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let Some(job) = parse::<FanoutJob>(&record) else {
            tracing::error!(message_id, "not a fanout job");
            response.add_failure(message_id);
            continue;
        };
        match fanout.handle(&job).await {
            Ok(report) => {
                tracing::info!(id = %job.notification_id, deliveries = report.deliveries, jobs = report.dispatch_jobs, continued = report.continued, ignored = report.ignored, "fanout")
            }
            Err(e) => {
                tracing::error!(id = %job.notification_id, error = %e, "fanout failed");
                response.add_failure(message_id);
            }
        }
    }
    response
}

/// Dispatch: the messages of a batch in parallel; only those with a delivery left to retry
/// (or that failed outright) are reported back, so the others are deleted.
pub async fn dispatch_event(dispatch: &Dispatch, event: SqsEvent) -> SqsBatchResponse {
    let outcomes = join_all(event.records.iter().map(|record| async move {
        let message_id = record.message_id.clone().unwrap_or_default();
        let Some(job) = parse::<DispatchJob>(record) else {
            tracing::error!(message_id, "not a dispatch job");
            return Some(message_id);
        };
        match dispatch.handle(&job).await {
            Ok(report) => {
                tracing::info!(id = %job.notification_id, sent = report.sent, failed = report.failed, already_done = report.already_done, retry = report.retry, "dispatch");
                report.retry.then_some(message_id)
            }
            Err(e) => {
                tracing::error!(id = %job.notification_id, error = %e, "dispatch failed");
                Some(message_id)
            }
        }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for failed in outcomes.into_iter().flatten() {
        response.add_failure(failed);
    }
    response
}
