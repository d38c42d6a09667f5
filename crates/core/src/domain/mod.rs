//! The domain: the entities a notification's flow works on (`Notification`, `Delivery`, `User`,
//! `Group`, `Template`) and the value types they are made of. Raw input becomes one of these at
//! the edge (`crate::api`); past the edge nothing re-checks it.

pub mod api_key;
pub mod category;
pub mod delivery;
pub mod email_view;
pub mod fanned_out_page;
pub mod group;
pub mod inbox;
pub mod ip_scope;
pub mod job_claim;
pub mod notification;
pub mod preferences;
pub mod push;
pub mod suppression;
pub mod template;
pub mod unsubscribe;
pub mod user;
pub mod user_token;
pub mod webhook;

mod channel;
mod email_address;
mod ids;
mod phone_number;
mod send_at;
mod time_zone;

pub use channel::Channel;
pub use email_address::EmailAddress;
pub use ids::{
    ApiKeyId, CategoryId, ClientId, EventId, GroupId, IdempotencyKey, NotificationId, TemplateId,
    UserId, WebhookId,
};
pub use phone_number::PhoneNumber;
pub use send_at::{MAX_SCHEDULE_AHEAD, PAST_GRACE, SendAt};
pub use time_zone::TimeZoneName;

/// Why a raw value did not parse; the message is shown to the API caller as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}
