//! SES message tags that name the delivery an email is, so that SES's later events about it
//! (delivery, bounce, complaint, which carry the tags back) find its row with no lookup table
//! and no index: a tag costs nothing, a write per send would. SES takes tag values of
//! `[A-Za-z0-9_-]`, at most 256 characters: the recipient key goes as base64url, and a key too
//! long for that (an address of over 180 characters) goes untagged, its events then only
//! suppressing the address.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use notify_core::domain::delivery::DeliveryKey;
use notify_core::domain::{Channel, NotificationId};

pub const NOTIFICATION: &str = "notify-notification";
pub const RECIPIENT: &str = "notify-recipient";

const MAX_VALUE: usize = 256;

/// The tags of one email, or none if its recipient key does not fit in a tag.
pub fn tags(key: &DeliveryKey) -> Vec<(&'static str, String)> {
    let recipient = URL_SAFE_NO_PAD.encode(&key.recipient);
    if recipient.len() > MAX_VALUE {
        return Vec::new();
    }
    vec![
        (NOTIFICATION, key.notification_id.as_str().to_owned()),
        (RECIPIENT, recipient),
    ]
}

/// The email delivery an event's `mail.tags` name, if they do.
pub fn delivery(tags: &HashMap<String, Vec<String>>) -> Option<DeliveryKey> {
    let one = |name: &str| tags.get(name).and_then(|values| values.first());
    let notification_id = NotificationId::parse(one(NOTIFICATION)?).ok()?;
    let recipient = URL_SAFE_NO_PAD.decode(one(RECIPIENT)?).ok()?;
    Some(DeliveryKey {
        notification_id,
        recipient: String::from_utf8(recipient).ok()?,
        channel: Channel::Email,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(recipient: &str) -> DeliveryKey {
        DeliveryKey {
            notification_id: NotificationId::parse("ntf_01KAZ3Q1P3V1NQ9ZC7W2QF6T1R").unwrap(),
            recipient: recipient.into(),
            channel: Channel::Email,
        }
    }

    #[test]
    fn tags_name_the_delivery_back_and_hold_only_what_ses_takes() {
        for recipient in [
            "ada",
            "user:ada@example.org",
            "email:Ada.Lovelace+x@example.org",
        ] {
            let tags = tags(&key(recipient));
            assert_eq!(tags.len(), 2);
            for (_, value) in &tags {
                assert!(value.len() <= MAX_VALUE);
                assert!(
                    value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                    "{value}"
                );
            }
            let as_event: HashMap<String, Vec<String>> = tags
                .into_iter()
                .map(|(k, v)| (k.to_owned(), vec![v]))
                .collect();
            assert_eq!(delivery(&as_event), Some(key(recipient)));
        }
        let long = format!("email:{}@example.org", "a".repeat(190));
        assert!(tags(&key(&long)).is_empty());
        assert_eq!(delivery(&HashMap::new()), None);
    }
}
