//! API keys: many per deployment, each named, stored only as the SHA-256 of its secret. The
//! secret is shown once, when the key is made; after that only its prefix identifies it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use super::ApiKeyId;

/// The SHA-256 of a secret, in hex: what is stored and looked up.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A stored key: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    /// The secret's first characters, to tell keys apart (`nk_3f9a1c`).
    pub prefix: String,
    /// `secret_hash` of the secret.
    pub hash: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A new key and its secret, which exists only in this answer.
pub struct NewApiKey {
    pub key: ApiKey,
    pub secret: String,
}

impl NewApiKey {
    /// 32 random bytes, hex, behind `nk_` (the form of the key `notifyd` generates).
    pub fn generate(name: String, now: Timestamp) -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        let secret = format!("nk_{}", hex::encode(bytes));
        let key = ApiKey {
            id: ApiKeyId::generate(now),
            name,
            prefix: secret[..9].to_owned(),
            hash: secret_hash(&secret),
            created_at: now,
            last_used_at: None,
        };
        Self { key, secret }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_stored_as_its_hash_only() {
        let new = NewApiKey::generate("ci".into(), Timestamp::now());
        assert!(new.secret.starts_with("nk_") && new.secret.len() == 67);
        assert_eq!(new.key.hash, secret_hash(&new.secret));
        assert!(!new.key.hash.contains(&new.secret[3..]));
        assert!(new.secret.starts_with(&new.key.prefix));
        assert_eq!(ApiKeyId::parse(new.key.id.as_str()).unwrap(), new.key.id);
        assert!(ApiKeyId::parse("key_nope").is_err());
        let other = NewApiKey::generate("ci".into(), Timestamp::now());
        assert_ne!(other.secret, new.secret);
    }
}
