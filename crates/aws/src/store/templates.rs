//! `TemplateStore` on DynamoDB.

use async_trait::async_trait;

use notify_core::domain::TemplateId;
use notify_core::domain::template::Template;
use notify_core::ports::{StoreError, TemplateStore};

use super::DynamoStore;
use super::item::{body, to_json};

#[async_trait]
impl TemplateStore for DynamoStore {
    async fn put_template(&self, template: &Template) -> Result<(), StoreError> {
        self.put_body(format!("T#{}", template.id), "T", to_json(template)?)
            .await
    }

    async fn get_template(&self, id: &TemplateId) -> Result<Option<Template>, StoreError> {
        self.get(format!("T#{id}"), "T")
            .await?
            .map(|i| body(&i))
            .transpose()
    }

    async fn delete_template(&self, id: &TemplateId) -> Result<bool, StoreError> {
        self.delete(format!("T#{id}"), "T").await
    }
}
