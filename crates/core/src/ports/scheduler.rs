use async_trait::async_trait;
use jiff::Timestamp;

use super::BoxError;
use crate::domain::NotificationId;

/// The scheduler failed; `source` is its own error, for the log.
#[derive(Debug, thiserror::Error)]
#[error("scheduler: {context}")]
pub struct SchedulerError {
    pub context: String,
    #[source]
    pub source: Option<BoxError>,
}

impl SchedulerError {
    pub fn new(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    pub fn msg(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }
}

/// One-shot schedules, one per notification, named after it. When one fires, the adapter puts
/// `FanoutJob { notification_id }` on the fanout queue.
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Creates the schedule, or moves it if it exists.
    async fn schedule(&self, id: &NotificationId, at: Timestamp) -> Result<(), SchedulerError>;
    /// Removes the schedule; removing one that does not exist is not an error.
    async fn cancel(&self, id: &NotificationId) -> Result<(), SchedulerError>;
}
