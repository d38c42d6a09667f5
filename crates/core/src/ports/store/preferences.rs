//! Users' preferences: which categories they receive on which channel.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::preferences::Preferences;
use crate::domain::{CategoryId, Channel, UserId};

#[async_trait]
pub trait PreferenceStore: Send + Sync {
    /// Everything the user has set (empty: everything on).
    async fn get_preferences(&self, user: &UserId) -> Result<Preferences, StoreError>;
    /// Replaces what the user has set.
    async fn put_preferences(
        &self,
        user: &UserId,
        preferences: &Preferences,
    ) -> Result<(), StoreError>;
    /// Sets one (category, channel), leaving the rest: an unsubscribe, which must not undo a
    /// preference changed at the same moment. Answers whether it changed anything (a channel
    /// never set is on), in the same write: a link clicked fifty times emits one event.
    async fn set_preference(
        &self,
        user: &UserId,
        category: &CategoryId,
        channel: Channel,
        on: bool,
    ) -> Result<bool, StoreError>;
    /// Which of `users` turned `category` off, on which channel: one lookup for a whole
    /// dispatch job.
    async fn find_opt_outs(
        &self,
        category: &CategoryId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, Channel)>, StoreError>;
}
