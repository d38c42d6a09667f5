use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiError;
use super::ApiState;
use super::groups::PageView;
use super::input::{self, Errors, JsonBody};
use super::path::PathId;
use crate::domain::api_key::{ApiKey, ApiKeyId};

/// A key as the API shows it: never its secret, except once, when it is made.
#[derive(Serialize)]
struct ApiKeyView<'a> {
    id: &'a ApiKeyId,
    name: &'a str,
    prefix: &'a str,
    created_at: jiff::Timestamp,
    last_used_at: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

impl<'a> ApiKeyView<'a> {
    fn new(k: &'a ApiKey, secret: Option<&'a str>) -> Self {
        Self {
            id: &k.id,
            name: &k.name,
            prefix: &k.prefix,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            secret,
        }
    }
}

pub async fn create(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let name = input::name_only(&body, 100, &mut errors);
    errors.finish()?;
    let new = state.keys.create(name.unwrap_or_default()).await?;
    let view = ApiKeyView::new(&new.key, Some(&new.secret));
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let keys = state.keys.list().await?;
    Ok(Json(PageView {
        items: keys.iter().map(|k| ApiKeyView::new(k, None)).collect(),
        next_cursor: None,
    })
    .into_response())
}

pub async fn revoke(
    State(state): State<ApiState>,
    PathId(id): PathId<ApiKeyId>,
) -> Result<Response, ApiError> {
    state.keys.revoke(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
