//! The store port on SQLite.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use notify_core::domain::delivery::{Claim, Delivery, DeliveryKey, DeliveryStatus, Outcome};
use notify_core::domain::group::Group;
use notify_core::domain::notification::{Counts, Notification, Status};
use notify_core::domain::template::Template;
use notify_core::domain::user::User;
use notify_core::domain::{Channel, GroupId, IdempotencyKey, NotificationId, TemplateId, UserId};
use notify_core::ports::{IdempotencyRecord, InsertOutcome, Page, Store, StoreError};

use crate::db::{Db, db_err, from_millis, json_err, millis};

pub struct SqliteStore {
    db: Db,
}

impl SqliteStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn encode_cursor(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(parts).expect("strings serialize"))
}

fn decode_cursor(raw: &str, n: usize) -> Result<Vec<String>, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| StoreError::BadCursor)?;
    let parts: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
    if parts.len() == n {
        Ok(parts)
    } else {
        Err(StoreError::BadCursor)
    }
}

fn read_notification(
    body: String,
    status: String,
    send_at: i64,
) -> Result<Notification, StoreError> {
    let mut n: Notification = serde_json::from_str(&body).map_err(json_err)?;
    // The columns are the truth; the body keeps what never changes.
    n.status = Status::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?;
    n.send_at = from_millis(send_at);
    Ok(n)
}

