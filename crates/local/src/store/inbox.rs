//! `InboxStore` on SQLite: a row per item, keyed by (user, seq). One writer places items, so
//! the next `seq` is read and taken in the same transaction.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use notify_core::domain::inbox::{InboxCounts, InboxFilter, InboxItem, InboxMark, NewInboxItem};
use notify_core::domain::{NotificationId, UserId};
use notify_core::ports::{InboxStore, Page, StoreError, inbox_cursor, inbox_page};

use crate::db::{Cached, db_err, from_millis, json_err, millis};

use super::SqliteStore;

const COLUMNS: &str = "seq, body, seen_at, read_at, archived_at";

fn read_item(r: &Row) -> rusqlite::Result<(u64, String, [Option<i64>; 3])> {
    Ok((r.get(0)?, r.get(1)?, [r.get(2)?, r.get(3)?, r.get(4)?]))
}

fn to_item(
    (seq, body, [seen, read, archived]): (u64, String, [Option<i64>; 3]),
) -> Result<InboxItem, StoreError> {
    let item: NewInboxItem = serde_json::from_str(&body).map_err(json_err)?;
    Ok(InboxItem {
        item,
        seq,
        seen_at: seen.map(from_millis),
        read_at: read.map(from_millis),
        archived_at: archived.map(from_millis),
    })
}

fn find(c: &Connection, user: &str, notification: &str) -> Result<Option<InboxItem>, StoreError> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM inbox WHERE user_id = ?1 AND notification_id = ?2"),
        params![user, notification],
        read_item,
    )
    .optional()
    .map_err(db_err)?
    .map(to_item)
    .transpose()
}

fn write_marks(c: &Connection, user: &str, item: &InboxItem) -> Result<(), StoreError> {
    c.cached_execute(
        "UPDATE inbox SET seen_at = ?3, read_at = ?4, archived_at = ?5 WHERE user_id = ?1 AND seq = ?2",
        params![
            user,
            item.seq,
            item.seen_at.map(millis),
            item.read_at.map(millis),
            item.archived_at.map(millis)
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl InboxStore for SqliteStore {
    async fn add_inbox_item(&self, item: &NewInboxItem) -> Result<InboxItem, StoreError> {
        let body = serde_json::to_string(item).map_err(json_err)?;
        let item = item.clone();
        self.db
            .call(move |c| {
                let user = item.user_id.as_str();
                let notification = item.notification_id.as_str();
                if let Some(existing) = find(c, user, notification)? {
                    return Ok(existing);
                }
                let seq: u64 = c
                    .cached_row(
                        "SELECT COALESCE(MAX(seq), 0) + 1 FROM inbox WHERE user_id = ?1",
                        params![user],
                        |r| r.get(0),
                    )
                    .map_err(db_err)?;
                c.cached_execute(
                    "INSERT INTO inbox (user_id, seq, notification_id, body) VALUES (?1, ?2, ?3, ?4)",
                    params![user, seq, notification, body],
                )
                .map_err(db_err)?;
                Ok(InboxItem::new(item, seq))
            })
            .await
    }

    async fn list_inbox(
        &self,
        user: &UserId,
        filter: &InboxFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InboxItem>, StoreError> {
        // SQLite's integers are signed: a seq past them is no cursor this list returned.
        let before: i64 = match inbox_cursor(cursor)? {
            None => i64::MAX,
            Some(seq) => i64::try_from(seq).map_err(|_| StoreError::BadCursor)?,
        };
        let user = user.as_str().to_owned();
        let archived = if filter.archived {
            "IS NOT NULL"
        } else {
            "IS NULL"
        };
        let unread = if filter.unread_only {
            "AND read_at IS NULL"
        } else {
            ""
        };
        let rows = self
            .db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM inbox WHERE user_id = ?1 AND seq < ?2
                         AND archived_at {archived} {unread} ORDER BY seq DESC LIMIT ?3"
                    ))
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![user, before, limit as i64 + 1], read_item)
                    .map_err(db_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_err)?;
                Ok(rows)
            })
            .await?;
        let items = rows
            .into_iter()
            .map(to_item)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(inbox_page(items, limit))
    }

    async fn inbox_since(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let user = user.as_str().to_owned();
        let rows = self
            .db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM inbox WHERE user_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                    ))
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![user, after, limit as i64], read_item)
                    .map_err(db_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_err)?;
                Ok(rows)
            })
            .await?;
        rows.into_iter().map(to_item).collect()
    }

    async fn inbox_counts(&self, user: &UserId) -> Result<InboxCounts, StoreError> {
        let user = user.as_str().to_owned();
        self.db
            .call(move |c| {
                c.cached_row(
                    "SELECT COUNT(*) FILTER (WHERE read_at IS NULL AND archived_at IS NULL),
                            COUNT(*) FILTER (WHERE seen_at IS NULL AND archived_at IS NULL),
                            COALESCE(MAX(seq), 0)
                     FROM inbox WHERE user_id = ?1",
                    params![user],
                    |r| {
                        Ok(InboxCounts {
                            unread: r.get(0)?,
                            unseen: r.get(1)?,
                            last_seq: r.get(2)?,
                        })
                    },
                )
                .map_err(db_err)
            })
            .await
    }

    async fn mark_inbox_item(
        &self,
        user: &UserId,
        item: &NotificationId,
        mark: InboxMark,
        at: Timestamp,
    ) -> Result<Option<InboxItem>, StoreError> {
        let user = user.as_str().to_owned();
        let item = item.as_str().to_owned();
        self.db
            .call(move |c| {
                let Some(found) = find(c, &user, &item)? else {
                    return Ok(None);
                };
                let (next, changed) = found.marked(mark, at);
                if changed {
                    write_marks(c, &user, &next)?;
                }
                Ok(Some(next))
            })
            .await
    }

    async fn mark_all_inbox(
        &self,
        user: &UserId,
        mark: InboxMark,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let user = user.as_str().to_owned();
        let at = millis(at);
        self.db
            .call(move |c| {
                let sql = match mark {
                    InboxMark::Seen => {
                        "UPDATE inbox SET seen_at = ?2 WHERE user_id = ?1 AND archived_at IS NULL AND seen_at IS NULL"
                    }
                    InboxMark::Read => {
                        "UPDATE inbox SET read_at = ?2, seen_at = COALESCE(seen_at, ?2)
                         WHERE user_id = ?1 AND archived_at IS NULL AND read_at IS NULL"
                    }
                    InboxMark::Unread => {
                        "UPDATE inbox SET read_at = NULL WHERE user_id = ?1 AND archived_at IS NULL AND read_at IS NOT NULL AND ?2 IS NOT NULL"
                    }
                    InboxMark::Archived => {
                        "UPDATE inbox SET archived_at = ?2 WHERE user_id = ?1 AND archived_at IS NULL"
                    }
                };
                Ok(c.execute(sql, params![user, at]).map_err(db_err)? as u64)
            })
            .await
    }
}
