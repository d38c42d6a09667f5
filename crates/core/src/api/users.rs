use axum::Json;
use axum::extract::{Path, State, rejection::PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiError;
use super::ApiState;
use super::input::{self, Errors, JsonBody};
use crate::domain::user::{ChannelPrefs, User};
use crate::domain::{EmailAddress, ParseError, PhoneNumber, TimeZoneName, UserId};

pub fn user_id(path: Result<Path<String>, PathRejection>) -> Result<UserId, ApiError> {
    let Path(raw) = path.map_err(|_| ApiError::not_found("user"))?;
    UserId::parse(&raw).map_err(|e| ApiError::invalid("user_id", e.0))
}

pub fn to_json(user: &User) -> Value {
    json!({
        "user_id": user.id,
        "email": user.email,
        "phone": user.phone,
        "timezone": user.timezone,
        "locale": user.locale,
        "channels": {"email": user.channels.email, "sms": user.channels.sms},
    })
}

/// A BCP 47 tag such as `ko-KR`: letters, digits and hyphens, at most 35 characters.
fn parse_locale(raw: &str) -> Result<String, ParseError> {
    let ok = !raw.is_empty()
        && raw.len() <= 35
        && raw
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ParseError::new("must be a BCP 47 language tag, e.g. ko-KR"))
    }
}

fn parse_user(id: UserId, body: &Value) -> Result<User, ApiError> {
    let mut errors = Errors::default();
    let Some(map) = input::object(
        body,
        "",
        &["email", "phone", "timezone", "locale", "channels"],
        &mut errors,
    ) else {
        return Err(errors.finish().unwrap_err());
    };
    let email = input::parsed(map, "", "email", &mut errors, EmailAddress::parse);
    let phone = input::parsed(map, "", "phone", &mut errors, PhoneNumber::parse);
    let timezone = input::parsed(map, "", "timezone", &mut errors, TimeZoneName::parse);
    let locale = input::parsed(map, "", "locale", &mut errors, parse_locale);
    let mut channels = ChannelPrefs::default();
    if let Some(value) = map.get("channels").filter(|v| !v.is_null())
        && let Some(c) = input::object(value, "channels", &["email", "sms"], &mut errors)
    {
        channels.email = input::boolean(c, "channels", "email", &mut errors).unwrap_or(true);
        channels.sms = input::boolean(c, "channels", "sms", &mut errors).unwrap_or(true);
    }
    errors.finish()?;
    Ok(User {
        id,
        email,
        phone,
        timezone,
        locale,
        channels,
    })
}

pub async fn put(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = user_id(path)?;
    let user = parse_user(id, &body)?;
    state.app.store.put_user(&user).await?;
    Ok(Json(to_json(&user)).into_response())
}

pub async fn get(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = user_id(path)?;
    let user = state
        .app
        .store
        .get_user(&id)
        .await?
        .ok_or(ApiError::not_found("user"))?;
    Ok(Json(to_json(&user)).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = user_id(path)?;
    if !state.app.store.delete_user(&id).await? {
        return Err(ApiError::not_found("user"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
