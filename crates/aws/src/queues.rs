//! The queues port on SQS. Dispatch jobs go 10 to a `SendMessageBatch`; entries that fail
//! inside a 200 answer are sent again, a few times, before the call fails.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use notify_core::jobs::{Chore, DispatchJob, FanoutJob, FanoutMessage, WebhookJob};
use notify_core::ports::{Dependency, DependencyError, MAX_QUEUE_DELAY, QueueError, Queues};

const BATCH: usize = 10;
/// SQS limits a whole batch to 256 KiB.
const BATCH_BYTES: usize = 256 * 1024;

/// Groups bodies into batches of at most 10 messages and 256 KiB.
pub fn batches(bodies: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, b) in bodies.iter().enumerate() {
        if i > start && (i - start == BATCH || bytes + b.len() > BATCH_BYTES) {
            out.push(&bodies[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += b.len();
    }
    if start < bodies.len() {
        out.push(&bodies[start..]);
    }
    out
}
const ATTEMPTS: u32 = 5;
/// SendMessageBatch calls in flight at once.
pub const SEND_CONCURRENCY: usize = 4;

pub struct SqsQueues {
    client: Client,
    fanout_url: String,
    dispatch_url: String,
    webhook_url: String,
}

impl SqsQueues {
    pub fn new(
        client: Client,
        fanout_url: String,
        dispatch_url: String,
        webhook_url: String,
    ) -> Self {
        Self {
            client,
            fanout_url,
            dispatch_url,
            webhook_url,
        }
    }

    /// Keeps a received dispatch message hidden for `delay` from now: the backoff of a retried
    /// message, so a failing send does not come back at once and keep the Lambda busy.
    pub async fn delay_dispatch(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        // SQS takes whole seconds, at most 12 hours.
        let secs = delay.as_secs().clamp(1, 43_200) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.dispatch_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| DependencyError::queue("sqs", e))?;
        Ok(())
    }

    /// Puts a dispatch job back as a new message, hidden for `delay` (at most 15 minutes): a
    /// job whose channel is paused waits without counting receives towards its dead-letter
    /// queue, however long the pause lasts.
    pub async fn send_dispatch_after(
        &self,
        job: &DispatchJob,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.send_one(&self.dispatch_url, job, delay).await
    }

    /// One message as JSON, hidden for `delay` (whole seconds, at most 15 minutes).
    async fn send_one(
        &self,
        queue_url: &str,
        message: &impl serde::Serialize,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let body =
            serde_json::to_string(message).map_err(|e| DependencyError::queue("sqs request", e))?;
        let secs = delay.as_secs().min(MAX_QUEUE_DELAY.as_secs()) as i32;
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .delay_seconds(secs)
            .send()
            .await
            .map_err(|e| DependencyError::queue("sqs", e))?;
        Ok(())
    }

    /// Sends every body, 10 (and at most 256 KiB) per call, several calls at once.
    pub async fn send_all(&self, queue_url: &str, bodies: Vec<String>) -> Result<(), QueueError> {
        let all = batches(&bodies);
        for calls in all.chunks(SEND_CONCURRENCY) {
            futures::future::try_join_all(
                calls.iter().map(|chunk| self.send_batch(queue_url, chunk)),
            )
            .await?;
        }
        Ok(())
    }

    /// One SendMessageBatch, retrying only the entries that failed inside its answer.
    async fn send_batch(&self, queue_url: &str, chunk: &[String]) -> Result<(), QueueError> {
        {
            let mut pending: Vec<(String, &String)> = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| (i.to_string(), b))
                .collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(body.as_str())
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| DependencyError::queue("sqs request", e))?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| DependencyError::queue("sqs", e))?;
                let failed: Vec<_> = out
                    .failed()
                    .iter()
                    .map(|f| (f.id().to_owned(), f.sender_fault(), f.code().to_owned()))
                    .collect();
                if let Some((_, _, code)) = failed.iter().find(|(_, sender_fault, _)| *sender_fault)
                {
                    return Err(DependencyError::refused(
                        Dependency::Queue,
                        format!("sqs refused a message: {code}"),
                    ));
                }
                if !failed.is_empty() && attempt >= ATTEMPTS {
                    return Err(DependencyError::refused(
                        Dependency::Queue,
                        format!(
                            "sqs: {} messages still failing after {ATTEMPTS} attempts",
                            failed.len()
                        ),
                    ));
                }
                pending.retain(|(id, _)| failed.iter().any(|(f, _, _)| f == id));
                if !pending.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Queues for SqsQueues {
    async fn send_fanout(&self, job: &FanoutJob) -> Result<(), QueueError> {
        self.send_one(&self.fanout_url, job, Duration::ZERO).await
    }

    async fn send_fanout_after(&self, job: &FanoutJob, delay: Duration) -> Result<(), QueueError> {
        self.send_one(&self.fanout_url, job, delay).await
    }

    async fn send_chore(&self, chore: &Chore) -> Result<(), QueueError> {
        let message = FanoutMessage::Chore {
            chore: chore.clone(),
        };
        self.send_one(&self.fanout_url, &message, Duration::ZERO)
            .await
    }

    async fn send_dispatch(&self, jobs: &[DispatchJob]) -> Result<(), QueueError> {
        let bodies = jobs
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DependencyError::queue("sqs request", e))?;
        self.send_all(&self.dispatch_url, bodies).await
    }

    /// New jobs (one per endpoint) in batches; a retried one alone, with its delay.
    async fn send_webhooks(&self, jobs: &[WebhookJob], delay: Duration) -> Result<(), QueueError> {
        if delay.is_zero() {
            let bodies = jobs
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DependencyError::queue("sqs request", e))?;
            return self.send_all(&self.webhook_url, bodies).await;
        }
        for job in jobs {
            self.send_one(&self.webhook_url, job, delay).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::batches;

    #[test]
    fn batches_hold_ten_messages_and_256_kib_at_most() {
        let small: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        assert_eq!(
            batches(&small).iter().map(|b| b.len()).collect::<Vec<_>>(),
            [10, 10, 5]
        );
        let big: Vec<String> = (0..5).map(|_| "x".repeat(100 * 1024)).collect();
        assert_eq!(
            batches(&big).iter().map(|b| b.len()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert!(batches(&[]).is_empty());
    }
}
