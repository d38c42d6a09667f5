//! `WebhookStore` on DynamoDB: an item per endpoint (`W#<id>`), listed through the `GSI1`
//! partition `W` (a deployment has a handful; they are read once per process every 30 s).

use std::collections::HashMap;

use async_trait::async_trait;

use notify_core::domain::WebhookId;
use notify_core::domain::webhook::Webhook;
use notify_core::ports::{StoreError, WebhookStore};

use super::DynamoStore;
use super::item::{body, string, to_json};

const SK: &str = "W";
const INDEX_PK: &str = "W";

fn pk(id: &WebhookId) -> String {
    format!("W#{id}")
}

#[async_trait]
impl WebhookStore for DynamoStore {
    async fn put_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
        self.put_listed(
            pk(&webhook.id),
            SK,
            to_json(webhook)?,
            Some((INDEX_PK, webhook.id.as_str())),
        )
        .await
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        self.get(pk(id), SK).await?.as_ref().map(body).transpose()
    }

    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let items = self
            .query_page(
                Some("GSI1"),
                "GSI1PK = :pk",
                HashMap::from([(":pk".to_owned(), string(INDEX_PK))]),
                usize::MAX - 1,
                None,
                true,
            )
            .await?;
        items.iter().map(body).collect()
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        self.delete(pk(id), SK).await
    }
}
