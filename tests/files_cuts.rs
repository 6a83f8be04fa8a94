//! A file of hundreds of MiB uploaded through cuts at random offsets and a
//! restart, on each storage (local disk, an S3-compatible server): the
//! download is byte-identical, every offset the server tells is durable
//! and only ever grows (no byte acknowledged before a cut is sent again),
//! a wrong checksum keeps nothing, ranges read the stored object, and a
//! stranger cannot download.
#![allow(clippy::unwrap_used)]

mod common;

use common::http::register_and_login;
use common::*;
use natter::config::FilesSection;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const MIB: usize = 1 << 20;
const SIZE: usize = 200 * MIB + 12_345;
/// The base64 of 32 zero bytes: a SHA-256 no test data has.
const ZEROS: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// A cheap generator, so the cuts are random but a failure repeats (the
/// seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn data(len: usize) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Raw HTTP/1.1, so the body can be cut where the test says: the status,
/// the head as text, and the body.
async fn exchange(addr: SocketAddr, head: String, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A server that answers early (409 while an append still runs) may
    // close before the body is all sent: its answer says what happened.
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    // A reset after an early answer may end the read: what came counts.
    let _ = tokio::time::timeout(
        WAIT * 6,
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut out),
    )
    .await
    .expect("an answer");
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |i| i + 4);
    let body = out.split_off(split);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text, body)
}

async fn request(addr: SocketAddr, head: String, body: &[u8]) -> (u16, String) {
    let (status, text, _) = exchange(addr, head, body).await;
    (status, text)
}

