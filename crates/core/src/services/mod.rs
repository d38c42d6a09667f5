//! The flow of a notification: `accept` (API) → schedule or queue → `fanout` → `dispatch`.

pub mod accept;
pub mod api_keys;
pub mod cancel;
pub mod dispatch;
mod error;
pub mod fanout;
pub mod inbox;
pub mod keyed_limit;
pub mod message;
pub mod metrics;
pub mod preview;
pub mod rate_limit;
pub mod render;
pub mod reschedule;
pub mod retry;
pub mod stream_slots;
pub mod unsubscribe;
pub mod user_tokens;
pub mod webhooks;

use std::sync::Arc;

pub use error::{FieldError, ServiceError};

use crate::ports::{Clock, Queues, Scheduler, Store};

/// What the API side needs: the services behind the HTTP routes.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub scheduler: Arc<dyn Scheduler>,
    pub queues: Arc<dyn Queues>,
    pub clock: Arc<dyn Clock>,
    pub unsubscribe: Arc<unsubscribe::UnsubscribeLinks>,
    pub webhooks: Arc<webhooks::Webhooks>,
    pub inbox: Arc<inbox::Inbox>,
    pub user_tokens: Arc<user_tokens::UserTokens>,
    pub preview: Arc<preview::Preview>,
}
