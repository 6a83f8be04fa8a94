//! Files: resumable uploads and their downloads, kept on local disk under
//! the data directory (`disk`) or in an S3-compatible object store (`s3`).
//!
//! An upload is created with its length, then filled by appends at the
//! offset it has reached; each append's bytes are durable (synced to disk,
//! or stored as objects) before the new offset is recorded and reported, so
//! an offset a client was told is never lost. A finished upload is hashed
//! (SHA-256, its ETag) and can be downloaded by its owner and by members of
//! the conversations a file message named it in. An unfinished upload
//! expires `expire_after_secs` after its last append and is deleted.
//!
//! The rules (quotas, limits, who may append, expiry, checksums) are here,
//! once; a `Storage` only keeps bytes and records. Every upload is indexed
//! in memory at start-up, so quotas and lookups never scan the storage.

mod config;
mod disk;
mod s3;

pub use config::{FilesConfig, S3Config, StorageKind};

use crate::ServiceError;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use natter_domain::{Target, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// What is known of an upload (its record).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub owner: UserId,
    /// The length announced at creation.
    pub length: u64,
    /// Bytes received and durable.
    pub offset: u64,
    /// The client's name for it, and its media type (creation metadata).
    pub name: String,
    pub media_type: String,
    pub created_at_ms: i64,
    /// When it was last appended to (an unfinished upload expires after).
    pub touched_at_ms: i64,
    /// Hex SHA-256 of the bytes, once the upload is finished.
    pub sha256: Option<String>,
    /// Conversations a file message named it in: their members may
    /// download it (at most `MAX_SHARES`, with `shared_with_users`).
    #[serde(default)]
    pub shared_with: Vec<u64>,
    /// Users a 1:1 file message was sent to: each may download it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with_users: Vec<u64>,
    /// Where an object store keeps the bytes so far.
    #[serde(default, skip_serializing_if = "Parts::is_empty")]
    pub(crate) parts: Parts,
}

/// An upload's bytes in an object store, while it is unfinished: the
/// multipart upload, its parts (their ids, each `part_size_bytes`) and the
/// bytes after the last whole part (the tail, an object of its own).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub(crate) struct Parts {
    pub multipart: Option<String>,
    pub ids: Vec<String>,
    pub tail: u64,
}

impl Parts {
    fn is_empty(&self) -> bool {
        self.multipart.is_none() && self.ids.is_empty() && self.tail == 0
    }
}

/// Conversations one file is shared with, at most: what a download by a
/// non-owner may cost is one membership read per share.
pub const MAX_SHARES: usize = 64;

impl Upload {
    pub fn finished(&self) -> bool {
        self.sha256.is_some()
    }
}

/// Why an append was refused, beyond the service's errors.
#[derive(Debug)]
pub enum AppendError {
    /// The offset given is not the upload's: the client must ask (HEAD)
    /// and go on from there.
    OffsetMismatch {
        at: u64,
    },
    /// The bytes do not match the checksum sent with them; none were kept.
    ChecksumMismatch,
    /// More bytes than the length announced; none were kept.
    TooLong,
    Service(ServiceError),
}

impl From<ServiceError> for AppendError {
    fn from(e: ServiceError) -> Self {
        AppendError::Service(e)
    }
}

impl From<std::io::Error> for AppendError {
    fn from(e: std::io::Error) -> Self {
        AppendError::Service(io_error(e))
    }
}

/// A checksum an append's bytes must match (tus `Upload-Checksum`).
#[derive(Clone, Copy, Debug)]
pub enum Checksum {
    Sha256([u8; 32]),
}

fn io_error(e: std::io::Error) -> ServiceError {
    tracing::warn!(error = %e, "file storage failed");
    match e.raw_os_error() {
        Some(28 | 122) => ServiceError::Unavailable(crate::Unavailable::StorageFull),
        _ => ServiceError::Unavailable(crate::Unavailable::StorageFailing),
    }
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("file")
}

/// A finished file's bytes, or a range of them.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// What an append left.
pub(crate) enum Appended {
    /// These bytes are durable: the upload as it now stands (not yet
    /// recorded).
    Kept(Box<Upload>),
    /// The body was refused (`Body::refused`): nothing of it counts.
    Dropped,
}

