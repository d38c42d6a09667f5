//! The pace of sends on one channel: at most a configured rate, and slower while the provider
//! throttles.
//!
//! Each send reserves the next free slot (1/rate apart) and sleeps until it. When throttling
//! answers reach a fifth of the sends of the last second, the rate halves; every quiet second
//! wins back a quarter (at least a tenth of the configured ceiling). Sending faster than a quota
//! draws throttles in proportion to the excess, so the rate settles near what the provider
//! accepts instead of failing sends. A stray throttle (below that share) only pauses its own
//! send: halving on each would crawl against a provider that throttles a small share at random.
//! With no configured rate the limiter lets everything through until it first halves (from the
//! rate it measured over the last second), and again once it is back to twice that rate.

use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, so that the simulated benchmarks and paused-clock tests see the same pacing.
use tokio::time::Instant;

/// The slowest pace a throttled channel falls to.
const MIN_RATE: f64 = 1.0;
/// Throttles in one second, at least, and as a share of that second's sends, that halve the rate.
const MIN_THROTTLES: u32 = 3;
const THROTTLE_SHARE: f64 = 0.2;

#[derive(Debug)]
pub struct RateLimit {
    configured: Option<f64>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Sends per second now; `None` while unlimited.
    rate: Option<f64>,
    /// For an unlimited channel: the rate measured when it was first slowed down.
    measured_at_throttle: f64,
    next_slot: Instant,
    last_throttle: Option<Instant>,
    last_raise: Instant,
    /// Sends counted in the current and the previous one-second window.
    window_start: Instant,
    window_sends: u32,
    window_throttles: u32,
    previous_window_sends: u32,
}

impl RateLimit {
    /// `per_second` of `None` (or not positive) means no limit until the provider throttles.
    pub fn new(per_second: Option<f64>) -> Self {
        let configured = per_second.filter(|r| r.is_finite() && *r > 0.0);
        let now = Instant::now();
        Self {
            configured,
            state: Mutex::new(State {
                rate: configured,
                measured_at_throttle: 0.0,
                next_slot: now,
                last_throttle: None,
                last_raise: now,
                window_start: now,
                window_sends: 0,
                window_throttles: 0,
                previous_window_sends: 0,
            }),
        }
    }

    /// Waits for this send's slot.
    pub async fn acquire(&self) {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            s.count(now);
            s.recover(now, self.configured);
            match s.rate {
                None => Duration::ZERO,
                Some(rate) => {
                    let slot = s.next_slot.max(now);
                    s.next_slot = slot + Duration::from_secs_f64(1.0 / rate);
                    slot - now
                }
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// The provider said "slow down".
    pub fn throttled(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        s.window_throttles = s.window_throttles.saturating_add(1);
        let sends = s.window_sends.max(s.previous_window_sends);
        if s.window_throttles < MIN_THROTTLES
            || f64::from(s.window_throttles) < THROTTLE_SHARE * f64::from(sends)
        {
            return;
        }
        // Several sends in flight report the same throttle; halve once per half second.
        if s.last_throttle
            .is_some_and(|t| now - t < Duration::from_millis(500))
        {
            return;
        }
        let current = match s.rate {
            Some(rate) => rate,
            None => {
                s.measured_at_throttle = f64::from(sends);
                f64::from(sends)
            }
        };
        s.rate = Some((current / 2.0).max(MIN_RATE));
        tracing::warn!(
            per_second = s.rate,
            throttles = s.window_throttles,
            sends,
            "the provider throttles: sending slower"
        );
        s.last_throttle = Some(now);
        s.last_raise = now;
    }

    /// The pace now, in sends per second (`None`: unlimited).
    pub fn current_rate(&self) -> Option<f64> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rate
    }
}

impl State {
    fn count(&mut self, now: Instant) {
        if now - self.window_start >= Duration::from_secs(1) {
            self.previous_window_sends = self.window_sends;
            self.window_sends = 0;
            self.window_throttles = 0;
            self.window_start = now;
        }
        self.window_sends = self.window_sends.saturating_add(1);
    }

    /// A quarter more per quiet second (at least a tenth of the ceiling), up to the ceiling;
    /// an unlimited channel is unlimited again at twice the rate where it was first slowed.
    fn recover(&mut self, now: Instant, configured: Option<f64>) {
        let (Some(rate), Some(throttled_at)) = (self.rate, self.last_throttle) else {
            return;
        };
        if now - throttled_at < Duration::from_secs(1)
            || now - self.last_raise < Duration::from_secs(1)
        {
            return;
        }
        self.last_raise = now;
        let raised = (rate * 1.25)
            .max(rate + configured.unwrap_or(0.0) / 10.0)
            .max(MIN_RATE * 2.0);
        self.rate = match configured {
            Some(ceiling) => Some(raised.min(ceiling)),
            None if raised >= 2.0 * self.measured_at_throttle => None,
            None => Some(raised),
        };
        if self.rate == configured {
            self.last_throttle = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_configured_rate_spaces_the_sends() {
        let limit = RateLimit::new(Some(10.0));
        let start = Instant::now();
        for _ in 0..21 {
            limit.acquire().await;
        }
        // The first goes at once, then one every 100 ms.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_halves_the_rate_and_quiet_seconds_win_it_back() {
        let limit = RateLimit::new(Some(100.0));
        limit.acquire().await;
        limit.throttled();
        limit.throttled();
        assert_eq!(
            limit.current_rate(),
            Some(100.0),
            "two throttles alone only pause their sends"
        );
        limit.throttled();
        assert_eq!(limit.current_rate(), Some(50.0));
        // More reports of the same throttle do not halve again.
        limit.throttled();
        assert_eq!(limit.current_rate(), Some(50.0));
        tokio::time::advance(Duration::from_millis(1100)).await;
        limit.acquire().await;
        assert_eq!(limit.current_rate(), Some(62.5));
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(1001)).await;
            limit.acquire().await;
        }
        assert_eq!(
            limit.current_rate(),
            Some(100.0),
            "never above the configured ceiling"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_channel_starts_from_half_the_measured_rate() {
        let limit = RateLimit::new(None);
        for _ in 0..40 {
            limit.acquire().await;
        }
        assert_eq!(limit.current_rate(), None);
        for _ in 0..7 {
            limit.throttled();
        }
        assert_eq!(
            limit.current_rate(),
            None,
            "7 throttles in 40 sends are under a fifth"
        );
        limit.throttled();
        assert_eq!(limit.current_rate(), Some(20.0));
        let start = Instant::now();
        for _ in 0..21 {
            limit.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Each quiet second adds a quarter: 20, 25, 31.3, 39.1, 48.8, then 61, 76.3, and past
        // twice the measured 40 it is unlimited again.
        for _ in 0..4 {
            tokio::time::advance(Duration::from_millis(1001)).await;
            limit.acquire().await;
        }
        assert!(
            limit.current_rate().is_some_and(|r| r > 39.0),
            "{:?}",
            limit.current_rate()
        );
        for _ in 0..3 {
            tokio::time::advance(Duration::from_millis(1001)).await;
            limit.acquire().await;
        }
        assert_eq!(limit.current_rate(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_means_no_wait() {
        let limit = RateLimit::new(None);
        let start = Instant::now();
        for _ in 0..1000 {
            limit.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
