//! The store's message write path: appends through the group-commit writer,
//! one at a time (latency of a lone commit) and 256 concurrent (batched).
#![allow(clippy::unwrap_used)] // a benchmark, test or example: a failure should stop it

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use natter_store::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use natter_store::{commit_feed, Body, BodyKind, NewMessage, Store, Target};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn message(sender: u64, peer: u64) -> NewMessage {
    NewMessage {
        sender_id: sender,
        target: Target::Peer(peer),
        client_msg_id: format!("m{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        body: Body {
            kind: BodyKind::Text,
            content: "x".repeat(64),
        },
        mentions: Vec::new(),
        mention_all: false,
        friends_only: false,
        now_ms: 1,
        origin: None,
    }
}

fn write_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("store");
    for sync in [Synchronous::Full, Synchronous::Normal] {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut feeds) = commit_feed(1, 1 << 20);
        let mut feed = feeds.remove(0);
        let mut opts = SqliteOptions::new(dir.path().join("bench.db"));
        opts.synchronous = sync;
        let store = Arc::new(SqliteStore::open(opts, tx).unwrap());
        // Drain the feed as the server's dispatcher would.
        rt.spawn(async move { while feed.recv().await.is_some() {} });
        let users: Vec<u64> = rt.block_on(async {
            let mut v = Vec::new();
            for i in 0..512 {
                v.push(store.create_user(&format!("u{i}"), "h", 0).await.unwrap());
            }
            v
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("append one ({sync:?})"), |b| {
            b.to_async(&rt).iter(|| {
                let store = store.clone();
                let m = message(users[0], users[1]);
                async move { store.append_message(m).await.unwrap() }
            })
        });
        g.throughput(Throughput::Elements(256));
        g.bench_function(format!("append 256 concurrent ({sync:?})"), |b| {
            b.to_async(&rt).iter(|| {
                let store = store.clone();
                let users = users.clone();
                async move {
                    let tasks: Vec<_> = (0..256)
                        .map(|i| {
                            let store = store.clone();
                            let m = message(users[i * 2], users[i * 2 + 1]);
                            natter_testkit::spawn(
                                async move { store.append_message(m).await.unwrap() },
                            )
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, write_path);
criterion_main!(benches);
