//! `NotificationStore` on SQLite: notifications and idempotency records.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use notify_core::domain::notification::{Notification, Status};
use notify_core::domain::{IdempotencyKey, NotificationId};
use notify_core::jobs::Segment;
use notify_core::ports::{IdempotencyRecord, InsertOutcome, NotificationStore, Page, StoreError};

use crate::db::{Cached, db_err, json_err, millis};

use super::SqliteStore;
use super::deliveries::counts_in;
use super::row::{decode_cursor, encode_cursor, read_notification};

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn find_idempotency(
        &self,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let key = key.as_str().to_owned();
        let now = millis(now);
        let body: Option<String> = self
            .db
            .call(move |c| {
                c.cached_row(
                    "SELECT body FROM idempotency WHERE key = ?1 AND expires_at > ?2",
                    params![key, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)
            })
            .await?;
        body.map(|b| serde_json::from_str(&b).map_err(json_err))
            .transpose()
    }

    async fn insert_notification(
        &self,
        n: &Notification,
        idem: Option<&IdempotencyRecord>,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let body = serde_json::to_string(n).map_err(json_err)?;
        let (id, status, send_at) = (
            n.id.as_str().to_owned(),
            n.status.as_str(),
            millis(n.send_at),
        );
        let idem = idem
            .map(|r| {
                Ok::<_, StoreError>((
                    r.key.clone(),
                    serde_json::to_string(r).map_err(json_err)?,
                    millis(r.expires_at),
                ))
            })
            .transpose()?;
        let now = millis(now);
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                if let Some((key, record, expires_at)) = idem {
                    let existing: Option<String> = tx
                        .cached_row("SELECT body FROM idempotency WHERE key = ?1 AND expires_at > ?2", params![key, now], |r| r.get(0))
                        .optional()
                        .map_err(db_err)?;
                    if let Some(existing) = existing {
                        return Ok(InsertOutcome::KeyTaken(serde_json::from_str(&existing).map_err(json_err)?));
                    }
                    // An expired record with this key is replaced.
                    tx.cached_execute(
                        "INSERT OR REPLACE INTO idempotency (key, body, expires_at) VALUES (?1, ?2, ?3)",
                        params![key, record, expires_at],
                    )
                    .map_err(db_err)?;
                }
                tx.cached_execute(
                    "INSERT INTO notifications (id, status, send_at, body) VALUES (?1, ?2, ?3, ?4)",
                    params![id, status, send_at, body],
                )
                .map_err(db_err)?;
                tx.cached_execute("DELETE FROM idempotency WHERE expires_at <= ?1", params![now]).map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(InsertOutcome::Inserted)
            })
            .await
    }

    async fn get_notification(
        &self,
        id: &NotificationId,
    ) -> Result<Option<Notification>, StoreError> {
        let id = id.as_str().to_owned();
        let row: Option<(String, String, i64)> = self
            .db
            .call(move |c| {
                c.prepare_cached("SELECT body, status, send_at FROM notifications WHERE id = ?1")
                    .map_err(db_err)?
                    .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
                    .map_err(db_err)
            })
            .await?;
        row.map(|(b, s, t)| read_notification(b, s, t)).transpose()
    }

    async fn list_notifications(
        &self,
        status: Option<Status>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Notification>, StoreError> {
        let after = cursor
            .map(|c| decode_cursor(c, 1).map(|mut v| v.remove(0)))
            .transpose()?;
        let status = status.map(Status::as_str);
        let rows: Vec<(String, String, i64)> = self
            .db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT body, status, send_at FROM notifications
                         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR id < ?2)
                         ORDER BY id DESC LIMIT ?3",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![status, after, limit as i64 + 1], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
            })
            .await?;
        let mut items = rows
            .into_iter()
            .map(|(b, s, t)| read_notification(b, s, t))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|n| encode_cursor(&[n.id.as_str()]))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn transition(
        &self,
        id: &NotificationId,
        from: &[Status],
        to: Status,
    ) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        let from: Vec<&'static str> = from.iter().map(|s| s.as_str()).collect();
        self.db
            .call(move |c| {
                let current: Option<String> =
                    c.cached_row("SELECT status FROM notifications WHERE id = ?1", params![id], |r| r.get(0)).optional().map_err(db_err)?;
                match current {
                    Some(s) if from.contains(&s.as_str()) => {
                        let changed = c
                            .cached_execute("UPDATE notifications SET status = ?1 WHERE id = ?2 AND status = ?3", params![to.as_str(), id, s])
                            .map_err(db_err)?;
                        Ok(changed == 1)
                    }
                    _ => Ok(false),
                }
            })
            .await
    }

    async fn begin_retry(&self, id: &NotificationId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                let changed = tx
                    .cached_execute(
                        "UPDATE notifications SET status = 'sending', fanned_out = 0
                         WHERE id = ?1 AND status IN ('failed', 'partially_failed')",
                        params![id],
                    )
                    .map_err(db_err)?;
                tx.cached_execute(
                    "DELETE FROM fanned_segments WHERE notification_id = ?1",
                    params![id],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(changed == 1)
            })
            .await
    }

    async fn set_send_at(&self, id: &NotificationId, at: Timestamp) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        let at = millis(at);
        self.db
            .call(move |c| {
                Ok(c.cached_execute(
                    "UPDATE notifications SET send_at = ?1 WHERE id = ?2 AND status = 'scheduled'",
                    params![at, id],
                )
                .map_err(db_err)?
                    == 1)
            })
            .await
    }

    async fn mark_fanned_out(
        &self,
        id: &NotificationId,
        segment: Option<Segment>,
    ) -> Result<(), StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                if let Some(segment) = segment {
                    tx.cached_execute(
                        "INSERT OR IGNORE INTO fanned_segments (notification_id, segment) VALUES (?1, ?2)",
                        params![id, segment.index],
                    )
                    .map_err(db_err)?;
                    let done: u32 = tx
                        .cached_row(
                            "SELECT count(*) FROM fanned_segments WHERE notification_id = ?1",
                            params![id],
                            |r| r.get(0),
                        )
                        .map_err(db_err)?;
                    if done < segment.of {
                        tx.commit().map_err(db_err)?;
                        return Ok(());
                    }
                }
                tx.cached_execute(
                    "UPDATE notifications SET fanned_out = 1 WHERE id = ?1",
                    params![id],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn finish_if_done(&self, id: &NotificationId) -> Result<Option<Status>, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                let fanned_out: Option<bool> = tx
                    .cached_row(
                        "SELECT fanned_out FROM notifications WHERE id = ?1 AND status = 'sending'",
                        params![id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                if fanned_out != Some(true) {
                    return Ok(None);
                }
                // Every dispatch job asks this: one pending row found by the index answers it,
                // where counting every row would cost each job the size of the send.
                let pending: Option<i64> = tx
                    .prepare_cached(
                        "SELECT 1 FROM deliveries WHERE notification_id = ?1 AND status = 'pending' LIMIT 1",
                    )
                    .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
                    .map_err(db_err)?;
                if pending.is_some() {
                    return Ok(None);
                }
                let counts = counts_in(&tx, &id)?;
                if counts.pending > 0 {
                    return Ok(None);
                }
                let status = Status::finished(&counts);
                tx.cached_execute(
                    "UPDATE notifications SET status = ?1 WHERE id = ?2 AND status = 'sending'",
                    params![status.as_str(), id],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(Some(status))
            })
            .await
    }
}
