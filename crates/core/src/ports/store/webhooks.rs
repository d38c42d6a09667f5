//! Webhook endpoints.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::WebhookId;
use crate::domain::webhook::Webhook;

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn put_webhook(&self, webhook: &Webhook) -> Result<(), StoreError>;
    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError>;
    /// Every endpoint, oldest first: a deployment has a handful.
    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError>;
    /// Says whether it was there.
    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError>;
}
