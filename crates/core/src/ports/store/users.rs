//! Users: the profiles that recipients are resolved from.

use super::StoreError;
use crate::domain::UserId;
use crate::domain::user::User;
use async_trait::async_trait;

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn put_user(&self, user: &User) -> Result<(), StoreError>;
    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError>;
    /// The users among `ids` that exist (any order); used to resolve a page of group members.
    async fn get_users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError>;
    /// Also removes the user from every group.
    async fn delete_user(&self, id: &UserId) -> Result<bool, StoreError>;
    /// The user's token generation (0 until first bumped): a user token carries the one it
    /// was minted in, and one of an earlier generation is refused. It outlives the user, so
    /// that a user made again under the same id does not revive the tokens of the one deleted.
    async fn token_generation(&self, id: &UserId) -> Result<u64, StoreError>;
    /// Ends every token minted so far for the user: the generation goes up by one.
    async fn bump_token_generation(&self, id: &UserId) -> Result<u64, StoreError>;
}
