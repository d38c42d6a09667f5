//! The scheduler port on EventBridge Scheduler and SQS.
//!
//! A send due within SQS's longest delay (15 minutes) gets no schedule: its fanout job goes on
//! the fanout queue with `DelaySeconds`, to the second. Further out, a one-shot schedule named
//! after the notification, in the project's own group, puts `{"notification_id"}` on the fanout
//! queue and deletes itself (ActionAfterCompletion DELETE).
//!
//! EventBridge Scheduler fires an `at()` schedule anywhere within the minute it names, which can
//! be before the second `send_at` names. So the schedule names the minute *before* the one of
//! `send_at`: it always fires early, and the fanout holds the job back on the queue for the
//! seconds left (at most two minutes), so the send starts at `send_at`, to the second, and never
//! before it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, Target,
};
use jiff::Timestamp;

use notify_core::domain::NotificationId;
use notify_core::jobs::FanoutJob;
use notify_core::ports::{
    Dependency, DependencyError, MAX_QUEUE_DELAY, Queues, Scheduler, SchedulerError,
};

use crate::lazy_client::LazyClient;
use crate::queues::SqsQueues;
use notify_core::ports::error_chain;

pub struct EventBridgeScheduler {
    client: LazyClient<Client>,
    queues: Arc<SqsQueues>,
    /// Sends due within this wait on the queue instead (at most `MAX_QUEUE_DELAY`).
    queue_delay_max: Duration,
    group: String,
    target_arn: String,
    role_arn: String,
    dlq_arn: Option<String>,
}

impl EventBridgeScheduler {
    pub fn new(
        client: impl Into<LazyClient<Client>>,
        queues: Arc<SqsQueues>,
        queue_delay_max: Duration,
        group: String,
        target_arn: String,
        role_arn: String,
        dlq_arn: Option<String>,
    ) -> Self {
        Self {
            client: client.into(),
            queues,
            queue_delay_max: queue_delay_max.min(MAX_QUEUE_DELAY),
            group,
            target_arn,
            role_arn,
            dlq_arn,
        }
    }

    fn target(&self, id: &NotificationId) -> Result<Target, SchedulerError> {
        let input = serde_json::to_string(&FanoutJob::start(id.clone()))
            .map_err(|e| DependencyError::scheduler("job JSON", e))?;
        Target::builder()
            .arn(&self.target_arn)
            .role_arn(&self.role_arn)
            .input(input)
            // Scheduler retries a target it cannot reach for up to a day, then uses the DLQ.
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_retry_attempts(185)
                    .maximum_event_age_in_seconds(86_400)
                    .build(),
            )
            .set_dead_letter_config(
                self.dlq_arn
                    .as_ref()
                    .map(|arn| DeadLetterConfig::builder().arn(arn).build()),
            )
            .build()
            .map_err(|e| DependencyError::scheduler("scheduler request", e))
    }
}

/// `at(yyyy-mm-ddThh:mm:ss)` in UTC: the start of the minute before the one of `at`, so that a
/// fire anywhere within the named minute is before `at`.
pub fn at_expression(at: Timestamp) -> String {
    let minute = at.as_second().div_euclid(60) * 60 - 60;
    let t = Timestamp::from_second(minute).unwrap_or(at);
    format!("at({})", t.strftime("%Y-%m-%dT%H:%M:%S"))
}

fn window() -> Result<FlexibleTimeWindow, SchedulerError> {
    FlexibleTimeWindow::builder()
        .mode(FlexibleTimeWindowMode::Off)
        .build()
        .map_err(|e| DependencyError::scheduler("scheduler request", e))
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> SchedulerError {
    DependencyError::scheduler("eventbridge scheduler", e)
}

impl EventBridgeScheduler {
    /// Creates the schedule, or moves it if it exists. A schedule can fire and delete itself
    /// between a create that finds it and the update that moves it: then it is created again.
    async fn put_schedule(&self, id: &NotificationId, at: Timestamp) -> Result<(), SchedulerError> {
        for _ in 0..3 {
            let created = self
                .client
                .get()
                .create_schedule()
                .name(id.as_str())
                .group_name(&self.group)
                .schedule_expression(at_expression(at))
                .schedule_expression_timezone("UTC")
                .flexible_time_window(window()?)
                .action_after_completion(ActionAfterCompletion::Delete)
                .target(self.target(id)?)
                .send()
                .await;
            match created {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conflict_exception()) => {}
                Err(e) => return Err(err(e)),
            }
            let updated = self
                .client
                .get()
                .update_schedule()
                .name(id.as_str())
                .group_name(&self.group)
                .schedule_expression(at_expression(at))
                .schedule_expression_timezone("UTC")
                .flexible_time_window(window()?)
                .action_after_completion(ActionAfterCompletion::Delete)
                .target(self.target(id)?)
                .send()
                .await;
            match updated {
                Ok(_) => return Ok(()),
                // It fired (and deleted itself) in between: create it again.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_resource_not_found_exception()) => {}
                Err(e) => return Err(err(e)),
            }
        }
        Err(DependencyError::refused(
            Dependency::Scheduler,
            "the schedule kept changing under a create and an update",
        ))
    }
}

#[async_trait]
impl Scheduler for EventBridgeScheduler {
    async fn schedule(&self, id: &NotificationId, at: Timestamp) -> Result<(), SchedulerError> {
        let wait = at.duration_since(Timestamp::now());
        let wait = Duration::from_millis(u64::try_from(wait.as_millis()).unwrap_or(0));
        if wait > self.queue_delay_max {
            return self.put_schedule(id, at).await;
        }
        // Due within minutes: the job waits on the queue, whole seconds rounded down (the
        // fanout waits the fraction left).
        let delay = Duration::from_secs(wait.as_secs());
        self.queues
            .send_fanout_after(&FanoutJob::start(id.clone()), delay)
            .await
            .map_err(|e| DependencyError::scheduler("delayed fanout message", e))?;
        // A schedule of an earlier, further `send_at` (a reschedule) is no longer needed; if it
        // stays, its fire finds the send done or held back, and sends nothing.
        if let Err(e) = self.cancel(id).await {
            tracing::warn!(%id, error = %error_chain(&e), "could not delete a schedule no longer needed");
        }
        Ok(())
    }

    async fn cancel(&self, id: &NotificationId) -> Result<(), SchedulerError> {
        match self
            .client
            .get()
            .delete_schedule()
            .name(id.as_str())
            .group_name(&self.group)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_expressions_name_the_minute_before_in_utc() {
        assert_eq!(
            at_expression("2026-12-01T09:00:00+09:00".parse().unwrap()),
            "at(2026-11-30T23:59:00)"
        );
        assert_eq!(
            at_expression("2026-12-01T00:00:59.999Z".parse().unwrap()),
            "at(2026-11-30T23:59:00)"
        );
        assert_eq!(
            at_expression("2026-12-01T00:01:00Z".parse().unwrap()),
            "at(2026-12-01T00:00:00)"
        );
    }
}
