//! `InboxStore` on DynamoDB. A user's inbox is one partition, `B#<user>`:
//!
//! | item | SK | attributes |
//! | --- | --- | --- |
//! | head | `H` | `seq` (the last item's), `unread`, `unseen` |
//! | item | `I#<seq, 20 digits>` | `body` (the item as delivered), `seen_at`/`read_at`/`archived_at` (ms), `v` (version) |
//! | guard | `G#<notification>` | `seq` (the notification's item) |
//!
//! An item is added in one transaction with the head (`seq` + 1, on the condition that `seq`
//! is still what was read) and its guard (on the condition that it does not exist): items of a
//! user become visible in `seq` order, and a notification adds at most one. The counts move in
//! the same transaction as each change of an item, so reading them is one `GetItem`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use jiff::Timestamp;

use notify_core::domain::inbox::{InboxCounts, InboxFilter, InboxItem, InboxMark, NewInboxItem};
use notify_core::domain::{NotificationId, UserId};
use notify_core::ports::{InboxStore, Page, StoreError, inbox_cursor, inbox_page};

use super::item::{Item, ItemExt, number, string, to_json};
use super::keys::key;
use super::{DynamoStore, build_err, cancellation_reasons, err, has_code};

/// Tries of a write that met another write of the same inbox.
const ATTEMPTS: usize = 10;
const HEAD: &str = "H";

fn inbox_pk(user: &UserId) -> String {
    format!("B#{user}")
}

fn item_sk(seq: u64) -> String {
    format!("I#{seq:020}")
}

fn guard_sk(notification: &NotificationId) -> String {
    format!("G#{notification}")
}

fn millis(t: Option<Timestamp>) -> Option<i64> {
    t.map(|t| t.as_millisecond())
}

fn read_item(item: &Item) -> Result<InboxItem, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("inbox item: {what}"));
    let body: NewInboxItem =
        serde_json::from_str(item.string("body").ok_or_else(|| corrupt("body"))?)
            .map_err(|e| corrupt(&e.to_string()))?;
    let seq = item
        .number("seq")
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| corrupt("seq"))?;
    let at = |name: &str| {
        item.number(name)
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
    };
    Ok(InboxItem {
        item: body,
        seq,
        seen_at: at("seen_at"),
        read_at: at("read_at"),
        archived_at: at("archived_at"),
    })
}

impl DynamoStore {
    async fn inbox_item(
        &self,
        user: &UserId,
        seq: u64,
    ) -> Result<Option<(InboxItem, i64)>, StoreError> {
        let Some(item) = self.get(inbox_pk(user), &item_sk(seq)).await? else {
            return Ok(None);
        };
        Ok(Some((read_item(&item)?, item.number("v").unwrap_or(0))))
    }