/// Where bytes and records are kept. Each method is durable when it
/// returns; a crash between two of them leaves the last record true.
#[async_trait]
pub(crate) trait Storage: Send + Sync + 'static {
    /// Every upload's record, each consistent with its bytes.
    async fn records(&self) -> std::io::Result<Vec<Upload>>;
    /// Writes an upload's record, replacing the one before at once.
    async fn record(&self, u: &Upload) -> std::io::Result<()>;
    /// Makes room for a new upload's bytes.
    async fn create(&self, u: &Upload) -> std::io::Result<()>;
    /// Adds what `body` holds after `u.offset`. A body that ends in an
    /// error keeps what arrived, unless `body.refused()`: then nothing.
    async fn append(&self, u: &Upload, body: &mut Body<'_>) -> std::io::Result<Appended>;
    /// After `next` was recorded in place of `before`: drops what only
    /// `before` needed.
    async fn settled(&self, before: &Upload, next: &Upload);
    /// Makes a complete upload's bytes one readable whole.
    async fn seal(&self, u: &Upload) -> std::io::Result<Upload>;
    /// `count` bytes from `start` of a sealed upload.
    async fn read(&self, u: &Upload, start: u64, count: u64) -> std::io::Result<ByteStream>;
    /// Deletes an upload's bytes and record.
    async fn remove(&self, u: &Upload) -> std::io::Result<()>;
}

/// An append's body as a storage reads it: counted against the room the
/// upload has left, hashed when a checksum came with it, and failing at
/// its end when the checksum does not match.
pub(crate) struct Body<'a> {
    inner: &'a mut (dyn AsyncRead + Unpin + Send),
    room: u64,
    got: u64,
    hash: Option<(Sha256, [u8; 32])>,
    failure: Option<Failure>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    TooLong,
    Checksum,
    Cut,
}

impl Body<'_> {
    /// Whether nothing of this body may be kept: it was too long, or it
    /// came with a checksum (all of it matches, or none of it counts).
    pub fn refused(&self) -> bool {
        match self.failure {
            Some(Failure::TooLong | Failure::Checksum) => true,
            Some(Failure::Cut) => self.hash.is_some(),
            None => false,
        }
    }
}

