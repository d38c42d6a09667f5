//! `UserStore` on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use notify_core::domain::UserId;
use notify_core::domain::user::User;
use notify_core::ports::{StoreError, UserStore};

use crate::db::{Cached, db_err, json_err};

use super::SqliteStore;

#[async_trait]
impl UserStore for SqliteStore {
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        let body = serde_json::to_string(user).map_err(json_err)?;
        let id = user.id.as_str().to_owned();
        self.db
            .call(move |c| {
                c.cached_execute(
                    "INSERT INTO users (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                    params![id, body],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let id = id.as_str().to_owned();
        let body: Option<String> = self
            .db
            .call(move |c| {
                c.cached_row("SELECT body FROM users WHERE id = ?1", params![id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db_err)
            })
            .await?;
        body.map(|b| serde_json::from_str(&b).map_err(json_err))
            .transpose()
    }

    async fn get_users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        let bodies: Vec<String> = self
            .db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT body FROM users WHERE id = ?1")
                    .map_err(db_err)?;
                let mut out = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Some(body) = stmt
                        .query_row(params![id], |r| r.get(0))
                        .optional()
                        .map_err(db_err)?
                    {
                        out.push(body);
                    }
                }
                Ok(out)
            })
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json_err))
            .collect()
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                tx.cached_execute(
                    "UPDATE groups SET member_count = member_count - 1
                     WHERE id IN (SELECT group_id FROM memberships WHERE user_id = ?1)",
                    params![id],
                )
                .map_err(db_err)?;
                tx.cached_execute("DELETE FROM memberships WHERE user_id = ?1", params![id])
                    .map_err(db_err)?;
                // What belongs to the user alone goes with them.
                for table in ["preferences", "inbox", "push_subscriptions"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE user_id = ?1"),
                        params![id],
                    )
                    .map_err(db_err)?;
                }
                let deleted = tx
                    .cached_execute("DELETE FROM users WHERE id = ?1", params![id])
                    .map_err(db_err)?
                    > 0;
                tx.commit().map_err(db_err)?;
                Ok(deleted)
            })
            .await
    }

    async fn token_generation(&self, id: &UserId) -> Result<u64, StoreError> {
        let id = id.as_str().to_owned();
        let found: Option<i64> = self
            .db
            .call(move |c| {
                c.cached_row(
                    "SELECT generation FROM user_token_generations WHERE user_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)
            })
            .await?;
        Ok(found.unwrap_or(0).max(0) as u64)
    }

    async fn bump_token_generation(&self, id: &UserId) -> Result<u64, StoreError> {
        let id = id.as_str().to_owned();
        let generation: i64 = self
            .db
            .call(move |c| {
                c.cached_row(
                    "INSERT INTO user_token_generations (user_id, generation) VALUES (?1, 1)
                     ON CONFLICT(user_id) DO UPDATE SET generation = generation + 1
                     RETURNING generation",
                    params![id],
                    |r| r.get(0),
                )
                .map_err(db_err)
            })
            .await?;
        Ok(generation.max(0) as u64)
    }
}
