//! Fanout: turns one fired notification into delivery rows and dispatch jobs, page by page.
//!
//! A group is read a page of members at a time, never whole. One invocation works through
//! pages until its time budget is spent, then puts a continuation (the same job with the next
//! cursor) on the fanout queue, so no single invocation has to finish a large group.
//!
//! A large group in a store that splits memberships into segments (DynamoDB) is fanned out by
//! one job per segment, all at once, each paging through its segment and continuing as above:
//! a group of millions is queued in the time of its largest segment, not of the whole.
//!
//! Idempotent: a page fanned out twice changes no row or count (`insert_deliveries` is keyed by
//! page) and at worst repeats dispatch jobs, whose claims stop a second send. The second time,
//! the page is taken from its record (`FannedOutPage`), not from the group, which may have
//! changed in between: the same members are dispatched, and the next page starts where it did.

mod chores;
mod retry;

pub use chores::OVERDUE_AFTER;

use std::sync::Arc;
use std::time::Duration;

// tokio's clock: the same as std's in production, and a paused one in the simulated AWS benchmark.
use tokio::time::Instant;

use super::ServiceError;
use super::metrics;
use crate::domain::delivery::{Delivery, DeliveryStatus, Recipient};
use crate::domain::fanned_out_page::{FannedOutPage, PageMember};
use crate::domain::notification::{Notification, Status, Target};
use crate::domain::user::{ChannelPrefs, User};
use crate::domain::{Channel, NotificationId, UserId};
use crate::jobs::{DispatchItem, DispatchJob, FanoutJob, Segment};
use crate::ports::{Clock, MAX_QUEUE_DELAY, Queues, Store, StoreError};

/// A job this close to its `send_at` waits in the invocation instead of on the queue.
const WAIT_IN_PROCESS: Duration = Duration::from_secs(1);

pub struct Fanout {
    pub store: Arc<dyn Store>,
    pub queues: Arc<dyn Queues>,
    pub clock: Arc<dyn Clock>,
    pub settings: FanoutSettings,
}

#[derive(Debug, Clone, Copy)]
pub struct FanoutSettings {
    /// At most this many recipients in one dispatch job (one queue message).
    pub recipients_per_job: usize,
    /// At most this many bytes of JSON in one dispatch job that is not a group page's (those
    /// are split by count alone, see `pack_page`); ten jobs go in one SQS batch, whose total is
    /// limited to 256 KiB.
    pub max_job_bytes: usize,
    /// Group members read per page.
    pub page_size: usize,
    /// After this long, finish the current page and continue in a new job.
    pub time_budget: Duration,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        Self {
            recipients_per_job: 50,
            max_job_bytes: 24 * 1024,
            page_size: 1000,
            time_budget: Duration::from_secs(20),
        }
    }
}

/// What one fanout job did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanoutReport {
    pub pages: usize,
    pub deliveries: usize,
    pub dispatch_jobs: usize,
    /// A continuation job was queued for the rest of the group (or of its segment).
    pub continued: bool,
    /// The group send was split into this many segment jobs, queued to run at once.
    pub segments: u32,
    /// Pages found fanned out already (this job came again, or ran beside a copy of itself):
    /// dispatched again as recorded, not counted again.
    pub repeated_pages: usize,
    /// Why nothing was done (cancelled, already finished, fired early, unknown id).
    pub ignored: Option<&'static str>,
    /// Sweep: overdue reserved sends fired, and sends finished.
    pub refired: usize,
    pub finished: usize,
}

/// A recipient as found at fire time, or the reason it cannot be reached at all.
enum Resolved {
    Found(Recipient, ChannelPrefs),
    Gone(Recipient, &'static str),
}

/// A member whose user no longer exists: no address on any channel.
fn gone_recipient(id: &UserId) -> Recipient {
    Recipient {
        key: id.as_str().to_owned(),
        user_id: Some(id.clone()),
        email: None,
        phone: None,
        timezone: None,
        locale: None,
    }
}

fn gone_user(id: &UserId) -> Resolved {
    Resolved::Gone(gone_recipient(id), "the user no longer exists")
}

fn found(user: &User) -> Resolved {
    Resolved::Found(Recipient::from_user(user), user.channels)
}

impl Fanout {
    #[tracing::instrument(name = "fanout", skip_all, fields(id = %job.notification_id, cursor = job.cursor.as_deref(), retry = job.retry_failed))]
    pub async fn handle(&self, job: &FanoutJob) -> Result<FanoutReport, ServiceError> {
        self.handle_after(job, false).await
    }

