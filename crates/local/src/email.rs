//! Email on one machine: over SMTP with lettre, or as `.eml` files in an outbox folder.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use notify_core::ports::{EmailSender, OutgoingEmail, SendError};

pub struct SmtpEmail {
    how: Connect,
}

enum Connect {
    /// `smtp://host:port` without TLS: our own pool of connections with TCP_NODELAY.
    Plain {
        addr: String,
        connections: tokio::sync::Semaphore,
        idle: tokio::sync::Mutex<Vec<AsyncSmtpConnection>>,
    },
    /// Everything else (TLS, authentication): lettre's pooled transport.
    Lettre(AsyncSmtpTransport<Tokio1Executor>),
}

/// SMTP connections kept open and used at once; as many as dispatch jobs run at once.
pub const SMTP_CONNECTIONS: u32 = 16;

/// Why `NOTIFY_SMTP_URL` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SmtpUrlError {
    #[error(
        "the URL has credentials but no TLS: AUTH would cross the network in clear text \
         (use smtps://, or smtp://...?tls=required for STARTTLS)"
    )]
    CleartextCredentials,
    #[error("not an SMTP URL lettre takes")]
    Invalid(#[source] lettre::transport::smtp::Error),
}

/// Whether `url` (`smtp://user:pass@host`) would send credentials without TLS: plain
/// `smtp://` with a user and no `tls=required` (`tls=opportunistic` falls back to clear text
/// when a man in the middle strips STARTTLS).
fn sends_credentials_in_clear(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("smtp://") else {
        return false;
    };
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, q),
        None => (rest, ""),
    };
    let has_user = authority.split('/').next().is_some_and(|a| a.contains('@'));
    has_user && !query.split('&').any(|pair| pair == "tls=required")
}

impl SmtpEmail {
    /// `smtp://host:port` (plain; `?tls=required` for STARTTLS), `smtps://user:pass@host:465`.
    /// Credentials over plain `smtp://` are refused.
    pub fn from_url(url: &str) -> Result<Self, SmtpUrlError> {
        if sends_credentials_in_clear(url) {
            return Err(SmtpUrlError::CleartextCredentials);
        }
        // lettre 0.11 leaves Nagle on: its message body and the final `.` are two writes, and the
        // second waits for the server's delayed ACK, about 40 ms a message (fixed upstream, not
        // released). For plain SMTP, the common relay on a private network and the test sink, we
        // open the TCP connections ourselves with TCP_NODELAY and let lettre speak SMTP on them.
        if let Some(addr) = url
            .strip_prefix("smtp://")
            .filter(|a| !a.is_empty() && !a.contains(['@', '?', '/']))
        {
            return Ok(Self {
                how: Connect::Plain {
                    addr: addr.to_owned(),
                    connections: tokio::sync::Semaphore::new(SMTP_CONNECTIONS as usize),
                    idle: tokio::sync::Mutex::new(Vec::new()),
                },
            });
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(SmtpUrlError::Invalid)?
            .timeout(Some(Duration::from_secs(30)))
            // With Nagle on (see above), enough connections at once hide most of the stall.
            .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(SMTP_CONNECTIONS))
            .build();
        Ok(Self {
            how: Connect::Lettre(transport),
        })
    }

    async fn connect(addr: &str) -> Result<AsyncSmtpConnection, SendError> {
        let connect = async {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(stream)
        };
        let stream = match tokio::time::timeout(Duration::from_secs(30), connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(SendError::transient(format!("SMTP connect to {addr}: {e}"))),
            Err(_) => {
                return Err(SendError::transient(format!(
                    "SMTP connect to {addr}: timed out"
                )));
            }
        };
        AsyncSmtpConnection::connect_with_transport(Box::new(stream), &ClientId::default())
            .await
            .map_err(classify)
    }

    /// One message on a pooled plain connection; a connection that failed is dropped, not reused.
    async fn send_plain(
        addr: &str,
        connections: &tokio::sync::Semaphore,
        idle: &tokio::sync::Mutex<Vec<AsyncSmtpConnection>>,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<(), SendError> {
        let _permit = connections.acquire().await.expect("never closed");
        let pooled = idle.lock().await.pop();
        let mut conn = match pooled {
            Some(c) if !c.has_broken() => c,
            _ => Self::connect(addr).await?,
        };
        let result = tokio::time::timeout(Duration::from_secs(60), conn.send(envelope, raw)).await;
        match result {
            Ok(Ok(_)) => {
                idle.lock().await.push(conn);
                Ok(())
            }
            Ok(Err(e)) => {
                // After a refused message the session is still good (RSET is sent by lettre).
                if !conn.has_broken() && e.is_permanent() {
                    idle.lock().await.push(conn);
                }
                Err(classify(e))
            }
            Err(_) => Err(SendError::transient("SMTP: the send timed out")),
        }
    }
}

/// 5xx: the server refused this message for good. 421, or a 4xx with the enhanced status 4.7.x
/// that servers use for rate limits (RFC 3463), asks us to slow down. Everything else (other
/// 4xx, a dropped connection, a timeout) may pass on a later attempt.
fn classify(e: lettre::transport::smtp::Error) -> SendError {
    let text = format!("SMTP: {e}");
    if e.is_permanent() {
        return SendError::permanent(text);
    }
    let code = e.status().map(|c| c.to_string());
    let enhanced_rate_limit = e.is_transient() && e.to_string().contains("4.7.");
    if code.as_deref() == Some("421") || enhanced_rate_limit {
        SendError::throttled(text)
    } else {
        SendError::transient(text)
    }
}

fn envelope(email: &OutgoingEmail) -> Result<Envelope, SendError> {
    let parse = |a: &str| {
        a.parse::<lettre::Address>()
            .map_err(|e| SendError::permanent(format!("address: {e}")))
    };
    Envelope::new(
        Some(parse(email.from.as_str())?),
        vec![parse(email.to.as_str())?],
    )
    .map_err(|e| SendError::permanent(e.to_string()))
}

#[async_trait]
impl EmailSender for SmtpEmail {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError> {
        let envelope = envelope(email)?;
        match &self.how {
            Connect::Plain {
                addr,
                connections,
                idle,
            } => Self::send_plain(addr, connections, idle, &envelope, &email.raw).await?,
            Connect::Lettre(transport) => transport
                .send_raw(&envelope, &email.raw)
                .await
                .map(|_| ())
                .map_err(classify)?,
        }
        Ok(email.message_id.trim_matches(['<', '>']).to_owned())
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
        let name: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(format!("{name}.eml"));
        let io = |e: std::io::Error| SendError::transient(format!("outbox: {e}"));
        let file = tokio::fs::File::create(&tmp).await.map_err(io)?;
        let mut file = tokio::io::BufWriter::new(file);
        tokio::io::AsyncWriteExt::write_all(&mut file, &email.raw)
            .await
            .map_err(io)?;
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(io)?;
        file.into_inner().sync_all().await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // lettre's pooled transport starts its pool on the runtime.
    #[tokio::test]
    async fn credentials_without_tls_are_refused() {
        for url in [
            "smtp://user:pass@relay.example.com:587",
            "smtp://user:pass@relay.example.com:587?tls=opportunistic",
            "smtp://user@relay.example.com",
        ] {
            assert!(
                matches!(
                    SmtpEmail::from_url(url),
                    Err(SmtpUrlError::CleartextCredentials)
                ),
                "{url}"
            );
        }
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pass@relay.example.com:587?tls=required",
            "smtps://user:pass@relay.example.com:465",
        ] {
            assert!(SmtpEmail::from_url(url).is_ok(), "{url}");
        }
    }
}
