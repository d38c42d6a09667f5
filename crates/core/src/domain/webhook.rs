//! Outgoing webhooks: endpoints a backend registers to learn what happened to its
//! notifications without polling, and the events sent to them, signed as the Standard
//! Webhooks specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{EventId, ParseError, WebhookId};

/// What happened, as the event's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "notification.completed")]
    NotificationCompleted,
    /// Finished with failures: `failed` or `partially_failed`.
    #[serde(rename = "notification.failed")]
    NotificationFailed,
    #[serde(rename = "delivery.sent")]
    DeliverySent,
    #[serde(rename = "delivery.failed")]
    DeliveryFailed,
    #[serde(rename = "delivery.delivered")]
    DeliveryDelivered,
    #[serde(rename = "delivery.bounced")]
    DeliveryBounced,
    #[serde(rename = "delivery.complained")]
    DeliveryComplained,
    #[serde(rename = "user.unsubscribed")]
    UserUnsubscribed,
}

impl EventType {
    pub const ALL: [Self; 8] = [
        Self::NotificationCompleted,
        Self::NotificationFailed,
        Self::DeliverySent,
        Self::DeliveryFailed,
        Self::DeliveryDelivered,
        Self::DeliveryBounced,
        Self::DeliveryComplained,
        Self::UserUnsubscribed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotificationCompleted => "notification.completed",
            Self::NotificationFailed => "notification.failed",
            Self::DeliverySent => "delivery.sent",
            Self::DeliveryFailed => "delivery.failed",
            Self::DeliveryDelivered => "delivery.delivered",
            Self::DeliveryBounced => "delivery.bounced",
            Self::DeliveryComplained => "delivery.complained",
            Self::UserUnsubscribed => "user.unsubscribed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| {
                ParseError::new(format!(
                    "must be one of: {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }
}

/// Where events go: an `http` or `https` URL with a host, at most 2,000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.len() > 2000 {
            return Err(ParseError::new("must be at most 2000 characters"));
        }
        let url =
            url::Url::parse(raw).map_err(|e| ParseError::new(format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ParseError::new("must be an http or https URL with a host"));
        }
        // Stored as the URL library writes it (percent-encoded), which must read back.
        let written: String = url.into();
        if written.len() > 2000 {
            return Err(ParseError::new(
                "must be at most 2000 characters, percent-encoded",
            ));
        }
        Ok(Self(written))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = ParseError;
    fn try_from(raw: String) -> Result<Self, ParseError> {
        Self::parse(&raw)
    }
}

impl From<WebhookUrl> for String {
    fn from(url: WebhookUrl) -> String {
        url.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: WebhookUrl,
    /// The event types it receives.
    pub events: Vec<EventType>,
    pub description: Option<String>,
    /// `whsec_` + base64 of 32 random bytes: the key both sides sign with. Shown once, when
    /// the webhook is made; stored as is, since signing needs it.
    pub secret: String,
    pub created_at: Timestamp,
    /// Set when an event still failed after its last attempt: the endpoint gets nothing until
    /// it is enabled again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub reason: String,
    pub at: Timestamp,
}

impl Webhook {
    pub fn new_secret() -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        format!("whsec_{}", STANDARD.encode(bytes))
    }

    /// A secret the client chose: `whsec_` and the base64 of 24 to 64 bytes, as Standard
    /// Webhooks libraries take it.
    pub fn parse_secret(raw: &str) -> Result<String, ParseError> {
        let bytes = raw
            .strip_prefix("whsec_")
            .and_then(|b64| SECRET_BASE64.decode(b64).ok())
            .ok_or_else(|| ParseError::new("must be whsec_ and base64"))?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(ParseError::new(format!(
                "must hold 24 to 64 bytes, not {}",
                bytes.len()
            )));
        }
        Ok(raw.to_owned())
    }

    /// Whether an event of this type goes to this endpoint now.
    pub fn wants(&self, event: EventType) -> bool {
        self.disabled.is_none() && self.events.contains(&event)
    }
}

/// The address a URL names literally (`http://10.0.0.7/`, `http://[::1]/`), which no resolver
/// sees.
pub fn ip_literal(url: &url::Url) -> Option<std::net::IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(ip.into()),
        url::Host::Ipv6(ip) => Some(ip.into()),
        url::Host::Domain(_) => None,
    }
}

/// An address a webhook or push endpoint must not reach unless the deployment allows it:
/// anything but global unicast ([`super::ip_scope::is_global`]). A webhook URL is the
/// client's, and without this check it could make the service call into its own network.
pub fn is_internal(ip: std::net::IpAddr) -> bool {
    !super::ip_scope::is_global(ip)
}

/// Secrets decode as the Standard Webhooks libraries decode them: unused bits of the last
/// character are ignored, not refused.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// One event, the same bytes to every endpoint and on every retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub timestamp: Timestamp,
    pub data: serde_json::Value,
}

impl WebhookEvent {
    pub fn new(event_type: EventType, at: Timestamp, data: serde_json::Value) -> Self {
        Self {
            id: EventId::generate(at),
            event_type,
            timestamp: at,
            data,
        }
    }

    /// The request body: `{"type", "timestamp", "data"}`, as Standard Webhooks shapes it.
    pub fn body(&self) -> String {
        serde_json::json!({
            "type": self.event_type,
            "timestamp": self.timestamp,
            "data": self.data,
        })
        .to_string()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the webhook secret is not whsec_ and base64")]
pub struct BadSecret;

/// `v1,<base64 of HMAC-SHA256>` over `<id>.<timestamp>.<body>`, keyed with the secret's
/// bytes: the `webhook-signature` header.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, BadSecret> {
    let key = SECRET_BASE64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| BadSecret)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|_| BadSecret)?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_specification_example() {
        // The example of the Standard Webhooks specification.
        let signed = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn event_types_and_urls_parse() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()).unwrap(), t);
        }
        assert!(EventType::parse("delivery.opened").is_err());
        assert!(WebhookUrl::parse("https://hooks.example.com/notify").is_ok());
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "192.168.0.1",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "93.184.215.14",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "8.8.8.8",
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
        let ok = format!("whsec_{}", STANDARD.encode([7u8; 32]));
        assert!(Webhook::parse_secret(&ok).is_ok());
        assert!(Webhook::parse_secret(&format!("whsec_{}", STANDARD.encode([7u8; 65]))).is_err());
        assert!(Webhook::parse_secret("whsec_***").is_err());
        for bad in [
            "ftp://x.example",
            "https://",
            "not a url",
            "mailto:a@example.com",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
