//! Segments written with zeros ahead of need, off the writer's thread.
//!
//! An append that grows its file makes the `fdatasync` after it write the
//! file's inode too (its new size): on a virtual disk a second write, a
//! notification to the host and a wait, ~11 % of the writer thread's CPU
//! under peerbench's 1:1 load (docs/BENCHMARKS.md, "Log segments written
//! ahead"). In a segment whose blocks are all written already a round
//! overwrites in place, and its sync writes the data and flushes (and the
//! inode only when its modification time has moved since the last one, as
//! ext4 without a journal does). Zeros end a segment's records in replay
//! (a record of length 0), so a spare's unwritten part reads as the end of
//! the log.
//!
//! A thread of its own (at the copy thread's low priority) keeps one spare,
//! `spare.zero` in the log's directory, once the log is busy (a segment
//! past `SPARE_AFTER`: an idle server never holds 64 MiB of zeros); the
//! writer renames it to its next segment, writes the header and syncs, as
//! it would a segment it made, and asks for the next. A spare half made
//! when the process died is not a segment (replay reads `*.seg` only) and
//! is removed at the next start. The spare is written a mebibyte at a
//! time, each synced, with a pause between, so that the disk's flushes of
//! the log's rounds never queue behind tens of mebibytes of zeros. Spares
//! are an economy: one that cannot be made leaves the log appending to
//! segments the writer makes, as before.

use super::{header, segment_path, sync_dir, SEGMENT_BYTES};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// The spare's name in the log's directory.
pub(crate) const SPARE: &str = "spare.zero";
/// A spare's size: a segment, and room for the round that fills it (a
/// larger round grows the file, as an append always did).
pub(crate) const SPARE_BYTES: u64 = SEGMENT_BYTES + STEP as u64;
/// Written and synced at a time.
const STEP: usize = 1 << 20;
/// Between two steps: the log's syncs get the disk meanwhile.
const BREATHE: Duration = Duration::from_millis(5);
/// After a spare could not be made (a full disk, say): no other try
/// before this, asked or not.
const RETRY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    /// `spare.zero` is whole and synced.
    ready: bool,
    /// Asked for: the log got busy, or the writer took the last one.
    wanted: bool,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits `d`, or less if told to stop; true if told to stop.
    fn pause(&self, d: Duration) -> bool {
        let (s, _) = self
            .wake
            .wait_timeout_while(self.state(), d, |s| !s.stop)
            .unwrap_or_else(|p| p.into_inner());
        s.stop
    }
}

/// Removes the spare in `dir`, if there is one.
fn remove(dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(dir.join(SPARE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The spare's maker, owned by the log.
pub(crate) struct Spares {
    dir: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Spares {
    /// Starts the thread, which makes a spare once asked; removes the one
    /// a process that died may have left.
    pub(crate) fn start(dir: &Path) -> io::Result<Spares> {
        // Spares are an economy: the log works without them.
        if let Err(e) = remove(dir) {
            tracing::warn!(error = %e, "cannot remove the message log's old spare segment");
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let (d, s) = (dir.to_owned(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("natter-log-zero".into())
            .spawn(move || run(&d, &s))?;
        Ok(Spares {
            dir: dir.to_owned(),
            shared,
            thread: Some(thread),
        })
    }

    /// Whether a spare is ready to be taken.
    pub(crate) fn ready(&self) -> bool {
        self.shared.state().ready
    }

    /// Asks for a spare (none is made before: a log that never gets
    /// busy never takes the disk space).
    pub(crate) fn want(&self) {
        let mut s = self.shared.state();
        if !s.ready && !s.wanted {
            s.wanted = true;
            drop(s);
            self.shared.wake.notify_one();
        }
    }

    /// Makes the spare segment `n` with its header, durably (file and
    /// directory), if one is ready; asks for the next either way.
    pub(crate) fn take(&self, n: u64, prev_end: u64) -> io::Result<Option<File>> {
        let path = segment_path(&self.dir, n);
        let renamed = {
            let mut s = self.shared.state();
            // Renamed under the lock: the thread starts the next spare (at
            // the same name) only once this one is out of its way.
            let renamed =
                std::mem::take(&mut s.ready).then(|| std::fs::rename(self.dir.join(SPARE), &path));
            s.wanted = true;
            renamed
        };
        self.shared.wake.notify_one();
        match renamed {
            None => return Ok(None),
            Some(r) => r?,
        }
        let file = OpenOptions::new().write(true).open(&path)?;
        file.write_all_at(&header(n, prev_end), 0)?;
        file.sync_data()?;
        sync_dir(&self.dir)?;
        Ok(Some(file))
    }
}

impl Drop for Spares {
    /// Stops the thread (within one step) and removes the spare: a log
    /// that has stopped leaves only segments behind.
    fn drop(&mut self) {
        self.shared.state().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = remove(&self.dir) {
            tracing::warn!(error = %e, "cannot remove the message log's spare segment");
        }
    }
}

fn run(dir: &Path, shared: &Shared) {
    let me = rustix::thread::gettid();
    if let Err(e) =
        rustix::process::setpriority_process(Some(me), crate::sqlite::engine::os::COPY_NICE)
    {
        tracing::debug!(error = %e, "cannot lower the spare log segment thread's priority");
    }
    loop {
        {
            let mut s = shared.state();
            // Asleep until asked for one while none is ready, or stopped.
            while !s.stop && (!s.wanted || s.ready) {
                s = shared.wake.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
            s.wanted = false;
        }
        match make(dir, shared) {
            Ok(true) => shared.state().ready = true,
            Ok(false) => return,
            // The writer appends to segments it makes itself meanwhile.
            // What was written goes (on a full disk the log needs the
            // room), and nothing is tried again for a while.
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the message log's spare segment");
                let _ = remove(dir);
                if shared.pause(RETRY) {
                    return;
                }
            }
        }
    }
}

/// Writes `spare.zero` whole; false if told to stop first.
fn make(dir: &Path, shared: &Shared) -> io::Result<bool> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join(SPARE))?;
    let zeros = vec![0u8; STEP];
    for _ in 0..SPARE_BYTES / STEP as u64 {
        file.write_all(&zeros)?;
        file.sync_data()?;
        if shared.pause(BREATHE) {
            return Ok(false);
        }
    }
    file.sync_all()?;
    Ok(true)
}
