//! The store port on DynamoDB, one table (on-demand):
//!
//! | item | PK | SK | other |
//! | --- | --- | --- | --- |
//! | user | `U#<id>` | `U` | `body` |
//! | template | `T#<id>` | `T` | `body` |
//! | idempotency record | `I#<key>` | `I` | `body`, `expires_at` (ms), `ttl` (s, the table's TTL attribute) |
//! | notification | `N#<id>` | `N` | `body`, `status`, `send_at`, `fanned_out`; `GSI1PK`=`N`, `GSI1SK`=id (all, newest first); `GSI2PK`=`S#<status>`, `GSI2SK`=id |
//! | fanned-out page | `N#<id>` | `P#<page>` | (marks the page as counted) |
//! | delivery | `N#<id>` | `D#<recipient>#<channel>` | `recipient`, `channel`, `status`, `attempts`, `lease_until`, ... |
//! | count shard | `N#<id>` | `C#<0..15>` | `recipients`, `pending`, `sent`, `failed`, `skipped` (signed; their sums are the counts) |
//! | group | `G#<id>` | `G` | `name`, `member_count` |
//! | membership | `G#<id>` | `M#<user>` | `user_id`; `GSI1PK`=`UG#<user>`, `GSI1SK`=`G#<group>` (a user's groups) |
//!
//! Fanout writes nothing per pending recipient: a page adds its totals to one count shard
//! (with the page's marker, in one transaction, so a page fanned out twice counts once) and
//! writes only its `skipped` rows. A pending delivery's row is created by its first claim.
//! Every outcome changes the row and a count shard in one transaction, so the counts are exact,
//! and with 16 shards no single item takes every write of a big send.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, PutRequest, ReturnValue, TransactWriteItem, Update,
    WriteRequest,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

use notify_core::domain::delivery::{Claim, Delivery, DeliveryKey, DeliveryStatus, Outcome};
use notify_core::domain::group::Group;
use notify_core::domain::notification::{Counts, Notification, Status};
use notify_core::domain::template::Template;
use notify_core::domain::user::User;
use notify_core::domain::{Channel, GroupId, IdempotencyKey, NotificationId, TemplateId, UserId};
use notify_core::ports::{IdempotencyRecord, InsertOutcome, Page, Store, StoreError};

/// Count items of one notification, each its own partition key: every outcome adds to one of
/// them, so a send of any size spreads its count writes over this many partitions.
pub const COUNT_SHARDS: u64 = 32;
/// Partitions of one notification's delivery rows (by recipient): a big send claims and
/// records thousands of deliveries a second, and one partition key takes about 1,000 writes
/// a second.
pub const DELIVERY_BUCKETS: u64 = 128;
/// Buckets read at once when listing deliveries past the first bucket.
const LIST_PARALLEL: u64 = 32;
/// Conditional writes in flight at once when inserting a page of deliveries.
const WRITE_CONCURRENCY: usize = 16;
/// BatchGetItem calls in flight at once when resolving a page of members.
pub const READ_CONCURRENCY: usize = 8;

type Item = HashMap<String, AttributeValue>;

pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("PK".to_owned(), s(pk)), ("SK".to_owned(), s(sk))])
}

/// The partition of a notification's own item and its page markers.
pub fn ntf_pk(id: &NotificationId) -> String {
    format!("N#{id}")
}

fn delivery_sk(recipient: &str, channel: Channel) -> String {
    format!("D#{recipient}#{channel}")
}

/// FNV-1a: stable across processes and versions, unlike the std hasher.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The partition of one recipient's delivery rows.
pub fn delivery_pk(id: &NotificationId, recipient: &str) -> String {
    delivery_bucket_pk(id, fnv(recipient) % DELIVERY_BUCKETS)
}

fn delivery_bucket_pk(id: &NotificationId, bucket: u64) -> String {
    format!("D#{id}#{bucket}")
}

/// The count item an outcome of `recipient` (or a fanned-out page, by its key) adds to.
pub fn count_pk(id: &NotificationId, recipient: &str) -> String {
    count_shard_pk(id, fnv(recipient) % COUNT_SHARDS)
}

fn count_shard_pk(id: &NotificationId, shard: u64) -> String {
    format!("C#{id}#{shard}")
}

fn delivery_key(k: &DeliveryKey) -> Item {
    key(
        delivery_pk(&k.notification_id, &k.recipient),
        &delivery_sk(&k.recipient, k.channel),
    )
}

