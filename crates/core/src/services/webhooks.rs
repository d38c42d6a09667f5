//! Outgoing webhooks: events about notifications and deliveries go on the webhook queue, a
//! job per endpoint that wants them, and from there to each endpoint as a signed POST (the
//! Standard Webhooks headers), tried again after a pause when it fails, for about a day. At
//! least once: an endpoint may get an event twice (the same `webhook-id`), and events of one
//! notification may arrive out of order.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::ServiceError;
use crate::domain::delivery::DeliveryKey;
use crate::domain::notification::Status;
use crate::domain::webhook::{
    Disabled, EventType, Webhook, WebhookEvent, WebhookUrl, ip_literal, is_internal, signature,
};
use crate::domain::{NotificationId, UserId};
use crate::jobs::WebhookJob;
use crate::ports::{Clock, MAX_QUEUE_DELAY, Queues, Store, WebhookPoster};

/// The pauses before each retry of a failed post: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h,
/// about a day in all (the schedule the Standard Webhooks specification suggests). After the
/// last, the event is dropped and logged.
pub const RETRY_PAUSES: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

pub struct Webhooks {
    store: Arc<dyn Store>,
    queues: Arc<dyn Queues>,
    poster: Arc<dyn WebhookPoster>,
    clock: Arc<dyn Clock>,
    /// The endpoints as read at most `cache_for` ago: every dispatch job asks which endpoints
    /// want its events, and a deployment without webhooks must not pay a read per job.
    cache: Mutex<Option<(Instant, Arc<Vec<Webhook>>)>>,
    cache_for: Duration,
    pauses: Vec<Duration>,
    /// A job stops posting after this long and puts the events it did not reach back on the
    /// queue (a slow endpoint takes up to 15 s a post; the consumer has a timeout).
    time_budget: Duration,
    /// Whether endpoints may be internal addresses (loopback, private, link-local): for local
    /// development and tests only.
    allow_internal: bool,
}

