//! How a service fails: the caller's mistake (invalid, not found, conflict) or a dependency's
//! (store, queue, scheduler), whose error is kept whole as the source.

use serde::Serialize;

use crate::ports::{BoxError, DependencyError, StoreError};

/// One invalid field of a request, named by its JSON path (`to.email`, `channels[1]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
    /// A queue or the scheduler.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
    /// The deployment's first API key could not be read (its secret, on AWS).
    #[error("the first API key could not be read")]
    FirstKey(#[source] BoxError),
    /// The deployment's key for unsubscribe links could not be read (its secret, on AWS).
    #[error("the signing key could not be read")]
    SigningKey(#[source] BoxError),
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCursor => Self::invalid("cursor", "is not a cursor this list returned"),
            StoreError::Conflict(msg) => Self::Conflict(msg),
            other => Self::Store(other),
        }
    }
}
