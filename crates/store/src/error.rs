//! The store's error type: what callers can act on, and backend failures.

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("not a member of conversation {0}")]
    NotMember(u64),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Muted(String),
    #[error("the group is full ({0} members)")]
    GroupFull(u32),
    #[error("the user already has the maximum number of sessions")]
    TooManySessions,
    #[error("the store is shutting down")]
    Unavailable,
    #[error("storage backend error: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}
