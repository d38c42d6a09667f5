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

/// What a request's key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Not the first key, not a key that exists (or no longer).
    Unknown,
    /// Over its rate: try again after this long.
    Limited(Duration),
}

pub struct ApiKeys {
    store: Arc<dyn ApiKeyStore>,
    limit: Option<KeyRateLimit>,
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
            limit: None,
            first,
            first_hash: OnceCell::new(),
            clock,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// At most `per_second` requests a second for each key (in bursts of as many), so that one
    /// misbehaving client cannot starve the others. Counted in this process.
    pub fn with_limit(mut self, per_second: Option<f64>) -> Self {
        self.limit = per_second
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(KeyRateLimit::new);
        self
    }

    /// Whether a request with `secret` may go on: a known key within its rate.
    pub async fn authorize(&self, secret: &str) -> Result<Access, ServiceError> {
        let hash = secret_hash(secret);
        if !self.is_known(&hash).await? {
            return Ok(Access::Unknown);
        }
        match self.limit.as_ref().map(|l| l.take(&hash)) {
            Some(Err(wait)) => Ok(Access::Limited(wait)),
            _ => Ok(Access::Allowed),
        }
    }

    /// Whether `secret` is known without a read: the first key (once read), or a key found
    /// valid within the cache's time to live. A client address over its failures gets only
    /// this check, which costs nothing.
    pub fn known_in_memory(&self, secret: &str) -> bool {
        let hash = secret_hash(secret);
        if self
            .first_hash
            .get()
            .is_some_and(|first| constant_time_eq(hash.as_bytes(), first.as_bytes()))
        {
            return true;
        }
        let cache = self.cache.lock().unwrap();
        cache
            .get(&hash)
            .is_some_and(|c| c.valid && c.checked.elapsed() < self.ttl)
    }

    /// Whether `hash` is the first key's or a stored key's (from the cache within its TTL).
    async fn is_known(&self, hash: &str) -> Result<bool, ServiceError> {
        let first = self
            .first_hash
            .get_or_try_init(|| async { self.first.secret().await.map(|s| secret_hash(&s)) })
            .await
            .map_err(ServiceError::FirstKey)?;
        if constant_time_eq(hash.as_bytes(), first.as_bytes()) {
            return Ok(true);
        }
        let now = Instant::now();
        let cached = self.cache.lock().unwrap().get(hash).copied();
        let entry = match cached {
            Some(c) if now.duration_since(c.checked) < self.ttl => c,
            _ => {
                let found = self.store.find_api_key(hash).await?;
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
            hash.to_owned(),
            Cached {
                touched: if touch { Some(now) } else { entry.touched },
                ..entry
            },
        );
        if touch && let Err(e) = self.store.touch_api_key(hash, self.clock.now()).await {
            tracing::warn!(error = %error_chain(&e), "could not record an API key's use");
        }
        Ok(entry.valid)
    }

    fn remember(&self, hash: String, entry: Cached) {
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_MAX && !cache.contains_key(&hash) {
            // Wrong keys go first: anyone can send them by the thousand, and they must not
            // push the real ones out (every request of every client would then read the
            // store). Only the deployment's own keys can be valid, so those stay few.
            cache.retain(|_, c| c.valid);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
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

/// A token bucket per key: `rate` tokens a second, at most `rate` (and at least one) saved.
struct KeyRateLimit {
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl KeyRateLimit {
    fn new(rate: f64) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token, or says how long until there is one.
    fn take(&self, hash: &str) -> Result<(), Duration> {
        let burst = self.rate.max(1.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap();
        if buckets.len() >= CACHE_MAX && !buckets.contains_key(hash) {
            buckets.clear();
        }
        let (tokens, last) = buckets.entry(hash.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
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

    async fn known(keys: &ApiKeys, secret: &str) -> bool {
        keys.authorize(secret).await.unwrap() == Access::Allowed
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoked_key_stops_here_at_once_and_elsewhere_within_the_ttl() {
        let store = Arc::new(MemoryStore::default());
        let here = keys(store.clone(), Duration::from_secs(30));
        let elsewhere = keys(store.clone(), Duration::from_secs(30));
        assert!(known(&here, "nk_first").await);
        assert!(!known(&here, "nk_unknown").await);
        let new = here.create("ci".into()).await.unwrap();
        assert!(known(&here, &new.secret).await);
        assert!(known(&elsewhere, &new.secret).await);
        here.revoke(&new.key.id).await.unwrap();
        assert!(!known(&here, &new.secret).await, "at once where revoked");
        assert!(known(&elsewhere, &new.secret).await, "cached elsewhere");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!known(&elsewhere, &new.secret).await, "gone after the ttl");
        assert!(matches!(
            here.revoke(&new.key.id).await,
            Err(ServiceError::NotFound(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn each_key_has_its_own_rate() {
        let store = Arc::new(MemoryStore::default());
        let k = keys(store, Duration::from_secs(30)).with_limit(Some(2.0));
        let other = k.create("other".into()).await.unwrap();
        assert_eq!(k.authorize("nk_first").await.unwrap(), Access::Allowed);
        assert_eq!(k.authorize("nk_first").await.unwrap(), Access::Allowed);
        let Access::Limited(wait) = k.authorize("nk_first").await.unwrap() else {
            panic!("a third request in the same instant is over 2/s");
        };
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(
            k.authorize(&other.secret).await.unwrap(),
            Access::Allowed,
            "another key is not slowed"
        );
        assert_eq!(k.authorize("nk_nope").await.unwrap(), Access::Unknown);
        tokio::time::advance(wait).await;
        assert_eq!(k.authorize("nk_first").await.unwrap(), Access::Allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn thousands_of_wrong_keys_do_not_push_a_real_one_out_of_the_cache() {
        let store = Arc::new(MemoryStore::default());
        let k = keys(store.clone(), Duration::from_secs(30));
        let real = k.create("ci".into()).await.unwrap();
        assert!(known(&k, &real.secret).await);
        for i in 0..(CACHE_MAX * 2) {
            assert!(!known(&k, &format!("nk_wrong_{i}")).await);
        }
        // Gone from the store behind the cache's back: still known here only if its entry
        // survived the wrong keys.
        assert!(store.delete_api_key(&real.key.id).await.unwrap());
        assert!(known(&k, &real.secret).await, "the real key was pushed out");
    }

    #[tokio::test(start_paused = true)]
    async fn a_use_is_recorded_at_most_once_a_minute() {
        let store = Arc::new(MemoryStore::default());
        let k = keys(store.clone(), Duration::from_secs(1));
        let new = k.create("ci".into()).await.unwrap();
        assert!(known(&k, &new.secret).await);
        let first_use = store.list_api_keys().await.unwrap()[0].last_used_at;
        assert!(first_use.is_some());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(known(&k, &new.secret).await);
        assert_eq!(
            store.list_api_keys().await.unwrap()[0].last_used_at,
            first_use
        );
    }
}
