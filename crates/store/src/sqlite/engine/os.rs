//! What the engine asks of the operating system beside SQLite: how nice its
//! background threads run, syncing the WAL file itself, and the lock that
//! keeps a database to one process.

use super::faults::io_fault;
use crate::{Result, StoreError};
use std::path::PathBuf;

/// The copy and checkpoint threads' nice value (0 is normal, 19 the
/// lowest priority).
pub(crate) const COPY_NICE: i32 = 10;

/// Syncs the database's WAL file: every transaction committed so far is
/// then durable (one checkpointed before is in the synced database file).
pub(crate) fn sync_wal(db: &std::path::Path) -> std::io::Result<()> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    match std::fs::File::open(PathBuf::from(wal)) {
        Ok(f) => f.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Takes the exclusive lock on `<db>.lock` without waiting. The lock file is
/// never removed: the lock, not the file's existence, says who owns the
/// database, so a crashed process leaves nothing stale behind.
pub(crate) fn lock_database(db: &std::path::Path) -> Result<std::fs::File> {
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_fault)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_fault(e)),
    }
}
