//! Users' in-app inboxes.

use async_trait::async_trait;
use jiff::Timestamp;

use super::{Page, StoreError};
use crate::domain::inbox::{InboxCounts, InboxFilter, InboxItem, InboxMark, NewInboxItem};
use crate::domain::{NotificationId, UserId};

#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Adds the item at the end of its user's inbox (the next `seq`), unless the user already
    /// has the notification's item: then that one is returned, unchanged (a repeated delivery
    /// adds nothing). An item becomes visible only after every item of a lower `seq`.
    async fn add_inbox_item(&self, item: &NewInboxItem) -> Result<InboxItem, StoreError>;
    /// The user's items matching `filter`, newest first, `limit` at most, after `cursor`.
    async fn list_inbox(
        &self,
        user: &UserId,
        filter: &InboxFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InboxItem>, StoreError>;
    /// The user's items with a `seq` above `after`, oldest first, `limit` at most (archived
    /// ones too): what a stream that saw up to `after` missed.
    async fn inbox_since(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError>;
    async fn inbox_counts(&self, user: &UserId) -> Result<InboxCounts, StoreError>;
    /// Marks one item; `None` if the user has no item for that notification.
    async fn mark_inbox_item(
        &self,
        user: &UserId,
        item: &NotificationId,
        mark: InboxMark,
        at: Timestamp,
    ) -> Result<Option<InboxItem>, StoreError>;
    /// Marks every item that `mark` would change (read or seen, not archived ones); returns how
    /// many it changed.
    async fn mark_all_inbox(
        &self,
        user: &UserId,
        mark: InboxMark,
        at: Timestamp,
    ) -> Result<u64, StoreError>;
}

/// The inbox's cursor: the `seq` of the last item of the page before (the same for every
/// adapter, as the pages are).
pub fn inbox_cursor(cursor: Option<&str>) -> Result<Option<u64>, StoreError> {
    cursor
        .map(|c| c.parse().map_err(|_| StoreError::BadCursor))
        .transpose()
}

/// A page of `items`, read one past `limit` to know whether another page follows.
pub fn inbox_page(mut items: Vec<InboxItem>, limit: usize) -> Page<InboxItem> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = more
        .then(|| items.last().map(|i| i.seq.to_string()))
        .flatten();
    Page { items, next_cursor }
}
