//! Dispatch: for each recipient and channel of a job, claim the delivery, render, send, record.
//!
//! Claim protocol: a delivery is `pending` with a free lease → claimed (lease until now + lease,
//! attempts + 1) → `sent` | `failed` | back to `pending` with the lease released (transient
//! error). A worker that dies mid-send leaves the lease to expire; the job comes back from the
//! queue and the next worker takes it over. Only that crash can repeat a send. On a store that
//! claims jobs whole (DynamoDB, where each write is paid for), a group page's job is claimed
//! once for all its deliveries instead (`claimed_job`).
//!
//! Pace: each channel has a `RateLimit`. A throttled send lowers the channel's rate and is tried
//! again under the same claim after a pause, so throttling slows a send down and does not use up
//! its attempts; a job that runs out of its time budget leaves the rest for its next receive.

mod claimed_job;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use tokio::time::Instant;

use super::ServiceError;
use crate::domain::delivery::{Claim, Delivery, DeliveryKey, Outcome, Recipient};
use crate::domain::job_claim::JobClaim;
use crate::domain::notification::Notification;
use crate::domain::suppression::{SuppressedAddress, Suppression};
use crate::domain::{CategoryId, Channel, EmailAddress, NotificationId, UserId};
use crate::jobs::DispatchJob;
use crate::ports::{
    Clock, EmailSender, JobClaimStore, SendError, SendErrorKind, SmsSender, Store, StoreError,
};

use claimed_job::{ClaimedJob, Known};

use super::inbox::Inbox;
use super::metrics;
use super::rate_limit::RateLimit;
use super::render::{self, RenderInput, Rendered, Source};
use super::unsubscribe::UnsubscribeLinks;
use super::webhooks::{self, Webhooks};
use crate::backoff::jitter;
use crate::domain::push::PushMessage;
use crate::domain::webhook::{EventType, WebhookEvent};
use crate::ports::error_chain;
use crate::ports::{PushError, PushSender};

/// Kept free before the deadline when writing an outcome: the last write must end in time.
const RECORD_MARGIN: Duration = Duration::from_millis(250);
/// How long before the deadline a write still running is given up, so that its loss is logged
/// before the invocation is killed.
const KILL_MARGIN: Duration = Duration::from_millis(10);

pub struct Dispatch {
    store: Arc<dyn Store>,
    email: Arc<dyn EmailSender>,
    sms: Arc<dyn SmsSender>,
    clock: Arc<dyn Clock>,
    settings: DispatchSettings,
    email_pace: RateLimit,
    sms_pace: RateLimit,
    /// Unlimited: the inbox is our own store, not a provider's quota.
    in_app_pace: RateLimit,
    push_pace: RateLimit,
    /// Channels the provider stopped (`SendErrorKind::Paused`), until when, in this process.
    paused: std::sync::Mutex<std::collections::HashMap<Channel, Instant>>,
    /// Makes the one-click unsubscribe link of each email whose category can be left.
    unsubscribe: Option<Arc<UnsubscribeLinks>>,
    /// Where `delivery.sent`, `delivery.failed` and `notification.*` events go.
    webhooks: Option<Arc<Webhooks>>,
    /// Where the `in_app` channel delivers: the store, and the live feed where there is one.
    inbox: Arc<Inbox>,
    /// Where the `push` channel delivers (none: push deliveries fail, saying so).
    push: Option<Arc<dyn PushSender>>,
}

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub from: EmailAddress,
    /// How long a claim protects a delivery from other workers; longer than any provider call
    /// plus the pauses after throttling.
    pub lease: SignedDuration,
    /// Attempts per delivery before a transient error becomes `failed`.
    pub max_attempts: u32,
    /// Most sends per second on each channel, per process (`None`: as fast as the provider takes).
    pub email_per_second: Option<f64>,
    pub sms_per_second: Option<f64>,
    /// Sends of one delivery under one claim while the provider throttles.
    pub throttle_tries: u32,
    /// First pause after a throttle; doubles per try.
    pub throttle_pause: Duration,
    /// A job stops claiming after this long and asks to come back for the rest.
    pub time_budget: Duration,
    /// How long a channel rests after the provider paused it (account paused, access denied,
    /// daily quota): its deliveries wait, without using up attempts.
    pub pause: Duration,
    /// The time one send and the write of its outcome may take: no send starts with less than
    /// this left before the deadline (Lambda kills an invocation at its timeout).
    pub send_reserve: Duration,
}

