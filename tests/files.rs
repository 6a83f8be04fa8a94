//! Files over a real socket: tus uploads (creation, offsets, checksums, a
//! cut mid-append and its resume, termination, expiry, limits) and
//! downloads with ranges and ETags.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use common::cli::Cli;
use common::*;
use natter_client::ServerFrame;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One request with a real client.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Answer {
    let (method, url) = (method.to_owned(), format!("http://{addr}{path}"));
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .allow_non_standard_methods(true)
            .build()
            .into();
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = agent.run(req.body(body).unwrap()).unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = resp
            .into_body()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    })
    .await
    .unwrap()
}

async fn post_json(addr: SocketAddr, path: &str, body: Value) -> Answer {
    let h = [("content-type", "application/json".to_owned())];
    call(addr, "POST", path, &h, body.to_string().into_bytes()).await
}

async fn login(addr: SocketAddr, name: &str) -> String {
    let r = post_json(
        addr,
        "/v1/register",
        json!({"username": name, "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = post_json(
        addr,
        "/v1/login",
        json!({"username": name, "password": PASSWORD, "device_id": "files"}),
    )
    .await;
    assert_eq!(r.status, 200);
    r.json()["token"].as_str().unwrap().to_owned()
}

fn tus(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {token}")),
        ("tus-resumable", "1.0.0".into()),
    ]
}

async fn create(addr: SocketAddr, token: &str, len: usize, name: &str) -> Answer {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut h = tus(token);
    h.push(("upload-length", len.to_string()));
    h.push((
        "upload-metadata",
        format!("filename {},filetype {}", b64(name), b64("image/png")),
    ));
    call(addr, "POST", "/v1/files/", &h, Vec::new()).await
}

async fn offset(addr: SocketAddr, token: &str, at: &str) -> Answer {
    call(addr, "HEAD", at, &tus(token), Vec::new()).await
}

async fn patch(
    addr: SocketAddr,
    token: &str,
    at: &str,
    offset: usize,
    bytes: &[u8],
    sum: Option<[u8; 32]>,
) -> Answer {
    let mut h = tus(token);
    h.push(("upload-offset", offset.to_string()));
    h.push(("content-type", "application/offset+octet-stream".into()));
    if let Some(sum) = sum {
        h.push((
            "upload-checksum",
            format!(
                "sha256 {}",
                base64::engine::general_purpose::STANDARD.encode(sum)
            ),
        ));
    }
    call(addr, "PATCH", at, &h, bytes.to_vec()).await
}

/// Sends an append's headers announcing `announced` bytes, then only
/// `bytes`, then closes the connection: a cut mid-body.
async fn cut_patch(
    addr: SocketAddr,
    token: &str,
    at: &str,
    offset: usize,
    announced: usize,
    bytes: &[u8],
) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PATCH {at} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ntus-resumable: 1.0.0\r\n\
         upload-offset: {offset}\r\ncontent-type: application/offset+octet-stream\r\n\
         content-length: {announced}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
    // Give the server a moment to take what was sent, then cut.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn an_upload_survives_a_cut_and_a_restart_and_downloads_byte_identical() {
    let server = TestServer::start().await;
    let a = server.http;
    let token = login(a, "alice").await;
    let file = data(3 * 1024 * 1024 + 77, 7);

    let o = call(a, "OPTIONS", "/v1/files/", &[], Vec::new()).await;
    assert_eq!(o.status, 204);
    assert_eq!(o.header("tus-version"), Some("1.0.0"));
    assert!(o.header("tus-extension").unwrap().contains("checksum"));
    assert_eq!(o.header("tus-checksum-algorithm"), Some("sha256"));

    let c = create(a, &token, file.len(), "cat.png").await;
    assert_eq!(c.status, 201, "{}", String::from_utf8_lossy(&c.body));
    let at = c.header("location").unwrap().to_owned();
    assert!(c.header("upload-expires").is_some());
    assert_eq!(
        offset(a, &token, &at).await.header("upload-offset"),
        Some("0")
    );

    // A first chunk, with its checksum.
    let first = 1024 * 1024;
    let r = patch(a, &token, &at, 0, &file[..first], Some(sha(&file[..first]))).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("upload-offset"), Some(first.to_string().as_str()));

    // A cut: 1 MiB announced, 300 KiB sent. What arrived is kept, and no
    // more than arrived.
    cut_patch(
        a,
        &token,
        &at,
        first,
        1024 * 1024,
        &file[first..first + 300 * 1024],
    )
    .await;
    let mut at_now = 0;
    for _ in 0..50 {
        at_now = offset(a, &token, &at)
            .await
            .header("upload-offset")
            .unwrap()
            .parse()
            .unwrap();
        if at_now > first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        at_now > first && at_now <= first + 300 * 1024,
        "offset {at_now} after a cut at {}",
        first + 300 * 1024
    );

    // A wrong offset is refused with the right one.
    let r = patch(a, &token, &at, at_now + 1, b"x", None).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.header("upload-offset"), Some(at_now.to_string().as_str()));
    // A wrong checksum keeps nothing.
    let r = patch(
        a,
        &token,
        &at,
        at_now,
        &file[at_now..at_now + 1000],
        Some([0; 32]),
    )
    .await;
    assert_eq!(r.status, 460);
    assert_eq!(
        offset(a, &token, &at).await.header("upload-offset"),
        Some(at_now.to_string().as_str())
    );

    // A restart: the offset told is durable, and the upload goes on.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let a = server.http;
    let told: usize = offset(a, &token, &at)
        .await
        .header("upload-offset")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(told, at_now);
    let r = patch(a, &token, &at, told, &file[told..], None).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("upload-offset"),
        Some(file.len().to_string().as_str())
    );
    assert!(
        r.header("upload-expires").is_none(),
        "a finished upload does not expire"
    );

    // The download is the file, its ETag its SHA-256.
    let id = at.rsplit('/').next().unwrap();
    let d = call(
        a,
        "GET",
        &format!("/v1/files/{id}"),
        &[("authorization", format!("Bearer {token}"))],
        Vec::new(),
    )
    .await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body.len(), file.len());
    assert!(d.body == file, "the download differs from the upload");
    let etag = format!("\"{}\"", hex(&sha(&file)));
    assert_eq!(d.header("etag"), Some(etag.as_str()));
    assert_eq!(d.header("content-type"), Some("image/png"));
    assert_eq!(d.header("accept-ranges"), Some("bytes"));
}

