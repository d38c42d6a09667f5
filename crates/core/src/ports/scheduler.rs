use async_trait::async_trait;
use jiff::Timestamp;

use super::DependencyError;
use crate::domain::NotificationId;

/// The scheduler failed: a `DependencyError` whose `dependency` is `Scheduler`.
pub type SchedulerError = DependencyError;

/// One-shot schedules, one per notification, named after it. When one fires, the adapter puts
/// `FanoutJob { notification_id }` on the fanout queue.
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Creates the schedule, or moves it if it exists.
    async fn schedule(&self, id: &NotificationId, at: Timestamp) -> Result<(), SchedulerError>;
    /// Removes the schedule; removing one that does not exist is not an error.
    async fn cancel(&self, id: &NotificationId) -> Result<(), SchedulerError>;
}
