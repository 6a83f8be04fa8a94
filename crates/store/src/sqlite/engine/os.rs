//! What the engine asks of the operating system beside SQLite: how nice its
//! background threads run, and syncing the WAL file itself.

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