    /// `waited`: the job already waited for `send_at` in this invocation.
    async fn handle_after(
        &self,
        job: &FanoutJob,
        waited: bool,
    ) -> Result<FanoutReport, ServiceError> {
        if job.retry_failed {
            return self.retry_failed(job).await;
        }
        let started = Instant::now();
        let id = &job.notification_id;
        let Some(n) = self.store.get_notification(id).await? else {
            return Ok(ignored("unknown notification"));
        };
        match n.status {
            Status::Cancelled => return Ok(ignored("cancelled")),
            Status::Completed | Status::PartiallyFailed | Status::Failed => {
                return Ok(ignored("already finished"));
            }
            Status::Scheduled if !waited && n.send_at > self.clock.now() => {
                return self.not_yet_due(job, &n).await;
            }
            Status::Scheduled | Status::Queued => {
                if n.status == Status::Scheduled {
                    let late = self.clock.now().duration_since(n.send_at);
                    metrics::schedule_lateness(late.as_secs_f64());
                }
                if !self
                    .store
                    .transition(id, &[Status::Scheduled, Status::Queued], Status::Sending)
                    .await?
                {
                    // Lost a race: proceed only if the winner was another fanout, not a cancel.
                    let now = self.store.get_notification(id).await?.map(|n| n.status);
                    if now != Some(Status::Sending) {
                        return Ok(ignored("cancelled"));
                    }
                }
            }
            Status::Sending => {}
        }

        // A group's first page (of the whole group, or of a segment): the group read once.
        if let Target::GroupId(group) = &n.to
            && job.cursor.is_none()
        {
            let segments = self.store.member_segments();
            match self.store.get_group(group).await? {
                // A group deleted before the send reaches no one (its memberships may not be
                // purged yet).
                None => {
                    let mut report = FanoutReport::default();
                    self.after_page(job, None, started, &mut report).await?;
                    return Ok(report);
                }
                // Split only where every segment gets at least a page: below that, the
                // jobs would cost more invocations and queue messages than they save time.
                Some(g)
                    if job.segment.is_none()
                        && segments > 1
                        && g.member_count
                            >= u64::from(segments) * self.settings.page_size as u64 =>
                {
                    return self.split(job, segments).await;
                }
                Some(_) => {}
            }
        }

        let mut report = FanoutReport::default();
        let mut cursor = job.cursor.clone();
        loop {
            let key = page_key(job.segment, cursor.as_deref());
            let (items, next) = match self.store.fanned_out_page(id, &key, &n.channels).await? {
                // This page was fanned out before (the job came again): its record says whom
                // to dispatch, and where the next page starts.
                Some(recorded) => self.recorded_page(&n, recorded, &mut report).await?,
                None => {
                    let (page, next) = self.resolve(&n, job.segment, cursor.as_deref()).await?;
                    let (deliveries, planned) = plan(&n, page);
                    let record = FannedOutPage {
                        members: planned
                            .iter()
                            .filter_map(|(r, channels)| {
                                Some(PageMember {
                                    id: r.user_id.clone()?,
                                    pending: channels.clone(),
                                })
                            })
                            .collect(),
                        next_cursor: next.clone(),
                    };
                    if self
                        .store
                        .insert_deliveries(id, &key, &record, &n.channels, &deliveries)
                        .await?
                    {
                        report.deliveries += deliveries.len();
                        metrics::fanout_page(deliveries.len());
                        for d in deliveries
                            .iter()
                            .filter(|d| d.status == DeliveryStatus::Skipped)
                        {
                            metrics::delivery(d.key.channel, "skipped");
                        }
                        (dispatch_items(planned), next)
                    } else {
                        // A concurrent fanout of this page recorded it first: its record counts.
                        let recorded = self
                            .store
                            .fanned_out_page(id, &key, &n.channels)
                            .await?
                            .ok_or_else(|| {
                                StoreError::Corrupt(format!(
                                    "page {key:?} is recorded but not found"
                                ))
                            })?;
                        self.recorded_page(&n, recorded, &mut report).await?
                    }
                }
            };
            let jobs = match n.to {
                Target::GroupId(_) => self.pack_page(id, &key, items),
                _ => self.pack(id, items),
            };
            if !jobs.is_empty() {
                self.queues.send_dispatch(&jobs).await?;
            }
            report.pages += 1;
            report.dispatch_jobs += jobs.len();
            match self.after_page(job, next, started, &mut report).await? {
                Some(next) => cursor = Some(next),
                None => return Ok(report),
            }
        }
    }

