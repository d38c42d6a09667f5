//! `GroupStore` on DynamoDB: a group item and one item per membership.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, WriteRequest};

use notify_core::domain::group::Group;
use notify_core::domain::{GroupId, UserId};
use notify_core::ports::{GroupStore, Page, StoreError};

use super::item::{ItemExt, number, read_group, string};
use super::keys::key;
use super::{DynamoStore, WRITE_CONCURRENCY, build_err, err, is_condition_failure};

impl DynamoStore {
    /// Subscribes or unsubscribes each user, several at once; returns how many changed.
    pub(super) async fn change_members(
        &self,
        id: &GroupId,
        users: &[UserId],
        subscribe: bool,
    ) -> Result<u64, StoreError> {
        let mut changed = 0;
        for chunk in users.chunks(WRITE_CONCURRENCY) {
            let mut writes = Vec::with_capacity(chunk.len());
            for u in chunk {
                writes.push(async move {
                    if subscribe {
                        self.add_member(id, u).await
                    } else {
                        self.remove_member(id, u).await
                    }
                });
            }
            changed += futures::future::try_join_all(writes)
                .await?
                .into_iter()
                .filter(|c| *c)
                .count() as u64;
        }
        Ok(changed)
    }

    /// Removes one membership, then counts it off the group. Not a transaction: `member_count`
    /// is for display, a crash between the two writes leaves it off by one, and a transaction
    /// would double the cost of every (un)subscribe.
    pub(super) async fn remove_member(
        &self,
        group: &GroupId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("G#{group}"), &format!("M#{user}"))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(err)?;
        if out.attributes.is_none() {
            return Ok(false);
        }
        self.add_to_member_count(group, -1).await?;
        Ok(true)
    }

    pub(super) async fn add_member(
        &self,
        group: &GroupId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let mut item = key(format!("G#{group}"), &format!("M#{user}"));
        item.insert("user_id".into(), string(user.as_str()));
        item.insert("GSI1PK".into(), string(format!("UG#{user}")));
        item.insert("GSI1SK".into(), string(format!("G#{group}")));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => {
                self.add_to_member_count(group, 1).await?;
                Ok(true)
            }
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    pub(super) async fn add_to_member_count(
        &self,
        group: &GroupId,
        by: i64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("G#{group}"), "G")))
            .update_expression("ADD member_count :by")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":by", number(by))
            .send()
            .await;
        match result {
            // The group was deleted meanwhile: nothing to count.
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }
}

#[async_trait]
impl GroupStore for DynamoStore {
    async fn put_group(&self, id: &GroupId, name: &str) -> Result<Group, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("G#{id}"), "G")))
            .update_expression("SET #name = :name ADD member_count :zero")
            .condition_expression("attribute_not_exists(deleting)")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":name", string(name))
            .expression_attribute_values(":zero", number(0))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(read_group(id, &out.attributes.unwrap_or_default())),
            Err(e) if is_condition_failure(&e) => Err(StoreError::Conflict(
                "the group is still being deleted; create it again in a moment".into(),
            )),
            Err(e) => Err(err(e)),
        }
    }

    async fn get_group(&self, id: &GroupId) -> Result<Option<Group>, StoreError> {
        let item = self.get(format!("G#{id}"), "G").await?;
        // A group being deleted (its memberships purged in the background) is gone already.
        Ok(item
            .filter(|item| !item.contains_key("deleting"))
            .map(|item| read_group(id, &item)))
    }

    /// Marks the group deleted (readers see it gone at once); `purge_group`, run by a chore,
    /// removes its memberships and then the item. One write per member would not fit in an
    /// API call for a big group.
    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("G#{id}"), "G")))
            .update_expression("SET deleting = :t")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    async fn purge_group(&self, id: &GroupId, max: usize) -> Result<bool, StoreError> {
        // A notification already fanned out keeps its rows: only memberships go.
        let page = self.list_members(id, max.clamp(1, 1000), None).await?;
        let deletes = page
            .items
            .iter()
            .map(|u| {
                aws_sdk_dynamodb::types::DeleteRequest::builder()
                    .set_key(Some(key(format!("G#{id}"), &format!("M#{u}"))))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
            })
            .collect::<Result<_, _>>()
            .map_err(build_err)?;
        self.batch_write(deletes).await?;
        if page.next_cursor.is_some() {
            return Ok(false);
        }
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("G#{id}"), "G")))
            .condition_expression("attribute_exists(deleting)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // Created again meanwhile, or gone already.
            Err(e) if is_condition_failure(&e) => Ok(true),
            Err(e) => Err(err(e)),
        }
    }

    async fn add_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        self.change_members(id, users, true).await
    }

    async fn remove_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        self.change_members(id, users, false).await
    }

    async fn list_members(
        &self,
        id: &GroupId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError> {
        let (items, next_cursor) = self
            .query_prefix(format!("G#{id}"), "M#", limit, cursor)
            .await?;
        let members = items
            .iter()
            .map(|i| {
                UserId::parse(i.string("user_id").unwrap_or_default())
                    .map_err(|e| StoreError::Corrupt(e.0))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items: members,
            next_cursor,
        })
    }
}
