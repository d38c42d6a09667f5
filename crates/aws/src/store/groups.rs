//! `GroupStore` on DynamoDB: a group item and one item per membership, the memberships spread
//! over `MEMBER_SEGMENTS` partition keys by user.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, WriteRequest};

use notify_core::domain::group::Group;
use notify_core::domain::{GroupId, UserId};
use notify_core::ports::{GroupStore, Page, StoreError};

use super::item::{Item, ItemExt, decode_cursor, encode_cursor, number, read_group, string};
use super::keys::{MEMBER_SEGMENTS, group_pk, key, member_segment_pk, membership_key};
use super::{DynamoStore, WRITE_CONCURRENCY, build_err, err, is_condition_failure};

impl DynamoStore {
    /// Subscribes or unsubscribes each user, several at once; returns how many changed. The
    /// group's `member_count` moves once per call, not once per member: it is one item, and a
    /// list of millions grows faster than one key takes writes. Not a transaction: the count
    /// is for display, and a crash before its write leaves it off by the call's changes.
    pub(super) async fn change_members(
        &self,
        id: &GroupId,
        users: &[UserId],
        subscribe: bool,
    ) -> Result<u64, StoreError> {
        let mut changed = 0;
        let mut failed = None;
        for chunk in users.chunks(WRITE_CONCURRENCY) {
            let mut writes = Vec::with_capacity(chunk.len());
            for u in chunk {
                writes.push(async move {
                    if subscribe {
                        self.put_membership(id, u).await
                    } else {
                        self.delete_membership(id, u).await
                    }
                });
            }
            match futures::future::try_join_all(writes).await {
                Ok(done) => changed += done.into_iter().filter(|c| *c).count() as i64,
                Err(e) => {
                    // The rounds before this one are counted still.
                    failed = Some(e);
                    break;
                }
            }
        }
        if changed > 0 {
            self.add_to_member_count(id, if subscribe { changed } else { -changed })
                .await?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(changed as u64),
        }
    }

    /// Removes one membership, then counts it off the group.
    pub(super) async fn remove_member(
        &self,
        group: &GroupId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let removed = self.delete_membership(group, user).await?;
        if removed {
            self.add_to_member_count(group, -1).await?;
        }
        Ok(removed)
    }

    async fn delete_membership(&self, group: &GroupId, user: &UserId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(membership_key(group, user)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(err)?;
        Ok(out.attributes.is_some())
    }

    async fn put_membership(&self, group: &GroupId, user: &UserId) -> Result<bool, StoreError> {
        let mut item = membership_key(group, user);
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
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    /// A page of members from `segment` on, segment by segment, each in sort key order; the
    /// raw items, and whether the segments hold more after them.
    async fn members_from(
        &self,
        id: &GroupId,
        mut segment: u32,
        mut start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Item>, bool), StoreError> {
        let mut items = Vec::new();
        while segment < MEMBER_SEGMENTS {
            let (page, next) = self
                .query_prefix(
                    member_segment_pk(id, segment),
                    "M#",
                    limit - items.len(),
                    start.take().as_deref(),
                )
                .await?;
            items.extend(page);
            if next.is_some() {
                return Ok((items, true));
            }
            segment += 1;
            if items.len() == limit {
                return Ok((items, segment < MEMBER_SEGMENTS));
            }
        }
        Ok((items, false))
    }

    /// The segment a `list_members` cursor (the key of the last member listed) is in.
    fn cursor_segment(id: &GroupId, cursor: &str) -> Result<u32, StoreError> {
        let start = decode_cursor(cursor, &["PK", "SK"])?;
        start
            .string("PK")
            .and_then(|pk| pk.strip_prefix(&format!("G#{id}#")))
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|s| *s < MEMBER_SEGMENTS)
            .ok_or(StoreError::BadCursor)
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
            .set_key(Some(key(group_pk(group), "G")))
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
            .set_key(Some(key(group_pk(id), "G")))
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
        let item = self.get(group_pk(id), "G").await?;
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
            .set_key(Some(key(group_pk(id), "G")))
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
                    .set_key(Some(membership_key(id, u)))
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
            .set_key(Some(key(group_pk(id), "G")))
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
        let segment = cursor.map(|c| Self::cursor_segment(id, c)).transpose()?;
        let (items, more) = self
            .members_from(
                id,
                segment.unwrap_or(0),
                cursor.map(str::to_owned),
                limit.max(1),
            )
            .await?;
        // The last member's key: the next page starts after it, in its segment or the next.
        let next_cursor = more
            .then(|| items.last().map(|i| encode_cursor(i, &["PK", "SK"])))
            .flatten();
        Ok(Page {
            items: read_members(&items)?,
            next_cursor,
        })
    }

    fn member_segments(&self) -> u32 {
        MEMBER_SEGMENTS
    }

    async fn list_segment(
        &self,
        id: &GroupId,
        segment: u32,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError> {
        if segment >= MEMBER_SEGMENTS {
            return Err(StoreError::BadCursor);
        }
        let (items, next_cursor) = self
            .query_prefix(member_segment_pk(id, segment), "M#", limit, cursor)
            .await?;
        Ok(Page {
            items: read_members(&items)?,
            next_cursor,
        })
    }
}

fn read_members(items: &[Item]) -> Result<Vec<UserId>, StoreError> {
    items
        .iter()
        .map(|i| {
            UserId::parse(i.string("user_id").unwrap_or_default())
                .map_err(|e| StoreError::Corrupt(e.0))
        })
        .collect()
}
