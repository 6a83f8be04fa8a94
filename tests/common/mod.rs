//! Shared test harness: a real server on 127.0.0.1:0 in this process, users,
//! and a raw socket for speaking (and mangling) the protocol by hand.
#![allow(dead_code)]

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod flood;
pub mod http;

use bytes::{Bytes, BytesMut};
use natter::config::Config;
use natter::server::{self, Listeners};
use natter_client::{pb, Client, ServerFrame};
use natter_proto::{ClientFrame, Frame, FrameDecoder};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "correct horse";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub tcp: String,
    pub ws: String,
    pub http: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
    pub dir: tempfile::TempDir,
}

/// A configuration for tests: ephemeral ports, cheap hashing, generous rates.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.listen.tcp = "127.0.0.1:0".into();
    c.listen.ws = "127.0.0.1:0".into();
    c.listen.http = "127.0.0.1:0".into();
    c.password.argon2_memory_kib = 64;
    c.password.argon2_iterations = 1;
    c.limits.send_rate_per_sec = 100_000.0;
    c.limits.send_burst = 100_000.0;
    c.limits.request_rate_per_sec = 100_000.0;
    c.limits.request_burst = 100_000.0;
    // Every test client comes from 127.0.0.1: the per-address limits on
    // logins and registrations would otherwise be the first thing hit. The
    // tests of those limits set them back.
    c.throttle.login_rate_per_address = 100_000.0;
    c.throttle.login_burst_per_address = 100_000.0;
    c.throttle.register_rate_per_address = 100_000.0;
    c.throttle.register_burst_per_address = 100_000.0;
    c.throttle.failed_login_burst_per_address = 100_000.0;
    c.limits.max_unauthenticated_per_address = 100_000;
    c.shutdown.grace_ms = 3_000;
    // Most tests are about delivery, not the social graph: they let anyone
    // message anyone. The social tests turn the friends-only default back on.
    c.social.direct_messages = natter::config::DirectMessages::Anyone;
    c
}

/// The store the black-box tests run on: `NATTER_TEST_BACKEND=sqlite`
/// (the default), `postgres` (on NATTER_TEST_POSTGRES_URL) or `mysql` (on
/// NATTER_TEST_MYSQL_URL), whose URL must then be set.
pub fn backend() -> natter::config::Backend {
    match std::env::var("NATTER_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => natter::config::Backend::Sqlite,
        Ok("postgres") => natter::config::Backend::Postgres,
        Ok("mysql") => natter::config::Backend::Mysql,
        Ok(other) => panic!("NATTER_TEST_BACKEND={other}: expected sqlite, postgres or mysql"),
    }
}

/// Whether this run is on SQLite; a test that holds only there (SQLite's
/// own files, or a paused clock) says so and skips on other backends.
pub fn on_sqlite(test: &str) -> bool {
    let yes = backend() == natter::config::Backend::Sqlite;
    if !yes {
        eprintln!(
            "skipped: {test} is about SQLite's own files; this run is on {:?}",
            backend()
        );
    }
    yes
}

/// On a database server (PostgreSQL or MySQL), the URL of the database
/// belonging to data directory `dir`: a schema or database of its own,
/// made on first use and kept with the directory, so a server restarted on
/// the same directory finds its data.
pub async fn server_url_for(dir: &std::path::Path) -> Option<String> {
    let backend = backend();
    if backend == natter::config::Backend::Sqlite {
        return None;
    }
    let file = dir.join("store-url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return Some(url);
    }
    let url = match backend {
        natter::config::Backend::Mysql => {
            let base = std::env::var("NATTER_TEST_MYSQL_URL")
                .expect("NATTER_TEST_BACKEND=mysql needs NATTER_TEST_MYSQL_URL");
            natter_testkit::my::Database::create(&base, "natter_bb_")
                .await
                .expect("a test database")
                .keep()
        }
        _ => {
            let base = std::env::var("NATTER_TEST_POSTGRES_URL")
                .expect("NATTER_TEST_BACKEND=postgres needs NATTER_TEST_POSTGRES_URL");
            natter_testkit::pg::Schema::create(&base, "natter_bb_", false)
                .await
                .expect("a test schema")
                .url
                .clone()
        }
    };
    std::fs::create_dir_all(dir).expect("the data directory");
    std::fs::write(&file, &url).expect("write the store's URL");
    Some(url)
}

