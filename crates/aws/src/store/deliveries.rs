//! `DeliveryStore` on DynamoDB: delivery rows in `DELIVERY_BUCKETS` partitions, counts in `COUNT_SHARDS` items.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem, Update};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

use notify_core::domain::delivery::{Claim, Delivery, DeliveryKey, DeliveryStatus, Outcome};
use notify_core::domain::fanned_out_page::FannedOutPage;
use notify_core::domain::notification::Counts;
use notify_core::domain::{Channel, NotificationId, UserId};
use notify_core::ports::{DeliveryStore, JobClaimStore, Page, StoreError};

use super::item::{Item, ItemExt, delivery_item, number, string};
use super::keys::{
    COUNT_SHARDS, DELIVERY_BUCKETS, count_pk, count_shard_pk, delivery_bucket_pk, delivery_key,
    delivery_pk, delivery_sk, key, ntf_pk,
};
use super::{DynamoStore, build_err, cancelled_by_condition, err, is_condition_failure};

impl DynamoStore {
    /// The count-shard update that goes with a delivery moving from `from` to `to` (an outcome:
    /// pending → sent or failed; a retry: failed → pending).
    pub(super) fn move_count(
        &self,
        id: &NotificationId,
        recipient: &str,
        from: DeliveryStatus,
        to: DeliveryStatus,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(count_pk(id, recipient), "C")))
            .update_expression("SET #ttl = :ttl ADD #to :one, #from :minus")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", self.ttl_now())
            .expression_attribute_names("#to", to.as_str())
            .expression_attribute_names("#from", from.as_str())
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":minus", number(-1))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// A page of a notification's deliveries: bucket by bucket, each in sort key order. The
    /// cursor names the bucket and the sort key of the page's last row. Past the first bucket,
    /// several are read at once: a small send has a row in a few buckets of many.
    pub(super) async fn deliveries_page(
        &self,
        id: &NotificationId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let (mut bucket, mut start) = match cursor {
            Some(raw) => {
                let (bucket, sk) = decode_delivery_cursor(raw)?;
                (bucket, Some(key(delivery_bucket_pk(id, bucket), &sk)))
            }
            None => (0, None),
        };
        let want = limit + 1;
        let mut items: Vec<(u64, Item)> = Vec::new();
        let mut parallel = 1;
        while bucket < DELIVERY_BUCKETS && items.len() < want {
            let buckets: Vec<u64> = (bucket..(bucket + parallel).min(DELIVERY_BUCKETS)).collect();
            let left = want - items.len();
            let reads = buckets.iter().map(|b| {
                let values = HashMap::from([
                    (":pk".to_owned(), string(delivery_bucket_pk(id, *b))),
                    (":d".to_owned(), string("D#")),
                ]);
                let from = if *b == bucket { start.take() } else { None };
                self.query_page(
                    None,
                    "PK = :pk AND begins_with(SK, :d)",
                    values,
                    left - 1,
                    from,
                    true,
                )
            });
            let pages = futures::future::try_join_all(reads.collect::<Vec<_>>()).await?;
            for (b, page) in buckets.iter().zip(pages) {
                items.extend(page.into_iter().map(|item| (*b, item)));
            }
            bucket = buckets.last().map_or(DELIVERY_BUCKETS, |b| b + 1);
            parallel = LIST_PARALLEL;
        }
        items.truncate(want);
        let next_cursor = (items.len() > limit).then(|| {
            let (b, item) = &items[limit - 1];
            encode_delivery_cursor(*b, item.string("SK").unwrap_or_default())
        });
        items.truncate(limit);
        Ok((
            items.into_iter().map(|(_, item)| item).collect(),
            next_cursor,
        ))
    }
}

/// Buckets read at once when listing deliveries past the first bucket.
pub(super) const LIST_PARALLEL: u64 = 32;

pub(super) fn encode_delivery_cursor(bucket: u64, sk: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&serde_json::json!({ "b": bucket, "sk": sk }))
            .expect("strings serialize"),
    )
}

