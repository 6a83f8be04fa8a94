//! The shared topics' SQL (`crate::sql`) on MariaDB and MySQL 8: each
//! statement rendered from the shared dialect into the SQL both servers
//! take, its parameters bound in the order its `?`s ask for them, and
//! rows read as values.
//!
//! The rendering, rule by rule:
//! - `$n` is a `?` (a parameter used twice is bound twice);
//! - `= ANY($n)` reads a JSON array with `JSON_TABLE`, typed by its list;
//! - `COLLATE "C"` is `utf8mb4_bin` (code point order: bytewise for
//!   UTF-8), and `x COLLATE "C" ILIKE $n` is `LOWER(x) LIKE LOWER(?)`;
//! - `INSERT ... ON CONFLICT [...] DO NOTHING` is `ON DUPLICATE KEY UPDATE`
//!   of its first column to itself (a row that is there counts as not
//!   changed), `DO UPDATE SET ...` is `ON DUPLICATE KEY UPDATE ...`;
//! - `INSERT ... RETURNING id` (one row) runs without it, and the row it
//!   returns is the id the insert made, none when a conflict skipped it.
//!   Neither server has `UPDATE ... RETURNING`; the shared SQL has none;
//! - `groups` is quoted (a reserved word in MySQL 8);
//! - a capped count `(SELECT count(*) FROM (SELECT 1 FROM ... LIMIT $n) AS
//!   y)` is `LEAST((SELECT count(*) FROM ...), ?)` (MariaDB lets no derived
//!   table name an outer column; the count is then not cut short).
//!
//! Connections run with `NO_BACKSLASH_ESCAPES` (a backslash in a literal
//! is itself, as in standard SQL) and strict mode (a value that does not
//! fit is an error, never cut short).

use crate::sql::messages::message_columns;
use crate::sql::{Arg, Db, Row, Value};
use crate::{Result, StoreError};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Transaction};
use tokio::sync::Mutex;

/// A connection, or a transaction on one, as the shared topics use it.
pub(crate) trait Link: Queryable + Send + Sync {
    /// The connection under it: the last statement's row count and id.
    fn conn(&self) -> &Conn;
}

impl Link for Conn {
    fn conn(&self) -> &Conn {
        self
    }
}

impl Link for Transaction<'_> {
    fn conn(&self) -> &Conn {
        self
    }
}

/// A [`Link`] as a [`Db`]: the driver's calls take the connection
/// mutably, the topics' share it, so each statement holds it in turn.
pub(crate) struct My<'c, L: Link>(Mutex<&'c mut L>);

impl<'c, L: Link> My<'c, L> {
    pub(crate) fn new(link: &'c mut L) -> Self {
        My(Mutex::new(link))
    }
}

/// A shared statement in MySQL's form.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub sql: String,
    /// For each `?`, the shared statement's argument (from 0) it binds.
    pub binds: Vec<usize>,
    /// An `INSERT ... RETURNING id`: its row is the id made.
    pub returns_id: bool,
}

/// Whether `c` may be part of an identifier.
fn ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// `sql` with `ON CONFLICT ...` as MySQL's `ON DUPLICATE KEY UPDATE`.
fn on_duplicate(sql: &str) -> Result<String> {
    let Some(at) = sql.find("ON CONFLICT") else {
        return Ok(sql.to_owned());
    };
    let (head, tail) = sql.split_at(at);
    let mut tail = tail["ON CONFLICT".len()..].trim_start();
    if tail.starts_with('(') {
        let close = tail
            .find(')')
            .ok_or_else(|| StoreError::bug("ON CONFLICT without a closing parenthesis"))?;
        tail = tail[close + 1..].trim_start();
    }
    if let Some(rest) = tail.strip_prefix("DO NOTHING") {
        // The first column of the insert's list, set to itself.
        let first = head
            .find('(')
            .map(|open| &head[open + 1..])
            .and_then(|cols| cols.split([',', ')']).next())
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.chars().all(ident))
            .ok_or_else(|| StoreError::bug("ON CONFLICT DO NOTHING needs a column list"))?;
        Ok(format!(
            "{head}ON DUPLICATE KEY UPDATE {first} = {first}{rest}"
        ))
    } else if let Some(rest) = tail.strip_prefix("DO UPDATE SET") {
        Ok(format!("{head}ON DUPLICATE KEY UPDATE{rest}"))
    } else {
        Err(StoreError::bug(
            "ON CONFLICT neither DO NOTHING nor DO UPDATE SET",
        ))
    }
}

