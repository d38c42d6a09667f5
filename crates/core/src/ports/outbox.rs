use async_trait::async_trait;
use jiff::Timestamp;

use super::BoxError;

/// What a runtime without providers "sent": emails kept as MIME files and SMS as lines
/// (`notifyd` without SMTP or an SMS webhook). The console shows it, as Mailpit would.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// The newest emails first, at most `limit`; none if emails do not go to the outbox.
    async fn emails(&self, limit: usize) -> Result<Vec<OutboxEmail>, BoxError>;
    async fn email(&self, id: &str) -> Result<Option<OutboxEmail>, BoxError>;
    /// The newest SMS first, at most `limit`; none if SMS do not go to the outbox.
    async fn sms(&self, limit: usize) -> Result<Vec<OutboxSms>, BoxError>;
}

#[derive(Debug, Clone)]
pub struct OutboxEmail {
    pub id: String,
    pub written_at: Timestamp,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OutboxSms {
    pub to: String,
    pub body: String,
    pub message_id: String,
    pub at: Timestamp,
}