/// An append, sent again while the server answers 409 because the last
/// one (a cut) has not quite ended.
async fn patch(addr: SocketAddr, head: String, body: &[u8]) -> (u16, String) {
    for _ in 0..50 {
        let (status, text) = request(addr, head.clone(), body).await;
        // 0: reset before any answer could be read.
        if status != 409 && status != 0 {
            return (status, text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("an append refused with 409 for 5 s");
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// A GET of `path` with these extra header lines.
async fn get(addr: SocketAddr, token: &str, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    exchange(
        addr,
        format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n{extra}connection: close\r\n\r\n"
        ),
        &[],
    )
    .await
}

fn patch_head(token: &str, at: &str, offset: usize, len: usize, sum: Option<&str>) -> String {
    let sum = sum.map_or(String::new(), |s| {
        format!("upload-checksum: sha256 {s}\r\n")
    });
    format!(
        "PATCH {at} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ntus-resumable: 1.0.0\r\n\
         upload-offset: {offset}\r\ncontent-type: application/offset+octet-stream\r\n\
         content-length: {len}\r\nconnection: close\r\n{sum}\r\n"
    )
}

/// The offset the server tells now (tus HEAD).
async fn told(addr: SocketAddr, token: &str, at: &str) -> usize {
    let (status, text) = request(
        addr,
        format!(
            "HEAD {at} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             tus-resumable: 1.0.0\r\nconnection: close\r\n\r\n"
        ),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    header(&text, "upload-offset")
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Sends `bytes` of an append announced longer, then closes: a cut. Waits
/// until the server has dealt with it (its offset stops moving).
async fn cut(addr: SocketAddr, token: &str, at: &str, offset: usize, bytes: &[u8]) -> usize {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = patch_head(token, at, offset, bytes.len() + MIB, None);
    // Refused early (409 while the last append still ends): no bytes
    // count, and the offset says so.
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    drop(s);
    let (mut last, mut since) = (told(addr, token, at).await, Instant::now());
    let deadline = Instant::now() + WAIT * 3;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = told(addr, token, at).await;
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if now == offset + bytes.len() || since.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    last
}

async fn upload_through_cuts(test: &str, files: impl Fn(&std::path::Path) -> Option<FilesSection>) {
    let dir = tempfile::tempdir().unwrap();
    let Some(f) = files(dir.path()) else { return };
    let f2 = f.clone();
    let server = TestServer::start_in(dir, move |c| c.files = f).await;
    let a = server.http;
    let (_, token) = register_and_login(a, "alice").await;
    let (_, stranger) = register_and_login(a, "mallory").await;
    let file = data(SIZE);
    let seed = natter_runtime::clock::now_ms() as u64 | 1;
    eprintln!("{test}: seed {seed}");
    let mut rng = Rng(seed);

    let (status, text) = request(
        a,
        format!(
            "POST /v1/files/ HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             tus-resumable: 1.0.0\r\nupload-length: {SIZE}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let at = header(&text, "location").unwrap();

    let (mut server, mut a) = (server, a);
    let mut offset = 0;
    let (mut cuts, mut restarted) = (0, false);
    while offset < SIZE {
        let left = SIZE - offset;
        if cuts < 24 && left > 2 * MIB {
            // A cut somewhere in the next 20 MiB (sometimes inside a part,
            // sometimes across one).
            let n = 1 + rng.below(left.min(20 * MIB) - 1);
            let now = cut(a, &token, &at, offset, &file[offset..offset + n]).await;
            assert!(
                now >= offset && now <= offset + n,
                "{test}: after sending {n} bytes at {offset}, the offset is {now}"
            );
            offset = now;
            cuts += 1;
        } else {
            let n = left.min(32 * MIB);
            let (status, text) = patch(
                a,
                patch_head(&token, &at, offset, n, None),
                &file[offset..offset + n],
            )
            .await;
            assert_eq!(status, 204, "{text}");
            offset += n;
        }
        if cuts == 8 && !restarted {
            // A wrong checksum keeps nothing.
            let n = MIB.min(SIZE - offset);
            let (status, _) = patch(
                a,
                patch_head(&token, &at, offset, n, Some(ZEROS)),
                &file[offset..offset + n],
            )
            .await;
            assert_eq!(status, 460, "{test}: a wrong checksum");
            assert_eq!(told(a, &token, &at).await, offset);
            // A restart: what was told survives it.
            let dir = server.stop().await;
            let f = f2.clone();
            server = TestServer::start_in(dir, move |c| c.files = f).await;
            a = server.http;
            assert_eq!(
                told(a, &token, &at).await,
                offset,
                "{test}: after a restart"
            );
            restarted = true;
        }
        let now = told(a, &token, &at).await;
        assert_eq!(now, offset, "{test}: the offset told went back or jumped");
    }
    assert!(cuts >= 8, "{test}: only {cuts} cuts");

    let id = at.rsplit('/').next().unwrap().to_owned();
    let path = format!("/v1/files/{id}");
    let (status, head, body) = get(a, &token, &path, "").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(body.len(), SIZE);
    assert!(body == file, "{test}: the download differs from the upload");
    let etag = format!("\"{:x}\"", Sha256::digest(&file));
    assert_eq!(header(&head, "etag"), Some(etag));
    // A range across a part boundary, and the last bytes.
    let range = format!("range: bytes={}-{}\r\n", 5 * MIB - 10, 5 * MIB + 9);
    let (status, _, body) = get(a, &token, &path, &range).await;
    assert_eq!(status, 206);
    assert_eq!(body, file[5 * MIB - 10..5 * MIB + 10]);
    let (status, _, body) = get(a, &token, &path, "range: bytes=-7\r\n").await;
    assert_eq!(status, 206);
    assert_eq!(body, file[SIZE - 7..]);
    // A stranger hears it does not exist.
    assert_eq!(get(a, &stranger, &path, "").await.0, 404);
    // Termination deletes it, bytes and all.
    let (status, text) = request(
        a,
        format!(
            "DELETE {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             tus-resumable: 1.0.0\r\nconnection: close\r\n\r\n"
        ),
        &[],
    )
    .await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(get(a, &token, &path, "").await.0, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_through_random_cuts_on_local_disk() {
    upload_through_cuts("local disk", |_| Some(FilesSection::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_through_random_cuts_on_s3() {
    upload_through_cuts("s3", |dir| {
        s3_files_for(dir, "a_large_upload_through_random_cuts_on_s3")
    })
    .await;
}

/// An object store that is down at start-up, then comes, then goes silent
/// mid-append: the server starts anyway, files answer UNAVAILABLE (with
/// when to come back) within the configured bound instead of hanging, the
/// offset told stays the durable one, and uploads go on once the store
/// answers, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_down_or_silent_answers_unavailable_and_recovers() {
    use natter_testkit::{FaultProxy, Mode};
    let dir = tempfile::tempdir().unwrap();
    let test = "an_object_store_down_or_silent_answers_unavailable_and_recovers";
    let Some(mut f) = s3_files_for(dir.path(), test) else {
        return;
    };
    let upstream: SocketAddr =
        f.s3.endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("NATTER_TEST_S3_ENDPOINT is http://<ip>:<port>");
    let proxy = FaultProxy::start(upstream).await.unwrap();
    proxy.set(Mode::Cut);
    f.s3.endpoint = format!("http://{}", proxy.addr());
    f.s3.request_timeout_ms = 1_000;
    let server = TestServer::start_in(dir, move |c| c.files = f).await;
    let a = server.http;
    let (_, token) = register_and_login(a, "alice").await;
    let create = || {
        request(
            a,
            format!(
                "POST /v1/files/ HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
                 tus-resumable: 1.0.0\r\nupload-length: {}\r\ncontent-length: 0\r\n\
                 connection: close\r\n\r\n",
                8 * MIB
            ),
            &[],
        )
    };

    // Down at start-up: the server is up, files say when to come back.
    let (status, text) = create().await;
    assert_eq!(status, 503, "{text}");
    assert!(header(&text, "retry-after").is_some(), "{text}");

    // The store comes: files work within a few seconds, no restart.
    proxy.set(Mode::Pass);
    let mut last = String::new();
    for _ in 0..100 {
        let (status, text) = create().await;
        if status == 201 {
            last = header(&text, "location").unwrap();
            break;
        }
        last = text;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        last.starts_with("/v1/files/"),
        "files still refused: {last}"
    );
    let at = last;
    let file = data(8 * MIB);
    let (status, text) = patch(
        a,
        patch_head(&token, &at, 0, 6 * MIB, None),
        &file[..6 * MIB],
    )
    .await;
    assert_eq!(status, 204, "{text}");

    // Silent mid-append: the answer comes within the bound (two request
    // timeouts and the retries' pauses), and the offset told is unchanged.
    proxy.set(Mode::Stall);
    let started = Instant::now();
    let (status, text) = patch(
        a,
        patch_head(&token, &at, 6 * MIB, 2 * MIB, None),
        &file[6 * MIB..],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{text}");
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
    assert_eq!(told(a, &token, &at).await, 6 * MIB);

    // Back: the upload goes on from there and is whole.
    proxy.set(Mode::Pass);
    let (status, text) = patch(
        a,
        patch_head(&token, &at, 6 * MIB, 2 * MIB, None),
        &file[6 * MIB..],
    )
    .await;
    assert_eq!(status, 204, "{text}");
    let path = format!("/v1/files/{}", at.rsplit('/').next().unwrap());
    let (status, _, body) = get(a, &token, &path, "").await;
    assert_eq!(status, 200);
    assert!(body == file, "the download differs from the upload");
    server.stop().await;
}

/// More appends at once than the S3 buffer has parts' room for: those
/// that find no room wait and then run, and every upload finishes (no
/// append may hold part of the room while waiting for more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_appends_than_the_s3_buffer_holds_all_finish() {
    let dir = tempfile::tempdir().unwrap();
    let test = "more_appends_than_the_s3_buffer_holds_all_finish";
    let Some(mut f) = s3_files_for(dir.path(), test) else {
        return;
    };
    // Room for two parts; six appends of more than a part each.
    f.s3.buffer_bytes = 10 * MIB as u64;
    let server = TestServer::start_in(dir, move |c| c.files = f).await;
    let a = server.http;
    let (_, token) = register_and_login(a, "alice").await;
    let file = std::sync::Arc::new(data(7 * MIB));
    let mut uploads = Vec::new();
    for _ in 0..6 {
        let (status, text) = request(
            a,
            format!(
                "POST /v1/files/ HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
                 tus-resumable: 1.0.0\r\nupload-length: {}\r\ncontent-length: 0\r\n\
                 connection: close\r\n\r\n",
                file.len()
            ),
            &[],
        )
        .await;
        assert_eq!(status, 201, "{text}");
        let at = header(&text, "location").unwrap();
        let (token, file) = (token.clone(), file.clone());
        uploads.push(natter_testkit::spawn(async move {
            request(a, patch_head(&token, &at, 0, file.len(), None), &file).await
        }));
    }
    for u in uploads {
        let (status, text) = tokio::time::timeout(WAIT * 3, u)
            .await
            .expect("every append ends")
            .unwrap();
        assert_eq!(status, 204, "{text}");
    }
    server.stop().await;
}
