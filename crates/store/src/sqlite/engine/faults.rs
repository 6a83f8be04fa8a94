//! SQLite's failures as the store's: which are storage faults (a full disk,
//! I/O, a busy or corrupt database), which are corrupt rows, and which are
//! bugs. The one place that knows rusqlite's error codes.

use crate::{BadValue, Fault, StoreError};
use std::sync::Arc;

/// The storage fault an I/O error is.
pub(crate) fn io_fault_kind(e: &std::io::Error) -> Fault {
    // ENOSPC, EFBIG (past a file size limit), EDQUOT.
    match e.raw_os_error() {
        Some(28 | 27 | 122) => Fault::Full,
        _ => Fault::Io,
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let fault = match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                C::DiskFull => Some(Fault::Full),
                C::SystemIoFailure | C::CannotOpen | C::ReadOnly | C::NoLargeFileSupport => {
                    Some(Fault::Io)
                }
                C::DatabaseBusy | C::DatabaseLocked => Some(Fault::Busy),
                C::DatabaseCorrupt | C::NotADatabase => Some(Fault::Corrupt),
                _ => None,
            },
            _ => None,
        };
        match fault {
            Some(fault) => StoreError::Fault {
                fault,
                source: Arc::new(e),
            },
            // A stored enum no variant has (see `sqlite::stored`).
            None if matches!(&e, rusqlite::Error::FromSqlConversionFailure(_, _, src)
                if src.downcast_ref::<BadValue>().is_some()) =>
            {
                StoreError::backend("a corrupt row", e)
            }
            // An id above what the database stores (SQLite's integers are
            // i64): no such row, not a fault of the server.
            None if matches!(e, rusqlite::Error::ToSqlConversionFailure(_)) => {
                StoreError::NotFound("id")
            }
            None => StoreError::backend("a query failed", e),
        }
    }
}

/// An I/O error as the storage fault it is.
pub(crate) fn io_fault(e: std::io::Error) -> StoreError {
    StoreError::Fault {
        fault: io_fault_kind(&e),
        source: Arc::new(e),
    }
}