/// What one webhook job did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WebhookReport {
    pub posted: usize,
    /// Failed and put back for a later attempt.
    pub retried: usize,
    /// Failed for the last time.
    pub dropped: usize,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn Store>,
        queues: Arc<dyn Queues>,
        poster: Arc<dyn WebhookPoster>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            queues,
            poster,
            clock,
            cache: Mutex::new(None),
            cache_for: Duration::from_secs(30),
            pauses: RETRY_PAUSES.to_vec(),
            time_budget: Duration::from_secs(20),
            allow_internal: false,
        }
    }

    /// Lets endpoints be internal addresses (`NOTIFY_WEBHOOK_ALLOW_PRIVATE`).
    pub fn allowing_internal(mut self, allow: bool) -> Self {
        self.allow_internal = allow;
        self
    }

    /// Whether endpoints may be internal addresses (then push endpoints may be anywhere too).
    pub fn allows_internal(&self) -> bool {
        self.allow_internal
    }

    /// Why `url` may not be an endpoint, if it may not: it names or resolves to an internal
    /// address (unless allowed), or its host does not resolve. The poster checks the address
    /// it connects to again, since a name may resolve elsewhere later.
    pub async fn check_target(&self, url: &WebhookUrl) -> Result<(), String> {
        if self.allow_internal {
            return Ok(());
        }
        let parsed = url::Url::parse(url.as_str()).map_err(|e| e.to_string())?;
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses: Vec<std::net::IpAddr> = match (ip_literal(&parsed), parsed.host_str()) {
            (Some(ip), _) => vec![ip],
            (None, Some(name)) => {
                let lookup = tokio::net::lookup_host((name, port));
                match tokio::time::timeout(Duration::from_secs(3), lookup).await {
                    Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                    _ => return Err(format!("the host {name} does not resolve")),
                }
            }
            (None, None) => return Err("has no host".into()),
        };
        if addresses.is_empty() {
            return Err("the host does not resolve".into());
        }
        if addresses.iter().any(|ip| is_internal(*ip)) {
            return Err(
                "points to a loopback, private or link-local address; allowed only with NOTIFY_WEBHOOK_ALLOW_PRIVATE=true"
                    .into(),
            );
        }
        Ok(())
    }

    /// How long a process trusts the endpoints it read (a new or deleted endpoint is seen by
    /// every process within this time).
    pub fn with_cache_for(mut self, cache_for: Duration) -> Self {
        self.cache_for = cache_for;
        self
    }

    /// Other pauses between attempts (tests).
    pub fn with_pauses(mut self, pauses: Vec<Duration>) -> Self {
        self.pauses = pauses;
        self
    }

    /// Drops what this process remembers of the endpoints (it just changed them).
    pub async fn forget(&self) {
        *self.cache.lock().await = None;
    }

    async fn endpoints(&self) -> Result<Arc<Vec<Webhook>>, ServiceError> {
        let mut cache = self.cache.lock().await;
        if let Some((read_at, endpoints)) = cache.as_ref()
            && read_at.elapsed() < self.cache_for
        {
            return Ok(endpoints.clone());
        }
        let endpoints = Arc::new(self.store.list_webhooks().await?);
        *cache = Some((Instant::now(), endpoints.clone()));
        Ok(endpoints)
    }

    /// Queues `events` for every endpoint that wants any of them, one job per endpoint;
    /// returns how many jobs. With no endpoint, no queue call.
    pub async fn emit(&self, events: Vec<WebhookEvent>) -> Result<usize, ServiceError> {
        if events.is_empty() {
            return Ok(0);
        }
        let endpoints = self.endpoints().await?;
        let jobs: Vec<WebhookJob> = endpoints
            .iter()
            .filter_map(|w| {
                let wanted: Vec<WebhookEvent> = events
                    .iter()
                    .filter(|e| w.wants(e.event_type))
                    .cloned()
                    .collect();
                (!wanted.is_empty()).then(|| WebhookJob {
                    webhook_id: w.id.clone(),
                    events: wanted,
                    attempt: 0,
                    not_before: None,
                })
            })
            .collect();
        if !jobs.is_empty() {
            self.queues.send_webhooks(&jobs, Duration::ZERO).await?;
        }
        Ok(jobs.len())
    }

    /// Posts a job's events, a request each; the ones that fail go back on the queue for the
    /// next attempt after its pause. An endpoint deleted since takes nothing.
    #[tracing::instrument(name = "webhook", skip_all, fields(webhook = %job.webhook_id, events = job.events.len(), attempt = job.attempt))]
    pub async fn deliver(&self, job: &WebhookJob) -> Result<WebhookReport, ServiceError> {
        let mut report = WebhookReport::default();
        let now = self.clock.now();
        if let Some(not_before) = job.not_before
            && not_before > now
        {
            // Longer than a queue holds a message back: wait another hop.
            let wait = Duration::try_from(not_before.duration_since(now)).unwrap_or_default();
            self.queues
                .send_webhooks(std::slice::from_ref(job), wait.min(MAX_QUEUE_DELAY))
                .await?;
            return Ok(report);
        }
        let Some(webhook) = self.store.get_webhook(&job.webhook_id).await? else {
            tracing::info!("the webhook was deleted: its events are dropped");
            return Ok(report);
        };
        if webhook.disabled.is_some() {
            tracing::info!("the webhook is disabled: its events are dropped");
            report.dropped = job.events.len();
            return Ok(report);
        }
        let started = Instant::now();
        let mut failed = Vec::new();
        let wanted: Vec<&WebhookEvent> = job
            .events
            .iter()
            .filter(|e| webhook.wants(e.event_type))
            .collect();
        for (i, event) in wanted.iter().enumerate() {
            if started.elapsed() >= self.time_budget {
                // Out of time: the rest go on at once, at the same attempt.
                let rest = WebhookJob {
                    events: wanted[i..].iter().map(|e| (*e).clone()).collect(),
                    not_before: None,
                    ..job.clone()
                };
                self.queues.send_webhooks(&[rest], Duration::ZERO).await?;
                break;
            }
            match self.post(&webhook, event).await {
                Ok(()) => report.posted += 1,
                Err(why) => {
                    tracing::warn!(event = %event.id, error = why, "webhook post failed");
                    failed.push((*event).clone());
                }
            }
        }
        if failed.is_empty() {
            return Ok(report);
        }
        match self.pauses.get(job.attempt as usize) {
            Some(&pause) => {
                report.retried = failed.len();
                let next = WebhookJob {
                    webhook_id: job.webhook_id.clone(),
                    events: failed,
                    attempt: job.attempt + 1,
                    not_before: (pause > MAX_QUEUE_DELAY)
                        .then(|| now.checked_add(pause).ok())
                        .flatten(),
                };
                self.queues
                    .send_webhooks(&[next], pause.min(MAX_QUEUE_DELAY))
                    .await?;
            }
            None => {
                report.dropped = failed.len();
                tracing::error!(
                    dropped = failed.len(),
                    "webhook events dropped after the last attempt; the endpoint is disabled"
                );
                self.disable(&webhook, &failed).await?;
            }
        }
        Ok(report)
    }

    /// Stops sending to an endpoint that failed an event's every attempt, with the reason, for
    /// `GET /v1/webhooks` to show.
    async fn disable(
        &self,
        webhook: &Webhook,
        failed: &[WebhookEvent],
    ) -> Result<(), ServiceError> {
        let Some(mut current) = self.store.get_webhook(&webhook.id).await? else {
            return Ok(());
        };
        if current.disabled.is_some() {
            return Ok(());
        }
        let last = failed.last();
        current.disabled = Some(Disabled {
            reason: format!(
                "{} event(s) failed every attempt over about a day; the last: {} ({})",
                failed.len(),
                last.map(|e| e.id.as_str()).unwrap_or_default(),
                last.map(|e| e.event_type.as_str()).unwrap_or_default(),
            ),
            at: self.clock.now(),
        });
        self.store.put_webhook(&current).await?;
        self.forget().await;
        Ok(())
    }

    async fn post(&self, webhook: &Webhook, event: &WebhookEvent) -> Result<(), String> {
        let body = event.body();
        let timestamp = self.clock.now().as_second();
        let signed = signature(&webhook.secret, event.id.as_str(), timestamp, &body)
            .map_err(|e| e.to_string())?;
        let headers = [
            ("content-type", "application/json".to_owned()),
            ("webhook-id", event.id.as_str().to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signed),
        ];
        self.poster.post(webhook.url.as_str(), &headers, body).await
    }
}

/// The data of a delivery's event.
pub fn delivery_event(
    event_type: EventType,
    at: Timestamp,
    key: &DeliveryKey,
    user_id: Option<&UserId>,
    detail: serde_json::Value,
) -> WebhookEvent {
    let mut data = serde_json::json!({
        "notification_id": key.notification_id,
        "recipient": key.recipient,
        "user_id": user_id,
        "channel": key.channel,
    });
    if let (Some(data), serde_json::Value::Object(detail)) = (data.as_object_mut(), detail) {
        data.extend(detail);
    }
    WebhookEvent::new(event_type, at, data)
}

/// The event of a notification that finished in `status` (its counts: `GET` it).
pub fn finished_event(id: &NotificationId, status: Status, at: Timestamp) -> WebhookEvent {
    let event_type = if status == Status::Completed {
        EventType::NotificationCompleted
    } else {
        EventType::NotificationFailed
    };
    WebhookEvent::new(
        event_type,
        at,
        serde_json::json!({"notification_id": id, "status": status}),
    )
}
