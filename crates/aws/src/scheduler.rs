//! The scheduler port on EventBridge Scheduler: one one-shot schedule per notification, named
//! after it, in the project's own group, whose target puts `{"notification_id"}` on the fanout
//! queue. Scheduler deletes it after it fires (ActionAfterCompletion DELETE).

use async_trait::async_trait;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::types::{ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, Target};
use jiff::Timestamp;

use notify_core::domain::NotificationId;
use notify_core::jobs::FanoutJob;
use notify_core::ports::{Scheduler, SchedulerError};

use crate::provider_error::describe;

pub struct EventBridgeScheduler {
    client: Client,
    group: String,
    target_arn: String,
    role_arn: String,
    dlq_arn: Option<String>,
}

impl EventBridgeScheduler {
    pub fn new(client: Client, group: String, target_arn: String, role_arn: String, dlq_arn: Option<String>) -> Self {
        Self { client, group, target_arn, role_arn, dlq_arn }
    }

    fn target(&self, id: &NotificationId) -> Result<Target, SchedulerError> {
        let input = serde_json::to_string(&FanoutJob::start(id.clone())).map_err(|e| SchedulerError(e.to_string()))?;
        Target::builder()
            .arn(&self.target_arn)
            .role_arn(&self.role_arn)
            .input(input)
            // Scheduler retries a target it cannot reach for up to a day, then uses the DLQ.
            .retry_policy(RetryPolicy::builder().maximum_retry_attempts(185).maximum_event_age_in_seconds(86_400).build())
            .set_dead_letter_config(self.dlq_arn.as_ref().map(|arn| DeadLetterConfig::builder().arn(arn).build()))
            .build()
            .map_err(|e| SchedulerError(e.to_string()))
    }
}

/// `at(yyyy-mm-ddThh:mm:ss)` in UTC, rounded up to the second so a fire is never early.
pub fn at_expression(at: Timestamp) -> String {
    let secs = at.as_second() + i64::from(at.subsec_nanosecond() > 0);
    let t = Timestamp::from_second(secs).unwrap_or(at);
    format!("at({})", t.strftime("%Y-%m-%dT%H:%M:%S"))
}

fn window() -> Result<FlexibleTimeWindow, SchedulerError> {
    FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().map_err(|e| SchedulerError(e.to_string()))
}

fn err(e: impl std::error::Error) -> SchedulerError {
    SchedulerError(format!("scheduler: {}", describe(&e)))
}

#[async_trait]
impl Scheduler for EventBridgeScheduler {
    async fn schedule(&self, id: &NotificationId, at: Timestamp) -> Result<(), SchedulerError> {
        let created = self
            .client
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
            Ok(_) => Ok(()),
            // It exists (a reschedule, or a replayed request): move it.
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conflict_exception()) => {
                self.client
                    .update_schedule()
                    .name(id.as_str())
                    .group_name(&self.group)
                    .schedule_expression(at_expression(at))
                    .schedule_expression_timezone("UTC")
                    .flexible_time_window(window()?)
                    .action_after_completion(ActionAfterCompletion::Delete)
                    .target(self.target(id)?)
                    .send()
                    .await
                    .map_err(err)?;
                Ok(())
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn cancel(&self, id: &NotificationId) -> Result<(), SchedulerError> {
        match self.client.delete_schedule().name(id.as_str()).group_name(&self.group).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_not_found_exception()) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_expressions_are_utc_and_never_early() {
        assert_eq!(at_expression("2026-12-01T09:00:00+09:00".parse().unwrap()), "at(2026-12-01T00:00:00)");
        assert_eq!(at_expression("2026-12-01T00:00:00.001Z".parse().unwrap()), "at(2026-12-01T00:00:01)");
    }
}
