use std::fmt;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// An id chosen by the client: 1..128 chars of `[A-Za-z0-9._:@-]`.
fn parse_client_id(raw: &str) -> Result<String, ParseError> {
    if raw.is_empty() || raw.len() > 128 {
        return Err(ParseError::new("must be 1 to 128 characters"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
    {
        return Err(ParseError::new("may contain only A-Z a-z 0-9 . _ : @ -"));
    }
    Ok(raw.to_owned())
}

/// Common behaviour of the ids that clients choose.
pub trait ClientId: Sized {
    fn parse(raw: &str) -> Result<Self, ParseError>;
    fn as_str(&self) -> &str;
}

/// What every id is as a string: parsed from one (serde too), written as one.
macro_rules! string_id {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(raw: String) -> Result<Self, ParseError> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

macro_rules! client_id {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl ClientId for $name {
            fn parse(raw: &str) -> Result<Self, ParseError> {
                parse_client_id(raw).map(Self)
            }
            fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                <Self as ClientId>::parse(raw)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        string_id!($name);
    };
}

client_id!(UserId);
client_id!(GroupId);
client_id!(CategoryId);
client_id!(TemplateId);

/// Ids the service makes: a prefix and a ULID, so that they sort by creation time.
macro_rules! made_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            const PREFIX: &'static str = $prefix;

            pub fn generate(at: jiff::Timestamp) -> Self {
                let ms = u64::try_from(at.as_millisecond()).unwrap_or(0);
                let ulid = ulid::Ulid::from_parts(ms, random_part(ms));
                Self(format!(
                    "{}{}",
                    Self::PREFIX,
                    ulid.to_string().to_ascii_lowercase()
                ))
            }

            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                let body = raw
                    .strip_prefix(Self::PREFIX)
                    .ok_or_else(|| ParseError::new(concat!("is not ", $what)))?;
                ulid::Ulid::from_string(body)
                    .map_err(|_| ParseError::new(concat!("is not ", $what)))?;
                Ok(Self(raw.to_ascii_lowercase()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        string_id!($name);
    };
}

made_id!(
    /// A notification: `ntf_` + a ULID.
    NotificationId,
    "ntf_",
    "a notification id"
);
made_id!(
    /// An API key (not its secret): `key_` + a ULID.
    ApiKeyId,
    "key_",
    "an API key id"
);
made_id!(
    /// A webhook endpoint: `whk_` + a ULID.
    WebhookId,
    "whk_",
    "a webhook id"
);
made_id!(
    /// One event sent to webhooks (their `webhook-id` header, the same on every retry):
    /// `msg_` + a ULID, as Standard Webhooks names them.
    EventId,
    "msg_",
    "an event id"
);

/// The random part of the next id made at `ms`. Within one millisecond it is one more than the
/// last one's (the ULID spec's monotonic mode), so that the ids one process makes in the same
/// millisecond sort in the order it made them (lists are newest first by id); a new millisecond
/// starts from a fresh draw. Ids of different processes in one millisecond still have no order.
fn random_part(ms: u64) -> u128 {
    use std::sync::{Mutex, PoisonError};
    const MAX: u128 = (1 << 80) - 1;
    static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    let next = match *last {
        (at, random) if at == ms && random < MAX => random + 1,
        _ => rand_u128(),
    };
    *last = (ms, next);
    next
}

fn rand_u128() -> u128 {
    // ulid's own generator draws from `rand`; a ULID only needs uniqueness, so the std hasher's
    // per-process random keys mixed with a counter are enough and keep the dependency list short.
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let state = RandomState::new();
    let mut a = state.build_hasher();
    a.write_u64(n);
    let mut b = state.build_hasher();
    b.write_u64(n ^ 0x9e37_79b9_7f4a_7c15);
    ((u128::from(a.finish()) << 64) | u128::from(b.finish())) & ((1u128 << 80) - 1)
}

/// The `Idempotency-Key` header: 1..255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > 255 {
            return Err(ParseError::new("must be 1 to 255 characters"));
        }
        if !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ParseError::new("may contain only visible ASCII characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids() {
        assert!(UserId::parse("u-1.a_b:c@d").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"a".repeat(129)).is_err());
        assert!(UserId::parse(&"a".repeat(128)).is_ok());
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse("a/b").is_err());
        assert!(UserId::parse("é").is_err());
    }

    #[test]
    fn notification_ids_sort_by_time_and_round_trip() {
        let a = NotificationId::generate(jiff::Timestamp::from_millisecond(1_000).unwrap());
        let b = NotificationId::generate(jiff::Timestamp::from_millisecond(2_000).unwrap());
        assert!(a < b);
        assert!(a.as_str().starts_with("ntf_"));
        assert_eq!(NotificationId::parse(a.as_str()).unwrap(), a);
        assert!(NotificationId::parse("ntf_nope").is_err());
        assert!(NotificationId::parse("abc").is_err());
        let c = NotificationId::generate(jiff::Timestamp::from_millisecond(1_000).unwrap());
        assert_ne!(a, c);
    }

    #[test]
    fn ids_made_in_one_millisecond_sort_in_the_order_they_were_made() {
        let at = jiff::Timestamp::from_millisecond(1_700_000_000_000).unwrap();
        let ids: Vec<_> = (0..1000).map(|_| NotificationId::generate(at)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "not in order: {ids:?}");
        let later = NotificationId::generate(
            at.checked_add(jiff::SignedDuration::from_millis(1))
                .unwrap(),
        );
        assert!(ids.last().unwrap() < &later);
    }

    #[test]
    fn idempotency_keys() {
        assert!(IdempotencyKey::parse("k-1").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("a b").is_err());
    }
}