    async fn seq_of(
        &self,
        user: &UserId,
        notification: &NotificationId,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .get(inbox_pk(user), &guard_sk(notification))
            .await?
            .and_then(|g| g.number("seq"))
            .and_then(|s| u64::try_from(s).ok()))
    }

    /// Writes `next` over `current` (read at version `v`) with the counts' change, unless
    /// another write changed the item first: then `false`, and the caller reads it again.
    async fn write_marks(
        &self,
        current: &InboxItem,
        next: &InboxItem,
        v: i64,
    ) -> Result<bool, StoreError> {
        let user = &current.item.user_id;
        let mut set = vec!["v = :v1".to_owned()];
        let mut remove = Vec::new();
        let mut values: Item = HashMap::from([
            (":v".to_owned(), number(v)),
            (":v1".to_owned(), number(v + 1)),
        ]);
        for (name, at) in [
            ("seen_at", next.seen_at),
            ("read_at", next.read_at),
            ("archived_at", next.archived_at),
        ] {
            match millis(at) {
                Some(ms) => {
                    set.push(format!("{name} = :{name}"));
                    values.insert(format!(":{name}"), number(ms));
                }
                None => remove.push(name),
            }
        }
        // An item in neither count (read and seen, or archived) expires with the retention;
        // one still counted is kept, since a TTL delete would not move the head's counts.
        if next.is_unread() || next.is_unseen() {
            remove.push("#ttl");
        } else {
            set.push("#ttl = :ttl".to_owned());
            values.insert(":ttl".to_owned(), self.ttl_now());
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let mut items = vec![TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(inbox_pk(user), &item_sk(current.seq))))
                    .update_expression(expression)
                    .expression_attribute_names("#ttl", "ttl")
                    .condition_expression("attribute_exists(PK) AND (v = :v OR (attribute_not_exists(v) AND :v = :zero))")
                    .set_expression_attribute_values(Some({
                        values.insert(":zero".into(), number(0));
                        values
                    }))
                    .build()
                    .map_err(build_err)?,
            )
            .build()];
        let unread = i64::from(next.is_unread()) - i64::from(current.is_unread());
        let unseen = i64::from(next.is_unseen()) - i64::from(current.is_unseen());
        if unread != 0 || unseen != 0 {
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .set_key(Some(key(inbox_pk(user), HEAD)))
                            .update_expression("ADD unread :unread, unseen :unseen")
                            .expression_attribute_values(":unread", number(unread))
                            .expression_attribute_values(":unseen", number(unseen))
                            .build()
                            .map_err(build_err)?,
                    )
                    .build(),
            );
        }
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(e)
                if cancellation_reasons(&e)
                    .is_some_and(|r| has_code(r, &["ConditionalCheckFailed"])) =>
            {
                Ok(false)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Marks one item, through other writes of it.
    async fn mark_seq(
        &self,
        user: &UserId,
        seq: u64,
        mark: InboxMark,
        at: Timestamp,
    ) -> Result<Option<(InboxItem, bool)>, StoreError> {
        for _ in 0..ATTEMPTS {
            let Some((current, v)) = self.inbox_item(user, seq).await? else {
                return Ok(None);
            };
            let (next, changed) = current.marked(mark, at);
            if !changed {
                return Ok(Some((current, false)));
            }
            if self.write_marks(&current, &next, v).await? {
                return Ok(Some((next, true)));
            }
        }
        Err(StoreError::unavailable(
            "marking an inbox item",
            "it kept changing under other writes",
        ))
    }

    /// A page of the inbox's items in `seq` order between `lo` and `hi`, filtered by `keep`,
    /// until `want` are found or the items end (a Query stops at 1 MB: follow its key).
    async fn query_items(
        &self,
        user: &UserId,
        (lo, hi): (u64, u64),
        forward: bool,
        want: usize,
        keep: impl Fn(&InboxItem) -> bool,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", string(inbox_pk(user)))
                .expression_attribute_values(":lo", string(item_sk(lo)))
                .expression_attribute_values(":hi", string(item_sk(hi)))
                .scan_index_forward(forward)
                .limit(i32::try_from(want.clamp(1, 1000)).unwrap_or(1000))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err)?;
            for item in out.items.unwrap_or_default() {
                let item = read_item(&item)?;
                if keep(&item) {
                    found.push(item);
                    if found.len() == want {
                        return Ok(found);
                    }
                }
            }
            match out.last_evaluated_key {
                Some(next) => start = Some(next),
                None => return Ok(found),
            }
        }
    }
}

