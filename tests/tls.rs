//! TLS with the real binary: a handshake on each TLS listener (frame,
//! WebSocket, HTTPS) with a CA made here; a second connection resumes; a
//! reload (SIGHUP) serves a new certificate to new connections while old
//! ones go on; a mismatched or garbage certificate is refused and the old
//! one keeps serving; a plain-text client on a TLS port is closed promptly;
//! the CLI says what is wrong with a certificate it refuses, and how to fix
//! it.

mod common;

use common::*;
use natter_client::{client_config, Client, ConnectOptions};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("natter test CA {name}"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let pem = dir.join(format!("ca-{name}.pem"));
        std::fs::write(&pem, issuer.pem()).expect("write the CA");
        Ca { issuer, pem }
    }

    /// A leaf for localhost and 127.0.0.1: (certificate PEM, key PEM).
    fn leaf(&self) -> (String, String) {
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn client(&self) -> ConnectOptions {
        ConnectOptions {
            tls: Some(client_config(Some(&self.pem)).expect("client config")),
            ..ConnectOptions::default()
        }
    }
}

struct Server {
    child: Child,
    addrs: HashMap<String, String>,
    cert: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `natter serve` with every listener, the TLS ones on `leaf`.
    async fn start(dir: tempfile::TempDir, ca: &Ca) -> Server {
        Server::start_with(dir, ca, "[session]\nauth_timeout_ms = 1500\n").await
    }

