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
use crate::domain::TemplateId;
use crate::domain::template::{Compiled, Parts, Template};

/// Generous for HTML email, well inside the 256 KiB body limit.
pub const MAX_PART_BYTES: usize = 128 * 1024;

/// A template as the API shows it.
#[derive(Serialize)]
struct TemplateView<'a> {
    template_id: &'a TemplateId,
    subject: Option<&'a str>,
    text: Option<&'a str>,
    html: Option<&'a str>,
    sms: Option<&'a str>,
}

impl<'a> From<&'a Template> for TemplateView<'a> {
    fn from(t: &'a Template) -> Self {
        Self {
            template_id: &t.id,
            subject: t.parts.subject.as_deref(),
            text: t.parts.text.as_deref(),
            html: t.parts.html.as_deref(),
            sms: t.parts.sms.as_deref(),
        }
    }
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
    PathId(id): PathId<TemplateId>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
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
    Ok(Json(TemplateView::from(&template)).into_response())
}

pub async fn get(
    State(state): State<ApiState>,
    PathId(id): PathId<TemplateId>,
) -> Result<Response, ApiError> {
    let t = state
        .app
        .store
        .get_template(&id)
        .await?
        .ok_or(ApiError::not_found("template"))?;
    Ok(Json(TemplateView::from(&t)).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    PathId(id): PathId<TemplateId>,
) -> Result<Response, ApiError> {
    if !state.app.store.delete_template(&id).await? {
        return Err(ApiError::not_found("template"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
