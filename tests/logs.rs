//! Logs that never lie, against the real binary: the log file rotates and
//! keeps its caps under a burst; a log nobody reads drops lines, and the
//! counter and the log itself say exactly how many; a failing store logs a
//! bounded number of lines, and says how many it held back; a log file that
//! cannot be written is counted and written again when it can; SIGHUP
//! reopens the file.

mod common;

use common::*;
use natter_client::{pb, Client, ClientError};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// Only the accounts service's info lines (one `registered` line per
/// account) and warnings: the test knows every line the server makes.
const MARKERS_ONLY: &str = "warn,natter_service::accounts=info";

/// `natter serve` on `dir`, stdout piped and read up to its addresses;
/// the rest of stdout is the caller's (unread, it stalls the server's log).
async fn spawn(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, Spawned) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"));
    cmd.args(["serve", "--tcp-addr", "127.0.0.1:0", "--ws-addr", ""])
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("NATTER_TEST_POSTGRES_URL", "postgres://unused")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd.envs(store_env_for(dir).await);
    for (k, v) in BINARY_ENV.iter().chain(env) {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn natter");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut tcp, mut early) = (None, Vec::new());
    let http = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(a) = line.strip_prefix("natter tcp=") {
                tcp = Some(a.to_owned());
            } else if let Some(a) = line.strip_prefix("natter http=") {
                return a.parse().expect("an address");
            } else {
                early.push(line);
            }
        }
        panic!("natter exited before printing its addresses");
    })
    .await
    .expect("natter starts in time");
    let server = Spawned {
        tcp: tcp.expect("a TCP address"),
        http,
        lines: Some(lines),
        seen: Arc::new(Mutex::new(early)),
    };
    (child, server)
}

/// A spawned server's addresses and its stdout.
struct Spawned {
    tcp: String,
    http: std::net::SocketAddr,
    lines: Option<Lines<BufReader<ChildStdout>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    /// From now on stdout is read (into `seen`) as fast as it comes.
    fn drain(&mut self) {
        let mut lines = self.lines.take().expect("drained once");
        let seen = self.seen.clone();
        natter_testkit::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                seen.lock().unwrap().push(l);
            }
        });
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    async fn metric(&self, series: &str) -> f64 {
        let page = http_get(self.http, "/metrics").await.1;
        metric(&page, series).unwrap_or(0.0)
    }
}