    /// The same with `more` (whole TOML sections; [session] among them).
    async fn start_with(dir: tempfile::TempDir, ca: &Ca, more: &str) -> Server {
        let leaf = ca.leaf();
        let cert = dir.path().join("chain.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, &leaf.0).expect("write the chain");
        std::fs::write(&key, &leaf.1).expect("write the key");
        let config = dir.path().join("natter.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\n\
                 [listen]\ntcp = \"127.0.0.1:0\"\nws = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
                 tcp_tls = \"127.0.0.1:0\"\nws_tls = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n\
                 [tls]\ncert = {cert:?}\nkey = {key:?}\nsession_cache = 100\n\
                 [password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n\
                 {more}\
                 [throttle]\nregister_burst_per_address = 100000.0\n\
                 login_burst_per_address = 100000.0\n\
                 [log]\nlevel = \"warn\"\n",
                data = dir.path().join("data"),
            ),
        )
        .expect("write the config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("NATTER_TEST_POSTGRES_URL", "postgres://unused")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn natter");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut addrs = HashMap::new();
        tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some((k, v)) = line.strip_prefix("natter ").and_then(|l| l.split_once('=')) {
                    addrs.insert(k.to_owned(), v.to_owned());
                }
                if addrs.len() == 6 {
                    return;
                }
            }
            panic!("natter exited before printing its addresses: {addrs:?}");
        })
        .await
        .expect("natter starts in time");
        let server = Server {
            child,
            addrs,
            cert,
            key,
            _dir: dir,
        };
        // Up once the certificate is loaded: an HTTPS answer.
        let (status, _) = https_get(&server.addrs["https"], ca, "/healthz").await;
        assert_eq!(status, 200);
        server
    }

    fn url(&self, scheme: &str, listener: &str) -> String {
        format!("{scheme}://{}", self.addrs[listener])
    }

    async fn metrics(&self) -> String {
        let (status, body) = http_get(self.addrs["http"].parse().expect("addr"), "/metrics").await;
        assert_eq!(status, 200);
        body
    }

    fn replace(&self, cert: &str, key: &str) {
        std::fs::write(&self.key, key).expect("write the key");
        std::fs::write(&self.cert, cert).expect("write the chain");
    }

    fn sighup(&self) {
        let pid = self.child.id().expect("pid");
        // kill(1) rather than libc: tests hold no unsafe code.
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "SIGHUP delivered");
    }

    /// Waits until `series` (all `labels`) reaches `at_least`.
    async fn until_metric(&self, name: &str, labels: &[&str], at_least: f64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = sum(&self.metrics().await, name, labels);
            if v >= at_least {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}{labels:?} stayed at {v}, expected {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The sum of a metric's series whose labels include every one of `labels`.
fn sum(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| {
            l.starts_with(name)
                && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' '))
                && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn ping_ok(c: &Client) {
    tokio::time::timeout(WAIT, c.ping())
        .await
        .expect("pong in time")
        .expect("pong");
}

/// A GET over HTTPS, trusting `ca`: (status, body).
async fn https_get(addr: &str, ca: &Ca, path: &str) -> (u16, String) {
    let config = client_config(Some(&ca.pem)).expect("client config");
    let stream = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut s = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .expect("HTTPS handshake");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        out.split_once("\r\n\r\n")
            .map(|x| x.1.to_owned())
            .unwrap_or_default(),
    )
}

#[tokio::test]
async fn every_tls_listener_handshakes_and_a_second_connection_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "one");
    let server = Server::start(dir, &ca).await;
    let options = ca.client();

    // The frame port: a whole session over TLS.
    let tls = server.url("tls", "tcp_tls");
    let mut alice = Client::connect_with(&tls, options.clone())
        .await
        .expect("tls connect");
    assert_eq!(
        alice.tls_resumed,
        Some(false),
        "the first handshake is full"
    );
    alice.register("alice", PASSWORD).await.expect("register");
    alice.login("alice", PASSWORD, "d1").await.expect("login");
    ping_ok(&alice).await;

    // The same configuration resumes: its session cache holds the session.
    let again = Client::connect_with(&tls, options.clone())
        .await
        .expect("tls reconnect");
    assert_eq!(
        again.tls_resumed,
        Some(true),
        "the second handshake resumes"
    );
    ping_ok(&again).await;

    // WebSocket over TLS.
    let wss = Client::connect_with(&server.url("wss", "ws_tls"), options.clone())
        .await
        .expect("wss connect");
    ping_ok(&wss).await;

    // HTTPS.
    let (status, body) = https_get(&server.addrs["https"], &ca, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // The server saw the same: full and resumed handshakes, per listener,
    // and how long the certificate has left.
    let page = server.metrics().await;
    let hs = "natter_tls_handshakes_total";
    assert!(
        sum(&page, hs, &["listener=\"tcp_tls\"", "kind=\"full\""]) >= 1.0,
        "{page}"
    );
    assert!(
        sum(&page, hs, &["listener=\"tcp_tls\"", "kind=\"resumed\""]) >= 1.0,
        "{page}"
    );
    assert!(sum(&page, hs, &["listener=\"ws_tls\""]) >= 1.0, "{page}");
    assert!(sum(&page, hs, &["listener=\"https\""]) >= 1.0, "{page}");
    let expiry = sum(&page, "natter_tls_certificate_expiry_seconds", &[]);
    assert!(expiry > 86_400.0, "the certificate expires in {expiry} s");

    // A client that does not trust this CA is refused.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let other = Ca::new(elsewhere.path(), "other");
    assert!(Client::connect_with(&tls, other.client()).await.is_err());
    server
        .until_metric(
            "natter_tls_handshake_failures_total",
            &["listener=\"tcp_tls\"", "reason=\"bad_certificate\""],
            1.0,
        )
        .await;
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_to_new_connections_and_keeps_old_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (one, two) = (Ca::new(dir.path(), "one"), Ca::new(dir.path(), "two"));
    let server = Server::start(dir, &one).await;
    let tls = server.url("tls", "tcp_tls");
    let mut old = Client::connect_with(&tls, one.client())
        .await
        .expect("connect");
    old.register("bob", PASSWORD).await.expect("register");
    old.login("bob", PASSWORD, "d1").await.expect("login");
    assert!(Client::connect_with(&tls, two.client()).await.is_err());

    let (cert, key) = two.leaf();
    server.replace(&cert, &key);
    server.sighup();
    server
        .until_metric("natter_tls_reloads_total", &["result=\"ok\""], 1.0)
        .await;

    // New connections see the new certificate (signed by CA two) ...
    let new = Client::connect_with(&tls, two.client())
        .await
        .expect("new cert");
    ping_ok(&new).await;
    assert!(
        Client::connect_with(&tls, one.client()).await.is_err(),
        "the old certificate is no longer served"
    );
    // ... and the connection made before goes on.
    ping_ok(&old).await;
    let (status, _) = https_get(&server.addrs["https"], &two, "/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_mismatched_or_garbage_certificate_is_refused_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "one");
    let server = Server::start(dir, &ca).await;
    let tls = server.url("tls", "tcp_tls");

    // A certificate with another certificate's key.
    let (cert, _) = ca.leaf();
    let (_, other_key) = ca.leaf();
    server.replace(&cert, &other_key);
    server.sighup();
    server
        .until_metric("natter_tls_reloads_total", &["result=\"error\""], 1.0)
        .await;
    let c = Client::connect_with(&tls, ca.client())
        .await
        .expect("old cert serves");
    ping_ok(&c).await;

    // Garbage where the chain should be.
    let (_, key) = ca.leaf();
    server.replace("not a certificate\n", &key);
    server.sighup();
    server
        .until_metric("natter_tls_reloads_total", &["result=\"error\""], 2.0)
        .await;
    let c = Client::connect_with(&tls, ca.client())
        .await
        .expect("old cert serves");
    ping_ok(&c).await;
    let page = server.metrics().await;
    assert_eq!(
        sum(&page, "natter_tls_reloads_total", &["result=\"ok\""]),
        0.0
    );
}

#[tokio::test]
async fn a_plain_text_client_on_a_tls_port_is_closed_promptly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "one");
    let server = Server::start(dir, &ca).await;
    for listener in ["tcp_tls", "ws_tls", "https"] {
        let mut s = TcpStream::connect(&server.addrs[listener])
            .await
            .expect("connect");
        // A Hello frame's worth of bytes, or an HTTP request: not TLS.
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    // rustls may answer with an alert first.
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "{listener}: the plain-text client is closed within 2 s"
        );
    }
    server
        .until_metric(
            "natter_tls_handshake_failures_total",
            &["reason=\"not_tls\""],
            3.0,
        )
        .await;
    // The plain port next to it is unaffected.
    let c = Client::connect(&server.addrs["tcp"]).await.expect("plain");
    ping_ok(&c).await;
}

