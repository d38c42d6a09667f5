//! In-memory adapters for unit tests of the core: simple, single process, nothing durable.

mod queues;
mod scheduler;
mod senders;
mod store;

pub use queues::MemoryQueues;
pub use scheduler::MemoryScheduler;
pub use senders::{RecordedPost, RecordingEmail, RecordingPoster, RecordingSms};
pub use store::MemoryStore;

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::ports::Clock;

/// A clock that moves only when told.
pub struct FakeClock(Mutex<Timestamp>);

impl FakeClock {
    pub fn new(at: Timestamp) -> Self {
        Self(Mutex::new(at))
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut t = self.0.lock().unwrap();
        *t = t.saturating_add(by).unwrap();
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}
