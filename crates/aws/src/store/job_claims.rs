//! `JobClaimStore` on DynamoDB: a job item per keyed dispatch job, in a delivery partition of
//! the notification chosen by the job's key. Per email this is one write, the delivery's row;
//! per job, the claim (one write) and the commit (one transaction of two items).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use jiff::Timestamp;

use notify_core::domain::NotificationId;
use notify_core::domain::delivery::{Delivery, DeliveryKey};
use notify_core::domain::job_claim::{JobClaim, JobLease, JobTotals};
use notify_core::ports::{JobClaimStore, StoreError};

use super::item::{Item, ItemExt, delivery_item, number, string};
use super::keys::{DELIVERY_BUCKETS, count_pk, delivery_bucket_pk, delivery_key, fnv, key};
use super::{DynamoStore, build_err, cancelled_by_condition, err, is_condition_failure};

/// BatchGetItem takes at most 100 keys.
const BATCH_GET: usize = 100;

/// The job item's partition: one of the notification's delivery partitions, by the job's key.
fn job_pk(id: &NotificationId, job: &str) -> String {
    delivery_bucket_pk(id, fnv(job) % DELIVERY_BUCKETS)
}

fn job_sk(job: &str) -> String {
    format!("J#{job}")
}

fn job_key(id: &NotificationId, job: &str) -> Item {
    key(job_pk(id, job), &job_sk(job))
}

fn totals_of(item: &Item) -> JobTotals {
    let n = |k: &str| item.number(k).unwrap_or(0).max(0) as u64;
    JobTotals {
        sent: n("sent"),
        failed: n("failed"),
        skipped: n("skipped"),
    }
}

#[async_trait]
impl JobClaimStore for DynamoStore {
    async fn claim_job(
        &self,
        id: &NotificationId,
        job: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<JobClaim, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(job_key(id, job)))
            .update_expression("SET lease_until = :lease, #ttl = :ttl ADD attempts :one")
            .condition_expression(
                "attribute_not_exists(PK) OR (attribute_not_exists(done) AND (attribute_not_exists(lease_until) OR lease_until <= :now))",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", self.ttl_after(now))
            .expression_attribute_values(":lease", number(lease_until.as_millisecond()))
            .expression_attribute_values(":now", number(now.as_millisecond()))
            .expression_attribute_values(":one", number(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                Ok(JobClaim::Claimed(JobLease {
                    attempt: item.number("attempts").unwrap_or(1).max(1) as u32,
                    counted: totals_of(&item),
                }))
            }
            Err(e) if is_condition_failure(&e) => {
                Ok(match self.get(job_pk(id, job), &job_sk(job)).await? {
                    Some(item) if item.contains_key("done") => JobClaim::Done,
                    _ => JobClaim::Busy,
                })
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn job_deliveries(&self, keys: &[DeliveryKey]) -> Result<Vec<Delivery>, StoreError> {
        let mut rows = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET) {
            let items = self
                .batch_get(chunk.iter().map(delivery_key).collect(), true)
                .await?;
            // The notification is the one of the key the item was asked for.
            let asked: HashMap<(&str, &str), &DeliveryKey> = chunk
                .iter()
                .map(|k| ((k.recipient.as_str(), k.channel.as_str()), k))
                .collect();
            for item in &items {
                let found = item.string("recipient").zip(item.string("channel"));
                let Some(k) = found.and_then(|rc| asked.get(&rc)) else {
                    continue;
                };
                rows.push(super::deliveries::read_delivery(&k.notification_id, item)?);
            }
        }
        Ok(rows)
    }

    async fn put_job_delivery(&self, row: &Delivery) -> Result<bool, StoreError> {
        let mut item = delivery_item(row);
        item.insert("ttl".into(), self.ttl_now());
        if let Some(at) = row.sent_at {
            item.insert("sent_at".into(), number(at.as_millisecond()));
        }
        if let Some(pid) = &row.provider_message_id {
            item.insert("provider_message_id".into(), string(pid));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR #status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", string("pending"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn commit_job(
        &self,
        id: &NotificationId,
        job: &str,
        lease: &JobLease,
        totals: JobTotals,
        done: bool,
    ) -> Result<bool, StoreError> {
        let mut expression =
            "SET sent = :sent, failed = :failed, skipped = :skipped, committed = :attempt, #ttl = :ttl"
                .to_owned();
        let mut values = HashMap::from([
            (":ttl".to_owned(), self.ttl_now()),
            (":attempt".to_owned(), number(lease.attempt)),
            (":sent".to_owned(), number(totals.sent)),
            (":failed".to_owned(), number(totals.failed)),
            (":skipped".to_owned(), number(totals.skipped)),
        ]);
        if done {
            expression.push_str(", done = :done");
            values.insert(":done".to_owned(), AttributeValue::Bool(true));
        }
        expression.push_str(" REMOVE lease_until");
        let names = HashMap::from([("#ttl".to_owned(), "ttl".to_owned())]);
        // No claim since this one (a later claim counts the job from its rows), and this
        // claim's commit not made yet: a commit sent again after a lost answer moves nothing.
        let condition =
            "attempts = :attempt AND (attribute_not_exists(committed) OR committed <> :attempt)";
        let job_update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(job_key(id, job)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build_err)?;
        let (sent, failed, skipped) = totals.since(&lease.counted);
        if (sent, failed, skipped) == (0, 0, 0) {
            // Nothing to count: the lease released (and the job marked done) in one write.
            return match self.update_alone(job_update).await {
                Ok(()) => Ok(true),
                Err(e) if is_condition_failure(&e) => Ok(false),
                Err(e) => Err(err(e)),
            };
        }
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(count_pk(id, job), "C")))
            .update_expression(
                "SET #ttl = :ttl ADD sent :sent, failed :failed, skipped :skipped, pending :pending",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", self.ttl_now())
            .expression_attribute_values(":sent", number(sent))
            .expression_attribute_values(":failed", number(failed))
            .expression_attribute_values(":skipped", number(skipped))
            .expression_attribute_values(":pending", number(-(sent + failed + skipped)))
            .build()
            .map_err(build_err)?;
        let result = self
            .transact(vec![
                TransactWriteItem::builder().update(job_update).build(),
                TransactWriteItem::builder().update(count).build(),
            ])
            .await;
        match result {
            Ok(()) => Ok(true),
            Err(e) if cancelled_by_condition(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }
}
