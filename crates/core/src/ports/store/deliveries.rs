//! Deliveries, one per (notification, recipient, channel), claimed before their send, and their counts.

use async_trait::async_trait;
use jiff::Timestamp;

use super::{JobClaimStore, Page, StoreError};
use crate::domain::delivery::{Claim, Delivery, DeliveryKey, DeliveryStatus, Outcome};
use crate::domain::fanned_out_page::FannedOutPage;
use crate::domain::notification::Counts;
use crate::domain::{Channel, NotificationId};

#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Claims on whole dispatch jobs, where the store offers them (see `JobClaimStore`): a
    /// keyed job is then claimed once, not delivery by delivery.
    fn job_claims(&self) -> Option<&dyn JobClaimStore> {
        None
    }
    /// The record of a page of a notification's fanout (`page` as in `insert_deliveries`), if a
    /// fanout made one; read consistently.
    async fn fanned_out_page(
        &self,
        id: &NotificationId,
        page: &str,
        all: &[Channel],
    ) -> Result<Option<FannedOutPage>, StoreError>;
    /// Records one fanned-out page of deliveries (`pending` or `skipped`) with its record
    /// (`record`, see `FannedOutPage`; `all`: the send's channels), once per `page` of a
    /// notification: `false`, with no row or count changed, if the page was recorded already,
    /// by an earlier or a concurrent fanout, whose record is then the page's. A store may keep
    /// `pending` rows only in its counts until they are claimed (DynamoDB does, so that fanout
    /// writes nothing per recipient).
    async fn insert_deliveries(
        &self,
        id: &NotificationId,
        page: &str,
        record: &FannedOutPage,
        all: &[Channel],
        deliveries: &[Delivery],
    ) -> Result<bool, StoreError>;
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
