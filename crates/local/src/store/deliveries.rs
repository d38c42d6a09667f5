//! `DeliveryStore` on SQLite: delivery rows and their counts.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use notify_core::domain::delivery::{Claim, Delivery, DeliveryKey, DeliveryStatus, Outcome};
use notify_core::domain::fanned_out_page::FannedOutPage;
use notify_core::domain::notification::Counts;
use notify_core::domain::{Channel, NotificationId, UserId};
use notify_core::ports::{DeliveryStore, Page, StoreError};

use crate::db::{Cached, db_err, from_millis, millis};

use super::SqliteStore;
use super::row::{decode_cursor, encode_cursor};

pub(super) fn counts_in(conn: &rusqlite::Connection, id: &str) -> Result<Counts, StoreError> {
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
        if let Some(status) = DeliveryStatus::parse(&status) {
            c.add(status, n);
        }
    }
    Ok(c)
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn fanned_out_page(
        &self,
        id: &NotificationId,
        page: &str,
        all: &[Channel],
    ) -> Result<Option<FannedOutPage>, StoreError> {
        let (id, page) = (id.as_str().to_owned(), page.to_owned());
        let found: Option<(String, Option<String>)> = self
            .db
            .call(move |c| {
                c.cached_row(
                    "SELECT members, next_cursor FROM fanned_out_pages WHERE notification_id = ?1 AND page = ?2",
                    params![id, page],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_err)
            })
            .await?;
        found
            .map(|(members, next_cursor)| {
                Ok(FannedOutPage {
                    members: FannedOutPage::decode_members(&members, all)
                        .map_err(|e| StoreError::Corrupt(format!("fanned-out page: {e}")))?,
                    next_cursor,
                })
            })
            .transpose()
    }

    /// The page's record and its rows in one transaction: a page recorded already adds nothing.
    async fn insert_deliveries(
        &self,
        id: &NotificationId,
        page: &str,
        record: &FannedOutPage,
        all: &[Channel],
        deliveries: &[Delivery],
    ) -> Result<bool, StoreError> {
        let deliveries = deliveries.to_vec();
        let (id, page) = (id.as_str().to_owned(), page.to_owned());
        let (members, next_cursor) = (record.encode_members(all), record.next_cursor.clone());
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                let recorded = tx
                    .cached_execute(
                        "INSERT OR IGNORE INTO fanned_out_pages (notification_id, page, members, next_cursor)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![id, page, members, next_cursor],
                    )
                    .map_err(db_err)?
                    == 1;
                if !recorded {
                    return Ok(false);
                }
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
                tx.commit().map_err(db_err)?;
                Ok(true)
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
                    .cached_row(
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
            Outcome::Skipped { reason } => ("skipped", Some(reason.clone()), None, None),
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

    async fn record_feedback(
        &self,
        key: &DeliveryKey,
        provider_message_id: &str,
        to: DeliveryStatus,
    ) -> Result<bool, StoreError> {
        let from: Vec<&'static str> = DeliveryStatus::ALL
            .into_iter()
            .filter(|s| s.may_become(to))
            .map(DeliveryStatus::as_str)
            .collect();
        if from.is_empty() {
            return Ok(false);
        }
        let (id, recipient, channel, pid) = (
            key.notification_id.as_str().to_owned(),
            key.recipient.clone(),
            key.channel.as_str(),
            provider_message_id.to_owned(),
        );
        self.db
            .call(move |c| {
                // Counts are read from the rows: changing the row is all there is to it.
                let marks = vec!["?"; from.len()].join(",");
                let sql = format!(
                    "UPDATE deliveries SET status = ?1
                     WHERE notification_id = ?2 AND recipient = ?3 AND channel = ?4
                       AND provider_message_id = ?5 AND status IN ({marks})"
                );
                let to = to.as_str();
                let args: Vec<&dyn rusqlite::ToSql> =
                    [&to as &dyn rusqlite::ToSql, &id, &recipient, &channel, &pid]
                        .into_iter()
                        .chain(from.iter().map(|s| s as &dyn rusqlite::ToSql))
                        .collect();
                let changed = c
                    .prepare_cached(&sql)
                    .map_err(db_err)?
                    .execute(args.as_slice())
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
}
