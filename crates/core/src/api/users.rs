use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::ApiError;
use super::ApiState;
use super::input::{self, Errors, JsonBody};
use super::path::PathId;
use crate::domain::user::{ChannelPrefs, User};
use crate::domain::{EmailAddress, ParseError, PhoneNumber, TimeZoneName, UserId};

/// A user as the API shows it.
#[derive(Serialize)]
pub struct UserView<'a> {
    user_id: &'a UserId,
    email: Option<&'a EmailAddress>,
    phone: Option<&'a PhoneNumber>,
    timezone: Option<&'a TimeZoneName>,
    locale: Option<&'a str>,
    channels: ChannelPrefs,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(user: &'a User) -> Self {
        Self {
            user_id: &user.id,
            email: user.email.as_ref(),
            phone: user.phone.as_ref(),
            timezone: user.timezone.as_ref(),
            locale: user.locale.as_deref(),
            channels: user.channels,
        }
    }
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
        && let Some(c) = input::object(
            value,
            "channels",
            &["email", "sms", "in_app", "push"],
            &mut errors,
        )
    {
        channels.email = input::boolean(c, "channels", "email", &mut errors).unwrap_or(true);
        channels.sms = input::boolean(c, "channels", "sms", &mut errors).unwrap_or(true);
        channels.in_app = input::boolean(c, "channels", "in_app", &mut errors).unwrap_or(true);
        channels.push = input::boolean(c, "channels", "push", &mut errors).unwrap_or(true);
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
    PathId(id): PathId<UserId>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let user = parse_user(id, &body)?;
    state.app.store.put_user(&user).await?;
    Ok(Json(UserView::from(&user)).into_response())
}

pub async fn get(
    State(state): State<ApiState>,
    PathId(id): PathId<UserId>,
) -> Result<Response, ApiError> {
    let user = state
        .app
        .store
        .get_user(&id)
        .await?
        .ok_or(ApiError::not_found("user"))?;
    Ok(Json(UserView::from(&user)).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    PathId(id): PathId<UserId>,
) -> Result<Response, ApiError> {
    // Its tokens end first: a token must not outlive its user, nor serve a user made again
    // under the same id.
    if state.app.store.get_user(&id).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    state
        .app
        .user_tokens
        .revoke(state.app.store.as_ref(), &id)
        .await?;
    if !state.app.store.delete_user(&id).await? {
        return Err(ApiError::not_found("user"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