/// The index partition of every notification (`GSI1`) and of those in one status (`GSI2`) is
/// one of `INDEX_SHARDS`, by the notification's id: one index partition key takes about 1,000
/// writes a second, and each notification writes its index entries four times (insert, sending,
/// fanned out, finished), two more for each status change in `GSI2`.
pub const INDEX_SHARDS: u64 = 64;

pub fn index_shard(id: &NotificationId) -> u64 {
    fnv(id.as_str()) % INDEX_SHARDS
}

pub fn all_index_pk(shard: u64) -> String {
    format!("N#{shard:02}")
}

pub fn status_index_pk(status: Status, shard: u64) -> String {
    format!("S#{}#{shard:02}", status.as_str())
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable("dynamodb", e)
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::unavailable("dynamodb request", e)
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn body<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let raw = get_s(item, "body").ok_or_else(|| StoreError::Corrupt("item without body".into()))?;
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::unavailable("JSON", e))
}

fn delivery_item(d: &Delivery) -> Item {
    let mut item = delivery_key(&d.key);
    item.insert("recipient".into(), s(&d.key.recipient));
    item.insert("channel".into(), s(d.key.channel.as_str()));
    item.insert("status".into(), s(d.status.as_str()));
    item.insert("attempts".into(), n(d.attempts));
    if let Some(u) = &d.user_id {
        item.insert("user_id".into(), s(u.as_str()));
    }
    if let Some(a) = &d.address {
        item.insert("address".into(), s(a));
    }
    if let Some(e) = &d.error {
        item.insert("error".into(), s(e));
    }
    item
}

fn read_group(id: &GroupId, item: &Item) -> Group {
    Group {
        id: id.clone(),
        name: get_s(item, "name").unwrap_or_default().to_owned(),
        member_count: get_n(item, "member_count").unwrap_or(0).max(0) as u64,
    }
}

fn read_notification(item: &Item) -> Result<Notification, StoreError> {
    let mut n: Notification = body(item)?;
    let status = get_s(item, "status").unwrap_or_default();
    n.status = Status::parse(status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?;
    n.send_at = get_n(item, "send_at")
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(n.send_at);
    Ok(n)
}

/// An opaque cursor: the key attributes of the last item of a page.
fn encode_cursor(item: &Item, names: &[&str]) -> String {
    let map: HashMap<&str, &str> = names
        .iter()
        .filter_map(|k| get_s(item, k).map(|v| (*k, v)))
        .collect();
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&map).expect("strings serialize"))
}

fn decode_cursor(raw: &str, names: &[&str]) -> Result<Item, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| StoreError::BadCursor)?;
    let map: HashMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
    if map.len() != names.len() || !names.iter().all(|k| map.contains_key(*k)) {
        return Err(StoreError::BadCursor);
    }
    Ok(map.into_iter().map(|(k, v)| (k, s(v))).collect())
}

fn is_condition_failure<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool {
    e.as_service_error().and_then(|se| se.code()) == Some("ConditionalCheckFailedException")
}

type TransactError = aws_sdk_dynamodb::error::SdkError<
    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
    aws_smithy_runtime_api::client::orchestrator::HttpResponse,
>;

type TransactResult = Result<(), TransactError>;

/// Why each item of a cancelled transaction failed; `None` if it was not cancelled.
fn cancellation_reasons(
    e: &TransactError,
) -> Option<&[aws_sdk_dynamodb::types::CancellationReason]> {
    match e.as_service_error() {
        Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
            Some(c.cancellation_reasons())
        }
        _ => None,
    }
}

fn has_code(reasons: &[aws_sdk_dynamodb::types::CancellationReason], codes: &[&str]) -> bool {
    reasons
        .iter()
        .any(|r| r.code().is_some_and(|c| codes.contains(&c)))
}

/// Whether a cancelled transaction failed only on its condition checks.
fn cancelled_by_condition(e: &TransactError) -> bool {
    cancellation_reasons(e)
        .is_some_and(|reasons| reasons.is_empty() || has_code(reasons, &["ConditionalCheckFailed"]))
}

