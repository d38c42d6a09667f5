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
}
