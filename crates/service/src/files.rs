//! Files: resumable uploads and their downloads, on local disk under the
//! data directory (`<data_dir>/files`).
//!
//! An upload is created with its length, then filled by appends at the
//! offset it has reached; each append's bytes are synced to disk before the
//! new offset is reported, so an offset a client was told is durable. A
//! finished upload is hashed (SHA-256, its ETag) and can be downloaded by
//! its owner. An unfinished upload expires `expire_after_secs` after its
//! last append and is deleted.
//!
//! Each upload is two files: `<id>.bin` (the bytes) and `<id>.json` (what
//! is known of it, replaced atomically). Every upload is indexed in memory
//! at start-up, so quotas and lookups never scan the disk.

use crate::ServiceError;
use natter_domain::UserId;
use natter_runtime::config::{check, Invalid};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The `[files]` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// The largest file.
    pub max_file_bytes: u64,
    /// What one user's files (finished and unfinished) may hold at once.
    pub quota_bytes_per_user: u64,
    /// Unfinished uploads a user may have at once.
    pub max_open_uploads_per_user: usize,
    /// An unfinished upload untouched this long is deleted.
    pub expire_after_secs: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_file_bytes: 1 << 30,
            quota_bytes_per_user: 4 << 30,
            max_open_uploads_per_user: 16,
            expire_after_secs: 24 * 3600,
        }
    }
}

impl FilesConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let at_least_1 = || "must be at least 1".to_owned();
        check(self.max_file_bytes >= 1, "files.max_file_bytes", at_least_1)?;
        check(
            self.quota_bytes_per_user >= self.max_file_bytes,
            "files.quota_bytes_per_user",
            || "must be at least files.max_file_bytes".to_owned(),
        )?;
        check(
            self.max_open_uploads_per_user >= 1,
            "files.max_open_uploads_per_user",
            at_least_1,
        )?;
        check(
            self.expire_after_secs >= 1,
            "files.expire_after_secs",
            at_least_1,
        )
    }
}

/// What is known of an upload (its `.json`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub owner: UserId,
    /// The length announced at creation.
    pub length: u64,
    /// Bytes received and synced.
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
    /// download it (at most `MAX_SHARES`).
    #[serde(default)]
    pub shared_with: Vec<u64>,
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
    /// More bytes than the length announced.
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

/// The files of one node.
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    config: FilesConfig,
    index: Mutex<HashMap<String, Upload>>,
    /// Uploads being appended to now: one append at a time per upload.
    busy: Mutex<std::collections::HashSet<String>>,
}

