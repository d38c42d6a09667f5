//! Adapters that behave like the AWS ones in the calls they make and the time each takes,
//! over memory: for a simulated AWS run on tokio's paused clock, where every sleep is a
//! modelled network call and the clock jumps over it. They count the calls they stand for.
//!
//! Call pattern, as in `notify-aws`: a page of members is one Query and ceil(n/100) BatchGetItem
//! calls, `READ_CONCURRENCY` at once; a fanned-out page is one GetItem (its marker) and one
//! TransactWriteItems (marker and counts); a dispatch job's suppression lookup is
//! ceil(n/100) BatchGetItem calls; a group page's dispatch job is claimed whole (one
//! UpdateItem), writes each outcome's row (one PutItem) and commits its counts (one
//! TransactWriteItems); any other delivery's claim is one UpdateItem and its outcome one
//! TransactWriteItems; dispatch jobs go 10 to a SendMessageBatch, `SEND_CONCURRENCY` calls at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use tokio::sync::mpsc;

use notify_aws::queues::SEND_CONCURRENCY;
use notify_aws::store::{self, READ_CONCURRENCY};
use notify_core::domain::api_key::{ApiKey, ApiKeyId};
use notify_core::domain::category::Category;
use notify_core::domain::delivery::{Claim, Delivery, DeliveryKey, DeliveryStatus, Outcome};
use notify_core::domain::fanned_out_page::FannedOutPage;
use notify_core::domain::group::{Group, member_segment};
use notify_core::domain::job_claim::{JobClaim, JobLease, JobTotals};
use notify_core::domain::notification::{Counts, Notification, Status};
use notify_core::domain::preferences::Preferences;
use notify_core::domain::suppression::{SuppressedAddress, Suppression};
use notify_core::domain::template::Template;
use notify_core::domain::user::User;
use notify_core::domain::webhook::Webhook;
use notify_core::domain::{
    CategoryId, Channel, GroupId, IdempotencyKey, NotificationId, TemplateId, UserId, WebhookId,
};
use notify_core::jobs::{Chore, DispatchJob, FanoutJob, Segment, WebhookJob};
use notify_core::memory::{MemoryScheduler, MemoryStore};
use notify_core::ports::{
    ApiKeyStore, CategoryStore, DeliveryStore, DependencyError, EmailSender, GroupStore,
    IdempotencyRecord, InsertOutcome, JobClaimStore, NotificationStore, OutgoingEmail, Page,
    PreferenceStore, QueueError, Queues, SendError, SigningKey, StaticSigningKey, StoreError,
    SuppressionStore, SystemClock, TemplateStore, UserStore, WebhookPoster, WebhookStore,
};
use notify_core::services::App;
use notify_core::services::unsubscribe::UnsubscribeLinks;
use notify_core::services::webhooks::Webhooks;

#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub dynamodb: Duration,
    pub sqs_batch: Duration,
    pub ses_send: Duration,
}

impl Latency {
    pub const NONE: Latency = Latency {
        dynamodb: Duration::ZERO,
        sqs_batch: Duration::ZERO,
        ses_send: Duration::ZERO,
    };
    /// The figures of the issue: 10 ms a DynamoDB call, 20 ms an SQS batch, 60 ms an SES send.
    pub const AWS: Latency = Latency {
        dynamodb: Duration::from_millis(10),
        sqs_batch: Duration::from_millis(20),
        ses_send: Duration::from_millis(60),
    };
}

/// Calls by AWS operation.
#[derive(Default)]
pub struct Calls(Mutex<BTreeMap<&'static str, u64>>);

impl Calls {
    pub fn add(&self, op: &'static str, n: u64) {
        *self.0.lock().unwrap().entry(op).or_default() += n;
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap().clone()
    }
}

async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[derive(Default)]
struct Deliveries {
    rows: HashMap<(String, Channel), (DeliveryStatus, u32, Option<Timestamp>)>,
    /// Fanned-out pages' records, as the DynamoDB adapter stores them: members encoded, and
    /// the next page's cursor.
    pages: HashMap<String, (String, Option<String>)>,
    /// Recipients, then one per `DeliveryStatus::ALL`, in its order.
    counts: [i64; 8],
    fanned_out: bool,
    fanned_segments: HashSet<u32>,
    /// Keyed dispatch jobs' items, by key.
    jobs: HashMap<String, SimJob>,
}

#[derive(Default)]
struct SimJob {
    attempts: u32,
    committed: u32,
    lease: Option<Timestamp>,
    done: bool,
    counted: JobTotals,
}

/// Writes per partition key per simulated second, by table or index: DynamoDB takes about
/// 1,000 writes a second on one partition key. The keys come from `notify_aws::store`, so the
/// count follows the real table layout.
pub struct PartitionWrites {
    start: tokio::time::Instant,
    writes: Mutex<HashMap<(u64, &'static str, String), u64>>,
}

impl Default for PartitionWrites {
    fn default() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            writes: Mutex::default(),
        }
    }
}

