//! The token of a one-click unsubscribe link (RFC 8058): which user leaves which category,
//! signed with a key the deployment owns, so a link cannot be guessed, forged or altered. It
//! is not an API key: it can do one thing, for one user.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{CategoryId, UserId};

/// Keeps tokens of this scheme apart from anything else signed with the same key.
const CONTEXT: &[u8] = b"notify unsubscribe v1\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeToken {
    pub user_id: UserId,
    pub category: CategoryId,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the unsubscribe link is not valid")]
pub struct BadToken;

impl UnsubscribeToken {
    /// `<payload>.<signature>`, both base64url: URL-safe as a path segment.
    pub fn sign(&self, key: &[u8]) -> String {
        let payload = format!("{}\n{}", self.user_id, self.category);
        let signature = mac(key, payload.as_bytes()).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// The token's user and category, if `key` signed exactly this token (compared in
    /// constant time).
    pub fn verify(token: &str, key: &[u8]) -> Result<Self, BadToken> {
        let (payload, signature) = token.split_once('.').ok_or(BadToken)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| BadToken)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| BadToken)?;
        mac(key, &payload)
            .verify_slice(&signature)
            .map_err(|_| BadToken)?;
        let payload = String::from_utf8(payload).map_err(|_| BadToken)?;
        let (user, category) = payload.split_once('\n').ok_or(BadToken)?;
        Ok(Self {
            user_id: UserId::parse(user).map_err(|_| BadToken)?,
            category: CategoryId::parse(category).map_err(|_| BadToken)?,
        })
    }
}

fn mac(key: &[u8], payload: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(CONTEXT);
    mac.update(payload);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> UnsubscribeToken {
        UnsubscribeToken {
            user_id: UserId::parse("u-1").unwrap(),
            category: CategoryId::parse("newsletter").unwrap(),
        }
    }

    #[test]
    fn a_signed_token_verifies_with_its_key_only() {
        let signed = token().sign(b"key one");
        assert_eq!(UnsubscribeToken::verify(&signed, b"key one"), Ok(token()));
        assert_eq!(UnsubscribeToken::verify(&signed, b"key two"), Err(BadToken));
    }

    #[test]
    fn an_altered_or_malformed_token_is_refused() {
        let signed = token().sign(b"k");
        let (payload, signature) = signed.split_once('.').unwrap();
        let other = URL_SAFE_NO_PAD.encode("u-2\nnewsletter");
        for bad in [
            format!("{other}.{signature}"),
            format!("{payload}.{}", &signature[1..]),
            payload.to_owned(),
            String::new(),
            ".".into(),
            "%%%.%%%".into(),
        ] {
            assert_eq!(UnsubscribeToken::verify(&bad, b"k"), Err(BadToken), "{bad}");
        }
    }
}
