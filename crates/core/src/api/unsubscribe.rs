//! `/u/{token}`: the one-click unsubscribe link of RFC 8058, reached without an API key. A
//! POST unsubscribes (the mail client's one click, or the page's button); a GET only shows the
//! page with the button, because mail scanners fetch links and a GET must change nothing. A
//! token this deployment did not sign is a 404 and changes nothing.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::ApiState;
use super::ClientAddr;
use crate::domain::webhook::{EventType, WebhookEvent};
use crate::services::ServiceError;
use crate::services::keyed_limit::KeyedLimit;

/// How often `/u/` may be called: each link 10 times a minute (a mail scanner and a click
/// are far below), each client address 120 times a minute. Anyone holding an email holds a
/// link, and each call is a signature check and maybe a write.
pub struct Limits {
    per_link: KeyedLimit,
    per_address: KeyedLimit,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_link: KeyedLimit::new(10.0 / 60.0, 10, 10_000),
            per_address: KeyedLimit::new(2.0, 120, 10_000),
        }
    }
}

impl Limits {
    fn check(&self, token: &str, client: Option<ClientAddr>) -> Result<(), ApiError> {
        if let Some(ClientAddr(ip)) = client {
            self.per_address
                .take(&ip.to_string())
                .map_err(ApiError::RateLimited)?;
        }
        // The token's signature part names the link (the same link, however it is encoded).
        let link = token.rsplit('.').next().unwrap_or(token);
        self.per_link.take(link).map_err(ApiError::RateLimited)
    }
}

/// A token this deployment did not sign names nothing here.
fn link_error(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Invalid(_) => ApiError::not_found("unsubscribe link"),
        other => other.into(),
    }
}

/// The token as sent; one that is not even text (bad percent-encoding) names nothing either.
fn token(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(token)| token)
        .map_err(|_| ApiError::not_found("unsubscribe link"))
}

pub async fn page(
    State(state): State<ApiState>,
    client: Option<axum::Extension<ClientAddr>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let token = token(path)?;
    state
        .unsubscribe_limits
        .check(&token, client.map(|c| c.0))?;
    let t = state
        .app
        .unsubscribe
        .check(&token)
        .await
        .map_err(link_error)?;
    let category = escape(t.category.as_str());
    Ok(html(format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>Unsubscribe</title></head>
<body>
<main>
<h1>Unsubscribe</h1>
<p>Stop emails of the kind “{category}”?</p>
<form method="post">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button>
</form>
</main>
</body>
</html>
"#
    )))
}

/// Whatever the body says (`List-Unsubscribe=One-Click` from a mail client, the form from the
/// page): the link alone decides.
pub async fn confirm(
    State(state): State<ApiState>,
    client: Option<axum::Extension<ClientAddr>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let token = token(path)?;
    state
        .unsubscribe_limits
        .check(&token, client.map(|c| c.0))?;
    let (t, changed) = state
        .app
        .unsubscribe
        .unsubscribe(state.app.store.as_ref(), &token)
        .await
        .map_err(link_error)?;
    // Only a change is an event: every email recipient holds a link, and each post of one
    // would otherwise be a webhook delivery (on AWS, a message, an invocation and a write).
    if changed {
        let event = WebhookEvent::new(
            EventType::UserUnsubscribed,
            state.app.clock.now(),
            serde_json::json!({"user_id": t.user_id, "category": t.category, "channel": "email"}),
        );
        if let Err(e) = state.app.webhooks.emit(vec![event]).await {
            // The unsubscribe itself is done: it is what the recipient asked for.
            tracing::error!(error = %crate::ports::error_chain(&e), "user.unsubscribed event lost");
        }
    }
    let category = escape(t.category.as_str());
    Ok(html(format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="robots" content="noindex"><title>Unsubscribed</title></head>
<body><main><h1>Unsubscribed</h1><p>You will get no more emails of the kind “{category}”.</p></main></body>
</html>
"#
    )))
}

/// The pages load nothing, run nothing and are framed by no one (a framed button can be
/// clicked for the user); the form posts only back here.
const PAGE_CSP: &str =
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

/// Category ids take only `[A-Za-z0-9._:@-]`; escaped all the same, in case that ever widens.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
