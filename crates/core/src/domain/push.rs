//! Push subscriptions: where the `push` channel reaches a user's browsers and phones. A
//! subscription is either a standard Web Push one (RFC 8030 endpoint, RFC 8291 keys), as
//! `PushManager.subscribe()` gives it, or a Firebase Cloud Messaging registration token (an app
//! on a phone). Its id is derived from its endpoint or token, so registering the same browser or
//! app again replaces it instead of adding a second.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ParseError, UserId};

/// The most subscriptions a user keeps (browsers and devices); registering more is refused.
pub const MAX_PER_USER: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PushSubscriptionId(String);

impl PushSubscriptionId {
    const PREFIX: &'static str = "psh_";

    fn of_target(target: &PushTarget) -> Self {
        let named = match target {
            PushTarget::WebPush { endpoint, .. } => endpoint.clone(),
            PushTarget::Fcm { token } => format!("fcm:{token}"),
        };
        let digest = Sha256::digest(named.as_bytes());
        Self(format!("{}{}", Self::PREFIX, &hex::encode(digest)[..32]))
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw.strip_prefix(Self::PREFIX) {
            Some(h)
                if h.len() == 32
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(Self(raw.to_owned()))
            }
            _ => Err(ParseError::new("is not a push subscription id")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PushSubscriptionId {
    type Error = ParseError;
    fn try_from(raw: String) -> Result<Self, ParseError> {
        Self::parse(&raw)
    }
}

impl From<PushSubscriptionId> for String {
    fn from(id: PushSubscriptionId) -> String {
        id.0
    }
}

impl fmt::Display for PushSubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscription {
    pub id: PushSubscriptionId,
    pub user_id: UserId,
    pub target: PushTarget,
    pub created_at: Timestamp,
}

/// Where a push goes, and so which provider takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PushTarget {
    WebPush {
        /// The push service's URL for this browser (RFC 8030).
        endpoint: String,
        /// The browser's P-256 public key, uncompressed (65 bytes), base64url.
        p256dh: String,
        /// The browser's 16-byte authentication secret, base64url.
        auth: String,
    },
    /// An app's FCM registration token.
    Fcm { token: String },
}

/// The longest FCM registration token taken (they are about 160 characters today).
pub const MAX_FCM_TOKEN: usize = 4096;

impl PushSubscription {
    /// An FCM registration token, as the app's Firebase SDK gives it.
    pub fn fcm(user_id: UserId, token: &str, created_at: Timestamp) -> Result<Self, String> {
        let fits = !token.is_empty()
            && token.len() <= MAX_FCM_TOKEN
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'));
        if !fits {
            return Err(format!(
                "must be an FCM registration token: 1 to {MAX_FCM_TOKEN} of A-Z a-z 0-9 - _ : ."
            ));
        }
        let target = PushTarget::Fcm {
            token: token.to_owned(),
        };
        Ok(Self {
            id: PushSubscriptionId::of_target(&target),
            user_id,
            target,
            created_at,
        })
    }

    /// The Web Push endpoint, for a browser's subscription.
    pub fn endpoint(&self) -> Option<&str> {
        match &self.target {
            PushTarget::WebPush { endpoint, .. } => Some(endpoint),
            PushTarget::Fcm { .. } => None,
        }
    }

    /// A subscription as `PushSubscription.toJSON()` gives it: every bad part named (a part
    /// that is `None` was missing or not a string, and is named by the caller).
    pub fn parse(
        user_id: UserId,
        endpoint: Option<&str>,
        p256dh: Option<&str>,
        auth: Option<&str>,
        created_at: Timestamp,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        if let Some(Err(why)) = endpoint.map(check_endpoint) {
            errors.push(("endpoint", why));
        }
        if p256dh.is_some_and(|k| decode(k).is_none_or(|k| k.len() != 65 || k[0] != 4)) {
            errors.push((
                "keys.p256dh",
                "must be an uncompressed P-256 public key (65 bytes), base64url".to_owned(),
            ));
        }
        if auth.is_some_and(|a| decode(a).is_none_or(|a| a.len() != 16)) {
            errors.push(("keys.auth", "must be 16 bytes, base64url".to_owned()));
        }
        let (Some(endpoint), Some(p256dh), Some(auth)) = (endpoint, p256dh, auth) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let target = PushTarget::WebPush {
            endpoint: canonical(endpoint),
            p256dh: p256dh.trim_end_matches('=').to_owned(),
            auth: auth.trim_end_matches('=').to_owned(),
        };
        Ok(Self {
            id: PushSubscriptionId::of_target(&target),
            user_id,
            target,
            created_at,
        })
    }
}

/// A browser's public key and authentication secret, decoded.
pub fn web_push_keys(p256dh: &str, auth: &str) -> (Vec<u8>, Vec<u8>) {
    (
        decode(p256dh).unwrap_or_default(),
        decode(auth).unwrap_or_default(),
    )
}

/// Browsers give base64url, some with padding.
fn decode(raw: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .or_else(|_| URL_SAFE.decode(raw))
        .ok()
}

/// The push services browsers subscribe through: Chrome and Edge's old endpoints (FCM),
/// Firefox (Mozilla), Edge (WNS), Safari (Apple). A subscription's endpoint comes from a
/// browser, which could name anything; a deployment that does not allow private targets
/// pushes only to these.
const PUSH_SERVICES: &[&str] = &[
    "fcm.googleapis.com",
    "android.googleapis.com",
    "push.services.mozilla.com",
    "notify.windows.com",
    "push.apple.com",
];

/// Whether `endpoint` is `https` on a known push service (the service's domain or below it).
pub fn is_known_push_service(endpoint: &str) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else {
        return false;
    };
    let Some(url::Host::Domain(host)) = url.host() else {
        return false;
    };
    url.scheme() == "https"
        && url.port().is_none()
        && PUSH_SERVICES.iter().any(|service| {
            host == *service
                || host
                    .strip_suffix(service)
                    .is_some_and(|sub| sub.ends_with('.'))
        })
}

fn check_endpoint(raw: &str) -> Result<(), String> {
    if raw.len() > 2000 {
        return Err("must be at most 2000 characters".into());
    }
    let url = url::Url::parse(raw).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http or https URL with a host".into());
    }
    Ok(())
}

