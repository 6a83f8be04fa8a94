//! Moving a deployment from SQLite to PostgreSQL: every row of every table
//! copied with its ids (users, sessions, conversations, members and their
//! cursors, messages with their seqs and ids, mentions, groups, join
//! requests, friend requests, friends, blocks; emailed codes wait only
//! minutes and are not copied), in batches, then verified:
//! row counts per table and each conversation's last seq on both sides.
//! The source is locked like a running server would lock it, so nothing
//! writes to it meanwhile. A target that already holds data is refused
//! unless resuming, which skips rows that are already there.

use crate::postgres::engine::schema as pg_schema;
use crate::sqlite::schema as sqlite_schema;
use crate::StoreError;
use std::collections::BTreeMap;
use std::path::Path;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

/// Rows sent to PostgreSQL per statement.
const BATCH: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the target database already holds natter data ({0} users); pass --resume to continue a copy into it")]
    NotEmpty(i64),
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

/// What was copied and checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows per table, as found on both sides after the copy.
    pub tables: Vec<(&'static str, i64)>,
    /// Conversations whose last seq matched on both sides.
    pub conversations: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    BigInt,
    SmallInt,
    Int,
    Text,
    /// Text that may be NULL.
    OptText,
    /// A BIGINT that may be NULL.
    OptBigInt,
    Bool,
    Bytes,
    /// SQLite's space-separated ids, PostgreSQL's BIGINT[].
    Ids,
}

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// Has an identity column `id` whose sequence must follow the copy.
    identity: bool,
}

use Kind::*;

