//! Accepting a notification: the one place a 202 is decided. After `accept` returns, the
//! notification is stored and its trigger (fanout job or schedule) exists.

use jiff::SignedDuration;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::App;
use super::ServiceError;
use super::metrics;
use crate::domain::notification::{Content, Notification, Status, Target};
use crate::domain::{CategoryId, Channel, IdempotencyKey, NotificationId, SendAt};
use crate::jobs::FanoutJob;
use crate::ports::{IdempotencyRecord, InsertOutcome};

pub const IDEMPOTENCY_TTL: SignedDuration = SignedDuration::from_hours(24);

/// A request that has passed every check that needs no storage.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub to: Target,
    pub channels: Vec<Channel>,
    pub content: Content,
    pub send_at: SendAt,
    pub category: Option<CategoryId>,
}

/// The `Idempotency-Key` with a hash of the canonical body it came with.
#[derive(Debug, Clone)]
pub struct IdempotentRequest {
    pub key: IdempotencyKey,
    pub request_hash: String,
}

impl IdempotentRequest {
    pub fn new(key: IdempotencyKey, body: &serde_json::Value) -> Self {
        let mut canonical = String::new();
        write_canonical(body, &mut canonical);
        Self {
            key,
            request_hash: hex::encode(Sha256::digest(canonical.as_bytes())),
        }
    }
}

/// JSON with object keys sorted, so that key order and whitespace do not change the hash.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub id: NotificationId,
    /// `{"id", "status", "send_at"}`, exactly as first answered.
    pub body: serde_json::Value,
    /// True when an earlier request with the same `Idempotency-Key` made this answer.
    pub replayed: bool,
}

impl App {
    #[tracing::instrument(skip_all, fields(id))]
    pub async fn accept(
        &self,
        req: NewNotification,
        idem: Option<IdempotentRequest>,
    ) -> Result<Accepted, ServiceError> {
        // Stores keep milliseconds; answer with exactly what is stored.
        let now = self
            .clock
            .now()
            .round(jiff::Unit::Millisecond)
            .unwrap_or(self.clock.now());
        if let Some(idem) = &idem
            && let Some(record) = self.store.find_idempotency(&idem.key, now).await?
        {
            return self.replay(idem, record).await;
        }
        self.check_references(&req).await?;

        let (status, send_at) = match req.send_at {
            SendAt::Now => (Status::Queued, now),
            SendAt::At(at) => (
                Status::Scheduled,
                at.round(jiff::Unit::Millisecond).unwrap_or(at),
            ),
        };
        let id = NotificationId::generate(now);
        tracing::Span::current().record("id", tracing::field::display(&id));
        let category = match (&req.category, &req.to) {
            (Some(category), _) => Some(category.clone()),
            // Group ids and category ids take the same characters.
            (None, Target::GroupId(group)) => CategoryId::parse(group.as_str()).ok(),
            (None, _) => None,
        };
        let notification = Notification {
            id,
            category,
            to: req.to,
            channels: req.channels,
            content: req.content,
            send_at,
            created_at: now,
            status,
        };
        let body = json!({"id": notification.id, "status": status, "send_at": send_at});
        let record = idem.as_ref().map(|idem| IdempotencyRecord {
            key: idem.key.as_str().to_owned(),
            request_hash: idem.request_hash.clone(),
            notification_id: notification.id.clone(),
            response: body.clone(),
            expires_at: now.saturating_add(IDEMPOTENCY_TTL).unwrap_or(now),
        });
        match self
            .store
            .insert_notification(&notification, record.as_ref(), now)
            .await?
        {
            InsertOutcome::Inserted => {}
            InsertOutcome::KeyTaken(existing) => {
                let idem = idem
                    .as_ref()
                    .expect("only a request with a key can find it taken");
                return self.replay(idem, existing).await;
            }
        }
        if let Err(e) = self.ensure_trigger(&notification).await {
            // Without a key the caller cannot safely retry this one, so it must never send later
            // on its own; with a key, the caller's retry replays and re-creates the trigger.
            if idem.is_none() {
                let _ = self
                    .store
                    .transition(
                        &notification.id,
                        &[Status::Queued, Status::Scheduled],
                        Status::Cancelled,
                    )
                    .await;
            }
            return Err(e);
        }
        metrics::accepted(status == Status::Scheduled);
        tracing::info!(id = %notification.id, status = status.as_str(), "notification accepted");
        Ok(Accepted {
            id: notification.id,
            body,
            replayed: false,
        })
    }

    async fn replay(
        &self,
        idem: &IdempotentRequest,
        record: IdempotencyRecord,
    ) -> Result<Accepted, ServiceError> {
        if record.request_hash != idem.request_hash {
            return Err(ServiceError::Conflict(
                "this Idempotency-Key was used with a different request body in the last 24 hours"
                    .into(),
            ));
        }
        // The first request may have stored the notification and then died before its trigger
        // existed; making the trigger again is harmless because both triggers are idempotent.
        if let Some(n) = self.store.get_notification(&record.notification_id).await? {
            self.ensure_trigger(&n).await?;
        }
        Ok(Accepted {
            id: record.notification_id,
            body: record.response,
            replayed: true,
        })
    }

    /// Puts the fanout job on the queue (send now) or creates the schedule (send later).
    pub async fn ensure_trigger(&self, n: &Notification) -> Result<(), ServiceError> {
        match n.status {
            Status::Queued => {
                self.queues
                    .send_fanout(&FanoutJob::start(n.id.clone()))
                    .await?
            }
            Status::Scheduled => self.scheduler.schedule(&n.id, n.send_at).await?,
            _ => {}
        }
        Ok(())
    }

    /// Checks that need the store: the recipient and the template exist and fit the channels.
    async fn check_references(&self, req: &NewNotification) -> Result<(), ServiceError> {
        let mut errors = Vec::new();
        let mut invalid = |field: &str, message: String| {
            errors.push(super::FieldError {
                field: field.to_owned(),
                message,
            })
        };
        match &req.to {
            Target::UserId(id) => {
                if self.store.get_user(id).await?.is_none() {
                    invalid("to.user_id", format!("no user with id {id:?}"));
                }
            }
            Target::GroupId(id) => {
                if self.store.get_group(id).await?.is_none() {
                    invalid("to.group_id", format!("no group with id {id:?}"));
                }
            }
            Target::Email(_) | Target::Phone(_) => {}
        }
        if let Content::Template { id, .. } = &req.content {
            match self.store.get_template(id).await? {
                None => invalid("template.id", format!("no template with id {id:?}")),
                Some(t) => {
                    for channel in &req.channels {
                        if let Some(part) = t.parts.missing_for(*channel) {
                            invalid(
                                "template.id",
                                format!(
                                    "template {id:?} has no {part} part for the {channel} channel"
                                ),
                            );
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Invalid(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_key_order_and_whitespace() {
        let key = IdempotencyKey::parse("k").unwrap();
        let a: serde_json::Value =
            serde_json::from_str(r#"{"a":1,"b":{"x":[1,2],"y":"z"}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "b": {"y":"z", "x":[1, 2]}, "a": 1 }"#).unwrap();
        let c: serde_json::Value =
            serde_json::from_str(r#"{"a":2,"b":{"x":[1,2],"y":"z"}}"#).unwrap();
        assert_eq!(
            IdempotentRequest::new(key.clone(), &a).request_hash,
            IdempotentRequest::new(key.clone(), &b).request_hash
        );
        assert_ne!(
            IdempotentRequest::new(key.clone(), &a).request_hash,
            IdempotentRequest::new(key, &c).request_hash
        );
    }
}
