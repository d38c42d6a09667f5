//! `UserStore` on DynamoDB.

use async_trait::async_trait;

use notify_core::domain::user::User;
use notify_core::domain::{GroupId, UserId};
use notify_core::ports::{StoreError, UserStore};

use super::item::{ItemExt, body, number, string, to_json};
use super::keys::key;
use super::{DynamoStore, READ_CONCURRENCY, err};

impl DynamoStore {
    pub(super) async fn batch_get_users(&self, ids: &[&UserId]) -> Result<Vec<User>, StoreError> {
        let keys = ids.iter().map(|id| key(format!("U#{id}"), "U")).collect();
        self.batch_get(keys, false)
            .await?
            .iter()
            .map(body)
            .collect()
    }
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        self.put_body(format!("U#{}", user.id), "U", to_json(user)?)
            .await
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.get(format!("U#{id}"), "U")
            .await?
            .map(|i| body(&i))
            .transpose()
    }

    async fn get_users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&UserId> = ids.iter().filter(|id| seen.insert(*id)).collect();
        // 100 keys per BatchGetItem, several calls at once: a page of 2,000 members is one round trip or three.
        let mut users = Vec::with_capacity(unique.len());
        for calls in unique.chunks(100 * READ_CONCURRENCY) {
            let mut reads = Vec::with_capacity(READ_CONCURRENCY);
            for chunk in calls.chunks(100) {
                reads.push(self.batch_get_users(chunk));
            }
            for found in futures::future::try_join_all(reads).await? {
                users.extend(found);
            }
        }
        Ok(users)
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool, StoreError> {
        // Memberships first: a user that is gone must not stay on a list.
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("GSI1")
                .key_condition_expression("GSI1PK = :pk")
                .expression_attribute_values(":pk", string(format!("UG#{id}")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err)?;
            for item in out.items() {
                if let Some(group) = item
                    .string("GSI1SK")
                    .and_then(|g| g.strip_prefix("G#"))
                    .and_then(|g| GroupId::parse(g).ok())
                {
                    self.remove_member(&group, id).await?;
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        // What belongs to the user alone: preferences, inbox, push subscriptions.
        self.delete_prefixed(format!("U#{id}"), "P#").await?;
        self.delete_prefixed(format!("B#{id}"), "").await?;
        self.delete(format!("U#{id}"), "U").await
    }

    // Its own partition, not the user's: deleting the user must leave it.
    async fn token_generation(&self, id: &UserId) -> Result<u64, StoreError> {
        Ok(self
            .get(format!("TG#{id}"), "TG")
            .await?
            .and_then(|item| item.number("generation"))
            .map_or(0, |n| n.max(0) as u64))
    }

    async fn bump_token_generation(&self, id: &UserId) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("TG#{id}"), "TG")))
            .update_expression("ADD generation :one")
            .expression_attribute_values(":one", number(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(err)?;
        out.attributes()
            .and_then(|a| a.get("generation"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("a token generation without its number".into()))
    }
}
