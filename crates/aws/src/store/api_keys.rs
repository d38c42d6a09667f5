//! `ApiKeyStore` on DynamoDB: every key in one partition (`K`), sorted by the hash of its
//! secret, so that a check is one GetItem and the list one Query. A deployment has a handful
//! of keys, and a warm API function checks a key from its cache.

use std::collections::HashMap;

use async_trait::async_trait;
use jiff::Timestamp;

use notify_core::domain::api_key::{ApiKey, ApiKeyId};
use notify_core::ports::{ApiKeyStore, StoreError};

use super::item::{Item, ItemExt, body, number, string, to_json};
use super::keys::key;
use super::{DynamoStore, err, is_condition_failure};

const PK: &str = "K";
/// More keys than any deployment makes; the list reads at most this many.
const MAX_KEYS: usize = 10_000;

fn read(item: &Item) -> Result<ApiKey, StoreError> {
    let mut k: ApiKey = body(item)?;
    // Uses are recorded beside the body, without rewriting it.
    if let Some(ms) = item.number("last_used_at") {
        k.last_used_at = Timestamp::from_millisecond(ms).ok();
    }
    Ok(k)
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn put_api_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        self.put_body(PK.to_owned(), &k.hash, to_json(k)?).await
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.get(PK.to_owned(), hash)
            .await?
            .as_ref()
            .map(read)
            .transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        // Every item of the partition: the query follows LastEvaluatedKey past 1 MB.
        let items = self
            .query_page(
                None,
                "PK = :pk",
                HashMap::from([(":pk".to_owned(), string(PK))]),
                MAX_KEYS,
                None,
                true,
            )
            .await?;
        let mut keys = items.iter().map(read).collect::<Result<Vec<_>, _>>()?;
        keys.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        Ok(keys)
    }

    async fn delete_api_key(&self, id: &ApiKeyId) -> Result<bool, StoreError> {
        let Some(k) = self
            .list_api_keys()
            .await?
            .into_iter()
            .find(|k| &k.id == id)
        else {
            return Ok(false);
        };
        self.delete(PK.to_owned(), &k.hash).await
    }

    async fn touch_api_key(&self, hash: &str, at: Timestamp) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(PK.to_owned(), hash)))
            .update_expression("SET last_used_at = :t")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":t", number(at.as_millisecond()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Deleted meanwhile: it stays deleted.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }
}