/// The environment that points a `natter` command at data directory
/// `dir`'s store (nothing on SQLite: the directory says it).
pub async fn store_env_for(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    match server_url_for(dir).await {
        Some(url) => {
            let name = match backend() {
                natter::config::Backend::Mysql => "mysql",
                _ => "postgres",
            };
            vec![
                ("NATTER_STORE__BACKEND", name.into()),
                ("NATTER_STORE__URL", url),
            ]
        }
        None => Vec::new(),
    }
}

/// Files in the S3-compatible server at NATTER_TEST_S3_ENDPOINT (bucket
/// NATTER_TEST_S3_BUCKET, default `natter-test`, made if missing), under a
/// prefix of data directory `dir`'s own, kept in it so a server restarted
/// on the directory finds its files. Unset: `None`, and `test` says it
/// skipped.
pub fn s3_files_for(dir: &std::path::Path, test: &str) -> Option<natter::config::FilesSection> {
    let Ok(endpoint) = std::env::var("NATTER_TEST_S3_ENDPOINT") else {
        eprintln!("skipped: {test} needs NATTER_TEST_S3_ENDPOINT (an S3-compatible server)");
        return None;
    };
    let bucket = std::env::var("NATTER_TEST_S3_BUCKET").unwrap_or_else(|_| "natter-test".into());
    // Made unsigned, as the local test servers allow; a real one has it.
    let _ = ureq::put(format!("{endpoint}/{bucket}")).send_empty();
    let file = dir.join("s3-prefix");
    let prefix = std::fs::read_to_string(&file).unwrap_or_else(|_| {
        let p = format!(
            "test-{}",
            dir.file_name().unwrap_or_default().to_string_lossy()
        );
        std::fs::write(&file, &p).expect("write the prefix");
        p
    });
    let mut files = natter::config::FilesSection {
        storage: natter::config::FilesStorage::S3,
        ..Default::default()
    };
    files.s3.endpoint = endpoint;
    files.s3.bucket = bucket;
    files.s3.prefix = prefix;
    files.s3.access_key_id = "natter".into();
    files.s3.secret_access_key = "natter-secret".into();
    files.s3.part_size_bytes = 5 << 20;
    Some(files)
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        TestServer::start_in(dir, tweak).await
    }

    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = test_config(dir.path());
        if let Some(url) = server_url_for(dir.path()).await {
            config.store.backend = backend();
            config.store.url = url;
        }
        tweak(&mut config);
        let listeners = Listeners::bind(&config.listen).await.expect("bind");
        let tcp = listeners.tcp_addr().to_string();
        let ws = format!("ws://{}", listeners.ws_addr().expect("ws listener"));
        let http = listeners.http_addr().expect("http listener");
        let shutdown = CancellationToken::new();
        let handle = natter_testkit::spawn(server::run(config, listeners, shutdown.clone()));
        TestServer {
            tcp,
            ws,
            http,
            shutdown,
            handle,
            dir,
        }
    }

    /// Graceful stop; returns the data directory for a restart.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("server stops within the timeout")
            .expect("server task")
            .expect("server result");
        self.dir
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.tcp).await.expect("connect")
    }

    /// Registers `name` and logs in on device "d1".
    pub async fn user(&self, name: &str) -> (Client, pb::LoginOk) {
        let mut c = self.client().await;
        c.register(name, PASSWORD).await.expect("register");
        let ok = c.login(name, PASSWORD, "d1").await.expect("login");
        (c, ok)
    }

    /// Registers and logs in `n` users named `{prefix}{i}`: their clients
    /// and user ids.
    pub async fn users(&self, prefix: &str, n: usize) -> (Vec<Client>, Vec<u64>) {
        let mut clients = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let (c, l) = self.user(&format!("{prefix}{i}")).await;
            clients.push(c);
            ids.push(l.user_id);
        }
        (clients, ids)
    }

    /// Another session of an existing user.
    pub async fn device(&self, name: &str, device: &str) -> (Client, pb::LoginOk) {
        let mut c = self.client().await;
        let ok = c.login(name, PASSWORD, device).await.expect("login");
        (c, ok)
    }
}

/// Waits for the next pushed message, skipping other pushes.
pub async fn next_message(c: &mut Client) -> pb::Message {
    loop {
        match tokio::time::timeout(WAIT, c.next_push()).await {
            Ok(Some(ServerFrame::MessagePush(p))) => return p.message.expect("message"),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("connection closed while waiting for a message"),
            Err(_) => panic!("no message pushed within {WAIT:?}"),
        }
    }
}

