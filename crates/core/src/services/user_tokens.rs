//! Minting and checking the tokens that let a user's browser into that user's inbox.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::OnceCell;

use super::ServiceError;
use crate::domain::UserId;
use crate::domain::user_token::{BadUserToken, UserToken};
use crate::ports::{Clock, SigningKey, UserStore};

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

    /// A signed token for `user`, valid for `ttl` (or until revoked), and when it expires.
    pub async fn issue(
        &self,
        store: &dyn UserStore,
        user: &UserId,
        ttl: SignedDuration,
    ) -> Result<(String, Timestamp), ServiceError> {
        let now = self.clock.now();
        let token = UserToken {
            user_id: user.clone(),
            expires_at: now.saturating_add(ttl).unwrap_or(Timestamp::MAX),
            generation: store.token_generation(user).await?,
        };
        Ok((token.sign(self.key().await?, now), token.expires_at))
    }

    /// The user a presented token stands for, if it is signed, unexpired, and of the user's
    /// current generation (one read of the store: a revoke ends a token at once, everywhere).
    pub async fn verify(
        &self,
        store: &dyn UserStore,
        presented: &str,
    ) -> Result<Result<UserToken, BadUserToken>, ServiceError> {
        let token = match UserToken::verify(presented, self.key().await?, self.clock.now()) {
            Ok(token) => token,
            Err(bad) => return Ok(Err(bad)),
        };
        if store.token_generation(&token.user_id).await? != token.generation {
            return Ok(Err(BadUserToken::Revoked));
        }
        Ok(Ok(token))
    }

    /// Ends every token of `user` minted so far.
    pub async fn revoke(&self, store: &dyn UserStore, user: &UserId) -> Result<(), ServiceError> {
        store.bump_token_generation(user).await?;
        tracing::info!(%user, "user tokens revoked");
        Ok(())
    }
}
