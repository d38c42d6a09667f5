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
use crate::domain::template::{Compiled, FUEL, Parts, RenderError, Template};

/// Generous for HTML email, well inside the 256 KiB body limit.
pub const MAX_PART_BYTES: usize = 128 * 1024;
/// An inbox item is read in a list, not as a page.
pub const MAX_IN_APP_CHARS: usize = 4096;
/// A push must fit the 4 KiB a push service takes, encrypted, with its title and URL.
pub const MAX_PUSH_BODY_CHARS: usize = 500;

/// A template as the API shows it.
#[derive(Serialize)]
struct TemplateView<'a> {
    template_id: &'a TemplateId,
    subject: Option<&'a str>,
    text: Option<&'a str>,
    html: Option<&'a str>,
    sms: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_app: Option<PartView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push: Option<PartView<'a>>,
}

/// A part made of a title, a body and a URL (`in_app`, `push`).
#[derive(Serialize)]
struct PartView<'a> {
    title: Option<&'a str>,
    body: Option<&'a str>,
    url: Option<&'a str>,
}

impl<'a> PartView<'a> {
    fn of(title: Option<&'a str>, body: Option<&'a str>, url: Option<&'a str>) -> Option<Self> {
        (title.is_some() || body.is_some() || url.is_some()).then_some(Self { title, body, url })
    }
}

impl<'a> From<&'a Template> for TemplateView<'a> {
    fn from(t: &'a Template) -> Self {
        let p = &t.parts;
        Self {
            template_id: &t.id,
            subject: p.subject.as_deref(),
            text: p.text.as_deref(),
            html: p.html.as_deref(),
            sms: p.sms.as_deref(),
            in_app: PartView::of(
                p.in_app_title.as_deref(),
                p.in_app_body.as_deref(),
                p.in_app_url.as_deref(),
            ),
            push: PartView::of(
                p.push_title.as_deref(),
                p.push_body.as_deref(),
                p.push_url.as_deref(),
            ),
        }
    }
}

/// The keys of a message's parts.
pub const PART_KEYS: &[&str] = &["subject", "text", "html", "sms", "in_app", "push"];

/// The message parts of a JSON object at `at`, each optional.
pub fn parse_parts(map: &serde_json::Map<String, Value>, at: &str, errors: &mut Errors) -> Parts {
    let mut parts = Parts {
        subject: input::text(map, at, "subject", 998, errors),
        text: input::text(map, at, "text", MAX_PART_BYTES, errors),
        html: input::text(map, at, "html", MAX_PART_BYTES, errors),
        sms: input::text(map, at, "sms", 1600, errors),
        ..Parts::default()
    };
    if let Some([title, body, url]) =
        titled_part(map, at, "in_app", "body", MAX_IN_APP_CHARS, errors)
    {
        (parts.in_app_title, parts.in_app_body, parts.in_app_url) = (title, body, url);
    }
    if let Some([title, body, url]) =
        titled_part(map, at, "push", "title", MAX_PUSH_BODY_CHARS, errors)
    {
        (parts.push_title, parts.push_body, parts.push_url) = (title, body, url);
    }
    parts
}

/// A part `{title, body, url}` at `at.key`, with `required` required; a URL with no template
/// syntax is checked now, not at each send.
fn titled_part(
    map: &serde_json::Map<String, Value>,
    at: &str,
    key: &str,
    required: &str,
    max_body_chars: usize,
    errors: &mut Errors,
) -> Option<[Option<String>; 3]> {
    let value = map.get(key).filter(|v| !v.is_null())?;
    let at = input::path(at, key);
    let part = input::object(value, &at, &["title", "body", "url"], errors)?;
    let title = input::text_chars(part, &at, "title", 256, errors);
    let body = input::text_chars(part, &at, "body", max_body_chars, errors);
    let url = input::text_chars(part, &at, "url", MAX_URL_CHARS, errors);
    let present = if required == "title" { &title } else { &body };
    if present.is_none() && !errors.has(&input::path(&at, required)) {
        errors.add(input::path(&at, required), "is required");
    }
    if let Some(url) = &url
        && !url.contains("{{")
        && !url.contains("{%")
        && let Err(why) = ActionUrl::parse(url)
    {
        errors.add(input::path(&at, "url"), why);
    }
    Some([title, body, url])
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
            "needs at least one of subject, text, html, sms, in_app, push",
        );
    }
    if errors.is_empty() {
        // Compiling and the trial render run under the template budget, off the async
        // workers: a template is its author's code.
        let checked = parts.clone();
        let found = tokio::task::spawn_blocking(move || match Compiled::compile(&checked) {
            Err(compile_errors) => compile_errors
                .into_iter()
                .map(|(part, why)| (part, format!("does not compile: {why}")))
                .collect(),
            Ok(compiled) => compiled
                .trial(&checked)
                .into_iter()
                .map(|e| match e {
                    RenderError::OverBudget { part } => (
                        part,
                        format!("runs out of the template budget ({FUEL} steps) on sample data"),
                    ),
                    RenderError::TooLarge { part, limit } => (
                        part,
                        format!("renders to more than {limit} bytes on sample data"),
                    ),
                    RenderError::Failed { part, reason } => (part, reason),
                })
                .collect::<Vec<_>>(),
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        for (part, why) in found {
            errors.add(part, why);
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