impl PartitionWrites {
    pub fn add(&self, table: &'static str, pk: String) {
        let second = self.start.elapsed().as_secs();
        *self
            .writes
            .lock()
            .unwrap()
            .entry((second, table, pk))
            .or_default() += 1;
    }

    /// Per table or index: the hottest partition key and its writes in its busiest second.
    pub fn hottest(&self) -> BTreeMap<&'static str, (String, u64)> {
        let mut out: BTreeMap<&'static str, (String, u64)> = BTreeMap::new();
        for ((_, table, pk), n) in self.writes.lock().unwrap().iter() {
            let entry = out.entry(table).or_insert_with(|| (pk.clone(), 0));
            if *n > entry.1 {
                *entry = (pk.clone(), *n);
            }
        }
        out
    }

    /// Writes a notification's own item makes: the table item, its entry in the all-index
    /// (GSI1) and in the status index (GSI2) under `status`, each in its shard.
    fn notification_item(&self, id: &NotificationId, status: Status) {
        let shard = store::index_shard(id);
        self.add("table", store::ntf_pk(id));
        self.add("GSI1", store::all_index_pk(shard));
        self.add("GSI2", store::status_index_pk(status, shard));
    }
}

/// The DynamoDB store's behaviour over `MemoryStore`; pending rows live only in the counts
/// until claimed, as in DynamoDB. One notification at a time.
pub struct SimStore {
    pub inner: MemoryStore,
    pub latency: Latency,
    pub calls: Calls,
    pub partitions: PartitionWrites,
    /// Write units of the fanned-out pages' records beyond the 1 KB each transaction item is
    /// billed at least: a page's record holds its members.
    pub page_record_extra_wru: std::sync::atomic::AtomicU64,
    /// Keys asked for in BatchGetItem calls, read eventually consistently (half a read unit
    /// each, for items under 4 KB) and consistently (one each); the count items apart.
    pub eventual_keys: std::sync::atomic::AtomicU64,
    pub consistent_keys: std::sync::atomic::AtomicU64,
    deliveries: Mutex<Deliveries>,
}

impl SimStore {
    pub fn new(inner: MemoryStore, latency: Latency) -> Self {
        Self {
            inner,
            latency,
            calls: Calls::default(),
            partitions: PartitionWrites::default(),
            page_record_extra_wru: Default::default(),
            eventual_keys: Default::default(),
            consistent_keys: Default::default(),
            deliveries: Mutex::default(),
        }
    }

    /// The data, for another run over it.
    pub fn into_inner(self) -> MemoryStore {
        self.inner
    }

    async fn ddb(&self, op: &'static str, calls: u64, rounds: u64) {
        self.calls.add(op, calls);
        pause(self.latency.dynamodb * rounds as u32).await;
    }

    /// BatchGetItem calls for `keys` keys, `READ_CONCURRENCY` at once.
    async fn batch_read(&self, keys: usize, consistent: bool) {
        let calls = keys.div_ceil(100) as u64;
        let tally = if consistent {
            &self.consistent_keys
        } else {
            &self.eventual_keys
        };
        tally.fetch_add(keys as u64, std::sync::atomic::Ordering::Relaxed);
        self.ddb(
            "BatchGetItem",
            calls,
            calls.div_ceil(READ_CONCURRENCY as u64),
        )
        .await;
    }
}

const RECIPIENTS: usize = 0;
const PENDING: usize = 1;
const SENT: usize = 2;
const FAILED: usize = 3;
const SKIPPED: usize = 4;

#[async_trait]
impl UserStore for SimStore {
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        self.ddb("PutItem", 1, 1).await;
        self.inner.put_user(user).await
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.get_user(id).await
    }

    async fn get_users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        self.batch_read(ids.len(), false).await;
        self.inner.get_users(ids).await
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool, StoreError> {
        self.ddb("DeleteItem", 1, 1).await;
        self.inner.delete_user(id).await
    }

    async fn token_generation(&self, id: &UserId) -> Result<u64, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.token_generation(id).await
    }

    async fn bump_token_generation(&self, id: &UserId) -> Result<u64, StoreError> {
        self.ddb("UpdateItem", 1, 1).await;
        self.inner.bump_token_generation(id).await
    }
}

/// The unsubscribe links' key, read from Secrets Manager once per process as on AWS.
#[derive(Default)]
pub struct SimSigningKey {
    pub calls: Calls,
}

#[async_trait]
impl SigningKey for SimSigningKey {
    async fn key(&self) -> Result<Vec<u8>, notify_core::ports::BoxError> {
        self.calls.add("SecretsManager GetSecretValue", 1);
        Ok(b"simulated".to_vec())
    }
}

/// Webhook posts in the simulation: there is no network to post to.
pub struct NoNetwork;

