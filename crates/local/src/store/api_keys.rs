//! `ApiKeyStore` on SQLite: one row per key, by the hash of its secret.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use notify_core::domain::api_key::{ApiKey, ApiKeyId};
use notify_core::ports::{ApiKeyStore, StoreError};

use crate::db::{Cached, db_err, json_err};

use super::SqliteStore;

fn read(body: &str) -> Result<ApiKey, StoreError> {
    serde_json::from_str(body).map_err(json_err)
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn put_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let body = serde_json::to_string(key).map_err(json_err)?;
        let (hash, id) = (key.hash.clone(), key.id.as_str().to_owned());
        self.db
            .call(move |c| {
                c.cached_execute(
                    "INSERT INTO api_keys (hash, id, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT(hash) DO UPDATE SET body = excluded.body",
                    params![hash, id, body],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let hash = hash.to_owned();
        let body: Option<String> = self
            .db
            .call(move |c| {
                c.cached_row(
                    "SELECT body FROM api_keys WHERE hash = ?1",
                    params![hash],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)
            })
            .await?;
        body.as_deref().map(read).transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let bodies: Vec<String> = self
            .db
            .call(|c| {
                let mut stmt = c
                    .prepare_cached("SELECT body FROM api_keys ORDER BY id")
                    .map_err(db_err)?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)
            })
            .await?;
        bodies.iter().map(|b| read(b)).collect()
    }

    async fn delete_api_key(&self, id: &ApiKeyId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                Ok(
                    c.cached_execute("DELETE FROM api_keys WHERE id = ?1", params![id])
                        .map_err(db_err)?
                        > 0,
                )
            })
            .await
    }

    async fn touch_api_key(&self, hash: &str, at: Timestamp) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.db
            .call(move |c| {
                let body: Option<String> = c
                    .cached_row(
                        "SELECT body FROM api_keys WHERE hash = ?1",
                        params![hash],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                let Some(body) = body else {
                    return Ok(());
                };
                let mut key = read(&body)?;
                key.last_used_at = Some(at);
                let body = serde_json::to_string(&key).map_err(json_err)?;
                c.cached_execute(
                    "UPDATE api_keys SET body = ?2 WHERE hash = ?1",
                    params![hash, body],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }
}
