//! Drives the store's write path alone: N 1:1 appends over P sender/receiver
//! pairs with C in flight, then prints appends per second and the writer
//! thread's CPU per append (from /proc). Made for profiling the writer:
//!
//!     cargo run --release -p natter-store --example append_load -- 200000 100 512
//!     valgrind --tool=callgrind target/release/examples/append_load 20000 100 512
#![allow(clippy::unwrap_used)] // a benchmark, test or example: a failure should stop it

use natter_store::sqlite::{SqliteOptions, SqliteStore};
use natter_store::{commit_feed, Body, BodyKind, NewMessage, Store, Target};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// CPU seconds used so far by this process's threads whose name starts with
/// `prefix` (Linux only; 0 elsewhere).
fn thread_cpu(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let tick = 100.0; // USER_HZ
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .map(|stat| {
            // Fields after the ")" that ends the command name; utime and
            // stime are the 12th and 13th of them.
            let f: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (ticks(11) + ticks(12)) / tick
        })
        .sum()
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .map(|s| s.parse().expect("arguments: APPENDS PAIRS IN_FLIGHT"))
        .unwrap_or(default)
}

fn main() {
    let (n, pairs, in_flight) = (arg(1, 200_000), arg(2, 100).max(1), arg(3, 512).max(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (tx, mut feeds) = commit_feed(1, 1 << 20);
    let mut feed = feeds.remove(0);
    let store = Arc::new(
        SqliteStore::open(SqliteOptions::new(dir.path().join("load.db")), tx).expect("open"),
    );
    rt.spawn(async move { while feed.recv().await.is_some() {} });
    let users: Vec<u64> = rt.block_on(async {
        let mut v = Vec::with_capacity(pairs * 2);
        for i in 0..pairs * 2 {
            v.push(
                store
                    .create_user(&format!("u{i}"), "h", 0)
                    .await
                    .expect("user"),
            );
        }
        v
    });
    let cpu_before = thread_cpu("natter-sqlite-w");
    let started = natter_runtime::clock::Instant::now();
    rt.block_on(async {
        let permits = Arc::new(Semaphore::new(in_flight));
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..n {
            let permit = permits.clone().acquire_owned().await.expect("semaphore");
            let store = store.clone();
            let pair = k % pairs;
            let m = NewMessage {
                sender_id: users[pair * 2],
                target: Target::Peer(users[pair * 2 + 1]),
                // Spread like client-made UUIDs, not in insertion order.
                client_msg_id: format!(
                    "{:08x}-{k:012x}",
                    (k as u64).wrapping_mul(2_654_435_761) as u32
                ),
                body: Body {
                    kind: BodyKind::Text,
                    content: "x".repeat(64),
                },
                mentions: Vec::new(),
                mention_all: false,
                friends_only: false,
                now_ms: 1,
                origin: None,
            };
            tasks.spawn(async move {
                store.append_message(m).await.expect("append");
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    });
    let wall = started.elapsed().as_secs_f64();
    let cpu = thread_cpu("natter-sqlite-w") - cpu_before;
    println!(
        "{n} appends over {pairs} pairs, {in_flight} in flight: {:.0} appends/s, writer CPU {:.1} µs per append ({:.0} % busy)",
        n as f64 / wall,
        cpu * 1e6 / n as f64,
        cpu / wall * 100.0
    );
}
