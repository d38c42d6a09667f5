//! A keyed dispatch job claimed whole (`JobClaimStore`): one lease for all its deliveries, a
//! plain row write per outcome, and the counts moved once, by the commit that ends the claim.
//!
//! Why the counts stay exact: the commit sets the job's counted totals to what this claim knows
//! of the whole job (the rows earlier claims wrote, read when it is not the first claim, and
//! its own outcomes) and moves the counts by the difference, on the condition that no claim
//! was made since. A claim that lost its lease commits nothing; the next one reads the rows
//! and counts them. A row found final when writing it (a worker whose lease ran out wrote it)
//! is read and counted as it is.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::domain::delivery::{Delivery, DeliveryKey, DeliveryStatus, Outcome};
use crate::domain::job_claim::{JobLease, JobTotals};
use crate::jobs::DispatchJob;
use crate::ports::{JobClaimStore, StoreError};

use super::write_until;

pub(super) struct ClaimedJob<'a> {
    store: &'a dyn JobClaimStore,
    pub(super) key: String,
    lease: JobLease,
    /// The rows earlier claims wrote, by delivery (none read by the first claim).
    known: HashMap<DeliveryKey, Delivery>,
    /// Every final outcome of the job known to this claim; until the rows are read, what
    /// earlier claims counted, so that a claim that stops before it commits no change.
    totals: JobTotals,
    /// A delivery of the job is not final (not reached, retried, deferred), or the claim
    /// stopped before it went through the job.
    open: bool,
    committed: bool,
}

/// What is known of one delivery before its send.
pub(super) enum Known {
    /// Final already (in this claim's totals since the rows were read).
    Final,
    /// Still to send; this is its attempt number.
    Attempt(u32),
}

impl<'a> ClaimedJob<'a> {
    pub(super) fn new(store: &'a dyn JobClaimStore, key: &str, lease: JobLease) -> Self {
        Self {
            store,
            key: key.to_owned(),
            lease,
            known: HashMap::new(),
            totals: lease.counted,
            open: true,
            committed: false,
        }
    }

    /// Before the job's deliveries are gone through: reads what earlier claims of the job
    /// wrote (the first claim has nothing to read), whose final rows count whether or not this
    /// claim reaches them.
    pub(super) async fn read_rows(&mut self, job: &DispatchJob) -> Result<(), StoreError> {
        if self.lease.is_first() {
            self.totals = JobTotals::default();
            self.open = false;
            return Ok(());
        }
        let keys: Vec<DeliveryKey> = job
            .items
            .iter()
            .flat_map(|item| {
                item.channels.iter().map(|&channel| DeliveryKey {
                    notification_id: job.notification_id.clone(),
                    recipient: item.recipient.key.clone(),
                    channel,
                })
            })
            .collect();
        self.known = self
            .store
            .job_deliveries(&keys)
            .await?
            .into_iter()
            .map(|d| (d.key.clone(), d))
            .collect();
        self.totals = JobTotals::default();
        for row in self.known.values() {
            self.totals.add(row.status);
        }
        self.open = false;
        Ok(())
    }

    pub(super) fn known(&mut self, key: &DeliveryKey) -> Known {
        match self.known.get(key) {
            Some(row) if row.status != DeliveryStatus::Pending => Known::Final,
            Some(row) => Known::Attempt(row.attempts + 1),
            None => Known::Attempt(1),
        }
    }

    /// A delivery of the job left for a later claim without an attempt.
    pub(super) fn leave_open(&mut self) {
        self.open = true;
    }

