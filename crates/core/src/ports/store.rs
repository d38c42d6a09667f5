use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::delivery::{Claim, Delivery, DeliveryKey, Outcome};
use crate::domain::group::Group;
use crate::domain::notification::{Counts, Notification, Status};
use crate::domain::template::Template;
use crate::domain::user::User;
use crate::domain::{GroupId, IdempotencyKey, NotificationId, TemplateId, UserId};

use super::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the cursor is not valid")]
    BadCursor,
    /// The write does not fit the item's state (a group being deleted).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed or could not be reached; `source` is its own error (an AWS error
    /// code, a SQLite error), for the log.
    #[error("store unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        source: BoxError,
    },
    /// A stored item does not read back as what was written (a bug, or a hand-edited row).
    #[error("stored data does not parse: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn unavailable(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            context: context.into(),
            source: source.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// What the first request with an `Idempotency-Key` answered; kept 24 hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    /// SHA-256 of the canonical request body: the same key with another body is a conflict.
    pub request_hash: String,
    pub notification_id: NotificationId,
    pub response: serde_json::Value,
    pub expires_at: Timestamp,
}

#[derive(Debug)]
pub enum InsertOutcome {
    Inserted,
    /// A live record with this key exists already (a concurrent request won the race).
    KeyTaken(IdempotencyRecord),
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn put_user(&self, user: &User) -> Result<(), StoreError>;
    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError>;
    /// The users among `ids` that exist (any order); used to resolve a page of group members.
    async fn get_users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError>;
    /// Also removes the user from every group.
    async fn delete_user(&self, id: &UserId) -> Result<bool, StoreError>;

    /// Creates the group or renames it; returns it with its member count.
    async fn put_group(&self, id: &GroupId, name: &str) -> Result<Group, StoreError>;
    async fn get_group(&self, id: &GroupId) -> Result<Option<Group>, StoreError>;
    /// Removes the group at once for every reader (and says whether it existed, or is still
    /// being removed). Its memberships go too, at once, or later by `purge_group` in a store
    /// where removing them all could take long (DynamoDB: one write per member).
    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError>;
    /// Removes up to `max` memberships of a deleted group; once none is left, the last trace
    /// of the group. Says whether it is all gone.
    async fn purge_group(&self, id: &GroupId, max: usize) -> Result<bool, StoreError>;
    /// Subscribes the users (existing memberships are kept); returns how many were new.
    async fn add_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError>;
    /// Unsubscribes the users (absent ones are ignored); returns how many were removed.
    async fn remove_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError>;
    /// A page of members in a stable order, read without loading the group.
    async fn list_members(
        &self,
        id: &GroupId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError>;

    async fn put_template(&self, template: &Template) -> Result<(), StoreError>;
    async fn get_template(&self, id: &TemplateId) -> Result<Option<Template>, StoreError>;
    async fn delete_template(&self, id: &TemplateId) -> Result<bool, StoreError>;

    async fn find_idempotency(
        &self,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Stores the notification and, atomically with it, its idempotency record.
    async fn insert_notification(
        &self,
        n: &Notification,
        idem: Option<&IdempotencyRecord>,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError>;
    async fn get_notification(
        &self,
        id: &NotificationId,
    ) -> Result<Option<Notification>, StoreError>;
    /// Newest first.
    async fn list_notifications(
        &self,
        status: Option<Status>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Notification>, StoreError>;
    /// Moves the status to `to` only if it is one of `from`; says whether it moved.
    async fn transition(
        &self,
        id: &NotificationId,
        from: &[Status],
        to: Status,
    ) -> Result<bool, StoreError>;
    /// Moves a notification that finished with failures (`failed`, `partially_failed`) back to
    /// `sending`, not fanned out: it cannot finish before the retry has been through all its
    /// deliveries. Says whether it moved.
    async fn begin_retry(&self, id: &NotificationId) -> Result<bool, StoreError>;
    /// Moves `send_at` only while the notification is `scheduled`; says whether it moved.
    async fn set_send_at(&self, id: &NotificationId, at: Timestamp) -> Result<bool, StoreError>;

    /// Records one fanned-out page of deliveries (`pending` or `skipped`), once per `page` of a
    /// notification: a page fanned out twice changes no row and no count. A store may keep
    /// `pending` rows only in its counts until they are claimed (DynamoDB does, so that fanout
    /// writes nothing per recipient).
    async fn insert_deliveries(
        &self,
        id: &NotificationId,
        page: &str,
        deliveries: &[Delivery],
    ) -> Result<(), StoreError>;
    /// Records that every recipient has a delivery row; from then on the send can finish.
    async fn mark_fanned_out(&self, id: &NotificationId) -> Result<(), StoreError>;
    /// Takes a pending delivery whose lease is free or expired, until `lease_until`. `delivery`
    /// is the row as planned, for stores that create the row on its first claim.
    async fn claim_delivery(
        &self,
        delivery: &Delivery,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Claim, StoreError>;
    async fn record_outcome(&self, key: &DeliveryKey, outcome: &Outcome) -> Result<(), StoreError>;
    /// Moves a `failed` delivery back to `pending` with no attempts and no lease, for a retry;
    /// says whether it moved (a delivery in any other status is left alone).
    async fn reopen_failed(&self, key: &DeliveryKey) -> Result<bool, StoreError>;
    async fn list_deliveries(
        &self,
        id: &NotificationId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError>;
    async fn counts(&self, id: &NotificationId) -> Result<Counts, StoreError>;
    /// Once fanned out with nothing pending, moves `sending` to its final status; returns it.
    async fn finish_if_done(&self, id: &NotificationId) -> Result<Option<Status>, StoreError>;
}
