//! Groups and their memberships (subscription lists).

use super::{Page, StoreError};
use crate::domain::group::Group;
use crate::domain::{GroupId, UserId};
use async_trait::async_trait;

#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Creates the group or renames it; returns it with its member count.
    async fn put_group(&self, id: &GroupId, name: &str) -> Result<Group, StoreError>;
    async fn get_group(&self, id: &GroupId) -> Result<Option<Group>, StoreError>;
    /// Removes the group at once for every reader (and says whether it existed, or is still
    /// being removed). Its memberships go too, at once, or later by `purge_group` in a store
    /// where removing them all could take long (DynamoDB: one write per member).
    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError>;
    /// Removes up to `max` memberships of a deleted group; once none is left, the last trace
    /// of the group. Says whether it is all gone.
    async fn purge_group(&self, id: &GroupId, max: usize) -> Result<bool, StoreError>;
    /// Subscribes the users (existing memberships are kept); returns how many were new.
    async fn add_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError>;
    /// Unsubscribes the users (absent ones are ignored); returns how many were removed.
    async fn remove_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError>;
    /// A page of members in a stable order, read without loading the group.
    async fn list_members(
        &self,
        id: &GroupId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError>;
    /// Into how many disjoint segments this store splits every group's memberships (by
    /// `member_segment`): a group send is fanned out by one job per segment, at once. One
    /// where there is nothing to gain (a single writer).
    fn member_segments(&self) -> u32;
    /// A page of the members in one segment, in a stable order.
    async fn list_segment(
        &self,
        id: &GroupId,
        segment: u32,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError>;
}
