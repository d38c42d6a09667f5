//! Ports: what the services need from the outside world. Adapters live in other crates
//! (SQLite and SMTP in `notify-local`, AWS in `notify-aws`) and in `crate::memory` for tests.

mod clock;
mod dependency_error;
mod email_sender;
mod first_key;
mod outbox;
mod push_sender;
mod queues;
mod scheduler;
mod signing_key;
mod sms_sender;
mod store;
mod webhook_poster;

pub use clock::{Clock, SystemClock};
pub use dependency_error::{Dependency, DependencyError};
pub use email_sender::{EmailSender, OutgoingEmail};
pub use first_key::{FirstKey, StaticKey};
pub use outbox::{Outbox, OutboxEmail, OutboxSms};
pub use push_sender::{PushError, PushSender};
pub use queues::{MAX_QUEUE_DELAY, QueueError, Queues};
pub use scheduler::{Scheduler, SchedulerError};
pub use signing_key::{SigningKey, StaticSigningKey};
pub use sms_sender::{OutgoingSms, SmsSender};
pub use store::{
    ApiKeyStore, CategoryStore, DeliveryStore, GroupStore, IdempotencyRecord, InboxStore,
    InsertOutcome, JobClaimStore, NotificationStore, Page, PreferenceStore, PushSubscriptionStore,
    Store, StoreError, SuppressionStore, TemplateStore, UserStore, WebhookStore, inbox_cursor,
    inbox_page,
};
pub use webhook_poster::WebhookPoster;

/// The cause an adapter's error carries: whatever its library returned.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error and its causes on one line (`a: b: c`), for logs.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        // Some libraries repeat their cause in their own message.
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// How a provider call failed. Transient errors are retried with backoff; permanent ones are
/// recorded on the delivery as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub kind: SendErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// 5xx, timeouts, connection errors, SMTP 4xx.
    Transient,
    /// The provider asks us to slow down (HTTP 429, SES `TooManyRequests`, SMTP 421): retried
    /// after a pause, and the channel's pace drops.
    Throttled,
    /// Rejected message, invalid or suppressed address, SMTP 5xx.
    Permanent,
    /// The channel cannot send anything for now, whoever the recipient: the provider paused or
    /// suspended the account, refused our credentials, or the daily quota is spent. Nothing is
    /// wrong with the delivery: it waits (without using up attempts) instead of failing.
    Paused,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: SendErrorKind::Transient,
            message: message.into(),
        }
    }

    pub fn throttled(message: impl Into<String>) -> Self {
        Self {
            kind: SendErrorKind::Throttled,
            message: message.into(),
        }
    }

    pub fn paused(message: impl Into<String>) -> Self {
        Self {
            kind: SendErrorKind::Paused,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: SendErrorKind::Permanent,
            message: message.into(),
        }
    }
}
