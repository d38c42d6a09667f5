//! The SQS event source mapping: pollers that receive up to `BatchSize` messages, invoke the
//! function with them as Lambda's SQS event, and settle the batch as AWS does. With
//! `ReportBatchItemFailures`, the records the function names in `batchItemFailures` stay on the
//! queue and the others are deleted; an answer naming a record not in the batch fails the whole
//! batch. A function error, a timeout or a crash deletes nothing: every message comes back after
//! its visibility timeout, until its queue's redrive policy moves it to the dead-letter queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use serde_json::{Value, json};

use crate::emulator::REGION;
use crate::lambda::{Function, Outcome};

/// Received SQS messages as the Lambda event the event source mapping makes of them.
pub fn sqs_event(messages: &[Message], queue_arn: &str) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: HashMap<String, String> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "md5OfBody": m.md5_of_body(),
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap_or_default()
}

/// Which records of a batch stay on the queue, by the function's answer.
pub fn failed_records(
    event: &SqsEvent,
    outcome: &Outcome,
    report_batch_item_failures: bool,
) -> Vec<String> {
    let all = || {
        event
            .records
            .iter()
            .filter_map(|r| r.message_id.clone())
            .collect()
    };
    let Outcome::Response(body) = outcome else {
        return all();
    };
    if !report_batch_item_failures {
        return Vec::new();
    }
    // An empty or null answer is a success; one that does not parse, or names a record that is
    // not in the batch, fails the whole batch.
    if body.trim().is_empty() || body.trim() == "null" {
        return Vec::new();
    }
    let Ok(response) = serde_json::from_str::<SqsBatchResponse>(body) else {
        return all();
    };
    let ids: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    let known = |id: &String| {
        event
            .records
            .iter()
            .any(|r| r.message_id.as_ref() == Some(id))
    };
    if ids.iter().all(known) { ids } else { all() }
}

/// One mapping: `pollers` loops on `queue_url`, each invoking `function` with a batch at a time.
pub struct SqsMapping {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: i32,
    /// A batch that is not full gathers for up to this long before the invocation.
    pub batching_window: Duration,
    pub report_batch_item_failures: bool,
    pub function: Arc<Function>,
}

impl SqsMapping {
    /// Up to `max` messages, in a short poll: moto's long poll does not wake when a delayed
    /// message becomes visible (AWS's does), which would hold a reserved send back.
    async fn receive(&self, max: i32) -> Result<Vec<Message>, ()> {
        match self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
        {
            Ok(out) => Ok(out.messages.unwrap_or_default()),
            Err(e) => {
                tracing::warn!(queue = %self.queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receive failed");
                Err(())
            }
        }
    }

    /// Polls until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        loop {
            let mut messages = match self.receive(self.batch_size).await {
                Ok(messages) => messages,
                Err(()) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            // As the mapping does with a batching window: wait for a full batch, or the window.
            let gathered = tokio::time::Instant::now() + self.batching_window;
            while (messages.len() as i32) < self.batch_size
                && tokio::time::Instant::now() < gathered
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Ok(more) = self.receive(self.batch_size - messages.len() as i32).await {
                    messages.extend(more);
                }
            }
            let event = sqs_event(&messages, &self.queue_arn);
            let payload = serde_json::to_string(&event).unwrap_or_default();
            let outcome = self.function.invoke(payload).await;
            if !matches!(outcome, Outcome::Response(_)) {
                tracing::warn!(function = %self.function.name(), ?outcome, "batch failed: its messages come back after their visibility timeout");
            }
            let failed = failed_records(&event, &outcome, self.report_batch_item_failures);
            for m in &messages {
                if failed.iter().any(|id| Some(id.as_str()) == m.message_id()) {
                    continue;
                }
                // A failed delete leaves the message to come back: at-least-once, as on AWS.
                let _ = self
                    .sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: &[&str]) -> SqsEvent {
        let messages: Vec<Message> = ids
            .iter()
            .map(|id| Message::builder().message_id(*id).body("{}").build())
            .collect();
        sqs_event(&messages, "arn:aws:sqs:us-east-1:123456789012:q")
    }

    #[test]
    fn a_batch_is_settled_as_the_event_source_mapping_settles_it() {
        let e = batch(&["a", "b"]);
        let ok = |body: &str| Outcome::Response(body.into());
        assert!(failed_records(&e, &ok(r#"{"batchItemFailures": []}"#), true).is_empty());
        assert!(failed_records(&e, &ok(""), true).is_empty());
        assert_eq!(
            failed_records(
                &e,
                &ok(r#"{"batchItemFailures": [{"itemIdentifier": "b"}]}"#),
                true
            ),
            vec!["b"]
        );
        assert_eq!(
            failed_records(
                &e,
                &ok(r#"{"batchItemFailures": [{"itemIdentifier": "zzz"}]}"#),
                true
            ),
            vec!["a", "b"],
            "an unknown id fails the batch"
        );
        assert_eq!(failed_records(&e, &ok("not json"), true), vec!["a", "b"]);
        assert!(
            failed_records(
                &e,
                &ok(r#"{"batchItemFailures": [{"itemIdentifier": "b"}]}"#),
                false
            )
            .is_empty(),
            "without ReportBatchItemFailures a response is a success"
        );
        for outcome in [
            Outcome::Error("x".into()),
            Outcome::Timeout,
            Outcome::Crashed("x".into()),
        ] {
            assert_eq!(failed_records(&e, &outcome, true), vec!["a", "b"]);
        }
    }
}
