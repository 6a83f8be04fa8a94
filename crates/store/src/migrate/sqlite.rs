//! A SQLite data directory's database as either side of a copy, locked
//! like a running server would lock it, so no server uses it meanwhile; its
//! schema brought up to date and its message log (left by a server that
//! did not stop cleanly) replayed first. As a source: one read transaction
//! for the whole copy. As a target: each batch in one transaction of
//! prepared `INSERT OR IGNORE`s; nothing follows (the `AUTOINCREMENT`
//! counters follow inserted ids by themselves).

use super::tables::{Kind, Table};
use super::{ids_text, parse_ids, Batch, CopyError, LastSeqs, Value, BATCH, LAST_SEQS};
use crate::sqlite::schema as sqlite_schema;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use std::path::Path;

pub(super) struct Lite {
    conn: Connection,
    /// Held until the copy is over.
    _lock: std::fs::File,
}

impl Lite {
    fn open(db: &Path) -> Result<Lite, CopyError> {
        let lock = crate::sqlite::lock_database(db)?;
        let mut conn = Connection::open(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        sqlite_schema::migrate(&mut conn)?;
        crate::sqlite::recover(&mut conn, db)?;
        Ok(Lite { conn, _lock: lock })
    }

    pub(super) fn source(db: &Path) -> Result<Lite, CopyError> {
        if !db.exists() {
            return Err(CopyError::NoDatabase(db.to_owned()));
        }
        let lite = Lite::open(db)?;
        // One read transaction: the copy is of one moment of the source.
        lite.conn.execute_batch("BEGIN")?;
        Ok(lite)
    }

    pub(super) fn target(db: &Path) -> Result<Lite, CopyError> {
        if let Some(dir) = db.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                crate::StoreError::backend("cannot make the target data directory", e)
            })?;
        }
        Lite::open(db)
    }

    pub(super) async fn read(
        &mut self,
        t: &'static Table,
        sink: &mut impl AsyncFnMut(Batch) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {} FROM {}", t.names(), t.name))?;
        let mut rows = stmt.query([])?;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(r) = rows.next()? {
            batch.push(row(t, r)?);
            if batch.len() == BATCH {
                sink(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).await?;
            }
        }
        if !batch.is_empty() {
            sink(batch).await?;
        }
        Ok(())
    }

    pub(super) fn write(&mut self, t: &Table, batch: &Batch) -> Result<(), CopyError> {
        let marks = vec!["?"; t.columns.len()].join(", ");
        let sql = format!(
            "INSERT OR IGNORE INTO {} ({}) VALUES ({marks})",
            t.name,
            t.names()
        );
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&sql)?;
            for r in batch {
                stmt.execute(rusqlite::params_from_iter(r.iter().map(sql_value)))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn count(&mut self, t: &Table) -> Result<i64, CopyError> {
        let sql = format!("SELECT count(*) FROM {}", t.name);
        Ok(self.conn.query_row(&sql, [], |r| r.get(0))?)
    }

    pub(super) fn last_seqs(&mut self) -> Result<LastSeqs, CopyError> {
        let mut stmt = self.conn.prepare(LAST_SEQS)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A row in the neutral form.
fn row(t: &Table, r: &rusqlite::Row<'_>) -> Result<Vec<Value>, CopyError> {
    let mut out = Vec::with_capacity(t.columns.len());
    for (i, c) in t.columns.iter().enumerate() {
        out.push(match c.1 {
            Kind::BigInt | Kind::SmallInt | Kind::Int => Value::Int(r.get(i)?),
            Kind::OptBigInt => r.get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int),
            Kind::Text => Value::Text(r.get(i)?),
            Kind::OptText => r
                .get::<_, Option<String>>(i)?
                .map_or(Value::Null, Value::Text),
            Kind::Bool => Value::Bool(r.get::<_, i64>(i)? != 0),
            Kind::Bytes => Value::Bytes(r.get(i)?),
            Kind::Ids => Value::Ids(parse_ids(t, i, &r.get::<_, String>(i)?)?),
        });
    }
    Ok(out)
}

/// A value as SQLite stores it: booleans as 0 and 1, mentions as text.
fn sql_value(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Int(n) => SqlValue::Integer(*n),
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Text(s) => SqlValue::Text(s.clone()),
        Value::Bytes(b) => SqlValue::Blob(b.clone()),
        Value::Ids(ids) => SqlValue::Text(ids_text(ids)),
    }
}
