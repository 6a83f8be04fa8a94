//! The store's error type: what callers can act on, storage faults (with
//! their source kept), and backend failures that are bugs.

use natter_domain::rules::Refusal;
use natter_domain::{BadValue, DomainError};
use std::sync::Arc;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("not a member of conversation {0}")]
    NotMember(u64),
    /// A domain rule said no (see `rules`); the service words it.
    #[error("refused: {0:?}")]
    Refused(Refusal),
    /// The store is closing or has stopped taking writes; nothing was done.
    #[error("the store is not taking writes")]
    Unavailable,
    /// The storage under the store failed (disk full, I/O error, ...); the
    /// write was not done. Retrying later may succeed.
    #[error("storage fault ({fault:?}): {source}")]
    Fault {
        fault: Fault,
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The database was migrated by a newer natter; this one must not
    /// touch it.
    #[error("the database schema is version {found}, newer than this binary knows ({known}); run a newer natter")]
    NewerSchema { found: usize, known: usize },
    /// Another process (or another open store) holds the database's lock
    /// file: two writers would each trust their own seq cache and hand out
    /// the same seqs.
    #[error("the data directory is in use by another natter process (lock held on {path}); stop it first, or use another data_dir")]
    Locked { path: std::path::PathBuf },
    /// The database's message table is partitioned otherwise than
    /// configured; it cannot change in place.
    #[error("the database's messages are partitioned as `{database}`, the configuration says `{configured}` (store.partition)")]
    PartitioningDiffers {
        database: String,
        configured: String,
    },
    /// A failure that is a bug (bad SQL, a broken invariant), with what
    /// was being done and the backend's own error when there is one.
    #[error("storage backend error: {what}{}", source.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Backend {
        what: &'static str,
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

/// What kind of storage fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No room left: the disk, a quota or a size limit.
    Full,
    /// Reading or writing the files failed.
    Io,
    /// The database stayed locked past the busy timeout.
    Busy,
    /// The files are damaged.
    Corrupt,
    /// The database server cannot be reached, or went away mid-request.
    Down,
}

impl From<DomainError> for StoreError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Conflict(what) => StoreError::Conflict(what),
            DomainError::NotFound(what) => StoreError::NotFound(what),
            DomainError::NotMember(id) => StoreError::NotMember(id),
            DomainError::Refused(r) => StoreError::Refused(r),
        }
    }
}

impl From<BadValue> for StoreError {
    fn from(e: BadValue) -> Self {
        StoreError::backend("a corrupt row", e)
    }
}

impl From<Refusal> for StoreError {
    fn from(r: Refusal) -> Self {
        StoreError::Refused(r)
    }
}

impl StoreError {
    /// A broken invariant of the store itself.
    pub fn bug(what: &'static str) -> Self {
        StoreError::Backend { what, source: None }
    }

    /// A backend failure that is not a storage fault, keeping its source.
    pub fn backend(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend {
            what,
            source: Some(Arc::new(e)),
        }
    }

    /// A storage fault, as opposed to a refusal or a bug.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            StoreError::Fault { fault, .. } => Some(*fault),
            _ => None,
        }
    }
}
