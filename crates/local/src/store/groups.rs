//! `GroupStore` on SQLite: groups and their memberships.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use notify_core::domain::group::Group;
use notify_core::domain::{GroupId, UserId};
use notify_core::ports::{GroupStore, Page, StoreError};

use crate::db::{Cached, db_err};

use super::SqliteStore;
use super::row::{decode_cursor, encode_cursor};

#[async_trait]
impl GroupStore for SqliteStore {
    async fn put_group(&self, id: &GroupId, name: &str) -> Result<Group, StoreError> {
        let (gid, name) = (id.clone(), name.to_owned());
        self.db
            .call(move |c| {
                let count: i64 = c
                    .cached_row(
                        "INSERT INTO groups (id, name) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET name = excluded.name RETURNING member_count",
                        params![gid.as_str(), name],
                        |r| r.get(0),
                    )
                    .map_err(db_err)?;
                Ok(Group { id: gid, name, member_count: count as u64 })
            })
            .await
    }

    async fn get_group(&self, id: &GroupId) -> Result<Option<Group>, StoreError> {
        let gid = id.clone();
        self.db
            .call(move |c| {
                c.cached_row(
                    "SELECT name, member_count FROM groups WHERE id = ?1",
                    params![gid.as_str()],
                    |r| {
                        Ok(Group {
                            id: gid.clone(),
                            name: r.get(0)?,
                            member_count: r.get::<_, i64>(1)? as u64,
                        })
                    },
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                tx.cached_execute("DELETE FROM memberships WHERE group_id = ?1", params![id])
                    .map_err(db_err)?;
                let deleted = tx
                    .cached_execute("DELETE FROM groups WHERE id = ?1", params![id])
                    .map_err(db_err)?
                    > 0;
                tx.commit().map_err(db_err)?;
                Ok(deleted)
            })
            .await
    }

    async fn purge_group(&self, _id: &GroupId, _max: usize) -> Result<bool, StoreError> {
        // SQLite removed the memberships with the group, in one transaction.
        Ok(true)
    }

    async fn add_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        let id = id.as_str().to_owned();
        let users: Vec<String> = users.iter().map(|u| u.as_str().to_owned()).collect();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                let mut added = 0;
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO memberships (group_id, user_id) VALUES (?1, ?2)",
                        )
                        .map_err(db_err)?;
                    for u in &users {
                        added += stmt.execute(params![id, u]).map_err(db_err)? as i64;
                    }
                }
                tx.cached_execute(
                    "UPDATE groups SET member_count = member_count + ?1 WHERE id = ?2",
                    params![added, id],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(added as u64)
            })
            .await
    }

    async fn remove_members(&self, id: &GroupId, users: &[UserId]) -> Result<u64, StoreError> {
        let id = id.as_str().to_owned();
        let users: Vec<String> = users.iter().map(|u| u.as_str().to_owned()).collect();
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                let mut removed = 0;
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "DELETE FROM memberships WHERE group_id = ?1 AND user_id = ?2",
                        )
                        .map_err(db_err)?;
                    for u in &users {
                        removed += stmt.execute(params![id, u]).map_err(db_err)? as i64;
                    }
                }
                tx.cached_execute(
                    "UPDATE groups SET member_count = member_count - ?1 WHERE id = ?2",
                    params![removed, id],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(removed as u64)
            })
            .await
    }

    async fn list_members(
        &self,
        id: &GroupId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError> {
        let after = cursor
            .map(|c| decode_cursor(c, 1).map(|mut v| v.remove(0)))
            .transpose()?;
        let id = id.as_str().to_owned();
        let rows: Vec<String> = self
            .db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT user_id FROM memberships WHERE group_id = ?1 AND (?2 IS NULL OR user_id > ?2) ORDER BY user_id LIMIT ?3",
                    )
                    .map_err(db_err)?;
                let rows = stmt.query_map(params![id, after, limit as i64 + 1], |r| r.get(0)).map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
            })
            .await?;
        let mut items = rows
            .iter()
            .map(|u| UserId::parse(u).map_err(|e| StoreError::Corrupt(e.0)))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|u| encode_cursor(&[u.as_str()]))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// One segment: a single writer has nothing to gain from reading a group in parts.
    fn member_segments(&self) -> u32 {
        1
    }

    async fn list_segment(
        &self,
        id: &GroupId,
        segment: u32,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<UserId>, StoreError> {
        match segment {
            0 => self.list_members(id, limit, cursor).await,
            _ => Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            }),
        }
    }
}
