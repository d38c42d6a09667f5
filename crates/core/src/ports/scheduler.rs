use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::NotificationId;

#[derive(Debug, thiserror::Error)]
#[error("scheduler: {0}")]
pub struct SchedulerError(pub String);

/// One-shot schedules, one per notification, named after it. When one fires, the adapter puts
/// `FanoutJob { notification_id }` on the fanout queue.
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Creates the schedule, or moves it if it exists.
    async fn schedule(&self, id: &NotificationId, at: Timestamp) -> Result<(), SchedulerError>;
    /// Removes the schedule; removing one that does not exist is not an error.
    async fn cancel(&self, id: &NotificationId) -> Result<(), SchedulerError>;
}
