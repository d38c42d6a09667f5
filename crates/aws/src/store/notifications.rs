//! `NotificationStore` on DynamoDB: notifications, their sharded list indexes, idempotency records.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

use notify_core::domain::notification::{Notification, Status};
use notify_core::domain::{IdempotencyKey, NotificationId};
use notify_core::jobs::Segment;
use notify_core::ports::{
    DeliveryStore, IdempotencyRecord, InsertOutcome, NotificationStore, Page, StoreError,
};

use super::item::{Item, ItemExt, body, number, read_notification, string, to_json};
use super::keys::{INDEX_SHARDS, all_index_pk, index_shard, key, ntf_pk, status_index_pk};
use super::{DynamoStore, build_err, cancelled_by_condition, err, is_condition_failure};

impl DynamoStore {
    /// The `want` newest notifications (of one status, or all) with an id below `before`: a
    /// merge of the index shards by id (ids sort by time), reading each shard only as far as
    /// the merge needs.
    pub(super) async fn newest_across_shards(
        &self,
        status: Option<Status>,
        want: usize,
        before: Option<&NotificationId>,
    ) -> Result<Vec<Item>, StoreError> {
        let (index, pk_name, sk_name) = match status {
            None => ("GSI1", "GSI1PK", "GSI1SK"),
            Some(_) => ("GSI2", "GSI2PK", "GSI2SK"),
        };
        let mut shards: Vec<ShardReader> = (0..INDEX_SHARDS)
            .map(|shard| ShardReader {
                pk: match status {
                    None => all_index_pk(shard),
                    Some(st) => status_index_pk(st, shard),
                },
                buffer: Default::default(),
                start: None,
                done: false,
            })
            .collect();
        let chunk = (want / INDEX_SHARDS as usize + 2).min(1000);
        let mut out = Vec::with_capacity(want);
        while out.len() < want {
            let empty: Vec<&mut ShardReader> = shards
                .iter_mut()
                .filter(|r| r.buffer.is_empty() && !r.done)
                .collect();
            let reads = empty.into_iter().map(|reader| async move {
                let condition = match before {
                    Some(_) => format!("{pk_name} = :pk AND {sk_name} < :before"),
                    None => format!("{pk_name} = :pk"),
                };
                let mut req = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(index)
                    .key_condition_expression(condition)
                    .expression_attribute_values(":pk", string(reader.pk.clone()))
                    .scan_index_forward(false)
                    .limit(chunk as i32)
                    .set_exclusive_start_key(reader.start.take());
                if let Some(before) = before {
                    req = req.expression_attribute_values(":before", string(before.as_str()));
                }
                let page = req.send().await.map_err(err)?;
                reader.buffer.extend(page.items.unwrap_or_default());
                reader.done = page.last_evaluated_key.is_none();
                reader.start = page.last_evaluated_key;
                Ok::<_, StoreError>(())
            });
            futures::future::try_join_all(reads).await?;
            if shards.iter().any(|r| r.buffer.is_empty() && !r.done) {
                continue; // a read that stopped at 1 MB (or found nothing yet): read on
            }
            // Every shard with items left has one in hand: the newest of them is next.
            let newest = shards
                .iter_mut()
                .filter(|r| !r.buffer.is_empty())
                .max_by(|a, b| {
                    a.buffer[0]
                        .string(sk_name)
                        .cmp(&b.buffer[0].string(sk_name))
                });
            match newest {
                Some(reader) => out.extend(reader.buffer.pop_front()),
                None => break,
            }
        }
        Ok(out)
    }
}

/// One index shard's part of a newest-first listing, read a few items at a time.
pub(super) struct ShardReader {
    pk: String,
    buffer: std::collections::VecDeque<Item>,
    start: Option<Item>,
    done: bool,
}

/// A listing cursor: the id of the last notification of the page (ids sort by time).
pub(super) fn encode_list_cursor(item: &Item) -> String {
    let id = item.string("GSI1SK").unwrap_or_default();
    URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&serde_json::json!({ "before": id })).expect("strings serialize"),
    )
}

pub(super) fn decode_list_cursor(raw: &str) -> Result<NotificationId, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| StoreError::BadCursor)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
    value["before"]
        .as_str()
        .and_then(|id| NotificationId::parse(id).ok())
        .ok_or(StoreError::BadCursor)
}

#[async_trait]
impl NotificationStore for DynamoStore {
    async fn find_idempotency(
        &self,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        // TTL deletes expired items only eventually: check the expiry here too.
        match self.get(format!("I#{}", key.as_str()), "I").await? {
            Some(item) if item.number("expires_at").unwrap_or(0) > now.as_millisecond() => {
                Ok(Some(body(&item)?))
            }
            _ => Ok(None),
        }
    }