#[tokio::test]
async fn the_cli_and_the_load_generator_connect_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "one");
    let server = Server::start(dir, &ca).await;
    let ca_pem = ca.pem.to_str().expect("utf-8 path");
    for (url, user) in [
        (server.url("tls", "tcp_tls"), "carol"),
        (server.url("wss", "ws_tls"), "dave"),
    ] {
        let out = client(&["--server", &url, "--ca", ca_pem, "register", user]).await;
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Without the CA the server's certificate is not trusted, and the
        // error says what to do.
        let out = client(&["--server", &url, "register", "nobody"]).await;
        assert!(
            !out.status.success(),
            "{url}: an untrusted certificate is refused"
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("not signed by a CA") && said.contains("--ca"),
            "{said}"
        );
        assert_eq!(said.matches("cannot connect to").count(), 1, "{said}");
    }
    let work = tempfile::tempdir().expect("temp dir");
    let tokens = work.path().join("tokens.json");
    let out = natter(&[
        "bench",
        "connect",
        "--server",
        &server.url("tls", "tcp_tls"),
        "--ca",
        ca_pem,
        "--clients",
        "4",
        "--duration",
        "0.5",
        "--tokens",
        tokens.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(
        out.status.success(),
        "bench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
        .until_metric(
            "natter_tls_handshakes_total",
            &["listener=\"tcp_tls\""],
            4.0,
        )
        .await;
    // A self-signed certificate that is also a CA (what `openssl req -x509`
    // makes by default) cannot identify a server: the CLI says so, and how
    // to make one that can; a self-signed one with CA:FALSE is accepted.
    for (is_ca, accepted) in [
        (IsCa::Ca(BasicConstraints::Unconstrained), false),
        (IsCa::ExplicitNoCa, true),
    ] {
        let mut params = CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.is_ca = is_ca;
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        let before = sum(
            &server.metrics().await,
            "natter_tls_reloads_total",
            &["result=\"ok\""],
        );
        server.replace(&cert.pem(), &key.serialize_pem());
        server.sighup();
        server
            .until_metric("natter_tls_reloads_total", &["result=\"ok\""], before + 1.0)
            .await;
        let own = server._dir.path().join("self-signed.pem");
        std::fs::write(&own, cert.pem()).expect("write the certificate");
        let port = server.addrs["tcp_tls"].rsplit(':').next().expect("a port");
        let url = format!("tls://localhost:{port}");
        let out = client(&[
            "--server",
            &url,
            "--ca",
            own.to_str().expect("utf-8"),
            "register",
            "erin",
        ])
        .await;
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), accepted, "{said}");
        if !accepted {
            assert!(
                said.contains("is a CA certificate") && said.contains("CA:FALSE"),
                "{said}"
            );
            assert!(!said.contains("CaUsedAsEndEntity"), "{said}");
            assert_eq!(said.matches("cannot connect to").count(), 1, "{said}");
        }
    }
}

/// `natter client ARGS`, the password from the environment and the saved
/// sessions in a directory of its own.
async fn client(args: &[&str]) -> std::process::Output {
    let config = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_natter"))
        .arg("client")
        .args(args)
        .env("NATTER_PASSWORD", PASSWORD)
        .env("NATTER_CONFIG_DIR", config.path())
        .output()
        .await
        .expect("run natter client")
}

#[tokio::test]
async fn a_handshake_that_never_finishes_is_closed_at_the_login_deadline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "one");
    let server = Server::start(dir, &ca).await;
    // Connects and says nothing (session.auth_timeout_ms is 1.5 s here).
    let mut s = TcpStream::connect(&server.addrs["tcp_tls"])
        .await
        .expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed by the server in time: {read:?}"
    );
    server
        .until_metric(
            "natter_tls_handshake_failures_total",
            &["listener=\"tcp_tls\"", "reason=\"timeout\""],
            1.0,
        )
        .await;
}