    /// A page fanned out before, from its record: the dispatch items of its members as they
    /// are now (a member since deleted is sent to nowhere, and fails), on the channels recorded
    /// as pending, and the next page's cursor. A send to an address has no members: its one
    /// recipient is the same each time.
    async fn recorded_page(
        &self,
        n: &Notification,
        recorded: FannedOutPage,
        report: &mut FanoutReport,
    ) -> Result<(Vec<DispatchItem>, Option<String>), ServiceError> {
        report.repeated_pages += 1;
        if !matches!(n.to, Target::GroupId(_) | Target::UserId(_)) {
            let (page, _) = self.resolve(n, None, None).await?;
            return Ok((dispatch_items(plan(n, page).1), recorded.next_cursor));
        }
        let pending: Vec<PageMember> = recorded
            .members
            .into_iter()
            .filter(|m| !m.pending.is_empty())
            .collect();
        let ids: Vec<UserId> = pending.iter().map(|m| m.id.clone()).collect();
        let users = self.users_by_id(&ids).await?;
        let items = pending
            .into_iter()
            .map(|m| DispatchItem {
                recipient: users
                    .get(&m.id)
                    .map_or_else(|| gone_recipient(&m.id), Recipient::from_user),
                channels: m.pending,
            })
            .collect();
        Ok((items, recorded.next_cursor))
    }

    /// The users of `ids` that exist now, by id, in one read.
    async fn users_by_id(
        &self,
        ids: &[UserId],
    ) -> Result<std::collections::HashMap<UserId, User>, ServiceError> {
        Ok(self
            .store
            .get_users(ids)
            .await?
            .into_iter()
            .map(|u| (u.id.clone(), u))
            .collect())
    }

    /// A large group send on a store with segments: one job per segment, queued at once. A
    /// start job received twice splits twice; the repeated segment jobs change no count
    /// (their pages have the same keys).
    async fn split(&self, job: &FanoutJob, segments: u32) -> Result<FanoutReport, ServiceError> {
        let mut report = FanoutReport::default();
        let jobs = (0..segments).map(|index| FanoutJob {
            segment: Some(Segment {
                index,
                of: segments,
            }),
            cursor: None,
            ..job.clone()
        });
        futures::future::try_join_all(
            jobs.map(|j| async move { self.queues.send_fanout(&j).await }),
        )
        .await?;
        report.segments = segments;
        Ok(report)
    }

