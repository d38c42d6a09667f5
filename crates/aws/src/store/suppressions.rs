//! `SuppressionStore` on DynamoDB: an item per address (`X#<address>`), so that the lookup of a
//! dispatch job (BatchGetItem, 100 keys a call) spreads its reads over as many partitions as
//! addresses: a big send checks thousands of addresses a second. The list reads the `GSI1`
//! partition `X`, sorted by address; suppressions are written at the pace of bounces and
//! complaints, far below the ~1,000 writes a second one index partition takes.

use std::collections::HashMap;

use async_trait::async_trait;

use notify_core::domain::suppression::{SuppressedAddress, Suppression};
use notify_core::ports::{Page, StoreError, SuppressionStore};

use super::item::{Item, body, decode_cursor, encode_cursor, string, to_json};
use super::keys::key;
use super::{DynamoStore, READ_CONCURRENCY};

const SK: &str = "X";
const INDEX_PK: &str = "X";

fn pk(address: &SuppressedAddress) -> String {
    format!("X#{address}")
}

#[async_trait]
impl SuppressionStore for DynamoStore {
    async fn put_suppression(&self, s: &Suppression) -> Result<(), StoreError> {
        self.put_listed(
            pk(&s.address),
            SK,
            to_json(s)?,
            Some((INDEX_PK, s.address.as_str())),
        )
        .await
    }

    async fn get_suppression(
        &self,
        address: &SuppressedAddress,
    ) -> Result<Option<Suppression>, StoreError> {
        self.get(pk(address), SK)
            .await?
            .as_ref()
            .map(body)
            .transpose()
    }

    async fn delete_suppression(&self, address: &SuppressedAddress) -> Result<bool, StoreError> {
        self.delete(pk(address), SK).await
    }

    async fn find_suppressions(
        &self,
        addresses: &[SuppressedAddress],
    ) -> Result<Vec<Suppression>, StoreError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let chunks: Vec<Vec<Item>> = addresses
            .chunks(100)
            .map(|chunk| chunk.iter().map(|a| key(pk(a), SK)).collect())
            .collect();
        // Eventually consistent: a suppression made a moment ago may let one more send through,
        // as SES's own list does; half the read cost on the hot path of every send.
        let items: Vec<Vec<Item>> = stream::iter(chunks)
            .map(|keys| self.batch_get(keys, false))
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        items.iter().flatten().map(body).collect()
    }

    async fn list_suppressions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Suppression>, StoreError> {
        let limit = limit.max(1);
        let names = ["PK", "SK", "GSI1PK", "GSI1SK"];
        let start = cursor.map(|c| decode_cursor(c, &names)).transpose()?;
        let mut items = self
            .query_page(
                Some("GSI1"),
                "GSI1PK = :pk",
                HashMap::from([(":pk".to_owned(), string(INDEX_PK))]),
                limit,
                start,
                true,
            )
            .await?;
        let next_cursor = (items.len() > limit).then(|| encode_cursor(&items[limit - 1], &names));
        items.truncate(limit);
        Ok(Page {
            items: items.iter().map(body).collect::<Result<_, _>>()?,
            next_cursor,
        })
    }
}
