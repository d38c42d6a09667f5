//! `SuppressionStore` on SQLite: one row per address.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params, params_from_iter};

use notify_core::domain::suppression::{SuppressedAddress, Suppression};
use notify_core::ports::{Page, StoreError, SuppressionStore};

use crate::db::{Cached, db_err, json_err};

use super::SqliteStore;
use super::row::{decode_cursor, encode_cursor};

fn read(body: &str) -> Result<Suppression, StoreError> {
    serde_json::from_str(body).map_err(json_err)
}

/// SQLite's default limit on a statement's variables is 32,766; a dispatch job has a few
/// hundred addresses at most, but a lookup never depends on that.
const LOOKUP_CHUNK: usize = 500;

#[async_trait]
impl SuppressionStore for SqliteStore {
    async fn put_suppression(&self, s: &Suppression) -> Result<(), StoreError> {
        let body = serde_json::to_string(s).map_err(json_err)?;
        let address = s.address.as_str().to_owned();
        self.db
            .call(move |c| {
                c.cached_execute(
                    "INSERT INTO suppressions (address, body) VALUES (?1, ?2)
                     ON CONFLICT(address) DO UPDATE SET body = excluded.body",
                    params![address, body],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn get_suppression(
        &self,
        address: &SuppressedAddress,
    ) -> Result<Option<Suppression>, StoreError> {
        let address = address.as_str().to_owned();
        let body: Option<String> = self
            .db
            .call(move |c| {
                c.cached_row(
                    "SELECT body FROM suppressions WHERE address = ?1",
                    params![address],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)
            })
            .await?;
        body.as_deref().map(read).transpose()
    }

    async fn delete_suppression(&self, address: &SuppressedAddress) -> Result<bool, StoreError> {
        let address = address.as_str().to_owned();
        self.db
            .call(move |c| {
                Ok(c.cached_execute(
                    "DELETE FROM suppressions WHERE address = ?1",
                    params![address],
                )
                .map_err(db_err)?
                    > 0)
            })
            .await
    }

    async fn find_suppressions(
        &self,
        addresses: &[SuppressedAddress],
    ) -> Result<Vec<Suppression>, StoreError> {
        let addresses: Vec<String> = addresses.iter().map(|a| a.as_str().to_owned()).collect();
        let bodies: Vec<String> = self
            .db
            .call(move |c| {
                let mut bodies = Vec::new();
                for chunk in addresses.chunks(LOOKUP_CHUNK) {
                    let marks = vec!["?"; chunk.len()].join(",");
                    let mut stmt = c
                        .prepare_cached(&format!(
                            "SELECT body FROM suppressions WHERE address IN ({marks})"
                        ))
                        .map_err(db_err)?;
                    let rows = stmt
                        .query_map(params_from_iter(chunk), |r| r.get(0))
                        .map_err(db_err)?;
                    for row in rows {
                        bodies.push(row.map_err(db_err)?);
                    }
                }
                Ok(bodies)
            })
            .await?;
        bodies.iter().map(|b| read(b)).collect()
    }

    async fn list_suppressions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Suppression>, StoreError> {
        let limit = limit.max(1);
        let after = match cursor {
            Some(c) => decode_cursor(c, 1)?.remove(0),
            None => String::new(),
        };
        let rows: Vec<(String, String)> = self
            .db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT address, body FROM suppressions WHERE address > ?1 ORDER BY address LIMIT ?2",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![after, limit as i64 + 1], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)
            })
            .await?;
        let next_cursor = (rows.len() > limit).then(|| encode_cursor(&[&rows[limit - 1].0]));
        let items = rows
            .iter()
            .take(limit)
            .map(|(_, body)| read(body))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }
}
