use std::time::Duration;

use async_trait::async_trait;

use super::DependencyError;
use crate::jobs::{Chore, DispatchJob, FanoutJob, WebhookJob};

/// A queue failed: a `DependencyError` whose `dependency` is `Queue`.
pub type QueueError = DependencyError;

/// The longest a queue holds a message back: SQS's `DelaySeconds` limit (15 minutes).
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

/// The two work queues. Consumers are runtime specific (a Lambda event source mapping, or the
/// local worker loop); the core only produces.
#[async_trait]
pub trait Queues: Send + Sync {
    async fn send_fanout(&self, job: &FanoutJob) -> Result<(), QueueError>;
    /// Puts a fanout job on the queue that no consumer sees before `delay` has passed (at most
    /// `MAX_QUEUE_DELAY`; SQS's `DelaySeconds`). Used for a send due within minutes, and for a
    /// schedule that fired before its `send_at`.
    async fn send_fanout_after(&self, job: &FanoutJob, delay: Duration) -> Result<(), QueueError>;
    async fn send_dispatch(&self, jobs: &[DispatchJob]) -> Result<(), QueueError>;
    /// Puts a chore on the fanout queue.
    async fn send_chore(&self, chore: &Chore) -> Result<(), QueueError>;
    /// Puts webhook jobs on the webhook queue, held back `delay` (at most `MAX_QUEUE_DELAY`).
    async fn send_webhooks(&self, jobs: &[WebhookJob], delay: Duration) -> Result<(), QueueError>;
}
