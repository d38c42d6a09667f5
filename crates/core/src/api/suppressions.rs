//! The suppression list: addresses every later send skips (`skipped`, "suppressed: <reason>"),
//! before any provider call.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiError;
use super::ApiState;
use super::groups::PageView;
use super::input::{self, Errors, JsonBody};
use super::path::PathId;
use crate::domain::Channel;
use crate::domain::suppression::{SuppressedAddress, Suppression, SuppressionReason};

/// A suppression as the API shows it.
#[derive(Serialize)]
struct SuppressionView<'a> {
    address: &'a str,
    channel: Channel,
    reason: SuppressionReason,
    created_at: jiff::Timestamp,
}

impl<'a> From<&'a Suppression> for SuppressionView<'a> {
    fn from(s: &'a Suppression) -> Self {
        Self {
            address: s.address.as_str(),
            channel: s.address.channel(),
            reason: s.reason,
            created_at: s.created_at,
        }
    }
}

pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let page = input::page_query(&query, &mut errors);
    errors.finish()?;
    let result = state
        .app
        .store
        .list_suppressions(page.limit, page.cursor.as_deref())
        .await?;
    Ok(Json(PageView::of(&result, SuppressionView::from)).into_response())
}

pub async fn get(
    State(state): State<ApiState>,
    PathId(address): PathId<SuppressedAddress>,
) -> Result<Response, ApiError> {
    let found = state
        .app
        .store
        .get_suppression(&address)
        .await?
        .ok_or(ApiError::not_found("suppression"))?;
    Ok(Json(SuppressionView::from(&found)).into_response())
}

/// Adds the address (or replaces its reason); `{"reason": ...}`, `manual` when left out.
pub async fn put(
    State(state): State<ApiState>,
    PathId(address): PathId<SuppressedAddress>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let reason = input::object(&body, "", &["reason"], &mut errors).and_then(|map| {
        input::parsed(map, "", "reason", &mut errors, |raw| {
            SuppressionReason::parse(raw).ok_or_else(|| {
                crate::domain::ParseError::new(format!(
                    "must be one of: {}",
                    SuppressionReason::ALL
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
    });
    errors.finish()?;
    let suppression = Suppression {
        address,
        reason: reason.unwrap_or(SuppressionReason::Manual),
        created_at: state.app.clock.now(),
    };
    state.app.store.put_suppression(&suppression).await?;
    Ok(Json(SuppressionView::from(&suppression)).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    PathId(address): PathId<SuppressedAddress>,
) -> Result<Response, ApiError> {
    if state.app.store.delete_suppression(&address).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("suppression"))
    }
}
