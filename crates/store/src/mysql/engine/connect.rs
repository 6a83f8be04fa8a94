//! How natter connects to MariaDB or MySQL: the URL and bounds, the
//! session every connection starts with, which server it is, and whether
//! it keeps what it acknowledges.

use crate::{Result, StoreError};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, PoolConstraints, PoolOpts};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct MyOptions {
    /// `mysql://user:password@host:port/database`.
    pub url: String,
    /// Pooled connections for reads and writes other than appends.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// How long one statement may run on the server (MariaDB's
    /// `max_statement_time`, MySQL's `max_execution_time` for reads) and
    /// wait for a row lock (`innodb_lock_wait_timeout`, whole seconds).
    pub statement_timeout: Duration,
}

impl MyOptions {
    pub fn new(url: impl Into<String>) -> Self {
        MyOptions {
            url: url.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
        }
    }

    /// The driver's options: the URL, the pool, and the session, which
    /// bounds each statement in time once the server's flavor is known.
    pub(crate) fn opts(&self, flavor: Option<Flavor>) -> Result<Opts> {
        let url = Opts::from_url(&self.url)
            .map_err(|e| StoreError::backend("the MySQL URL is not valid", e))?;
        let pool = PoolOpts::default().with_constraints(
            PoolConstraints::new(0, self.pool_size.max(1))
                .ok_or_else(|| StoreError::bug("a pool of no connections"))?,
        );
        let lock_wait = self.statement_timeout.as_secs().max(1);
        let mut init = vec![
            // Standard literals (a backslash is itself), and a value that
            // does not fit is an error, never cut short.
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,\
             NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
                .to_owned(),
            "SET NAMES utf8mb4 COLLATE utf8mb4_bin".to_owned(),
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_owned(),
            format!("SET SESSION innodb_lock_wait_timeout = {lock_wait}"),
        ];
        init.extend(flavor.map(|f| f.statement_timeout(self.statement_timeout)));
        Ok(OptsBuilder::from_opts(url)
            .pool_opts(pool)
            .stmt_cache_size(512)
            .client_found_rows(false)
            // The address the URL names, always: the driver would switch
            // to the server's Unix socket when it finds one, past whatever
            // stands between (a proxy, a test's fault injector).
            .prefer_socket(false)
            .wait_timeout(Some(28_800))
            .init(init)
            .into())
    }
}

/// Which server: their statement time limits differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

impl Flavor {
    /// From `SELECT VERSION()`.
    pub fn of(version: &str) -> Flavor {
        if version.contains("MariaDB") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }

    /// The statement that bounds each statement's time on this server.
    pub fn statement_timeout(self, limit: Duration) -> String {
        match self {
            Flavor::MariaDb => format!(
                "SET SESSION max_statement_time = {:.3}",
                limit.as_secs_f64()
            ),
            Flavor::MySql => format!("SET SESSION max_execution_time = {}", limit.as_millis()),
        }
    }
}

/// The server's flavor, with this connection's statements bounded in time
/// (for a connection made before the flavor was known).
pub async fn start_session(conn: &mut Conn, statement_timeout: Duration) -> Result<Flavor> {
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    let flavor = Flavor::of(&version.unwrap_or_default());
    conn.query_drop(flavor.statement_timeout(statement_timeout))
        .await?;
    Ok(flavor)
}

/// Why the server would not keep what it acknowledged, if it would not:
/// an ACK means durable only when InnoDB writes and flushes its log at
/// every commit (`innodb_flush_log_at_trx_commit = 1`), and, where there
/// is a binary log, syncs it at every commit too (`sync_binlog = 1`).
pub async fn not_durable(conn: &mut Conn) -> Result<Option<String>> {
    let flush: Option<i64> = conn
        .query_first("SELECT @@GLOBAL.innodb_flush_log_at_trx_commit")
        .await?;
    if flush != Some(1) {
        return Ok(Some(format!(
            "innodb_flush_log_at_trx_commit is {}, not 1: a crash of the database server \
             could lose messages natter has acknowledged",
            flush.map_or("unset".to_owned(), |f| f.to_string())
        )));
    }
    let (log_bin, sync): (Option<i64>, Option<i64>) = conn
        .query_first("SELECT @@GLOBAL.log_bin, @@GLOBAL.sync_binlog")
        .await?
        .unwrap_or((None, None));
    if log_bin == Some(1) && sync != Some(1) {
        return Ok(Some(format!(
            "the binary log is on with sync_binlog = {}, not 1: a crash could lose \
             acknowledged messages from what replicas and point-in-time recovery see",
            sync.map_or("unset".to_owned(), |s| s.to_string())
        )));
    }
    Ok(None)
}
