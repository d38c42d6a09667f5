//! A token bucket per key (a client address, an unsubscribe token): `rate` a second, bursts
//! of `burst`. For routes anyone can call without a key, so that one caller cannot make the
//! service do unbounded work. Counted in this process; the keys kept are bounded, and when
//! they fill up the ones whose buckets are full again (idle callers) go first.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub struct KeyedLimit {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl KeyedLimit {
    pub fn new(per_second: f64, burst: u32, max_keys: usize) -> Self {
        Self {
            rate: per_second.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// How long until `key` has one, if it has none now (nothing is taken).
    pub fn exhausted(&self, key: &str) -> Option<Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, last) = buckets.get(key)?;
        let now = Instant::now();
        let tokens = (tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        (tokens < 1.0).then(|| {
            Duration::from_secs_f64((1.0 - tokens) / self.rate).max(Duration::from_secs(1))
        })
    }

    /// Takes one for `key`, or says how long until there is one.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= self.max_keys && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
            });
            if buckets.len() >= self.max_keys {
                buckets.clear();
            }
        }
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate).max(Duration::from_secs(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_gets_its_burst_then_its_rate_and_keys_are_apart() {
        let limit = KeyedLimit::new(1.0, 3, 100);
        for _ in 0..3 {
            assert!(limit.take("a").is_ok());
        }
        assert!(limit.take("a").is_err());
        assert!(limit.take("b").is_ok(), "another key is not slowed");
    }

    #[test]
    fn keys_are_bounded_and_idle_ones_go_first() {
        let limit = KeyedLimit::new(0.001, 2, 10);
        limit.take("busy").unwrap();
        limit.take("busy").unwrap();
        assert!(limit.take("busy").is_err());
        for i in 0..100 {
            let _ = limit.take(&format!("k{i}"));
        }
        assert!(limit.buckets.lock().unwrap().len() <= 10);
    }
}
