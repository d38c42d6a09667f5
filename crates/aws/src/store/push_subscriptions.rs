//! `PushSubscriptionStore` on DynamoDB: an item per subscription in its user's inbox
//! partition, `B#<user>` / `S#<subscription id>` (the id is derived from the endpoint, so the
//! same browser registering again overwrites its item).

use async_trait::async_trait;

use notify_core::domain::UserId;
use notify_core::domain::push::{PushSubscription, PushSubscriptionId};
use notify_core::ports::{PushSubscriptionStore, StoreError};

use super::DynamoStore;
use super::item::{body, to_json};

/// Every subscription of a user fits one page (`push::MAX_PER_USER`).
const PAGE: usize = 1000;

fn pk(user: &UserId) -> String {
    format!("B#{user}")
}

fn sk(id: &PushSubscriptionId) -> String {
    format!("S#{id}")
}

#[async_trait]
impl PushSubscriptionStore for DynamoStore {
    async fn put_push_subscription(&self, s: &PushSubscription) -> Result<(), StoreError> {
        self.put_body(pk(&s.user_id), &sk(&s.id), to_json(s)?).await
    }

    async fn list_push_subscriptions(
        &self,
        user: &UserId,
    ) -> Result<Vec<PushSubscription>, StoreError> {
        let (items, _) = self.query_prefix(pk(user), "S#", PAGE, None).await?;
        let mut subs = items
            .iter()
            .map(body::<PushSubscription>)
            .collect::<Result<Vec<_>, _>>()?;
        subs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(subs)
    }

    async fn delete_push_subscription(
        &self,
        user: &UserId,
        id: &PushSubscriptionId,
    ) -> Result<bool, StoreError> {
        self.delete(pk(user), &sk(id)).await
    }
}
