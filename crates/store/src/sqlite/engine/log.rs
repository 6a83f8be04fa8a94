//! The message log: the durable record of new messages and cursor moves
//! until the database has them. A write round appends its records with one
//! `write` and makes them durable with one `fdatasync`, instead of writing
//! every B-tree page the round touched (and fsyncing those) before its ACKs;
//! the writer copies the records into the database behind, in large batches
//! (see `pending.rs`).
//!
//! On disk: a directory of segments `<seq:020>.seg`, each a header and then
//! records, each `len: u32 LE | crc32(payload): u32 LE | payload`. A segment
//! ends where its records stop checking out, or earlier where the next
//! segment's header says: a round whose write or sync failed is cut off by
//! starting a new segment whose header names where the old one's good
//! records end, so bytes that may have reached the disk from a failed round
//! are never replayed. A segment is deleted once every record in it is in
//! the database and the database is synced. Once the log is busy its new
//! segments are spares written with zeros ahead of need (`log/spare.rs`):
//! a round overwrites them at its records' end, and a record of length 0
//! ends the segment in replay.

use crate::{Body, BodyKind, ConversationId, StoredMessage, UserId};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

mod spare;

const MAGIC: &[u8; 8] = b"NATLOG01";
/// Magic, segment number, previous segment's end, crc32 of the 24 bytes
/// before it, padding.
pub(crate) const HEADER_LEN: u64 = 32;
/// A segment is closed and a new one started past this size.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
/// Records in a segment the writer made itself past which the log counts
/// as busy and asks for segments written ahead (`spare.rs`).
const SPARE_AFTER: u64 = 1 << 20;
/// `prev_end` of a segment started because the previous one was full: the
/// previous one's records count as far as they check out.
const WHOLE: u64 = u64::MAX;
/// A record larger than this is not one of ours (a damaged length).
const MAX_RECORD: u32 = 64 << 20;

const TAG_MESSAGE: u8 = 1;
const TAG_CURSOR: u8 = 2;
const TAG_DIRECT: u8 = 3;

/// Which cursor a [`Record::Cursor`] moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CursorKind {
    Delivered = 0,
    Read = 1,
}

/// A 1:1 conversation made by its first message: logged before that
/// message, so that the message needs no database write (see `pending.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NewDirect {
    pub id: ConversationId,
    /// The pair, lower user id first.
    pub lo: UserId,
    pub hi: UserId,
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Record {
    Direct(NewDirect),
    Message(StoredMessage),
    Cursor {
        user: UserId,
        conversation: ConversationId,
        kind: CursorKind,
        seq: u64,
    },
}

/// Frames the payload written by `body` into `out`.
fn framed(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    body(out);
    let payload = &out[start + 8..];
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
}

/// Appends a new message's record to `out`.
pub(crate) fn encode_message(m: &StoredMessage, out: &mut Vec<u8>) {
    framed(out, |out| {
        out.push(TAG_MESSAGE);
        for v in [m.conversation_id, m.seq, m.msg_id, m.sender_id] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&m.server_ts_ms.to_le_bytes());
        out.push(m.body.kind as u8);
        out.push(m.mention_all as u8);
        put_bytes(out, m.client_msg_id.as_bytes());
        put_bytes(out, m.body.content.as_bytes());
        out.extend_from_slice(&(m.mentions.len() as u32).to_le_bytes());
        for u in &m.mentions {
            out.extend_from_slice(&u.to_le_bytes());
        }
    })
}

/// Appends a new 1:1 conversation's record to `out`.
pub(crate) fn encode_direct(c: &NewDirect, out: &mut Vec<u8>) {
    framed(out, |out| {
        out.push(TAG_DIRECT);
        for v in [c.id, c.lo, c.hi] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&c.at_ms.to_le_bytes());
    })
}

/// Appends a cursor raise's record to `out`.
pub(crate) fn encode_cursor(
    user: UserId,
    conversation: ConversationId,
    kind: CursorKind,
    seq: u64,
    out: &mut Vec<u8>,
) {
    framed(out, |out| {
        out.push(TAG_CURSOR);
        for v in [user, conversation, seq] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(kind as u8);
    })
}

