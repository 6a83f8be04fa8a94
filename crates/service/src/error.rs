//! The service's error type; the gateway maps it to wire error codes.

use natter_store::StoreError;

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
    #[error("the server is shutting down")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
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
            StoreError::Unavailable => ServiceError::Unavailable,
            StoreError::Backend(why) => {
                tracing::error!(error = %why, "store failure");
                ServiceError::Internal("storage failure".into())
            }
        }
    }
}
