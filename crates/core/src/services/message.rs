//! Building the outgoing messages. An email is built once as MIME; every sender sends the same bytes.

use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use sha2::{Digest, Sha256};

use crate::domain::EmailAddress;
use crate::domain::delivery::DeliveryKey;
use crate::domain::template::Parts;
use crate::ports::OutgoingEmail;

/// A stable id per delivery, so a provider or a reader can spot a repeated send.
pub fn message_id(key: &DeliveryKey, domain: &str) -> String {
    let digest = Sha256::digest(key.recipient.as_bytes());
    format!(
        "<{}.{}.{}@{}>",
        key.notification_id,
        &hex::encode(digest)[..16],
        key.channel,
        domain
    )
}

pub fn build_email(
    from: &EmailAddress,
    to: &EmailAddress,
    key: &DeliveryKey,
    parts: &Parts,
) -> Result<OutgoingEmail, String> {
    let domain = from
        .as_str()
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("localhost");
    let message_id = message_id(key, domain);
    let from_box: Mailbox = from
        .as_str()
        .parse()
        .map_err(|e| format!("from address: {e}"))?;
    let to_box: Mailbox = to
        .as_str()
        .parse()
        .map_err(|e| format!("to address: {e}"))?;
    let builder = lettre::Message::builder()
        .from(from_box)
        .to(to_box)
        .subject(parts.subject.clone().unwrap_or_default())
        .message_id(Some(message_id.clone()));
    let text = parts.text.clone();
    let html = parts.html.clone();
    let message = match (text, html) {
        (Some(text), Some(html)) => {
            builder.multipart(MultiPart::alternative_plain_html(text, html))
        }
        (Some(text), None) => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(text),
        ),
        (None, Some(html)) => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(html),
        ),
        (None, None) => return Err("the email has no body".into()),
    }
    .map_err(|e| e.to_string())?;
    Ok(OutgoingEmail {
        from: from.clone(),
        to: to.clone(),
        message_id,
        raw: message.formatted(),
    })
}
