//! The shared topics' SQL (`crate::sql`) on SQLite: statements rendered
//! from the shared dialect, parameters bound, rows read as values, and a
//! topic's future run to its end at once (every statement here finishes
//! before it returns, so the future is ready when first polled).

use crate::sql::messages::message_columns;
use crate::sql::{Arg, Db, Row, Value};
use crate::{Result, StoreError};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// A connection (or the writer's transaction on it) as a [`Db`].
pub(crate) struct Lite<'c>(pub(crate) &'c Connection);

/// Runs a shared topic on SQLite to its end.
pub(crate) fn now<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(StoreError::bug("a SQLite statement did not finish at once")),
    }
}

/// The shared dialect in SQLite's: `$n` is `?n`, a list parameter is a
/// JSON array read with `json_each`, bytewise order is `BINARY`, LIKE
/// is already case-insensitive for ASCII letters only, `max` of two
/// values is their `greatest`, and row
/// locks mean nothing (one writer does every write).
pub(crate) fn render(sql: &str) -> String {
    let sql = sql
        .replace("COLLATE \"C\" ILIKE", "LIKE")
        .replace("COLLATE \"C\"", "COLLATE BINARY")
        .replace(" FOR UPDATE", "")
        .replace("greatest(", "max(");
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql.as_str();
    while let Some(at) = rest.find(['$', '=']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("= ANY($") {
            let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits > 0 && after[digits..].starts_with(')') {
                out.push_str("IN (SELECT value FROM json_each(?");
                out.push_str(&after[..digits]);
                out.push_str("))");
                rest = &after[digits + 1..];
                continue;
            }
        }
        let next = rest.chars().next().unwrap_or_default();
        out.push(
            if next == '$' && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
                '?'
            } else {
                next
            },
        );
        rest = &rest[next.len_utf8()..];
    }
    out.push_str(rest);
    out
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let json = |v: serde_json::Result<String>| {
            v.map(|s| ToSqlOutput::Owned(rusqlite::types::Value::Text(s)))
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
        };
        match self {
            Arg::Int(v) => Ok(ToSqlOutput::from(*v)),
            Arg::Bool(v) => Ok(ToSqlOutput::from(*v)),
            Arg::Text(v) => Ok(ToSqlOutput::from(*v)),
            Arg::Bytes(v) => Ok(ToSqlOutput::from(*v)),
            // A list is the JSON array `json_each` reads.
            Arg::Ints(v) => json(serde_json::to_string(v)),
            Arg::Texts(v) => json(serde_json::to_string(v)),
            Arg::Null => Ok(ToSqlOutput::from(rusqlite::types::Null)),
        }
    }
}

fn value(v: ValueRef<'_>) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(
            String::from_utf8(t.to_vec()).map_err(|e| StoreError::backend("a corrupt row", e))?,
        ),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        ValueRef::Real(_) => return Err(StoreError::bug("a REAL column")),
    })
}

impl Lite<'_> {
    /// Rows of a statement already in SQLite's dialect.
    fn query(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        let mut st = self.0.prepare_cached(sql)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(value(r.get_ref(i)?)?);
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

impl Db for Lite<'_> {
    async fn rows(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        self.query(&render(sql), args)
    }

    async fn exec(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64> {
        let n = self
            .0
            .prepare_cached(&render(sql))?
            .execute(rusqlite::params_from_iter(args))?;
        Ok(n as u64)
    }

    async fn lock_users(&self, _users: &[u64]) -> Result<()> {
        Ok(())
    }

    async fn messages_at(&self, at: &[(u64, u64)]) -> Result<Vec<Row>> {
        if at.is_empty() {
            return Ok(Vec::new());
        }
        let pairs = serde_json::to_string(at).map_err(|e| StoreError::backend("pairs", e))?;
        self.query(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM json_each(?1) AS d CROSS JOIN messages m
                 ON m.conversation_id = d.value ->> 0 AND m.seq = d.value ->> 1"
            ),
            &[Arg::Text(&pairs)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn the_shared_dialect_renders_as_sqlite() {
        assert_eq!(
            render("SELECT id FROM users WHERE id = ANY($1) OR username = ANY($12) FOR UPDATE"),
            "SELECT id FROM users WHERE id IN (SELECT value FROM json_each(?1)) \
             OR username IN (SELECT value FROM json_each(?12))"
        );
        assert_eq!(
            render("UPDATE t SET a = $2 WHERE b COLLATE \"C\" > $10 AND c = '$x'"),
            "UPDATE t SET a = ?2 WHERE b COLLATE BINARY > ?10 AND c = '$x'"
        );
    }
}