impl DispatchSettings {
    pub fn new(from: EmailAddress) -> Self {
        Self {
            from,
            lease: SignedDuration::from_secs(120),
            max_attempts: 5,
            email_per_second: None,
            sms_per_second: None,
            throttle_tries: 5,
            throttle_pause: Duration::from_millis(250),
            time_budget: Duration::from_secs(20),
            pause: Duration::from_secs(300),
            send_reserve: Duration::from_secs(5),
        }
    }
}

/// What one job did. `retry` asks the queue to bring the job back later (with backoff).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DispatchReport {
    pub sent: usize,
    pub failed: usize,
    /// Deliveries to a suppressed address: recorded skipped, no provider call.
    pub skipped: usize,
    pub already_done: usize,
    /// Sends the provider throttled (each then paused and tried again).
    pub throttled: usize,
    /// Deliveries left pending because their channel is paused.
    pub deferred: usize,
    /// A channel is paused: the job should come back after the pause, not with the backoff.
    pub paused: bool,
    /// The items not reached before the time ran out: to go on in a new job, at once (a job
    /// that makes progress must not use up its receives towards the dead-letter queue).
    pub rest: Option<DispatchJob>,
    pub retry: bool,
    /// When to come back instead of the backoff: a job claimed whole that another worker holds
    /// is free within one lease (committed, or its holder dead), however often it came before,
    /// so it comes back as a fresh copy whose receives are all ahead of it.
    pub retry_after: Option<Duration>,
}

/// What a job reads once before its sends.
struct Prepared {
    notification: Notification,
    source: Source,
    /// Suppressed deliveries, by channel and the recipient's own address.
    suppressed: HashMap<(Channel, String), Suppression>,
    /// The notification's category if users can leave it (not a transactional one).
    optional_category: Option<CategoryId>,
    /// The job's users who turned that category off, and on which channel.
    opted_out: HashSet<(UserId, Channel)>,
}

impl Prepared {
    /// Why a delivery is skipped without a send, if it is: a suppressed address, or a user
    /// who left the category on this channel.
    fn skip_reason(&self, recipient: &Recipient, channel: Channel) -> Option<String> {
        if let Some(s) = recipient
            .address(channel)
            .and_then(|a| self.suppressed.get(&(channel, a)))
        {
            return Some(s.skip_reason());
        }
        let category = self.optional_category.as_ref()?;
        let user = recipient.user_id.clone()?;
        self.opted_out
            .contains(&(user, channel))
            .then(|| format!("unsubscribed: {category}"))
    }
}

impl Dispatch {
    pub fn new(
        store: Arc<dyn Store>,
        email: Arc<dyn EmailSender>,
        sms: Arc<dyn SmsSender>,
        clock: Arc<dyn Clock>,
        settings: DispatchSettings,
    ) -> Self {
        let email_pace = RateLimit::new(settings.email_per_second);
        let sms_pace = RateLimit::new(settings.sms_per_second);
        let inbox = Arc::new(Inbox::new(store.clone(), clock.clone()));
        Self {
            inbox,
            store,
            email,
            sms,
            clock,
            settings,
            email_pace,
            sms_pace,
            in_app_pace: RateLimit::new(None),
            push_pace: RateLimit::new(None),
            push: None,
            paused: Default::default(),
            unsubscribe: None,
            webhooks: None,
        }
    }

    /// Outcomes and finished notifications become webhook events.
    pub fn with_webhooks(mut self, webhooks: Arc<Webhooks>) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// In-app deliveries reach this inbox (one with the process's live feed).
    pub fn with_inbox(mut self, inbox: Arc<Inbox>) -> Self {
        self.inbox = inbox;
        self
    }

    /// Push deliveries go through this sender.
    pub fn with_push(mut self, sender: Arc<dyn PushSender>) -> Self {
        self.push = Some(sender);
        self
    }

    /// Emails whose category users can leave carry a one-click unsubscribe link (RFC 8058)
    /// and give templates `unsubscribe_url`.
    pub fn with_unsubscribe(mut self, links: Arc<UnsubscribeLinks>) -> Self {
        self.unsubscribe = Some(links);
        self
    }