#[async_trait]
impl InboxStore for DynamoStore {
    async fn add_inbox_item(&self, new: &NewInboxItem) -> Result<InboxItem, StoreError> {
        let user = &new.user_id;
        let pk = inbox_pk(user);
        let body = to_json(new)?;
        for _ in 0..ATTEMPTS {
            if let Some(seq) = self.seq_of(user, &new.notification_id).await? {
                return match self.inbox_item(user, seq).await? {
                    Some((item, _)) => Ok(item),
                    None => Err(StoreError::Corrupt(format!(
                        "inbox guard of {} without its item",
                        new.notification_id
                    ))),
                };
            }
            let last = self
                .get(pk.clone(), HEAD)
                .await?
                .and_then(|h| h.number("seq"))
                .unwrap_or(0);
            let seq = u64::try_from(last).unwrap_or(0) + 1;
            let mut item = key(pk.clone(), &item_sk(seq));
            item.insert("body".into(), string(body.clone()));
            item.insert("seq".into(), number(seq));
            let mut guard = key(pk.clone(), &guard_sk(&new.notification_id));
            guard.insert("seq".into(), number(seq));
            // A delivery repeated after the retention cannot happen: queues keep a job days.
            guard.insert("ttl".into(), self.ttl_now());
            let head_condition = if last == 0 {
                "attribute_not_exists(seq) OR seq = :last"
            } else {
                "seq = :last"
            };
            let items = vec![
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(guard))
                            .condition_expression("attribute_not_exists(PK)")
                            .build()
                            .map_err(build_err)?,
                    )
                    .build(),
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .set_key(Some(key(pk.clone(), HEAD)))
                            .update_expression("SET seq = :seq ADD unread :one, unseen :one")
                            .condition_expression(head_condition)
                            .expression_attribute_values(":seq", number(seq))
                            .expression_attribute_values(":last", number(last))
                            .expression_attribute_values(":one", number(1))
                            .build()
                            .map_err(build_err)?,
                    )
                    .build(),
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(item))
                            .build()
                            .map_err(build_err)?,
                    )
                    .build(),
            ];
            match self.transact(items).await {
                Ok(()) => return Ok(InboxItem::new(new.clone(), seq)),
                // The guard exists (read again: it is returned) or another item took this seq.
                Err(e)
                    if cancellation_reasons(&e)
                        .is_some_and(|r| has_code(r, &["ConditionalCheckFailed"])) => {}
                Err(e) => return Err(err(e)),
            }
        }
        Err(StoreError::unavailable(
            "adding an inbox item",
            "other items kept taking its place",
        ))
    }

    async fn list_inbox(
        &self,
        user: &UserId,
        filter: &InboxFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InboxItem>, StoreError> {
        let before = inbox_cursor(cursor)?.unwrap_or(u64::MAX);
        if before <= 1 {
            return Ok(Page {
                items: vec![],
                next_cursor: None,
            });
        }
        let items = self
            .query_items(user, (1, before - 1), false, limit + 1, |i| {
                filter.admits(i)
            })
            .await?;
        Ok(inbox_page(items, limit))
    }

    async fn inbox_since(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        if limit == 0 || after == u64::MAX {
            return Ok(vec![]);
        }
        self.query_items(user, (after + 1, u64::MAX), true, limit, |_| true)
            .await
    }

    async fn inbox_counts(&self, user: &UserId) -> Result<InboxCounts, StoreError> {
        let head = self.get(inbox_pk(user), HEAD).await?;
        let n = |name: &str| {
            head.as_ref()
                .and_then(|h| h.number(name))
                .map_or(0, |v| u64::try_from(v).unwrap_or(0))
        };
        Ok(InboxCounts {
            unread: n("unread"),
            unseen: n("unseen"),
            last_seq: n("seq"),
        })
    }

    async fn mark_inbox_item(
        &self,
        user: &UserId,
        item: &NotificationId,
        mark: InboxMark,
        at: Timestamp,
    ) -> Result<Option<InboxItem>, StoreError> {
        let Some(seq) = self.seq_of(user, item).await? else {
            return Ok(None);
        };
        Ok(self
            .mark_seq(user, seq, mark, at)
            .await?
            .map(|(item, _)| item))
    }

    async fn mark_all_inbox(
        &self,
        user: &UserId,
        mark: InboxMark,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut changed = 0;
        let mut before = u64::MAX;
        loop {
            let page = self
                .query_items(
                    user,
                    (1, before.saturating_sub(1).max(1)),
                    false,
                    100,
                    |i| i.archived_at.is_none() && i.marked(mark, at).1,
                )
                .await?;
            for item in &page {
                if let Some((_, true)) = self.mark_seq(user, item.seq, mark, at).await? {
                    changed += 1;
                }
            }
            match page.last() {
                Some(last) if page.len() == 100 && last.seq > 1 => before = last.seq,
                _ => return Ok(changed),
            }
        }
    }
}