impl Record {
    #[cfg(test)]
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Direct(c) => encode_direct(c, out),
            Record::Message(m) => encode_message(m, out),
            Record::Cursor {
                user,
                conversation,
                kind,
                seq,
            } => encode_cursor(*user, *conversation, *kind, *seq, out),
        }
    }

    fn decode(p: &[u8]) -> Option<Record> {
        let mut r = Reader(p);
        let rec = match r.u8()? {
            TAG_DIRECT => Record::Direct(NewDirect {
                id: r.u64()?,
                lo: r.u64()?,
                hi: r.u64()?,
                at_ms: r.u64()? as i64,
            }),
            TAG_MESSAGE => {
                let (conversation_id, seq, msg_id, sender_id) =
                    (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
                let server_ts_ms = r.u64()? as i64;
                let kind = BodyKind::try_from(r.u8()? as i64).ok()?;
                let mention_all = r.u8()? != 0;
                let client_msg_id = String::from_utf8(r.bytes()?.to_vec()).ok()?;
                let content = String::from_utf8(r.bytes()?.to_vec()).ok()?;
                let n = r.u32()? as usize;
                let mut mentions = Vec::with_capacity(n.min(r.0.len() / 8));
                for _ in 0..n {
                    mentions.push(r.u64()?);
                }
                Record::Message(StoredMessage {
                    conversation_id,
                    seq,
                    msg_id,
                    sender_id,
                    client_msg_id,
                    server_ts_ms,
                    body: Body { kind, content },
                    mentions,
                    mention_all,
                })
            }
            TAG_CURSOR => {
                let (user, conversation, seq) = (r.u64()?, r.u64()?, r.u64()?);
                let kind = match r.u8()? {
                    0 => CursorKind::Delivered,
                    1 => CursorKind::Read,
                    _ => return None,
                };
                Record::Cursor {
                    user,
                    conversation,
                    kind,
                    seq,
                }
            }
            _ => return None,
        };
        r.0.is_empty().then_some(rec)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// The log directory beside a database file: `<db>-log`.
pub(crate) fn dir_of(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-log");
    PathBuf::from(p)
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.seg"))
}

/// The segments in `dir`, oldest first.
pub(crate) fn all_segments(dir: &Path) -> io::Result<Vec<u64>> {
    segments(dir)
}

fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let name = e?.file_name();
                let name = name.to_string_lossy();
                if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
                    out.push(n);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort_unstable();
    Ok(out)
}

fn header(n: u64, prev_end: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&n.to_le_bytes());
    h[16..24].copy_from_slice(&prev_end.to_le_bytes());
    let crc = crc32fast::hash(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A segment's number and `prev_end`, if its header is whole.
fn read_header(bytes: &[u8]) -> Option<(u64, u64)> {
    let h = bytes.get(..HEADER_LEN as usize)?;
    if &h[..8] != MAGIC || crc32fast::hash(&h[..24]).to_le_bytes() != h[24..28] {
        return None;
    }
    let mut r = Reader(&h[8..24]);
    Some((r.u64()?, r.u64()?))
}

/// What a log held when it was opened: every record that counts, in order.
pub(crate) struct Replay {
    pub records: Vec<Record>,
    /// The segments read (to delete once their records are in the database).
    pub segments: Vec<u64>,
}

/// Reads every record of the log in `dir` that counts, oldest first.
pub(crate) fn replay(dir: &Path) -> io::Result<Replay> {
    let numbers = segments(dir)?;
    let mut records = Vec::new();
    // One segment in memory at a time (each is 64 MiB long once written
    // ahead with zeros), and the next one's header.
    let mut bytes = Vec::new();
    for (i, &number) in numbers.iter().enumerate() {
        bytes.clear();
        File::open(segment_path(dir, number))?.read_to_end(&mut bytes)?;
        let next = match numbers.get(i + 1) {
            Some(&n) => {
                let mut h = Vec::with_capacity(HEADER_LEN as usize);
                File::open(segment_path(dir, n))?
                    .take(HEADER_LEN)
                    .read_to_end(&mut h)?;
                Some(h)
            }
            None => None,
        };
        let Some((n, _)) = read_header(&bytes) else {
            // A segment whose header never became whole was being started
            // when the process died: nothing in it was acknowledged.
            if next.is_none() {
                break;
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message log segment {} has a damaged header", numbers[i]),
            ));
        };
        if n != numbers[i] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message log segment {} says it is {n}", numbers[i]),
            ));
        }
        let limit = match next.as_deref().and_then(read_header) {
            Some((_, prev_end)) if prev_end != WHOLE => prev_end,
            _ => u64::MAX,
        };
        let mut at = HEADER_LEN as usize;
        while (at as u64) < limit {
            let Some(head) = bytes.get(at..at + 8) else {
                break;
            };
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            if len == 0 || len > MAX_RECORD {
                break;
            }
            let end = at + 8 + len as usize;
            if end as u64 > limit {
                break;
            }
            let Some(payload) = bytes.get(at + 8..end) else {
                break;
            };
            if crc32fast::hash(payload) != crc {
                break;
            }
            match Record::decode(payload) {
                Some(r) => records.push(r),
                None => break,
            }
            at = end;
        }
    }
    Ok(Replay {
        records,
        segments: numbers,
    })
}