    pub fn pace(&self, channel: Channel) -> &RateLimit {
        match channel {
            Channel::Email => &self.email_pace,
            Channel::Sms => &self.sms_pace,
            Channel::InApp => &self.in_app_pace,
            Channel::Push => &self.push_pace,
        }
    }

    /// Handles a job within the time budget.
    pub async fn handle(&self, job: &DispatchJob) -> Result<DispatchReport, ServiceError> {
        self.handle_until(
            job,
            Instant::now() + self.settings.time_budget + self.settings.send_reserve,
        )
        .await
    }

    /// Handles a job until `deadline`, the moment the invocation is killed: a send starts only
    /// with `send_reserve` left (and within the time budget), and the outcome of a send that
    /// happened is written until the deadline, through the store's errors, because a send
    /// whose outcome is lost is sent again once its lease runs out.
    #[tracing::instrument(name = "dispatch", skip_all, fields(id = %job.notification_id, items = job.items.len()))]
    pub async fn handle_until(
        &self,
        job: &DispatchJob,
        deadline: Instant,
    ) -> Result<DispatchReport, ServiceError> {
        let started = Instant::now();
        let result = self.run_job(job, deadline).await;
        metrics::dispatch_duration(started.elapsed());
        result
    }

    /// A keyed job on a store that claims jobs whole is claimed once, and its lease released
    /// at the end however the job ended; any other job is claimed delivery by delivery.
    async fn run_job(
        &self,
        job: &DispatchJob,
        deadline: Instant,
    ) -> Result<DispatchReport, ServiceError> {
        let Some((key, claims)) = job.key.as_deref().zip(self.store.job_claims()) else {
            return self.run_items(job, deadline, None).await;
        };
        let now = self.clock.now();
        let lease_until = now.saturating_add(self.settings.lease).unwrap_or(now);
        let mut report = DispatchReport::default();
        match claims
            .claim_job(&job.notification_id, key, now, lease_until)
            .await
        {
            Ok(JobClaim::Claimed(lease)) => {
                let mut claimed = ClaimedJob::new(claims, key, lease);
                let result = self.run_items(job, deadline, Some(&mut claimed)).await;
                // Committed already unless the job stopped early; then this releases the lease,
                // so that the job's next receive need not wait for it to run out.
                if let Err(e) = claimed.commit(&job.notification_id, deadline).await {
                    tracing::warn!(id = %job.notification_id, job = key, error = %error_chain(&e), "could not release a dispatch job's lease");
                }
                result
            }
            // The job's commit landed, but its worker may have been killed before it finished
            // the notification: a copy of the message that comes back finishes it, or nobody
            // would until the sweep.
            Ok(JobClaim::Done) => {
                report.already_done = job.items.iter().map(|i| i.channels.len()).sum();
                let events = self
                    .finish(&job.notification_id, &mut report)
                    .await
                    .into_iter()
                    .collect();
                self.emit(events, deadline).await;
                Ok(report)
            }
            // Another worker holds it; if that worker dies, this job's retry takes over once
            // the lease has run out.
            Ok(JobClaim::Busy) => {
                report.retry = true;
                report.retry_after = Some(self.settings.lease.unsigned_abs());
                Ok(report)
            }
            // Nothing was sent: the job's next receive claims it again.
            Err(e) => {
                tracing::warn!(id = %job.notification_id, job = key, error = %error_chain(&e), "could not claim a dispatch job");
                report.retry = true;
                Ok(report)
            }
        }
    }

