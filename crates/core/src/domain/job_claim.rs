//! A claim on a whole dispatch job: one write leases every delivery of the job, instead of
//! one write per delivery. What makes it safe is that a job's deliveries belong to that job
//! alone: a job is keyed by its page and its place in the page, and a page's members are fixed
//! by the page's record (`FannedOutPage`), so the same key always holds the same deliveries.

use super::delivery::DeliveryStatus;

/// What a claim on a keyed dispatch job found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobClaim {
    /// This worker holds the job until the lease ends.
    Claimed(JobLease),
    /// A claim committed the job with every delivery final: nothing to do.
    Done,
    /// Another worker holds an unexpired lease.
    Busy,
}

/// A claim held: which claim of the job it is, and the outcomes counted by earlier claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLease {
    /// Counts from 1. The first claim knows that no delivery of the job was tried before, so
    /// it reads none of their rows.
    pub attempt: u32,
    /// What the notification's counts already hold of this job's outcomes.
    pub counted: JobTotals,
}

impl JobLease {
    pub fn is_first(&self) -> bool {
        self.attempt <= 1
    }
}

/// A job's final outcomes, by kind: what its commit puts into the notification's counts (as
/// the difference from what earlier claims counted). A delivery the provider reported on since
/// (delivered, bounced, complained) still counts as sent here: those reports move the counts
/// themselves.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JobTotals {
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl JobTotals {
    /// Adds one delivery in `status`; a pending one adds nothing.
    pub fn add(&mut self, status: DeliveryStatus) {
        match status {
            DeliveryStatus::Pending => {}
            DeliveryStatus::Failed => self.failed += 1,
            DeliveryStatus::Skipped => self.skipped += 1,
            s if s.was_sent() => self.sent += 1,
            _ => {}
        }
    }

    /// How far `self` is past `earlier`, per kind, as signed changes (sent, failed, skipped):
    /// never negative for one job's claims, whose outcomes are final, but signed so that a store
    /// can apply it without trusting that.
    pub fn since(&self, earlier: &JobTotals) -> (i64, i64, i64) {
        let d = |a: u64, b: u64| a as i64 - b as i64;
        (
            d(self.sent, earlier.sent),
            d(self.failed, earlier.failed),
            d(self.skipped, earlier.skipped),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_every_sent_status_as_sent_and_pending_as_nothing() {
        let mut t = JobTotals::default();
        for s in DeliveryStatus::ALL {
            t.add(s);
        }
        assert_eq!(
            t,
            JobTotals {
                sent: 4,
                failed: 1,
                skipped: 1
            }
        );
        let earlier = JobTotals {
            sent: 1,
            failed: 1,
            skipped: 0,
        };
        assert_eq!(t.since(&earlier), (3, 0, 1));
    }
}
