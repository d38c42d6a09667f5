//! Claims on whole dispatch jobs, for a store where every write is paid for (DynamoDB): one
//! write leases a job's deliveries, one write records each outcome, and one transaction per
//! job moves the counts. A store that writes for free (SQLite, memory) claims delivery by
//! delivery instead (`DeliveryStore::claim_delivery`), and offers none of this.

use async_trait::async_trait;
use jiff::Timestamp;

use super::StoreError;
use crate::domain::NotificationId;
use crate::domain::delivery::{Delivery, DeliveryKey};
use crate::domain::job_claim::{JobClaim, JobLease, JobTotals};

#[async_trait]
pub trait JobClaimStore: Send + Sync {
    /// Takes the job `job` of notification `id` until `lease_until`, if it is not done and no
    /// other lease on it is running at `now`.
    async fn claim_job(
        &self,
        id: &NotificationId,
        job: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<JobClaim, StoreError>;
    /// The rows stored for these deliveries (those that have one), read consistently: what
    /// earlier claims of the job wrote.
    async fn job_deliveries(&self, keys: &[DeliveryKey]) -> Result<Vec<Delivery>, StoreError>;
    /// Writes a delivery's row as it is now (final, or pending with its attempts and last
    /// error), unless the row is final already: `false` then, with nothing written. The counts
    /// do not move here; `commit_job` moves them.
    async fn put_job_delivery(&self, row: &Delivery) -> Result<bool, StoreError>;
    /// Ends the claim `lease`: the job's counted outcomes become `totals` (the notification's
    /// counts move by the difference from `lease.counted`, out of pending), the lease is
    /// released, and `done` says every delivery of the job is final. `false`, with nothing
    /// changed, if the job was claimed again since (this lease ran out: the later claim
    /// counts), or if this claim committed already (a commit sent again after a lost answer).
    async fn commit_job(
        &self,
        id: &NotificationId,
        job: &str,
        lease: &JobLease,
        totals: JobTotals,
        done: bool,
    ) -> Result<bool, StoreError>;
}
