//! How a queue, the scheduler or the local outbox fails: one error type for all, since the
//! callers only log it and answer 503, whichever it was.

use super::BoxError;

/// Which dependency failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Queue,
    Scheduler,
    Outbox,
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dependency::Queue => "queue",
            Dependency::Scheduler => "scheduler",
            Dependency::Outbox => "outbox",
        })
    }
}

/// A queue or the scheduler refused or failed a call; `source` is its own error, for the log.
#[derive(Debug, thiserror::Error)]
#[error("{dependency}: {context}")]
pub struct DependencyError {
    pub dependency: Dependency,
    pub context: String,
    #[source]
    pub source: Option<BoxError>,
}

impl DependencyError {
    pub fn queue(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::new(Dependency::Queue, context, Some(source.into()))
    }

    pub fn scheduler(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::new(Dependency::Scheduler, context, Some(source.into()))
    }

    pub fn outbox(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::new(Dependency::Outbox, context, Some(source.into()))
    }

    /// An error with no underlying cause (a message the queue refused, with its code).
    pub fn refused(dependency: Dependency, context: impl Into<String>) -> Self {
        Self::new(dependency, context, None)
    }

    fn new(dependency: Dependency, context: impl Into<String>, source: Option<BoxError>) -> Self {
        Self {
            dependency,
            context: context.into(),
            source,
        }
    }
}