/// Whether a cancelled transaction may pass if sent again: it met another transaction on one of
/// its items (`TransactionConflict`) or was throttled, and no condition failed. AWS documents
/// both; the SDK does not retry a cancelled transaction.
fn cancelled_but_retryable(e: &TransactError) -> bool {
    cancellation_reasons(e).is_some_and(|reasons| {
        !has_code(reasons, &["ConditionalCheckFailed"])
            && has_code(
                reasons,
                &[
                    "TransactionConflict",
                    "ThrottlingError",
                    "ProvisionedThroughputExceeded",
                ],
            )
    })
}

/// Attempts of one transaction cancelled by conflicts before its caller sees the error.
const TRANSACT_ATTEMPTS: u32 = 8;

impl DynamoStore {
    /// TransactWriteItems, sent again (jittered, doubling pauses) while it is cancelled by a
    /// conflict or throttling: the outcome of a send that happened must be written.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> TransactResult {
        let mut pause = std::time::Duration::from_millis(20);
        let mut attempt = 1;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            match result {
                Err(e) if attempt < TRANSACT_ATTEMPTS && cancelled_but_retryable(&e) => {
                    tokio::time::sleep(notify_core::backoff::jitter(pause)).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(1));
                    attempt += 1;
                }
                other => return other.map(|_| ()),
            }
        }
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        Ok(out.item)
    }

    async fn put_body(&self, pk: String, sk: &str, body: String) -> Result<(), StoreError> {
        let mut item = key(pk, sk);
        item.insert("body".into(), s(body));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete(&self, pk: String, sk: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(err)?;
        Ok(out.attributes.is_some())
    }

    /// The count-shard update that goes with a delivery moving from `from` to `to` (an outcome:
    /// pending → sent or failed; a retry: failed → pending).
    fn move_count(
        &self,
        id: &NotificationId,
        recipient: &str,
        from: DeliveryStatus,
        to: DeliveryStatus,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(count_pk(id, recipient), "C")))
            .update_expression("ADD #to :one, #from :minus")
            .expression_attribute_names("#to", to.as_str())
            .expression_attribute_names("#from", from.as_str())
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":minus", n(-1))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn batch_get_users(&self, ids: &[&UserId]) -> Result<Vec<User>, StoreError> {
        let keys = ids.iter().map(|id| key(format!("U#{id}"), "U")).collect();
        self.batch_get(keys, false)
            .await?
            .iter()
            .map(body)
            .collect()
    }

    /// BatchGetItem of at most 100 keys, sending unprocessed keys again with backoff.
    async fn batch_get(
        &self,
        mut keys: Vec<Item>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::with_capacity(keys.len());
        for attempt in 0..8u32 {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(consistent)
                .build()
                .map_err(build_err)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(err)?;
            items.extend(
                out.responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default(),
            );
            keys = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if keys.is_empty() {
                return Ok(items);
            }
            tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
        }
        Err(StoreError::unavailable(
            "dynamodb",
            format!("{} reads still unprocessed", keys.len()),
        ))
    }

    /// Writes rows that never change again (skipped ones) 25 per call, retrying unprocessed items.
    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let requests = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
            })
            .collect::<Result<_, _>>()
            .map_err(build_err)?;
        self.batch_write(requests).await
    }

    /// BatchWriteItem, 25 requests a call, sending unprocessed ones again with backoff.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            for attempt in 0..8u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(err)?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt == 7 {
                    return Err(StoreError::unavailable(
                        "dynamodb",
                        format!("{} writes still unprocessed", pending.len()),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
            }
        }
        Ok(())
    }

    /// Subscribes or unsubscribes each user, several at once; returns how many changed.
    async fn change_members(
        &self,
        id: &GroupId,
        users: &[UserId],
        subscribe: bool,
    ) -> Result<u64, StoreError> {
        let mut changed = 0;
        for chunk in users.chunks(WRITE_CONCURRENCY) {
            let mut writes = Vec::with_capacity(chunk.len());
            for u in chunk {
                writes.push(async move {
                    if subscribe {
                        self.add_member(id, u).await
                    } else {
                        self.remove_member(id, u).await
                    }
                });
            }
            changed += futures::future::try_join_all(writes)
                .await?
                .into_iter()
                .filter(|c| *c)
                .count() as u64;
        }
        Ok(changed)
    }

    /// Removes one membership, then counts it off the group. Not a transaction: `member_count`
    /// is for display, a crash between the two writes leaves it off by one, and a transaction
    /// would double the cost of every (un)subscribe.
    async fn remove_member(&self, group: &GroupId, user: &UserId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("G#{group}"), &format!("M#{user}"))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(err)?;
        if out.attributes.is_none() {
            return Ok(false);
        }
        self.add_to_member_count(group, -1).await?;
        Ok(true)
    }

    async fn add_member(&self, group: &GroupId, user: &UserId) -> Result<bool, StoreError> {
        let mut item = key(format!("G#{group}"), &format!("M#{user}"));
        item.insert("user_id".into(), s(user.as_str()));
        item.insert("GSI1PK".into(), s(format!("UG#{user}")));
        item.insert("GSI1SK".into(), s(format!("G#{group}")));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => {
                self.add_to_member_count(group, 1).await?;
                Ok(true)
            }
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn add_to_member_count(&self, group: &GroupId, by: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("G#{group}"), "G")))
            .update_expression("ADD member_count :by")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":by", n(by))
            .send()
            .await;
        match result {
            // The group was deleted meanwhile: nothing to count.
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// A page of the items of partition `pk` whose sort key starts with `prefix`, in order,
    /// with the opaque cursor of the next page.
    async fn query_prefix(
        &self,
        pk: String,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let names = ["PK", "SK"];
        let start = cursor.map(|c| decode_cursor(c, &names)).transpose()?;
        if start
            .as_ref()
            .is_some_and(|st| get_s(st, "PK") != Some(pk.as_str()))
        {
            return Err(StoreError::BadCursor);
        }
        let mut items = self
            .query_page(
                None,
                "PK = :pk AND begins_with(SK, :prefix)",
                HashMap::from([(":pk".to_owned(), s(pk)), (":prefix".to_owned(), s(prefix))]),
                limit,
                start,
                true,
            )
            .await?;
        let next_cursor = (items.len() > limit).then(|| encode_cursor(&items[limit - 1], &names));
        items.truncate(limit);
        Ok((items, next_cursor))
    }

    async fn query_page(
        &self,
        index: Option<&str>,
        key_condition: &str,
        values: Item,
        limit: usize,
        start: Option<Item>,
        forward: bool,
    ) -> Result<Vec<Item>, StoreError> {
        // One more than asked, to know whether there is a next page. A Query stops at 1 MB
        // whatever its limit: follow LastEvaluatedKey until the page is full or the end.
        let want = limit + 1;
        let mut items: Vec<Item> = Vec::with_capacity(want.min(1000));
        let mut start = start;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(key_condition)
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(forward)
                .limit(i32::try_from(want - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(next) if items.len() < want => start = Some(next),
                _ => return Ok(items),
            }
        }
    }
}