/// Waits for a Disconnect push and returns it.
pub async fn next_disconnect(c: &mut Client) -> pb::Disconnect {
    loop {
        match tokio::time::timeout(WAIT, c.next_push()).await {
            Ok(Some(ServerFrame::Disconnect(d))) => return d,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("connection closed without a Disconnect frame"),
            Err(_) => panic!("no Disconnect within {WAIT:?}"),
        }
    }
}

pub fn text(m: &pb::Message) -> &str {
    m.body.as_ref().map(|b| b.content.as_str()).unwrap_or("")
}

/// A raw TCP connection for sending arbitrary bytes.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Raw {
    pub async fn connect(addr: &str) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(16 * 1024 * 1024),
        }
    }

    /// A raw connection over a stream set up by the caller.
    pub fn from_stream(stream: TcpStream) -> Raw {
        Raw {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(16 * 1024 * 1024),
        }
    }

    /// A raw connection from another loopback address (127.0.0.x).
    pub async fn connect_from(addr: &str, ip: &str) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(ip.parse().expect("an address"), 0))
            .expect("bind the source address");
        let stream = socket
            .connect(addr.parse().expect("an address"))
            .await
            .expect("connect");
        Raw {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(16 * 1024 * 1024),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn request(&mut self, id: u32, f: ClientFrame) {
        let b: Bytes = f.to_bytes(id);
        self.send(&b).await;
    }

    pub async fn hello(&mut self) {
        self.request(
            1,
            ClientFrame::Hello(pb::Hello {
                min_version: 1,
                max_version: 1,
                client_name: "raw".into(),
            }),
        )
        .await;
        match self.frame().await {
            Some((1, ServerFrame::HelloOk(_))) => {}
            other => panic!("expected HelloOk, got {other:?}"),
        }
    }

    /// Resumes a session of device "d1" with `token` (request id 2).
    pub async fn resume(&mut self, token: &str) {
        self.request(
            2,
            ClientFrame::Resume(pb::Resume {
                token: token.into(),
                device_id: "d1".into(),
            }),
        )
        .await;
        match self.frame().await {
            Some((2, ServerFrame::LoginOk(_))) => {}
            other => panic!("expected LoginOk, got {other:?}"),
        }
    }

    /// The next frame, or `None` when the server closed the connection.
    pub async fn frame(&mut self) -> Option<(u32, ServerFrame)> {
        loop {
            if let Some(f) = self
                .decoder
                .decode(&mut self.buf)
                .expect("server frames are valid")
            {
                let Frame { request_id, .. } = f;
                return Some((request_id, ServerFrame::decode(&f).expect("known frame")));
            }
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("server answers in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads until the server closes; returns every frame seen.
    pub async fn until_closed(&mut self) -> Vec<ServerFrame> {
        let mut out = Vec::new();
        while let Some((_, f)) = self.frame().await {
            out.push(f);
        }
        out
    }
}

pub fn error_code(f: &ServerFrame) -> Option<pb::ErrorCode> {
    match f {
        ServerFrame::Error(e) => Some(e.code()),
        _ => None,
    }
}

pub fn disconnect_reason(frames: &[ServerFrame]) -> Option<pb::DisconnectReason> {
    frames.iter().find_map(|f| match f {
        ServerFrame::Disconnect(d) => Some(d.reason()),
        _ => None,
    })
}

/// Waits for the first push `pick` accepts, skipping the others.
pub async fn next_push<T>(c: &mut Client, mut pick: impl FnMut(ServerFrame) -> Option<T>) -> T {
    loop {
        match tokio::time::timeout(WAIT, c.next_push()).await {
            Ok(Some(f)) => {
                if let Some(t) = pick(f) {
                    return t;
                }
            }
            Ok(None) => panic!("connection closed while waiting for a push"),
            Err(_) => panic!("no matching push within {WAIT:?}"),
        }
    }
}

/// Every push that arrives within `quiet` of the previous one.
pub async fn drain_pushes(c: &mut Client, quiet: Duration) -> Vec<ServerFrame> {
    let mut out = Vec::new();
    while let Ok(Some(f)) = tokio::time::timeout(quiet, c.next_push()).await {
        out.push(f);
    }
    out
}

/// The messages among some pushes.
pub fn messages_in(frames: &[ServerFrame]) -> Vec<pb::Message> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::MessagePush(p) => p.message.clone(),
            _ => None,
        })
        .collect()
}

