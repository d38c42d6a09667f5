use jiff::{SignedDuration, Timestamp};

use super::ParseError;

/// How far ahead a send may be reserved.
pub const MAX_SCHEDULE_AHEAD: SignedDuration = SignedDuration::from_hours(365 * 24);
/// A `send_at` up to this far in the past means "now" (clock skew, a retried request); older
/// than that it is almost surely a bug in the caller (wrong year, epoch 0) and is refused.
pub const PAST_GRACE: SignedDuration = SignedDuration::from_hours(24);

/// When to send, decided against the clock at the moment of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAt {
    Now,
    At(Timestamp),
}

impl SendAt {
    /// `raw` must be RFC 3339 with an offset (`Z` or `+09:00`).
    pub fn parse(raw: &str, now: Timestamp) -> Result<Self, ParseError> {
        let at: Timestamp = raw.parse().map_err(|_| {
            ParseError::new(
                "must be an RFC 3339 time with an offset, e.g. 2026-12-01T09:00:00+09:00",
            )
        })?;
        Self::decide(at, now)
    }

    pub fn decide(at: Timestamp, now: Timestamp) -> Result<Self, ParseError> {
        if at
            > now
                .saturating_add(MAX_SCHEDULE_AHEAD)
                .unwrap_or(Timestamp::MAX)
        {
            return Err(ParseError::new("must be at most 365 days ahead"));
        }
        if at < now.saturating_sub(PAST_GRACE).unwrap_or(Timestamp::MIN) {
            return Err(ParseError::new("is more than 24 hours in the past"));
        }
        Ok(if at > now { Self::At(at) } else { Self::Now })
    }

    pub fn timestamp(self, now: Timestamp) -> Timestamp {
        match self {
            Self::Now => now,
            Self::At(at) => at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-21T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn decides_now_or_later() {
        assert_eq!(
            SendAt::parse("2026-11-21T09:00:30+09:00", now()).unwrap(),
            SendAt::At("2026-11-21T00:00:30Z".parse().unwrap())
        );
        assert_eq!(
            SendAt::parse("2026-11-20T23:59:00Z", now()).unwrap(),
            SendAt::Now
        );
        assert_eq!(
            SendAt::parse("2026-11-21T00:00:00Z", now()).unwrap(),
            SendAt::Now
        );
    }

    #[test]
    fn refuses_bad_times() {
        for bad in [
            "",
            "tomorrow",
            "2026-11-21T10:00:00",
            "2026-11-21",
            "2026-13-01T00:00:00Z",
            "2028-01-01T00:00:00Z",
            "2001-01-01T00:00:00Z",
        ] {
            assert!(
                SendAt::parse(bad, now()).is_err(),
                "{bad} should be refused"
            );
        }
    }
}
