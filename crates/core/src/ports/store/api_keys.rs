//! API keys, found by the hash of their secret.

use async_trait::async_trait;
use jiff::Timestamp;

use super::StoreError;
use crate::domain::api_key::{ApiKey, ApiKeyId};

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn put_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// The key whose secret has this `secret_hash`.
    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;
    /// Every key, oldest first (a deployment has a handful).
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    /// Says whether it existed.
    async fn delete_api_key(&self, id: &ApiKeyId) -> Result<bool, StoreError>;
    /// Records a use; a key that is gone stays gone.
    async fn touch_api_key(&self, hash: &str, at: Timestamp) -> Result<(), StoreError>;
}
