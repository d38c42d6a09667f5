//! Building the outgoing messages. An email is built once as MIME; every sender sends the same bytes.

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
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

/// `List-Unsubscribe: <url>` (RFC 2369), which mail clients show as an unsubscribe button.
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.trim().to_owned()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058): the link unsubscribes
/// with a POST and nothing else, so the client may do it without opening a page.
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_owned())
    }
}

/// The email of one delivery; `unsubscribe` is its one-click link, if its category can be left.
pub fn build_email(
    from: &EmailAddress,
    to: &EmailAddress,
    key: &DeliveryKey,
    parts: &Parts,
    unsubscribe: Option<&str>,
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
    let mut builder = lettre::Message::builder()
        .from(from_box)
        .to(to_box)
        .subject(parts.subject.clone().unwrap_or_default())
        .message_id(Some(message_id.clone()));
    if let Some(url) = unsubscribe {
        builder = builder
            .header(ListUnsubscribe(format!("<{url}>")))
            .header(ListUnsubscribePost);
    }
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
        delivery: key.clone(),
    })
}
