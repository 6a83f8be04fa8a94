//! Files on local disk (`<data_dir>/files`): each upload is two files,
//! `<id>.bin` (the bytes) and `<id>.json` (its record, replaced atomically:
//! written to a temporary file, synced, renamed, the directory synced).
//! Appends are synced before their record moves.

use super::{Appended, Body, ByteStream, Storage, Upload};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub(crate) struct Disk {
    dir: PathBuf,
}

impl Disk {
    pub async fn open(dir: PathBuf) -> io::Result<Disk> {
        tokio::fs::create_dir_all(&dir).await?;
        Ok(Disk { dir })
    }

    fn data(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.bin"))
    }

    fn json(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

#[async_trait]
impl Storage for Disk {
    /// Bytes past an upload's recorded offset (an append cut before it was
    /// synced and recorded) are cut off.
    async fn records(&self) -> io::Result<Vec<Upload>> {
        let mut out = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
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
            if !super::valid_id(&u.id) {
                continue;
            }
            if let Ok(f) = tokio::fs::OpenOptions::new()
                .write(true)
                .open(self.data(&u.id))
                .await
            {
                if f.metadata().await?.len() > u.offset {
                    f.set_len(u.offset).await?;
                    f.sync_all().await?;
                }
            }
            out.push(u);
        }
        Ok(out)
    }

    async fn record(&self, u: &Upload) -> io::Result<()> {
        let tmp = self.dir.join(format!("{}.json.tmp", u.id));
        let bytes = serde_json::to_vec(u).map_err(io::Error::other)?;
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(&bytes).await?;
        f.sync_all().await?;
        tokio::fs::rename(&tmp, self.json(&u.id)).await?;
        sync_dir(&self.dir).await
    }

    async fn create(&self, u: &Upload) -> io::Result<()> {
        let f = tokio::fs::File::create(self.data(&u.id)).await?;
        f.sync_all().await
    }

    async fn append(&self, u: &Upload, body: &mut Body<'_>) -> io::Result<Appended> {
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(self.data(&u.id))
            .await?;
        f.seek(io::SeekFrom::Start(u.offset)).await?;
        let mut got: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match body.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    f.write_all(&buf[..n]).await?;
                    got += n as u64;
                }
                // The client went away mid-body, or the body was refused.
                Err(_) => break,
            }
        }
        if body.refused() {
            f.set_len(u.offset).await?;
            f.sync_all().await?;
            return Ok(Appended::Dropped);
        }
        f.sync_data().await?;
        let mut next = u.clone();
        next.offset += got;
        Ok(Appended::Kept(Box::new(next)))
    }

    async fn settled(&self, _before: &Upload, _next: &Upload) {}

    async fn seal(&self, u: &Upload) -> io::Result<Upload> {
        Ok(u.clone())
    }

    async fn read(&self, u: &Upload, start: u64, count: u64) -> io::Result<ByteStream> {
        let mut f = tokio::fs::File::open(self.data(&u.id)).await?;
        f.seek(io::SeekFrom::Start(start)).await?;
        Ok(tokio_util::io::ReaderStream::with_capacity(f.take(count), 256 * 1024).boxed())
    }

    async fn remove(&self, u: &Upload) -> io::Result<()> {
        match tokio::fs::remove_file(self.json(&u.id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let _ = tokio::fs::remove_file(self.data(&u.id)).await;
        Ok(())
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}