    /// Writes the delivery's row as the outcome left it, through the store's errors until
    /// shortly before the deadline: the send happened, and a lost row sends it again.
    pub(super) async fn record(
        &mut self,
        planned: &Delivery,
        attempt: u32,
        outcome: &Outcome,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let row = row_after(planned, attempt, outcome);
        let id = &planned.key.notification_id;
        let store = self.store;
        let written = write_until(deadline, "record an outcome", id, || {
            store.put_job_delivery(&row)
        })
        .await?;
        if written {
            self.totals.add(row.status);
            self.open |= row.status == DeliveryStatus::Pending;
            return Ok(());
        }
        // Final already: a worker whose lease ran out wrote it. Counted as it is.
        let stored = write_until(deadline, "read a delivery", id, || {
            store.job_deliveries(std::slice::from_ref(&planned.key))
        })
        .await?;
        match stored.first() {
            Some(found) => self.totals.add(found.status),
            None => self.open = true,
        }
        Ok(())
    }

    /// Ends the claim: the counts take this claim's outcomes and the lease is released, through
    /// the store's errors until shortly before the deadline. Says whether the job is done.
    pub(super) async fn commit(
        &mut self,
        id: &crate::domain::NotificationId,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        if self.committed {
            return Ok(!self.open);
        }
        self.committed = true;
        let done = !self.open;
        let (store, key, lease, totals) = (self.store, &self.key, &self.lease, self.totals);
        let committed = write_until(deadline, "commit a dispatch job", id, || {
            store.commit_job(id, key, lease, totals, done)
        })
        .await?;
        if !committed {
            tracing::warn!(%id, job = %self.key, "the job's commit was taken already, or the job was claimed again after this lease ran out (that claim counts its outcomes)");
        }
        Ok(done && committed)
    }
}

/// The row a delivery has after `outcome`: final, or pending with its attempts and last error
/// (a deferred send gives back its attempt, as it did not try).
fn row_after(planned: &Delivery, attempt: u32, outcome: &Outcome) -> Delivery {
    let mut row = Delivery {
        attempts: attempt,
        ..planned.clone()
    };
    match outcome {
        Outcome::Sent {
            provider_message_id,
            at,
        } => {
            row.status = DeliveryStatus::Sent;
            row.sent_at = Some(*at);
            row.provider_message_id = Some(provider_message_id.clone());
            row.error = None;
        }
        Outcome::Failed { error } => {
            row.status = DeliveryStatus::Failed;
            row.error = Some(error.clone());
        }
        Outcome::Skipped { reason } => {
            row.status = DeliveryStatus::Skipped;
            row.error = Some(reason.clone());
        }
        Outcome::Retry { error } => {
            row.status = DeliveryStatus::Pending;
            row.error = Some(error.clone());
        }
        Outcome::Deferred { error } => {
            row.status = DeliveryStatus::Pending;
            row.attempts = attempt.saturating_sub(1);
            row.error = Some(error.clone());
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::Recipient;
    use crate::domain::{Channel, EmailAddress, NotificationId};

    fn planned() -> Delivery {
        let id = NotificationId::parse("ntf_01m86f19x88ywtj1yengacnyj1").unwrap();
        let to = Recipient::email(EmailAddress::parse("a@example.com").unwrap());
        Delivery::pending(&id, &to, Channel::Email)
    }

    #[test]
    fn a_deferred_send_gives_back_its_attempt_and_a_retried_one_keeps_it() {
        let error = "later".to_owned();
        let deferred = row_after(
            &planned(),
            3,
            &Outcome::Deferred {
                error: error.clone(),
            },
        );
        assert_eq!(
            (deferred.status, deferred.attempts),
            (DeliveryStatus::Pending, 2)
        );
        let retried = row_after(&planned(), 3, &Outcome::Retry { error });
        assert_eq!(
            (retried.status, retried.attempts),
            (DeliveryStatus::Pending, 3)
        );
        let sent = row_after(
            &planned(),
            1,
            &Outcome::Sent {
                provider_message_id: "m1".into(),
                at: jiff::Timestamp::UNIX_EPOCH,
            },
        );
        assert_eq!(sent.status, DeliveryStatus::Sent);
        assert_eq!(sent.provider_message_id.as_deref(), Some("m1"));
    }
}
