//! Notifications, their status, and the idempotency records of the requests that made them.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Page, StoreError};
use crate::domain::notification::{Notification, Status};
use crate::domain::{IdempotencyKey, NotificationId};
use crate::jobs::Segment;

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
pub trait NotificationStore: Send + Sync {
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
    /// Records that every recipient has a delivery row, or, for a `segment`, every recipient
    /// in it: the send is fanned out once every segment of its split has been recorded (each
    /// any number of times). From then on the send can finish.
    async fn mark_fanned_out(
        &self,
        id: &NotificationId,
        segment: Option<Segment>,
    ) -> Result<(), StoreError>;
    /// Once fanned out with nothing pending, moves `sending` to its final status; returns it.
    async fn finish_if_done(&self, id: &NotificationId) -> Result<Option<Status>, StoreError>;
}
