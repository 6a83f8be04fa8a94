//! The real binary under floods that aim at its memory and descriptors:
//! password hashing stays within its bound, connections that never log in
//! cost little and give it back, and HTTP cannot take what chat needs.

mod common;

use common::*;
use natter_client::pb;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1 << 20;

/// Samples the server's RSS every 20 ms until `stop`; returns the peak.
fn sample_peak(
    server: &Binary,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    let pid = server.pid();
    natter_testkit::spawn(async move {
        let peak = AtomicU64::new(0);
        while !stop.load(Ordering::Relaxed) {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                let kib: u64 = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0);
                peak.fetch_max(kib * 1024, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak.load(Ordering::Relaxed)
    })
}

#[tokio::test]
async fn a_login_flood_keeps_memory_within_the_hashing_bound() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(
        dir.path(),
        &[
            // The real cost: 19 MiB per hash, four at once.
            ("NATTER_PASSWORD__ARGON2_MEMORY_KIB", "19456"),
            ("NATTER_PASSWORD__ARGON2_ITERATIONS", "2"),
            ("NATTER_PASSWORD__MAX_CONCURRENT_HASHES", "4"),
        ],
        &[],
    )
    .await;
    let base = server.rss_bytes();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = sample_peak(&server, stop.clone());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let addr = server.tcp.clone();
        tasks.push(natter_testkit::spawn(async move {
            let mut c = natter_client::Client::connect(&addr).await.unwrap();
            for j in 0..8 {
                let r = c
                    .login(&format!("nobody{i}x{j}"), "not a password", "d")
                    .await;
                let e = r.expect_err("nobody exists");
                assert!(
                    matches!(
                        e.code(),
                        Some(pb::ErrorCode::BadCredentials | pb::ErrorCode::Unavailable)
                    ),
                    "{e}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    let after = server.rss_bytes();
    let bound = base + 4 * 19 * MIB + 40 * MIB;
    eprintln!(
        "RSS: {} MiB before, {} MiB peak, {} MiB after 320 logins; bound {} MiB",
        base / MIB,
        peak / MIB,
        after / MIB,
        bound / MIB
    );
    assert!(peak <= bound, "peak {} MiB over the bound", peak / MIB);
    assert!(after <= bound);
}

#[tokio::test]
async fn connections_that_never_log_in_cost_little_and_give_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(dir.path(), &[], &[]).await;
    let base = server.rss_bytes();
    let n = 3000;
    let mut held = Vec::with_capacity(n);
    let mut hello = natter_proto::ClientFrame::Hello(pb::Hello {
        min_version: 1,
        max_version: 1,
        client_name: "x".into(),
    })
    .to_bytes(1)
    .to_vec();
    // A frame as large as allowed before login, all but its last bytes.
    hello.extend_from_slice(&4090u32.to_be_bytes());
    hello.extend_from_slice(&[0, 3, 0, 0, 0, 2]);
    hello.extend_from_slice(&vec![b'x'; 4000]);
    for i in 0..n {
        let ip = format!("127.0.0.{}", 2 + i % 4);
        let mut raw = Raw::connect_from(&server.tcp, &ip).await;
        raw.stream.write_all(&hello).await.unwrap();
        held.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holding = server.rss_bytes();
    drop(held);
    // Freed memory goes back to the system within seconds.
    let wanted = base + (holding - base) / 3;
    let mut after = server.rss_bytes();
    for _ in 0..100 {
        if after < wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = server.rss_bytes();
    }
    eprintln!(
        "RSS: {} MiB before, {} MiB with {n} connections holding 4 KB each, {} MiB after they closed",
        base / MIB,
        holding / MIB,
        after / MIB
    );
    assert!(
        holding - base < n as u64 * 24 * 1024,
        "{} KiB per connection",
        (holding - base) / n as u64 / 1024
    );
    assert!(
        after < wanted,
        "most of it comes back: {} MiB kept",
        (after.saturating_sub(base)) / MIB
    );
}

/// A connection is one task, its reads and writes together: an idle,
/// logged-in connection keeps no second task (with its future and the
/// runtime's bookkeeping) for its writes.
#[tokio::test]
async fn a_connection_is_one_task() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(dir.path(), &[], &[]).await;
    async fn tasks(server: &Binary) -> f64 {
        // Settled: the same count twice in a row, 100 ms apart.
        let mut last = -1.0;
        for _ in 0..50 {
            let (_, page) = server.get("/metrics").await;
            let now = metric(&page, "natter_runtime_tasks").expect("natter_runtime_tasks");
            if now == last {
                return now;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    }
    let n = 40;
    let first = natter_client::Client::connect(&server.tcp).await.unwrap();
    for i in 0..n {
        first.register(&format!("task{i}"), PASSWORD).await.unwrap();
    }
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = tasks(&server).await;
    let mut held = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let mut c = natter_client::Client::connect(&server.tcp).await.unwrap();
        ids.push(
            c.login(&format!("task{i}"), PASSWORD, "d")
                .await
                .unwrap()
                .user_id,
        );
        held.push(c);
    }
    // Their writes are exercised too: a message to each from the one before.
    for (i, c) in held.iter().enumerate() {
        c.send_text(ids[(i + 1) % n], &format!("m{i}"), "hi")
            .await
            .unwrap();
    }
    let during = tasks(&server).await;
    let per_connection = (during - before) / n as f64;
    eprintln!("tasks: {before} before, {during} with {n} connections");
    assert!(
        (1.0..1.25).contains(&per_connection),
        "{per_connection} tasks per connection ({before} before, {during} with {n})"
    );
    drop(held);
}

/// With too few descriptors for both caps, the HTTP listener gets its share
/// and no more: a flood of idle HTTP connections leaves the chat port
/// accepting and logging in.
#[tokio::test]
async fn an_http_flood_cannot_take_the_descriptors_chat_needs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(dir.path(), &[], &["prlimit", "--nofile=400:400"]).await;
    let c = natter_client::Client::connect(&server.tcp).await.unwrap();
    c.register("alice", PASSWORD).await.unwrap();
    let http = server.http.unwrap();
    let mut idle = Vec::new();
    for _ in 0..600 {
        match tokio::net::TcpStream::connect(http).await {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Chat still accepts, many times over.
    let mut chat = Vec::new();
    for i in 0..100 {
        let mut c = natter_client::Client::connect(&server.tcp)
            .await
            .unwrap_or_else(|e| panic!("chat connection {i}: {e}"));
        if i == 0 {
            c.login("alice", PASSWORD, "d1").await.unwrap();
        }
        chat.push(c);
    }
    chat[0].ping().await.unwrap();
}
