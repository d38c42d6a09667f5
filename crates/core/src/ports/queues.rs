use async_trait::async_trait;

use crate::jobs::{DispatchJob, FanoutJob};

#[derive(Debug, thiserror::Error)]
#[error("queue: {0}")]
pub struct QueueError(pub String);

/// The two work queues. Consumers are runtime specific (a Lambda event source mapping, or the
/// local worker loop); the core only produces.
#[async_trait]
pub trait Queues: Send + Sync {
    async fn send_fanout(&self, job: &FanoutJob) -> Result<(), QueueError>;
    async fn send_dispatch(&self, jobs: &[DispatchJob]) -> Result<(), QueueError>;
}
