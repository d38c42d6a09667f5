//! The in-app inbox: dispatch adds items, the inbox routes read and mark them, and a live feed
//! (in `notifyd`, where dispatch runs in the same process) tells open streams at once.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::ServiceError;
use super::stream_slots::StreamSlots;
use crate::domain::inbox::{InboxCounts, InboxFilter, InboxItem, InboxMark, NewInboxItem};
use crate::domain::{NotificationId, UserId};
use crate::ports::{Clock, Page, Store, StoreError};

/// What an open stream hears: a user's new item, or a user's new counts.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxChange {
    Item(Box<InboxItem>),
    Counts { user: UserId, counts: InboxCounts },
}

impl InboxChange {
    pub fn user(&self) -> &UserId {
        match self {
            Self::Item(item) => &item.item.user_id,
            Self::Counts { user, .. } => user,
        }
    }
}

/// Changes as they happen, for the streams of this process. A stream that falls behind is told
/// it lagged and reads what it missed from the store, so the feed may drop.
pub struct LiveInbox {
    changes: broadcast::Sender<InboxChange>,
    closing: tokio::sync::watch::Sender<bool>,
    slots: StreamSlots,
}

impl LiveInbox {
    pub fn new() -> Self {
        Self {
            changes: broadcast::channel(4096).0,
            closing: tokio::sync::watch::channel(false).0,
            slots: StreamSlots::default(),
        }
    }

    /// The open streams, counted per user and in all.
    pub fn slots(&self) -> &StreamSlots {
        &self.slots
    }

    pub fn subscribe(&self) -> broadcast::Receiver<InboxChange> {
        self.changes.subscribe()
    }

    /// Ends every open stream (the server is shutting down: it waits for open responses, and a
    /// stream never ends on its own). Their browsers reconnect with `Last-Event-ID`.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once `close` is called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            // An error means the feed is gone: closed too.
            let _ = closing.wait_for(|closed| *closed).await;
        }
    }

    /// Whether any stream is open to hear a change (else its counts need not be read).
    fn heard(&self) -> bool {
        self.changes.receiver_count() > 0
    }

    fn publish(&self, change: InboxChange) {
        // No stream open: nobody to tell.
        let _ = self.changes.send(change);
    }
}

impl Default for LiveInbox {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Inbox {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    live: Option<Arc<LiveInbox>>,
}

impl Inbox {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            live: None,
        }
    }

    /// Streams in this process hear of changes as they happen (without it, a stream sends what
    /// is stored and closes, and the client comes back for more).
    pub fn with_live(mut self, live: Arc<LiveInbox>) -> Self {
        self.live = Some(live);
        self
    }

    pub fn live(&self) -> Option<&Arc<LiveInbox>> {
        self.live.as_ref()
    }

    /// Adds a delivered item (once per notification and user, however often it is delivered).
    pub async fn deliver(&self, item: &NewInboxItem) -> Result<InboxItem, StoreError> {
        let added = self.store.add_inbox_item(item).await?;
        if let Some(live) = &self.live {
            live.publish(InboxChange::Item(Box::new(added.clone())));
            self.publish_counts(live, &added.item.user_id).await;
        }
        Ok(added)
    }

    async fn publish_counts(&self, live: &LiveInbox, user: &UserId) {
        if !live.heard() {
            return;
        }
        match self.store.inbox_counts(user).await {
            Ok(counts) => live.publish(InboxChange::Counts {
                user: user.clone(),
                counts,
            }),
            // The item is stored: the next change or reconnect brings the counts.
            Err(e) => {
                tracing::warn!(error = %crate::ports::error_chain(&e), "could not read inbox counts")
            }
        }
    }

    pub async fn list(
        &self,
        user: &UserId,
        filter: &InboxFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InboxItem>, ServiceError> {
        Ok(self.store.list_inbox(user, filter, cursor, limit).await?)
    }

    pub async fn counts(&self, user: &UserId) -> Result<InboxCounts, ServiceError> {
        Ok(self.store.inbox_counts(user).await?)
    }

    pub async fn since(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, ServiceError> {
        Ok(self.store.inbox_since(user, after, limit).await?)
    }

    /// Marks one of the user's items; `None` if the user has no such item.
    pub async fn mark(
        &self,
        user: &UserId,
        item: &NotificationId,
        mark: InboxMark,
    ) -> Result<Option<InboxItem>, ServiceError> {
        let marked = self
            .store
            .mark_inbox_item(user, item, mark, self.clock.now())
            .await?;
        if marked.is_some()
            && let Some(live) = &self.live
        {
            self.publish_counts(live, user).await;
        }
        Ok(marked)
    }

    pub async fn mark_all(&self, user: &UserId, mark: InboxMark) -> Result<u64, ServiceError> {
        let changed = self
            .store
            .mark_all_inbox(user, mark, self.clock.now())
            .await?;
        if changed > 0
            && let Some(live) = &self.live
        {
            self.publish_counts(live, user).await;
        }
        Ok(changed)
    }
}