#[async_trait]
impl WebhookPoster for NoNetwork {
    async fn post(
        &self,
        _url: &str,
        _headers: &[(&str, String)],
        _body: String,
    ) -> Result<(), String> {
        Err("the simulation posts no webhooks".into())
    }
}

#[async_trait]
impl WebhookStore for SimStore {
    async fn put_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
        self.ddb("PutItem", 1, 1).await;
        self.inner.put_webhook(webhook).await
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.get_webhook(id).await
    }

    /// One Query of the index partition, once per process every 30 s.
    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        self.ddb("Query", 1, 1).await;
        self.inner.list_webhooks().await
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        self.ddb("DeleteItem", 1, 1).await;
        self.inner.delete_webhook(id).await
    }
}

#[async_trait]
impl CategoryStore for SimStore {
    async fn put_category(&self, category: &Category) -> Result<(), StoreError> {
        self.ddb("PutItem", 1, 1).await;
        self.inner.put_category(category).await
    }

    /// Once per dispatch job of a notification with a category.
    async fn get_category(&self, id: &CategoryId) -> Result<Option<Category>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.get_category(id).await
    }

    async fn delete_category(&self, id: &CategoryId) -> Result<bool, StoreError> {
        self.ddb("DeleteItem", 1, 1).await;
        self.inner.delete_category(id).await
    }
}

/// The DynamoDB adapter's calls (`notify_aws::store`'s inbox): an item added is two reads and a
/// transaction; a mark, two reads and a transaction; counts, one read.
#[async_trait]
impl notify_core::ports::InboxStore for SimStore {
    async fn add_inbox_item(
        &self,
        item: &notify_core::domain::inbox::NewInboxItem,
    ) -> Result<notify_core::domain::inbox::InboxItem, StoreError> {
        self.ddb("GetItem", 2, 2).await;
        self.ddb("TransactWriteItems", 1, 1).await;
        self.inner.add_inbox_item(item).await
    }

    async fn list_inbox(
        &self,
        user: &UserId,
        filter: &notify_core::domain::inbox::InboxFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<notify_core::ports::Page<notify_core::domain::inbox::InboxItem>, StoreError> {
        self.ddb("Query", 1, 1).await;
        self.inner.list_inbox(user, filter, cursor, limit).await
    }

    async fn inbox_since(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<notify_core::domain::inbox::InboxItem>, StoreError> {
        self.ddb("Query", 1, 1).await;
        self.inner.inbox_since(user, after, limit).await
    }

    async fn inbox_counts(
        &self,
        user: &UserId,
    ) -> Result<notify_core::domain::inbox::InboxCounts, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.inbox_counts(user).await
    }

    async fn mark_inbox_item(
        &self,
        user: &UserId,
        item: &NotificationId,
        mark: notify_core::domain::inbox::InboxMark,
        at: Timestamp,
    ) -> Result<Option<notify_core::domain::inbox::InboxItem>, StoreError> {
        self.ddb("GetItem", 2, 2).await;
        self.ddb("TransactWriteItems", 1, 1).await;
        self.inner.mark_inbox_item(user, item, mark, at).await
    }

    async fn mark_all_inbox(
        &self,
        user: &UserId,
        mark: notify_core::domain::inbox::InboxMark,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        self.ddb("Query", 1, 1).await;
        let changed = self.inner.mark_all_inbox(user, mark, at).await?;
        self.ddb("TransactWriteItems", changed, changed).await;
        Ok(changed)
    }
}

#[async_trait]
impl notify_core::ports::PushSubscriptionStore for SimStore {
    async fn put_push_subscription(
        &self,
        s: &notify_core::domain::push::PushSubscription,
    ) -> Result<(), StoreError> {
        self.ddb("PutItem", 1, 1).await;
        self.inner.put_push_subscription(s).await
    }

    async fn list_push_subscriptions(
        &self,
        user: &UserId,
    ) -> Result<Vec<notify_core::domain::push::PushSubscription>, StoreError> {
        self.ddb("Query", 1, 1).await;
        self.inner.list_push_subscriptions(user).await
    }

    async fn delete_push_subscription(
        &self,
        user: &UserId,
        id: &notify_core::domain::push::PushSubscriptionId,
    ) -> Result<bool, StoreError> {
        self.ddb("DeleteItem", 1, 1).await;
        self.inner.delete_push_subscription(user, id).await
    }
}

#[async_trait]
impl PreferenceStore for SimStore {
    async fn get_preferences(&self, user: &UserId) -> Result<Preferences, StoreError> {
        self.ddb("Query", 1, 1).await;
        self.inner.get_preferences(user).await
    }

    async fn put_preferences(
        &self,
        user: &UserId,
        preferences: &Preferences,
    ) -> Result<(), StoreError> {
        self.ddb("Query", 1, 1).await;
        let writes = preferences.categories.len().max(1) as u64;
        self.ddb("PutItem", writes, writes.div_ceil(16)).await;
        self.inner.put_preferences(user, preferences).await
    }