/// Deletes segments `numbers` of the log in `dir`.
pub(crate) fn delete(dir: &Path, numbers: &[u64]) -> io::Result<()> {
    for &n in numbers {
        match std::fs::remove_file(segment_path(dir, n)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if !numbers.is_empty() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment being written.
pub(crate) struct Log {
    dir: PathBuf,
    file: File,
    segment: u64,
    /// Where this segment's good records end.
    end: u64,
    /// Whether appends are made durable before they count (`synchronous =
    /// "full"`).
    sync: bool,
    /// A failed round must be cut off by a new segment before anything
    /// else is appended: where the current segment's good records end.
    cut_at: Option<u64>,
    /// Segments written ahead with zeros (`spare.rs`), once asked for.
    spares: Option<spare::Spares>,
    /// The current segment was a spare: rounds overwrite its zeros.
    zeroed: bool,
}

impl Log {
    /// Starts a new segment after `last` (the newest segment there was).
    pub(crate) fn start(dir: &Path, last: Option<u64>, sync: bool) -> io::Result<Log> {
        std::fs::create_dir_all(dir)?;
        let segment = last.map_or(1, |n| n + 1);
        let file = create_segment(dir, segment, WHOLE)?;
        Ok(Log {
            dir: dir.to_owned(),
            file,
            segment,
            end: HEADER_LEN,
            sync,
            cut_at: None,
            spares: None,
            zeroed: false,
        })
    }

    /// Has segments written with zeros ahead of need (`spare.rs`), so that
    /// a round's sync need not write the file's size: once the log is busy
    /// (`SPARE_AFTER`), the first one ready replaces the segment `start`
    /// made at the next append.
    pub(crate) fn with_spares(mut self) -> io::Result<Log> {
        self.spares = Some(spare::Spares::start(&self.dir)?);
        Ok(self)
    }

    /// The segment records go to now.
    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends `bytes` (whole records) and, with `sync`, makes them
    /// durable. On failure nothing of them counts: a new segment is started
    /// that cuts the current one off where its good records end.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(end) = self.cut_at {
            // Nothing goes after a failed round's bytes in the same segment.
            self.rotate(end)?;
            self.cut_at = None;
        } else if !self.zeroed && self.spares.as_ref().is_some_and(|s| s.ready()) {
            // Onto a written segment as soon as there is one; if that
            // fails, this one serves on.
            let _ = self.rotate(WHOLE);
        }
        // At the records' end, not the file's: a spare is longer than its
        // records.
        let written = self.file.write_all_at(bytes, self.end).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.end += bytes.len() as u64;
                if !self.zeroed && self.end >= SPARE_AFTER {
                    if let Some(s) = &self.spares {
                        s.want();
                    }
                }
                if self.end >= SEGMENT_BYTES {
                    // A full segment: the next round goes to a new one. If
                    // starting it fails, the next round tries again.
                    let _ = self.rotate(WHOLE);
                }
                Ok(())
            }
            Err(e) => {
                self.cut_at = Some(self.end);
                if self.rotate(self.end).is_ok() {
                    self.cut_at = None;
                }
                Err(e)
            }
        }
    }

    fn rotate(&mut self, prev_end: u64) -> io::Result<()> {
        let next = self.segment + 1;
        let spare = match self.spares.as_ref().map(|s| s.take(next, prev_end)) {
            Some(Ok(spare)) => spare,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot start a message log segment from the spare; making one");
                None
            }
            None => None,
        };
        let zeroed = spare.is_some();
        let file = match spare {
            Some(file) => file,
            None => create_segment(&self.dir, next, prev_end)?,
        };
        self.file = file;
        self.zeroed = zeroed;
        self.segment = next;
        self.end = HEADER_LEN;
        Ok(())
    }

    /// Segments older than `oldest_needed`, present on disk.
    #[cfg(test)]
    pub(crate) fn older_than(&self, oldest_needed: u64) -> io::Result<Vec<u64>> {
        Ok(segments(&self.dir)?
            .into_iter()
            .filter(|n| *n < oldest_needed)
            .collect())
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Creates segment `n` with its header, durably (file and directory), so
/// that nothing written after it can be acknowledged before it exists.
fn create_segment(dir: &Path, n: u64, prev_end: u64) -> io::Result<File> {
    let path = segment_path(dir, n);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    file.write_all(&header(n, prev_end))?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

#[cfg(test)]
mod tests;
