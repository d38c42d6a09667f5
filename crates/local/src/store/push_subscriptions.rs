//! `PushSubscriptionStore` on SQLite: a row per (user, subscription).

use async_trait::async_trait;
use rusqlite::params;

use notify_core::domain::UserId;
use notify_core::domain::push::{PushSubscription, PushSubscriptionId};
use notify_core::ports::{PushSubscriptionStore, StoreError};

use crate::db::{Cached, db_err, json_err, millis};

use super::SqliteStore;

#[async_trait]
impl PushSubscriptionStore for SqliteStore {
    async fn put_push_subscription(&self, s: &PushSubscription) -> Result<(), StoreError> {
        let body = serde_json::to_string(s).map_err(json_err)?;
        let (user, id, at) = (
            s.user_id.as_str().to_owned(),
            s.id.as_str().to_owned(),
            millis(s.created_at),
        );
        self.db
            .call(move |c| {
                c.cached_execute(
                    "INSERT INTO push_subscriptions (user_id, id, created_at, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(user_id, id) DO UPDATE SET body = excluded.body",
                    params![user, id, at, body],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn list_push_subscriptions(
        &self,
        user: &UserId,
    ) -> Result<Vec<PushSubscription>, StoreError> {
        let user = user.as_str().to_owned();
        let bodies: Vec<String> = self
            .db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT body FROM push_subscriptions WHERE user_id = ?1 ORDER BY created_at, id",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![user], |r| r.get(0))
                    .map_err(db_err)?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(db_err)?;
                Ok(rows)
            })
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json_err))
            .collect()
    }

    async fn delete_push_subscription(
        &self,
        user: &UserId,
        id: &PushSubscriptionId,
    ) -> Result<bool, StoreError> {
        let (user, id) = (user.as_str().to_owned(), id.as_str().to_owned());
        self.db
            .call(move |c| {
                Ok(c.cached_execute(
                    "DELETE FROM push_subscriptions WHERE user_id = ?1 AND id = ?2",
                    params![user, id],
                )
                .map_err(db_err)?
                    > 0)
            })
            .await
    }
}
