//! The conformance suite's harness: a fresh database per test for each
//! backend, and the few helpers every test uses.
#![allow(clippy::unwrap_used, dead_code)]

use natter_store::model::*;
use natter_store::mysql::{MyStore, MyStoreOptions};
use natter_store::postgres::{Partitioning, PgOptions, PgStore};
use natter_store::sqlite::{SqliteOptions, SqliteStore};
use natter_store::{commit_feed, CommitFeed, Store};
use natter_testkit::pg::Schema;
use std::sync::Arc;

pub fn page(items: usize) -> Page {
    Page {
        items,
        bytes: usize::MAX,
    }
}

pub fn msg(sender: UserId, peer: UserId, id: &str) -> NewMessage {
    NewMessage {
        sender_id: sender,
        target: Target::Peer(peer),
        client_msg_id: id.into(),
        body: Body {
            kind: BodyKind::Text,
            content: format!("text {id}"),
        },
        mentions: Vec::new(),
        mention_all: false,
        friends_only: false,
        now_ms: 1,
        origin: None,
    }
}

enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(Schema, Partitioning),
    Mysql(natter_testkit::my::Database),
}

/// One test's database and the store open on it.
pub struct Env {
    store: Option<Arc<dyn Store>>,
    feed: CommitFeed,
    db: Db,
}

fn feed() -> (natter_store::CommitFeedSender, CommitFeed) {
    let (tx, mut feeds) = commit_feed(1, 1 << 16);
    (tx, feeds.remove(0))
}

pub async fn sqlite() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (store, feed) = open_sqlite(&dir);
    Env {
        store: Some(store),
        feed,
        db: Db::Sqlite(dir),
    }
}

fn open_sqlite(dir: &tempfile::TempDir) -> (Arc<dyn Store>, CommitFeed) {
    let (tx, rx) = feed();
    let store = SqliteStore::open(SqliteOptions::new(dir.path().join("t.db")), tx).unwrap();
    (Arc::new(store), rx)
}

/// A PostgreSQL store on a fresh schema, or `None` (with the reason
/// printed) when NATTER_TEST_POSTGRES_URL is not set.
pub async fn postgres() -> Option<Env> {
    postgres_with(Partitioning::None).await
}

/// The same with the message table partitioned.
pub async fn postgres_with(partitioning: Partitioning) -> Option<Env> {
    let Ok(base) = std::env::var("NATTER_TEST_POSTGRES_URL") else {
        eprintln!("skipped: NATTER_TEST_POSTGRES_URL is not set (PostgreSQL half of the suite)");
        return None;
    };
    let schema = Schema::create(&base, "natter_c_", true).await.unwrap();
    let (store, feed) = open_pg(&schema.url, partitioning).await;
    Some(Env {
        store: Some(store),
        feed,
        db: Db::Postgres(schema, partitioning),
    })
}

pub fn pg_options(url: &str, partitioning: Partitioning) -> PgOptions {
    let mut opts = PgOptions::new(url);
    opts.pool_size = 4;
    opts.partitioning = partitioning;
    opts
}

async fn open_pg(url: &str, partitioning: Partitioning) -> (Arc<dyn Store>, CommitFeed) {
    let (tx, rx) = feed();
    let opts = pg_options(url, partitioning);
    let store = PgStore::open(opts, tx).await.unwrap();
    (Arc::new(store), rx)
}

/// A MySQL store on a fresh database, or `None` (with the reason printed)
/// when NATTER_TEST_MYSQL_URL is not set.
pub async fn mysql() -> Option<Env> {
    let Ok(base) = std::env::var("NATTER_TEST_MYSQL_URL") else {
        eprintln!("skipped: NATTER_TEST_MYSQL_URL is not set (MySQL third of the suite)");
        return None;
    };
    let db = natter_testkit::my::Database::create(&base, "natter_c_")
        .await
        .unwrap();
    let (store, feed) = open_my(&db.url).await;
    Some(Env {
        store: Some(store),
        feed,
        db: Db::Mysql(db),
    })
}

pub fn my_options(url: &str) -> MyStoreOptions {
    let mut opts = MyStoreOptions::new(url);
    opts.db.pool_size = 4;
    opts
}

async fn open_my(url: &str) -> (Arc<dyn Store>, CommitFeed) {
    let (tx, rx) = feed();
    let store = MyStore::open(my_options(url), tx).await.unwrap();
    (Arc::new(store), rx)
}

impl Env {
    pub fn store(&self) -> &dyn Store {
        self.store.as_deref().unwrap()
    }

    pub fn shared(&self) -> Arc<dyn Store> {
        self.store.clone().unwrap()
    }

    /// Everything published on the commit feed so far.
    pub fn drain_feed(&mut self) -> Vec<Committed> {
        std::iter::from_fn(|| self.feed.try_recv()).collect()
    }

    /// Closes the store and opens a new one on the same database, as a
    /// restart would.
    pub async fn reopen(&mut self) {
        if let Some(s) = self.store.take() {
            s.close().await;
        }
        let (store, feed) = match &self.db {
            Db::Sqlite(dir) => open_sqlite(dir),
            Db::Postgres(schema, p) => open_pg(&schema.url, *p).await,
            Db::Mysql(db) => open_my(&db.url).await,
        };
        self.store = Some(store);
        self.feed = feed;
    }

    /// A second store on the same database, as another node would open
    /// it; `None` for a backend that is single-process.
    pub async fn second_node(&self) -> Option<Arc<dyn Store>> {
        match &self.db {
            Db::Sqlite(_) => None,
            Db::Postgres(schema, p) => Some(open_pg(&schema.url, *p).await.0),
            Db::Mysql(db) => Some(open_my(&db.url).await.0),
        }
    }

    /// Closes the store, marks its database as migrated by a newer binary,
    /// and tries to open it again.
    pub async fn open_as_if_newer(&mut self) -> Result<(), natter_store::StoreError> {
        if let Some(s) = self.store.take() {
            s.close().await;
        }
        match &self.db {
            Db::Sqlite(dir) => {
                let c = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
                c.pragma_update(None, "user_version", 999).unwrap();
                drop(c);
                let (tx, _rx) = feed();
                SqliteStore::open(SqliteOptions::new(dir.path().join("t.db")), tx).map(drop)
            }
            Db::Postgres(schema, p) => {
                let (c, conn) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                natter_testkit::spawn(conn);
                c.execute("UPDATE natter_schema SET version = 999", &[])
                    .await
                    .unwrap();
                let (tx, _rx) = feed();
                PgStore::open(pg_options(&schema.url, *p), tx)
                    .await
                    .map(drop)
            }
            Db::Mysql(db) => {
                use mysql_async::prelude::Queryable;
                let mut c = mysql_async::Conn::from_url(&db.url).await.unwrap();
                c.query_drop("UPDATE natter_schema SET version = 999")
                    .await
                    .unwrap();
                let _ = c.disconnect().await;
                let (tx, _rx) = feed();
                MyStore::open(my_options(&db.url), tx).await.map(drop)
            }
        }
    }

    pub async fn close(mut self) {
        if let Some(s) = self.store.take() {
            s.close().await;
        }
    }
}

impl Env {
    /// The PostgreSQL URL of this test's schema, if it has one.
    pub fn postgres_url(&self) -> Option<(&str, Partitioning)> {
        match &self.db {
            Db::Postgres(schema, p) => Some((&schema.url, *p)),
            Db::Sqlite(_) | Db::Mysql(_) => None,
        }
    }
}
