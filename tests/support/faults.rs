//! A fault-injecting email sender for the AWS path: it wraps the real SES adapter and answers
//! some sends with the errors SES gives on a bad day, before the call is made.
//!
//! Faults are drawn from a hash of (message id, attempt), so a run is repeatable, and only on a
//! message's first two attempts, so that the test can say exactly what must arrive in the end
//! (the attempt limit and the queue's receive count both allow three).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use notify_core::ports::{EmailSender, OutgoingEmail, SendError};

pub struct FaultyEmail<E> {
    inner: E,
    transient_rate: f64,
    throttle_rate: f64,
    /// Addresses SES rejects for good (until `heal`).
    pub rejected: Mutex<HashSet<String>>,
    attempts: Mutex<HashMap<String, u32>>,
    pub injected_transient: AtomicUsize,
    pub injected_throttles: AtomicUsize,
}

impl<E> FaultyEmail<E> {
    pub fn new(
        inner: E,
        transient_rate: f64,
        throttle_rate: f64,
        rejected: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            inner,
            transient_rate,
            throttle_rate,
            rejected: Mutex::new(rejected.into_iter().collect()),
            attempts: Mutex::default(),
            injected_transient: AtomicUsize::new(0),
            injected_throttles: AtomicUsize::new(0),
        }
    }

    /// The rejected addresses accept mail from now on (the user fixed their mailbox).
    pub fn heal(&self) {
        self.rejected.lock().unwrap().clear();
    }
}

fn draw(message_id: &str, attempt: u32) -> f64 {
    let mut h = DefaultHasher::new();
    (message_id, attempt).hash(&mut h);
    (h.finish() % 1_000_000) as f64 / 1_000_000.0
}

#[async_trait]
impl<E: EmailSender> EmailSender for FaultyEmail<E> {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError> {
        if self.rejected.lock().unwrap().contains(email.to.as_str()) {
            return Err(SendError::permanent(
                "sesv2 400 MessageRejected: Email address is on the suppression list (injected)",
            ));
        }
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(email.message_id.clone()).or_default();
            *n += 1;
            *n
        };
        if attempt <= 2 {
            let d = draw(&email.message_id, attempt);
            if d < self.transient_rate {
                self.injected_transient.fetch_add(1, Ordering::Relaxed);
                return Err(SendError::transient(
                    "sesv2 500 InternalFailure: (injected)",
                ));
            }
            if d < self.transient_rate + self.throttle_rate {
                self.injected_throttles.fetch_add(1, Ordering::Relaxed);
                return Err(SendError::throttled(
                    "sesv2 429 TooManyRequestsException: Maximum sending rate exceeded (injected)",
                ));
            }
        }
        self.inner.send(email).await
    }
}
