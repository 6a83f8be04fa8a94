//! The `[files]` section: limits, and where the bytes are kept.

use natter_runtime::config::{check, Invalid};
use serde::{Deserialize, Serialize};

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
    /// Where the bytes are kept.
    pub storage: StorageKind,
    /// The object store, with `storage = "s3"`.
    pub s3: S3Config,
}

/// Where files are kept.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Under the data directory (`<data_dir>/files`).
    #[default]
    Local,
    /// In an S3-compatible object store (`[files.s3]`).
    S3,
}

/// `[files.s3]`: an S3-compatible object store.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The service's address (`http://127.0.0.1:9000`); empty for AWS.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Credentials; empty takes them from the environment
    /// (`AWS_ACCESS_KEY_ID`, ..., or the instance's role).
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Every object natter writes is under this prefix.
    pub prefix: String,
    /// The size of each part of a multipart upload (S3 wants 5 MiB at
    /// least, but for the last).
    pub part_size_bytes: u64,
    /// What all appends together may hold in memory while they fill
    /// parts; an append that would pass it waits.
    pub buffer_bytes: u64,
    /// How long one request to the store may take, retries included
    /// (twice this at most): a store that stops answering fails the
    /// append (UNAVAILABLE) instead of holding it.
    pub request_timeout_ms: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            prefix: "natter/files".into(),
            part_size_bytes: 8 << 20,
            buffer_bytes: 256 << 20,
            request_timeout_ms: 30_000,
        }
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_file_bytes: 1 << 30,
            quota_bytes_per_user: 4 << 30,
            max_open_uploads_per_user: 16,
            expire_after_secs: 24 * 3600,
            storage: StorageKind::Local,
            s3: S3Config::default(),
        }
    }
}

/// S3's smallest part (but for the last) and its largest.
pub const MIN_PART: u64 = 5 << 20;
pub const MAX_PART: u64 = 5 << 30;

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
        )?;
        if self.storage == StorageKind::S3 {
            let s3 = &self.s3;
            check(!s3.bucket.is_empty(), "files.s3.bucket", || {
                "is required with files.storage = \"s3\"".to_owned()
            })?;
            check(
                (MIN_PART..=MAX_PART).contains(&s3.part_size_bytes),
                "files.s3.part_size_bytes",
                || format!("must be between {MIN_PART} (5 MiB) and {MAX_PART} (5 GiB)"),
            )?;
            check(
                s3.buffer_bytes >= s3.part_size_bytes,
                "files.s3.buffer_bytes",
                || "must be at least files.s3.part_size_bytes".to_owned(),
            )?;
            check(
                s3.request_timeout_ms >= 100,
                "files.s3.request_timeout_ms",
                || "must be at least 100".to_owned(),
            )?;
            check(
                s3.endpoint.is_empty()
                    || s3.endpoint.starts_with("http://")
                    || s3.endpoint.starts_with("https://"),
                "files.s3.endpoint",
                || "must be an http:// or https:// address".to_owned(),
            )?;
        }
        Ok(())
    }
}
