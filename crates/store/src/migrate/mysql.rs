//! MariaDB/MySQL as either side of a copy, on one connection with the
//! session every natter connection starts with (strict mode, utf8mb4
//! bytewise) but no statement time limit: a table is read in one
//! statement. As a source: one `REPEATABLE READ` transaction `WITH
//! CONSISTENT SNAPSHOT`, each table's rows streamed. As a target: the
//! schema made, each batch written as multi-row inserts small enough for
//! any `max_allowed_packet` (at most 1,000 rows and about 1 MiB each), a
//! row already there left as it is (`ON DUPLICATE KEY UPDATE` of the
//! first column to itself); afterwards each `AUTO_INCREMENT` counter is
//! set past the largest copied id.

use super::tables::{Kind, Table, TABLES};
use super::{ids_text, parse_ids, Batch, CopyError, LastSeqs, Value, BATCH, LAST_SEQS};
use crate::mysql::MyOptions;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value as MyValue};

/// Rows per insert statement.
const ROWS: usize = 1_000;
/// About how many bytes of values an insert statement carries.
const BYTES: usize = 1 << 20;

pub(super) struct My {
    conn: Conn,
}

/// `t`'s name as MySQL takes it (`groups` is a reserved word).
fn quoted(t: &Table) -> String {
    format!("`{}`", t.name)
}

impl My {
    async fn connect(url: &str) -> Result<My, CopyError> {
        let conn = Conn::new(MyOptions::new(url).opts(None)?).await?;
        Ok(My { conn })
    }

    pub(super) async fn source(url: &str) -> Result<My, CopyError> {
        let mut my = My::connect(url).await?;
        // A consistent snapshot needs REPEATABLE READ (sessions run READ
        // COMMITTED); this sets it for the next transaction only.
        my.conn
            .query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
        my.conn
            .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await?;
        Ok(my)
    }

    pub(super) async fn target(url: &str) -> Result<My, CopyError> {
        let mut my = My::connect(url).await?;
        crate::mysql::engine::schema::migrate(&mut my.conn).await?;
        Ok(my)
    }

    pub(super) async fn read(
        &mut self,
        t: &'static Table,
        sink: &mut impl AsyncFnMut(Batch) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        let sql = format!("SELECT {} FROM {}", t.names(), quoted(t));
        let mut result = self.conn.query_iter(sql).await?;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(r) = result.next().await? {
            batch.push(row(t, r)?);
            if batch.len() == BATCH {
                sink(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).await?;
            }
        }
        drop(result);
        if !batch.is_empty() {
            sink(batch).await?;
        }
        Ok(())
    }