fn counts_in(conn: &rusqlite::Connection, id: &str) -> Result<Counts, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT status, count(*) FROM deliveries WHERE notification_id = ?1 GROUP BY status",
        )
        .map_err(db_err)?;
    let mut rows = stmt.query(params![id]).map_err(db_err)?;
    let mut c = Counts::default();
    while let Some(row) = rows.next().map_err(db_err)? {
        let status: String = row.get(0).map_err(db_err)?;
        let n: u64 = row.get::<_, i64>(1).map_err(db_err)? as u64;
        c.recipients += n;
        match DeliveryStatus::parse(&status) {
            Some(DeliveryStatus::Pending) => c.pending += n,
            Some(DeliveryStatus::Sent) => c.sent += n,
            Some(DeliveryStatus::Failed) => c.failed += n,
            Some(DeliveryStatus::Skipped) => c.skipped += n,
            None => {}
        }
    }
    Ok(c)
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        let body = serde_json::to_string(user).map_err(json_err)?;
        let id = user.id.as_str().to_owned();
        self.db
            .call(move |c| {
                c.execute(
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
                c.query_row("SELECT body FROM users WHERE id = ?1", params![id], |r| {
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
                tx.execute(
                    "UPDATE groups SET member_count = member_count - 1
                     WHERE id IN (SELECT group_id FROM memberships WHERE user_id = ?1)",
                    params![id],
                )
                .map_err(db_err)?;
                tx.execute("DELETE FROM memberships WHERE user_id = ?1", params![id])
                    .map_err(db_err)?;
                let deleted = tx
                    .execute("DELETE FROM users WHERE id = ?1", params![id])
                    .map_err(db_err)?
                    > 0;
                tx.commit().map_err(db_err)?;
                Ok(deleted)
            })
            .await
    }

    async fn put_group(&self, id: &GroupId, name: &str) -> Result<Group, StoreError> {
        let (gid, name) = (id.clone(), name.to_owned());
        self.db
            .call(move |c| {
                let count: i64 = c
                    .query_row(
                        "INSERT INTO groups (id, name) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET name = excluded.name RETURNING member_count",
                        params![gid.as_str(), name],
                        |r| r.get(0),
                    )
                    .map_err(db_err)?;
                Ok(Group { id: gid, name, member_count: count as u64 })
            })
            .await
    }

    async fn get_group(&self, id: &GroupId) -> Result<Option<Group>, StoreError> {
        let gid = id.clone();
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT name, member_count FROM groups WHERE id = ?1",
                    params![gid.as_str()],
                    |r| {
                        Ok(Group {
                            id: gid.clone(),
                            name: r.get(0)?,
                            member_count: r.get::<_, i64>(1)? as u64,
                        })
                    },
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                tx.execute("DELETE FROM memberships WHERE group_id = ?1", params![id])
                    .map_err(db_err)?;
                let deleted = tx
                    .execute("DELETE FROM groups WHERE id = ?1", params![id])
                    .map_err(db_err)?
                    > 0;
                tx.commit().map_err(db_err)?;
                Ok(deleted)
            })
            .await
    }

    async fn purge_group(&self, _id: &GroupId, _max: usize) -> Result<bool, StoreError> {
        // SQLite removed the memberships with the group, in one transaction.
        Ok(true)
    }

    async fn add_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        let id = id.as_str().to_owned();
        let users: Vec<String> = users.iter().map(|u| u.as_str().to_owned()).collect();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                let mut added = 0;
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO memberships (group_id, user_id) VALUES (?1, ?2)",
                        )
                        .map_err(db_err)?;
                    for u in &users {
                        added += stmt.execute(params![id, u]).map_err(db_err)? as i64;
                    }
                }
                tx.execute(
                    "UPDATE groups SET member_count = member_count + ?1 WHERE id = ?2",
                    params![added, id],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(added as u64)
            })
            .await
    }

    async fn remove_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        let id = id.as_str().to_owned();
        let users: Vec<String> = users.iter().map(|u| u.as_str().to_owned()).collect();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                let mut removed = 0;
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "DELETE FROM memberships WHERE group_id = ?1 AND user_id = ?2",
                        )
                        .map_err(db_err)?;
                    for u in &users {
                        removed += stmt.execute(params![id, u]).map_err(db_err)? as i64;
                    }
                }
                tx.execute(
                    "UPDATE groups SET member_count = member_count - ?1 WHERE id = ?2",
                    params![removed, id],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(removed as u64)
            })
            .await
    }

    async fn list_members(
        &self,
        id: &GroupId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError> {
        let after = cursor
            .map(|c| decode_cursor(c, 1).map(|mut v| v.remove(0)))
            .transpose()?;
        let id = id.as_str().to_owned();
        let rows: Vec<String> = self
            .db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT user_id FROM memberships WHERE group_id = ?1 AND (?2 IS NULL OR user_id > ?2) ORDER BY user_id LIMIT ?3",
                    )
                    .map_err(db_err)?;
                let rows = stmt.query_map(params![id, after, limit as i64 + 1], |r| r.get(0)).map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
            })
            .await?;
        let mut items = rows
            .iter()
            .map(|u| UserId::parse(u).map_err(|e| StoreError::Corrupt(e.0)))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|u| encode_cursor(&[u.as_str()]))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn put_template(&self, template: &Template) -> Result<(), StoreError> {
        let body = serde_json::to_string(template).map_err(json_err)?;
        let id = template.id.as_str().to_owned();
        self.db
            .call(move |c| {
                c.execute(
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
                c.query_row(
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
                    c.execute("DELETE FROM templates WHERE id = ?1", params![id])
                        .map_err(db_err)?
                        > 0,
                )
            })
            .await
    }

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
                c.query_row(
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
                        .query_row("SELECT body FROM idempotency WHERE key = ?1 AND expires_at > ?2", params![key, now], |r| r.get(0))
                        .optional()
                        .map_err(db_err)?;
                    if let Some(existing) = existing {
                        return Ok(InsertOutcome::KeyTaken(serde_json::from_str(&existing).map_err(json_err)?));
                    }
                    // An expired record with this key is replaced.
                    tx.execute(
                        "INSERT OR REPLACE INTO idempotency (key, body, expires_at) VALUES (?1, ?2, ?3)",
                        params![key, record, expires_at],
                    )
                    .map_err(db_err)?;
                }
                tx.execute(
                    "INSERT INTO notifications (id, status, send_at, body) VALUES (?1, ?2, ?3, ?4)",
                    params![id, status, send_at, body],
                )
                .map_err(db_err)?;
                tx.execute("DELETE FROM idempotency WHERE expires_at <= ?1", params![now]).map_err(db_err)?;
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
                    c.query_row("SELECT status FROM notifications WHERE id = ?1", params![id], |r| r.get(0)).optional().map_err(db_err)?;
                match current {
                    Some(s) if from.contains(&s.as_str()) => {
                        let changed = c
                            .execute("UPDATE notifications SET status = ?1 WHERE id = ?2 AND status = ?3", params![to.as_str(), id, s])
                            .map_err(db_err)?;
                        Ok(changed == 1)
                    }
                    _ => Ok(false),
                }
            })
            .await
    }

    async fn set_send_at(&self, id: &NotificationId, at: Timestamp) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        let at = millis(at);
        self.db
            .call(move |c| {
                Ok(c.execute(
                    "UPDATE notifications SET send_at = ?1 WHERE id = ?2 AND status = 'scheduled'",
                    params![at, id],
                )
                .map_err(db_err)?
                    == 1)
            })
            .await
    }

    /// Rows are keyed by (notification, recipient, channel), so a page inserted twice is a no-op
    /// without a page key.
    async fn insert_deliveries(
        &self,
        _id: &NotificationId,
        _page: &str,
        deliveries: &[Delivery],
    ) -> Result<(), StoreError> {
        let deliveries = deliveries.to_vec();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO deliveries (notification_id, recipient, channel, user_id, address, status, error)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )
                        .map_err(db_err)?;
                    for d in &deliveries {
                        stmt.execute(params![
                            d.key.notification_id.as_str(),
                            d.key.recipient,
                            d.key.channel.as_str(),
                            d.user_id.as_ref().map(|u| u.as_str()),
                            d.address,
                            d.status.as_str(),
                            d.error,
                        ])
                        .map_err(db_err)?;
                    }
                }
                tx.commit().map_err(db_err)
            })
            .await
    }

    async fn begin_retry(&self, id: &NotificationId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                let changed = c
                    .execute(
                        "UPDATE notifications SET status = 'sending', fanned_out = 0
                         WHERE id = ?1 AND status IN ('failed', 'partially_failed')",
                        params![id],
                    )
                    .map_err(db_err)?;
                Ok(changed == 1)
            })
            .await
    }

    async fn mark_fanned_out(&self, id: &NotificationId) -> Result<(), StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE notifications SET fanned_out = 1 WHERE id = ?1",
                    params![id],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn claim_delivery(
        &self,
        planned: &Delivery,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Claim, StoreError> {
        let key = &planned.key;
        let (id, recipient, channel) = (
            key.notification_id.as_str().to_owned(),
            key.recipient.clone(),
            key.channel.as_str(),
        );
        let (now, lease_until) = (millis(now), millis(lease_until));
        self.db
            .call(move |c| {
                let attempt: Option<i64> = c
                    .prepare_cached(
                        "UPDATE deliveries SET lease_until = ?1, attempts = attempts + 1
                         WHERE notification_id = ?2 AND recipient = ?3 AND channel = ?4
                           AND status = 'pending' AND (lease_until IS NULL OR lease_until <= ?5)
                         RETURNING attempts",
                    )
                    .map_err(db_err)?
                    .query_row(params![lease_until, id, recipient, channel, now], |r| r.get(0))
                    .optional()
                    .map_err(db_err)?;
                if let Some(attempt) = attempt {
                    return Ok(Claim::Claimed { attempt: attempt as u32 });
                }
                let status: Option<String> = c
                    .query_row(
                        "SELECT status FROM deliveries WHERE notification_id = ?1 AND recipient = ?2 AND channel = ?3",
                        params![id, recipient, channel],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                Ok(if status.as_deref() == Some("pending") { Claim::Busy } else { Claim::Done })
            })
            .await
    }

    async fn record_outcome(&self, key: &DeliveryKey, outcome: &Outcome) -> Result<(), StoreError> {
        let (id, recipient, channel) = (
            key.notification_id.as_str().to_owned(),
            key.recipient.clone(),
            key.channel.as_str(),
        );
        let (status, error, sent_at, provider_id) = match outcome {
            Outcome::Sent {
                provider_message_id,
                at,
            } => (
                "sent",
                None,
                Some(millis(*at)),
                Some(provider_message_id.clone()),
            ),
            Outcome::Failed { error } => ("failed", Some(error.clone()), None, None),
            Outcome::Retry { error } | Outcome::Deferred { error } => {
                ("pending", Some(error.clone()), None, None)
            }
        };
        let given_back = i64::from(matches!(outcome, Outcome::Deferred { .. }));
        self.db
            .call(move |c| {
                c.prepare_cached(
                    "UPDATE deliveries SET status = ?1, error = ?2, sent_at = ?3, provider_message_id = ?4, lease_until = NULL,
                         attempts = MAX(attempts - ?8, 0)
                     WHERE notification_id = ?5 AND recipient = ?6 AND channel = ?7",
                )
                .map_err(db_err)?
                .execute(params![status, error, sent_at, provider_id, id, recipient, channel, given_back])
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn reopen_failed(&self, key: &DeliveryKey) -> Result<bool, StoreError> {
        let (id, recipient, channel) = (
            key.notification_id.as_str().to_owned(),
            key.recipient.clone(),
            key.channel.as_str(),
        );
        self.db
            .call(move |c| {
                // The last error stays until the next attempt replaces it: it says why this is retried.
                let changed = c
                    .prepare_cached(
                        "UPDATE deliveries SET status = 'pending', attempts = 0, lease_until = NULL
                         WHERE notification_id = ?1 AND recipient = ?2 AND channel = ?3 AND status = 'failed'",
                    )
                    .map_err(db_err)?
                    .execute(params![id, recipient, channel])
                    .map_err(db_err)?;
                Ok(changed == 1)
            })
            .await
    }

    async fn list_deliveries(
        &self,
        id: &NotificationId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError> {
        let after = cursor.map(|c| decode_cursor(c, 2)).transpose()?;
        let nid = id.clone();
        let id = id.as_str().to_owned();
        type Row = (
            String,
            String,
            Option<String>,
            Option<String>,
            String,
            i64,
            Option<String>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = self
            .db
            .call(move |c| {
                let (after_recipient, after_channel) = match &after {
                    Some(v) => (Some(v[0].clone()), Some(v[1].clone())),
                    None => (None, None),
                };
                let mut stmt = c
                    .prepare_cached(
                        "SELECT recipient, channel, user_id, address, status, attempts, error, sent_at, provider_message_id
                         FROM deliveries WHERE notification_id = ?1 AND (?2 IS NULL OR (recipient, channel) > (?2, ?3))
                         ORDER BY recipient, channel LIMIT ?4",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![id, after_recipient, after_channel, limit as i64 + 1], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
                    })
                    .map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
            })
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for (
            recipient,
            channel,
            user_id,
            address,
            status,
            attempts,
            error,
            sent_at,
            provider_message_id,
        ) in rows
        {
            let bad = |what: &str| StoreError::Corrupt(format!("stored delivery has a bad {what}"));
            items.push(Delivery {
                key: DeliveryKey {
                    notification_id: nid.clone(),
                    recipient,
                    channel: Channel::parse(&channel).map_err(|_| bad("channel"))?,
                },
                user_id: user_id
                    .map(|u| UserId::parse(&u))
                    .transpose()
                    .map_err(|_| bad("user id"))?,
                address,
                status: DeliveryStatus::parse(&status).ok_or_else(|| bad("status"))?,
                attempts: attempts as u32,
                error,
                sent_at: sent_at.map(from_millis),
                provider_message_id,
            });
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|d| encode_cursor(&[&d.key.recipient, d.key.channel.as_str()]))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn counts(&self, id: &NotificationId) -> Result<Counts, StoreError> {
        let id = id.as_str().to_owned();
        self.db.call(move |c| counts_in(c, &id)).await
    }

    async fn finish_if_done(&self, id: &NotificationId) -> Result<Option<Status>, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                let fanned_out: Option<bool> = tx
                    .query_row(
                        "SELECT fanned_out FROM notifications WHERE id = ?1 AND status = 'sending'",
                        params![id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                if fanned_out != Some(true) {
                    return Ok(None);
                }
                let counts = counts_in(&tx, &id)?;
                if counts.pending > 0 {
                    return Ok(None);
                }
                let status = Status::finished(&counts);
                tx.execute(
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

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn meets_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(&dir.path().join("t.db"), crate::db::Durability::Full).unwrap();
        notify_core::contract::run_all(&super::SqliteStore::new(db)).await;
    }
}
