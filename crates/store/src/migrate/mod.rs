//! Moving a deployment between any two backends (SQLite, PostgreSQL,
//! MySQL/MariaDB): every row of every table copied with its ids (users,
//! sessions, conversations, members and their cursors, messages with their
//! seqs and ids, mentions, groups, join requests, friend requests, friends,
//! blocks, admins; `tables.rs` lists them), in batches, then verified: row
//! counts per table and each conversation's last seq on both sides.
//!
//! A source yields each table's rows in batches in a neutral form
//! ([`Value`], one per column kind; mentions as a list of ids), read in one
//! consistent snapshot: SQLite in one read transaction under the data
//! directory's lock (so no server writes meanwhile), PostgreSQL in a
//! `REPEATABLE READ` read-only transaction, MySQL in a transaction `WITH
//! CONSISTENT SNAPSHOT`. A target writes each batch in its own form
//! (`sqlite.rs`, `postgres.rs`, `mysql.rs`), skipping rows already there,
//! then sets what follows from the copy (identity counters, PostgreSQL's
//! idempotency keys). A target that already holds data is refused unless
//! resuming. A SQLite target's data directory is locked like a running
//! server's, and its schema made first, so it opens as a store afterwards.

mod mysql;
mod postgres;
mod sqlite;
mod tables;

use crate::StoreError;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tables::{Table, TABLES};

/// Rows a source yields per batch (a MySQL target splits them further).
const BATCH: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the target database already holds natter data ({0} users); pass --resume to continue a copy into it")]
    NotEmpty(i64),
    #[error("no natter database at {0}")]
    NoDatabase(PathBuf),
    #[error("the source and the target are the same database")]
    Same,
    #[error("{table}.{column}: {why}")]
    BadValue {
        table: &'static str,
        column: &'static str,
        why: String,
    },
    #[error("verification failed: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for CopyError {
    fn from(e: rusqlite::Error) -> Self {
        CopyError::Store(e.into())
    }
}

impl From<tokio_postgres::Error> for CopyError {
    fn from(e: tokio_postgres::Error) -> Self {
        CopyError::Store(e.into())
    }
}

impl From<mysql_async::Error> for CopyError {
    fn from(e: mysql_async::Error) -> Self {
        CopyError::Store(e.into())
    }
}

/// One side of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A SQLite database file (a data directory's `natter.db`).
    Sqlite(PathBuf),
    /// `postgres://` or `postgresql://`.
    Postgres(String),
    /// `mysql://`.
    Mysql(String),
}

impl Endpoint {
    /// A URL names a database server; anything else is a data directory,
    /// whose `natter.db` is the SQLite database.
    pub fn parse(s: &str) -> Endpoint {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Endpoint::Postgres(s.to_owned())
        } else if s.starts_with("mysql://") {
            Endpoint::Mysql(s.to_owned())
        } else {
            Endpoint::Sqlite(PathBuf::from(s).join("natter.db"))
        }
    }

    /// What to call it in messages (never the URL: it may hold a password).
    pub fn backend(&self) -> &'static str {
        match self {
            Endpoint::Sqlite(_) => "SQLite",
            Endpoint::Postgres(_) => "PostgreSQL",
            Endpoint::Mysql(_) => "MySQL",
        }
    }
}

/// How to copy.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Go on into a target that holds data, skipping rows already there.
    pub resume: bool,
    /// The message table's layout if the target is a new PostgreSQL one.
    pub partitioning: crate::postgres::Partitioning,
}

/// What was copied and checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows per table, as found on both sides after the copy.
    pub tables: Vec<(&'static str, i64)>,
    /// Conversations whose last seq matched on both sides.
    pub conversations: usize,
}

/// One column's value, whatever the backend: integers of every width are
/// `Int`, a NULL (only where a kind allows it) is `Null`.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Ids(Vec<i64>),
}

/// Rows of one table, each with a value per column of its `Table`.
type Batch = Vec<Vec<Value>>;

/// Mentions as SQLite and MySQL keep them.
fn ids_text(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    ids.join(" ")
}

/// Mentions as SQLite and MySQL keep them, read back.
fn parse_ids(t: &Table, column: usize, text: &str) -> Result<Vec<i64>, CopyError> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| CopyError::BadValue {
            table: t.name,
            column: t.columns[column].0,
            why: format!("{text:?} is not a list of ids: {e}"),
        })
}

/// Each conversation's last seq, as its row says and as its messages do.
const LAST_SEQS: &str = "SELECT c.id, c.last_seq, COALESCE((SELECT max(m.seq) FROM messages m
    WHERE m.conversation_id = c.id), 0) FROM conversations c";

type LastSeqs = BTreeMap<i64, (i64, i64)>;

/// An open side, as a source or a target.
enum Side {
    Sqlite(sqlite::Lite),
    Postgres(postgres::Pg),
    Mysql(mysql::My),
}