/// In an order that keeps every foreign key satisfied.
const TABLES: &[Table] = &[
    Table {
        name: "users",
        columns: &[
            ("id", BigInt),
            ("username", Text),
            ("password_hash", Text),
            ("disabled", Bool),
            ("created_at_ms", BigInt),
            ("email", OptText),
            ("banned_until_ms", OptBigInt),
            ("ban_reason", Text),
        ],
        identity: true,
    },
    Table {
        name: "sessions",
        columns: &[
            ("id", BigInt),
            ("user_id", BigInt),
            ("device_id", Text),
            ("token_hash", Bytes),
            ("created_at_ms", BigInt),
            ("expires_at_ms", BigInt),
            ("revoked", Bool),
        ],
        identity: true,
    },
    Table {
        name: "conversations",
        columns: &[
            ("id", BigInt),
            ("kind", SmallInt),
            ("last_seq", BigInt),
            ("created_at_ms", BigInt),
            ("last_activity_ms", BigInt),
        ],
        identity: true,
    },
    Table {
        name: "direct_pairs",
        columns: &[
            ("user_lo", BigInt),
            ("user_hi", BigInt),
            ("conversation_id", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "members",
        columns: &[
            ("user_id", BigInt),
            ("conversation_id", BigInt),
            ("role", SmallInt),
            ("joined_seq", BigInt),
            ("left_seq", BigInt),
            ("read_seq", BigInt),
            ("delivered_seq", BigInt),
            ("muted_until_ms", BigInt),
            ("joined_at_ms", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "messages",
        columns: &[
            ("conversation_id", BigInt),
            ("seq", BigInt),
            ("id", BigInt),
            ("sender_id", BigInt),
            ("client_msg_id", Text),
            ("created_at_ms", BigInt),
            ("body_kind", SmallInt),
            ("body", Text),
            ("mentions", Ids),
            ("mention_all", Bool),
        ],
        identity: true,
    },
    Table {
        name: "mentions",
        columns: &[
            ("user_id", BigInt),
            ("conversation_id", BigInt),
            ("seq", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "groups",
        columns: &[
            ("conversation_id", BigInt),
            ("name", Text),
            ("notice", Text),
            ("owner_id", BigInt),
            ("join_policy", SmallInt),
            ("muted_all", Bool),
            ("dismissed", Bool),
            ("member_count", Int),
            ("invite_code", Text),
        ],
        identity: false,
    },
    Table {
        name: "join_requests",
        columns: &[
            ("conversation_id", BigInt),
            ("user_id", BigInt),
            ("message", Text),
            ("created_at_ms", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "friend_requests",
        columns: &[
            ("id", BigInt),
            ("from_id", BigInt),
            ("to_id", BigInt),
            ("message", Text),
            ("status", SmallInt),
            ("reply", Text),
            ("created_at_ms", BigInt),
            ("decided_at_ms", BigInt),
        ],
        identity: true,
    },
    Table {
        name: "friends",
        columns: &[
            ("user_id", BigInt),
            ("friend_id", BigInt),
            ("remark", Text),
            ("since_ms", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "blocks",
        columns: &[("user_id", BigInt), ("blocked_id", BigInt)],
        identity: false,
    },
    Table {
        name: "admins",
        columns: &[
            ("id", BigInt),
            ("name", Text),
            ("password_hash", Text),
            ("role", SmallInt),
            ("created_at_ms", BigInt),
        ],
        identity: true,
    },
    Table {
        name: "admin_sessions",
        columns: &[
            ("token_hash", Bytes),
            ("admin_id", BigInt),
            ("created_at_ms", BigInt),
            ("expires_at_ms", BigInt),
        ],
        identity: false,
    },
    Table {
        name: "admin_audit",
        columns: &[
            ("id", BigInt),
            ("at_ms", BigInt),
            ("actor", Text),
            ("address", Text),
            ("action", Text),
            ("target", Text),
            ("detail", Text),
            ("ok", Bool),
        ],
        identity: true,
    },
];

/// One batch of rows, column by column, as PostgreSQL takes arrays.
enum Column {
    BigInt(Vec<i64>),
    SmallInt(Vec<i16>),
    Int(Vec<i32>),
    Text(Vec<String>),
    OptText(Vec<Option<String>>),
    OptBigInt(Vec<Option<i64>>),
    Bool(Vec<bool>),
    Bytes(Vec<Vec<u8>>),
}

impl Column {
    fn new(kind: Kind) -> Column {
        match kind {
            BigInt => Column::BigInt(Vec::new()),
            SmallInt => Column::SmallInt(Vec::new()),
            Int => Column::Int(Vec::new()),
            Text | Ids => Column::Text(Vec::new()),
            OptText => Column::OptText(Vec::new()),
            OptBigInt => Column::OptBigInt(Vec::new()),
            Bool => Column::Bool(Vec::new()),
            Bytes => Column::Bytes(Vec::new()),
        }
    }

    fn push(&mut self, kind: Kind, row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<()> {
        match (self, kind) {
            (Column::BigInt(v), _) => v.push(row.get(i)?),
            (Column::SmallInt(v), _) => v.push(row.get::<_, i64>(i)? as i16),
            (Column::Int(v), _) => v.push(row.get::<_, i64>(i)? as i32),
            (Column::Bool(v), _) => v.push(row.get::<_, i64>(i)? != 0),
            (Column::Bytes(v), _) => v.push(row.get(i)?),
            (Column::OptText(v), _) => v.push(row.get(i)?),
            (Column::OptBigInt(v), _) => v.push(row.get(i)?),
            (Column::Text(v), Ids) => {
                let ids: String = row.get(i)?;
                let list: Vec<&str> = ids.split(' ').filter(|s| !s.is_empty()).collect();
                v.push(format!("{{{}}}", list.join(",")));
            }
            (Column::Text(v), _) => v.push(row.get(i)?),
        }
        Ok(())
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::BigInt(v) => v,
            Column::SmallInt(v) => v,
            Column::Int(v) => v,
            Column::Text(v) => v,
            Column::OptText(v) => v,
            Column::OptBigInt(v) => v,
            Column::Bool(v) => v,
            Column::Bytes(v) => v,
        }
    }

    fn clear(&mut self) {
        match self {
            Column::BigInt(v) => v.clear(),
            Column::SmallInt(v) => v.clear(),
            Column::Int(v) => v.clear(),
            Column::Text(v) => v.clear(),
            Column::OptText(v) => v.clear(),
            Column::OptBigInt(v) => v.clear(),
            Column::Bool(v) => v.clear(),
            Column::Bytes(v) => v.clear(),
        }
    }
}

fn array_type(kind: Kind) -> &'static str {
    match kind {
        BigInt | OptBigInt => "bigint[]",
        SmallInt => "smallint[]",
        Int => "integer[]",
        Text | OptText | Ids => "text[]",
        Bool => "boolean[]",
        Bytes => "bytea[]",
    }
}

/// The statement that inserts one batch of `t`, skipping rows already there.
fn insert_sql(t: &Table) -> String {
    let names: Vec<&str> = t.columns.iter().map(|c| c.0).collect();
    let arrays: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, array_type(c.1)))
        .collect();
    let aliases: Vec<String> = (0..t.columns.len()).map(|i| format!("c{i}")).collect();
    let select: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| match c.1 {
            Ids => format!("c{i}::bigint[]"),
            _ => format!("c{i}"),
        })
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS t({}) ON CONFLICT DO NOTHING",
        t.name,
        names.join(", "),
        select.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    )
}

/// Copies the SQLite database at `from` (a data directory's `natter.db`)
/// into the PostgreSQL database at `to`, then verifies the copy.
/// `progress` hears each table's name and rows copied so far.
pub async fn sqlite_to_postgres(
    from: &Path,
    to: &str,
    partitioning: crate::postgres::Partitioning,
    resume: bool,
    mut progress: impl FnMut(&str, u64),
) -> Result<Report, CopyError> {
    let _lock = crate::sqlite::lock_database(from)?;
    let mut src = rusqlite::Connection::open(from)?;
    sqlite_schema::migrate(&mut src)?;
    // A server that did not stop cleanly leaves messages in its log.
    crate::sqlite::recover(&mut src, from)?;
    let (mut dst, connection) = to
        .parse::<tokio_postgres::Config>()
        .map_err(|e| CopyError::Store(StoreError::backend("the PostgreSQL URL is not valid", e)))?
        .connect(NoTls)
        .await?;
    // The connection's driver, awaited at the end of the copy once `dst` is
    // dropped (it ends with `dst` on an early return).
    #[allow(clippy::disallowed_methods)]
    let conn_task = tokio::spawn(connection);
    pg_schema::migrate(&mut dst, partitioning).await?;
    crate::postgres::engine::partitions::maintain(
        &dst,
        partitioning,
        natter_runtime::clock::now_ms(),
    )
    .await?;
    let users: i64 = dst
        .query_one("SELECT count(*) FROM users", &[])
        .await?
        .get(0);
    if users > 0 && !resume {
        return Err(CopyError::NotEmpty(users));
    }
    // One read transaction: the copy is of one moment of the source.
    let src = src.transaction()?;
    for t in TABLES {
        let names: Vec<&str> = t.columns.iter().map(|c| c.0).collect();
        let mut stmt = src.prepare(&format!("SELECT {} FROM {}", names.join(", "), t.name))?;
        let mut rows = stmt.query([])?;
        let mut batch: Vec<Column> = t.columns.iter().map(|c| Column::new(c.1)).collect();
        let (sql, mut n, mut copied) = (insert_sql(t), 0usize, 0u64);
        loop {
            let row = rows.next()?;
            if let Some(r) = row {
                for (i, (col, c)) in batch.iter_mut().zip(t.columns).enumerate() {
                    col.push(c.1, r, i)?;
                }
                n += 1;
            }
            if n > 0 && (n == BATCH || row.is_none()) {
                let params: Vec<&(dyn ToSql + Sync)> = batch.iter().map(Column::param).collect();
                dst.execute(&sql, &params).await?;
                copied += n as u64;
                progress(t.name, copied);
                batch.iter_mut().for_each(Column::clear);
                n = 0;
            }
            if row.is_none() {
                break;
            }
        }
        if t.identity {
            dst.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{0}', 'id'),
                        GREATEST((SELECT max(id) FROM {0}), 1))",
                    t.name
                ),
                &[],
            )
            .await?;
        }
    }
    // Idempotency keys come from the messages themselves.
    dst.execute(
        "INSERT INTO message_ids (sender_id, client_msg_id, conversation_id, seq, created_at_ms)
         SELECT sender_id, client_msg_id, conversation_id, seq, created_at_ms FROM messages
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await?;
    let report = verify(&src, &dst).await;
    drop(dst);
    let _ = conn_task.await;
    report
}

async fn verify(
    src: &rusqlite::Connection,
    dst: &tokio_postgres::Client,
) -> Result<Report, CopyError> {
    let mut report = Report::default();
    for t in TABLES {
        let sql = format!("SELECT count(*) FROM {}", t.name);
        let here: i64 = src.query_row(&sql, [], |r| r.get(0))?;
        let there: i64 = dst.query_one(&sql, &[]).await?.get(0);
        if here != there {
            return Err(CopyError::Mismatch(format!(
                "{}: {here} rows in SQLite, {there} in PostgreSQL",
                t.name
            )));
        }
        report.tables.push((t.name, there));
    }
    // Each conversation's last seq, as its row says and as its messages do.
    let sql = "SELECT c.id, c.last_seq, COALESCE((SELECT max(m.seq) FROM messages m
               WHERE m.conversation_id = c.id), 0) FROM conversations c";
    let mut here: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut stmt = src.prepare(sql)?;
    for r in stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))? {
        let (id, seqs) = r?;
        here.insert(id, seqs);
    }
    let there: BTreeMap<i64, (i64, i64)> = dst
        .query(sql, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    if here != there {
        let differ = here
            .iter()
            .find(|(id, s)| there.get(id) != Some(s))
            .map(|(id, _)| *id);
        return Err(CopyError::Mismatch(format!(
            "conversation {differ:?} has other seqs in PostgreSQL"
        )));
    }
    report.conversations = there.len();
    Ok(report)
}