    /// A trigger that came before `send_at`: EventBridge Scheduler fires anywhere within the
    /// minute of a schedule (and the AWS adapter schedules a minute early on purpose), a
    /// reschedule moves `send_at` after the old trigger left. Within SQS's longest delay the
    /// job goes back on the queue until `send_at`, to the second; further out, the schedule
    /// for the new `send_at` fires it again (and the sweep, if that ever fails).
    async fn not_yet_due(
        &self,
        job: &FanoutJob,
        n: &Notification,
    ) -> Result<FanoutReport, ServiceError> {
        let now = self.clock.now();
        let wait = n.send_at.duration_since(now);
        let wait = Duration::from_millis(u64::try_from(wait.as_millis()).unwrap_or(0));
        if wait > MAX_QUEUE_DELAY {
            return Ok(ignored(
                "fired before send_at; the schedule of the new send_at will fire",
            ));
        }
        if wait < WAIT_IN_PROCESS {
            // The last fraction of a second: waited here, since a queue delay is whole seconds.
            tokio::time::sleep(wait).await;
            return Box::pin(self.handle_after(job, true)).await;
        }
        // Whole seconds on SQS, rounded down: the job comes back less than a second early,
        // and that fraction is waited above.
        let delay = Duration::from_secs(wait.as_secs());
        self.queues.send_fanout_after(job, delay).await?;
        tracing::info!(id = %n.id, delay_s = delay.as_secs(), "fired before send_at: held back until then");
        Ok(FanoutReport {
            ignored: Some("not yet due: held back until send_at"),
            ..Default::default()
        })
    }

    /// After a page: the cursor of the next one to do in this invocation, or `None` when this
    /// invocation is done: the last page was done (the send may finish from now on, at once if
    /// nothing is left pending), or the time budget is spent and a continuation is queued.
    pub(super) async fn after_page(
        &self,
        job: &FanoutJob,
        next: Option<String>,
        started: Instant,
        report: &mut FanoutReport,
    ) -> Result<Option<String>, ServiceError> {
        match next {
            None => {
                self.store
                    .mark_fanned_out(&job.notification_id, job.segment)
                    .await?;
                // Everything may have been skipped (or nothing reopened), with no dispatch job
                // left to finish it.
                self.store.finish_if_done(&job.notification_id).await?;
                Ok(None)
            }
            Some(next) if started.elapsed() >= self.settings.time_budget => {
                self.queues
                    .send_fanout(&FanoutJob {
                        cursor: Some(next),
                        ..job.clone()
                    })
                    .await?;
                report.continued = true;
                Ok(None)
            }
            Some(next) => Ok(Some(next)),
        }
    }

    /// One page of recipients, resolved now (not when the request was accepted).
    async fn resolve(
        &self,
        n: &Notification,
        segment: Option<Segment>,
        cursor: Option<&str>,
    ) -> Result<(Vec<Resolved>, Option<String>), ServiceError> {
        let one = match &n.to {
            Target::UserId(user_id) => match self.store.get_user(user_id).await? {
                Some(user) => found(&user),
                None => gone_user(user_id),
            },
            Target::Email(address) => {
                Resolved::Found(Recipient::email(address.clone()), ChannelPrefs::default())
            }
            Target::Phone(number) => {
                Resolved::Found(Recipient::phone(number.clone()), ChannelPrefs::default())
            }
            Target::GroupId(group) => {
                let page_size = self.settings.page_size;
                let members = match segment {
                    Some(s) => {
                        self.store
                            .list_segment(group, s.index, page_size, cursor)
                            .await?
                    }
                    None => self.store.list_members(group, page_size, cursor).await?,
                };
                let users = self.users_by_id(&members.items).await?;
                let page = members
                    .items
                    .iter()
                    .map(|m| users.get(m).map_or_else(|| gone_user(m), found))
                    .collect();
                return Ok((page, members.next_cursor));
            }
        };
        Ok((vec![one], None))
    }

    /// Dispatch jobs for the items, each bounded by recipient count and by size.
    pub(super) fn pack(&self, id: &NotificationId, items: Vec<DispatchItem>) -> Vec<DispatchJob> {
        let mut jobs = Vec::new();
        let mut batch: Vec<DispatchItem> = Vec::new();
        let mut bytes = 0;
        // The job's own fields, and a margin for JSON punctuation.
        let overhead = 64 + id.as_str().len();
        for item in items {
            let size = serde_json::to_vec(&item)
                .map(|v| v.len() + 1)
                .unwrap_or(1024);
            let full = batch.len() >= self.settings.recipients_per_job.max(1)
                || overhead + bytes + size > self.settings.max_job_bytes;
            if full && !batch.is_empty() {
                jobs.push(DispatchJob {
                    notification_id: id.clone(),
                    key: None,
                    items: std::mem::take(&mut batch),
                });
                bytes = 0;
            }
            bytes += size;
            batch.push(item);
        }
        if !batch.is_empty() {
            jobs.push(DispatchJob {
                notification_id: id.clone(),
                key: None,
                items: batch,
            });
        }
        jobs
    }

