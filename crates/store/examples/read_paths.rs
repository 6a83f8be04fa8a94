//! Times the read paths a reconnecting client hits hardest, on either
//! backend: a full Sync pass over a 10,000-message backlog (in one 1:1) and
//! over 1,000 conversations, and the 1,000-conversation list page by page.
//! Median of five passes each, after one warm-up pass:
//!
//!     cargo run --release -p natter-store --example read_paths -- sqlite
//!     cargo run --release -p natter-store --example read_paths -- postgres postgres://postgres@127.0.0.1/test
//!
//! PostgreSQL runs in a schema of its own, dropped afterwards.
#![allow(clippy::unwrap_used)] // a benchmark, test or example: a failure should stop it

use natter_store::postgres::{PgOptions, PgStore};
use natter_store::sqlite::{SqliteOptions, SqliteStore};
use natter_store::{commit_feed, Body, BodyKind, NewMessage, Page, Store, Target};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

/// The server's default sync and list pages.
const SYNC: Page = Page {
    items: 500,
    bytes: 128 * 1024,
};
const LIST: Page = Page {
    items: 100,
    bytes: 128 * 1024,
};

fn text(sender: u64, to: u64, id: String) -> NewMessage {
    NewMessage {
        sender_id: sender,
        target: Target::Peer(to),
        client_msg_id: id,
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

/// A whole Sync pass from nothing, advancing cursors as a client does;
/// returns (pages, messages).
async fn sync_pass(s: &dyn Store, user: u64) -> (usize, usize) {
    let (mut cursors, mut after, mut pages, mut msgs) = (HashMap::new(), 0, 0, 0);
    loop {
        let p = s.sync(user, &cursors, after, SYNC).await.unwrap();
        pages += 1;
        msgs += p.messages.len();
        for m in &p.messages {
            cursors.insert(m.conversation_id, m.seq);
        }
        if !p.has_more {
            return (pages, msgs);
        }
        after = p.next_after;
    }
}

async fn list_pass(s: &dyn Store, user: u64) -> usize {
    let (mut before, mut n) = (None, 0);
    loop {
        let (c, more) = s.conversations(user, before, LIST).await.unwrap();
        n += c.len();
        before = c.last().map(|c| natter_store::Before {
            activity_ms: c.last_activity_ms,
            id: c.id,
        });
        if !more {
            return n;
        }
    }
}

async fn median<F, Fut>(mut f: F) -> (f64, String)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    f().await;
    let mut times = Vec::new();
    let mut what = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        what = f().await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    (times[2], what)
}

async fn run(store: Arc<dyn Store>, backend: &str) {
    let reader = store.create_user("reader", "h", 0).await.unwrap();
    let backlog = store.create_user("backlog", "h", 0).await.unwrap();
    let mut others = Vec::new();
    for i in 0..1000 {
        others.push(store.create_user(&format!("u{i}"), "h", 0).await.unwrap());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..10_000 {
        let s = store.clone();
        tasks.spawn(async move {
            s.append_message(text(backlog, reader, format!("b{k}")))
                .await
        });
        if tasks.len() >= 512 {
            tasks.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let many = store.create_user("many", "h", 0).await.unwrap();
    for (i, &o) in others.iter().enumerate() {
        let s = store.clone();
        tasks.spawn(async move { s.append_message(text(o, many, format!("m{i}"))).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let (t, what) = median(|| async {
        let (p, m) = sync_pass(&*store, reader).await;
        format!("{m} messages in {p} pages")
    })
    .await;
    println!("{backend}: sync of a 10,000-message backlog: {t:.1} ms ({what})");
    let (t, what) = median(|| async {
        let (p, m) = sync_pass(&*store, many).await;
        format!("{m} messages in {p} pages")
    })
    .await;
    println!("{backend}: sync over 1,000 conversations: {t:.1} ms ({what})");
    let (t, what) =
        median(|| async { format!("{} conversations", list_pass(&*store, many).await) }).await;
    println!("{backend}: the 1,000-conversation list, 100 a page: {t:.1} ms ({what})");
    store.close().await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut feeds) = commit_feed(1, 1 << 20);
    let mut feed = feeds.remove(0);
    rt.spawn(async move { while feed.recv().await.is_some() {} });
    match args.get(1).map(String::as_str) {
        Some("postgres") => rt.block_on(async {
            let base = args.get(2).expect("a postgres:// URL");
            let schema = natter_testkit::pg::Schema::create(base, "natter_x_", true)
                .await
                .unwrap();
            let store = PgStore::open(PgOptions::new(&schema.url), tx)
                .await
                .unwrap();
            run(Arc::new(store), "postgres").await;
        }),
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(SqliteOptions::new(dir.path().join("r.db")), tx).unwrap();
            rt.block_on(run(Arc::new(store), "sqlite"));
        }
    }
}
