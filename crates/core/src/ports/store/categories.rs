//! Categories: which kinds of message are transactional.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::CategoryId;
use crate::domain::category::Category;

#[async_trait]
pub trait CategoryStore: Send + Sync {
    /// Creates or replaces.
    async fn put_category(&self, category: &Category) -> Result<(), StoreError>;
    async fn get_category(&self, id: &CategoryId) -> Result<Option<Category>, StoreError>;
    /// Says whether it was there.
    async fn delete_category(&self, id: &CategoryId) -> Result<bool, StoreError>;
}
