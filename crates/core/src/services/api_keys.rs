//! Who may call the API: the deployment's first key and the keys made with
//! `POST /v1/api-keys`, stored only as SHA-256 hashes of their secrets.
//!
//! A warm process checks a key from its cache, so a request costs no store read; a key revoked
//! in another process stops working here within `ttl`, and at once in the process that revoked
//! it. A secret never reaches a log: only its hash is kept, and only a key's id is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::ServiceError;
use crate::domain::api_key::{ApiKey, ApiKeyId, NewApiKey, secret_hash};
use crate::ports::{ApiKeyStore, Clock, FirstKey, error_chain};

/// Entries kept at most: random keys presented by a scanner must not grow memory for ever.
const CACHE_MAX: usize = 10_000;
/// A key's last use is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

pub struct ApiKeys {
    store: Arc<dyn ApiKeyStore>,
    first: Arc<dyn FirstKey>,
    first_hash: OnceCell<String>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

#[derive(Clone, Copy)]
struct Cached {
    valid: bool,
    checked: Instant,
    touched: Option<Instant>,
}

/// Compares without an early exit, so response timing does not reveal where two hashes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

impl ApiKeys {
    pub fn new(
        store: Arc<dyn ApiKeyStore>,
        first: Arc<dyn FirstKey>,
        clock: Arc<dyn Clock>,
        ttl: Duration,
    ) -> Self {
        Self {
            store,
            first,
            first_hash: OnceCell::new(),
            clock,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `secret` is the first key or a key that exists.
    pub async fn check(&self, secret: &str) -> Result<bool, ServiceError> {
        let hash = secret_hash(secret);
        let first = self
            .first_hash
            .get_or_try_init(|| async { self.first.secret().await.map(|s| secret_hash(&s)) })
            .await
            .map_err(ServiceError::FirstKey)?;
        if constant_time_eq(hash.as_bytes(), first.as_bytes()) {
            return Ok(true);
        }
        let now = Instant::now();
        let cached = self.cache.lock().unwrap().get(&hash).copied();
        let entry = match cached {
            Some(c) if now.duration_since(c.checked) < self.ttl => c,
            _ => {
                let found = self.store.find_api_key(&hash).await?;
                Cached {
                    valid: found.is_some(),
                    checked: now,
                    touched: cached.and_then(|c| c.touched),
                }
            }
        };
        let touch = entry.valid
            && entry
                .touched
                .is_none_or(|t| now.duration_since(t) >= TOUCH_EVERY);
        self.remember(
            hash.clone(),
            Cached {
                touched: if touch { Some(now) } else { entry.touched },
                ..entry
            },
        );
        if touch && let Err(e) = self.store.touch_api_key(&hash, self.clock.now()).await {
            tracing::warn!(error = %error_chain(&e), "could not record an API key's use");
        }
        Ok(entry.valid)
    }

    fn remember(&self, hash: String, entry: Cached) {
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_MAX && !cache.contains_key(&hash) {
            cache.clear();
        }
        cache.insert(hash, entry);
    }

    /// Makes a key; its secret is in the answer and nowhere else.
    pub async fn create(&self, name: String) -> Result<NewApiKey, ServiceError> {
        let new = NewApiKey::generate(name, self.clock.now());
        self.store.put_api_key(&new.key).await?;
        tracing::info!(key_id = %new.key.id, "API key created");
        Ok(new)
    }

    pub async fn list(&self) -> Result<Vec<ApiKey>, ServiceError> {
        Ok(self.store.list_api_keys().await?)
    }

    /// Revokes a key: here at once, in other processes within the cache's time to live.
    pub async fn revoke(&self, id: &ApiKeyId) -> Result<(), ServiceError> {
        if !self.store.delete_api_key(id).await? {
            return Err(ServiceError::NotFound("API key"));
        }
        self.cache.lock().unwrap().clear();
        tracing::info!(key_id = %id, "API key revoked");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::ports::{StaticKey, SystemClock};

    fn keys(store: Arc<MemoryStore>, ttl: Duration) -> ApiKeys {
        ApiKeys::new(
            store,
            Arc::new(StaticKey("nk_first".into())),
            Arc::new(SystemClock),
            ttl,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoked_key_stops_here_at_once_and_elsewhere_within_the_ttl() {
        let store = Arc::new(MemoryStore::default());
        let here = keys(store.clone(), Duration::from_secs(30));
        let elsewhere = keys(store.clone(), Duration::from_secs(30));
        assert!(here.check("nk_first").await.unwrap());
        assert!(!here.check("nk_unknown").await.unwrap());
        let new = here.create("ci".into()).await.unwrap();
        assert!(here.check(&new.secret).await.unwrap());
        assert!(elsewhere.check(&new.secret).await.unwrap());
        here.revoke(&new.key.id).await.unwrap();
        assert!(
            !here.check(&new.secret).await.unwrap(),
            "at once where revoked"
        );
        assert!(
            elsewhere.check(&new.secret).await.unwrap(),
            "cached elsewhere"
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(
            !elsewhere.check(&new.secret).await.unwrap(),
            "gone after the ttl"
        );
        assert!(matches!(
            here.revoke(&new.key.id).await,
            Err(ServiceError::NotFound(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_use_is_recorded_at_most_once_a_minute() {
        let store = Arc::new(MemoryStore::default());
        let k = keys(store.clone(), Duration::from_secs(1));
        let new = k.create("ci".into()).await.unwrap();
        assert!(k.check(&new.secret).await.unwrap());
        let first_use = store.list_api_keys().await.unwrap()[0].last_used_at;
        assert!(first_use.is_some());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(k.check(&new.secret).await.unwrap());
        assert_eq!(
            store.list_api_keys().await.unwrap()[0].last_used_at,
            first_use
        );
    }
}
