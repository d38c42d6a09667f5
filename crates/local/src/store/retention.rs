//! Pruning what is past its retention, so the file does not grow without bound (DynamoDB's TTL
//! does this on AWS): finished notifications with their deliveries, expired idempotency
//! records, and inbox items in neither count (read and seen, or archived).

use jiff::Timestamp;
use rusqlite::params;

use notify_core::ports::StoreError;

use crate::db::{Cached, db_err, millis};

use super::SqliteStore;

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub notifications: usize,
    pub deliveries: usize,
    pub inbox_items: usize,
    pub idempotency_records: usize,
}

impl Pruned {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl SqliteStore {
    /// Removes, at most `batch` notifications at a time (each a short transaction, so the API
    /// and the workers wait little): notifications in a final status whose send and every
    /// delivery's send are before `cutoff`, with their deliveries; inbox items whose last mark
    /// is before `cutoff` and that no count holds (an unread or unseen item stays until it is
    /// read, so the counts stay exact); idempotency records expired by `now`.
    pub async fn prune(
        &self,
        cutoff: Timestamp,
        now: Timestamp,
        batch: usize,
    ) -> Result<Pruned, StoreError> {
        let (cutoff, now) = (millis(cutoff), millis(now));
        let mut pruned = Pruned::default();
        loop {
            let (notifications, deliveries) = self
                .db
                .call(move |c| {
                    let tx = c.savepoint().map_err(db_err)?;
                    let ids: Vec<String> = {
                        let mut stmt = tx
                            .prepare_cached(
                                "SELECT n.id FROM notifications n
                                 WHERE n.status IN ('completed', 'partially_failed', 'failed', 'cancelled')
                                   AND n.send_at < ?1
                                   AND NOT EXISTS (SELECT 1 FROM deliveries d
                                                   WHERE d.notification_id = n.id AND d.sent_at >= ?1)
                                 LIMIT ?2",
                            )
                            .map_err(db_err)?;
                        stmt.query_map(params![cutoff, batch as i64], |r| r.get(0))
                            .map_err(db_err)?
                            .collect::<Result<_, _>>()
                            .map_err(db_err)?
                    };
                    let mut deliveries = 0;
                    for id in &ids {
                        deliveries += tx
                            .prepare_cached("DELETE FROM deliveries WHERE notification_id = ?1")
                            .and_then(|mut s| s.execute(params![id]))
                            .map_err(db_err)?;
                        tx.prepare_cached("DELETE FROM fanned_out_pages WHERE notification_id = ?1")
                            .and_then(|mut s| s.execute(params![id]))
                            .map_err(db_err)?;
                        tx.prepare_cached("DELETE FROM fanned_segments WHERE notification_id = ?1")
                            .and_then(|mut s| s.execute(params![id]))
                            .map_err(db_err)?;
                        tx.prepare_cached("DELETE FROM notifications WHERE id = ?1")
                            .and_then(|mut s| s.execute(params![id]))
                            .map_err(db_err)?;
                    }
                    tx.commit().map_err(db_err)?;
                    Ok((ids.len(), deliveries))
                })
                .await?;
            pruned.notifications += notifications;
            pruned.deliveries += deliveries;
            if notifications < batch {
                break;
            }
        }
        let (inbox_items, idempotency_records) = self
            .db
            .call(move |c| {
                let inbox = c
                    .cached_execute(
                        "DELETE FROM inbox
                         WHERE (archived_at IS NOT NULL OR (read_at IS NOT NULL AND seen_at IS NOT NULL))
                           AND max(coalesce(seen_at, 0), coalesce(read_at, 0), coalesce(archived_at, 0)) < ?1",
                        params![cutoff],
                    )
                    .map_err(db_err)?;
                let idempotency = c
                    .cached_execute(
                        "DELETE FROM idempotency WHERE expires_at <= ?1",
                        params![now],
                    )
                    .map_err(db_err)?;
                Ok((inbox, idempotency))
            })
            .await?;
        pruned.inbox_items = inbox_items;
        pruned.idempotency_records = idempotency_records;
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};
    use notify_core::domain::delivery::{Delivery, Outcome, Recipient};
    use notify_core::domain::fanned_out_page::FannedOutPage;
    use notify_core::domain::inbox::{InboxCounts, InboxMark, NewInboxItem};
    use notify_core::domain::notification::{Content, Notification, Status, Target};
    use notify_core::domain::template::Parts;
    use notify_core::domain::{Channel, EmailAddress, NotificationId, UserId};
    use notify_core::ports::{DeliveryStore, InboxStore, NotificationStore};

    use super::{Pruned, SqliteStore};

    fn at(hours: i64) -> Timestamp {
        "2026-11-01T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_hours(hours)
    }