    pub(super) async fn write(&mut self, t: &Table, batch: &Batch) -> Result<(), CopyError> {
        let mut rest = &batch[..];
        for n in chunks(batch) {
            let (chunk, after) = rest.split_at(n);
            rest = after;
            let values = chunk.iter().flatten().map(my_value).collect();
            self.conn
                .exec_drop(insert_sql(t, n), Params::Positional(values))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn finish(&mut self) -> Result<(), CopyError> {
        for t in TABLES.iter().filter(|t| t.identity) {
            let max: Option<i64> = self
                .conn
                .query_first(format!("SELECT COALESCE(MAX(id), 0) FROM {}", quoted(t)))
                .await?;
            let next = max.unwrap_or(0) + 1;
            self.conn
                .query_drop(format!("ALTER TABLE {} AUTO_INCREMENT = {next}", quoted(t)))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn count(&mut self, t: &Table) -> Result<i64, CopyError> {
        let n: Option<i64> = self
            .conn
            .query_first(format!("SELECT count(*) FROM {}", quoted(t)))
            .await?;
        Ok(n.unwrap_or(0))
    }

    pub(super) async fn last_seqs(&mut self) -> Result<LastSeqs, CopyError> {
        let rows: Vec<(i64, i64, i64)> = self.conn.query(LAST_SEQS).await?;
        Ok(rows.into_iter().map(|(c, l, m)| (c, (l, m))).collect())
    }

    pub(super) async fn close(mut self) {
        // A source's snapshot ends; a target has nothing open.
        let _ = self.conn.query_drop("COMMIT").await;
        let _ = self.conn.disconnect().await;
    }
}

/// How many rows each insert of `batch` takes, in order: at most `ROWS`,
/// and no more than about `BYTES` of values unless one row alone is more.
fn chunks(batch: &Batch) -> Vec<usize> {
    let (mut out, mut rows, mut bytes) = (Vec::new(), 0, 0);
    for r in batch {
        let size: usize = r
            .iter()
            .map(|v| match v {
                Value::Text(s) => s.len(),
                Value::Bytes(b) => b.len(),
                Value::Ids(ids) => 20 * ids.len(),
                _ => 8,
            })
            .sum();
        if rows > 0 && (rows == ROWS || bytes + size > BYTES) {
            out.push(rows);
            (rows, bytes) = (0, 0);
        }
        rows += 1;
        bytes += size;
    }
    if rows > 0 {
        out.push(rows);
    }
    out
}

/// The statement that inserts `rows` rows of `t`, leaving those there.
fn insert_sql(t: &Table, rows: usize) -> String {
    let one = format!("({})", vec!["?"; t.columns.len()].join(", "));
    let first = t.columns[0].0;
    format!(
        "INSERT INTO {} ({}) VALUES {} ON DUPLICATE KEY UPDATE {first} = {first}",
        quoted(t),
        t.names(),
        vec![one; rows].join(", ")
    )
}

/// A value as MySQL takes it: booleans as 0 and 1, mentions as text.
fn my_value(v: &Value) -> MyValue {
    match v {
        Value::Null => MyValue::NULL,
        Value::Int(n) => MyValue::Int(*n),
        Value::Bool(b) => MyValue::Int(i64::from(*b)),
        Value::Text(s) => MyValue::Bytes(s.clone().into_bytes()),
        Value::Bytes(b) => MyValue::Bytes(b.clone()),
        Value::Ids(ids) => MyValue::Bytes(ids_text(ids).into_bytes()),
    }
}

/// A row in the neutral form.
fn row(t: &Table, mut r: mysql_async::Row) -> Result<Vec<Value>, CopyError> {
    let mut out = Vec::with_capacity(t.columns.len());
    for (i, c) in t.columns.iter().enumerate() {
        let bad = |why: String| CopyError::BadValue {
            table: t.name,
            column: c.0,
            why,
        };
        let v = r
            .take::<MyValue, _>(i)
            .ok_or_else(|| bad("missing".to_owned()))?;
        let is_null = v == MyValue::NULL;
        fn get<T: mysql_async::prelude::FromValue>(v: MyValue) -> Result<T, String> {
            mysql_async::from_value_opt::<T>(v).map_err(|e| e.to_string())
        }
        out.push(match c.1 {
            Kind::OptBigInt | Kind::OptText if is_null => Value::Null,
            Kind::BigInt | Kind::SmallInt | Kind::Int | Kind::OptBigInt => {
                Value::Int(get(v).map_err(bad)?)
            }
            Kind::Text | Kind::OptText => Value::Text(get(v).map_err(bad)?),
            Kind::Bool => Value::Bool(get::<i64>(v).map_err(bad)? != 0),
            Kind::Bytes => Value::Bytes(get(v).map_err(bad)?),
            Kind::Ids => Value::Ids(parse_ids(t, i, &get::<String>(v).map_err(bad)?)?),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_stay_under_a_thousand_rows_and_about_a_mebibyte() {
        let small = vec![vec![Value::Int(1), Value::Text("hi".into())]; 2_500];
        assert_eq!(chunks(&small), vec![1_000, 1_000, 500]);
        let big = vec![vec![Value::Text("x".repeat(400 << 10))]; 5];
        assert_eq!(chunks(&big), vec![2, 2, 1]);
        let huge = vec![vec![Value::Bytes(vec![0; 3 << 20])]; 2];
        assert_eq!(chunks(&huge), vec![1, 1], "a row alone goes alone");
        assert!(chunks(&Vec::new()).is_empty());
    }

    #[test]
    fn an_insert_leaves_rows_that_are_there() {
        let blocks = TABLES.iter().find(|t| t.name == "blocks").unwrap();
        assert_eq!(
            insert_sql(blocks, 2),
            "INSERT INTO `blocks` (user_id, blocked_id) VALUES (?, ?), (?, ?) \
             ON DUPLICATE KEY UPDATE user_id = user_id"
        );
    }
}
