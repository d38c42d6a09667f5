//! A user's preferences: `{"categories": {"<category>": {"email": bool, "sms": bool, "in_app": bool}}}`. A
//! (category, channel) left out is on.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::ApiError;
use super::ApiState;
use super::input::{self, Errors, JsonBody};
use super::path::PathId;
use crate::domain::preferences::Preferences;
use crate::domain::{CategoryId, Channel, UserId};

/// More would be a misuse: categories are kinds of message, not one per message.
const MAX_CATEGORIES: usize = 200;

#[derive(Serialize)]
struct PreferencesView<'a> {
    user_id: &'a UserId,
    categories: &'a BTreeMap<CategoryId, BTreeMap<Channel, bool>>,
}

fn view(user: &UserId, preferences: &Preferences) -> Response {
    Json(PreferencesView {
        user_id: user,
        categories: &preferences.categories,
    })
    .into_response()
}

async fn existing_user(state: &ApiState, user: &UserId) -> Result<(), ApiError> {
    state
        .app
        .store
        .get_user(user)
        .await?
        .map(|_| ())
        .ok_or(ApiError::not_found("user"))
}

pub async fn get(
    State(state): State<ApiState>,
    PathId(user): PathId<UserId>,
) -> Result<Response, ApiError> {
    existing_user(&state, &user).await?;
    let preferences = state.app.store.get_preferences(&user).await?;
    Ok(view(&user, &preferences))
}

/// Replaces the user's preferences with the body's.
pub async fn put(
    State(state): State<ApiState>,
    PathId(user): PathId<UserId>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let preferences = parse(&body)?;
    existing_user(&state, &user).await?;
    state.app.store.put_preferences(&user, &preferences).await?;
    Ok(view(&user, &preferences))
}

fn parse(body: &Value) -> Result<Preferences, ApiError> {
    let mut errors = Errors::default();
    let mut preferences = Preferences::default();
    let categories =
        input::object(body, "", &["categories"], &mut errors).and_then(|map| map.get("categories"));
    match categories {
        None | Some(Value::Null) => errors.add("categories", "is required (it may be {})"),
        Some(Value::Object(map)) => {
            if map.len() > MAX_CATEGORIES {
                errors.add(
                    "categories",
                    format!("must have at most {MAX_CATEGORIES} categories"),
                );
            }
            for (raw, channels) in map {
                let at = format!("categories.{raw}");
                let category = CategoryId::parse(raw)
                    .map_err(|e| errors.add(&at, e.0))
                    .ok();
                let Some(channels) = input::object(
                    channels,
                    &at,
                    &["email", "sms", "in_app", "push"],
                    &mut errors,
                ) else {
                    continue;
                };
                let mut switches = BTreeMap::new();
                for channel in Channel::ALL {
                    if let Some(on) = input::boolean(channels, &at, channel.as_str(), &mut errors) {
                        switches.insert(channel, on);
                    }
                }
                if let Some(category) = category {
                    preferences.categories.insert(category, switches);
                }
            }
        }
        Some(_) => errors.add(
            "categories",
            "must be an object such as {\"newsletter\": {\"email\": false}}",
        ),
    }
    errors.finish()?;
    Ok(preferences)
}