#[tokio::test]
async fn a_shedding_node_queues_tls_connections_instead_of_refusing_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "one");
    // A memory budget below any process's RSS: the node sheds from the
    // start, and then lets one connection at a time wait to log in.
    let server = Server::start_with(
        dir,
        &ca,
        "[session]\nauth_timeout_ms = 20000\n\
         [overload]\nmemory_budget_mb = 1\nmax_unauthenticated = 1\ninterval_ms = 50\n",
    )
    .await;
    let http: std::net::SocketAddr = server.addrs["http"].parse().expect("addr");
    let deadline = tokio::time::Instant::now() + WAIT;
    while http_get(http, "/readyz").await.0 != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never shed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One connection takes the only place and says nothing.
    let holder = TcpStream::connect(&server.addrs["tcp_tls"])
        .await
        .expect("connect");
    server
        .until_metric("natter_unauthenticated_connections", &[], 1.0)
        .await;
    // On the plain port the next one is refused at once, as before.
    let mut plain = Raw::connect(&server.addrs["tcp"]).await;
    assert_eq!(
        disconnect_reason(&plain.until_closed().await),
        Some(natter_client::pb::DisconnectReason::ServerFull)
    );
    // On the TLS port it waits, unrefused, without a handshake...
    let url = server.url("tls", "tcp_tls");
    let options = ca.client();
    let waiting = natter_testkit::spawn(async move { Client::connect_with(&url, options).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!waiting.is_finished(), "no room yet: the TLS client waits");
    server
        .until_metric("natter_tls_accept_pauses_total", &[], 1.0)
        .await;
    let failures = sum(
        &server.metrics().await,
        "natter_tls_handshake_failures_total",
        &[],
    );
    assert_eq!(failures, 0.0, "nothing was refused by a handshake");
    // ...and is served as soon as the place is free.
    drop(holder);
    let c = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("in once there is room")
        .unwrap()
        .expect("the TLS connection is served");
    ping_ok(&c).await;
}

#[tokio::test]
async fn a_bad_certificate_at_start_up_stops_the_server_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("natter.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[listen]\ntcp = \"127.0.0.1:0\"\nws = \"\"\nhttp = \"\"\n\
             tcp_tls = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n",
            dir.path().join("data"),
            dir.path().join("missing.pem"),
            dir.path().join("key.pem"),
        ),
    )
    .expect("write the config");
    let out = tokio::time::timeout(
        WAIT,
        natter(&["serve", "--config", config.to_str().expect("utf-8 path")]),
    )
    .await
    .expect("natter exits in time");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls.cert"), "{err}");
    // A script waiting for the addresses must never see a server that then
    // dies: none is reported by a start-up that fails.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !printed.contains("natter "),
        "addresses reported: {printed}"
    );
}

/// Over HTTPS, `/v1/cluster/assign` and `/v1/cluster/nodes` name the TLS
/// addresses too (bound, or `cluster.advertise_*`), and `natter client
/// --server https://node` asks there and connects to the node's TLS port.
#[tokio::test]
async fn assignment_over_https_names_the_tls_addresses_and_the_cli_uses_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "one");
    let server = Server::start_with(
        dir,
        &ca,
        "[session]\nauth_timeout_ms = 1500\n[cluster]\nadvertise_wss = \"chat.example:7444\"\n",
    )
    .await;
    let (status, body) = https_get(&server.addrs["https"], &ca, "/v1/cluster/assign").await;
    assert_eq!(status, 200, "{body}");
    let a: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(a["tcp"], server.addrs["tcp"]);
    assert_eq!(a["tcp_tls"], server.addrs["tcp_tls"]);
    assert_eq!(a["wss"], "chat.example:7444", "advertised, not bound");
    assert_eq!(a["https"], server.addrs["https"]);
    let (_, body) = https_get(&server.addrs["https"], &ca, "/v1/cluster/nodes").await;
    let nodes: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let node = &nodes["nodes"][0];
    assert_eq!(node["tcp_tls"], server.addrs["tcp_tls"]);
    assert_eq!(node["wss"], "chat.example:7444");
    assert_eq!(node["https"], server.addrs["https"]);

    let url = server.url("https", "https");
    let ca_pem = ca.pem.to_str().expect("utf-8 path");
    let out = client(&["--server", &url, "--ca", ca_pem, "register", "frank"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
        .until_metric(
            "natter_tls_handshakes_total",
            &["listener=\"tcp_tls\""],
            1.0,
        )
        .await;
    // The library asks the same way, and is sent to the TLS port.
    let assigned = natter_client::resolve_with(&url, None, false, &ca.client())
        .await
        .expect("assigned over HTTPS");
    assert_eq!(assigned, server.url("tls", "tcp_tls"));
    // Without the CA the HTTPS answer is not trusted, and the error says so.
    let out = client(&["--server", &url, "register", "nobody"]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("--ca"), "{said}");
}