/// A system event's JSON, or None for other messages.
pub fn system_event(m: &pb::Message) -> Option<serde_json::Value> {
    let b = m.body.as_ref()?;
    (b.kind() == pb::BodyKind::System).then(|| serde_json::from_str(&b.content).expect("JSON"))
}

/// The error code of a failed call.
pub fn code<T: std::fmt::Debug>(r: Result<T, natter_client::ClientError>) -> pb::ErrorCode {
    r.expect_err("the call should have failed")
        .code()
        .expect("a server error")
}

/// A server where 1:1 messages need friendship, as by default.
pub async fn friends_only_server() -> TestServer {
    TestServer::start_with(|c| c.social.direct_messages = natter::config::DirectMessages::Friends)
        .await
}

/// The real `natter` binary, started on free ports over a data directory.
pub struct Binary {
    pub child: tokio::process::Child,
    pub tcp: String,
    pub http: Option<SocketAddr>,
}

/// Settings every spawned binary gets: cheap hashing, no per-address
/// limits in the way of a test's own clients.
pub const BINARY_ENV: &[(&str, &str)] = &[
    ("NATTER_PASSWORD__ARGON2_MEMORY_KIB", "64"),
    ("NATTER_PASSWORD__ARGON2_ITERATIONS", "1"),
    ("NATTER_LIMITS__SEND_RATE_PER_SEC", "100000"),
    ("NATTER_LIMITS__SEND_BURST", "100000"),
    ("NATTER_THROTTLE__REGISTER_BURST_PER_ADDRESS", "100000"),
    ("NATTER_THROTTLE__LOGIN_BURST_PER_ADDRESS", "100000"),
    ("NATTER_THROTTLE__FAILED_LOGIN_BURST_PER_ADDRESS", "100000"),
    ("NATTER_LIMITS__MAX_UNAUTHENTICATED_PER_ADDRESS", "100000"),
    ("NATTER_LOG__LEVEL", "warn"),
    ("NATTER_SOCIAL__DIRECT_MESSAGES", "anyone"),
];

impl Binary {
    /// Starts `natter serve` on `dir` with [`BINARY_ENV`], then `env` on
    /// top; `prefix` runs it under another command (e.g. prlimit).
    pub async fn start(dir: &std::path::Path, env: &[(&str, &str)], prefix: &[&str]) -> Binary {
        Binary::start_args(dir, env, prefix, &[]).await
    }

    /// [`Binary::start`], with `args` after `natter serve`'s own.
    pub async fn start_args(
        dir: &std::path::Path,
        env: &[(&str, &str)],
        prefix: &[&str],
        args: &[&str],
    ) -> Binary {
        use tokio::io::AsyncBufReadExt;
        let bin = env!("CARGO_BIN_EXE_natter");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = tokio::process::Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => tokio::process::Command::new(bin),
        };
        cmd.args(["serve", "--tcp-addr", "127.0.0.1:0", "--ws-addr", ""])
            .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(args)
            .env("NATTER_TEST_POSTGRES_URL", "postgres://unused")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        cmd.envs(store_env_for(dir).await);
        for (k, v) in BINARY_ENV.iter().chain(env) {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn natter");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let (mut tcp, mut http) = (None, None);
        tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(a) = line.strip_prefix("natter tcp=") {
                    tcp = Some(a.to_owned());
                }
                if let Some(a) = line.strip_prefix("natter http=") {
                    http = Some(a.parse().expect("an address"));
                    return;
                }
            }
            panic!("natter exited before printing its addresses");
        })
        .await
        .expect("natter starts in time");
        // Keep reading so the child never blocks on a full pipe.
        natter_testkit::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Binary {
            child,
            tcp: tcp.expect("a TCP address"),
            http,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Resident memory of the server process.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http.expect("an HTTP listener"), path).await
    }
}

/// Runs the `natter` binary with `args` to the end.
pub async fn natter(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(args)
        .output()
        .await
        .expect("run natter")
}

/// A plain HTTP/1.1 GET; (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to HTTP");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write the request");
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .expect("HTTP answers in time")
        .expect("read the answer");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one metric series in a Prometheus text page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A client connected from `ip` (127.0.0.x), so per-address limits see
/// another host.
pub async fn client_from(addr: &str, ip: &str) -> Client {
    Client::connect_with(
        addr,
        natter_client::ConnectOptions {
            local_ip: Some(ip.parse().expect("an address")),
            ..Default::default()
        },
    )
    .await
    .expect("connect")
}
