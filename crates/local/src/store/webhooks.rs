//! `WebhookStore` on SQLite: a row per endpoint.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use notify_core::domain::WebhookId;
use notify_core::domain::webhook::Webhook;
use notify_core::ports::{StoreError, WebhookStore};

use crate::db::{Cached, db_err, json_err};

use super::SqliteStore;

fn read(body: &str) -> Result<Webhook, StoreError> {
    serde_json::from_str(body).map_err(json_err)
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn put_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let body = serde_json::to_string(webhook).map_err(json_err)?;
        let id = webhook.id.as_str().to_owned();
        self.db
            .call(move |c| {
                c.cached_execute(
                    "INSERT INTO webhooks (id, body) VALUES (?1, ?2)
                     ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                    params![id, body],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        let id = id.as_str().to_owned();
        let body: Option<String> = self
            .db
            .call(move |c| {
                c.cached_row(
                    "SELECT body FROM webhooks WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)
            })
            .await?;
        body.as_deref().map(read).transpose()
    }

    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let bodies: Vec<String> = self
            .db
            .call(|c| {
                let mut stmt = c
                    .prepare_cached("SELECT body FROM webhooks ORDER BY id")
                    .map_err(db_err)?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)
            })
            .await?;
        bodies.iter().map(|b| read(b)).collect()
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                Ok(
                    c.cached_execute("DELETE FROM webhooks WHERE id = ?1", params![id])
                        .map_err(db_err)?
                        > 0,
                )
            })
            .await
    }
}
