//! How a request fails: a service's error, or one that only HTTP has (a body that is not JSON
//! or too large, a missing key). `IntoResponse` turns each into RFC 9457 problem+json; a 5xx
//! carries its cause chain to `log_server_errors`, the one place that logs it.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ports::{QueueError, StoreError, error_chain};
use crate::services::{FieldError, ServiceError};

const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("missing or wrong API key")]
    Unauthorized,
    /// An inbox route without a valid user token: why.
    #[error("{0}")]
    BadUserToken(&'static str),
    #[error("request body too large")]
    TooLarge,
    /// The key is over its rate; try again after this long.
    #[error("too many requests")]
    RateLimited(std::time::Duration),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Service(ServiceError::invalid(field, message))
    }

    pub fn fields(errors: Vec<FieldError>) -> Self {
        Self::Service(ServiceError::Invalid(errors))
    }

    pub fn not_found(what: &'static str) -> Self {
        Self::Service(ServiceError::NotFound(what))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Service(ServiceError::Conflict(detail.into()))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Service(e.into())
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        Self::Service(e.into())
    }
}

/// The cause of a 5xx answer, for `log_server_errors`; never sent to the client.
#[derive(Clone)]
struct ServerErrorCause(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title, detail, errors) = match &self {
            Self::Malformed(detail) => (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
                detail.clone(),
                vec![],
            ),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "send the API key as `Authorization: Bearer <key>`".to_owned(),
                vec![],
            ),
            Self::BadUserToken(why) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                format!(
                    "{why}: send a user token (POST /v1/users/{{id}}/tokens) as `Authorization: Bearer <token>`"
                ),
                vec![],
            ),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
                "the body may be at most 256 KiB".to_owned(),
                vec![],
            ),
            Self::RateLimited(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!(
                    "this API key is over its rate; retry after {} s",
                    wait.as_secs_f64().ceil().max(1.0)
                ),
                vec![],
            ),
            Self::Service(ServiceError::Invalid(errors)) => (
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
            Self::Service(ServiceError::NotFound(what)) => (
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                format!("no such {what}"),
                vec![],
            ),
            Self::Service(ServiceError::Conflict(detail)) => (
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                detail.clone(),
                vec![],
            ),
            Self::Service(
                ServiceError::Store(_)
                | ServiceError::Dependency(_)
                | ServiceError::FirstKey(_)
                | ServiceError::SigningKey(_),
            ) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "a dependency failed; retry the request (with the same Idempotency-Key)".to_owned(),
                vec![],
            ),
        };
        let mut response = problem(status, kind, title, &detail, &errors);
        if let Self::RateLimited(wait) = &self {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status.is_server_error() {
            response
                .extensions_mut()
                .insert(ServerErrorCause(error_chain(&self)));
        }
        response
    }
}

/// Logs every 5xx answer with its cause chain (which AWS error code, which SQLite error).
pub async fn log_server_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(ServerErrorCause(cause)) = response.extensions().get::<ServerErrorCause>() {
        tracing::error!(status = response.status().as_u16(), error = %cause, "request failed");
    }
    response
}

pub fn problem(
    status: StatusCode,
    kind: &str,
    title: &str,
    detail: &str,
    errors: &[FieldError],
) -> Response {
    let body = serde_json::json!({
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
