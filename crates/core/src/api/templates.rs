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
use crate::domain::inbox::{ActionUrl, MAX_URL_CHARS};
use crate::domain::template::{Compiled, Parts, Template};

/// Generous for HTML email, well inside the 256 KiB body limit.
pub const MAX_PART_BYTES: usize = 128 * 1024;
/// An inbox item is read in a list, not as a page.
pub const MAX_IN_APP_CHARS: usize = 4096;

/// A template as the API shows it.
#[derive(Serialize)]
struct TemplateView<'a> {
    template_id: &'a TemplateId,
    subject: Option<&'a str>,
    text: Option<&'a str>,
    html: Option<&'a str>,
    sms: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_app: Option<InAppView<'a>>,
}

#[derive(Serialize)]
pub struct InAppView<'a> {
    title: Option<&'a str>,
    body: Option<&'a str>,
    url: Option<&'a str>,
}

impl<'a> InAppView<'a> {
    pub fn of(parts: &'a Parts) -> Option<Self> {
        let view = Self {
            title: parts.in_app_title.as_deref(),
            body: parts.in_app_body.as_deref(),
            url: parts.in_app_url.as_deref(),
        };
        (view.title.is_some() || view.body.is_some() || view.url.is_some()).then_some(view)
    }
}

impl<'a> From<&'a Template> for TemplateView<'a> {
    fn from(t: &'a Template) -> Self {
        Self {
            template_id: &t.id,
            subject: t.parts.subject.as_deref(),
            text: t.parts.text.as_deref(),
            html: t.parts.html.as_deref(),
            sms: t.parts.sms.as_deref(),
            in_app: InAppView::of(&t.parts),
        }
    }
}

/// The keys of a message's parts.
pub const PART_KEYS: &[&str] = &["subject", "text", "html", "sms", "in_app"];

/// The message parts of a JSON object at `at`, each optional.
pub fn parse_parts(map: &serde_json::Map<String, Value>, at: &str, errors: &mut Errors) -> Parts {
    let mut parts = Parts {
        subject: input::text(map, at, "subject", 998, errors),
        text: input::text(map, at, "text", MAX_PART_BYTES, errors),
        html: input::text(map, at, "html", MAX_PART_BYTES, errors),
        sms: input::text(map, at, "sms", 1600, errors),
        ..Parts::default()
    };
    if let Some(value) = map.get("in_app").filter(|v| !v.is_null()) {
        let at = input::path(at, "in_app");
        if let Some(in_app) = input::object(value, &at, &["title", "body", "url"], errors) {
            parts.in_app_title = input::text_chars(in_app, &at, "title", 256, errors);
            parts.in_app_body = input::text_chars(in_app, &at, "body", MAX_IN_APP_CHARS, errors);
            parts.in_app_url = input::text_chars(in_app, &at, "url", MAX_URL_CHARS, errors);
            if parts.in_app_body.is_none() && !errors.has(&input::path(&at, "body")) {
                errors.add(input::path(&at, "body"), "is required");
            }
            // A URL with no template syntax is checked now, not at each send.
            if let Some(url) = &parts.in_app_url
                && !url.contains("{{")
                && !url.contains("{%")
                && let Err(why) = ActionUrl::parse(url)
            {
                errors.add(input::path(&at, "url"), why);
            }
        }
    }
    parts
}

pub async fn put(
    State(state): State<ApiState>,
    PathId(id): PathId<TemplateId>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let parts = match input::object(&body, "", PART_KEYS, &mut errors) {
        Some(map) => parse_parts(map, "", &mut errors),
        None => Parts::default(),
    };
    if errors.is_empty() && parts.fields().iter().all(|(_, v)| v.is_none()) {
        errors.add(
            "body",
            "needs at least one of subject, text, html, sms, in_app",
        );
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
