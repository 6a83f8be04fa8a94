//! MariaDB/MySQL errors as store errors: what is a storage fault the caller
//! may retry (the server unreachable, busy or out of room) and what is a
//! bug.

use crate::{Fault, StoreError};
use std::sync::Arc;

/// Server error codes (the same on MariaDB and MySQL).
mod code {
    pub const CON_COUNT: u16 = 1040;
    pub const DISK_FULL: u16 = 1021;
    pub const RECORD_FILE_FULL: u16 = 1114;
    pub const SERVER_SHUTDOWN: u16 = 1053;
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const LOCK_DEADLOCK: u16 = 1213;
    pub const QUERY_INTERRUPTED: u16 = 1317;
    /// MariaDB's `max_statement_time` ran out.
    pub const STATEMENT_TIMEOUT: u16 = 1969;
    /// MySQL's `max_execution_time` ran out.
    pub const EXECUTION_TIMEOUT: u16 = 3024;
    pub const CRASHED: u16 = 1194;
    pub const CORRUPT: u16 = 1034;
    pub const DUP_ENTRY: u16 = 1062;
}

fn fault_of(e: &mysql_async::Error) -> Option<Fault> {
    use mysql_async::Error as E;
    Some(match e {
        E::Io(_) => Fault::Down,
        E::Driver(_) if e.is_fatal() => Fault::Down,
        E::Server(s) => match s.code {
            code::DISK_FULL | code::RECORD_FILE_FULL => Fault::Full,
            code::SERVER_SHUTDOWN => Fault::Down,
            code::CON_COUNT
            | code::LOCK_WAIT_TIMEOUT
            | code::LOCK_DEADLOCK
            | code::QUERY_INTERRUPTED
            | code::STATEMENT_TIMEOUT
            | code::EXECUTION_TIMEOUT => Fault::Busy,
            code::CRASHED | code::CORRUPT => Fault::Corrupt,
            // The connection's own class of states.
            _ if s.state.starts_with("08") => Fault::Down,
            _ => return None,
        },
        _ => return None,
    })
}

impl From<mysql_async::Error> for StoreError {
    fn from(e: mysql_async::Error) -> Self {
        match fault_of(&e) {
            Some(fault) => StoreError::Fault {
                fault,
                source: Arc::new(e),
            },
            None => StoreError::backend("a query failed", e),
        }
    }
}

/// Whether `e` is a unique key that was taken (a row already there).
pub(crate) fn duplicate_key(e: &StoreError) -> bool {
    let source = match e {
        StoreError::Backend {
            source: Some(s), ..
        } => s,
        StoreError::Fault { source, .. } => source,
        _ => return false,
    };
    source
        .downcast_ref::<mysql_async::Error>()
        .is_some_and(|e| matches!(e, mysql_async::Error::Server(s) if s.code == code::DUP_ENTRY))
}

/// Whether a transaction failed only because it lost a race with another
/// (a deadlock's victim): it can run again as it was.
pub fn collided(e: &StoreError) -> bool {
    match e {
        StoreError::Fault { source, .. } => {
            source.downcast_ref::<mysql_async::Error>().is_some_and(
                |e| matches!(e, mysql_async::Error::Server(s) if s.code == code::LOCK_DEADLOCK),
            )
        }
        _ => false,
    }
}
