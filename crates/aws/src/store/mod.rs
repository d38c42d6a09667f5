//! The store on DynamoDB: one table (on-demand), one file per aggregate, the key layout in
//! `keys.rs` and the conversions in `item.rs`.
//!
//! | item | PK | SK | other |
//! | --- | --- | --- | --- |
//! | user | `U#<id>` | `U` | `body` |
//! | user's preference | `U#<id>` | `P#<category>` | `category`, `email`/`sms` (BOOL, the channels set) |
//! | category | `K#<id>` | `K` | `body` |
//! | webhook endpoint | `W#<id>` | `W` | `body`; `GSI1PK`=`W`, `GSI1SK`=id (the list) |
//! | template | `T#<id>` | `T` | `body` |
//! | idempotency record | `I#<key>` | `I` | `body`, `expires_at` (ms), `ttl` (s, the table's TTL attribute) |
//! | notification | `N#<id>` | `N` | `body`, `status`, `send_at`, `fanned_out`, `fanned_segments` (NS: the segments of a split fanout done); `GSI1PK`=`N#<shard>`, `GSI1SK`=id (all, newest first); `GSI2PK`=`S#<status>#<shard>`, `GSI2SK`=id; shard = one of `INDEX_SHARDS` by id |
//! | fanned-out page | `N#<id>` | `P#<page>` | `members` (its members and their pending channels, `FannedOutPage`), `next` (the next page's cursor); marks the page as counted |
//! | delivery | `D#<id>#<bucket>` | `D#<recipient>#<channel>` | `recipient`, `channel`, `status`, `attempts`, `lease_until`, ...; bucket = one of `DELIVERY_BUCKETS` by recipient |
//! | dispatch job | `D#<id>#<bucket>` | `J#<job>` | `attempts` (claims so far), `lease_until`, `sent`, `failed`, `skipped` (the job's outcomes in the counts), `committed` (the claim that committed them), `done`; bucket by the job's key |
//! | count item | `C#<id>#<shard>` | `C` | `recipients`, `pending`, `sent`, `failed`, `skipped` (signed; their sums over the `COUNT_SHARDS` items are the counts) |
//! | group | `G#<id>` | `G` | `name`, `member_count` (added once per request, not per member), `deleting` |
//! | suppression | `X#<address>` | `X` | `body`; `GSI1PK`=`X`, `GSI1SK`=address (the list, by address) |
//! | membership | `G#<id>#<segment>` | `M#<user>` | `user_id`; `GSI1PK`=`UG#<user>`, `GSI1SK`=`G#<group>` (a user's groups); segment = one of `MEMBER_SEGMENTS` by user |
//!
//! Fanout writes nothing per pending recipient: a page adds its totals to one count item
//! (with the page's marker, in one transaction, so a page fanned out twice counts once) and
//! writes only its `skipped` rows. A group page's dispatch jobs are claimed whole (see
//! `notify_core::domain::job_claim`): a job's claim is one write, each outcome one plain write
//! of its row, and the job's commit one transaction that moves a count item by the job's
//! outcomes, so the counts are exact. Any other delivery's row is created by its own claim and
//! each outcome changes the row and a count item in one transaction. Rows and counts are spread
//! over partition keys, since one key takes about 1,000 writes a second.

mod api_keys;
mod deliveries;
mod groups;
mod inbox;
mod item;
mod job_claims;
mod keys;
mod notifications;
mod preferences;
mod push_subscriptions;
mod suppressions;
mod templates;
mod users;
mod webhooks;

pub use keys::COUNT_SHARDS;
pub use keys::DELIVERY_BUCKETS;
pub use keys::INDEX_SHARDS;
pub use keys::MEMBER_SEGMENTS;
pub use keys::all_index_pk;
pub use keys::count_pk;
pub use keys::delivery_pk;
pub use keys::group_pk;
pub use keys::index_shard;
pub use keys::member_segment_pk;
pub use keys::ntf_pk;
pub use keys::status_index_pk;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, PutRequest, ReturnValue, TransactWriteItem, Update,
    WriteRequest,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use jiff::Timestamp;
use notify_core::ports::StoreError;
use notify_core::retention::Retention;

use item::{Item, ItemExt, decode_cursor, encode_cursor, string};
use keys::key;

/// Conditional writes in flight at once when inserting a page of deliveries.
pub const WRITE_CONCURRENCY: usize = 16;

/// BatchGetItem calls in flight at once when resolving a page of members.
pub const READ_CONCURRENCY: usize = 8;

pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Retention,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            retention: Retention::default(),
        }
    }

    /// How long a send's items are kept after their last change: they carry `ttl`, the
    /// table's TTL attribute, and DynamoDB deletes them (within days) after it passes.
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The `ttl` of an item changed at `at`.
    fn ttl_after(&self, at: Timestamp) -> AttributeValue {
        item::number(self.retention.expiry(at).as_second())
    }

    /// The `ttl` of an item changed now.
    fn ttl_now(&self) -> AttributeValue {
        self.ttl_after(Timestamp::now())
    }

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

    /// A transaction's `Update` sent on its own, as one `UpdateItem` (a write that needs no
    /// partner costs half a transaction's units).
    async fn update_alone(
        &self,
        update: Update,
    ) -> Result<(), aws_sdk_dynamodb::error::SdkError<UpdateItemError, HttpResponse>> {
        self.client
            .update_item()
            .table_name(update.table_name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .send()
            .await
            .map(|_| ())
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
        self.put_listed(pk, sk, body, None).await
    }

    /// As `put_body`, and listed in the `GSI1` partition `list.0`, sorted by `list.1`.
    async fn put_listed(
        &self,
        pk: String,
        sk: &str,
        body: String,
        list: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let mut item = key(pk, sk);
        item.insert("body".into(), string(body));
        if let Some((list_pk, list_sk)) = list {
            item.insert("GSI1PK".into(), string(list_pk));
            item.insert("GSI1SK".into(), string(list_sk));
        }
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

    /// Deletes every item of partition `pk` whose sort key starts with `prefix` (all of them
    /// if it is empty: DynamoDB takes no empty key value), a page at a time (a Query stops at
    /// 1 MB: it follows the key).
    async fn delete_prefixed(&self, pk: String, prefix: &str) -> Result<(), StoreError> {
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", string(pk.clone()));
            query = if prefix.is_empty() {
                query.key_condition_expression("PK = :pk")
            } else {
                query
                    .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                    .expression_attribute_values(":prefix", string(prefix))
            };
            let out = query
                .projection_expression("PK, SK")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err)?;
            let deletes = out
                .items()
                .iter()
                .map(|item| {
                    aws_sdk_dynamodb::types::DeleteRequest::builder()
                        .set_key(Some(item.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(build_err)?;
            self.batch_write(deletes).await?;
            match out.last_evaluated_key {
                Some(next) => start = Some(next),
                None => return Ok(()),
            }
        }
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
            .is_some_and(|st| st.string("PK") != Some(pk.as_str()))
        {
            return Err(StoreError::BadCursor);
        }
        let mut items = self
            .query_page(
                None,
                "PK = :pk AND begins_with(SK, :prefix)",
                HashMap::from([
                    (":pk".to_owned(), string(pk)),
                    (":prefix".to_owned(), string(prefix)),
                ]),
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

fn err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable("dynamodb", e)
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::unavailable("dynamodb request", e)
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
