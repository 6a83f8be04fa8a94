//! What a domain rule answers when it says no: the same on every backend
//! and every edge. A store wraps these beside its own faults.

use crate::rules::Refusal;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("not a member of conversation {0}")]
    NotMember(u64),
    /// A rule said no (see `rules`); the service words it.
    #[error("refused: {0:?}")]
    Refused(Refusal),
}

impl From<Refusal> for DomainError {
    fn from(r: Refusal) -> Self {
        DomainError::Refused(r)
    }
}
