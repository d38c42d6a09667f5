use async_trait::async_trait;

use super::SendError;
use crate::domain::EmailAddress;
use crate::domain::delivery::DeliveryKey;

/// A complete MIME message, built once by the core; SMTP sends it as is, SES as Raw content.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    pub from: EmailAddress,
    pub to: EmailAddress,
    pub message_id: String,
    pub raw: Vec<u8>,
    /// The delivery it is, for a provider that reports on it later (SES tags the message, and
    /// its bounce and complaint events carry the tags back).
    pub delivery: DeliveryKey,
}

#[async_trait]
pub trait EmailSender: Send + Sync {
    /// Returns the provider's message id.
    async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError>;
}
