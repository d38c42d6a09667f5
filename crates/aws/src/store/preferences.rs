//! `CategoryStore` and `PreferenceStore` on DynamoDB. A category is an item of its own
//! (`K#<id>`); a user's preferences are items in the user's partition (`U#<user>`), one per
//! category with a boolean per channel set, so an unsubscribe is one UpdateItem of one
//! attribute (no read-modify-write to race a change of the other channel) and a dispatch
//! job's lookup is one BatchGetItem over its users.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt, TryStreamExt};

use notify_core::domain::category::Category;
use notify_core::domain::preferences::Preferences;
use notify_core::domain::{CategoryId, Channel, UserId};
use notify_core::ports::{CategoryStore, PreferenceStore, StoreError};

use super::item::{Item, ItemExt, body, string, to_json};
use super::keys::key;
use super::{DynamoStore, READ_CONCURRENCY, WRITE_CONCURRENCY, err};

fn category_pk(id: &CategoryId) -> String {
    format!("K#{id}")
}

fn user_pk(user: &UserId) -> String {
    format!("U#{user}")
}

const PREFERENCE_PREFIX: &str = "P#";

fn preference_sk(category: &CategoryId) -> String {
    format!("{PREFERENCE_PREFIX}{category}")
}

/// The (category, channel, on) switches of one preference item.
fn switches(item: &Item) -> Result<(CategoryId, Vec<(Channel, bool)>), StoreError> {
    let raw = item.string("category").unwrap_or_default();
    let category = CategoryId::parse(raw)
        .map_err(|_| StoreError::Corrupt(format!("preference category {raw:?}")))?;
    let set = Channel::ALL
        .into_iter()
        .filter_map(|c| match item.get(c.as_str()) {
            Some(AttributeValue::Bool(on)) => Some((c, *on)),
            _ => None,
        })
        .collect();
    Ok((category, set))
}

#[async_trait]
impl CategoryStore for DynamoStore {
    async fn put_category(&self, category: &Category) -> Result<(), StoreError> {
        self.put_body(category_pk(&category.id), "K", to_json(category)?)
            .await
    }

    async fn get_category(&self, id: &CategoryId) -> Result<Option<Category>, StoreError> {
        self.get(category_pk(id), "K")
            .await?
            .as_ref()
            .map(body)
            .transpose()
    }

    async fn delete_category(&self, id: &CategoryId) -> Result<bool, StoreError> {
        self.delete(category_pk(id), "K").await
    }
}

#[async_trait]
impl PreferenceStore for DynamoStore {
    async fn get_preferences(&self, user: &UserId) -> Result<Preferences, StoreError> {
        let items = self
            .query_page(
                None,
                "PK = :pk AND begins_with(SK, :prefix)",
                HashMap::from([
                    (":pk".to_owned(), string(user_pk(user))),
                    (":prefix".to_owned(), string(PREFERENCE_PREFIX)),
                ]),
                usize::MAX - 1,
                None,
                true,
            )
            .await?;
        let mut preferences = Preferences::default();
        for item in &items {
            let (category, set) = switches(item)?;
            preferences
                .categories
                .entry(category)
                .or_default()
                .extend(set);
        }
        Ok(preferences)
    }

    async fn put_preferences(
        &self,
        user: &UserId,
        preferences: &Preferences,
    ) -> Result<(), StoreError> {
        let old = self.get_preferences(user).await?;
        enum Write {
            Put(Item),
            Delete(String),
        }
        let mut writes: Vec<Write> = Vec::new();
        for (category, set) in &preferences.categories {
            let mut item = key(user_pk(user), &preference_sk(category));
            item.insert("category".into(), string(category.as_str()));
            for (channel, on) in set {
                item.insert(channel.as_str().into(), AttributeValue::Bool(*on));
            }
            writes.push(Write::Put(item));
        }
        for category in old.categories.keys() {
            if !preferences.categories.contains_key(category) {
                writes.push(Write::Delete(preference_sk(category)));
            }
        }
        // Item by item, not in one transaction: a reader may see half of a change for a
        // moment, never a change lost.
        stream::iter(writes)
            .map(|write| async move {
                match write {
                    Write::Put(item) => self
                        .client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(err),
                    Write::Delete(sk) => self.delete(user_pk(user), &sk).await.map(|_| ()),
                }
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn set_preference(
        &self,
        user: &UserId,
        category: &CategoryId,
        channel: Channel,
        on: bool,
    ) -> Result<bool, StoreError> {
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user), &preference_sk(category))))
            .update_expression("SET #channel = :on, category = :category")
            .expression_attribute_names("#channel", channel.as_str())
            .expression_attribute_values(":on", AttributeValue::Bool(on))
            .expression_attribute_values(":category", string(category.as_str()))
            // The item before this write, from the write itself: no read that a concurrent
            // change could slip between. (ALL_OLD, not UPDATED_OLD: moto leaves an attribute
            // set to its own value out of UPDATED_OLD.)
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(err)?;
        let before = answer
            .attributes()
            .and_then(|old| old.get(channel.as_str()))
            .and_then(|v| v.as_bool().ok().copied())
            // Never set: on.
            .unwrap_or(true);
        Ok(before != on)
    }

    async fn find_opt_outs(
        &self,
        category: &CategoryId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, Channel)>, StoreError> {
        let chunks: Vec<Vec<Item>> = users
            .chunks(100)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|u| key(user_pk(u), &preference_sk(category)))
                    .collect()
            })
            .collect();
        // Eventually consistent, as the suppression lookup: an unsubscribe a moment ago may
        // let one more send through, well inside the 48 hours Gmail and Yahoo allow.
        let items: Vec<Vec<Item>> = stream::iter(chunks)
            .map(|keys| self.batch_get(keys, false))
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = Vec::new();
        for item in items.iter().flatten() {
            let raw = item.string("PK").unwrap_or_default();
            let user = raw
                .strip_prefix("U#")
                .and_then(|u| UserId::parse(u).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("preference key {raw:?}")))?;
            let (_, set) = switches(item)?;
            out.extend(
                set.into_iter()
                    .filter(|(_, on)| !on)
                    .map(|(c, _)| (user.clone(), c)),
            );
        }
        Ok(out)
    }
}
