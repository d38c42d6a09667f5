//! Dispatch: for each recipient and channel of a job, claim the delivery, render, send, record.
//!
//! Claim protocol: a delivery is `pending` with a free lease → claimed (lease until now + lease,
//! attempts + 1) → `sent` | `failed` | back to `pending` with the lease released (transient
//! error). A worker that dies mid-send leaves the lease to expire; the job comes back from the
//! queue and the next worker takes it over. Only that crash can repeat a send.

use std::sync::Arc;

use jiff::SignedDuration;

use crate::delivery::{Claim, Delivery, DeliveryKey, Outcome, Recipient};
use crate::domain::{Channel, EmailAddress};
use crate::error::Error;
use crate::jobs::DispatchJob;
use crate::notification::Content;
use crate::ports::{Clock, EmailSender, OutgoingSms, SendError, SendErrorKind, SmsSender, Store};
use crate::template::{Compiled, Parts};

use super::message;

pub struct Dispatch {
    pub store: Arc<dyn Store>,
    pub email: Arc<dyn EmailSender>,
    pub sms: Arc<dyn SmsSender>,
    pub clock: Arc<dyn Clock>,
    pub settings: DispatchSettings,
}

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub from: EmailAddress,
    /// How long a claim protects a delivery from other workers; longer than any provider call.
    pub lease: SignedDuration,
    /// Attempts per delivery before a transient error becomes `failed`.
    pub max_attempts: u32,
}

/// What one job did. `retry` asks the queue to bring the job back later (with backoff).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DispatchReport {
    pub sent: usize,
    pub failed: usize,
    pub already_done: usize,
    pub retry: bool,
}

/// The parts to render for this notification, compiled once per job.
enum Source {
    Inline(Parts),
    Template { parts: Parts, compiled: Box<Compiled>, data: serde_json::Map<String, serde_json::Value> },
    Broken(String),
}

impl Dispatch {
    pub async fn handle(&self, job: &DispatchJob) -> Result<DispatchReport, Error> {
        let mut report = DispatchReport::default();
        let Some(n) = self.store.get_notification(&job.notification_id).await? else {
            tracing::warn!(id = %job.notification_id, "dispatch job for an unknown notification");
            return Ok(report);
        };
        let source = match &n.content {
            Content::Inline(parts) => Source::Inline(parts.clone()),
            Content::Template { id, data } => match self.store.get_template(id).await? {
                None => Source::Broken(format!("template {id:?} was deleted before the send")),
                Some(t) => match Compiled::compile(&t.parts) {
                    Ok(compiled) => Source::Template { parts: t.parts, compiled: Box::new(compiled), data: data.clone() },
                    Err(errors) => Source::Broken(format!("template {id:?} does not compile: {errors:?}")),
                },
            },
        };
        for item in &job.items {
            for &channel in &item.channels {
                let planned = Delivery::pending(&n.id, &item.recipient, channel);
                let key = planned.key.clone();
                let now = self.clock.now();
                let lease_until = now.saturating_add(self.settings.lease).unwrap_or(now);
                let attempt = match self.store.claim_delivery(&planned, now, lease_until).await? {
                    Claim::Claimed { attempt } => attempt,
                    Claim::Done => {
                        report.already_done += 1;
                        continue;
                    }
                    // Another worker holds it; if that worker dies, this job's retry takes over.
                    Claim::Busy => {
                        report.retry = true;
                        continue;
                    }
                };
                let outcome = match self.deliver(&source, &item.recipient, channel, &key).await {
                    Ok(provider_message_id) => Outcome::Sent { provider_message_id, at: self.clock.now() },
                    Err(e) if e.kind == SendErrorKind::Transient && attempt < self.settings.max_attempts => {
                        Outcome::Retry { error: e.message }
                    }
                    Err(e) if e.kind == SendErrorKind::Transient => {
                        Outcome::Failed { error: format!("gave up after {attempt} attempts: {}", e.message) }
                    }
                    Err(e) => Outcome::Failed { error: e.message },
                };
                match &outcome {
                    Outcome::Sent { .. } => report.sent += 1,
                    Outcome::Failed { error } => {
                        tracing::warn!(id = %n.id, %channel, error, "delivery failed");
                        report.failed += 1
                    }
                    Outcome::Retry { error } => {
                        tracing::info!(id = %n.id, %channel, attempt, error, "delivery will be retried");
                        report.retry = true
                    }
                }
                self.store.record_outcome(&key, &outcome).await?;
            }
        }
        self.store.finish_if_done(&n.id).await?;
        Ok(report)
    }

    async fn deliver(&self, source: &Source, recipient: &Recipient, channel: Channel, key: &DeliveryKey) -> Result<String, SendError> {
        let parts = match source {
            Source::Inline(parts) => parts.clone(),
            Source::Template { parts, compiled, data } => {
                let mut context = data.clone();
                context.insert("user".into(), recipient.template_context());
                compiled.render(parts, &serde_json::Value::Object(context)).map_err(SendError::permanent)?
            }
            Source::Broken(why) => return Err(SendError::permanent(why.clone())),
        };
        match channel {
            Channel::Email => {
                let to = recipient.email.as_ref().ok_or_else(|| SendError::permanent("no email address"))?;
                let email = message::build_email(&self.settings.from, to, key, &parts).map_err(SendError::permanent)?;
                self.email.send(&email).await
            }
            Channel::Sms => {
                let to = recipient.phone.clone().ok_or_else(|| SendError::permanent("no phone number"))?;
                let body = parts.sms.ok_or_else(|| SendError::permanent("no sms text"))?;
                let domain = "sms";
                self.sms.send(&OutgoingSms { to, body, message_id: message::message_id(key, domain) }).await
            }
        }
    }
}
