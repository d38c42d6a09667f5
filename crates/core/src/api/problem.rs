//! RFC 9457 problem+json: the one place where errors become HTTP responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, kind, title, detail, errors) = match &self {
            Error::Malformed(detail) => (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
                detail.clone(),
                vec![],
            ),
            Error::Invalid(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
                errors
                    .iter()
                    .map(|e| format!("{} {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                errors.clone(),
            ),
            Error::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                format!("no such {what}"),
                vec![],
            ),
            Error::Conflict(detail) => (
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                detail.clone(),
                vec![],
            ),
            Error::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "send the API key as `Authorization: Bearer <key>`".to_owned(),
                vec![],
            ),
            Error::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
                "the body may be at most 256 KiB".to_owned(),
                vec![],
            ),
            Error::Unavailable(internal) => {
                tracing::error!(error = %internal, "request failed on a dependency");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                    "a dependency failed; retry the request (with the same Idempotency-Key)"
                        .to_owned(),
                    vec![],
                )
            }
        };
        problem(status, kind, title, &detail, &errors)
    }
}

pub fn problem(
    status: StatusCode,
    kind: &str,
    title: &str,
    detail: &str,
    errors: &[crate::error::FieldError],
) -> Response {
    let body = json!({
        "type": format!("https://notify.invalid/problems/{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "errors": errors,
    });
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
