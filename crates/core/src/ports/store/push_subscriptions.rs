//! Users' push subscriptions.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::UserId;
use crate::domain::push::{PushSubscription, PushSubscriptionId};

#[async_trait]
pub trait PushSubscriptionStore: Send + Sync {
    /// Adds the subscription, or replaces the one of the same endpoint (a browser registering
    /// again, perhaps with new keys).
    async fn put_push_subscription(
        &self,
        subscription: &PushSubscription,
    ) -> Result<(), StoreError>;
    /// The user's subscriptions, oldest first.
    async fn list_push_subscriptions(
        &self,
        user: &UserId,
    ) -> Result<Vec<PushSubscription>, StoreError>;
    /// Whether it existed.
    async fn delete_push_subscription(
        &self,
        user: &UserId,
        id: &PushSubscriptionId,
    ) -> Result<bool, StoreError>;
}
