use async_trait::async_trait;

use super::SendError;
use crate::domain::EmailAddress;

/// A complete MIME message, built once by the core; SMTP sends it as is, SES as Raw content.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    pub from: EmailAddress,
    pub to: EmailAddress,
    pub message_id: String,
    pub raw: Vec<u8>,
}

#[async_trait]
pub trait EmailSender: Send + Sync {
    /// Returns the provider's message id.
    async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError>;
}
