//! Categories: a notification's `category` needs no definition; one is defined only to make it
//! transactional (sent whatever users' preferences say, with no unsubscribe link).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::ApiState;
use super::input::{self, Errors, JsonBody};
use super::path::PathId;
use crate::domain::CategoryId;
use crate::domain::category::Category;

const DESCRIPTION_MAX_BYTES: usize = 1000;

pub async fn get(
    State(state): State<ApiState>,
    PathId(id): PathId<CategoryId>,
) -> Result<Response, ApiError> {
    let found = state
        .app
        .store
        .get_category(&id)
        .await?
        .ok_or(ApiError::not_found("category"))?;
    Ok(Json(found).into_response())
}

/// `{"transactional": bool, "description": string?}`; `transactional` is required.
pub async fn put(
    State(state): State<ApiState>,
    PathId(id): PathId<CategoryId>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let map = input::object(&body, "", &["transactional", "description"], &mut errors);
    let (transactional, description) = match map {
        Some(map) => {
            let transactional = input::boolean(map, "", "transactional", &mut errors);
            if map
                .get("transactional")
                .is_none_or(serde_json::Value::is_null)
            {
                errors.add("transactional", "is required: true or false");
            }
            let description =
                input::text(map, "", "description", DESCRIPTION_MAX_BYTES, &mut errors);
            (transactional, description)
        }
        None => (None, None),
    };
    errors.finish()?;
    let category = Category {
        id,
        transactional: transactional.unwrap_or(false),
        description,
    };
    state.app.store.put_category(&category).await?;
    Ok(Json(category).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    PathId(id): PathId<CategoryId>,
) -> Result<Response, ApiError> {
    if state.app.store.delete_category(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("category"))
    }
}