/// Marks an upload busy while one append runs on it.
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
    /// Opens (creating) the files directory and indexes what it holds.
    /// Bytes past an upload's recorded offset (an append cut before it was
    /// synced and recorded) are cut off.
    pub async fn open(dir: PathBuf, config: FilesConfig) -> std::io::Result<Files> {
        tokio::fs::create_dir_all(&dir).await?;
        let mut index = HashMap::new();
        let mut entries = tokio::fs::read_dir(&dir).await?;
        while let Some(e) = entries.next_entry().await? {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let Ok(text) = tokio::fs::read(&path).await else {
                continue;
            };
            let Ok(u) = serde_json::from_slice::<Upload>(&text) else {
                tracing::warn!(path = %path.display(), "an unreadable upload record; skipped");
                continue;
            };
            let data = dir.join(format!("{}.bin", u.id));
            if let Ok(f) = tokio::fs::OpenOptions::new().write(true).open(&data).await {
                if f.metadata().await?.len() > u.offset {
                    f.set_len(u.offset).await?;
                    f.sync_all().await?;
                }
            }
            index.insert(u.id.clone(), u);
        }
        Ok(Files {
            inner: Arc::new(Inner {
                dir,
                config,
                index: Mutex::new(index),
                busy: Mutex::new(Default::default()),
            }),
        })
    }

    pub fn config(&self) -> &FilesConfig {
        &self.inner.config
    }

    fn index(&self) -> std::sync::MutexGuard<'_, HashMap<String, Upload>> {
        self.inner.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn data_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.bin"))
    }

    /// Writes an upload's record: to a temporary file, synced, renamed over
    /// the old one, and the directory synced.
    async fn record(&self, u: &Upload) -> Result<(), ServiceError> {
        let path = self.inner.dir.join(format!("{}.json", u.id));
        let tmp = self.inner.dir.join(format!("{}.json.tmp", u.id));
        let bytes = serde_json::to_vec(u).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let mut f = tokio::fs::File::create(&tmp).await.map_err(io_error)?;
        f.write_all(&bytes).await.map_err(io_error)?;
        f.sync_all().await.map_err(io_error)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io_error)?;
        sync_dir(&self.inner.dir).await.map_err(io_error)?;
        Ok(())
    }

    /// An upload as its owner sees it.
    pub fn get(&self, owner: UserId, id: &str) -> Result<Upload, ServiceError> {
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
        let made = async {
            let f = tokio::fs::File::create(self.data_path(&id)).await?;
            f.sync_all().await?;
            Ok::<_, std::io::Error>(())
        }
        .await;
        let made = match made {
            Ok(()) => self.record(&u).await,
            Err(e) => Err(io_error(e)),
        };
        if let Err(e) = made {
            self.index().remove(&id);
            let _ = tokio::fs::remove_file(self.data_path(&id)).await;
            return Err(e);
        }
        if length == 0 {
            return self.finish(u).await;
        }
        Ok(u)
    }

    /// Appends what `body` holds at `offset`, which must be the upload's
    /// offset; the bytes are synced before the new offset is recorded and
    /// returned. With a checksum, the bytes are kept only if they match.
    /// A body cut short keeps what arrived (synced), so the client goes on
    /// from there.
    pub async fn append(
        &self,
        owner: UserId,
        id: &str,
        offset: u64,
        checksum: Option<Checksum>,
        mut body: impl AsyncRead + Unpin,
        now_ms: i64,
    ) -> Result<Upload, AppendError> {
        let u = self.get(owner, id)?;
        let _busy = {
            let mut busy = self.inner.busy.lock().unwrap_or_else(|p| p.into_inner());
            if !busy.insert(id.to_owned()) {
                // Another append runs: its end decides the offset.
                return Err(AppendError::OffsetMismatch { at: u.offset });
            }
            Busy {
                files: &self.inner,
                id: id.to_owned(),
            }
        };
        if u.finished() || offset != u.offset {
            return Err(AppendError::OffsetMismatch { at: u.offset });
        }
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(self.data_path(id))
            .await?;
        f.seek(std::io::SeekFrom::Start(offset)).await?;
        let room = u.length - u.offset;
        let mut hash = Sha256::new();
        let mut got: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        let mut cut = None;
        loop {
            let n = match body.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    // The client went away mid-body: keep what came.
                    cut = Some(e);
                    break;
                }
            };
            if got + n as u64 > room {
                f.set_len(u.offset).await?;
                return Err(AppendError::TooLong);
            }
            f.write_all(&buf[..n]).await?;
            if checksum.is_some() {
                hash.update(&buf[..n]);
            }
            got += n as u64;
        }
        if let Some(Checksum::Sha256(want)) = checksum {
            if cut.is_some() || hash.finalize().as_slice() != want {
                f.set_len(u.offset).await?;
                f.sync_all().await?;
                return Err(AppendError::ChecksumMismatch);
            }
        }
        f.sync_data().await?;
        drop(f);
        let mut next = u.clone();
        next.offset += got;
        next.touched_at_ms = now_ms;
        if got > 0 {
            self.record(&next).await?;
            self.index().insert(id.to_owned(), next.clone());
        }
        if let Some(e) = cut {
            tracing::debug!(error = %e, upload = id, kept = got, "an upload's body was cut");
        }
        if next.offset == next.length {
            return Ok(self.finish(next).await?);
        }
        Ok(next)
    }

    /// Hashes a complete upload and records it finished.
    async fn finish(&self, mut u: Upload) -> Result<Upload, ServiceError> {
        let mut f = tokio::fs::File::open(self.data_path(&u.id))
            .await
            .map_err(io_error)?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).await.map_err(io_error)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
        u.sha256 = Some(hash.finalize().iter().map(|b| format!("{b:02x}")).collect());
        self.record(&u).await?;
        self.index().insert(u.id.clone(), u.clone());
        Ok(u)
    }

    /// Deletes an upload, finished or not (tus termination).
    pub async fn delete(&self, owner: UserId, id: &str) -> Result<(), ServiceError> {
        self.get(owner, id)?;
        self.remove(id).await
    }

    async fn remove(&self, id: &str) -> Result<(), ServiceError> {
        self.index().remove(id);
        let json = self.inner.dir.join(format!("{id}.json"));
        match tokio::fs::remove_file(&json).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        let _ = tokio::fs::remove_file(self.data_path(id)).await;
        Ok(())
    }

    /// An upload, whoever owns it (for the service's download check).
    pub fn lookup(&self, id: &str) -> Option<Upload> {
        self.index().get(id).cloned()
    }

    /// Lets the members of `conversation` download `owner`'s upload `id`
    /// (a file message named it there). Not the owner's, unknown, or
    /// already shared with `MAX_SHARES` conversations: nothing changes.
    pub async fn share(&self, owner: UserId, id: &str, conversation: u64) {
        let next = {
            let index = self.index();
            match index.get(id) {
                Some(u)
                    if u.owner == owner
                        && !u.shared_with.contains(&conversation)
                        && u.shared_with.len() < MAX_SHARES =>
                {
                    let mut next = u.clone();
                    next.shared_with.push(conversation);
                    next
                }
                _ => return,
            }
        };
        match self.record(&next).await {
            Ok(()) => {
                let mut index = self.index();
                if let Some(u) = index.get_mut(id) {
                    if !u.shared_with.contains(&conversation) {
                        u.shared_with.push(conversation);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, file = id, "cannot record a file's share"),
        }
    }

    /// A finished file's bytes, to read.
    pub async fn open_finished(&self, u: &Upload) -> Result<tokio::fs::File, ServiceError> {
        if !u.finished() {
            return Err(not_found());
        }
        tokio::fs::File::open(self.data_path(&u.id))
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
            if self.remove(&id).await.is_ok() {
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

/// Whether `id` could be an upload id (so no path is ever built from
/// anything else).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}
