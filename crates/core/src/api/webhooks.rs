//! Webhook endpoints: `POST /v1/webhooks` (the secret is shown once, in its answer), `GET`
//! (one or all, never the secret), `DELETE`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::ApiError;
use super::ApiState;
use super::groups::PageView;
use super::input::{self, Errors, JsonBody};
use super::path::PathId;
use crate::domain::WebhookId;
use crate::domain::webhook::{Disabled, EventType, Webhook, WebhookUrl};

/// Endpoints per deployment: each event is posted to each, so more is a misuse.
const MAX_WEBHOOKS: usize = 20;
const DESCRIPTION_MAX_BYTES: usize = 1000;

#[derive(Serialize)]
struct WebhookView<'a> {
    id: &'a WebhookId,
    url: &'a str,
    events: &'a [EventType],
    description: Option<&'a str>,
    created_at: jiff::Timestamp,
    /// Why the endpoint gets nothing, if it does not.
    disabled: Option<&'a Disabled>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

impl<'a> WebhookView<'a> {
    fn new(w: &'a Webhook, with_secret: bool) -> Self {
        Self {
            id: &w.id,
            url: w.url.as_str(),
            events: &w.events,
            description: w.description.as_deref(),
            created_at: w.created_at,
            disabled: w.disabled.as_ref(),
            secret: with_secret.then_some(w.secret.as_str()),
        }
    }
}

fn parse_events(map: &serde_json::Map<String, Value>, errors: &mut Errors) -> Vec<EventType> {
    let mut events = Vec::new();
    match map.get("events") {
        None | Some(Value::Null) => errors.add("events", "is required: the event types to send"),
        Some(Value::Array(items)) if items.is_empty() => {
            errors.add("events", "must name at least one event type")
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(EventType::parse) {
                    Some(Ok(t)) if events.contains(&t) => {
                        errors.add(format!("events[{i}]"), "is listed twice")
                    }
                    Some(Ok(t)) => events.push(t),
                    Some(Err(e)) => errors.add(format!("events[{i}]"), e.0),
                    None => errors.add(format!("events[{i}]"), "must be a string"),
                }
            }
        }
        Some(_) => errors.add("events", "must be an array such as [\"delivery.failed\"]"),
    }
    events
}

pub async fn create(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let Some(map) = input::object(
        &body,
        "",
        &["url", "events", "description", "secret"],
        &mut errors,
    ) else {
        return Err(errors.finish().unwrap_err());
    };
    if map.get("url").is_none_or(Value::is_null) {
        errors.add("url", "is required");
    }
    let url = input::parsed(map, "", "url", &mut errors, WebhookUrl::parse);
    let events = parse_events(map, &mut errors);
    let description = input::text(map, "", "description", DESCRIPTION_MAX_BYTES, &mut errors);
    let secret = input::parsed(map, "", "secret", &mut errors, Webhook::parse_secret);
    if let Some(url) = &url
        && let Err(why) = state.app.webhooks.check_target(url).await
    {
        errors.add("url", why);
    }
    errors.finish()?;
    let Some(url) = url else {
        return Err(ApiError::invalid("url", "is required"));
    };
    if state.app.store.list_webhooks().await?.len() >= MAX_WEBHOOKS {
        return Err(ApiError::Service(crate::services::ServiceError::Conflict(
            format!("at most {MAX_WEBHOOKS} webhooks; delete one first"),
        )));
    }
    let now = state.app.clock.now();
    let webhook = Webhook {
        id: WebhookId::generate(now),
        url,
        events,
        description,
        secret: secret.unwrap_or_else(Webhook::new_secret),
        created_at: now.round(jiff::Unit::Millisecond).unwrap_or(now),
        disabled: None,
    };
    state.app.store.put_webhook(&webhook).await?;
    state.app.webhooks.forget().await;
    let location = format!("/v1/webhooks/{}", webhook.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(WebhookView::new(&webhook, true)),
    )
        .into_response())
}

pub async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let webhooks = state.app.store.list_webhooks().await?;
    Ok(Json(PageView {
        items: webhooks
            .iter()
            .map(|w| WebhookView::new(w, false))
            .collect(),
        next_cursor: None,
    })
    .into_response())
}

pub async fn get(
    State(state): State<ApiState>,
    PathId(id): PathId<WebhookId>,
) -> Result<Response, ApiError> {
    let found = state
        .app
        .store
        .get_webhook(&id)
        .await?
        .ok_or(ApiError::not_found("webhook"))?;
    Ok(Json(WebhookView::new(&found, false)).into_response())
}

/// Sends to a disabled endpoint again (events dropped while it was disabled are not sent).
pub async fn enable(
    State(state): State<ApiState>,
    PathId(id): PathId<WebhookId>,
) -> Result<Response, ApiError> {
    let mut found = state
        .app
        .store
        .get_webhook(&id)
        .await?
        .ok_or(ApiError::not_found("webhook"))?;
    if found.disabled.take().is_some() {
        state.app.store.put_webhook(&found).await?;
        state.app.webhooks.forget().await;
    }
    Ok(Json(WebhookView::new(&found, false)).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    PathId(id): PathId<WebhookId>,
) -> Result<Response, ApiError> {
    if state.app.store.delete_webhook(&id).await? {
        state.app.webhooks.forget().await;
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("webhook"))
    }
}