pub(super) fn decode_delivery_cursor(raw: &str) -> Result<(u64, String), StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| StoreError::BadCursor)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
    match (value["b"].as_u64(), value["sk"].as_str()) {
        (Some(b), Some(sk)) if b < DELIVERY_BUCKETS && sk.starts_with("D#") => {
            Ok((b, sk.to_owned()))
        }
        _ => Err(StoreError::BadCursor),
    }
}

#[async_trait]
impl DeliveryStore for DynamoStore {
    fn job_claims(&self) -> Option<&dyn JobClaimStore> {
        Some(self)
    }

    async fn fanned_out_page(
        &self,
        id: &NotificationId,
        page: &str,
        all: &[Channel],
    ) -> Result<Option<FannedOutPage>, StoreError> {
        let Some(item) = self.get(ntf_pk(id), &format!("P#{page}")).await? else {
            return Ok(None);
        };
        let members = FannedOutPage::decode_members(item.string("members").unwrap_or(""), all)
            .map_err(|e| StoreError::Corrupt(format!("fanned-out page: {e}")))?;
        Ok(Some(FannedOutPage {
            members,
            next_cursor: item.string("next").map(str::to_owned),
        }))
    }

    /// Skipped rows first (final: written twice, they say the same), then the page's record
    /// with its counts in one transaction on the condition that the page has none yet.
    async fn insert_deliveries(
        &self,
        id: &NotificationId,
        page: &str,
        record: &FannedOutPage,
        all: &[Channel],
        deliveries: &[Delivery],
    ) -> Result<bool, StoreError> {
        let marker = format!("P#{page}");
        let mut totals = Counts::default();
        let mut skipped = Vec::new();
        for d in deliveries {
            totals.recipients += 1;
            match d.status {
                DeliveryStatus::Skipped => {
                    totals.skipped += 1;
                    let mut item = delivery_item(d);
                    item.insert("ttl".into(), self.ttl_now());
                    skipped.push(item);
                }
                _ => totals.pending += 1,
            }
        }
        // Skipped rows are final: writing one twice writes the same thing.
        self.batch_put(skipped).await?;
        let mut marker_item = key(ntf_pk(id), &marker);
        marker_item.insert("ttl".into(), self.ttl_now());
        let members = record.encode_members(all);
        if !members.is_empty() {
            marker_item.insert("members".into(), string(members));
        }
        if let Some(next) = &record.next_cursor {
            marker_item.insert("next".into(), string(next));
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(marker_item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(build_err)?;
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(count_pk(id, page), "C")))
            .update_expression("SET #ttl = :ttl ADD recipients :r, pending :p, skipped :s")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", self.ttl_now())
            .expression_attribute_values(":r", number(totals.recipients))
            .expression_attribute_values(":p", number(totals.pending))
            .expression_attribute_values(":s", number(totals.skipped))
            .build()
            .map_err(build_err)?;
        let result = self
            .transact(vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder().update(count).build(),
            ])
            .await;
        match result {
            Ok(_) => Ok(true),
            // An earlier or concurrent fanout of the same page recorded and counted it.
            Err(e) if cancelled_by_condition(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn claim_delivery(
        &self,
        planned: &Delivery,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Claim, StoreError> {
        let k = &planned.key;
        let item_key = delivery_key(k);
        // The first claim creates the row (fanout did not write it); later ones need it pending
        // with a free or expired lease.
        let mut sets = vec![
            "lease_until = :lease",
            "recipient = :recipient",
            "channel = :channel",
            "#status = if_not_exists(#status, :pending)",
            "#ttl = :ttl",
        ];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key.clone()))
            .condition_expression(
                "attribute_not_exists(PK) OR (#status = :pending AND (attribute_not_exists(lease_until) OR lease_until <= :now))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", self.ttl_after(now))
            .expression_attribute_values(":lease", number(lease_until.as_millisecond()))
            .expression_attribute_values(":recipient", string(&k.recipient))
            .expression_attribute_values(":channel", string(k.channel.as_str()))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":pending", string("pending"))
            .expression_attribute_values(":now", number(now.as_millisecond()))
            .return_values(ReturnValue::UpdatedNew);
        if let Some(u) = &planned.user_id {
            sets.push("user_id = :user");
            req = req.expression_attribute_values(":user", string(u.as_str()));
        }
        if let Some(a) = &planned.address {
            sets.push("address = :address");
            req = req.expression_attribute_values(":address", string(a));
        }
        let result = req
            .update_expression(format!("SET {} ADD attempts :one", sets.join(", ")))
            .send()
            .await;
        match result {
            Ok(out) => {
                let attempt = out
                    .attributes
                    .as_ref()
                    .and_then(|a| a.number("attempts"))
                    .unwrap_or(1);
                Ok(Claim::Claimed {
                    attempt: attempt as u32,
                })
            }
            Err(e) if is_condition_failure(&e) => {
                let item = self
                    .get(
                        delivery_pk(&k.notification_id, &k.recipient),
                        &delivery_sk(&k.recipient, k.channel),
                    )
                    .await?;
                Ok(match item.as_ref().and_then(|i| i.string("status")) {
                    Some("pending") => Claim::Busy,
                    _ => Claim::Done,
                })
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn record_outcome(&self, k: &DeliveryKey, outcome: &Outcome) -> Result<(), StoreError> {
        let item_key = delivery_key(k);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(item_key))
            .expression_attribute_names("#status", "status");
        let (update, to) = match outcome {
            Outcome::Retry { error } | Outcome::Deferred { error } => {
                // Still pending: no count changes, so no transaction. A deferred delivery gets
                // back the attempt its claim counted.
                let given_back = i64::from(matches!(outcome, Outcome::Deferred { .. }));
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(delivery_key(k)))
                    .update_expression("SET #error = :error ADD attempts :given_back REMOVE lease_until")
                    .expression_attribute_values(":given_back", number(-given_back))
                    .condition_expression("#status = :pending")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_names("#error", "error")
                    .expression_attribute_values(":error", string(error))
                    .expression_attribute_values(":pending", string("pending"))
                    .send()
                    .await;
                return match result {
                    Ok(_) => Ok(()),
                    Err(e) if is_condition_failure(&e) => Ok(()),
                    Err(e) => Err(err(e)),
                };
            }
            Outcome::Sent { provider_message_id, at } => (
                update
                    .update_expression("SET #status = :to, sent_at = :at, provider_message_id = :pid, #ttl = :ttl REMOVE lease_until, #error")
                    .expression_attribute_names("#error", "error")
                    .expression_attribute_values(":at", number(at.as_millisecond()))
                    .expression_attribute_values(":pid", string(provider_message_id)),
                DeliveryStatus::Sent,
            ),
            Outcome::Failed { error } | Outcome::Skipped { reason: error } => (
                update
                    .update_expression("SET #status = :to, #error = :error, #ttl = :ttl REMOVE lease_until")
                    .expression_attribute_names("#error", "error")
                    .expression_attribute_values(":error", string(error)),
                match outcome {
                    Outcome::Skipped { .. } => DeliveryStatus::Skipped,
                    _ => DeliveryStatus::Failed,
                },
            ),
        };
        let update = update
            .condition_expression("#status = :pending")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", self.ttl_now())
            .expression_attribute_values(":pending", string("pending"))
            .expression_attribute_values(":to", string(to.as_str()))
            .build()
            .map_err(build_err)?;
        let count = self.move_count(
            &k.notification_id,
            &k.recipient,
            DeliveryStatus::Pending,
            to,
        )?;
        let result = self
            .transact(vec![
                TransactWriteItem::builder().update(update).build(),
                count,
            ])
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already final (a duplicate worker recorded it first): the counts stay as they are.
            Err(e) if cancelled_by_condition(&e) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn reopen_failed(&self, k: &DeliveryKey) -> Result<bool, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(delivery_key(k)))
            .update_expression("SET #status = :pending, attempts = :zero REMOVE lease_until")
            .condition_expression("#status = :failed")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", string("pending"))
            .expression_attribute_values(":failed", string("failed"))
            .expression_attribute_values(":zero", number(0))
            .build()
            .map_err(build_err)?;
        // The shard moves one count from failed back to pending, in the same transaction.
        let count = self.move_count(
            &k.notification_id,
            &k.recipient,
            DeliveryStatus::Failed,
            DeliveryStatus::Pending,
        )?;
        let result = self
            .transact(vec![
                TransactWriteItem::builder().update(update).build(),
                count,
            ])
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if cancelled_by_condition(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn record_feedback(
        &self,
        k: &DeliveryKey,
        provider_message_id: &str,
        to: DeliveryStatus,
    ) -> Result<bool, StoreError> {
        // The count to move depends on the status the row has now: read it, then change row
        // and count in one transaction on the condition that the row is still as read. A
        // report racing another for the same delivery reads again.
        for _ in 0..3 {
            let Some(row) = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(delivery_key(k)))
                .consistent_read(true)
                .send()
                .await
                .map_err(err)?
                .item
            else {
                return Ok(false);
            };
            let from = row.string("status").and_then(DeliveryStatus::parse);
            let Some(from) = from.filter(|from| from.may_become(to)) else {
                return Ok(false);
            };
            if row.string("provider_message_id") != Some(provider_message_id) {
                return Ok(false);
            }
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(delivery_key(k)))
                .update_expression("SET #status = :to")
                .condition_expression("#status = :from AND provider_message_id = :pid")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":to", string(to.as_str()))
                .expression_attribute_values(":from", string(from.as_str()))
                .expression_attribute_values(":pid", string(provider_message_id))
                .build()
                .map_err(build_err)?;
            let count = self.move_count(&k.notification_id, &k.recipient, from, to)?;
            match self
                .transact(vec![
                    TransactWriteItem::builder().update(update).build(),
                    count,
                ])
                .await
            {
                Ok(()) => return Ok(true),
                Err(e) if cancelled_by_condition(&e) => continue,
                Err(e) => return Err(err(e)),
            }
        }
        Ok(false)
    }

    async fn list_deliveries(
        &self,
        id: &NotificationId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError> {
        let (items, next_cursor) = self.deliveries_page(id, limit, cursor).await?;
        Ok(Page {
            items: items
                .iter()
                .map(|item| read_delivery(id, item))
                .collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    async fn counts(&self, id: &NotificationId) -> Result<Counts, StoreError> {
        let mut c = Counts::default();
        let mut sums: Vec<(&str, i64)> = std::iter::once("recipients")
            .chain(DeliveryStatus::ALL.iter().map(|s| s.as_str()))
            .map(|name| (name, 0))
            .collect();
        // Every count item of the notification in one BatchGetItem (at most 100 keys), read
        // consistently.
        let keys = (0..COUNT_SHARDS)
            .map(|k| key(count_shard_pk(id, k), "C"))
            .collect();
        for item in self.batch_get(keys, true).await? {
            for (k, total) in sums.iter_mut() {
                *total += item.number(k).unwrap_or(0);
            }
        }
        // A shard alone may be negative (a page's pending counted on one shard, its outcomes on
        // others); the sums are exact.
        let get = |k: &str| {
            sums.iter()
                .find(|(name, _)| *name == k)
                .map_or(0, |(_, v)| (*v).max(0) as u64)
        };
        c.recipients = get("recipients");
        for status in DeliveryStatus::ALL {
            c.add(status, get(status.as_str()));
        }
        Ok(c)
    }
}

/// A delivery row of notification `id` as the domain's `Delivery`.
pub(super) fn read_delivery(id: &NotificationId, item: &Item) -> Result<Delivery, StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("stored delivery has a bad {what}"));
    Ok(Delivery {
        key: DeliveryKey {
            notification_id: id.clone(),
            recipient: item
                .string("recipient")
                .ok_or_else(|| bad("recipient"))?
                .to_owned(),
            channel: Channel::parse(item.string("channel").unwrap_or_default())
                .map_err(|_| bad("channel"))?,
        },
        user_id: item
            .string("user_id")
            .map(UserId::parse)
            .transpose()
            .map_err(|_| bad("user id"))?,
        address: item.string("address").map(str::to_owned),
        status: DeliveryStatus::parse(item.string("status").unwrap_or_default())
            .ok_or_else(|| bad("status"))?,
        attempts: item.number("attempts").unwrap_or(0) as u32,
        error: item.string("error").map(str::to_owned),
        sent_at: item
            .number("sent_at")
            .and_then(|ms| Timestamp::from_millisecond(ms).ok()),
        provider_message_id: item.string("provider_message_id").map(str::to_owned),
    })
}
