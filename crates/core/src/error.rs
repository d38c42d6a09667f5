use serde::Serialize;

use crate::ports::{QueueError, SchedulerError, StoreError};

/// One invalid field of a request, named by its JSON path (`to.email`, `channels[1]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every way a request can fail. `crate::api::problem` turns each into RFC 9457 problem+json.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("missing or wrong API key")]
    Unauthorized,
    #[error("request body too large")]
    TooLarge,
    /// A dependency (store, queue, scheduler) failed; the detail is logged, never returned.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCursor => Self::invalid("cursor", "is not a cursor this list returned"),
            StoreError::Unavailable(msg) => Self::Unavailable(msg),
            StoreError::Conflict(msg) => Self::Conflict(msg),
        }
    }
}

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<SchedulerError> for Error {
    fn from(e: SchedulerError) -> Self {
        Self::Unavailable(e.to_string())
    }
}
