//! The service's error type; the gateway maps it to wire error codes.

use natter_store::{Fault, StoreError};
use std::time::Duration;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("that username is taken")]
    UsernameTaken,
    #[error("{0}")]
    WeakPassword(String),
    #[error("wrong username or password")]
    BadCredentials,
    #[error("the token is not valid")]
    TokenInvalid,
    #[error("the token has expired; log in again")]
    TokenExpired,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("the user already has the maximum number of sessions")]
    TooManySessions,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Muted(String),
    #[error("the group is full ({0} members)")]
    GroupFull(u32),
    #[error("message body is {size} bytes; the limit is {max}")]
    MessageTooLarge { size: usize, max: usize },
    /// A limit on how often something may be done; try again after the wait.
    #[error("{what}; retry later")]
    RateLimited {
        what: &'static str,
        retry_after: Duration,
    },
    /// Nothing was done; the same request may succeed later.
    #[error("{0}")]
    Unavailable(Unavailable),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the server cannot do something now. Nothing was done, so the request
/// can be repeated as it was (a Send with the same client_msg_id).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the server is shutting down; reconnect and retry")]
    ShuttingDown,
    #[error("the server is overloaded; retry later")]
    Overloaded,
    #[error("too many passwords are being checked; retry later")]
    Busy(Duration),
    #[error("the server's storage is full; nothing was stored")]
    StorageFull,
    #[error("the server's storage is failing; nothing was stored")]
    StorageFailing,
}

impl Unavailable {
    /// When a retry makes sense.
    pub fn retry_after(&self) -> Duration {
        match self {
            Unavailable::ShuttingDown => Duration::from_secs(1),
            Unavailable::Overloaded => Duration::from_secs(2),
            Unavailable::Busy(d) => *d,
            Unavailable::StorageFull | Unavailable::StorageFailing => Duration::from_secs(5),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict("username") => ServiceError::UsernameTaken,
            StoreError::Conflict(what) => {
                ServiceError::InvalidArgument(format!("{what} already exists"))
            }
            StoreError::NotFound(what) => ServiceError::NotFound(what),
            StoreError::NotMember(_) => ServiceError::Forbidden(e.to_string()),
            StoreError::Invalid(why) => ServiceError::InvalidArgument(why.into()),
            StoreError::InvalidArgument(why) => ServiceError::InvalidArgument(why),
            StoreError::Forbidden(why) => ServiceError::Forbidden(why),
            StoreError::Muted(why) => ServiceError::Muted(why),
            StoreError::GroupFull(max) => ServiceError::GroupFull(max),
            StoreError::TooManySessions => ServiceError::TooManySessions,
            StoreError::Unavailable => ServiceError::Unavailable(Unavailable::ShuttingDown),
            StoreError::Fault { fault, source } => {
                tracing::warn!(?fault, error = %source, "storage fault");
                ServiceError::Unavailable(match fault {
                    Fault::Full => Unavailable::StorageFull,
                    Fault::Io | Fault::Busy | Fault::Corrupt => Unavailable::StorageFailing,
                })
            }
            StoreError::Backend(why) => {
                tracing::error!(error = %why, "store failure");
                ServiceError::Internal("storage failure".into())
            }
        }
    }
}
