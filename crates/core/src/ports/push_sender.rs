use async_trait::async_trait;

use super::SendError;
use crate::domain::push::{PushMessage, PushSubscription};

/// Why a push did not go.
#[derive(Debug, Clone, PartialEq)]
pub enum PushError {
    /// The push service says the subscription is gone (404, 410): it is removed.
    Gone,
    Failed(SendError),
}

/// Delivers one push to one subscription, encrypted to its browser.
#[async_trait]
pub trait PushSender: Send + Sync {
    /// The push service's message id, if it gives one.
    async fn send(
        &self,
        subscription: &PushSubscription,
        message: &PushMessage,
    ) -> Result<String, PushError>;
}