/// The endpoint as a URL library writes it: what is stored, and what names the subscription.
fn canonical(endpoint: &str) -> String {
    url::Url::parse(endpoint).map_or_else(|_| endpoint.to_owned(), String::from)
}

/// What a push shows, as the service worker receives it (JSON, encrypted to the browser).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushMessage {
    pub notification_id: super::NotificationId,
    pub title: String,
    pub body: Option<String>,
    pub url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn only_https_on_a_known_push_service_is_known() {
        for ok in [
            "https://fcm.googleapis.com/fcm/send/abc",
            "https://updates.push.services.mozilla.com/wpush/v2/abc",
            "https://wns2-par02p.notify.windows.com/w/?token=abc",
            "https://web.push.apple.com/abc",
        ] {
            assert!(is_known_push_service(ok), "{ok}");
        }
        for bad in [
            "http://fcm.googleapis.com/fcm/send/abc",
            "https://fcm.googleapis.com:8443/fcm/send/abc",
            "https://evilfcm.googleapis.com.example.com/x",
            "https://notpush.apple.com.attacker.example/x",
            "https://xpush.apple.com/x",
            "https://127.0.0.1/x",
            "https://push.example.com/x",
        ] {
            assert!(!is_known_push_service(bad), "{bad}");
        }
    }

    #[test]
    fn a_subscription_is_checked_part_by_part_and_named_by_its_endpoint() {
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let ada = UserId::parse("ada").unwrap();
        let parse = |endpoint| {
            PushSubscription::parse(ada.clone(), Some(endpoint), Some(P256DH), Some(AUTH), at)
        };
        let s = parse("https://push.example/abc").unwrap();
        let again = parse("https://push.example/abc").unwrap();
        assert_eq!(s.id, again.id);
        assert_eq!(PushSubscriptionId::parse(s.id.as_str()), Ok(s.id.clone()));
        let PushTarget::WebPush { p256dh, auth, .. } = &s.target else {
            panic!("a browser's subscription")
        };
        assert_eq!(web_push_keys(p256dh, auth).0.len(), 65);
        let phone = PushSubscription::fcm(ada.clone(), "fcm-token:APA91b_x", at).unwrap();
        assert_ne!(phone.id, s.id);
        assert!(PushSubscription::fcm(ada.clone(), "no spaces", at).is_err());
        let bad = PushSubscription::parse(ada, Some("ftp://x"), Some("AAAA"), Some("short"), at)
            .unwrap_err();
        let fields: Vec<_> = bad.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["endpoint", "keys.p256dh", "keys.auth"]);
    }
}