#[tokio::test]
async fn downloads_answer_ranges_and_conditions_as_rfc_9110_says() {
    let server = TestServer::start().await;
    let a = server.http;
    let token = login(a, "alice").await;
    let file = data(10_000, 3);
    let at = create(a, &token, file.len(), "f.bin")
        .await
        .header("location")
        .unwrap()
        .to_owned();
    assert_eq!(patch(a, &token, &at, 0, &file, None).await.status, 204);
    let auth = ("authorization", format!("Bearer {token}"));
    let get = |extra: Vec<(&'static str, String)>| {
        let mut h = vec![auth.clone()];
        h.extend(extra);
        let at = at.clone();
        async move { call(a, "GET", &at, &h, Vec::new()).await }
    };
    let etag = format!("\"{}\"", hex(&sha(&file)));

    let r = get(vec![("range", "bytes=100-199".into())]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/10000"));
    assert_eq!(r.body, &file[100..200]);
    // Past the end is clamped; a suffix is the last bytes.
    let r = get(vec![("range", "bytes=9990-20000".into())]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &file[9990..]));
    let r = get(vec![("range", "bytes=-5".into())]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &file[9995..]));
    let r = get(vec![("range", "bytes=9000-".into())]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &file[9000..]));
    // Unsatisfiable.
    let r = get(vec![("range", "bytes=10000-10005".into())]).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */10000"));
    // Several ranges: the whole file.
    let r = get(vec![("range", "bytes=0-1,5-6".into())]).await;
    assert_eq!((r.status, r.body.len()), (200, file.len()));
    // If-Range: the range only while the file is that one.
    let r = get(vec![
        ("range", "bytes=0-9".into()),
        ("if-range", etag.clone()),
    ])
    .await;
    assert_eq!((r.status, r.body.len()), (206, 10));
    let r = get(vec![
        ("range", "bytes=0-9".into()),
        ("if-range", "\"other\"".into()),
    ])
    .await;
    assert_eq!((r.status, r.body.len()), (200, file.len()));
    let r = get(vec![("if-none-match", etag.clone())]).await;
    assert_eq!((r.status, r.body.len()), (304, 0));
    // Never gzipped, even when asked: a range is of the file's own bytes.
    let r = get(vec![("accept-encoding", "gzip".into())]).await;
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, file);

    // A stranger, or nobody, gets nothing.
    let bob = login(a, "bob").await;
    let r = call(
        a,
        "GET",
        &at,
        &[("authorization", format!("Bearer {bob}"))],
        Vec::new(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let r = call(a, "GET", &at, &[], Vec::new()).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (401, Some("NOT_AUTHENTICATED"))
    );
    let r = offset(a, &bob, &at).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn limits_termination_and_expiry() {
    let server = TestServer::start_with(|c| {
        c.files.max_file_bytes = 100_000;
        c.files.quota_bytes_per_user = 150_000;
        c.files.expire_after_secs = 1;
    })
    .await;
    let a = server.http;
    let token = login(a, "alice").await;

    // No tus version: 412.
    let r = call(
        a,
        "POST",
        "/v1/files",
        &[
            ("authorization", format!("Bearer {token}")),
            ("upload-length", "10".into()),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 412);
    assert_eq!(r.header("tus-version"), Some("1.0.0"));
    // Too big, then over the quota.
    let r = create(a, &token, 100_001, "big").await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (413, Some("MESSAGE_TOO_LARGE"))
    );
    let one = create(a, &token, 100_000, "one").await;
    assert_eq!(one.status, 201);
    let r = create(a, &token, 60_000, "two").await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    // More bytes than announced.
    let small = create(a, &token, 10, "small")
        .await
        .header("location")
        .unwrap()
        .to_owned();
    let r = patch(a, &token, &small, 0, &[1u8; 11], None).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        offset(a, &token, &small).await.header("upload-offset"),
        Some("0")
    );
    // Not the append media type.
    let mut h = tus(&token);
    h.push(("upload-offset", "0".into()));
    h.push(("content-type", "application/json".into()));
    let r = call(a, "PATCH", &small, &h, b"{}".to_vec()).await;
    assert_eq!(r.status, 415);

    // Termination frees the quota.
    let at = one.header("location").unwrap().to_owned();
    let r = call(a, "DELETE", &at, &tus(&token), Vec::new()).await;
    assert_eq!(r.status, 204);
    assert_eq!(offset(a, &token, &at).await.status, 404);
    assert_eq!(create(a, &token, 60_000, "two").await.status, 201);

    // Unfinished uploads untouched past the expiry are deleted.
    let mut gone = false;
    for _ in 0..60 {
        if offset(a, &token, &small).await.status == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "an unfinished upload outlived its expiry");
    let left = std::fs::read_dir(server.dir.path().join("files"))
        .unwrap()
        .count();
    assert!(left <= 2, "{left} files left in the files directory");
}

