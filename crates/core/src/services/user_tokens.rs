//! Minting and checking the tokens that let a user's browser into that user's inbox.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::OnceCell;

use super::ServiceError;
use crate::domain::UserId;
use crate::domain::user_token::{BadUserToken, UserToken};
use crate::ports::{Clock, SigningKey};

pub struct UserTokens {
    key: Arc<dyn SigningKey>,
    clock: Arc<dyn Clock>,
    /// Read once per process: on AWS each read is a call to Secrets Manager.
    cached: OnceCell<Vec<u8>>,
}

impl UserTokens {
    pub fn new(key: Arc<dyn SigningKey>, clock: Arc<dyn Clock>) -> Self {
        Self {
            key,
            clock,
            cached: OnceCell::new(),
        }
    }

    async fn key(&self) -> Result<&[u8], ServiceError> {
        self.cached
            .get_or_try_init(|| self.key.key())
            .await
            .map(Vec::as_slice)
            .map_err(ServiceError::SigningKey)
    }

    /// A signed token for `user`, valid for `ttl`, and when it expires.
    pub async fn issue(
        &self,
        user: &UserId,
        ttl: SignedDuration,
    ) -> Result<(String, Timestamp), ServiceError> {
        let now = self.clock.now();
        let token = UserToken {
            user_id: user.clone(),
            expires_at: now.saturating_add(ttl).unwrap_or(Timestamp::MAX),
        };
        Ok((token.sign(self.key().await?, now), token.expires_at))
    }

    /// The user a presented token stands for.
    pub async fn verify(
        &self,
        presented: &str,
    ) -> Result<Result<UserToken, BadUserToken>, ServiceError> {
        Ok(UserToken::verify(
            presented,
            self.key().await?,
            self.clock.now(),
        ))
    }
}
