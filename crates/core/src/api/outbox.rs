//! The local outbox (`notifyd` without SMTP or an SMS webhook): what was "sent", for the
//! console. A runtime without one answers 404.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiError;
use super::ApiState;
use super::input::Errors;
use crate::domain::email_view::EmailView;
use crate::ports::{DependencyError, Outbox, OutboxEmail, OutboxSms};

/// The most items a list answers: the outbox is read from files, newest first, with no cursor.
const MAX_LIMIT: usize = 200;

#[derive(Serialize)]
struct EmailEntry {
    id: String,
    written_at: jiff::Timestamp,
    #[serde(flatten)]
    view: EmailView,
}

impl EmailEntry {
    fn new(email: OutboxEmail) -> Self {
        Self {
            // Any bytes may be in the folder; what does not parse still shows as text.
            view: EmailView::parse_or_text(&email.raw),
            id: email.id,
            written_at: email.written_at,
        }
    }
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

fn outbox(state: &ApiState) -> Result<&dyn Outbox, ApiError> {
    state.outbox.as_deref().ok_or(ApiError::not_found(
        "outbox (this deployment sends through providers)",
    ))
}

fn limit(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    let mut errors = Errors::default();
    let limit = match query.get("limit") {
        None => 50,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.add(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                );
                0
            }
        },
    };
    errors.finish()?;
    Ok(limit)
}

/// The newest emails, whole (the console lists them with their subject and addresses).
pub async fn emails(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = limit(&query)?;
    let emails = outbox(&state)?
        .emails(limit)
        .await
        .map_err(|e| DependencyError::outbox("listing the emails", e))
        .map_err(crate::services::ServiceError::from)?;
    let items = emails.into_iter().map(EmailEntry::new).collect();
    Ok(Json(Items { items }).into_response())
}

pub async fn email(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let email = outbox(&state)?
        .email(&id)
        .await
        .map_err(|e| DependencyError::outbox("reading an email", e))
        .map_err(crate::services::ServiceError::from)?
        .ok_or(ApiError::not_found("email"))?;
    Ok(Json(EmailEntry::new(email)).into_response())
}

pub async fn sms(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = limit(&query)?;
    let items: Vec<OutboxSms> = outbox(&state)?
        .sms(limit)
        .await
        .map_err(|e| DependencyError::outbox("listing the SMS", e))
        .map_err(crate::services::ServiceError::from)?;
    Ok(Json(Items { items }).into_response())
}
