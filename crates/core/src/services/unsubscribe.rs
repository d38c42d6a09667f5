//! One-click unsubscribe (RFC 8058): the links dispatch puts in an email, and what following
//! one does. A link turns one category off on the email channel for one user; it needs no API
//! key, only a token signed with the deployment's key.

use tokio::sync::OnceCell;

use super::ServiceError;
use crate::domain::delivery::Recipient;
use crate::domain::unsubscribe::UnsubscribeToken;
use crate::domain::{CategoryId, Channel, UserId};
use crate::ports::{SigningKey, Store};
use std::sync::Arc;

pub struct UnsubscribeLinks {
    key: Arc<dyn SigningKey>,
    /// Where the API is reached from outside, without a trailing slash.
    public_url: String,
    /// Read once per process: on AWS each read is a call to Secrets Manager.
    cached: OnceCell<Vec<u8>>,
}

impl UnsubscribeLinks {
    pub fn new(key: Arc<dyn SigningKey>, public_url: &str) -> Self {
        Self {
            key,
            public_url: public_url.trim_end_matches('/').to_owned(),
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

    /// The one-click link for `user` and `category`: `<public url>/u/<token>`.
    pub async fn url(&self, user: &UserId, category: &CategoryId) -> Result<String, ServiceError> {
        let token = UnsubscribeToken {
            user_id: user.clone(),
            category: category.clone(),
        }
        .sign(self.key().await?);
        Ok(format!("{}/u/{token}", self.public_url))
    }

    /// The link a delivery's message carries, if it has one: an email, to a user, of a
    /// category users can leave (`optional_category`).
    pub async fn for_delivery(
        &self,
        channel: Channel,
        optional_category: Option<&CategoryId>,
        recipient: &Recipient,
    ) -> Result<Option<String>, ServiceError> {
        match (channel, optional_category, &recipient.user_id) {
            (Channel::Email, Some(category), Some(user)) => {
                self.url(user, category).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The token's user and category, if this deployment signed it.
    pub async fn check(&self, token: &str) -> Result<UnsubscribeToken, ServiceError> {
        UnsubscribeToken::verify(token, self.key().await?)
            .map_err(|e| ServiceError::invalid("token", e.to_string()))
    }

    /// Follows a link: the token's category is off on email for its user, at once. Saying it
    /// twice changes nothing more; the answer says whether this time changed anything.
    pub async fn unsubscribe(
        &self,
        store: &dyn Store,
        token: &str,
    ) -> Result<(UnsubscribeToken, bool), ServiceError> {
        let t = self.check(token).await?;
        let changed = store
            .set_preference(&t.user_id, &t.category, Channel::Email, false)
            .await?;
        if changed {
            tracing::info!(user = %t.user_id, category = %t.category, "unsubscribed by link");
        }
        Ok((t, changed))
    }
}
