//! `StoreError`: why a store operation failed, as a kind callers match on, a message for logs,
//! and the underlying error (the driver's, an I/O error) as its source.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// What a caller can do about a failed store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store cannot take the operation now (database unreachable or timing out, disk full,
    /// busy): the caller should answer 503 and the provider retry.
    Unavailable,
    /// Too many writes are already waiting for the store (backpressure): as `Unavailable`, and
    /// nothing was attempted.
    QueueFull,
    /// A bug or corruption: retrying will not help.
    Internal,
}

/// A failed store operation.
///
/// The message reads as one line with the cause's text, because log lines report the error by
/// its `Display` alone; the cause itself stays reachable through `source()`. Cloning is cheap
/// (the source is shared): a failed group commit answers every request of its batch with it.
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreErrorKind::Internal, message)
    }

    /// The write queue in front of the store is full: the request is refused at once.
    pub fn queue_full() -> StoreError {
        StoreError::new(StoreErrorKind::QueueFull, "the store's write queue is full")
    }

    /// The same error, with `source` as its cause.
    pub fn caused_by(mut self, source: impl Error + Send + Sync + 'static) -> StoreError {
        self.source = Some(Arc::new(source));
        self
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// What failed, without the kind's prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying again later may succeed (the caller should answer 503 with
    /// `Retry-After`, not 500).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            StoreErrorKind::Unavailable | StoreErrorKind::QueueFull
        )
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            StoreErrorKind::Unavailable | StoreErrorKind::QueueFull => {
                write!(f, "store unavailable: {}", self.message)
            }
            StoreErrorKind::Internal => write!(f, "store error: {}", self.message),
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_as_before_and_keep_their_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
        let error = StoreError::unavailable("commit: no space left").caused_by(io);
        assert_eq!(
            error.to_string(),
            "store unavailable: commit: no space left"
        );
        assert!(error.is_transient());
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("no space left")
        );

        let full = StoreError::queue_full();
        assert_eq!(full.kind(), StoreErrorKind::QueueFull);
        assert!(full.is_transient());
        assert_eq!(
            full.to_string(),
            "store unavailable: the store's write queue is full"
        );

        let bug = StoreError::internal("column 3: not a bigint");
        assert!(!bug.is_transient());
        assert_eq!(bug.to_string(), "store error: column 3: not a bigint");
        assert!(bug.source().is_none());
    }
}
