//! `natter client upload` and `download`: files over the HTTP API (tus
//! uploads, ranged downloads), resuming after a cut and checking the
//! SHA-256 at the end, with progress on stderr.

use anyhow::{bail, Context};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes per append: each is synced by the server before it answers.
const CHUNK: usize = 4 * 1024 * 1024;

/// The HTTP base URL: `--http`, else the server when it is an HTTP one,
/// else the default HTTP port on the server's host.
pub fn http_base(server: &str, http: Option<&str>) -> String {
    if let Some(h) = http {
        return h.trim_end_matches('/').to_owned();
    }
    if server.starts_with("http://") || server.starts_with("https://") {
        return server.trim_end_matches('/').to_owned();
    }
    let host = server
        .rsplit_once("://")
        .map_or(server, |(_, rest)| rest)
        .rsplit_once(':')
        .map_or("127.0.0.1", |(h, _)| h);
    format!("http://{host}:7780")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .build()
        .into()
}

fn header(r: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Why a request failed, from the server's error body when it has one.
fn failed(what: &str, r: ureq::http::Response<ureq::Body>) -> anyhow::Error {
    let status = r.status();
    let text = r.into_body().read_to_string().unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    anyhow::anyhow!("{what}: {status} {message}")
}

/// Where an unfinished upload of `path` is remembered, to resume it.
fn resume_file(path: &Path, len: u64) -> anyhow::Result<PathBuf> {
    let dir = super::auth::config_dir()?.join("uploads");
    std::fs::create_dir_all(&dir)?;
    let full = std::fs::canonicalize(path)?;
    let key: String = Sha256::digest(format!("{}\n{len}", full.display()).as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(dir.join(key))
}

fn progress(what: &str, done: u64, total: u64) {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    eprint!("\r{what} {pct:>3}% ({done}/{total} bytes)");
    let _ = std::io::stderr().flush();
}

/// Uploads `path` (resuming an upload of it that a cut left unfinished);
/// the file's id and its SHA-256.
pub fn upload(base: &str, token: &str, path: &Path) -> anyhow::Result<(String, String, u64)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let agent = agent();
    let auth = format!("Bearer {token}");
    let remembered = resume_file(path, len)?;
    // An upload of this file a cut left unfinished goes on where it was.
    let mut at = std::fs::read_to_string(&remembered).ok().and_then(|url| {
        let r = agent
            .head(&url)
            .header("authorization", &auth)
            .header("tus-resumable", "1.0.0")
            .call()
            .ok()?;
        (r.status() == 200).then_some(url)
    });
    if at.is_none() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let r = agent
            .post(format!("{base}/v1/files/"))
            .header("authorization", &auth)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len.to_string())
            .header("upload-metadata", format!("filename {}", b64(&name)))
            .send_empty()
            .context("cannot reach the server's HTTP port")?;
        if r.status() != 201 {
            return Err(failed("the upload was refused", r));
        }
        let location = header(&r, "location").context("no Location in the answer")?;
        let url = format!("{base}{location}");
        std::fs::write(&remembered, &url)?;
        at = Some(url);
    }
    let url = at.unwrap_or_default();
    let mut whole = Sha256::new();
    let mut hashed = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let r = agent
            .head(&url)
            .header("authorization", &auth)
            .header("tus-resumable", "1.0.0")
            .call()?;
        if r.status() != 200 {
            return Err(failed("the upload is gone", r));
        }
        let offset: u64 = header(&r, "upload-offset")
            .and_then(|v| v.parse().ok())
            .context("no Upload-Offset")?;
        progress("uploading", offset, len);
        // The hash of the whole file, read along the way.
        while hashed < offset {
            file.seek(SeekFrom::Start(hashed))?;
            let n = file.read(&mut buf[..((offset - hashed) as usize).min(CHUNK)])?;
            if n == 0 {
                bail!("{} shrank while uploading", path.display());
            }
            whole.update(&buf[..n]);
            hashed += n as u64;
        }
        if offset == len {
            break;
        }
        file.seek(SeekFrom::Start(offset))?;
        let n = file.read(&mut buf[..((len - offset) as usize).min(CHUNK)])?;
        let sum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&buf[..n]));
        let r = agent
            .patch(&url)
            .header("authorization", &auth)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset.to_string())
            .header("content-type", "application/offset+octet-stream")
            .header("upload-checksum", format!("sha256 {sum}"))
            .send(&buf[..n]);
        match r {
            Ok(r) if r.status() == 204 || r.status() == 409 => {}
            Ok(r) if r.status() == 460 => {}
            Ok(r) => return Err(failed("an append was refused", r)),
            // A cut: ask where it stands and go on.
            Err(e) => eprintln!("\n{e}; resuming"),
        }
    }
    eprintln!();
    let _ = std::fs::remove_file(&remembered);
    let id = url.rsplit('/').next().unwrap_or_default().to_owned();
    let sha = whole
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((id, sha, len))
}

/// Downloads file `id` to `out`, going on from what a cut left there, and
/// checks the SHA-256 at the end.
pub fn download(base: &str, token: &str, id: &str, out: &Path) -> anyhow::Result<u64> {
    let agent = agent();
    let auth = format!("Bearer {token}");
    let url = format!("{base}/v1/files/{id}");
    let part = out.with_extension(match out.extension() {
        Some(e) => format!("{}.part", e.to_string_lossy()),
        None => "part".into(),
    });
    for _attempt in 0..20 {
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut req = agent.get(&url).header("authorization", &auth);
        if have > 0 {
            req = req.header("range", format!("bytes={have}-"));
        }
        let r = req.call().context("cannot reach the server's HTTP port")?;
        let etag = header(&r, "etag").unwrap_or_default();
        let (start, total) = match r.status().as_u16() {
            200 => (
                0,
                header(&r, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
            206 => {
                let total = header(&r, "content-range")
                    .and_then(|v| v.rsplit('/').next().and_then(|t| t.parse().ok()))
                    .unwrap_or(0);
                (have, total)
            }
            // Everything is here already.
            416 => (have, have),
            _ => return Err(failed("the download was refused", r)),
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(start == 0)
            .open(&part)?;
        f.seek(SeekFrom::Start(start))?;
        let mut whole = r.into_body();
        let mut body = whole.with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = start;
        let cut = loop {
            match body.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    f.write_all(&buf[..n])?;
                    done += n as u64;
                    progress("downloading", done, total);
                }
                Err(e) => break Some(e),
            }
        };
        f.sync_all()?;
        if let Some(e) = cut {
            eprintln!("\n{e}; resuming");
            continue;
        }
        eprintln!();
        // The whole file must hash to its ETag.
        let mut hash = Sha256::new();
        let mut f = std::fs::File::open(&part)?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
        let got: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let want = etag.trim_matches('"');
        if !want.is_empty() && got != want {
            let _ = std::fs::remove_file(&part);
            bail!(
                "the downloaded file's SHA-256 is {got}, the server's {want}: removed, try again"
            );
        }
        std::fs::rename(&part, out)?;
        return Ok(done);
    }
    bail!("the download was cut too many times")
}
