use async_trait::async_trait;

use super::SendError;
use crate::domain::PhoneNumber;

#[derive(Debug, Clone)]
pub struct OutgoingSms {
    pub to: PhoneNumber,
    pub body: String,
    /// Unique per delivery, for providers and webhooks that de-duplicate.
    pub message_id: String,
}

#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Returns the provider's message id.
    async fn send(&self, sms: &OutgoingSms) -> Result<String, SendError>;
}