    async fn set_preference(
        &self,
        user: &UserId,
        category: &CategoryId,
        channel: Channel,
        on: bool,
    ) -> Result<bool, StoreError> {
        self.ddb("UpdateItem", 1, 1).await;
        self.inner.set_preference(user, category, channel, on).await
    }

    /// A dispatch job's lookup: ceil(n/100) BatchGetItem calls, `READ_CONCURRENCY` at once.
    async fn find_opt_outs(
        &self,
        category: &CategoryId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, Channel)>, StoreError> {
        self.batch_read(users.len(), false).await;
        self.inner.find_opt_outs(category, users).await
    }
}

#[async_trait]
impl SuppressionStore for SimStore {
    async fn put_suppression(&self, suppression: &Suppression) -> Result<(), StoreError> {
        self.ddb("PutItem", 1, 1).await;
        self.inner.put_suppression(suppression).await
    }

    async fn get_suppression(
        &self,
        address: &SuppressedAddress,
    ) -> Result<Option<Suppression>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.get_suppression(address).await
    }

    async fn delete_suppression(&self, address: &SuppressedAddress) -> Result<bool, StoreError> {
        self.ddb("DeleteItem", 1, 1).await;
        self.inner.delete_suppression(address).await
    }

    /// A dispatch job's lookup: ceil(n/100) BatchGetItem calls, `READ_CONCURRENCY` at once.
    async fn find_suppressions(
        &self,
        addresses: &[SuppressedAddress],
    ) -> Result<Vec<Suppression>, StoreError> {
        self.batch_read(addresses.len(), false).await;
        self.inner.find_suppressions(addresses).await
    }

    async fn list_suppressions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Suppression>, StoreError> {
        self.ddb("Query", 1, 1).await;
        self.inner.list_suppressions(limit, cursor).await
    }
}

#[async_trait]
impl GroupStore for SimStore {
    async fn put_group(&self, id: &GroupId, name: &str) -> Result<Group, StoreError> {
        self.inner.put_group(id, name).await
    }

    async fn get_group(&self, id: &GroupId) -> Result<Option<Group>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.get_group(id).await
    }

    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError> {
        self.inner.delete_group(id).await
    }

    async fn purge_group(&self, id: &GroupId, max: usize) -> Result<bool, StoreError> {
        self.inner.purge_group(id, max).await
    }

    /// A PutItem per member in its segment's partition, `WRITE_CONCURRENCY` at once, and one
    /// UpdateItem of the group's count per call.
    async fn add_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        let rounds = users.len().div_ceil(store::WRITE_CONCURRENCY) as u64;
        self.ddb("PutItem", users.len() as u64, rounds).await;
        for u in users {
            let segment = member_segment(u, store::MEMBER_SEGMENTS);
            self.partitions
                .add("table", store::member_segment_pk(id, segment));
            self.partitions.add("GSI1", format!("UG#{u}"));
        }
        let added = self.inner.add_members(id, users).await?;
        if added > 0 {
            self.ddb("UpdateItem", 1, 1).await;
            self.partitions.add("table", store::group_pk(id));
        }
        Ok(added)
    }

    async fn remove_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        self.inner.remove_members(id, users).await
    }

    async fn list_members(
        &self,
        id: &GroupId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError> {
        // The DynamoDB store reads segment after segment, one Query each, from the cursor's
        // segment until the page is full: to the last member's segment, or to the end.
        let page = self.inner.list_members(id, limit, cursor).await?;
        let segments = self.inner.member_segments();
        let from = cursor
            .and_then(|c| c.split_once(':'))
            .and_then(|(s, _)| s.parse::<u32>().ok())
            .unwrap_or(0);
        let to = match (&page.next_cursor, page.items.last()) {
            (Some(_), Some(last)) => member_segment(last, segments),
            _ => segments - 1,
        };
        let queries = u64::from(to.saturating_sub(from) + 1);
        self.ddb("Query", queries, queries).await;
        Ok(page)
    }

    fn member_segments(&self) -> u32 {
        self.inner.member_segments()
    }

    async fn list_segment(
        &self,
        id: &GroupId,
        segment: u32,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError> {
        self.ddb("Query", 1, 1).await;
        self.inner.list_segment(id, segment, limit, cursor).await
    }
}

#[async_trait]
impl TemplateStore for SimStore {
    async fn put_template(&self, template: &Template) -> Result<(), StoreError> {
        self.inner.put_template(template).await
    }

    async fn get_template(&self, id: &TemplateId) -> Result<Option<Template>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.get_template(id).await
    }

    async fn delete_template(&self, id: &TemplateId) -> Result<bool, StoreError> {
        self.inner.delete_template(id).await
    }
}

#[async_trait]
impl NotificationStore for SimStore {
    async fn find_idempotency(
        &self,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.find_idempotency(key, now).await
    }