/// One index shard's part of a newest-first listing, read a few items at a time.
struct ShardReader {
    pk: String,
    buffer: std::collections::VecDeque<Item>,
    start: Option<Item>,
    done: bool,
}

impl DynamoStore {
    /// The `want` newest notifications (of one status, or all) with an id below `before`: a
    /// merge of the index shards by id (ids sort by time), reading each shard only as far as
    /// the merge needs.
    async fn newest_across_shards(
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
                    .expression_attribute_values(":pk", s(reader.pk.clone()))
                    .scan_index_forward(false)
                    .limit(chunk as i32)
                    .set_exclusive_start_key(reader.start.take());
                if let Some(before) = before {
                    req = req.expression_attribute_values(":before", s(before.as_str()));
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
                .max_by(|a, b| get_s(&a.buffer[0], sk_name).cmp(&get_s(&b.buffer[0], sk_name)));
            match newest {
                Some(reader) => out.extend(reader.buffer.pop_front()),
                None => break,
            }
        }
        Ok(out)
    }
}

impl DynamoStore {
    /// A page of a notification's deliveries: bucket by bucket, each in sort key order. The
    /// cursor names the bucket and the sort key of the page's last row. Past the first bucket,
    /// several are read at once: a small send has a row in a few buckets of many.
    async fn deliveries_page(
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
                    (":pk".to_owned(), s(delivery_bucket_pk(id, *b))),
                    (":d".to_owned(), s("D#")),
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
            encode_delivery_cursor(*b, get_s(item, "SK").unwrap_or_default())
        });
        items.truncate(limit);
        Ok((
            items.into_iter().map(|(_, item)| item).collect(),
            next_cursor,
        ))
    }
}

fn encode_delivery_cursor(bucket: u64, sk: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&serde_json::json!({ "b": bucket, "sk": sk }))
            .expect("strings serialize"),
    )
}

