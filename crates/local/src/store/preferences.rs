//! `CategoryStore` and `PreferenceStore` on SQLite: a row per category, and a row per
//! (user, category, channel) a user has set.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params, params_from_iter};

use notify_core::domain::category::Category;
use notify_core::domain::preferences::Preferences;
use notify_core::domain::{CategoryId, Channel, UserId};
use notify_core::ports::{CategoryStore, PreferenceStore, StoreError};

use crate::db::{Cached, db_err, json_err};

use super::SqliteStore;

/// Under SQLite's limit on a statement's variables, whatever a job's size.
const LOOKUP_CHUNK: usize = 500;

#[async_trait]
impl CategoryStore for SqliteStore {
    async fn put_category(&self, category: &Category) -> Result<(), StoreError> {
        let body = serde_json::to_string(category).map_err(json_err)?;
        let id = category.id.as_str().to_owned();
        self.db
            .call(move |c| {
                c.cached_execute(
                    "INSERT INTO categories (id, body) VALUES (?1, ?2)
                     ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                    params![id, body],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn get_category(&self, id: &CategoryId) -> Result<Option<Category>, StoreError> {
        let id = id.as_str().to_owned();
        let body: Option<String> = self
            .db
            .call(move |c| {
                c.cached_row(
                    "SELECT body FROM categories WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)
            })
            .await?;
        body.as_deref()
            .map(|b| serde_json::from_str(b).map_err(json_err))
            .transpose()
    }

    async fn delete_category(&self, id: &CategoryId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                Ok(
                    c.cached_execute("DELETE FROM categories WHERE id = ?1", params![id])
                        .map_err(db_err)?
                        > 0,
                )
            })
            .await
    }
}

fn channel(raw: &str) -> Result<Channel, StoreError> {
    Channel::parse(raw).map_err(|_| StoreError::Corrupt(format!("preference channel {raw:?}")))
}

#[async_trait]
impl PreferenceStore for SqliteStore {
    async fn get_preferences(&self, user: &UserId) -> Result<Preferences, StoreError> {
        let user = user.as_str().to_owned();
        let rows: Vec<(String, String, bool)> = self
            .db
            .call(move |c| {
                let mut stmt = c
                    .prepare(
                        "SELECT category, channel, enabled FROM preferences WHERE user_id = ?1
                         ORDER BY category, channel",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)
            })
            .await?;
        let mut preferences = Preferences::default();
        for (category, ch, on) in rows {
            let category = CategoryId::parse(&category)
                .map_err(|_| StoreError::Corrupt(format!("preference category {category:?}")))?;
            preferences
                .categories
                .entry(category)
                .or_default()
                .insert(channel(&ch)?, on);
        }
        Ok(preferences)
    }

    async fn put_preferences(
        &self,
        user: &UserId,
        preferences: &Preferences,
    ) -> Result<(), StoreError> {
        let user = user.as_str().to_owned();
        let rows: Vec<(String, &'static str, bool)> = preferences
            .entries()
            .map(|(category, channel, on)| (category.as_str().to_owned(), channel.as_str(), on))
            .collect();
        self.db
            .call(move |c| {
                // All or nothing, within the transaction the call may share.
                let sp = c.savepoint().map_err(db_err)?;
                sp.cached_execute("DELETE FROM preferences WHERE user_id = ?1", params![user])
                    .map_err(db_err)?;
                for (category, channel, on) in rows {
                    sp.cached_execute(
                        "INSERT INTO preferences (user_id, category, channel, enabled)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![user, category, channel, on],
                    )
                    .map_err(db_err)?;
                }
                sp.commit().map_err(db_err)
            })
            .await
    }

    async fn set_preference(
        &self,
        user: &UserId,
        category: &CategoryId,
        channel: Channel,
        on: bool,
    ) -> Result<bool, StoreError> {
        let (user, category) = (user.as_str().to_owned(), category.as_str().to_owned());
        self.db
            .call(move |c| {
                // One connection runs one call at a time: nothing comes between the read and
                // the write. A channel never set is on.
                let before: bool = c
                    .prepare_cached(
                        "SELECT enabled FROM preferences
                         WHERE user_id = ?1 AND category = ?2 AND channel = ?3",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![user, category, channel.as_str()], |r| r.get(0))
                            .optional()
                    })
                    .map_err(db_err)?
                    .unwrap_or(true);
                c.cached_execute(
                    "INSERT INTO preferences (user_id, category, channel, enabled)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(user_id, category, channel) DO UPDATE SET enabled = excluded.enabled",
                    params![user, category, channel.as_str(), on],
                )
                .map_err(db_err)?;
                Ok(before != on)
            })
            .await
    }

    async fn find_opt_outs(
        &self,
        category: &CategoryId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, Channel)>, StoreError> {
        let category = category.as_str().to_owned();
        let users: Vec<String> = users.iter().map(|u| u.as_str().to_owned()).collect();
        let rows: Vec<(String, String)> = self
            .db
            .call(move |c| {
                let mut found = Vec::new();
                for chunk in users.chunks(LOOKUP_CHUNK) {
                    let marks = vec!["?"; chunk.len()].join(",");
                    let mut stmt = c
                        .prepare_cached(&format!(
                            "SELECT user_id, channel FROM preferences
                             WHERE category = ? AND enabled = 0 AND user_id IN ({marks})"
                        ))
                        .map_err(db_err)?;
                    let args =
                        std::iter::once(category.as_str()).chain(chunk.iter().map(String::as_str));
                    let rows = stmt
                        .query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(db_err)?;
                    for row in rows {
                        found.push(row.map_err(db_err)?);
                    }
                }
                Ok(found)
            })
            .await?;
        rows.into_iter()
            .map(|(user, ch)| {
                let user = UserId::parse(&user)
                    .map_err(|_| StoreError::Corrupt(format!("preference user {user:?}")))?;
                Ok((user, channel(&ch)?))
            })
            .collect()
    }
}