#[tokio::test]
async fn uploads_are_in_the_openapi_document() {
    let server = TestServer::start().await;
    let r = call(server.http, "GET", "/v1/openapi.json", &[], Vec::new()).await;
    let doc = r.json();
    for (path, method) in [
        ("/v1/files", "post"),
        ("/v1/files/{id}", "patch"),
        ("/v1/files/{id}", "delete"),
        ("/v1/files/{id}", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
}

#[tokio::test]
async fn a_file_message_lets_its_conversation_download_the_file() {
    let server = TestServer::start().await;
    let a = server.http;
    let alice = login(a, "alice").await;
    let bob = login(a, "bob").await;
    let carol = login(a, "carol").await;
    let me = |t: &str| {
        let h = [("authorization", format!("Bearer {t}"))];
        async move { call(a, "GET", "/v1/me", &h, Vec::new()).await.json() }
    };
    let bob_id = me(&bob).await["user_id"].as_u64().unwrap();

    let file = data(5000, 9);
    let at = create(a, &alice, file.len(), "notes.txt")
        .await
        .header("location")
        .unwrap()
        .to_owned();
    assert_eq!(patch(a, &alice, &at, 0, &file, None).await.status, 204);
    let id = at.rsplit('/').next().unwrap().to_owned();
    let get = |t: &str| {
        let h = [("authorization", format!("Bearer {t}"))];
        let at = at.clone();
        async move { call(a, "GET", &at, &h, Vec::new()).await }
    };
    assert_eq!(get(&bob).await.status, 404, "not shared yet");

    // The file message (the service's one send path, as over frames).
    let content = json!({"file_id": id, "name": "notes.txt", "size": file.len()}).to_string();
    let send = json!({
        "client_msg_id": "f1",
        "to_user_id": bob_id,
        "body": {"kind": "FILE", "content": content},
    });
    let h = [
        ("authorization", format!("Bearer {alice}")),
        ("content-type", "application/json".to_owned()),
    ];
    let r = call(a, "POST", "/v1/messages", &h, send.to_string().into_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let d = get(&bob).await;
    assert_eq!(d.status, 200);
    assert!(d.body == file);
    // Not a member of that conversation: it does not exist for her.
    assert_eq!(get(&carol).await.status, 404);
    // Sharing lets a member download, not change the upload.
    assert_eq!(offset(a, &bob, &at).await.status, 404);
    assert_eq!(
        call(a, "DELETE", &at, &tus(&bob), Vec::new()).await.status,
        404
    );

    // The share is kept across a restart.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let h = [("authorization", format!("Bearer {bob}"))];
    let d = call(server.http, "GET", &at, &h, Vec::new()).await;
    assert_eq!(d.status, 200);
}

/// The file is shared before its message is stored: a recipient who
/// downloads it the moment the message arrives gets it, in a 1:1 and in a
/// group, every time (a share after the store lost this race).
#[tokio::test]
async fn a_file_message_s_recipient_downloads_the_file_the_moment_it_arrives() {
    let server = TestServer::start().await;
    let a = server.http;
    let alice = login(a, "alice").await;
    let bob = login(a, "bob").await;
    let mut live = server.client().await;
    let bob_id = live.login("bob", PASSWORD, "live").await.unwrap().user_id;
    let h = [
        ("authorization", format!("Bearer {alice}")),
        ("content-type", "application/json".to_owned()),
    ];
    let group = json!({"kind": "GROUP", "name": "files", "member_ids": [bob_id]});
    let r = call(a, "POST", "/v1/groups", &h, group.to_string().into_bytes()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let group_id = r.json()["conversation_id"].as_u64().unwrap();
    for i in 0..20u8 {
        let file = data(3000, i);
        let at = create(a, &alice, file.len(), "f.bin")
            .await
            .header("location")
            .unwrap()
            .to_owned();
        assert_eq!(patch(a, &alice, &at, 0, &file, None).await.status, 204);
        let id = at.rsplit('/').next().unwrap().to_owned();
        let content = json!({"file_id": id, "name": "f.bin", "size": file.len()}).to_string();
        let mut send = json!({
            "client_msg_id": format!("f{i}"),
            "body": {"kind": "FILE", "content": content},
        });
        if i % 2 == 0 {
            send["to_user_id"] = json!(bob_id);
        } else {
            send["conversation_id"] = json!(group_id);
        }
        let (h, body) = (h.clone(), send.to_string().into_bytes());
        let post =
            natter_testkit::spawn(async move { call(a, "POST", "/v1/messages", &h, body).await });
        loop {
            match tokio::time::timeout(Duration::from_secs(10), live.next_push()).await {
                Ok(Some(ServerFrame::MessagePush(p)))
                    if p.message.as_ref().unwrap().body.as_ref().unwrap().content == content =>
                {
                    break
                }
                Ok(Some(_)) => continue,
                other => panic!("no message push: {other:?}"),
            }
        }
        let as_bob = [("authorization", format!("Bearer {bob}"))];
        let got = call(a, "GET", &at, &as_bob, Vec::new()).await;
        assert_eq!(got.status, 200, "file {i} as soon as its message arrived");
        assert!(got.body == file);
        assert_eq!(post.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn the_cli_uploads_sends_and_downloads_checking_the_hash() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server.tcp);
    for user in ["alice", "bob"] {
        cli.ok(Some(PASSWORD), &["register", user]).await;
        cli.ok(Some(PASSWORD), &["login", "--user", user]).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = data(5 * 1024 * 1024 + 3, 11);
    let path = dir.path().join("photo.bin");
    std::fs::write(&path, &file).unwrap();
    let http = format!("http://{}", server.http);

    let out = cli
        .ok(
            None,
            &[
                "upload",
                path.to_str().unwrap(),
                "--to",
                "bob",
                "--user",
                "alice",
                "--http",
                &http,
                "--json",
            ],
        )
        .await;
    let sent: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(sent["sha256"].as_str(), Some(hex(&sha(&file)).as_str()));
    let id = sent["file_id"].as_str().unwrap().to_owned();

    // Bob got a file message naming it, and may download it.
    let synced = cli.ok(None, &["sync", "--user", "bob", "--json"]).await;
    assert!(synced.contains(&id), "{synced}");
    let copy = dir.path().join("copy.bin");
    let args = |out: &std::path::Path| {
        vec![
            "download".to_owned(),
            id.clone(),
            "-o".into(),
            out.to_str().unwrap().into(),
            "--user".into(),
            "bob".into(),
            "--http".into(),
            http.clone(),
        ]
    };
    let a = args(&copy);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    cli.ok(None, &a).await;
    assert!(std::fs::read(&copy).unwrap() == file);

    // A partial download is gone on from, not restarted: garbage left in
    // it fails the hash check at the end, and the part is removed.
    let again = dir.path().join("again.bin");
    std::fs::write(dir.path().join("again.bin.part"), vec![0u8; 1024 * 1024]).unwrap();
    let a = args(&again);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = cli.run(None, &a).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SHA-256"), "{err}");
    assert!(!dir.path().join("again.bin.part").exists());
    // The right first bytes left by a cut: it goes on and checks out.
    std::fs::write(dir.path().join("again.bin.part"), &file[..1024 * 1024]).unwrap();
    cli.ok(None, &a).await;
    assert!(std::fs::read(&again).unwrap() == file);

    // Carol is in no conversation with it.
    cli.ok(Some(PASSWORD), &["register", "carol"]).await;
    cli.ok(Some(PASSWORD), &["login", "--user", "carol"]).await;
    let a = args(&dir.path().join("nope.bin"));
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    a[5] = "carol";
    let out = cli.run(None, &a).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}
