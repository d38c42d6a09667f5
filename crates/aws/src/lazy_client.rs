//! SDK clients made at their first call. Making a client costs a function's cold start about
//! a tenth of a millisecond (its service's endpoint rules and partition table are parsed and
//! their regexes compiled, its runtime plugins built). DynamoDB and SQS serve every invocation
//! and are made at init; the clients only some invocations need (SES, SNS, Scheduler, Secrets
//! Manager) are made by the first call that needs them, so an execution environment that never
//! schedules, or never sends an SMS, never pays for those clients.

use std::sync::{Arc, OnceLock};

/// A client of type `C`, made once, at the first `get`.
pub struct LazyClient<C>(Arc<Inner<C>>);

struct Inner<C> {
    make: Box<dyn Fn() -> C + Send + Sync>,
    client: OnceLock<C>,
}

impl<C> LazyClient<C> {
    pub fn new(make: impl Fn() -> C + Send + Sync + 'static) -> Self {
        Self(Arc::new(Inner {
            make: Box::new(make),
            client: OnceLock::new(),
        }))
    }

    pub fn get(&self) -> &C {
        self.0.client.get_or_init(|| (self.0.make)())
    }
}

/// Clones share the one client.
impl<C> Clone for LazyClient<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// A client already made (the tests' clients, pointed at an emulator).
impl<C: Send + Sync + 'static> From<C> for LazyClient<C> {
    fn from(client: C) -> Self {
        let made = OnceLock::new();
        let _ = made.set(client);
        Self(Arc::new(Inner {
            make: Box::new(|| unreachable!("the client was given made")),
            client: made,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_client_is_made_once_at_its_first_use_and_shared_by_clones() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let lazy = LazyClient::new(move || counter.fetch_add(1, Ordering::SeqCst) + 100);
        let twin = lazy.clone();
        assert_eq!(
            made.load(Ordering::SeqCst),
            0,
            "nothing is made before the first use"
        );
        assert_eq!(*lazy.get(), 100);
        assert_eq!(*twin.get(), 100);
        assert_eq!(*lazy.get(), 100);
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_client_given_made_is_used_as_it_is() {
        let lazy = LazyClient::from(7_u32);
        assert_eq!(*lazy.get(), 7);
    }
}
