//! SMS on one machine: POSTed to a webhook, or appended as JSON lines to an outbox file.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use notify_core::ports::{OutgoingSms, SendError, SmsSender};

/// `POST {"to", "body"}` to a URL. 2xx is sent; 408, 429 and 5xx are transient; other 4xx permanent.
pub struct WebhookSms {
    client: reqwest::Client,
    url: reqwest::Url,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookSetupError {
    #[error("not a URL")]
    Url(#[source] <reqwest::Url as std::str::FromStr>::Err),
    #[error("the HTTP client could not be built")]
    Client(#[source] reqwest::Error),
}

impl WebhookSms {
    pub fn new(url: &str) -> Result<Self, WebhookSetupError> {
        let url = reqwest::Url::parse(url).map_err(WebhookSetupError::Url)?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(WebhookSetupError::Client)?;
        Ok(Self { client, url })
    }
}

#[async_trait]
impl SmsSender for WebhookSms {
    async fn send(&self, sms: &OutgoingSms) -> Result<String, SendError> {
        let response = self
            .client
            .post(self.url.clone())
            // Lets the receiver drop a repeat (a retry after a lost response).
            .header("Idempotency-Key", &sms.message_id)
            .json(&json!({"to": sms.to, "body": sms.body}))
            .send()
            .await
            .map_err(|e| SendError::transient(format!("webhook: {e}")))?;
        let status = response.status();
        if status.is_success() {
            // Use the receiver's id when it gives one.
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let id = body
                .get("id")
                .or_else(|| body.get("message_id"))
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            return Ok(id.unwrap_or_else(|| sms.message_id.trim_matches(['<', '>']).to_owned()));
        }
        let text: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let message = format!("webhook answered {status}: {text}");
        if status.as_u16() == 429 {
            Err(SendError::throttled(message))
        } else if status.is_server_error() || status.as_u16() == 408 {
            Err(SendError::transient(message))
        } else {
            Err(SendError::permanent(message))
        }
    }
}

/// Appends `{"to", "body", "message_id", "at"}` lines to a file, flushed to disk per message.
pub struct JsonlOutbox {
    file: Mutex<tokio::fs::File>,
}

impl JsonlOutbox {
    pub async fn open(path: PathBuf) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }
}

#[async_trait]
impl SmsSender for JsonlOutbox {
    async fn send(&self, sms: &OutgoingSms) -> Result<String, SendError> {
        let id = sms.message_id.trim_matches(['<', '>']).to_owned();
        let mut line =
            json!({"to": sms.to, "body": sms.body, "message_id": id, "at": jiff::Timestamp::now()})
                .to_string();
        line.push('\n');
        let mut file = self.file.lock().await;
        let io = |e: std::io::Error| SendError::transient(format!("outbox: {e}"));
        file.write_all(line.as_bytes()).await.map_err(io)?;
        file.sync_data().await.map_err(io)?;
        Ok(id)
    }
}