/// `x COLLATE "C" ILIKE $n` as `LOWER(x) LIKE LOWER($n)`.
fn ilike(sql: &str) -> String {
    const OP: &str = " COLLATE \"C\" ILIKE ";
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find(OP) {
        let before = &rest[..at];
        let start = before
            .char_indices()
            .rev()
            .find(|&(_, c)| !ident(c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        out.push_str(&before[..start]);
        out.push_str("LOWER(");
        out.push_str(&before[start..]);
        out.push_str(") LIKE LOWER(");
        let after = &rest[at + OP.len()..];
        let end = after
            .char_indices()
            .skip(1)
            .find(|&(_, c)| !c.is_ascii_digit())
            .map_or(after.len(), |(i, _)| i);
        out.push_str(&after[..end]);
        out.push(')');
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A capped count, `(SELECT count(*) FROM (SELECT 1 FROM ... LIMIT $n) AS y)`,
/// as `LEAST((SELECT count(*) FROM ...), $n)`: MariaDB lets no derived
/// table name a column of the query around it, so the count is not cut
/// short at `n` here, only its answer.
fn capped_counts(sql: &str) -> Result<String> {
    const OPEN: &str = "(SELECT count(*) FROM (SELECT 1 FROM ";
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let inner = &rest[at + OPEN.len()..];
        let close = inner
            .find(") AS y)")
            .ok_or_else(|| StoreError::bug("a capped count without `) AS y)`"))?;
        let body = &inner[..close];
        let limit = body
            .rfind(" LIMIT ")
            .ok_or_else(|| StoreError::bug("a capped count without its LIMIT"))?;
        out.push_str("LEAST((SELECT count(*) FROM ");
        out.push_str(body[..limit].trim_end());
        out.push_str("), ");
        out.push_str(body[limit + " LIMIT ".len()..].trim());
        out.push(')');
        rest = &inner[close + ") AS y)".len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `groups` (the table) quoted, wherever it is a word of its own.
fn quote_groups(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    while let Some(at) = rest.find("groups") {
        let before = rest[..at].chars().next_back();
        let after = rest[at + 6..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(|c| ident(c) || c == '`')
            || after.is_some_and(|c| ident(c) && c != '.')
        {
            out.push_str("groups");
        } else {
            out.push_str("`groups`");
        }
        rest = &rest[at + 6..];
    }
    out.push_str(rest);
    out
}

/// The shared statement `sql` with `args` in MySQL's form.
pub(crate) fn render(sql: &str, args: &[Arg<'_>]) -> Result<Rendered> {
    let mut sql = sql.trim_end().to_owned();
    let mut returns_id = false;
    if let Some(head) = sql.strip_suffix("RETURNING id") {
        if !sql.trim_start().starts_with("INSERT") {
            return Err(StoreError::bug("MySQL returns ids of inserts only"));
        }
        sql = head.trim_end().to_owned();
        returns_id = true;
    }
    if sql.contains("RETURNING") {
        return Err(StoreError::bug("MySQL has no RETURNING"));
    }
    let sql = quote_groups(&ilike(&capped_counts(&on_duplicate(&sql)?)?))
        .replace("COLLATE \"C\"", "COLLATE utf8mb4_bin");
    let mut out = String::with_capacity(sql.len() + 64);
    let mut binds = Vec::new();
    let mut rest = sql.as_str();
    while let Some(at) = rest.find(['$', '=']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if let Some(after) = rest.strip_prefix("= ANY($") {
            let n = digits(after);
            if n > 0 && after[n..].starts_with(')') {
                let i = param(&after[..n])?;
                let column = match args.get(i) {
                    Some(Arg::Ints(_)) => "BIGINT",
                    Some(Arg::Texts(_)) => "VARCHAR(1024)",
                    _ => return Err(StoreError::bug("= ANY($n) of something not a list")),
                };
                out.push_str(&format!(
                    "IN (SELECT j.v FROM JSON_TABLE(?, '$[*]' COLUMNS (v {column} PATH '$')) AS j)"
                ));
                binds.push(i);
                rest = &after[n + 1..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix('$') {
            let n = digits(after);
            if n > 0 {
                binds.push(param(&after[..n])?);
                out.push('?');
                rest = &after[n..];
                continue;
            }
        }
        out.push_str(&rest[..1]);
        rest = &rest[1..];
    }
    out.push_str(rest);
    if binds.iter().any(|&i| i >= args.len()) {
        return Err(StoreError::bug(
            "a statement names a parameter it was not given",
        ));
    }
    Ok(Rendered {
        sql: out,
        binds,
        returns_id,
    })
}

/// `$n`'s index from its digits.
fn param(digits: &str) -> Result<usize> {
    match digits.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n - 1),
        _ => Err(StoreError::bug("a parameter numbered 0")),
    }
}

/// An argument as the driver's value: a list is the JSON array
/// `JSON_TABLE` reads.
fn bind(a: &Arg<'_>) -> Result<mysql_async::Value> {
    use mysql_async::Value as V;
    let json = |s: serde_json::Result<String>| {
        s.map(|s| V::Bytes(s.into_bytes()))
            .map_err(|e| StoreError::backend("a list parameter", e))
    };
    Ok(match a {
        Arg::Int(v) => V::Int(*v),
        Arg::Bool(v) => V::Int(i64::from(*v)),
        Arg::Text(v) => V::Bytes(v.as_bytes().to_vec()),
        Arg::Bytes(v) => V::Bytes(v.to_vec()),
        Arg::Ints(v) => json(serde_json::to_string(v))?,
        Arg::Texts(v) => json(serde_json::to_string(v))?,
        Arg::Null => V::NULL,
    })
}

/// The binary character set: a BINARY, VARBINARY or BLOB column.
const BINARY: u16 = 63;

/// A column's value as the shared topics read it: text is UTF-8 unless the
/// column is binary; a DECIMAL (a SUM) is read as the integer it holds.
fn value(v: mysql_async::Value, column: &mysql_async::Column) -> Result<Value> {
    use mysql_async::Value as V;
    Ok(match v {
        V::NULL => Value::Null,
        V::Int(i) => Value::Int(i),
        V::UInt(u) => Value::Int(i64::try_from(u).map_err(|e| StoreError::backend("an id", e))?),
        V::Bytes(b) if column.column_type() == ColumnType::MYSQL_TYPE_NEWDECIMAL => Value::Int(
            std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.split('.').next())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StoreError::bug("a DECIMAL that is not an integer"))?,
        ),
        V::Bytes(b) if column.character_set() == BINARY => Value::Bytes(b),
        V::Bytes(b) => {
            Value::Text(String::from_utf8(b).map_err(|e| StoreError::backend("a corrupt row", e))?)
        }
        _ => {
            return Err(StoreError::bug(
                "a column of a type the shared topics do not read",
            ))
        }
    })
}

impl<L: Link> My<'_, L> {
    /// Runs a rendered statement: its rows, and the rows it changed and
    /// the id it made.
    async fn run(&self, sql: &str, args: &[Arg<'_>]) -> Result<(Vec<Row>, u64, Option<u64>)> {
        let r = render(sql, args)?;
        let params: Vec<mysql_async::Value> = r
            .binds
            .iter()
            .map(|&i| bind(&args[i]))
            .collect::<Result<_>>()?;
        let params = if params.is_empty() {
            mysql_async::Params::Empty
        } else {
            mysql_async::Params::Positional(params)
        };
        let mut link = self.0.lock().await;
        let found: Vec<mysql_async::Row> = link.exec(r.sql.as_str(), params).await?;
        let (changed, made) = (link.conn().affected_rows(), link.conn().last_insert_id());
        drop(link);
        let mut rows = Vec::with_capacity(found.len());
        for row in found {
            let columns = row.columns();
            let mut out = Vec::with_capacity(columns.len());
            for (i, v) in row.unwrap().into_iter().enumerate() {
                out.push(value(v, &columns[i])?);
            }
            rows.push(Row(out));
        }
        if r.returns_id {
            rows = match made {
                Some(id) if changed > 0 => vec![Row(vec![Value::Int(
                    i64::try_from(id).map_err(|e| StoreError::backend("an id", e))?,
                )])],
                _ => Vec::new(),
            };
        }
        Ok((rows, changed, made))
    }
}

impl<L: Link> Db for My<'_, L> {
    async fn rows(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        Ok(self.run(sql, args).await?.0)
    }

    async fn exec(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64> {
        Ok(self.run(sql, args).await?.1)
    }

    async fn lock_users(&self, users: &[u64]) -> Result<()> {
        self.run(
            "SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[users.into()],
        )
        .await?;
        Ok(())
    }

    async fn messages_at(&self, at: &[(u64, u64)]) -> Result<Vec<Row>> {
        if at.is_empty() {
            return Ok(Vec::new());
        }
        let pairs = serde_json::to_string(at).map_err(|e| StoreError::backend("pairs", e))?;
        Ok(self
            .run(
                concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM JSON_TABLE($1, '$[*]' COLUMNS (cid BIGINT PATH '$[0]', seq BIGINT PATH '$[1]')) AS d
                     JOIN messages m ON m.conversation_id = d.cid AND m.seq = d.seq"
                ),
                &[Arg::Text(&pairs)],
            )
            .await?
            .0)
    }
}

/// A message's mentions as stored here: ids separated by spaces.
pub(crate) fn mention_list(ids: &[u64]) -> String {
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    list.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(sql: &str, args: &[Arg<'_>]) -> Rendered {
        render(sql, args).unwrap()
    }

    #[test]
    fn the_shared_dialect_renders_as_mysql() {
        let got = r(
            "SELECT id FROM users WHERE id = ANY($1) OR username = ANY($2) AND x = $1 FOR UPDATE",
            &[Arg::Ints(vec![1]), Arg::Texts(vec!["a"])],
        );
        assert_eq!(
            got.sql,
            "SELECT id FROM users WHERE id IN (SELECT j.v FROM JSON_TABLE(?, '$[*]' COLUMNS (v BIGINT PATH '$')) AS j) \
             OR username IN (SELECT j.v FROM JSON_TABLE(?, '$[*]' COLUMNS (v VARCHAR(1024) PATH '$')) AS j) AND x = ? FOR UPDATE"
        );
        assert_eq!(got.binds, vec![0, 1, 0]);
        let got = r(
            "INSERT INTO friends (user_id, friend_id, since_ms) VALUES ($1, $2, $3), ($2, $1, $3)
             ON CONFLICT DO NOTHING",
            &[1i64.into(), 2i64.into(), 3i64.into()],
        );
        assert_eq!(
            got.sql,
            "INSERT INTO friends (user_id, friend_id, since_ms) VALUES (?, ?, ?), (?, ?, ?)
             ON DUPLICATE KEY UPDATE user_id = user_id"
        );
        assert_eq!(got.binds, vec![0, 1, 2, 1, 0, 2]);
        let got = r(
            "INSERT INTO users (username, password_hash, created_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (username) DO NOTHING RETURNING id",
            &["a".into(), "b".into(), 1i64.into()],
        );
        assert!(got.returns_id);
        assert!(
            got.sql
                .ends_with("ON DUPLICATE KEY UPDATE username = username"),
            "{}",
            got.sql
        );
        let got = r(
            "INSERT INTO join_requests (conversation_id, user_id, message, created_at_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (conversation_id, user_id) DO UPDATE SET message = $3, created_at_ms = $4",
            &[1i64.into(), 2i64.into(), "m".into(), 4i64.into()],
        );
        assert!(
            got.sql
                .ends_with("ON DUPLICATE KEY UPDATE message = ?, created_at_ms = ?"),
            "{}",
            got.sql
        );
        assert_eq!(got.binds, vec![0, 1, 2, 3, 2, 3]);
        let got = r(
            "SELECT g.name FROM groups g JOIN members m ON m.conversation_id = g.conversation_id
             WHERE g.name COLLATE \"C\" ILIKE $1 ESCAPE '\\' ORDER BY g.name COLLATE \"C\"",
            &["a%".into()],
        );
        assert_eq!(
            got.sql,
            "SELECT g.name FROM `groups` g JOIN members m ON m.conversation_id = g.conversation_id
             WHERE LOWER(g.name) LIKE LOWER(?) ESCAPE '\\' ORDER BY g.name COLLATE utf8mb4_bin"
        );
        let got = r(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM messages x
                WHERE x.conversation_id = c.id LIMIT $1) AS y), c.id FROM conversations c",
            &[5i64.into()],
        );
        assert_eq!(
            got.sql,
            "SELECT LEAST((SELECT count(*) FROM messages x
                WHERE x.conversation_id = c.id), ?), c.id FROM conversations c"
        );
        assert!(render("UPDATE users SET a = 1 RETURNING id", &[]).is_err());
        assert!(render("SELECT $2", &[1i64.into()]).is_err());
    }
}