impl Side {
    async fn source(at: &Endpoint) -> Result<Side, CopyError> {
        Ok(match at {
            Endpoint::Sqlite(db) => Side::Sqlite(sqlite::Lite::source(db)?),
            Endpoint::Postgres(url) => Side::Postgres(postgres::Pg::source(url).await?),
            Endpoint::Mysql(url) => Side::Mysql(mysql::My::source(url).await?),
        })
    }

    async fn target(at: &Endpoint, options: Options) -> Result<Side, CopyError> {
        Ok(match at {
            Endpoint::Sqlite(db) => Side::Sqlite(sqlite::Lite::target(db)?),
            Endpoint::Postgres(url) => {
                Side::Postgres(postgres::Pg::target(url, options.partitioning).await?)
            }
            Endpoint::Mysql(url) => Side::Mysql(mysql::My::target(url).await?),
        })
    }

    /// Hands `sink` table `t`'s rows, a batch at a time.
    async fn read(
        &mut self,
        t: &'static Table,
        sink: &mut impl AsyncFnMut(Batch) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        match self {
            Side::Sqlite(s) => s.read(t, sink).await,
            Side::Postgres(s) => s.read(t, sink).await,
            Side::Mysql(s) => s.read(t, sink).await,
        }
    }

    /// Writes `batch` into `t`, skipping rows that are there.
    async fn write(&mut self, t: &'static Table, batch: &Batch) -> Result<(), CopyError> {
        match self {
            Side::Sqlite(s) => s.write(t, batch),
            Side::Postgres(s) => s.write(t, batch).await,
            Side::Mysql(s) => s.write(t, batch).await,
        }
    }

    /// What follows from the copied rows: identity counters, keys.
    async fn finish(&mut self) -> Result<(), CopyError> {
        match self {
            Side::Sqlite(_) => Ok(()),
            Side::Postgres(s) => s.finish().await,
            Side::Mysql(s) => s.finish().await,
        }
    }

    async fn count(&mut self, t: &Table) -> Result<i64, CopyError> {
        match self {
            Side::Sqlite(s) => s.count(t),
            Side::Postgres(s) => s.count(t).await,
            Side::Mysql(s) => s.count(t).await,
        }
    }

    async fn last_seqs(&mut self) -> Result<LastSeqs, CopyError> {
        match self {
            Side::Sqlite(s) => s.last_seqs(),
            Side::Postgres(s) => s.last_seqs().await,
            Side::Mysql(s) => s.last_seqs().await,
        }
    }

    /// Ends the snapshot or the session.
    async fn close(self) {
        match self {
            Side::Sqlite(_) => {}
            Side::Postgres(s) => s.close().await,
            Side::Mysql(s) => s.close().await,
        }
    }
}

/// Copies everything from `from` into `to`, then verifies the copy.
/// `progress` hears each table's name and rows copied so far.
pub async fn copy(
    from: &Endpoint,
    to: &Endpoint,
    options: Options,
    mut progress: impl FnMut(&str, u64),
) -> Result<Report, CopyError> {
    if from == to {
        return Err(CopyError::Same);
    }
    let mut src = Side::source(from).await?;
    let mut dst = Side::target(to, options).await?;
    let out = async {
        let users = dst.count(&TABLES[0]).await?;
        if users > 0 && !options.resume {
            return Err(CopyError::NotEmpty(users));
        }
        for t in TABLES {
            let mut copied = 0u64;
            let mut sink = async |batch: Batch| {
                dst.write(t, &batch).await?;
                copied += batch.len() as u64;
                progress(t.name, copied);
                Ok(())
            };
            src.read(t, &mut sink).await?;
        }
        dst.finish().await?;
        verify(from.backend(), &mut src, to.backend(), &mut dst).await
    }
    .await;
    src.close().await;
    dst.close().await;
    out
}

async fn verify(from: &str, src: &mut Side, to: &str, dst: &mut Side) -> Result<Report, CopyError> {
    let mut report = Report::default();
    for t in TABLES {
        let (here, there) = (src.count(t).await?, dst.count(t).await?);
        if here != there {
            return Err(CopyError::Mismatch(format!(
                "{}: {here} rows in {from}, {there} in {to}",
                t.name
            )));
        }
        report.tables.push((t.name, there));
    }
    let (here, there) = (src.last_seqs().await?, dst.last_seqs().await?);
    if here != there {
        let differ = here
            .iter()
            .find(|(id, s)| there.get(id) != Some(s))
            .map(|(id, _)| *id);
        return Err(CopyError::Mismatch(format!(
            "conversation {differ:?} has other seqs in {to} than in {from}"
        )));
    }
    report.conversations = there.len();
    Ok(report)
}

#[cfg(test)]
mod tests;