/// Registers `names`, in order, over `parallel` connections.
async fn register_all(tcp: &str, mut names: Vec<String>, parallel: usize) {
    names.reverse();
    let names = Arc::new(Mutex::new(names));
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (tcp, names) = (tcp.to_owned(), names.clone());
        tasks.push(natter_testkit::spawn(async move {
            let c = Client::connect(&tcp).await.expect("connect");
            loop {
                let Some(name) = names.lock().unwrap().pop() else {
                    return;
                };
                c.register(&name, PASSWORD).await.expect("register");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The number a `... dropped=N` notice carries.
fn dropped_in(line: &str) -> Option<u64> {
    line.contains("log lines dropped")
        .then(|| line.rsplit("dropped=").next()?.trim().parse().ok())
        .flatten()
}

#[tokio::test]
async fn the_log_file_rotates_and_keeps_its_caps_under_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let (rotate_bytes, max_files, max_total) = (2048u64, 4usize, 6000u64);
    let (_child, mut server) = spawn(
        dir.path(),
        &[
            ("NATTER_LOG__LEVEL", MARKERS_ONLY),
            ("NATTER_LOG__FILE", "logs/natter.log"),
            ("NATTER_LOG__STDOUT", "false"),
            ("NATTER_LOG__ROTATE_BYTES", &rotate_bytes.to_string()),
            ("NATTER_LOG__MAX_FILES", &max_files.to_string()),
            ("NATTER_LOG__MAX_TOTAL_BYTES", &max_total.to_string()),
        ],
    )
    .await;
    server.drain();
    let names: Vec<String> = (0..400).map(|i| format!("u{i:04}")).collect();
    // The last name is registered last, alone.
    register_all(&server.tcp, names[..399].to_vec(), 8).await;
    register_all(&server.tcp, vec![names[399].clone()], 1).await;

    let logs = dir.path().join("logs");
    let current = logs.join("natter.log");
    let mut newest = String::new();
    for _ in 0..100 {
        newest = std::fs::read_to_string(&current).unwrap_or_default();
        if newest.contains("username=u0399") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(newest.contains("username=u0399"), "{newest}");
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    eprintln!("{files:?}");
    assert!(files.len() <= max_files, "{files:?}");
    let total: u64 = files.iter().map(|(_, n)| n).sum();
    assert!(total <= max_total, "{total} bytes: {files:?}");
    assert!(files.iter().all(|(_, n)| *n <= rotate_bytes), "{files:?}");
    // It did rotate, many times: 400 lines of ~100 bytes make ~20 files.
    let highest = files
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("natter.log.")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(highest >= 10, "{files:?}");
    // Nothing was dropped, every line is whole, and the newest are kept.
    assert_eq!(server.metric("natter_log_dropped_lines_total").await, 0.0);
    let mut kept = Vec::new();
    for (name, _) in &files {
        let text = std::fs::read_to_string(logs.join(name)).unwrap();
        assert!(text.ends_with('\n'), "{name}: {text}");
        kept.extend(text.lines().filter_map(|l| {
            l.split("username=u")
                .nth(1)
                .map(|n| n.parse::<u32>().unwrap())
        }));
    }
    assert!(kept.contains(&399), "{kept:?}");
    assert!(
        !kept.contains(&0),
        "the oldest lines were deleted: {kept:?}"
    );
    // Nothing went to stdout.
    assert!(
        server.seen().iter().all(|l| !l.contains("registered")),
        "{:?}",
        server.seen()
    );
}

#[tokio::test]
async fn a_stalled_stdout_drops_lines_and_they_are_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, mut server) = spawn(
        dir.path(),
        &[
            ("NATTER_LOG__LEVEL", MARKERS_ONLY),
            ("NATTER_LOG__BUFFER_LINES", "16"),
        ],
    )
    .await;
    // Nobody reads stdout: once the pipe is full the writer stalls, the
    // queue fills, and lines are dropped.
    let produced = 2000;
    let names: Vec<String> = (0..produced).map(|i| format!("u{i:04}")).collect();
    register_all(&server.tcp, names, 16).await;
    let dropped = server.metric("natter_log_dropped_lines_total").await;
    assert!(
        dropped > 0.0,
        "nothing was dropped: the test did not stall the log"
    );

    // Read everything now: the lines written, and the log saying how many
    // it dropped.
    server.drain();
    let count = |seen: &[String]| {
        let written = seen.iter().filter(|l| l.contains("registered")).count() as u64;
        let noticed: u64 = seen.iter().filter_map(|l| dropped_in(l)).sum();
        (written, noticed)
    };
    let (mut written, mut noticed) = (0, 0);
    for _ in 0..200 {
        (written, noticed) = count(&server.seen());
        if written + noticed >= produced {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped = server.metric("natter_log_dropped_lines_total").await as u64;
    eprintln!("produced {produced}, written {written}, dropped {dropped}, noticed {noticed}");
    assert_eq!(written + dropped, produced);
    assert_eq!(noticed, dropped, "the log says what the counter says");
    let mut users: Vec<&str> = Vec::new();
    let seen = server.seen();
    for l in &seen {
        if let Some(u) = l.split("username=").nth(1) {
            users.push(u);
        }
    }
    let distinct: std::collections::BTreeSet<&&str> = users.iter().collect();
    assert_eq!(distinct.len(), users.len(), "no line was written twice");
    assert_eq!(
        server
            .metric("natter_log_write_errors_total{sink=\"stdout\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_failing_store_logs_a_bounded_number_of_lines() {
    // A file size limit on the process stands for a full disk under SQLite.
    if !on_sqlite("a full disk under the SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (burst, window_ms) = (5u64, 1500u64);
    let (child, mut server) = spawn(
        dir.path(),
        &[
            ("NATTER_LOG__LEVEL", "warn"),
            ("NATTER_LOG__FILE", "natter.log"),
            ("NATTER_LOG__REPEAT_BURST", &burst.to_string()),
            ("NATTER_LOG__REPEAT_WINDOW_MS", &window_ms.to_string()),
        ],
    )
    .await;
    server.drain();
    let mut alice = Client::connect(&server.tcp).await.unwrap();
    alice.register("alice", PASSWORD).await.unwrap();
    alice.register("bob", PASSWORD).await.unwrap();
    alice.login("alice", PASSWORD, "d1").await.unwrap();
    let bob = alice.user_id("bob").await.unwrap();

    let pid = child.id().expect("running").to_string();
    let limit = |l: &str| {
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={l}:")])
            .status()
            .expect("run prlimit");
        assert!(ok.success());
    };
    limit("1");
    let started = tokio::time::Instant::now();
    let mut failed = 0u64;
    for i in 0..300 {
        match alice
            .send_text(bob, &format!("m{i}"), "during the fault")
            .await
        {
            Err(ClientError::Server {
                code: pb::ErrorCode::Unavailable,
                ..
            }) => failed += 1,
            other => panic!("{other:?}"),
        }
    }
    let flood = started.elapsed();
    limit("unlimited");
    // Every window has ended and been summed up.
    tokio::time::sleep(Duration::from_millis(window_ms + 1500)).await;
    let suppressed = server.metric("natter_log_suppressed_lines_total").await as u64;
    let seen = server.seen();
    let faults = seen
        .iter()
        .filter(|l| l.contains("natter_service::error") && l.contains("storage fault"))
        .count() as u64;
    let summaries: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("similar lines from"))
        .collect();
    let summed: u64 = summaries
        .iter()
        .filter_map(|l| l.split("suppressed=").nth(1)?.trim().parse::<u64>().ok())
        .sum();
    eprintln!(
        "{failed} failed sends in {flood:?}: {faults} storage fault lines, \
         {} lines in all, {suppressed} suppressed, {summaries:?}",
        seen.len()
    );
    assert_eq!(failed, 300);
    let windows = flood.as_millis() as u64 / window_ms + 1;
    assert!(
        faults <= burst * windows,
        "{faults} storage fault lines in {windows} windows"
    );
    assert!(suppressed > 0);
    assert_eq!(summed, suppressed, "the summaries add up to the counter");
    assert!(
        summaries
            .iter()
            .any(|l| l.contains("natter_service") && l.contains("error.rs")),
        "{summaries:?}"
    );
    // Each failed send was either logged or suppressed, none was lost.
    let fault_suppressed: u64 = summaries
        .iter()
        .filter(|l| l.contains("natter_service") && l.contains("error.rs"))
        .filter_map(|l| l.split("suppressed=").nth(1)?.trim().parse::<u64>().ok())
        .sum();
    assert_eq!(faults + fault_suppressed, failed);
    // The log file could not be written either: counted, and written
    // again once the disk has room (the summaries came after).
    let file_errors = server
        .metric("natter_log_write_errors_total{sink=\"file\"}")
        .await;
    assert!(file_errors > 0.0, "no write error counted for the file");
    let file = std::fs::read_to_string(dir.path().join("natter.log")).unwrap();
    assert!(file.contains("similar lines from"), "{file}");
    // And the whole log stayed small, whatever else complained.
    assert!(seen.len() < 100, "{} lines", seen.len());
}

#[tokio::test]
async fn sighup_reopens_the_log_file_after_an_external_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut server) = spawn(
        dir.path(),
        &[
            ("NATTER_LOG__LEVEL", MARKERS_ONLY),
            ("NATTER_LOG__FILE", "natter.log"),
            ("NATTER_LOG__FORMAT", "json"),
        ],
    )
    .await;
    server.drain();
    let current = dir.path().join("natter.log");
    let moved = dir.path().join("natter.log.old");
    let wait_for = |path: std::path::PathBuf, user: &'static str| async move {
        for _ in 0..100 {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains(user) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{user} never reached {}", path.display());
    };
    register_all(&server.tcp, vec!["before".into()], 1).await;
    wait_for(current.clone(), "before").await;
    // What logrotate does: rename, then SIGHUP.
    std::fs::rename(&current, &moved).unwrap();
    let pid = child.id().expect("running").to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    // The signal is taken asynchronously: lines may still go to the old
    // file until it is, so keep registering until one reaches the new file.
    let mut reopened = String::new();
    for i in 0..100 {
        register_all(&server.tcp, vec![format!("after{i}")], 1).await;
        reopened = std::fs::read_to_string(&current).unwrap_or_default();
        if reopened.contains("after") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.contains("after"), "no line in the reopened file");
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(old.contains("\"before\""), "{old}");
    assert!(!reopened.contains("\"before\""), "{reopened}");
    // Every line is JSON, in both files.
    for line in old.lines().chain(reopened.lines()) {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP did not stop the server"
    );
}

/// A restart on a migrated PostgreSQL database logs no driver NOTICE
/// ("relation natter_schema already exists, skipping") at INFO: an
/// operator's log at the default level holds what they can act on.
#[tokio::test]
async fn a_restart_on_postgres_logs_no_notice() {
    let Ok(base) = std::env::var("NATTER_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipping a_restart_on_postgres_logs_no_notice: NATTER_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let schema = natter_testkit::pg::Schema::create(&base, "natter_lg_", true)
        .await
        .expect("a test schema");
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        ("NATTER_STORE__BACKEND", "postgres"),
        ("NATTER_STORE__URL", schema.url.as_str()),
        ("NATTER_LOG__LEVEL", "info"),
    ];
    for start in ["first", "second"] {
        let (mut child, mut server) = spawn(dir.path(), &env).await;
        server.drain();
        // Up: a request answered means start-up's log lines are behind us.
        let (status, _) = http_get(server.http, "/healthz").await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        child.kill().await.expect("stop natter");
        let seen = server.seen.lock().expect("lines").join("\n");
        assert!(
            seen.contains("natter is up"),
            "{start} start logged: {seen}"
        );
        assert!(
            !seen.contains("already exists"),
            "{start} start logged: {seen}"
        );
    }
}
