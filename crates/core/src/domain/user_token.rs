//! The token a product's backend mints for one of its users, so that user's browser can read
//! and change that user's inbox and nothing else. A JWT (HS256) under a key derived from the
//! deployment's signing key; it is not an API key and an API key is not one.

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::UserId;

/// Keeps these tokens' key apart from anything else signed with the deployment's key.
const KEY_CONTEXT: &[u8] = b"notify user tokens v1";
/// Only tokens minted for the inbox are taken by it.
const AUDIENCE: &str = "notify:inbox";

/// The longest a token may live, and the default.
pub const MAX_TTL_SECONDS: i64 = 30 * 24 * 3600;
pub const DEFAULT_TTL_SECONDS: i64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserToken {
    pub user_id: UserId,
    pub expires_at: Timestamp,
    /// The user's token generation when it was minted: bumping it (a revoke, the user's
    /// deletion) ends every token of an earlier one.
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUserToken {
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token was revoked")]
    Revoked,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    /// Absent in the tokens minted before generations existed: generation 0.
    #[serde(default, rename = "gen")]
    generation: u64,
}

impl UserToken {
    pub fn sign(&self, deployment_key: &[u8], now: Timestamp) -> String {
        let claims = Claims {
            sub: self.user_id.as_str().to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now.as_second(),
            exp: self.expires_at.as_second(),
            generation: self.generation,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&token_key(deployment_key)),
        )
        .expect("HS256 signs any claims")
    }

    /// The token's user, if this deployment signed it for the inbox and it has not expired
    /// at `now` (the service's clock, not the machine's).
    pub fn verify(
        token: &str,
        deployment_key: &[u8],
        now: Timestamp,
    ) -> Result<Self, BadUserToken> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["sub", "aud", "exp"]);
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(&token_key(deployment_key)),
            &validation,
        )
        .map_err(|_| BadUserToken::Invalid)?;
        let user_id = UserId::parse(&data.claims.sub).map_err(|_| BadUserToken::Invalid)?;
        let expires_at =
            Timestamp::from_second(data.claims.exp).map_err(|_| BadUserToken::Invalid)?;
        if expires_at <= now {
            return Err(BadUserToken::Expired);
        }
        Ok(Self {
            user_id,
            expires_at,
            generation: data.claims.generation,
        })
    }
}

fn token_key(deployment_key: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(deployment_key).expect("HMAC takes any key length");
    mac.update(KEY_CONTEXT);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_token_is_its_users_until_it_expires() {
        let token = UserToken {
            user_id: UserId::parse("ada").unwrap(),
            expires_at: at(2_000),
            generation: 3,
        };
        let jwt = token.sign(b"key", at(1_000));
        assert_eq!(UserToken::verify(&jwt, b"key", at(1_999)), Ok(token));
        assert_eq!(
            UserToken::verify(&jwt, b"key", at(2_000)),
            Err(BadUserToken::Expired)
        );
        assert_eq!(
            UserToken::verify(&jwt, b"other", at(1_500)),
            Err(BadUserToken::Invalid)
        );
        let mut altered = jwt.clone().into_bytes();
        let i = jwt.find('.').unwrap() + 3;
        altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            UserToken::verify(std::str::from_utf8(&altered).unwrap(), b"key", at(1_500)),
            Err(BadUserToken::Invalid)
        );
        assert_eq!(
            UserToken::verify("nk_live_not_a_jwt", b"key", at(1_500)),
            Err(BadUserToken::Invalid)
        );
    }
}
