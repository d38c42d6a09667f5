//! `TemplateStore` on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use notify_core::domain::TemplateId;
use notify_core::domain::template::Template;
use notify_core::ports::{StoreError, TemplateStore};

use crate::db::{Cached, db_err, json_err};

use super::SqliteStore;

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn put_template(&self, template: &Template) -> Result<(), StoreError> {
        let body = serde_json::to_string(template).map_err(json_err)?;
        let id = template.id.as_str().to_owned();
        self.db
            .call(move |c| {
                c.cached_execute(
                    "INSERT INTO templates (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                    params![id, body],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn get_template(&self, id: &TemplateId) -> Result<Option<Template>, StoreError> {
        let id = id.as_str().to_owned();
        let body: Option<String> = self
            .db
            .call(move |c| {
                c.cached_row(
                    "SELECT body FROM templates WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)
            })
            .await?;
        body.map(|b| serde_json::from_str(&b).map_err(json_err))
            .transpose()
    }

    async fn delete_template(&self, id: &TemplateId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                Ok(
                    c.cached_execute("DELETE FROM templates WHERE id = ?1", params![id])
                        .map_err(db_err)?
                        > 0,
                )
            })
            .await
    }
}
