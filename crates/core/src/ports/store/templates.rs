//! Templates, rendered at dispatch.

use super::StoreError;
use crate::domain::TemplateId;
use crate::domain::template::Template;
use async_trait::async_trait;

#[async_trait]
pub trait TemplateStore: Send + Sync {
    async fn put_template(&self, template: &Template) -> Result<(), StoreError>;
    async fn get_template(&self, id: &TemplateId) -> Result<Option<Template>, StoreError>;
    async fn delete_template(&self, id: &TemplateId) -> Result<bool, StoreError>;
}
