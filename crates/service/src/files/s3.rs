//! Files in an S3-compatible object store, through object_store's
//! low-level multipart API so that an upload goes on across appends, nodes
//! and restarts.
//!
//! Under `[files.s3] prefix`, an upload is `<id>` (the bytes, once sealed),
//! `<id>.json` (its record) and, while unfinished, a multipart upload whose
//! parts are each `part_size_bytes`, plus the bytes after the last whole
//! part in `<id>.tail.<n>` (`n` = the parts before it). An append fills
//! parts and writes the new tail before the record moves, so the record
//! always names objects that exist: a new tail has a new name whenever a
//! part was added, and otherwise begins with the old one. Memory: each
//! append that runs holds one part's room of `buffer_bytes`, taken whole
//! before it reads; one that finds no room waits (its client's bytes wait
//! in its socket).

use super::config::S3Config;
use super::{Appended, Body, ByteStream, Parts, Storage, Upload};
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, PutPayload, RetryConfig};
use std::io;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

/// The budget is counted in KiB.
const UNIT: u64 = 1024;

pub(crate) struct S3 {
    store: AmazonS3,
    prefix: Path,
    part_size: usize,
    budget: Arc<Semaphore>,
}

fn err(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

impl S3 {
    pub fn open(c: &S3Config) -> io::Result<S3> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&c.bucket)
            .with_region(&c.region);
        if !c.endpoint.is_empty() {
            b = b.with_endpoint(&c.endpoint);
        }
        if !c.access_key_id.is_empty() {
            b = b
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key);
        }
        let timeout = std::time::Duration::from_millis(c.request_timeout_ms);
        let store = b
            .with_client_options(
                // The options hold allow_http too: set here, not before.
                ClientOptions::new()
                    .with_allow_http(c.endpoint.starts_with("http://"))
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout.min(std::time::Duration::from_secs(5))),
            )
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: timeout,
                ..Default::default()
            })
            .build()
            .map_err(io::Error::other)?;
        let units = (c.buffer_bytes / UNIT).min(Semaphore::MAX_PERMITS as u64);
        Ok(S3 {
            store,
            prefix: Path::from(c.prefix.as_str()),
            part_size: usize::try_from(c.part_size_bytes).unwrap_or(usize::MAX),
            budget: Arc::new(Semaphore::new(units as usize)),
        })
    }

    fn data(&self, id: &str) -> Path {
        self.prefix.child(id)
    }

    fn json(&self, id: &str) -> Path {
        self.prefix.child(format!("{id}.json"))
    }

    /// The tail after `parts` whole parts.
    fn tail(&self, id: &str, parts: usize) -> Path {
        self.prefix.child(format!("{id}.tail.{parts}"))
    }

    async fn read_tail(&self, u: &Upload) -> io::Result<Bytes> {
        if u.parts.tail == 0 {
            return Ok(Bytes::new());
        }
        self.store
            .get_range(&self.tail(&u.id, u.parts.ids.len()), 0..u.parts.tail)
            .await
            .map_err(err)
    }

    async fn put_part(&self, id: &str, parts: &mut Parts, data: Bytes) -> io::Result<()> {
        let path = self.data(id);
        let multipart = match &parts.multipart {
            Some(m) => m.clone(),
            None => {
                let m = self.store.create_multipart(&path).await.map_err(err)?;
                parts.multipart = Some(m.clone());
                m
            }
        };
        let part = self
            .store
            .put_part(&path, &multipart, parts.ids.len(), PutPayload::from(data))
            .await
            .map_err(err)?;
        parts.ids.push(part.content_id);
        Ok(())
    }

    async fn delete(&self, path: &Path) -> io::Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }
}

