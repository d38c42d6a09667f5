//! The store, split by aggregate: a service or a test double states the part it needs;
//! `Store` is all of them, what an adapter (SQLite, DynamoDB, memory) implements.

mod api_keys;
mod categories;
mod deliveries;
mod groups;
mod inbox;
mod job_claims;
mod notifications;
mod preferences;
mod push_subscriptions;
mod suppressions;
mod templates;
mod users;
mod webhooks;

pub use api_keys::ApiKeyStore;
pub use categories::CategoryStore;
pub use deliveries::DeliveryStore;
pub use groups::GroupStore;
pub use inbox::{InboxStore, inbox_cursor, inbox_page};
pub use job_claims::JobClaimStore;
pub use notifications::{IdempotencyRecord, InsertOutcome, NotificationStore};
pub use preferences::PreferenceStore;
pub use push_subscriptions::PushSubscriptionStore;
pub use suppressions::SuppressionStore;
pub use templates::TemplateStore;
pub use users::UserStore;
pub use webhooks::WebhookStore;

use serde::{Deserialize, Serialize};

use super::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the cursor is not valid")]
    BadCursor,
    /// The write does not fit the item's state (a group being deleted).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed or could not be reached; `source` is its own error (an AWS error
    /// code, a SQLite error), for the log.
    #[error("store unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        source: BoxError,
    },
    /// A stored item does not read back as what was written (a bug, or a hand-edited row).
    #[error("stored data does not parse: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn unavailable(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            context: context.into(),
            source: source.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Every aggregate's store: what an adapter implements, and what a service that touches several
/// holds.
pub trait Store:
    UserStore
    + GroupStore
    + TemplateStore
    + NotificationStore
    + DeliveryStore
    + ApiKeyStore
    + SuppressionStore
    + CategoryStore
    + PreferenceStore
    + WebhookStore
    + InboxStore
    + PushSubscriptionStore
{
}

impl<T> Store for T where
    T: UserStore
        + GroupStore
        + TemplateStore
        + NotificationStore
        + DeliveryStore
        + ApiKeyStore
        + SuppressionStore
        + CategoryStore
        + PreferenceStore
        + WebhookStore
        + InboxStore
        + PushSubscriptionStore
{
}