    async fn insert_notification(
        &self,
        n_: &Notification,
        idem: Option<&IdempotencyRecord>,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let mut item = key(ntf_pk(&n_.id), "N");
        item.insert("body".into(), string(to_json(n_)?));
        item.insert("status".into(), string(n_.status.as_str()));
        item.insert("send_at".into(), number(n_.send_at.as_millisecond()));
        item.insert("fanned_out".into(), AttributeValue::Bool(false));
        // Kept for the retention after its send (which may be months ahead).
        item.insert("ttl".into(), self.ttl_after(n_.send_at.max(now)));
        let shard = index_shard(&n_.id);
        item.insert("GSI1PK".into(), string(all_index_pk(shard)));
        item.insert("GSI1SK".into(), string(n_.id.as_str()));
        item.insert("GSI2PK".into(), string(status_index_pk(n_.status, shard)));
        item.insert("GSI2SK".into(), string(n_.id.as_str()));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(build_err)?;
        let mut tx = vec![TransactWriteItem::builder().put(put).build()];
        if let Some(record) = idem {
            let mut item = key(format!("I#{}", record.key), "I");
            item.insert("body".into(), string(to_json(record)?));
            item.insert(
                "expires_at".into(),
                number(record.expires_at.as_millisecond()),
            );
            item.insert("ttl".into(), number(record.expires_at.as_second()));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                // A live record wins; an expired one (TTL not yet run) is replaced.
                .condition_expression("attribute_not_exists(PK) OR expires_at <= :now")
                .expression_attribute_values(":now", number(now.as_millisecond()))
                .build()
                .map_err(build_err)?;
            tx.push(TransactWriteItem::builder().put(put).build());
        }
        match self.transact(tx).await {
            Ok(_) => Ok(InsertOutcome::Inserted),
            Err(e) if idem.is_some() && cancelled_by_condition(&e) => {
                let key = IdempotencyKey::parse(&idem.expect("checked").key)
                    .map_err(|e| StoreError::Corrupt(e.0))?;
                match self.find_idempotency(&key, now).await? {
                    Some(existing) => Ok(InsertOutcome::KeyTaken(existing)),
                    None => Err(StoreError::unavailable(
                        "dynamodb",
                        "idempotency record vanished during insert",
                    )),
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn get_notification(
        &self,
        id: &NotificationId,
    ) -> Result<Option<Notification>, StoreError> {
        self.get(ntf_pk(id), "N")
            .await?
            .map(|i| read_notification(&i))
            .transpose()
    }

    async fn list_notifications(
        &self,
        status: Option<Status>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Notification>, StoreError> {
        let before = cursor.map(decode_list_cursor).transpose()?;
        let items = self
            .newest_across_shards(status, limit + 1, before.as_ref())
            .await?;
        let next_cursor = (items.len() > limit).then(|| encode_list_cursor(&items[limit - 1]));
        let items = items
            .iter()
            .take(limit)
            .map(read_notification)
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn transition(
        &self,
        id: &NotificationId,
        from: &[Status],
        to: Status,
    ) -> Result<bool, StoreError> {
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!(":f{i}")).collect();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(ntf_pk(id), "N")))
            .update_expression("SET #status = :to, GSI2PK = :gsi")
            .condition_expression(format!(
                "attribute_exists(PK) AND #status IN ({})",
                placeholders.join(", ")
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", string(to.as_str()))
            .expression_attribute_values(":gsi", string(status_index_pk(to, index_shard(id))));
        for (p, st) in placeholders.iter().zip(from) {
            req = req.expression_attribute_values(p, string(st.as_str()));
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn begin_retry(&self, id: &NotificationId) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(ntf_pk(id), "N")))
            .update_expression(
                "SET #status = :sending, GSI2PK = :gsi, fanned_out = :f, #ttl = :ttl REMOVE fanned_segments",
            )
            .condition_expression("#status IN (:failed, :partially_failed)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", self.ttl_now())
            .expression_attribute_values(":sending", string(Status::Sending.as_str()))
            .expression_attribute_values(
                ":gsi",
                string(status_index_pk(Status::Sending, index_shard(id))),
            )
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":failed", string(Status::Failed.as_str()))
            .expression_attribute_values(
                ":partially_failed",
                string(Status::PartiallyFailed.as_str()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn set_send_at(&self, id: &NotificationId, at: Timestamp) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(ntf_pk(id), "N")))
            .update_expression("SET send_at = :at, #ttl = :ttl")
            .condition_expression("#status = :scheduled")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", self.ttl_after(at))
            .expression_attribute_values(":at", number(at.as_millisecond()))
            .expression_attribute_values(":scheduled", string("scheduled"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn mark_fanned_out(
        &self,
        id: &NotificationId,
        segment: Option<Segment>,
    ) -> Result<(), StoreError> {
        if let Some(segment) = segment {
            // A set: the same segment recorded twice is still one.
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(ntf_pk(id), "N")))
                .update_expression("ADD fanned_segments :s")
                .condition_expression("attribute_exists(PK)")
                .expression_attribute_values(
                    ":s",
                    AttributeValue::Ns(vec![segment.index.to_string()]),
                )
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await
                .map_err(err)?;
            let done = out
                .attributes
                .as_ref()
                .and_then(|a| a.get("fanned_segments"))
                .and_then(|v| v.as_ns().ok())
                .map_or(0, Vec::len);
            if done < segment.of as usize {
                return Ok(());
            }
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(ntf_pk(id), "N")))
            .update_expression("SET fanned_out = :t")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn finish_if_done(&self, id: &NotificationId) -> Result<Option<Status>, StoreError> {
        let Some(item) = self.get(ntf_pk(id), "N").await? else {
            return Ok(None);
        };
        let fanned_out = item
            .get("fanned_out")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false);
        if item.string("status") != Some("sending") || !fanned_out {
            return Ok(None);
        }
        let counts = self.counts(id).await?;
        if counts.pending > 0 {
            return Ok(None);
        }
        let status = Status::finished(&counts);
        Ok(self
            .transition(id, &[Status::Sending], status)
            .await?
            .then_some(status))
    }
}
