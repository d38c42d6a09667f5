//! `POST /v1/users/{user_id}/tokens`: the backend (with the API key) mints a token for one of
//! its users, which that user's browser sends to the inbox routes. `DELETE` ends every token
//! of the user minted so far (a lost device, a leaked token, a signed-out session).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::SignedDuration;
use serde_json::Value;

use super::ApiError;
use super::ApiState;
use super::input::{self, Errors, JsonBody};
use super::path::PathId;
use crate::domain::UserId;
use crate::domain::user_token::{DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS};

pub async fn create(
    State(state): State<ApiState>,
    PathId(user): PathId<UserId>,
    body: Option<JsonBody>,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let mut ttl = DEFAULT_TTL_SECONDS;
    if let Some(JsonBody(body)) = &body
        && !body.is_null()
        && let Some(map) = input::object(body, "", &["ttl_seconds"], &mut errors)
    {
        match map.get("ttl_seconds") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_i64() {
                Some(n) if (60..=MAX_TTL_SECONDS).contains(&n) => ttl = n,
                _ => errors.add(
                    "ttl_seconds",
                    format!("must be a whole number of seconds from 60 to {MAX_TTL_SECONDS}"),
                ),
            },
        }
    }
    errors.finish()?;
    if state.app.store.get_user(&user).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    let (token, expires_at) = state
        .app
        .user_tokens
        .issue(
            state.app.store.as_ref(),
            &user,
            SignedDuration::from_secs(ttl),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "user_id": user,
            "token": token,
            "expires_at": expires_at,
        })),
    )
        .into_response())
}

pub async fn revoke(
    State(state): State<ApiState>,
    PathId(user): PathId<UserId>,
) -> Result<Response, ApiError> {
    if state.app.store.get_user(&user).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    state
        .app
        .user_tokens
        .revoke(state.app.store.as_ref(), &user)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
