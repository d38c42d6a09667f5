//! SES event publishing, as the stack's configuration set sends it (through SNS into the
//! feedback queue): a permanent bounce or a complaint puts the address on the suppression list,
//! so that no later send reaches it. Transient and undetermined bounces do not (SES retries
//! those itself, and a full mailbox is no reason to stop mailing someone); neither does a
//! complaint whose feedback type is `not-spam`. Delivery, reject and delay events are read
//! and left alone: marking deliveries `delivered`, `bounced` or `complained` is not built yet.

use jiff::Timestamp;
use serde::Deserialize;

use notify_core::domain::suppression::{SuppressedAddress, Suppression, SuppressionReason};

/// The message does not read as an SES event (nor an SNS notification holding one).
#[derive(Debug, thiserror::Error)]
#[error("not an SES event: {0}")]
pub struct NotAnSesEvent(#[source] serde_json::Error);

/// What an event asks for.
#[derive(Debug, PartialEq)]
pub enum Feedback {
    /// Addresses to suppress.
    Suppress(Vec<Suppression>),
    /// Nothing to do here; the event's type, for the log.
    Nothing(String),
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
        Feedback::Suppress(
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
                .collect(),
        )
    };
    Ok(
        match (event.event_type.as_str(), &event.bounce, &event.complaint) {
            ("Bounce", Some(b), _) if b.bounce_type == "Permanent" => suppress(
                &b.bounced_recipients,
                SuppressionReason::Bounce,
                b.timestamp.as_ref(),
            ),
            ("Complaint", _, Some(c))
                if c.complaint_feedback_type.as_deref() != Some("not-spam") =>
            {
                suppress(
                    &c.complained_recipients,
                    SuppressionReason::Complaint,
                    c.timestamp.as_ref(),
                )
            }
            (other, _, _) => Feedback::Nothing(other.to_owned()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-23T00:00:00Z".parse().unwrap()
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
            "mail": {"messageId": "0100-m", "destination": ["Gone@Example.com"]}
        })
    }

    #[test]
    fn a_permanent_bounce_suppresses_the_address_raw_or_through_sns() {
        let expected = Feedback::Suppress(vec![Suppression {
            address: SuppressedAddress::parse("gone@example.com").unwrap(),
            reason: SuppressionReason::Bounce,
            created_at: "2026-11-22T10:00:00Z".parse().unwrap(),
        }]);
        let raw = bounce("Permanent").to_string();
        assert_eq!(read(&raw, now()).unwrap(), expected);
        let wrapped = json!({"Type": "Notification", "MessageId": "x", "Message": raw}).to_string();
        assert_eq!(read(&wrapped, now()).unwrap(), expected);
    }

    #[test]
    fn transient_bounces_deliveries_and_not_spam_change_nothing() {
        for kind in ["Transient", "Undetermined"] {
            assert_eq!(
                read(&bounce(kind).to_string(), now()).unwrap(),
                Feedback::Nothing("Bounce".into())
            );
        }
        let delivery = json!({"eventType": "Delivery", "mail": {"messageId": "m"}, "delivery": {}});
        assert_eq!(
            read(&delivery.to_string(), now()).unwrap(),
            Feedback::Nothing("Delivery".into())
        );
        let not_spam = json!({"eventType": "Complaint", "complaint": {
            "complainedRecipients": [{"emailAddress": "a@example.com"}],
            "complaintFeedbackType": "not-spam"}});
        assert_eq!(
            read(&not_spam.to_string(), now()).unwrap(),
            Feedback::Nothing("Complaint".into())
        );
    }

    #[test]
    fn a_complaint_suppresses_and_junk_is_an_error() {
        let complaint = json!({"notificationType": "Complaint", "complaint": {
            "complainedRecipients": [{"emailAddress": "angry@example.com"}]}});
        match read(&complaint.to_string(), now()).unwrap() {
            Feedback::Suppress(s) => {
                assert_eq!(s.len(), 1);
                assert_eq!(s[0].reason, SuppressionReason::Complaint);
                assert_eq!(s[0].created_at, now(), "no timestamp: when it was read");
            }
            other => panic!("{other:?}"),
        }
        assert!(read("{\"chore\": \"sweep\"}", now()).is_err());
        assert!(read("not json", now()).is_err());
    }
}