#[async_trait]
impl Storage for S3 {
    async fn records(&self) -> io::Result<Vec<Upload>> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_filter(|m| std::future::ready(m.location.as_ref().ends_with(".json")))
            .try_collect()
            .await
            .map_err(err)?;
        // Read 16 at a time: start-up waits for the whole index.
        let records: Vec<_> = futures_util::stream::iter(metas)
            .map(|m| async move {
                let got = self.store.get(&m.location).await.map_err(err)?;
                Ok::<_, io::Error>((m.location, got.bytes().await.map_err(err)?))
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(records.len());
        for (key, bytes) in records {
            match serde_json::from_slice::<Upload>(&bytes) {
                Ok(u) if super::valid_id(&u.id) => out.push(u),
                _ => tracing::warn!(%key, "an unreadable upload record; skipped"),
            }
        }
        Ok(out)
    }

    async fn record(&self, u: &Upload) -> io::Result<()> {
        let bytes = serde_json::to_vec(u).map_err(io::Error::other)?;
        self.store
            .put(&self.json(&u.id), PutPayload::from(bytes))
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn create(&self, _u: &Upload) -> io::Result<()> {
        Ok(())
    }

    async fn append(&self, u: &Upload, body: &mut Body<'_>) -> io::Result<Appended> {
        // A whole part's room, taken at once before any byte is read: an
        // append holds all it may need or nothing, so appends can never
        // each hold a piece of the budget while all wait for more.
        let units = u32::try_from((self.part_size as u64).div_ceil(UNIT)).unwrap_or(u32::MAX);
        let _room = self
            .budget
            .acquire_many(units)
            .await
            .map_err(io::Error::other)?;
        // One part's buffer, filled in place and never past a part: the
        // room taken above is what it holds.
        let tail = self.read_tail(u).await?;
        let mut buf = BytesMut::with_capacity(self.part_size);
        buf.extend_from_slice(&tail);
        drop(tail);
        let mut parts = u.parts.clone();
        let mut got: u64 = 0;
        loop {
            let room = self.part_size - buf.len();
            let n = match body.read_buf(&mut (&mut buf).limit(room)).await {
                Ok(0) => break,
                Ok(n) => n,
                // The client went away mid-body, or the body was refused.
                Err(_) => break,
            };
            got += n as u64;
            if buf.len() == self.part_size {
                let full = std::mem::replace(&mut buf, BytesMut::new());
                self.put_part(&u.id, &mut parts, full.freeze()).await?;
                buf.reserve(self.part_size);
            }
        }
        if body.refused() {
            // Parts put past the record are put again by the next append.
            return Ok(Appended::Dropped);
        }
        let mut next = u.clone();
        if got == 0 {
            return Ok(Appended::Kept(Box::new(next)));
        }
        parts.tail = buf.len() as u64;
        if !buf.is_empty() {
            self.store
                .put(
                    &self.tail(&u.id, parts.ids.len()),
                    PutPayload::from(buf.freeze()),
                )
                .await
                .map_err(err)?;
        }
        next.offset += got;
        next.parts = parts;
        Ok(Appended::Kept(Box::new(next)))
    }

    async fn settled(&self, before: &Upload, next: &Upload) {
        let moved = next.parts.ids.len() != before.parts.ids.len() || next.finished();
        if before.parts.tail > 0 && moved {
            let old = self.tail(&before.id, before.parts.ids.len());
            if let Err(e) = self.delete(&old).await {
                tracing::warn!(error = %e, key = %old, "cannot delete an upload's old tail");
            }
        }
    }

    async fn seal(&self, u: &Upload) -> io::Result<Upload> {
        let path = self.data(&u.id);
        let tail = self.read_tail(u).await?;
        match &u.parts.multipart {
            // Smaller than one part: one object.
            None => {
                self.store
                    .put(&path, PutPayload::from(tail))
                    .await
                    .map_err(err)?;
            }
            Some(m) => {
                let mut parts = u.parts.clone();
                if !tail.is_empty() {
                    self.put_part(&u.id, &mut parts, tail).await?;
                }
                let ids = parts
                    .ids
                    .into_iter()
                    .map(|content_id| PartId { content_id })
                    .collect();
                if let Err(e) = self.store.complete_multipart(&path, m, ids).await {
                    // Completed before, and the record not written after?
                    match self.store.head(&path).await {
                        Ok(meta) if meta.size == u.length => {}
                        _ => return Err(err(e)),
                    }
                }
            }
        }
        let mut sealed = u.clone();
        sealed.parts = Parts::default();
        Ok(sealed)
    }

    async fn read(&self, u: &Upload, start: u64, count: u64) -> io::Result<ByteStream> {
        if count == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let got = self
            .store
            .get_opts(
                &self.data(&u.id),
                GetOptions {
                    range: Some(GetRange::Bounded(start..start + count)),
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        Ok(got.into_stream().map_err(err).boxed())
    }

    async fn remove(&self, u: &Upload) -> io::Result<()> {
        // The record first: without it the rest is unreachable.
        self.delete(&self.json(&u.id)).await?;
        if let (Some(m), false) = (&u.parts.multipart, u.finished()) {
            let _ = self.store.abort_multipart(&self.data(&u.id), m).await;
        }
        if u.parts.tail > 0 {
            self.delete(&self.tail(&u.id, u.parts.ids.len())).await?;
        }
        self.delete(&self.data(&u.id)).await
    }
}
