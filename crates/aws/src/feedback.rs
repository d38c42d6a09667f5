//! SES event publishing, as the stack's configuration set sends it (through SNS into the
//! feedback queue): a permanent bounce or a complaint puts the address on the suppression list,
//! so that no later send reaches it. Transient and undetermined bounces do not (SES retries
//! those itself, and a full mailbox is no reason to stop mailing someone); neither does a
//! complaint whose feedback type is `not-spam`. A delivery event, a permanent bounce and a
//! complaint also mark the delivery they are about (named by the tags dispatch put on the
//! email, see `delivery_tags`) `delivered`, `bounced` or `complained`. Reject and delay events
//! are read and left alone.

use std::collections::HashMap;

use jiff::Timestamp;
use serde::Deserialize;

use notify_core::domain::delivery::{DeliveryKey, DeliveryStatus};

use notify_core::domain::suppression::{SuppressedAddress, Suppression, SuppressionReason};

use crate::delivery_tags;

/// The message does not read as an SES event (nor an SNS notification holding one).
#[derive(Debug, thiserror::Error)]
#[error("not an SES event: {0}")]
pub struct NotAnSesEvent(#[source] serde_json::Error);

/// What an event asks for.
#[derive(Debug, PartialEq)]
pub struct Feedback {
    /// The event's type, for the log.
    pub event_type: String,
    /// Addresses to suppress.
    pub suppress: Vec<Suppression>,
    /// The delivery the event reports on, and what it became.
    pub delivery: Option<DeliveryReport>,
}

#[derive(Debug, PartialEq)]
pub struct DeliveryReport {
    pub key: DeliveryKey,
    /// SES's id of the message, which the delivery's row holds since its send.
    pub provider_message_id: String,
    pub status: DeliveryStatus,
}

#[derive(Deserialize)]
struct SnsNotification {
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesEvent {
    /// Event publishing names it `eventType`; the older identity notifications, `notificationType`.
    #[serde(alias = "notificationType")]
    event_type: String,
    bounce: Option<Bounce>,
    complaint: Option<Complaint>,
    mail: Option<Mail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    message_id: String,
    #[serde(default)]
    tags: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    bounce_type: String,
    #[serde(default)]
    bounced_recipients: Vec<Recipient>,
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    #[serde(default)]
    complained_recipients: Vec<Recipient>,
    complaint_feedback_type: Option<String>,
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    email_address: String,
}

/// Reads one queue message: an SES event as SNS delivers it raw, or wrapped in an SNS
/// notification (a subscription without raw delivery).
pub fn read(body: &str, now: Timestamp) -> Result<Feedback, NotAnSesEvent> {
    let event: SesEvent = match serde_json::from_str::<SnsNotification>(body) {
        Ok(sns) => serde_json::from_str(&sns.message),
        Err(_) => serde_json::from_str(body),
    }
    .map_err(NotAnSesEvent)?;
    let suppress = |recipients: &[Recipient], reason, at: Option<&String>| {
        let created_at = at.and_then(|t| t.parse().ok()).unwrap_or(now);
        recipients
            .iter()
            .filter_map(|r| {
                let address = SuppressedAddress::parse(&r.email_address);
                if address.is_err() {
                    tracing::warn!("an SES event names an address that does not parse");
                }
                address.ok()
            })
            .map(|address| Suppression {
                address,
                reason,
                created_at,
            })
            .collect()
    };
    let (suppress, status) = match (event.event_type.as_str(), &event.bounce, &event.complaint) {
        ("Bounce", Some(b), _) if b.bounce_type == "Permanent" => (
            suppress(
                &b.bounced_recipients,
                SuppressionReason::Bounce,
                b.timestamp.as_ref(),
            ),
            Some(DeliveryStatus::Bounced),
        ),
        ("Complaint", _, Some(c)) if c.complaint_feedback_type.as_deref() != Some("not-spam") => (
            suppress(
                &c.complained_recipients,
                SuppressionReason::Complaint,
                c.timestamp.as_ref(),
            ),
            Some(DeliveryStatus::Complained),
        ),
        ("Delivery", _, _) => (Vec::new(), Some(DeliveryStatus::Delivered)),
        _ => (Vec::new(), None),
    };
    let delivery = match (status, &event.mail) {
        (Some(status), Some(mail)) => {
            delivery_tags::delivery(&mail.tags).map(|key| DeliveryReport {
                key,
                provider_message_id: mail.message_id.clone(),
                status,
            })
        }
        _ => None,
    };
    Ok(Feedback {
        event_type: event.event_type,
        suppress,
        delivery,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify_core::domain::NotificationId;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-23T00:00:00Z".parse().unwrap()
    }

    fn key() -> DeliveryKey {
        DeliveryKey {
            notification_id: NotificationId::parse("ntf_01KAZ3Q1P3V1NQ9ZC7W2QF6T1R").unwrap(),
            recipient: "ada".into(),
            channel: notify_core::domain::Channel::Email,
        }
    }

    /// `mail` as SES sends it, with the tags dispatch put on the email.
    fn mail() -> serde_json::Value {
        let tags: serde_json::Map<String, serde_json::Value> = delivery_tags::tags(&key())
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!([v])))
            .collect();
        json!({"messageId": "0100-m", "destination": ["Gone@Example.com"], "tags": tags})
    }

    fn bounce(kind: &str) -> serde_json::Value {
        json!({
            "eventType": "Bounce",
            "bounce": {
                "bounceType": kind,
                "bounceSubType": "General",
                "bouncedRecipients": [{"emailAddress": "Gone@Example.com", "action": "failed", "status": "5.1.1"}],
                "timestamp": "2026-11-22T10:00:00.000Z",
                "feedbackId": "0100-a"
            },
            "mail": mail()
        })
    }

    fn report(status: DeliveryStatus) -> Option<DeliveryReport> {
        Some(DeliveryReport {
            key: key(),
            provider_message_id: "0100-m".into(),
            status,
        })
    }

    #[test]
    fn a_permanent_bounce_suppresses_the_address_and_marks_the_delivery_raw_or_through_sns() {
        let expected = Feedback {
            event_type: "Bounce".into(),
            suppress: vec![Suppression {
                address: SuppressedAddress::parse("gone@example.com").unwrap(),
                reason: SuppressionReason::Bounce,
                created_at: "2026-11-22T10:00:00Z".parse().unwrap(),
            }],
            delivery: report(DeliveryStatus::Bounced),
        };
        let raw = bounce("Permanent").to_string();
        assert_eq!(read(&raw, now()).unwrap(), expected);
        let wrapped = json!({"Type": "Notification", "MessageId": "x", "Message": raw}).to_string();
        assert_eq!(read(&wrapped, now()).unwrap(), expected);
    }

    #[test]
    fn a_delivery_marks_the_delivery_and_transient_bounces_and_not_spam_change_nothing() {
        for kind in ["Transient", "Undetermined"] {
            let f = read(&bounce(kind).to_string(), now()).unwrap();
            assert_eq!((f.suppress.len(), f.delivery), (0, None), "{kind}");
        }
        let delivery = json!({"eventType": "Delivery", "mail": mail(), "delivery": {}});
        let f = read(&delivery.to_string(), now()).unwrap();
        assert!(f.suppress.is_empty());
        assert_eq!(f.delivery, report(DeliveryStatus::Delivered));
        // An email sent before the tags (or by something else through the same set).
        let untagged = json!({"eventType": "Delivery", "mail": {"messageId": "m"}, "delivery": {}});
        assert_eq!(read(&untagged.to_string(), now()).unwrap().delivery, None);
        let not_spam = json!({"eventType": "Complaint", "mail": mail(), "complaint": {
            "complainedRecipients": [{"emailAddress": "a@example.com"}],
            "complaintFeedbackType": "not-spam"}});
        let f = read(&not_spam.to_string(), now()).unwrap();
        assert_eq!((f.suppress.len(), f.delivery), (0, None));
    }

    #[test]
    fn a_complaint_suppresses_and_marks_and_junk_is_an_error() {
        let complaint = json!({"notificationType": "Complaint", "mail": mail(), "complaint": {
            "complainedRecipients": [{"emailAddress": "angry@example.com"}]}});
        let f = read(&complaint.to_string(), now()).unwrap();
        assert_eq!(f.suppress.len(), 1);
        assert_eq!(f.suppress[0].reason, SuppressionReason::Complaint);
        assert_eq!(
            f.suppress[0].created_at,
            now(),
            "no timestamp: when it was read"
        );
        assert_eq!(f.delivery, report(DeliveryStatus::Complained));
        assert!(read("{\"chore\": \"sweep\"}", now()).is_err());
        assert!(read("not json", now()).is_err());
    }
}
