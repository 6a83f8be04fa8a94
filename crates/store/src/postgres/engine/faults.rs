//! PostgreSQL errors as store errors: what is a storage fault the caller
//! may retry (the server unreachable or overloaded, a full disk) and what
//! is a bug.

use crate::{Fault, StoreError};
use std::sync::Arc;
use tokio_postgres::error::SqlState;

fn fault_of(e: &tokio_postgres::Error) -> Option<Fault> {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed, closed or timed out.
        return Some(Fault::Down);
    };
    let class = &code.code()[..2];
    Some(match code {
        c if *c == SqlState::DISK_FULL => Fault::Full,
        c if *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CRASH_SHUTDOWN
            || *c == SqlState::CANNOT_CONNECT_NOW
            || class == "08" =>
        {
            Fault::Down
        }
        c if *c == SqlState::QUERY_CANCELED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::LOCK_NOT_AVAILABLE
            || class == "53" =>
        {
            Fault::Busy
        }
        c if *c == SqlState::DATA_CORRUPTED || *c == SqlState::INDEX_CORRUPTED => Fault::Corrupt,
        c if *c == SqlState::IO_ERROR => Fault::Io,
        _ => return None,
    })
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match fault_of(&e) {
            Some(fault) => StoreError::Fault {
                fault,
                source: Arc::new(e),
            },
            None => StoreError::backend("a query failed", e),
        }
    }
}

/// Whether a transaction failed only because it lost a race with another
/// (a deadlock's victim, a serialization failure): it can run again as it was.
pub fn collided(e: &StoreError) -> bool {
    match e {
        StoreError::Fault { source, .. } => source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.code())
            .is_some_and(|c| {
                *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
            }),
        _ => false,
    }
}

/// A pool that could not hand out a connection: a bounded wait for a free
/// one that ran out is "busy", not a bug; a new connection (or the check of
/// an idle one) that got no answer in time is the server silent: "down".
pub fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::{PoolError as P, TimeoutType};
    match e {
        P::Backend(e) => e.into(),
        P::Timeout(TimeoutType::Create | TimeoutType::Recycle) => super::writer::timed_out(),
        P::Timeout(TimeoutType::Wait) => StoreError::Fault {
            fault: Fault::Busy,
            source: Arc::new(PoolExhausted),
        },
        P::Closed => StoreError::Unavailable,
        e => StoreError::backend("the connection pool failed", e),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no database connection became free in time (the pool is exhausted)")]
struct PoolExhausted;