    /// A group page's dispatch jobs, keyed by the page and their place in it, so that a store
    /// can claim each whole (see `domain::job_claim`). Split by recipient count alone: the
    /// page's record fixes its members and their order, so the same key holds the same
    /// deliveries however often the page is fanned out, even if profiles grew in between. (A
    /// job of 50 recipients stays far under SQS's 256 KiB; batches are split by size.)
    fn pack_page(
        &self,
        id: &NotificationId,
        page: &str,
        items: Vec<DispatchItem>,
    ) -> Vec<DispatchJob> {
        let per_job = self.settings.recipients_per_job.max(1);
        let mut items = items.into_iter().peekable();
        let mut jobs = Vec::new();
        while items.peek().is_some() {
            jobs.push(DispatchJob {
                notification_id: id.clone(),
                key: Some(format!("{page}#{}", jobs.len())),
                items: items.by_ref().take(per_job).collect(),
            });
        }
        jobs
    }
}

/// Delivery rows for a page (its skipped and pending deliveries), and each recipient with the
/// channels it is to be sent on.
fn plan(n: &Notification, page: Vec<Resolved>) -> (Vec<Delivery>, Vec<(Recipient, Vec<Channel>)>) {
    let mut deliveries = Vec::with_capacity(page.len() * n.channels.len());
    let planned = page
        .into_iter()
        .map(|resolved| plan_recipient(n, resolved, &mut deliveries))
        .collect();
    (deliveries, planned)
}

/// The recipients with a channel to be sent on, as dispatch items.
fn dispatch_items(planned: Vec<(Recipient, Vec<Channel>)>) -> Vec<DispatchItem> {
    planned
        .into_iter()
        .filter(|(_, channels)| !channels.is_empty())
        .map(|(recipient, channels)| DispatchItem {
            recipient,
            channels,
        })
        .collect()
}

/// Decides, per channel, whether the recipient gets a pending delivery or a skipped one.
fn plan_recipient(
    n: &Notification,
    resolved: Resolved,
    deliveries: &mut Vec<Delivery>,
) -> (Recipient, Vec<Channel>) {
    let mut channels = Vec::new();
    let recipient = match resolved {
        Resolved::Gone(recipient, why) => {
            for &channel in &n.channels {
                deliveries.push(Delivery::skipped(&n.id, &recipient, channel, why));
            }
            recipient
        }
        Resolved::Found(recipient, prefs) => {
            for &channel in &n.channels {
                let skip = if !prefs.allows(channel) {
                    Some("the recipient opted out of this channel")
                } else if recipient.address(channel).is_none() {
                    Some(match channel {
                        Channel::Email => "the recipient has no email address",
                        Channel::Sms => "the recipient has no phone number",
                        Channel::InApp | Channel::Push => "the recipient is not a user",
                    })
                } else {
                    None
                };
                match skip {
                    Some(why) => {
                        deliveries.push(Delivery::skipped(&n.id, &recipient, channel, why))
                    }
                    None => {
                        deliveries.push(Delivery::pending(&n.id, &recipient, channel));
                        channels.push(channel);
                    }
                }
            }
            recipient
        }
    };
    (recipient, channels)
}

pub(super) fn ignored(why: &'static str) -> FanoutReport {
    tracing::info!(reason = why, "fanout ignored");
    FanoutReport {
        ignored: Some(why),
        ..Default::default()
    }
}

/// The key of a page: its segment and the cursor that led to it, so that the same page always
/// has the same key.
fn page_key(segment: Option<Segment>, cursor: Option<&str>) -> String {
    let cursor = cursor.unwrap_or("");
    match segment {
        None => cursor.to_owned(),
        Some(s) => format!("{}/{}:{cursor}", s.index, s.of),
    }
}
