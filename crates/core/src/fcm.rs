//! `PushSender` for Firebase Cloud Messaging (HTTP v1), the same on both runtimes: a Google
//! service account's signed JWT (RS256) exchanged for an OAuth 2.0 access token (cached until
//! shortly before it expires), then `POST /v1/projects/{project}/messages:send`.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::domain::push::{PushMessage, PushSubscription, PushTarget};
use crate::ports::{PushError, PushSender, SendError, error_chain};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// An access token is renewed this long before Google says it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// The fields of a service account's JSON key file that FCM needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key: String,
    pub token_uri: String,
}

impl ServiceAccount {
    pub fn parse(json: &str) -> Result<Self, String> {
        let account: Self = serde_json::from_str(json)
            .map_err(|e| format!("the service account is not a Google JSON key file: {e}"))?;
        EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| format!("the service account's private_key is not an RSA PEM key: {e}"))?;
        Ok(account)
    }
}

struct AccessToken {
    value: String,
    renew_at: Timestamp,
}

pub struct FcmSender {
    client: reqwest::Client,
    account: ServiceAccount,
    key: EncodingKey,
    /// `https://fcm.googleapis.com`, or a stand-in's.
    api_url: String,
    token: Mutex<Option<AccessToken>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: i64,
}

impl FcmSender {
    pub fn new(account: ServiceAccount, api_url: &str) -> Result<Self, String> {
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| format!("the service account's private_key: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| error_chain(&e))?;
        Ok(Self {
            client,
            account,
            key,
            api_url: api_url.trim_end_matches('/').to_owned(),
            token: Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    async fn access_token(&self) -> Result<String, SendError> {
        let mut cached = self.token.lock().await;
        let now = Timestamp::now();
        if let Some(t) = cached.as_ref().filter(|t| now < t.renew_at) {
            return Ok(t.value.clone());
        }
        let claims = serde_json::json!({
            "iss": self.account.client_email,
            "scope": SCOPE,
            "aud": self.account.token_uri,
            "iat": now.as_second(),
            "exp": now.as_second() + 3600,
        });
        let assertion = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| {
                SendError::permanent(format!("could not sign the FCM token request: {e}"))
            })?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let response = self
            .client
            .post(&self.account.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| SendError::transient(format!("FCM token: {}", error_chain(&e))))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let why = format!("the token endpoint answered {status}: {text}");
            // A refused service account stops the channel, not each delivery.
            return Err(if status.is_server_error() {
                SendError::transient(why)
            } else {
                SendError::paused(why)
            });
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| SendError::transient(format!("the token endpoint's answer: {e}")))?;
        let lifetime = Duration::from_secs(u64::try_from(answer.expires_in).unwrap_or(0));
        let renew_at = now
            .checked_add(lifetime.saturating_sub(RENEW_BEFORE))
            .unwrap_or(now);
        *cached = Some(AccessToken {
            value: answer.access_token.clone(),
            renew_at,
        });
        Ok(answer.access_token)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }
}

/// The `errorCode` of an FCM error answer, if it has one.
fn fcm_error_code(body: &serde_json::Value) -> Option<&str> {
    body["error"]["details"]
        .as_array()?
        .iter()
        .find_map(|d| d["errorCode"].as_str())
}

#[async_trait]
impl PushSender for FcmSender {
    async fn send(
        &self,
        subscription: &PushSubscription,
        message: &PushMessage,
    ) -> Result<String, PushError> {
        let failed = PushError::Failed;
        let PushTarget::Fcm { token } = &subscription.target else {
            return Err(failed(SendError::permanent("not an FCM subscription")));
        };
        let access = self.access_token().await.map_err(failed)?;
        let mut data = serde_json::Map::new();
        data.insert(
            "notification_id".into(),
            message.notification_id.as_str().into(),
        );
        if let Some(url) = &message.url {
            data.insert("url".into(), url.clone().into());
        }
        let mut notification = serde_json::json!({ "title": message.title });
        if let Some(body) = &message.body {
            notification["body"] = body.clone().into();
        }
        let request = serde_json::json!({
            "message": { "token": token, "notification": notification, "data": data }
        });
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.api_url, self.account.project_id
        );
        let response = self
            .client
            .post(url)
            .bearer_auth(&access)
            .json(&request)
            .send()
            .await
            .map_err(|e| failed(SendError::transient(format!("FCM: {}", error_chain(&e)))))?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(body["name"].as_str().unwrap_or_default().to_owned());
        }
        let code = fcm_error_code(&body).unwrap_or("");
        let why = format!("FCM answered {status} {code}");
        match (status, code) {
            // The app was uninstalled or the token expired; or it belongs to another project.
            (_, "UNREGISTERED") | (_, "SENDER_ID_MISMATCH") | (404, _) => Err(PushError::Gone),
            (429, _) | (_, "QUOTA_EXCEEDED") => Err(failed(SendError::throttled(why))),
            (401, _) => {
                // Our access token was refused: the next send asks for a new one.
                self.forget_token().await;
                Err(failed(SendError::transient(why)))
            }
            (500..=599, _) => Err(failed(SendError::transient(why))),
            _ => Err(failed(SendError::permanent(why))),
        }
    }
}

/// The providers behind the one `PushSender` dispatch holds: a browser's subscription goes to
/// Web Push, an app's token to FCM. A provider not configured fails its deliveries, saying so.
pub struct PushProviders {
    pub web_push: Option<std::sync::Arc<dyn PushSender>>,
    pub fcm: Option<std::sync::Arc<dyn PushSender>>,
}

#[async_trait]
impl PushSender for PushProviders {
    async fn send(
        &self,
        subscription: &PushSubscription,
        message: &PushMessage,
    ) -> Result<String, PushError> {
        let (provider, name) = match subscription.target {
            PushTarget::WebPush { .. } => (&self.web_push, "Web Push"),
            PushTarget::Fcm { .. } => (&self.fcm, "FCM"),
        };
        match provider {
            Some(p) => p.send(subscription, message).await,
            None => Err(PushError::Failed(SendError::permanent(format!(
                "{name} is not configured in this deployment"
            )))),
        }
    }
}
