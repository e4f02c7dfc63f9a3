//! The library's error: what a job operation refused, and why.

use crate::store::StoreError;

/// Why a scheduler operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input broke a rule; `field` names it as the REST API does (`trigger.hour`, `action.url`).
    #[error("{field}: {message}")]
    Invalid {
        /// The input at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No such job (or store).
    #[error("{0}")]
    NotFound(String),
    /// The change contradicts the state: an id taken, a store full.
    #[error("{0}")]
    Conflict(String),
    /// The job store failed or cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// An `Invalid` error on `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid { field: field.into(), message: message.into() }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
