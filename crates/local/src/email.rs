//! Email on one machine: over SMTP with lettre, or as `.eml` files in an outbox folder.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use notify_core::ports::{EmailSender, OutgoingEmail, SendError};

pub struct SmtpEmail {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// SMTP connections kept open and used at once; as many as dispatch jobs run at once.
pub const SMTP_CONNECTIONS: u32 = 16;

impl SmtpEmail {
    /// `smtp://host:port` (plain; `?tls=required` for STARTTLS), `smtps://user:pass@host:465`.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("NOTIFY_SMTP_URL: {e}"))?
            .timeout(Some(Duration::from_secs(30)))
            // lettre 0.11 leaves Nagle on, which costs about 40 ms a message on each connection
            // (fixed upstream, not yet released): enough connections at once hide most of it.
            .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(SMTP_CONNECTIONS))
            .build();
        Ok(Self { transport })
    }
}

fn envelope(email: &OutgoingEmail) -> Result<Envelope, SendError> {
    let parse = |a: &str| a.parse::<lettre::Address>().map_err(|e| SendError::permanent(format!("address: {e}")));
    Envelope::new(Some(parse(email.from.as_str())?), vec![parse(email.to.as_str())?]).map_err(|e| SendError::permanent(e.to_string()))
}

#[async_trait]
impl EmailSender for SmtpEmail {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError> {
        let envelope = envelope(email)?;
        match self.transport.send_raw(&envelope, &email.raw).await {
            Ok(_) => Ok(email.message_id.trim_matches(['<', '>']).to_owned()),
            // 5xx: the server refused this message for good. Everything else (4xx, a dropped
            // connection, a timeout) may pass on a later attempt.
            Err(e) if e.is_permanent() => Err(SendError::permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::transient(format!("SMTP: {e}"))),
        }
    }
}

/// Writes each email as `<outbox>/<message-id>.eml`, atomically (temp file, then rename).
pub struct EmlOutbox {
    dir: PathBuf,
}

impl EmlOutbox {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }
}

#[async_trait]
impl EmailSender for EmlOutbox {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError> {
        let id = email.message_id.trim_matches(['<', '>']).to_owned();
        let name: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(format!("{name}.eml"));
        let io = |e: std::io::Error| SendError::transient(format!("outbox: {e}"));
        let file = tokio::fs::File::create(&tmp).await.map_err(io)?;
        let mut file = tokio::io::BufWriter::new(file);
        tokio::io::AsyncWriteExt::write_all(&mut file, &email.raw).await.map_err(io)?;
        tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(io)?;
        file.into_inner().sync_all().await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(id)
    }
}