fn decode_delivery_cursor(raw: &str) -> Result<(u64, String), StoreError> {
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

/// A listing cursor: the id of the last notification of the page (ids sort by time).
fn encode_list_cursor(item: &Item) -> String {
    let id = get_s(item, "GSI1SK").unwrap_or_default();
    URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&serde_json::json!({ "before": id })).expect("strings serialize"),
    )
}

fn decode_list_cursor(raw: &str) -> Result<NotificationId, StoreError> {
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
impl Store for DynamoStore {
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        self.put_body(format!("U#{}", user.id), "U", to_json(user)?)
            .await
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.get(format!("U#{id}"), "U")
            .await?
            .map(|i| body(&i))
            .transpose()
    }

    async fn get_users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&UserId> = ids.iter().filter(|id| seen.insert(*id)).collect();
        // 100 keys per BatchGetItem, several calls at once: a page of 2,000 members is one round trip or three.
        let mut users = Vec::with_capacity(unique.len());
        for calls in unique.chunks(100 * READ_CONCURRENCY) {
            let mut reads = Vec::with_capacity(READ_CONCURRENCY);
            for chunk in calls.chunks(100) {
                reads.push(self.batch_get_users(chunk));
            }
            for found in futures::future::try_join_all(reads).await? {
                users.extend(found);
            }
        }
        Ok(users)
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool, StoreError> {
        // Memberships first: a user that is gone must not stay on a list.
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("GSI1")
                .key_condition_expression("GSI1PK = :pk")
                .expression_attribute_values(":pk", s(format!("UG#{id}")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err)?;
            for item in out.items() {
                if let Some(group) = get_s(item, "GSI1SK")
                    .and_then(|g| g.strip_prefix("G#"))
                    .and_then(|g| GroupId::parse(g).ok())
                {
                    self.remove_member(&group, id).await?;
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        self.delete(format!("U#{id}"), "U").await
    }

    async fn put_group(&self, id: &GroupId, name: &str) -> Result<Group, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("G#{id}"), "G")))
            .update_expression("SET #name = :name ADD member_count :zero")
            .condition_expression("attribute_not_exists(deleting)")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":name", s(name))
            .expression_attribute_values(":zero", n(0))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(read_group(id, &out.attributes.unwrap_or_default())),
            Err(e) if is_condition_failure(&e) => Err(StoreError::Conflict(
                "the group is still being deleted; create it again in a moment".into(),
            )),
            Err(e) => Err(err(e)),
        }
    }

    async fn get_group(&self, id: &GroupId) -> Result<Option<Group>, StoreError> {
        let item = self.get(format!("G#{id}"), "G").await?;
        // A group being deleted (its memberships purged in the background) is gone already.
        Ok(item
            .filter(|item| !item.contains_key("deleting"))
            .map(|item| read_group(id, &item)))
    }

    /// Marks the group deleted (readers see it gone at once); `purge_group`, run by a chore,
    /// removes its memberships and then the item. One write per member would not fit in an
    /// API call for a big group.
    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("G#{id}"), "G")))
            .update_expression("SET deleting = :t")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn purge_group(&self, id: &GroupId, max: usize) -> Result<bool, StoreError> {
        // A notification already fanned out keeps its rows: only memberships go.
        let page = self.list_members(id, max.clamp(1, 1000), None).await?;
        let deletes = page
            .items
            .iter()
            .map(|u| {
                aws_sdk_dynamodb::types::DeleteRequest::builder()
                    .set_key(Some(key(format!("G#{id}"), &format!("M#{u}"))))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
            })
            .collect::<Result<_, _>>()
            .map_err(build_err)?;
        self.batch_write(deletes).await?;
        if page.next_cursor.is_some() {
            return Ok(false);
        }
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("G#{id}"), "G")))
            .condition_expression("attribute_exists(deleting)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // Created again meanwhile, or gone already.
            Err(e) if is_condition_failure(&e) => Ok(true),
            Err(e) => Err(err(e)),
        }
    }

    async fn add_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        self.change_members(id, users, true).await
    }

    async fn remove_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        self.change_members(id, users, false).await
    }

    async fn list_members(
        &self,
        id: &GroupId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError> {
        let (items, next_cursor) = self
            .query_prefix(format!("G#{id}"), "M#", limit, cursor)
            .await?;
        let members = items
            .iter()
            .map(|i| {
                UserId::parse(get_s(i, "user_id").unwrap_or_default())
                    .map_err(|e| StoreError::Corrupt(e.0))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items: members,
            next_cursor,
        })
    }

    async fn put_template(&self, template: &Template) -> Result<(), StoreError> {
        self.put_body(format!("T#{}", template.id), "T", to_json(template)?)
            .await
    }

    async fn get_template(&self, id: &TemplateId) -> Result<Option<Template>, StoreError> {
        self.get(format!("T#{id}"), "T")
            .await?
            .map(|i| body(&i))
            .transpose()
    }

    async fn delete_template(&self, id: &TemplateId) -> Result<bool, StoreError> {
        self.delete(format!("T#{id}"), "T").await
    }

    async fn find_idempotency(
        &self,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        // TTL deletes expired items only eventually: check the expiry here too.
        match self.get(format!("I#{}", key.as_str()), "I").await? {
            Some(item) if get_n(&item, "expires_at").unwrap_or(0) > now.as_millisecond() => {
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
        item.insert("body".into(), s(to_json(n_)?));
        item.insert("status".into(), s(n_.status.as_str()));
        item.insert("send_at".into(), n(n_.send_at.as_millisecond()));
        item.insert("fanned_out".into(), AttributeValue::Bool(false));
        let shard = index_shard(&n_.id);
        item.insert("GSI1PK".into(), s(all_index_pk(shard)));
        item.insert("GSI1SK".into(), s(n_.id.as_str()));
        item.insert("GSI2PK".into(), s(status_index_pk(n_.status, shard)));
        item.insert("GSI2SK".into(), s(n_.id.as_str()));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(build_err)?;
        let mut tx = vec![TransactWriteItem::builder().put(put).build()];
        if let Some(record) = idem {
            let mut item = key(format!("I#{}", record.key), "I");
            item.insert("body".into(), s(to_json(record)?));
            item.insert("expires_at".into(), n(record.expires_at.as_millisecond()));
            item.insert("ttl".into(), n(record.expires_at.as_second()));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                // A live record wins; an expired one (TTL not yet run) is replaced.
                .condition_expression("attribute_not_exists(PK) OR expires_at <= :now")
                .expression_attribute_values(":now", n(now.as_millisecond()))
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
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":gsi", s(status_index_pk(to, index_shard(id))));
        for (p, st) in placeholders.iter().zip(from) {
            req = req.expression_attribute_values(p, s(st.as_str()));
        }
        match req.send().await {
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
            .update_expression("SET send_at = :at")
            .condition_expression("#status = :scheduled")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":at", n(at.as_millisecond()))
            .expression_attribute_values(":scheduled", s("scheduled"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn insert_deliveries(
        &self,
        id: &NotificationId,
        page: &str,
        deliveries: &[Delivery],
    ) -> Result<(), StoreError> {
        let marker = format!("P#{page}");
        if self.get(ntf_pk(id), &marker).await?.is_some() {
            return Ok(());
        }
        let mut totals = Counts::default();
        let mut skipped = Vec::new();
        for d in deliveries {
            totals.recipients += 1;
            match d.status {
                DeliveryStatus::Skipped => {
                    totals.skipped += 1;
                    skipped.push(delivery_item(d));
                }
                _ => totals.pending += 1,
            }
        }
        // Skipped rows are final: writing one twice writes the same thing.
        self.batch_put(skipped).await?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(key(ntf_pk(id), &marker)))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(build_err)?;
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(count_pk(id, page), "C")))
            .update_expression("ADD recipients :r, pending :p, skipped :s")
            .expression_attribute_values(":r", n(totals.recipients))
            .expression_attribute_values(":p", n(totals.pending))
            .expression_attribute_values(":s", n(totals.skipped))
            .build()
            .map_err(build_err)?;
        let result = self
            .transact(vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder().update(count).build(),
            ])
            .await;
        match result {
            Ok(_) => Ok(()),
            // A concurrent fanout of the same page counted it.
            Err(e) if cancelled_by_condition(&e) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn begin_retry(&self, id: &NotificationId) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(ntf_pk(id), "N")))
            .update_expression("SET #status = :sending, GSI2PK = :gsi, fanned_out = :f")
            .condition_expression("#status IN (:failed, :partially_failed)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(Status::Sending.as_str()))
            .expression_attribute_values(
                ":gsi",
                s(status_index_pk(Status::Sending, index_shard(id))),
            )
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":failed", s(Status::Failed.as_str()))
            .expression_attribute_values(":partially_failed", s(Status::PartiallyFailed.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn mark_fanned_out(&self, id: &NotificationId) -> Result<(), StoreError> {
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
            .expression_attribute_values(":lease", n(lease_until.as_millisecond()))
            .expression_attribute_values(":recipient", s(&k.recipient))
            .expression_attribute_values(":channel", s(k.channel.as_str()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":now", n(now.as_millisecond()))
            .return_values(ReturnValue::UpdatedNew);
        if let Some(u) = &planned.user_id {
            sets.push("user_id = :user");
            req = req.expression_attribute_values(":user", s(u.as_str()));
        }
        if let Some(a) = &planned.address {
            sets.push("address = :address");
            req = req.expression_attribute_values(":address", s(a));
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
                    .and_then(|a| get_n(a, "attempts"))
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
                Ok(match item.as_ref().and_then(|i| get_s(i, "status")) {
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
                    .expression_attribute_values(":given_back", n(-given_back))
                    .condition_expression("#status = :pending")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_names("#error", "error")
                    .expression_attribute_values(":error", s(error))
                    .expression_attribute_values(":pending", s("pending"))
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
                    .update_expression("SET #status = :to, sent_at = :at, provider_message_id = :pid REMOVE lease_until, #error")
                    .expression_attribute_names("#error", "error")
                    .expression_attribute_values(":at", n(at.as_millisecond()))
                    .expression_attribute_values(":pid", s(provider_message_id)),
                DeliveryStatus::Sent,
            ),
            Outcome::Failed { error } => (
                update
                    .update_expression("SET #status = :to, #error = :error REMOVE lease_until")
                    .expression_attribute_names("#error", "error")
                    .expression_attribute_values(":error", s(error)),
                DeliveryStatus::Failed,
            ),
        };
        let update = update
            .condition_expression("#status = :pending")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":to", s(to.as_str()))
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
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":zero", n(0))
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

    async fn list_deliveries(
        &self,
        id: &NotificationId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError> {
        let (items, next_cursor) = self.deliveries_page(id, limit, cursor).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            let bad = |what: &str| StoreError::Corrupt(format!("stored delivery has a bad {what}"));
            out.push(Delivery {
                key: DeliveryKey {
                    notification_id: id.clone(),
                    recipient: get_s(item, "recipient")
                        .ok_or_else(|| bad("recipient"))?
                        .to_owned(),
                    channel: Channel::parse(get_s(item, "channel").unwrap_or_default())
                        .map_err(|_| bad("channel"))?,
                },
                user_id: get_s(item, "user_id")
                    .map(UserId::parse)
                    .transpose()
                    .map_err(|_| bad("user id"))?,
                address: get_s(item, "address").map(str::to_owned),
                status: DeliveryStatus::parse(get_s(item, "status").unwrap_or_default())
                    .ok_or_else(|| bad("status"))?,
                attempts: get_n(item, "attempts").unwrap_or(0) as u32,
                error: get_s(item, "error").map(str::to_owned),
                sent_at: get_n(item, "sent_at").and_then(|ms| Timestamp::from_millisecond(ms).ok()),
                provider_message_id: get_s(item, "provider_message_id").map(str::to_owned),
            });
        }
        Ok(Page {
            items: out,
            next_cursor,
        })
    }

    async fn counts(&self, id: &NotificationId) -> Result<Counts, StoreError> {
        let mut c = Counts::default();
        let mut sums = [
            ("recipients", 0i64),
            ("pending", 0),
            ("sent", 0),
            ("failed", 0),
            ("skipped", 0),
        ];
        // Every count item of the notification in one BatchGetItem (at most 100 keys), read
        // consistently.
        let keys = (0..COUNT_SHARDS)
            .map(|k| key(count_shard_pk(id, k), "C"))
            .collect();
        for item in self.batch_get(keys, true).await? {
            for (k, total) in sums.iter_mut() {
                *total += get_n(&item, k).unwrap_or(0);
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
        c.pending = get("pending");
        c.sent = get("sent");
        c.failed = get("failed");
        c.skipped = get("skipped");
        Ok(c)
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
        if get_s(&item, "status") != Some("sending") || !fanned_out {
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
