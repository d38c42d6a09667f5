//! How long a send's records are kept: its notification, deliveries and counts, and the inbox
//! items read or archived. DynamoDB's TTL deletes them on AWS; `notifyd` prunes SQLite.

use jiff::{SignedDuration, Timestamp};

/// Days, 1 to 3,650; 30 unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    days: u32,
}

impl Retention {
    pub const DEFAULT_DAYS: u32 = 30;
    const MAX_DAYS: u32 = 3650;

    pub fn days(days: u32) -> Result<Self, String> {
        if (1..=Self::MAX_DAYS).contains(&days) {
            Ok(Self { days })
        } else {
            Err(format!(
                "must be a whole number of days from 1 to {}",
                Self::MAX_DAYS
            ))
        }
    }

    pub fn as_duration(self) -> SignedDuration {
        SignedDuration::from_hours(i64::from(self.days) * 24)
    }

    /// When a record last changed at `at` expires.
    pub fn expiry(self, at: Timestamp) -> Timestamp {
        at.saturating_add(self.as_duration()).unwrap_or(at)
    }

    /// Records last changed before this are past their retention at `now`.
    pub fn cutoff(self, now: Timestamp) -> Timestamp {
        now.saturating_sub(self.as_duration()).unwrap_or(now)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            days: Self::DEFAULT_DAYS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_bounded_and_whole_days_of_24_hours() {
        assert!(Retention::days(0).is_err());
        assert!(Retention::days(3651).is_err());
        let r = Retention::days(30).unwrap();
        let t: Timestamp = "2026-11-23T00:00:00Z".parse().unwrap();
        assert_eq!(r.expiry(t).to_string(), "2026-12-23T00:00:00Z");
        assert_eq!(r.cutoff(t).to_string(), "2026-10-24T00:00:00Z");
        assert_eq!(Retention::default(), r);
    }
}