    async fn sent(
        store: &SqliteStore,
        send_at: Timestamp,
        status: Status,
        sent_at: Timestamp,
    ) -> NotificationId {
        let to = EmailAddress::parse("a@example.com").unwrap();
        let n = Notification {
            id: NotificationId::generate(send_at),
            to: Target::Email(to.clone()),
            channels: vec![Channel::Email],
            content: Content::Inline(Parts {
                text: Some("t".into()),
                ..Default::default()
            }),
            send_at,
            created_at: send_at,
            status: Status::Queued,
            category: None,
        };
        store.insert_notification(&n, None, send_at).await.unwrap();
        let d = Delivery::pending(&n.id, &Recipient::email(to), Channel::Email);
        store
            .insert_deliveries(
                &n.id,
                "0",
                &FannedOutPage::default(),
                &[Channel::Email],
                std::slice::from_ref(&d),
            )
            .await
            .unwrap();
        store
            .claim_delivery(&d, sent_at, sent_at + SignedDuration::from_secs(60))
            .await
            .unwrap();
        store
            .record_outcome(
                &d.key,
                &Outcome::Sent {
                    provider_message_id: "p".into(),
                    at: sent_at,
                },
            )
            .await
            .unwrap();
        assert!(
            store
                .transition(&n.id, &[Status::Queued], status)
                .await
                .unwrap()
        );
        n.id
    }

    #[tokio::test]
    async fn only_what_is_finished_and_older_than_the_cutoff_goes() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(&dir.path().join("t.db"), crate::db::Durability::Full).unwrap();
        let store = SqliteStore::new(db);
        let cutoff = at(100);
        let old = sent(&store, at(1), Status::Completed, at(1)).await;
        let old_failed = sent(&store, at(2), Status::Failed, at(2)).await;
        // Sent long ago, but a retry sent it again after the cutoff.
        let retried = sent(&store, at(3), Status::Completed, at(101)).await;
        let recent = sent(&store, at(150), Status::Completed, at(150)).await;
        // Old, but still under way.
        let sending = sent(&store, at(4), Status::Sending, at(4)).await;

        let ada = UserId::parse("ada").unwrap();
        let mut items = Vec::new();
        for i in 0..4 {
            let id = NotificationId::generate(at(i));
            store
                .add_inbox_item(&NewInboxItem {
                    user_id: ada.clone(),
                    notification_id: id.clone(),
                    category: None,
                    title: None,
                    body: format!("item {i}"),
                    url: None,
                    data: Default::default(),
                    created_at: at(i),
                })
                .await
                .unwrap();
            items.push(id);
        }
        // 0: read and seen long ago; 1: archived long ago; 2: unread; 3: read after the cutoff.
        store
            .mark_inbox_item(&ada, &items[0], InboxMark::Seen, at(5))
            .await
            .unwrap();
        store
            .mark_inbox_item(&ada, &items[0], InboxMark::Read, at(5))
            .await
            .unwrap();
        store
            .mark_inbox_item(&ada, &items[1], InboxMark::Archived, at(5))
            .await
            .unwrap();
        store
            .mark_inbox_item(&ada, &items[3], InboxMark::Seen, at(120))
            .await
            .unwrap();
        store
            .mark_inbox_item(&ada, &items[3], InboxMark::Read, at(120))
            .await
            .unwrap();
        let counts_before = store.inbox_counts(&ada).await.unwrap();

        let pruned = store.prune(cutoff, at(200), 1).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                notifications: 2,
                deliveries: 2,
                inbox_items: 2,
                idempotency_records: 0
            },
            "batches of one still reach everything"
        );
        for gone in [&old, &old_failed] {
            assert!(store.get_notification(gone).await.unwrap().is_none());
            assert!(
                store
                    .list_deliveries(gone, 10, None)
                    .await
                    .unwrap()
                    .items
                    .is_empty()
            );
        }
        for kept in [&retried, &recent, &sending] {
            assert!(store.get_notification(kept).await.unwrap().is_some());
            assert_eq!(
                store
                    .list_deliveries(kept, 10, None)
                    .await
                    .unwrap()
                    .items
                    .len(),
                1
            );
        }
        let left: Vec<String> = store
            .inbox_since(&ada, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.item.body)
            .collect();
        assert_eq!(left, ["item 2", "item 3"]);
        let counts = store.inbox_counts(&ada).await.unwrap();
        assert_eq!(
            (counts.unread, counts.unseen),
            (counts_before.unread, counts_before.unseen),
            "nothing counted was removed"
        );
        assert_eq!(
            counts,
            InboxCounts {
                last_seq: 4,
                ..counts
            }
        );
        assert!(store.prune(cutoff, at(200), 1).await.unwrap().is_empty());
    }
}
