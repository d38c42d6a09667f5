//! Exponential backoff with jitter: the local queue's retry delays, the SQS visibility timeouts
//! of retried dispatch messages, and the pauses after a throttle all use it.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay after the `receives`-th receive (from 1): base × 2^(receives − 1), at most
    /// `max`, then jittered.
    pub fn delay(&self, receives: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << receives.saturating_sub(1).min(16));
        jitter(exp.min(self.max))
    }
}

/// Between half and all of `delay`: spreads the retries of a burst without making any instant.
pub fn jitter(delay: Duration) -> Duration {
    use std::hash::BuildHasher;
    let nanos = delay.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 {
        return delay;
    }
    let random = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    Duration::from_nanos(nanos / 2 + random % (nanos / 2 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_receive_up_to_the_cap_with_jitter_in_the_upper_half() {
        let b = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        for (receives, full) in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (40, 60)] {
            let full = Duration::from_secs(full);
            for _ in 0..50 {
                let d = b.delay(receives);
                assert!(
                    d >= full / 2 && d <= full,
                    "receive {receives}: {d:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        let first = b.delay(0);
        assert!(
            first >= Duration::from_secs(1) && first <= Duration::from_secs(2),
            "receive 0 counts as the first: {first:?}"
        );
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
