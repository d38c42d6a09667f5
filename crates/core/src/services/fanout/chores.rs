//! Chores on the fanout queue: the sweep, which moves sends that should have moved, and the
//! purge of a deleted group's memberships. Both are idempotent: a chore run twice, or cut off
//! by a timeout, does no harm and the next run goes on.

use jiff::SignedDuration;
use tokio::time::Instant;

use super::{Fanout, FanoutReport};
use crate::domain::GroupId;
use crate::domain::notification::Status;
use crate::jobs::{Chore, FanoutJob, FanoutMessage};
use crate::services::ServiceError;

/// A reserved send still `scheduled` this long after its `send_at` lost its trigger (a
/// schedule fires within a minute, and a delayed queue message within seconds).
pub const OVERDUE_AFTER: SignedDuration = SignedDuration::from_mins(3);
/// Notifications read per page while sweeping.
const SWEEP_PAGE: usize = 500;
/// Memberships removed per call while purging.
const PURGE_PAGE: usize = 1000;

impl Fanout {
    /// Handles one message of the fanout queue.
    pub async fn handle_message(
        &self,
        message: &FanoutMessage,
    ) -> Result<FanoutReport, ServiceError> {
        match message {
            FanoutMessage::Job(job) => self.handle(job).await,
            FanoutMessage::Chore {
                chore: Chore::Sweep,
            } => self.sweep().await,
            FanoutMessage::Chore {
                chore: Chore::PurgeGroup { group_id },
            } => self.purge_group(group_id).await,
        }
    }

    /// Fires reserved sends long overdue and finishes `sending` ones with nothing pending (their
    /// last dispatch could not write the final status).
    #[tracing::instrument(skip(self))]
    pub async fn sweep(&self) -> Result<FanoutReport, ServiceError> {
        let mut report = FanoutReport::default();
        let cutoff = self
            .clock
            .now()
            .saturating_sub(OVERDUE_AFTER)
            .unwrap_or(self.clock.now());
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_notifications(Some(Status::Scheduled), SWEEP_PAGE, cursor.as_deref())
                .await?;
            for n in page.items.iter().filter(|n| n.send_at < cutoff) {
                tracing::warn!(id = %n.id, send_at = %n.send_at, "a reserved send is overdue: firing it");
                self.queues
                    .send_fanout(&FanoutJob::start(n.id.clone()))
                    .await?;
                report.refired += 1;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_notifications(Some(Status::Sending), SWEEP_PAGE, cursor.as_deref())
                .await?;
            for n in &page.items {
                if let Some(status) = self.store.finish_if_done(&n.id).await? {
                    tracing::warn!(id = %n.id, status = status.as_str(), "a finished send was left sending: finished it");
                    report.finished += 1;
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        tracing::info!(
            refired = report.refired,
            finished = report.finished,
            "sweep"
        );
        Ok(report)
    }

    /// Removes a deleted group's memberships until done or out of time; then the chore goes
    /// back on the queue for the rest.
    #[tracing::instrument(skip(self))]
    pub async fn purge_group(&self, group_id: &GroupId) -> Result<FanoutReport, ServiceError> {
        let started = Instant::now();
        let mut report = FanoutReport::default();
        while !self.store.purge_group(group_id, PURGE_PAGE).await? {
            report.pages += 1;
            if started.elapsed() >= self.settings.time_budget {
                self.queues
                    .send_chore(&Chore::PurgeGroup {
                        group_id: group_id.clone(),
                    })
                    .await?;
                report.continued = true;
                break;
            }
        }
        Ok(report)
    }
}