    async fn insert_notification(
        &self,
        n: &Notification,
        idem: Option<&IdempotencyRecord>,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.ddb("TransactWriteItems", 1, 1).await;
        self.partitions.notification_item(&n.id, n.status);
        if let Some(record) = idem {
            self.partitions.add("table", format!("I#{}", record.key));
        }
        self.inner.insert_notification(n, idem, now).await
    }

    async fn get_notification(
        &self,
        id: &NotificationId,
    ) -> Result<Option<Notification>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.get_notification(id).await
    }

    async fn list_notifications(
        &self,
        status: Option<Status>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Notification>, StoreError> {
        self.ddb("Query", 1, 1).await;
        self.inner.list_notifications(status, limit, cursor).await
    }

    async fn transition(
        &self,
        id: &NotificationId,
        from: &[Status],
        to: Status,
    ) -> Result<bool, StoreError> {
        self.ddb("UpdateItem", 1, 1).await;
        let before = self.inner.get_notification(id).await?.map(|n| n.status);
        let moved = self.inner.transition(id, from, to).await?;
        if moved {
            // The status index moves the entry: a delete under the old key, a put under the new.
            self.partitions.notification_item(id, to);
            if let Some(before) = before {
                self.partitions.add(
                    "GSI2",
                    store::status_index_pk(before, store::index_shard(id)),
                );
            }
        }
        Ok(moved)
    }

    async fn begin_retry(&self, _id: &NotificationId) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn set_send_at(&self, id: &NotificationId, at: Timestamp) -> Result<bool, StoreError> {
        self.ddb("UpdateItem", 1, 1).await;
        self.inner.set_send_at(id, at).await
    }

    /// A segment adds itself to a set on the notification; the one that completes the set
    /// (and a fanout that was not split) marks it fanned out: one or two UpdateItems.
    async fn mark_fanned_out(
        &self,
        id: &NotificationId,
        segment: Option<Segment>,
    ) -> Result<(), StoreError> {
        let status = self.inner.get_notification(id).await?.map(|n| n.status);
        if let Some(segment) = segment {
            self.ddb("UpdateItem", 1, 1).await;
            if let Some(status) = status {
                self.partitions.notification_item(id, status);
            }
            let mut deliveries = self.deliveries.lock().unwrap();
            deliveries.fanned_segments.insert(segment.index);
            if deliveries.fanned_segments.len() < segment.of as usize {
                return Ok(());
            }
        }
        self.ddb("UpdateItem", 1, 1).await;
        if let Some(status) = status {
            self.partitions.notification_item(id, status);
        }
        self.deliveries.lock().unwrap().fanned_out = true;
        Ok(())
    }

    async fn finish_if_done(&self, id: &NotificationId) -> Result<Option<Status>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        if !self.deliveries.lock().unwrap().fanned_out {
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

/// As the DynamoDB adapter's `JobClaimStore`.
#[async_trait]
impl JobClaimStore for SimStore {
    async fn claim_job(
        &self,
        id: &NotificationId,
        job: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<JobClaim, StoreError> {
        self.ddb("UpdateItem", 1, 1).await;
        self.partitions.add("table", store::delivery_pk(id, job));
        let mut d = self.deliveries.lock().unwrap();
        let j = d.jobs.entry(job.to_owned()).or_default();
        if j.done {
            return Ok(JobClaim::Done);
        }
        if j.lease.is_some_and(|l| l > now) {
            return Ok(JobClaim::Busy);
        }
        j.attempts += 1;
        j.lease = Some(lease_until);
        Ok(JobClaim::Claimed(JobLease {
            attempt: j.attempts,
            counted: j.counted,
        }))
    }

    async fn job_deliveries(&self, keys: &[DeliveryKey]) -> Result<Vec<Delivery>, StoreError> {
        self.batch_read(keys.len(), true).await;
        let d = self.deliveries.lock().unwrap();
        Ok(keys
            .iter()
            .filter_map(|k| {
                let (status, attempts, _) = d.rows.get(&(k.recipient.clone(), k.channel))?;
                Some(Delivery {
                    key: k.clone(),
                    user_id: None,
                    address: None,
                    status: *status,
                    attempts: *attempts,
                    error: None,
                    sent_at: None,
                    provider_message_id: None,
                })
            })
            .collect())
    }

    async fn put_job_delivery(&self, row: &Delivery) -> Result<bool, StoreError> {
        self.ddb("PutItem", 1, 1).await;
        let k = &row.key;
        self.partitions.add(
            "table",
            store::delivery_pk(&k.notification_id, &k.recipient),
        );
        let mut d = self.deliveries.lock().unwrap();
        let stored = d.rows.entry((k.recipient.clone(), k.channel)).or_insert((
            DeliveryStatus::Pending,
            0,
            None,
        ));
        if stored.0 != DeliveryStatus::Pending {
            return Ok(false);
        }
        *stored = (row.status, row.attempts, None);
        Ok(true)
    }

    async fn commit_job(
        &self,
        id: &NotificationId,
        job: &str,
        lease: &JobLease,
        totals: JobTotals,
        done: bool,
    ) -> Result<bool, StoreError> {
        let (sent, failed, skipped) = totals.since(&lease.counted);
        if (sent, failed, skipped) == (0, 0, 0) {
            self.ddb("UpdateItem", 1, 1).await;
        } else {
            self.ddb("TransactWriteItems", 1, 1).await;
            self.partitions.add("table", store::count_pk(id, job));
        }
        self.partitions.add("table", store::delivery_pk(id, job));
        let mut d = self.deliveries.lock().unwrap();
        let j = d.jobs.entry(job.to_owned()).or_default();
        if j.attempts != lease.attempt || j.committed == lease.attempt {
            return Ok(false);
        }
        j.committed = lease.attempt;
        j.counted = totals;
        j.lease = None;
        j.done |= done;
        d.counts[SENT] += sent;
        d.counts[FAILED] += failed;
        d.counts[SKIPPED] += skipped;
        d.counts[PENDING] -= sent + failed + skipped;
        Ok(true)
    }
}

#[async_trait]
impl DeliveryStore for SimStore {
    fn job_claims(&self) -> Option<&dyn JobClaimStore> {
        Some(self)
    }

    async fn fanned_out_page(
        &self,
        _id: &NotificationId,
        page: &str,
        all: &[Channel],
    ) -> Result<Option<FannedOutPage>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        let d = self.deliveries.lock().unwrap();
        d.pages
            .get(page)
            .map(|(members, next_cursor)| {
                Ok(FannedOutPage {
                    members: FannedOutPage::decode_members(members, all)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    next_cursor: next_cursor.clone(),
                })
            })
            .transpose()
    }

    async fn insert_deliveries(
        &self,
        id: &NotificationId,
        page: &str,
        record: &FannedOutPage,
        all: &[Channel],
        deliveries: &[Delivery],
    ) -> Result<bool, StoreError> {
        // The record as the DynamoDB adapter writes it, in a transaction (twice the units).
        let members = record.encode_members(all);
        let bytes = members.len() + record.next_cursor.as_ref().map_or(0, String::len) + 100;
        self.page_record_extra_wru.fetch_add(
            2 * (bytes.div_ceil(1024) as u64 - 1),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.partitions.add("table", store::ntf_pk(id));
        self.partitions.add("table", store::count_pk(id, page));
        for row in deliveries
            .iter()
            .filter(|d| d.status == DeliveryStatus::Skipped)
        {
            self.partitions
                .add("table", store::delivery_pk(id, &row.key.recipient));
        }
        let skipped = deliveries
            .iter()
            .filter(|d| d.status == DeliveryStatus::Skipped)
            .count() as u64;
        if skipped > 0 {
            self.ddb("BatchWriteItem", skipped.div_ceil(25), skipped.div_ceil(25))
                .await;
        }
        self.ddb("TransactWriteItems", 1, 1).await;
        let mut d = self.deliveries.lock().unwrap();
        if d.pages.contains_key(page) {
            return Ok(false);
        }
        d.pages
            .insert(page.to_owned(), (members, record.next_cursor.clone()));
        for row in deliveries {
            d.counts[RECIPIENTS] += 1;
            if row.status == DeliveryStatus::Skipped {
                d.counts[SKIPPED] += 1;
                d.rows.insert(
                    (row.key.recipient.clone(), row.key.channel),
                    (DeliveryStatus::Skipped, 0, None),
                );
            } else {
                d.counts[PENDING] += 1;
            }
        }
        Ok(true)
    }

    async fn claim_delivery(
        &self,
        planned: &Delivery,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Claim, StoreError> {
        self.ddb("UpdateItem", 1, 1).await;
        self.partitions.add(
            "table",
            store::delivery_pk(&planned.key.notification_id, &planned.key.recipient),
        );
        let mut d = self.deliveries.lock().unwrap();
        let row = d
            .rows
            .entry((planned.key.recipient.clone(), planned.key.channel))
            .or_insert((DeliveryStatus::Pending, 0, None));
        match row {
            (DeliveryStatus::Pending, attempts, lease) if lease.is_none_or(|l| l <= now) => {
                *attempts += 1;
                *lease = Some(lease_until);
                Ok(Claim::Claimed { attempt: *attempts })
            }
            (DeliveryStatus::Pending, _, _) => Ok(Claim::Busy),
            _ => Ok(Claim::Done),
        }
    }

    async fn record_outcome(&self, key: &DeliveryKey, outcome: &Outcome) -> Result<(), StoreError> {
        self.ddb("TransactWriteItems", 1, 1).await;
        self.partitions.add(
            "table",
            store::delivery_pk(&key.notification_id, &key.recipient),
        );
        if matches!(
            outcome,
            Outcome::Sent { .. } | Outcome::Failed { .. } | Outcome::Skipped { .. }
        ) {
            self.partitions.add(
                "table",
                store::count_pk(&key.notification_id, &key.recipient),
            );
        }
        let mut d = self.deliveries.lock().unwrap();
        let to = match outcome {
            Outcome::Sent { .. } => SENT,
            Outcome::Failed { .. } => FAILED,
            Outcome::Skipped { .. } => SKIPPED,
            Outcome::Retry { .. } | Outcome::Deferred { .. } => {
                if let Some(row) = d.rows.get_mut(&(key.recipient.clone(), key.channel)) {
                    row.2 = None;
                }
                return Ok(());
            }
        };
        if let Some(row) = d.rows.get_mut(&(key.recipient.clone(), key.channel))
            && row.0 == DeliveryStatus::Pending
        {
            row.0 = match to {
                SENT => DeliveryStatus::Sent,
                SKIPPED => DeliveryStatus::Skipped,
                _ => DeliveryStatus::Failed,
            };
            d.counts[PENDING] -= 1;
            d.counts[to] += 1;
        }
        Ok(())
    }

    /// As the DynamoDB adapter: a consistent read of the row, then the row and its count in one
    /// transaction. (The simulated rows keep no provider message id to compare.)
    async fn record_feedback(
        &self,
        key: &DeliveryKey,
        _provider_message_id: &str,
        to: DeliveryStatus,
    ) -> Result<bool, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        let applied = {
            let mut d = self.deliveries.lock().unwrap();
            match d.rows.get_mut(&(key.recipient.clone(), key.channel)) {
                Some(row) if row.0.may_become(to) => {
                    let from = row.0;
                    row.0 = to;
                    let slot = |s: DeliveryStatus| {
                        1 + DeliveryStatus::ALL.iter().position(|&x| x == s).unwrap()
                    };
                    d.counts[slot(from)] -= 1;
                    d.counts[slot(to)] += 1;
                    true
                }
                _ => false,
            }
        };
        if !applied {
            return Ok(false);
        }
        self.ddb("TransactWriteItems", 1, 1).await;
        Ok(true)
    }

    async fn reopen_failed(&self, _key: &DeliveryKey) -> Result<bool, StoreError> {
        // The benchmarks never retry a notification.
        Ok(false)
    }

    async fn list_deliveries(
        &self,
        _id: &NotificationId,
        _limit: usize,
        _cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError> {
        Ok(Page {
            items: vec![],
            next_cursor: None,
        })
    }

    async fn counts(&self, _id: &NotificationId) -> Result<Counts, StoreError> {
        // One consistent BatchGetItem of every count item.
        self.ddb("BatchGetItem (counts)", 1, 1).await;
        let c = self.deliveries.lock().unwrap().counts;
        let mut counts = Counts {
            recipients: c[RECIPIENTS] as u64,
            ..Counts::default()
        };
        for (i, status) in DeliveryStatus::ALL.into_iter().enumerate() {
            counts.add(status, c[1 + i].max(0) as u64);
        }
        Ok(counts)
    }
}

/// SQS: jobs go to channels that the simulated event source mappings read.
pub struct SimQueues {
    pub latency: Latency,
    pub calls: Calls,
    pub fanout: mpsc::UnboundedSender<FanoutJob>,
    /// None drops dispatch jobs (planning alone is measured).
    pub dispatch: Option<mpsc::UnboundedSender<DispatchJob>>,
    pub dispatch_jobs: std::sync::atomic::AtomicU64,
    pub dispatch_bytes: std::sync::atomic::AtomicU64,
}

impl SimQueues {
    /// The queues, with the receiving ends of the fanout queue and (when `dispatch`) of the
    /// dispatch queue; without, dispatch jobs are counted and dropped.
    pub fn new(
        latency: Latency,
        dispatch: bool,
    ) -> (
        std::sync::Arc<Self>,
        mpsc::UnboundedReceiver<FanoutJob>,
        Option<mpsc::UnboundedReceiver<DispatchJob>>,
    ) {
        let (fanout, fanout_rx) = mpsc::unbounded_channel();
        let (dispatch_tx, dispatch_rx) = if dispatch {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let queues = Self {
            latency,
            calls: Calls::default(),
            fanout,
            dispatch: dispatch_tx,
            dispatch_jobs: Default::default(),
            dispatch_bytes: Default::default(),
        };
        (std::sync::Arc::new(queues), fanout_rx, dispatch_rx)
    }

    /// The API side over these queues and `store`, sending now (no schedules).
    pub fn app(self: &std::sync::Arc<Self>, store: std::sync::Arc<SimStore>) -> App {
        let unsubscribe = std::sync::Arc::new(UnsubscribeLinks::new(
            std::sync::Arc::new(StaticSigningKey(b"sim".to_vec())),
            "https://notify.example",
        ));
        App {
            preview: std::sync::Arc::new(notify_core::services::preview::Preview::new(
                store.clone(),
                std::sync::Arc::new(SystemClock),
                unsubscribe.clone(),
                notify_core::domain::EmailAddress::parse("sim@notify.example").unwrap(),
            )),
            webhooks: std::sync::Arc::new(Webhooks::new(
                store.clone(),
                self.clone(),
                std::sync::Arc::new(NoNetwork),
                std::sync::Arc::new(SystemClock),
            )),
            inbox: std::sync::Arc::new(notify_core::services::inbox::Inbox::new(
                store.clone(),
                std::sync::Arc::new(SystemClock),
            )),
            user_tokens: std::sync::Arc::new(notify_core::services::user_tokens::UserTokens::new(
                std::sync::Arc::new(StaticSigningKey(b"sim".to_vec())),
                std::sync::Arc::new(SystemClock),
            )),
            store,
            scheduler: std::sync::Arc::new(MemoryScheduler::default()),
            queues: self.clone(),
            clock: std::sync::Arc::new(SystemClock),
            unsubscribe,
        }
    }
}

#[async_trait]
impl Queues for SimQueues {
    async fn send_fanout(&self, job: &FanoutJob) -> Result<(), QueueError> {
        self.calls.add("SQS SendMessage", 1);
        pause(self.latency.sqs_batch).await;
        self.fanout
            .send(job.clone())
            .map_err(|e| DependencyError::queue("job JSON", e))
    }

    async fn send_fanout_after(&self, job: &FanoutJob, delay: Duration) -> Result<(), QueueError> {
        self.calls.add("SQS SendMessage", 1);
        pause(self.latency.sqs_batch).await;
        // SQS holds the message back; the sender goes on at once.
        let (tx, job) = (self.fanout.clone(), job.clone());
        tokio::spawn(async move {
            pause(delay).await;
            let _ = tx.send(job);
        });
        Ok(())
    }

    async fn send_chore(&self, _chore: &Chore) -> Result<(), QueueError> {
        self.calls.add("SQS SendMessage", 1);
        Ok(())
    }

    /// As the adapter: new jobs in batches, a delayed one alone. The simulation posts none.
    async fn send_webhooks(&self, jobs: &[WebhookJob], delay: Duration) -> Result<(), QueueError> {
        if delay.is_zero() {
            self.calls
                .add("SQS SendMessageBatch", jobs.len().div_ceil(10) as u64);
        } else {
            self.calls.add("SQS SendMessage", jobs.len() as u64);
        }
        pause(self.latency.sqs_batch).await;
        Ok(())
    }

    async fn send_dispatch(&self, jobs: &[DispatchJob]) -> Result<(), QueueError> {
        let batches = jobs.len().div_ceil(10) as u64;
        self.calls.add("SQS SendMessageBatch", batches);
        pause(self.latency.sqs_batch * batches.div_ceil(SEND_CONCURRENCY as u64) as u32).await;
        use std::sync::atomic::Ordering::Relaxed;
        self.dispatch_jobs.fetch_add(jobs.len() as u64, Relaxed);
        for job in jobs {
            self.dispatch_bytes.fetch_add(
                serde_json::to_vec(job).map(|v| v.len() as u64).unwrap_or(0),
                Relaxed,
            );
            if let Some(tx) = &self.dispatch {
                tx.send(job.clone())
                    .map_err(|e| DependencyError::queue("job JSON", e))?;
            }
        }
        Ok(())
    }
}

/// SES v2 SendEmail that takes `latency.ses_send` and always succeeds.
pub struct SimEmail {
    pub latency: Latency,
    pub calls: Calls,
}

#[async_trait]
impl EmailSender for SimEmail {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError> {
        self.calls.add("SES SendEmail", 1);
        pause(self.latency.ses_send).await;
        Ok(email.message_id.clone())
    }
}

/// Keys are not part of a send: kept in memory, each call counted as the DynamoDB call it is.
#[async_trait]
impl ApiKeyStore for SimStore {
    async fn put_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.ddb("PutItem", 1, 1).await;
        self.inner.put_api_key(key).await
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.ddb("GetItem", 1, 1).await;
        self.inner.find_api_key(hash).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.ddb("Query", 1, 1).await;
        self.inner.list_api_keys().await
    }

    async fn delete_api_key(&self, id: &ApiKeyId) -> Result<bool, StoreError> {
        self.ddb("Query", 1, 1).await;
        self.ddb("DeleteItem", 1, 1).await;
        self.inner.delete_api_key(id).await
    }

    async fn touch_api_key(&self, hash: &str, at: Timestamp) -> Result<(), StoreError> {
        self.ddb("UpdateItem", 1, 1).await;
        self.inner.touch_api_key(hash, at).await
    }
}
