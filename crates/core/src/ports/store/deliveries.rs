//! Deliveries, one per (notification, recipient, channel), claimed before their send, and their counts.

use async_trait::async_trait;
use jiff::Timestamp;

use super::{Page, StoreError};
use crate::domain::NotificationId;
use crate::domain::delivery::{Claim, Delivery, DeliveryKey, DeliveryStatus, Outcome};
use crate::domain::notification::Counts;

#[async_trait]
pub trait DeliveryStore: Send + Sync {
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
    /// What the provider reported later about a sent message (`delivered`, `bounced`,
    /// `complained`): applied if the delivery was sent as `provider_message_id` (an event of an
    /// earlier send of a retried delivery does not apply) and `DeliveryStatus::may_become` allows
    /// it, with its count moved; says whether it applied. Reports repeat and come out of order.
    async fn record_feedback(
        &self,
        key: &DeliveryKey,
        provider_message_id: &str,
        to: DeliveryStatus,
    ) -> Result<bool, StoreError>;
    async fn list_deliveries(
        &self,
        id: &NotificationId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError>;
    async fn counts(&self, id: &NotificationId) -> Result<Counts, StoreError>;
}
