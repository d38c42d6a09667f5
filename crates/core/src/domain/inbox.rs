//! A user's in-app inbox: what the `in_app` channel delivers, read by the product's own front
//! end. An item is identified by its notification (a user gets one item per notification) and
//! placed by `seq`, the user's own counter: items become visible in `seq` order, so "everything
//! after N" is a complete answer, which is what a stream's `Last-Event-ID` asks.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{CategoryId, NotificationId, UserId};

/// The longest action URL kept.
pub const MAX_URL_CHARS: usize = 2048;

/// An item as dispatch makes it, before the store places it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewInboxItem {
    pub user_id: UserId,
    pub notification_id: NotificationId,
    pub category: Option<CategoryId>,
    pub title: Option<String>,
    pub body: String,
    pub url: Option<ActionUrl>,
    /// The notification's template data, for a front end that renders its own way.
    pub data: serde_json::Map<String, serde_json::Value>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    #[serde(flatten)]
    pub item: NewInboxItem,
    /// The item's place in its user's inbox: 1, 2, 3, ... in the order items were added.
    pub seq: u64,
    pub seen_at: Option<Timestamp>,
    pub read_at: Option<Timestamp>,
    pub archived_at: Option<Timestamp>,
}

impl InboxItem {
    pub fn new(item: NewInboxItem, seq: u64) -> Self {
        Self {
            item,
            seq,
            seen_at: None,
            read_at: None,
            archived_at: None,
        }
    }

    /// The item after `mark`, and whether that changed it. Reading sees an item too.
    pub fn marked(&self, mark: InboxMark, at: Timestamp) -> (Self, bool) {
        let mut next = self.clone();
        match mark {
            InboxMark::Seen => {
                next.seen_at.get_or_insert(at);
            }
            InboxMark::Read => {
                next.seen_at.get_or_insert(at);
                next.read_at.get_or_insert(at);
            }
            InboxMark::Unread => next.read_at = None,
            InboxMark::Archived => {
                next.archived_at.get_or_insert(at);
            }
        }
        let changed = next != *self;
        (next, changed)
    }

    pub fn is_unread(&self) -> bool {
        self.read_at.is_none() && self.archived_at.is_none()
    }

    pub fn is_unseen(&self) -> bool {
        self.seen_at.is_none() && self.archived_at.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxMark {
    Seen,
    Read,
    Unread,
    Archived,
}

/// What a bell icon shows (archived items count as neither), and the newest item's `seq`:
/// where a new stream starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxCounts {
    pub unread: u64,
    pub unseen: u64,
    pub last_seq: u64,
}

/// Which items a page of the inbox holds, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxFilter {
    pub unread_only: bool,
    /// Archived items only, instead of the others.
    pub archived: bool,
}

impl InboxFilter {
    pub fn admits(&self, item: &InboxItem) -> bool {
        (item.archived_at.is_some() == self.archived) && (!self.unread_only || item.is_unread())
    }
}

/// Where an inbox item takes its reader: an `https`/`http` URL or a path of the product's own
/// site. Anything else (`javascript:`, `data:`) would run in the product's page when clicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionUrl(String);

impl ActionUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() > MAX_URL_CHARS {
            return Err(format!("must be at most {MAX_URL_CHARS} characters"));
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain spaces or control characters".into());
        }
        let lower = raw.to_ascii_lowercase();
        let path = raw.starts_with('/') && !raw.starts_with("//") && !raw.starts_with("/\\");
        let web = ["https://", "http://"]
            .iter()
            .any(|s| lower.starts_with(s) && raw.len() > s.len());
        if path || web {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be an http(s) URL or a path starting with /".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_urls_are_web_or_paths_only() {
        for ok in ["https://example.com/a?b=1", "/orders/7", "HTTP://x.y"] {
            assert!(ActionUrl::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "//evil.example",
            "/\\evil.example",
            "https://",
            "orders/7",
            "/a b",
            "",
        ] {
            assert!(ActionUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reading_sees_and_archiving_leaves_counts() {
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let item = InboxItem::new(
            NewInboxItem {
                user_id: UserId::parse("u1").unwrap(),
                notification_id: NotificationId::generate(at),
                category: None,
                title: None,
                body: "hi".into(),
                url: None,
                data: Default::default(),
                created_at: at,
            },
            1,
        );
        assert!(item.is_unread() && item.is_unseen());
        let (read, changed) = item.marked(InboxMark::Read, at);
        assert!(changed && !read.is_unread() && !read.is_unseen());
        assert!(
            !read.marked(InboxMark::Read, at).1,
            "reading twice changes nothing"
        );
        let (unread, _) = read.marked(InboxMark::Unread, at);
        assert!(unread.is_unread() && !unread.is_unseen());
        let (archived, _) = item.marked(InboxMark::Archived, at);
        assert!(!archived.is_unread() && !archived.is_unseen());
    }
}