impl AsyncRead for Body<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.failure.is_some() {
            return Poll::Ready(Err(std::io::Error::other("the body was refused")));
        }
        let before = buf.filled().len();
        match Pin::new(&mut *this.inner).poll_read(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                this.failure = Some(Failure::Cut);
                Poll::Ready(Err(e))
            }
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    if let Some((h, want)) = this.hash.take() {
                        if h.finalize().as_slice() != want {
                            this.failure = Some(Failure::Checksum);
                            return Poll::Ready(Err(std::io::Error::other("checksum mismatch")));
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
                this.got += new.len() as u64;
                if this.got > this.room {
                    this.failure = Some(Failure::TooLong);
                    return Poll::Ready(Err(std::io::Error::other("longer than the upload")));
                }
                if let Some((h, _)) = &mut this.hash {
                    h.update(new);
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// The files of one node.
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Box<dyn Storage>,
    config: FilesConfig,
    /// Whether `index` holds every record (an object store that did not
    /// answer at start-up is read later, by `load`).
    loaded: std::sync::atomic::AtomicBool,
    index: Mutex<HashMap<String, Upload>>,
    /// Uploads being appended to or deleted now: one at a time per upload.
    busy: Mutex<std::collections::HashSet<String>>,
}

/// Marks an upload busy while one append or deletion runs on it.
struct Busy<'a> {
    files: &'a Inner,
    id: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.files
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Files {
    /// Opens the storage `config` names (local disk under `dir`, or the
    /// object store) and indexes what it holds. A local disk that cannot
    /// be read is an error; an object store that does not answer is not:
    /// files answer UNAVAILABLE until `load` reaches it.
    pub async fn open(dir: PathBuf, config: FilesConfig) -> std::io::Result<Files> {
        let storage: Box<dyn Storage> = match config.storage {
            StorageKind::Local => Box::new(disk::Disk::open(dir).await?),
            StorageKind::S3 => Box::new(s3::S3::open(&config.s3)?),
        };
        let kind = config.storage;
        let files = Files {
            inner: Arc::new(Inner {
                storage,
                config,
                loaded: Default::default(),
                index: Mutex::new(HashMap::new()),
                busy: Mutex::new(Default::default()),
            }),
        };
        match files.load().await {
            Ok(()) => {}
            Err(e) if kind == StorageKind::S3 => tracing::error!(
                error = %e,
                "the object store does not answer; files are UNAVAILABLE until it does"
            ),
            Err(e) => return Err(e),
        }
        Ok(files)
    }

    /// Reads every record into the index, once; the server calls it until
    /// it succeeds.
    pub async fn load(&self) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        if self.inner.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let records = self.inner.storage.records().await?;
        self.index()
            .extend(records.into_iter().map(|u| (u.id.clone(), u)));
        self.inner.loaded.store(true, Ordering::Release);
        tracing::info!(uploads = self.index().len(), "files indexed");
        Ok(())
    }

    /// Files answer only once their index is whole.
    fn ready(&self) -> Result<(), ServiceError> {
        match self.inner.loaded.load(std::sync::atomic::Ordering::Acquire) {
            true => Ok(()),
            false => Err(ServiceError::Unavailable(
                crate::Unavailable::StorageFailing,
            )),
        }
    }

    pub fn config(&self) -> &FilesConfig {
        &self.inner.config
    }

    fn index(&self) -> std::sync::MutexGuard<'_, HashMap<String, Upload>> {
        self.inner.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn busy(&self, id: &str) -> Option<Busy<'_>> {
        let mut busy = self.inner.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.insert(id.to_owned()).then(|| Busy {
            files: &self.inner,
            id: id.to_owned(),
        })
    }

    async fn record(&self, u: &Upload) -> Result<(), ServiceError> {
        self.inner.storage.record(u).await.map_err(io_error)
    }

    /// An upload as its owner sees it.
    pub fn get(&self, owner: UserId, id: &str) -> Result<Upload, ServiceError> {
        self.ready()?;
        match self.index().get(id) {
            Some(u) if u.owner == owner => Ok(u.clone()),
            _ => Err(not_found()),
        }
    }

    /// Creates an upload of `length` bytes.
    pub async fn create(
        &self,
        owner: UserId,
        length: u64,
        name: &str,
        media_type: &str,
        now_ms: i64,
    ) -> Result<Upload, ServiceError> {
        self.ready()?;
        let c = &self.inner.config;
        if length > c.max_file_bytes {
            return Err(ServiceError::MessageTooLarge {
                size: usize::try_from(length).unwrap_or(usize::MAX),
                max: usize::try_from(c.max_file_bytes).unwrap_or(usize::MAX),
            });
        }
        if name.len() > 255 || media_type.len() > 255 {
            return Err(ServiceError::InvalidArgument(
                "a file's name and media type are at most 255 bytes".into(),
            ));
        }
        let id = new_id()?;
        let u = Upload {
            id: id.clone(),
            owner,
            length,
            offset: 0,
            name: name.to_owned(),
            media_type: media_type.to_owned(),
            created_at_ms: now_ms,
            touched_at_ms: now_ms,
            sha256: None,
            shared_with: Vec::new(),
            shared_with_users: Vec::new(),
            parts: Parts::default(),
        };
        {
            // Checked and reserved at once, so two creations cannot both
            // pass the same remaining quota.
            let mut index = self.index();
            let mine = index.values().filter(|u| u.owner == owner);
            let (used, open) = mine.fold((0u64, 0usize), |(b, n), u| {
                (b.saturating_add(u.length), n + usize::from(!u.finished()))
            });
            if used.saturating_add(length) > c.quota_bytes_per_user {
                return Err(ServiceError::Forbidden(format!(
                    "the upload would pass your quota of {} bytes ({used} used)",
                    c.quota_bytes_per_user
                )));
            }
            if open >= c.max_open_uploads_per_user {
                return Err(ServiceError::RateLimited {
                    what: "too many unfinished uploads",
                    retry_after: std::time::Duration::from_secs(60),
                });
            }
            index.insert(id.clone(), u.clone());
        }
        let made = match self.inner.storage.create(&u).await {
            Ok(()) => self.record(&u).await,
            Err(e) => Err(io_error(e)),
        };
        if let Err(e) = made {
            self.index().remove(&id);
            let _ = self.inner.storage.remove(&u).await;
            return Err(e);
        }
        if length == 0 {
            return self.finish(u).await;
        }
        Ok(u)
    }

    /// Appends what `body` holds at `offset`, which must be the upload's
    /// offset; the bytes are durable before the new offset is recorded and
    /// returned. With a checksum, the bytes are kept only if they all came
    /// and match. A body cut short otherwise keeps what arrived, so the
    /// client goes on from there.
    pub async fn append(
        &self,
        owner: UserId,
        id: &str,
        offset: u64,
        checksum: Option<Checksum>,
        mut body: impl AsyncRead + Unpin + Send,
        now_ms: i64,
    ) -> Result<Upload, AppendError> {
        let u = self.get(owner, id)?;
        let Some(_busy) = self.busy(id) else {
            // Another append runs: its end decides the offset.
            return Err(AppendError::OffsetMismatch { at: u.offset });
        };
        // Read again now that it is ours: a deletion may have come first.
        let u = self.get(owner, id)?;
        if u.finished() || offset != u.offset {
            return Err(AppendError::OffsetMismatch { at: u.offset });
        }
        if u.offset == u.length {
            // Complete but not sealed (a failure or crash in between).
            return Ok(self.finish(u).await?);
        }
        let mut body = Body {
            inner: &mut body,
            room: u.length - u.offset,
            got: 0,
            hash: checksum.map(|Checksum::Sha256(want)| (Sha256::new(), want)),
            failure: None,
        };
        let appended = self.inner.storage.append(&u, &mut body).await?;
        let mut next = match appended {
            Appended::Kept(next) => *next,
            Appended::Dropped => {
                return Err(match body.failure {
                    Some(Failure::TooLong) => AppendError::TooLong,
                    _ => AppendError::ChecksumMismatch,
                })
            }
        };
        if next.offset > u.offset {
            next.touched_at_ms = now_ms;
            self.record(&next).await?;
            self.index().insert(id.to_owned(), next.clone());
            self.inner.storage.settled(&u, &next).await;
        }
        if body.failure.is_some() {
            tracing::debug!(
                upload = id,
                kept = next.offset - u.offset,
                "an upload's body was cut"
            );
        }
        if next.offset == next.length {
            return Ok(self.finish(next).await?);
        }
        Ok(next)
    }

    /// Seals a complete upload, hashes it and records it finished.
    async fn finish(&self, u: Upload) -> Result<Upload, ServiceError> {
        let storage = &self.inner.storage;
        let mut sealed = storage.seal(&u).await.map_err(io_error)?;
        let mut stream = storage
            .read(&sealed, 0, sealed.length)
            .await
            .map_err(io_error)?;
        let mut hash = Sha256::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            hash.update(chunk.map_err(io_error)?);
        }
        sealed.sha256 = Some(hash.finalize().iter().map(|b| format!("{b:02x}")).collect());
        self.record(&sealed).await?;
        self.index().insert(sealed.id.clone(), sealed.clone());
        storage.settled(&u, &sealed).await;
        Ok(sealed)
    }

    /// Deletes an upload, finished or not (tus termination). An append
    /// running on it answers first.
    pub async fn delete(&self, owner: UserId, id: &str) -> Result<(), ServiceError> {
        self.get(owner, id)?;
        let Some(_busy) = self.busy(id) else {
            return Err(ServiceError::RateLimited {
                what: "an append to this upload is running",
                retry_after: std::time::Duration::from_secs(1),
            });
        };
        let u = self.get(owner, id)?;
        self.remove(&u).await
    }

    async fn remove(&self, u: &Upload) -> Result<(), ServiceError> {
        self.index().remove(&u.id);
        self.inner.storage.remove(u).await.map_err(io_error)
    }

    /// Deletes every upload of `owner` (an account deleted); how many. One
    /// being appended to is left to its expiry.
    pub async fn delete_owned_by(&self, owner: UserId) -> usize {
        let ids: Vec<String> = self
            .index()
            .values()
            .filter(|u| u.owner == owner)
            .map(|u| u.id.clone())
            .collect();
        let mut n = 0;
        for id in ids {
            let Some(_busy) = self.busy(&id) else {
                continue;
            };
            let Some(u) = self.index().get(&id).cloned() else {
                continue;
            };
            if self.remove(&u).await.is_ok() {
                n += 1;
            }
        }
        n
    }

    /// An upload, whoever owns it (for the service's download check).
    pub fn lookup(&self, id: &str) -> Result<Option<Upload>, ServiceError> {
        self.ready()?;
        Ok(self.index().get(id).cloned())
    }

    /// Lets the members of a conversation, or the peer of a 1:1, download
    /// `owner`'s upload `id`: a file message is about to name it there.
    /// The service calls this before it stores the message, so that whoever
    /// the message reaches can download the file at once. Not the owner's,
    /// unknown, or already shared `MAX_SHARES` times: nothing changes.
    pub async fn share(&self, owner: UserId, id: &str, with: Target) {
        let add = |u: &mut Upload| -> bool {
            if u.shared_with.len() + u.shared_with_users.len() >= MAX_SHARES {
                return false;
            }
            let (list, key) = match with {
                Target::Conversation(c) => (&mut u.shared_with, c),
                Target::Peer(p) => (&mut u.shared_with_users, p),
            };
            if list.contains(&key) {
                return false;
            }
            list.push(key);
            true
        };
        let next = {
            let index = self.index();
            match index.get(id) {
                Some(u) if u.owner == owner => {
                    let mut next = u.clone();
                    if !add(&mut next) {
                        return;
                    }
                    next
                }
                _ => return,
            }
        };
        match self.record(&next).await {
            Ok(()) => {
                if let Some(u) = self.index().get_mut(id) {
                    add(u);
                }
            }
            Err(e) => tracing::warn!(error = %e, file = id, "cannot record a file's share"),
        }
    }

    /// `count` bytes from `start` of a finished file.
    pub async fn read(
        &self,
        u: &Upload,
        start: u64,
        count: u64,
    ) -> Result<ByteStream, ServiceError> {
        if !u.finished() || start.saturating_add(count) > u.length {
            return Err(not_found());
        }
        self.inner
            .storage
            .read(u, start, count)
            .await
            .map_err(io_error)
    }

    /// Deletes the unfinished uploads untouched past the expiry; returns
    /// how many. Run now and then (the server does, every minute).
    pub async fn expire(&self, now_ms: i64) -> usize {
        let horizon = (self.inner.config.expire_after_secs as i64).saturating_mul(1000);
        let old: Vec<String> = self
            .index()
            .values()
            .filter(|u| !u.finished() && now_ms.saturating_sub(u.touched_at_ms) >= horizon)
            .map(|u| u.id.clone())
            .collect();
        let mut n = 0;
        for id in old {
            let Some(_busy) = self.busy(&id) else {
                continue;
            };
            let Some(u) = self.index().get(&id).cloned() else {
                continue;
            };
            if self.remove(&u).await.is_ok() {
                n += 1;
            }
        }
        if n > 0 {
            metrics::counter!("natter_uploads_expired_total").increment(n as u64);
            tracing::info!(uploads = n, "expired unfinished uploads");
        }
        n
    }

    /// When an unfinished upload expires.
    pub fn expires_at_ms(&self, u: &Upload) -> i64 {
        u.touched_at_ms
            .saturating_add((self.inner.config.expire_after_secs as i64).saturating_mul(1000))
    }
}

/// A fresh upload id: 16 random bytes, hex.
fn new_id() -> Result<String, ServiceError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `id` could be an upload id (so no path or key is ever built
/// from anything else).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