    /// The job's deliveries: each claimed before its send (`claimed` is `None`), or under the
    /// claim on the whole job.
    async fn run_items(
        &self,
        job: &DispatchJob,
        deadline: Instant,
        mut claimed: Option<&mut ClaimedJob<'_>>,
    ) -> Result<DispatchReport, ServiceError> {
        let started = Instant::now();
        let stop_sending = (started + self.settings.time_budget).min(
            deadline
                .checked_sub(self.settings.send_reserve)
                .unwrap_or(started),
        );
        let mut report = DispatchReport::default();
        // What a job reads before its first send is bounded too: read through slow retries, it
        // would leave a send that starts later less than `send_reserve` to be recorded in.
        let reads = async {
            let prepared = self.prepare(job).await?;
            if let Some(c) = claimed.as_deref_mut() {
                c.read_rows(job).await?;
            }
            Ok::<_, ServiceError>(prepared)
        };
        let Ok(prepared) = tokio::time::timeout_at(stop_sending, reads).await else {
            tracing::warn!(id = %job.notification_id, "out of time before the first send; the job comes back");
            report.retry = true;
            return Ok(report);
        };
        let Some(prepared) = prepared? else {
            tracing::warn!(id = %job.notification_id, "dispatch job for an unknown notification");
            return Ok(report);
        };
        let n = &prepared.notification;
        let mut events: Vec<WebhookEvent> = Vec::new();
        'items: for (i, item) in job.items.iter().enumerate() {
            for &channel in &item.channels {
                if Instant::now() >= stop_sending {
                    // Out of time: the items not reached go on as a new job (an item's
                    // channels done already are found done). A job claimed whole goes on
                    // whole, under its key: its next claim reads what this one wrote.
                    report.rest = Some(match claimed.as_deref_mut() {
                        Some(c) => {
                            c.leave_open();
                            job.clone()
                        }
                        None => DispatchJob {
                            items: job.items[i..].to_vec(),
                            ..job.clone()
                        },
                    });
                    break 'items;
                }
                if self.is_paused(channel) {
                    if let Some(c) = claimed.as_deref_mut() {
                        c.leave_open();
                    }
                    report.deferred += 1;
                    report.paused = true;
                    report.retry = true;
                    continue;
                }
                let planned = Delivery::pending(&n.id, &item.recipient, channel);
                let key = planned.key.clone();
                let attempt = match claimed.as_deref_mut() {
                    Some(c) => match c.known(&key) {
                        Known::Final => {
                            report.already_done += 1;
                            continue;
                        }
                        Known::Attempt(attempt) => attempt,
                    },
                    None => match self.claim(&planned, &mut report).await {
                        Some(attempt) => attempt,
                        None => continue,
                    },
                };
                let outcome = match prepared.skip_reason(&item.recipient, channel) {
                    Some(reason) => Outcome::Skipped { reason },
                    None => {
                        self.attempt(
                            &prepared,
                            &item.recipient,
                            channel,
                            &key,
                            attempt,
                            stop_sending,
                            &mut report,
                        )
                        .await
                    }
                };
                metrics::delivery(
                    channel,
                    match &outcome {
                        Outcome::Sent { .. } => "sent",
                        Outcome::Failed { .. } => "failed",
                        Outcome::Retry { .. } => "retry",
                        Outcome::Deferred { .. } => "deferred",
                        Outcome::Skipped { .. } => "skipped",
                    },
                );
                match &outcome {
                    Outcome::Sent { .. } => report.sent += 1,
                    Outcome::Skipped { reason } => {
                        tracing::info!(id = %n.id, %channel, reason, "delivery skipped");
                        report.skipped += 1
                    }
                    Outcome::Failed { error } => {
                        tracing::warn!(id = %n.id, %channel, error, "delivery failed");
                        report.failed += 1
                    }
                    Outcome::Retry { error } => {
                        tracing::info!(id = %n.id, %channel, attempt, error, "delivery will be retried");
                        report.retry = true
                    }
                    Outcome::Deferred { .. } => report.retry = true,
                }
                let recorded = match claimed.as_deref_mut() {
                    Some(c) => c
                        .record(&planned, attempt, &outcome, deadline)
                        .await
                        .map_err(ServiceError::from),
                    None => self.record(&key, &outcome, deadline).await,
                };
                if let Err(e) = recorded {
                    self.emit(events, deadline).await;
                    return Err(e);
                }
                events.extend(self.outcome_event(&key, &item.recipient, &outcome));
            }
        }
        // The counts take the job's outcomes before the send is checked for its end.
        if let Some(c) = claimed
            && let Err(e) = c.commit(&n.id, deadline).await
        {
            tracing::warn!(id = %n.id, job = %c.key, error = %error_chain(&e), "could not commit a dispatch job; its next claim counts its outcomes");
            report.retry = true;
        }
        events.extend(self.finish(&n.id, &mut report).await);
        self.emit(events, deadline).await;
        Ok(report)
    }

    /// Marks the notification finished if every delivery is final: its webhook event, if this
    /// call finished it.
    async fn finish(
        &self,
        id: &NotificationId,
        report: &mut DispatchReport,
    ) -> Option<WebhookEvent> {
        match self.store.finish_if_done(id).await {
            Ok(Some(status)) => Some(webhooks::finished_event(id, status, self.clock.now())),
            Ok(None) => None,
            Err(e) => {
                // Every outcome is recorded; the job's next receive (or the sweep) finishes it.
                tracing::warn!(%id, error = %error_chain(&e), "could not finish the notification");
                report.retry = true;
                None
            }
        }
    }

    /// Claims one delivery for its send: its attempt number, or `None` (noted in the report)
    /// if it is done already or another worker holds it.
    async fn claim(&self, planned: &Delivery, report: &mut DispatchReport) -> Option<u32> {
        let now = self.clock.now();
        let lease_until = now.saturating_add(self.settings.lease).unwrap_or(now);
        match self.store.claim_delivery(planned, now, lease_until).await {
            Ok(Claim::Claimed { attempt }) => Some(attempt),
            Ok(Claim::Done) => {
                report.already_done += 1;
                None
            }
            // Another worker holds it; if that worker dies, this job's retry takes over.
            Ok(Claim::Busy) => {
                report.retry = true;
                None
            }
            // Nothing was sent: the job's next receive claims it again.
            Err(e) => {
                let (id, channel) = (&planned.key.notification_id, planned.key.channel);
                tracing::warn!(%id, %channel, error = %error_chain(&e), "could not claim a delivery");
                report.retry = true;
                None
            }
        }
    }

    /// The webhook event of a recorded outcome, if it has one.
    fn outcome_event(
        &self,
        key: &DeliveryKey,
        recipient: &Recipient,
        outcome: &Outcome,
    ) -> Option<WebhookEvent> {
        self.webhooks.as_ref()?;
        let (event_type, detail) = match outcome {
            Outcome::Sent {
                provider_message_id,
                ..
            } => (
                EventType::DeliverySent,
                serde_json::json!({"provider_message_id": provider_message_id}),
            ),
            Outcome::Failed { error } => (
                EventType::DeliveryFailed,
                serde_json::json!({"error": error}),
            ),
            _ => return None,
        };
        Some(webhooks::delivery_event(
            event_type,
            self.clock.now(),
            key,
            recipient.user_id.as_ref(),
            detail,
        ))
    }

    /// Queues a job's webhook events, through the queue's errors until shortly before the
    /// deadline; after that they are lost, and said to be.
    async fn emit(&self, events: Vec<WebhookEvent>, deadline: Instant) {
        let Some(webhooks) = &self.webhooks else {
            return;
        };
        if events.is_empty() {
            return;
        }
        let mut pause = Duration::from_millis(50);
        loop {
            match webhooks.emit(events.clone()).await {
                Ok(_) => return,
                Err(e) if Instant::now() + pause + RECORD_MARGIN < deadline => {
                    tracing::warn!(error = %error_chain(&e), "could not queue webhook events; trying again");
                    tokio::time::sleep(jitter(pause)).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(events = events.len(), error = %error_chain(&e), "webhook events lost");
                    return;
                }
            }
        }
    }

    /// The job's notification, what to render for it, and its suppressed deliveries; `None`
    /// if the notification does not exist.
    async fn prepare(&self, job: &DispatchJob) -> Result<Option<Prepared>, ServiceError> {
        let Some(notification) = self.store.get_notification(&job.notification_id).await? else {
            return Ok(None);
        };
        let source = Source::load(self.store.as_ref(), &notification).await?;
        let suppressed = self.suppressions(job).await?;
        let optional_category =
            render::optional_category(self.store.as_ref(), &notification).await?;
        let opted_out = match &optional_category {
            None => HashSet::new(),
            Some(category) => {
                let mut users: Vec<UserId> = job
                    .items
                    .iter()
                    .filter_map(|item| item.recipient.user_id.clone())
                    .collect();
                users.sort();
                users.dedup();
                if users.is_empty() {
                    HashSet::new()
                } else {
                    self.store
                        .find_opt_outs(category, &users)
                        .await?
                        .into_iter()
                        .collect()
                }
            }
        };
        Ok(Some(Prepared {
            notification,
            source,
            suppressed,
            optional_category,
            opted_out,
        }))
    }

    /// The job's suppressed deliveries, by channel and address as the recipient gives it,
    /// found in one lookup; each address is parsed here once, not again per delivery.
    async fn suppressions(
        &self,
        job: &DispatchJob,
    ) -> Result<HashMap<(Channel, String), Suppression>, ServiceError> {
        let deliveries: Vec<((Channel, String), SuppressedAddress)> = job
            .items
            .iter()
            .flat_map(|item| {
                item.channels.iter().filter_map(|&channel| {
                    let raw = item.recipient.address(channel)?;
                    let address = SuppressedAddress::of_delivery(channel, &raw)?;
                    Some(((channel, raw), address))
                })
            })
            .collect();
        let mut addresses: Vec<SuppressedAddress> =
            deliveries.iter().map(|(_, a)| a.clone()).collect();
        addresses.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        addresses.dedup();
        if addresses.is_empty() {
            return Ok(HashMap::new());
        }
        let found: HashMap<SuppressedAddress, Suppression> = self
            .store
            .find_suppressions(&addresses)
            .await?
            .into_iter()
            .map(|s| (s.address.clone(), s))
            .collect();
        Ok(deliveries
            .into_iter()
            .filter_map(|(key, address)| Some((key, found.get(&address)?.clone())))
            .collect())
    }

    /// One claimed delivery sent, and how that ended.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        prepared: &Prepared,
        recipient: &Recipient,
        channel: Channel,
        key: &DeliveryKey,
        attempt: u32,
        stop_sending: Instant,
        report: &mut DispatchReport,
    ) -> Outcome {
        match self
            .deliver_paced(prepared, recipient, channel, key, stop_sending, report)
            .await
        {
            Ok(provider_message_id) => Outcome::Sent {
                provider_message_id,
                at: self.clock.now(),
            },
            Err(e) if e.kind == SendErrorKind::Permanent => Outcome::Failed { error: e.message },
            Err(e) if e.kind == SendErrorKind::Paused => {
                self.pause_channel(channel, &e);
                report.deferred += 1;
                report.paused = true;
                Outcome::Deferred { error: e.message }
            }
            Err(e) if attempt < self.settings.max_attempts => Outcome::Retry { error: e.message },
            Err(e) => Outcome::Failed {
                error: format!("gave up after {attempt} attempts: {}", e.message),
            },
        }
    }

    fn is_paused(&self, channel: Channel) -> bool {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        match paused.get(&channel) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                paused.remove(&channel);
                false
            }
            None => false,
        }
    }

    fn pause_channel(&self, channel: Channel, why: &SendError) {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        if paused
            .insert(channel, Instant::now() + self.settings.pause)
            .is_none()
        {
            tracing::error!(%channel, pause_s = self.settings.pause.as_secs(), error = %why, "the provider stopped this channel: its deliveries wait instead of failing");
        }
    }

    /// Writes an outcome, trying again through the store's errors until shortly before the
    /// deadline. Only if that fails too does the send stay pending under its lease, to be
    /// claimed and sent again once the lease runs out.
    async fn record(
        &self,
        key: &DeliveryKey,
        outcome: &Outcome,
        deadline: Instant,
    ) -> Result<(), ServiceError> {
        write_until(deadline, "record an outcome", &key.notification_id, || {
            self.store.record_outcome(key, outcome)
        })
        .await?;
        Ok(())
    }

    /// Marks the job's deliveries that are still pending `failed` with `why`: the queue gave up
    /// on the job (its last receive), and a send must not stay pending for ever. Returns how
    /// many it marked. A delivery another worker holds is left to that worker.
    #[tracing::instrument(name = "give_up", skip_all, fields(id = %job.notification_id))]
    pub async fn give_up(&self, job: &DispatchJob, why: &str) -> Result<usize, ServiceError> {
        if let Some((key, claims)) = job.key.as_deref().zip(self.store.job_claims()) {
            return self.give_up_claimed(job, key, claims, why).await;
        }
        let mut marked = 0;
        for item in &job.items {
            for &channel in &item.channels {
                let planned = Delivery::pending(&job.notification_id, &item.recipient, channel);
                let now = self.clock.now();
                let lease_until = now.saturating_add(self.settings.lease).unwrap_or(now);
                if let Claim::Claimed { .. } = self
                    .store
                    .claim_delivery(&planned, now, lease_until)
                    .await?
                {
                    self.store
                        .record_outcome(
                            &planned.key,
                            &Outcome::Failed {
                                error: why.to_owned(),
                            },
                        )
                        .await?;
                    marked += 1;
                }
            }
        }
        self.store.finish_if_done(&job.notification_id).await?;
        Ok(marked)
    }

    /// `give_up` for a job claimed whole: under a claim of its own, the job's deliveries that
    /// are not final become `failed`, and the commit counts them.
    async fn give_up_claimed(
        &self,
        job: &DispatchJob,
        key: &str,
        claims: &dyn JobClaimStore,
        why: &str,
    ) -> Result<usize, ServiceError> {
        let now = self.clock.now();
        let lease_until = now.saturating_add(self.settings.lease).unwrap_or(now);
        let id = &job.notification_id;
        let JobClaim::Claimed(lease) = claims.claim_job(id, key, now, lease_until).await? else {
            // Done, or another worker holds it and goes on.
            return Ok(0);
        };
        let deadline = Instant::now() + self.settings.time_budget;
        let mut claimed = ClaimedJob::new(claims, key, lease);
        claimed.read_rows(job).await?;
        let mut marked = 0;
        let failed = Outcome::Failed {
            error: why.to_owned(),
        };
        for item in &job.items {
            for &channel in &item.channels {
                let planned = Delivery::pending(id, &item.recipient, channel);
                if let Known::Attempt(next) = claimed.known(&planned.key) {
                    // No attempt is made: the row keeps the attempts made before.
                    claimed
                        .record(&planned, next - 1, &failed, deadline)
                        .await?;
                    marked += 1;
                }
            }
        }
        claimed.commit(id, deadline).await?;
        self.store.finish_if_done(id).await?;
        Ok(marked)
    }

    /// One send at the channel's pace; while throttled, pauses (doubling) and sends again under
    /// the same claim, up to `throttle_tries`.
    async fn deliver_paced(
        &self,
        prepared: &Prepared,
        recipient: &Recipient,
        channel: Channel,
        key: &DeliveryKey,
        stop_sending: Instant,
        report: &mut DispatchReport,
    ) -> Result<String, SendError> {
        let pace = self.pace(channel);
        let mut pause = self.settings.throttle_pause;
        let mut tries = 0;
        loop {
            if tokio::time::timeout_at(stop_sending, pace.acquire())
                .await
                .is_err()
            {
                return Err(SendError::throttled(
                    "the channel's pace left no time to send in this invocation",
                ));
            }
            tries += 1;
            let sending = Instant::now();
            let result = self.deliver(prepared, recipient, channel, key).await;
            metrics::provider_latency(channel, sending.elapsed());
            match result {
                Err(e) if e.kind == SendErrorKind::Throttled => {
                    report.throttled += 1;
                    metrics::delivery(channel, "throttled");
                    pace.throttled();
                    if tries >= self.settings.throttle_tries.max(1)
                        || Instant::now() + pause >= stop_sending
                    {
                        return Err(e);
                    }
                    tokio::time::sleep(jitter(pause)).await;
                    pause = pause.saturating_mul(2);
                }
                result => return result,
            }
        }
    }

    async fn deliver(
        &self,
        prepared: &Prepared,
        recipient: &Recipient,
        channel: Channel,
        key: &DeliveryKey,
    ) -> Result<String, SendError> {
        let unsubscribe = match &self.unsubscribe {
            Some(links) => links
                .for_delivery(channel, prepared.optional_category.as_ref(), recipient)
                .await
                // Without its link the email must not go: it waits for the key.
                .map_err(|e| {
                    SendError::transient(format!("no unsubscribe link: {}", error_chain(&e)))
                })?,
            None => None,
        };
        let input = RenderInput {
            notification: &prepared.notification,
            source: &prepared.source,
            from: &self.settings.from,
            unsubscribe: unsubscribe.as_deref(),
            now: self.clock.now(),
        };
        match input.render(recipient, key)? {
            Rendered::Email(email) => self.email.send(&email).await,
            Rendered::Sms(sms) => self.sms.send(&sms).await,
            Rendered::InApp(item) => {
                // The write is the delivery: repeated, it adds nothing, so an in-app send
                // never repeats even when its outcome is lost.
                let added = self
                    .inbox
                    .deliver(&item)
                    .await
                    .map_err(|e| SendError::transient(format!("inbox: {}", error_chain(&e))))?;
                Ok(format!("inbox:{}", added.seq))
            }
            Rendered::Push(message) => self.push_to_browsers(recipient, &message).await,
        }
    }

    /// One push to each of the user's subscriptions, all at once, each with `PUSH_TIMEOUT`:
    /// sent if any took it. A subscription the push service says is gone is removed. A retry
    /// (a transient error on every one) pushes again to all of them: a browser may show a push
    /// twice, never miss one. One after another with 10 s each, a user's 20 slow endpoints held
    /// a worker 200 s an attempt (issue 32).
    async fn push_to_browsers(
        &self,
        recipient: &Recipient,
        message: &PushMessage,
    ) -> Result<String, SendError> {
        let sender = self
            .push
            .as_ref()
            .ok_or_else(|| SendError::permanent("push is not configured in this deployment"))?;
        let user = recipient
            .user_id
            .as_ref()
            .ok_or_else(|| SendError::permanent("the recipient is not a user"))?;
        let subscriptions = self
            .store
            .list_push_subscriptions(user)
            .await
            .map_err(|e| {
                SendError::transient(format!("push subscriptions: {}", error_chain(&e)))
            })?;
        if subscriptions.is_empty() {
            return Err(SendError::permanent("the user has no push subscription"));
        }
        let (mut sent, mut gone, mut first_error) = (0, 0, None);
        let answers =
            futures::future::join_all(subscriptions.iter().map(|subscription| async move {
                let answer = tokio::time::timeout(PUSH_TIMEOUT, sender.send(subscription, message))
                    .await
                    .unwrap_or_else(|_| {
                        Err(PushError::Failed(SendError::transient(format!(
                            "the push service did not answer within {} s",
                            PUSH_TIMEOUT.as_secs()
                        ))))
                    });
                (subscription, answer)
            }))
            .await;
        for (subscription, answer) in answers {
            match answer {
                Ok(_) => sent += 1,
                Err(PushError::Gone) => {
                    gone += 1;
                    tracing::info!(id = %message.notification_id, subscription = %subscription.id, "push subscription gone; removed");
                    if let Err(e) = self
                        .store
                        .delete_push_subscription(user, &subscription.id)
                        .await
                    {
                        tracing::warn!(error = %error_chain(&e), "could not remove a gone push subscription");
                    }
                }
                Err(PushError::Failed(e)) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            _ if sent > 0 => Ok(format!("push:{sent}/{}", subscriptions.len())),
            Some(e) => Err(e),
            None => Err(SendError::permanent(format!(
                "all {gone} of the user's push subscriptions are gone"
            ))),
        }
    }
}

/// How long one push service has to take a push: they answer in well under a second.
const PUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs a store write, trying again through its errors until shortly before the deadline: a
/// send that happened is recorded if the store takes it by then. A write still running when
/// the invocation is killed is lost without a word; cut short just before, it is at least said.
/// (Until then it may still land: a send that started late has only this long to be recorded.)
pub(super) async fn write_until<T, F, Fut>(
    deadline: Instant,
    what: &str,
    id: &NotificationId,
    mut write: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut pause = Duration::from_millis(50);
    let last_moment = deadline.checked_sub(KILL_MARGIN).unwrap_or(deadline);
    loop {
        let written = tokio::time::timeout_at(last_moment, write())
            .await
            .unwrap_or_else(|elapsed| Err(StoreError::unavailable(what, elapsed)));
        match written {
            Ok(done) => return Ok(done),
            Err(e) if Instant::now() + pause + RECORD_MARGIN < deadline => {
                tracing::warn!(%id, error = %error_chain(&e), "could not {what}; trying again");
                tokio::time::sleep(jitter(pause)).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(%id, error = %error_chain(&e), "could not {what} in time: the send may repeat after its lease");
                return Err(e);
            }
        }
    }
}
