use axum::Json;
use axum::extract::{Path, State, rejection::PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiError;
use super::ApiState;
use super::input::{self, Errors, JsonBody};
use crate::domain::TemplateId;
use crate::domain::template::{Compiled, Parts, Template};

/// Generous for HTML email, well inside the 256 KiB body limit.
pub const MAX_PART_BYTES: usize = 128 * 1024;

fn template_id(path: Result<Path<String>, PathRejection>) -> Result<TemplateId, ApiError> {
    let Path(raw) = path.map_err(|_| ApiError::not_found("template"))?;
    TemplateId::parse(&raw).map_err(|e| ApiError::invalid("template_id", e.0))
}

fn to_json(t: &Template) -> Value {
    json!({
        "template_id": t.id,
        "subject": t.parts.subject,
        "text": t.parts.text,
        "html": t.parts.html,
        "sms": t.parts.sms,
    })
}

/// The four message parts of a JSON object at `at`, each optional.
pub fn parse_parts(map: &serde_json::Map<String, Value>, at: &str, errors: &mut Errors) -> Parts {
    Parts {
        subject: input::text(map, at, "subject", 998, errors),
        text: input::text(map, at, "text", MAX_PART_BYTES, errors),
        html: input::text(map, at, "html", MAX_PART_BYTES, errors),
        sms: input::text(map, at, "sms", 1600, errors),
    }
}

pub async fn put(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = template_id(path)?;
    let mut errors = Errors::default();
    let parts = match input::object(&body, "", &["subject", "text", "html", "sms"], &mut errors) {
        Some(map) => parse_parts(map, "", &mut errors),
        None => Parts::default(),
    };
    if errors.is_empty() && parts.fields().iter().all(|(_, v)| v.is_none()) {
        errors.add("body", "needs at least one of subject, text, html, sms");
    }
    if errors.is_empty()
        && let Err(compile_errors) = Compiled::compile(&parts)
    {
        for (part, why) in compile_errors {
            errors.add(part, format!("does not compile: {why}"));
        }
    }
    errors.finish()?;
    let template = Template { id, parts };
    state.app.store.put_template(&template).await?;
    Ok(Json(to_json(&template)).into_response())
}

pub async fn get(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = template_id(path)?;
    let t = state
        .app
        .store
        .get_template(&id)
        .await?
        .ok_or(ApiError::not_found("template"))?;
    Ok(Json(to_json(&t)).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = template_id(path)?;
    if !state.app.store.delete_template(&id).await? {
        return Err(ApiError::not_found("template"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
