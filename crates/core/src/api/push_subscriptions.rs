//! A user's push subscriptions: registered by the product's backend (API key) or by the user's
//! own browser (that user's token, `require_key_or_own_token`), as the browser's
//! `PushSubscription.toJSON()` gives it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiError;
use super::ApiState;
use super::input::{self, Errors, JsonBody};
use super::path::PathId;
use crate::domain::UserId;
use crate::domain::push::{
    MAX_PER_USER, PushSubscription, PushSubscriptionId, PushTarget, is_known_push_service,
};

/// A subscription as the API shows it: never its keys or token.
#[derive(Serialize)]
struct SubscriptionView<'a> {
    id: &'a PushSubscriptionId,
    kind: &'static str,
    /// A browser's push service URL (`null` for an app's FCM token).
    endpoint: Option<&'a str>,
    created_at: jiff::Timestamp,
}

impl<'a> From<&'a PushSubscription> for SubscriptionView<'a> {
    fn from(s: &'a PushSubscription) -> Self {
        Self {
            id: &s.id,
            kind: match s.target {
                PushTarget::WebPush { .. } => "web_push",
                PushTarget::Fcm { .. } => "fcm",
            },
            endpoint: s.endpoint(),
            created_at: s.created_at,
        }
    }
}

pub async fn create(
    State(state): State<ApiState>,
    PathId(user): PathId<UserId>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let mut parsed = None;
    let now = state.app.clock.now();
    if body
        .as_object()
        .is_some_and(|m| m.contains_key("fcm_token"))
    {
        // An app on a phone: its FCM registration token.
        if let Some(map) = input::object(&body, "", &["fcm_token"], &mut errors)
            && let Some(token) = input::string(map, "", "fcm_token", &mut errors)
        {
            match PushSubscription::fcm(user.clone(), token, now) {
                Ok(s) => parsed = Some(s),
                Err(why) => errors.add("fcm_token", why),
            }
        }
    } else if let Some(map) = input::object(
        &body,
        "",
        &["endpoint", "keys", "expirationTime"],
        &mut errors,
    ) {
        let endpoint = input::string(map, "", "endpoint", &mut errors);
        if !map.contains_key("endpoint") {
            errors.add("endpoint", "is required");
        }
        let keys = match map.get("keys") {
            Some(k) => input::object(k, "keys", &["p256dh", "auth"], &mut errors),
            None => {
                errors.add("keys", "is required");
                None
            }
        };
        let (p256dh, auth) = match keys {
            Some(k) => (
                input::string(k, "keys", "p256dh", &mut errors),
                input::string(k, "keys", "auth", &mut errors),
            ),
            None => (None, None),
        };
        if let Some(k) = keys {
            for key in ["p256dh", "auth"] {
                if !k.contains_key(key) {
                    errors.add(format!("keys.{key}"), "is required");
                }
            }
        }
        match PushSubscription::parse(user.clone(), endpoint, p256dh, auth, now) {
            Ok(s)
                if !state.app.webhooks.allows_internal()
                    && !s.endpoint().is_some_and(is_known_push_service) =>
            {
                errors.add(
                    "endpoint",
                    "must be https on a browser push service (FCM, Mozilla, Windows, Apple)",
                );
            }
            Ok(s) => parsed = Some(s),
            Err(bad) => {
                for (field, why) in bad {
                    errors.add(field, why);
                }
            }
        }
    }
    errors.finish()?;
    let subscription = parsed.ok_or_else(|| ApiError::invalid("body", "is incomplete"))?;
    if state.app.store.get_user(&user).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    let existing = state.app.store.list_push_subscriptions(&user).await?;
    if existing.len() >= MAX_PER_USER && !existing.iter().any(|s| s.id == subscription.id) {
        return Err(ApiError::conflict(format!(
            "the user has {MAX_PER_USER} push subscriptions; delete one first"
        )));
    }
    state.app.store.put_push_subscription(&subscription).await?;
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionView::from(&subscription)),
    )
        .into_response())
}

pub async fn list(
    State(state): State<ApiState>,
    PathId(user): PathId<UserId>,
) -> Result<Response, ApiError> {
    let subscriptions = state.app.store.list_push_subscriptions(&user).await?;
    let items: Vec<SubscriptionView> = subscriptions.iter().map(SubscriptionView::from).collect();
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    PathId(user): PathId<UserId>,
    PathId(id): PathId<PushSubscriptionId>,
) -> Result<Response, ApiError> {
    if !state.app.store.delete_push_subscription(&user, &id).await? {
        return Err(ApiError::not_found("push subscription"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/push/vapid-public-key`: the browser's `applicationServerKey`. Public.
pub async fn vapid_public_key(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let key = state
        .vapid_public_key
        .as_ref()
        .ok_or(ApiError::not_found("push configuration"))?;
    Ok(Json(serde_json::json!({ "public_key": key })).into_response())
}
