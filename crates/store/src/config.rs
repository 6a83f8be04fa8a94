//! The `[store]` section of the server's configuration: which backend, and
//! its settings, with their defaults and rules. The options each backend
//! opens with are made from it here, so the binary only picks the backend.

use crate::postgres::{Partitioning, PgOptions};
use crate::sqlite::{SqliteOptions, Synchronous};
use crate::BreakerOptions;
use natter_runtime::config::{check, Invalid};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Which database the store uses.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Embedded, in `data_dir`; one process.
    Sqlite,
    /// A PostgreSQL server at `store.url`; one node or several.
    Postgres,
    /// A MariaDB (10.6+) or MySQL (8) server at `store.url`; one node or
    /// several.
    Mysql,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Partition {
    None,
    /// By hash of the conversation.
    Hash,
    /// By month of the message.
    Monthly,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: Backend,
    /// PostgreSQL: `postgres://user:password@host:port/database`; MySQL:
    /// `mysql://user:password@host:port/database`.
    pub url: String,
    /// SQLite: `full`: an ACKed message survives power loss; `normal`: a crash.
    pub synchronous: Synchronous,
    pub max_batch: usize,
    pub queue_depth: usize,
    /// SQLite: reader connections.
    pub readers: usize,
    /// SQLite: under load (at least one more write expected within it), how
    /// long a round's oldest write waits for company before the round syncs
    /// (microseconds; 0: never waits). See `sqlite/engine/round.rs`.
    pub commit_delay_us: u64,
    /// PostgreSQL: pooled connections (the writer has one more).
    pub pool_size: usize,
    /// PostgreSQL: how long a connection attempt may take.
    pub connect_timeout_ms: u64,
    /// PostgreSQL: how long one statement may run.
    pub statement_timeout_ms: u64,
    /// PostgreSQL: a request's whole bound from its arrival (a Send's
    /// queueing, connecting and committing), after which it is answered
    /// UNAVAILABLE.
    pub request_timeout_ms: u64,
    /// PostgreSQL: how long a request waits for a free pooled connection.
    pub pool_wait_ms: u64,
    /// PostgreSQL: consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// PostgreSQL: how long the breaker stays open before a probe.
    pub breaker_open_ms: u64,
    /// PostgreSQL: the message table's partitioning, fixed when it is made.
    pub partition: Partition,
    /// PostgreSQL, `partition = "hash"`: how many partitions.
    pub partitions: u32,
    /// PostgreSQL, `partition = "monthly"`: months older than this many
    /// days are dropped (0: keep everything).
    pub retention_days: u32,
    /// MySQL: start even when the server would lose acknowledged commits
    /// in a crash (`innodb_flush_log_at_trx_commit` or, with a binary log,
    /// `sync_binlog` not 1), warning loudly, instead of refusing to.
    pub mysql_allow_unsafe_durability: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            url: String::new(),
            synchronous: Synchronous::Full,
            max_batch: 512,
            queue_depth: 8192,
            readers: 4,
            commit_delay_us: 300,
            pool_size: 16,
            connect_timeout_ms: 3_000,
            statement_timeout_ms: 5_000,
            request_timeout_ms: 2_000,
            pool_wait_ms: 2_000,
            breaker_failures: 3,
            breaker_open_ms: 2_000,
            partition: Partition::None,
            partitions: 16,
            retention_days: 0,
            mysql_allow_unsafe_durability: false,
        }
    }
}

impl StoreConfig {
    /// The section's rules; a server's only when it is the backend.
    pub fn validate(&self) -> Result<(), Invalid> {
        let at_least_1 = || "must be at least 1".to_owned();
        check(self.max_batch >= 1, "store.max_batch", at_least_1)?;
        check(self.queue_depth >= 1, "store.queue_depth", at_least_1)?;
        check(self.readers >= 1, "store.readers", at_least_1)?;
        check(
            self.commit_delay_us <= 10_000,
            "store.commit_delay_us",
            || "must be at most 10000 (10 ms)".into(),
        )?;
        match self.backend {
            Backend::Sqlite => return Ok(()),
            Backend::Postgres => check(
                self.url.starts_with("postgres://") || self.url.starts_with("postgresql://"),
                "store.url",
                || "the postgres backend needs a postgres:// URL".into(),
            )?,
            Backend::Mysql => check(self.url.starts_with("mysql://"), "store.url", || {
                "the mysql backend needs a mysql:// URL".into()
            })?,
        }
        check(
            (1..=1000).contains(&self.pool_size),
            "store.pool_size",
            || "must be between 1 and 1000".into(),
        )?;
        for (v, key) in [
            (self.connect_timeout_ms, "store.connect_timeout_ms"),
            (self.statement_timeout_ms, "store.statement_timeout_ms"),
            (self.request_timeout_ms, "store.request_timeout_ms"),
            (self.pool_wait_ms, "store.pool_wait_ms"),
            (self.breaker_open_ms, "store.breaker_open_ms"),
        ] {
            check(v >= 1, key, || "must be at least 1".into())?;
        }
        check(self.breaker_failures >= 1, "store.breaker_failures", || {
            "must be at least 1".into()
        })
    }

    /// The message table's layout on PostgreSQL.
    pub fn partitioning(&self) -> Partitioning {
        match self.partition {
            Partition::None => Partitioning::None,
            Partition::Hash => Partitioning::Hash {
                partitions: self.partitions,
            },
            Partition::Monthly => Partitioning::Monthly {
                retention_days: self.retention_days,
            },
        }
    }

    /// How the SQLite store at `path` opens.
    pub fn sqlite_options(&self, path: PathBuf) -> SqliteOptions {
        SqliteOptions {
            path,
            synchronous: self.synchronous,
            max_batch: self.max_batch,
            queue_depth: self.queue_depth,
            readers: self.readers,
            commit_delay: Duration::from_micros(self.commit_delay_us),
        }
    }

    /// How the MySQL store opens.
    pub fn my_options(&self) -> crate::mysql::MyStoreOptions {
        let ms = Duration::from_millis;
        let mut o = crate::mysql::MyStoreOptions::new(self.url.clone());
        o.db.pool_size = self.pool_size;
        o.db.connect_timeout = ms(self.connect_timeout_ms);
        o.db.statement_timeout = ms(self.statement_timeout_ms);
        o.request_timeout = ms(self.request_timeout_ms);
        o.max_batch = self.max_batch;
        o.queue_depth = self.queue_depth;
        o.breaker = BreakerOptions {
            failures: self.breaker_failures,
            open_for: ms(self.breaker_open_ms),
        };
        o.allow_unsafe_durability = self.mysql_allow_unsafe_durability;
        o
    }

    /// How the PostgreSQL store opens.
    pub fn pg_options(&self) -> PgOptions {
        let ms = Duration::from_millis;
        PgOptions {
            url: self.url.clone(),
            pool_size: self.pool_size,
            connect_timeout: ms(self.connect_timeout_ms),
            statement_timeout: ms(self.statement_timeout_ms),
            request_timeout: ms(self.request_timeout_ms),
            pool_wait: ms(self.pool_wait_ms),
            max_batch: self.max_batch,
            queue_depth: self.queue_depth,
            breaker: BreakerOptions {
                failures: self.breaker_failures,
                open_for: ms(self.breaker_open_ms),
            },
            partitioning: self.partitioning(),
        }
    }
}
