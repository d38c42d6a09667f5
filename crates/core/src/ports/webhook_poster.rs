use async_trait::async_trait;

/// Posts one signed event to an endpoint. `Err` says why it did not take it (no answer, or an
/// answer other than 2xx); every failure is tried again later.
#[async_trait]
pub trait WebhookPoster: Send + Sync {
    async fn post(&self, url: &str, headers: &[(&str, String)], body: String)
    -> Result<(), String>;
}
