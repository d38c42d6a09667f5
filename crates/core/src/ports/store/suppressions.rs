//! The suppression list: addresses every later send skips.

use async_trait::async_trait;

use super::{Page, StoreError};
use crate::domain::suppression::{SuppressedAddress, Suppression};

#[async_trait]
pub trait SuppressionStore: Send + Sync {
    /// Adds the address, or replaces its reason and time.
    async fn put_suppression(&self, suppression: &Suppression) -> Result<(), StoreError>;
    async fn get_suppression(
        &self,
        address: &SuppressedAddress,
    ) -> Result<Option<Suppression>, StoreError>;
    /// Says whether it was there.
    async fn delete_suppression(&self, address: &SuppressedAddress) -> Result<bool, StoreError>;
    /// Those of `addresses` that are suppressed: one lookup for a whole dispatch job.
    async fn find_suppressions(
        &self,
        addresses: &[SuppressedAddress],
    ) -> Result<Vec<Suppression>, StoreError>;
    /// Every suppression, by address.
    async fn list_suppressions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Suppression>, StoreError>;
}
