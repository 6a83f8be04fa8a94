//! PostgreSQL as either side of a copy. As a source: one `REPEATABLE READ`
//! read-only transaction, each table read through a cursor a batch at a
//! time. As a target: the schema made (with the chosen partitioning) and
//! each batch inserted in one statement, column by column as arrays
//! (`unnest`), skipping rows already there; afterwards the identity
//! sequences follow the copied ids and `message_ids` (the idempotency keys
//! the other backends keep as an index on messages) is made from messages.

use super::tables::{Kind, Table, TABLES};
use super::{Batch, CopyError, LastSeqs, Value, BATCH, LAST_SEQS};
use crate::postgres::engine::schema as pg_schema;
use crate::postgres::Partitioning;
use crate::StoreError;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

pub(super) struct Pg {
    client: Client,
    /// The connection's driver, awaited in `close` once `client` is gone
    /// (it ends with `client` on an early return).
    driver: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Pg {
    async fn connect(url: &str) -> Result<Pg, CopyError> {
        let (client, connection) = url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| StoreError::backend("the PostgreSQL URL is not valid", e))?
            .connect(NoTls)
            .await?;
        #[allow(clippy::disallowed_methods)]
        let driver = tokio::spawn(connection);
        Ok(Pg { client, driver })
    }

    pub(super) async fn source(url: &str) -> Result<Pg, CopyError> {
        let pg = Pg::connect(url).await?;
        pg.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        Ok(pg)
    }

    pub(super) async fn target(url: &str, partitioning: Partitioning) -> Result<Pg, CopyError> {
        let mut pg = Pg::connect(url).await?;
        pg_schema::migrate(&mut pg.client, partitioning).await?;
        crate::postgres::engine::partitions::maintain(
            &pg.client,
            partitioning,
            natter_runtime::clock::now_ms(),
        )
        .await?;
        Ok(pg)
    }

    pub(super) async fn read(
        &mut self,
        t: &'static Table,
        sink: &mut impl AsyncFnMut(Batch) -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        self.client
            .batch_execute(&format!(
                "DECLARE natter_copy NO SCROLL CURSOR FOR SELECT {} FROM {}",
                t.names(),
                t.name
            ))
            .await?;
        let fetch = format!("FETCH {BATCH} FROM natter_copy");
        loop {
            let rows = self.client.query(&fetch, &[]).await?;
            let last = rows.len() < BATCH;
            if !rows.is_empty() {
                let batch = rows.iter().map(|r| row(t, r)).collect::<Result<_, _>>()?;
                sink(batch).await?;
            }
            if last {
                break;
            }
        }
        self.client.batch_execute("CLOSE natter_copy").await?;
        Ok(())
    }

    pub(super) async fn write(&mut self, t: &Table, batch: &Batch) -> Result<(), CopyError> {
        let mut columns: Vec<Column> = t.columns.iter().map(|c| Column::new(c.1)).collect();
        for r in batch {
            for (i, (col, v)) in columns.iter_mut().zip(r).enumerate() {
                col.push(v).map_err(|why| CopyError::BadValue {
                    table: t.name,
                    column: t.columns[i].0,
                    why,
                })?;
            }
        }
        let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(Column::param).collect();
        self.client.execute(&insert_sql(t), &params).await?;
        Ok(())
    }

    pub(super) async fn finish(&mut self) -> Result<(), CopyError> {
        for t in TABLES.iter().filter(|t| t.identity) {
            self.client
                .execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{0}', 'id'),
                            GREATEST((SELECT max(id) FROM {0}), 1))",
                        t.name
                    ),
                    &[],
                )
                .await?;
        }
        // Idempotency keys come from the messages themselves.
        self.client
            .execute(
                "INSERT INTO message_ids
                    (sender_id, client_msg_id, conversation_id, seq, created_at_ms)
                 SELECT sender_id, client_msg_id, conversation_id, seq, created_at_ms
                 FROM messages ON CONFLICT DO NOTHING",
                &[],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn count(&mut self, t: &Table) -> Result<i64, CopyError> {
        let sql = format!("SELECT count(*) FROM {}", t.name);
        Ok(self.client.query_one(&sql, &[]).await?.get(0))
    }

    pub(super) async fn last_seqs(&mut self) -> Result<LastSeqs, CopyError> {
        let rows = self.client.query(LAST_SEQS, &[]).await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect())
    }

    pub(super) async fn close(self) {
        // A source's snapshot ends; a target has nothing open.
        let _ = self.client.batch_execute("COMMIT").await;
        drop(self.client);
        let _ = self.driver.await;
    }
}

/// A row in the neutral form.
fn row(t: &Table, r: &tokio_postgres::Row) -> Result<Vec<Value>, CopyError> {
    let mut out = Vec::with_capacity(t.columns.len());
    for (i, c) in t.columns.iter().enumerate() {
        out.push(match c.1 {
            Kind::BigInt => Value::Int(r.try_get::<_, i64>(i)?),
            Kind::SmallInt => Value::Int(r.try_get::<_, i16>(i)?.into()),
            Kind::Int => Value::Int(r.try_get::<_, i32>(i)?.into()),
            Kind::OptBigInt => r
                .try_get::<_, Option<i64>>(i)?
                .map_or(Value::Null, Value::Int),
            Kind::Text => Value::Text(r.try_get(i)?),
            Kind::OptText => r
                .try_get::<_, Option<String>>(i)?
                .map_or(Value::Null, Value::Text),
            Kind::Bool => Value::Bool(r.try_get(i)?),
            Kind::Bytes => Value::Bytes(r.try_get(i)?),
            Kind::Ids => Value::Ids(r.try_get(i)?),
        });
    }
    Ok(out)
}

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
            Kind::BigInt => Column::BigInt(Vec::new()),
            Kind::SmallInt => Column::SmallInt(Vec::new()),
            Kind::Int => Column::Int(Vec::new()),
            Kind::Text | Kind::Ids => Column::Text(Vec::new()),
            Kind::OptText => Column::OptText(Vec::new()),
            Kind::OptBigInt => Column::OptBigInt(Vec::new()),
            Kind::Bool => Column::Bool(Vec::new()),
            Kind::Bytes => Column::Bytes(Vec::new()),
        }
    }

    /// Adds `v`, or says why it does not fit the column.
    fn push(&mut self, v: &Value) -> Result<(), String> {
        let narrow = |n: i64| format!("{n} does not fit the column");
        match (self, v) {
            (Column::BigInt(c), Value::Int(n)) => c.push(*n),
            (Column::SmallInt(c), Value::Int(n)) => {
                c.push(i16::try_from(*n).map_err(|_| narrow(*n))?)
            }
            (Column::Int(c), Value::Int(n)) => c.push(i32::try_from(*n).map_err(|_| narrow(*n))?),
            (Column::OptBigInt(c), Value::Int(n)) => c.push(Some(*n)),
            (Column::OptBigInt(c), Value::Null) => c.push(None),
            (Column::Text(c), Value::Text(s)) => c.push(s.clone()),
            // An array literal, cast to bigint[] by the insert.
            (Column::Text(c), Value::Ids(ids)) => {
                let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                c.push(format!("{{{}}}", ids.join(",")));
            }
            (Column::OptText(c), Value::Text(s)) => c.push(Some(s.clone())),
            (Column::OptText(c), Value::Null) => c.push(None),
            (Column::Bool(c), Value::Bool(b)) => c.push(*b),
            (Column::Bytes(c), Value::Bytes(b)) => c.push(b.clone()),
            (_, v) => return Err(format!("{v:?} is not of the column's kind")),
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
}

fn array_type(kind: Kind) -> &'static str {
    match kind {
        Kind::BigInt | Kind::OptBigInt => "bigint[]",
        Kind::SmallInt => "smallint[]",
        Kind::Int => "integer[]",
        Kind::Text | Kind::OptText | Kind::Ids => "text[]",
        Kind::Bool => "boolean[]",
        Kind::Bytes => "bytea[]",
    }
}

/// The statement that inserts one batch of `t`, skipping rows already there.
fn insert_sql(t: &Table) -> String {
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
            Kind::Ids => format!("c{i}::bigint[]"),
            _ => format!("c{i}"),
        })
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS t({}) ON CONFLICT DO NOTHING",
        t.name,
        t.names(),
        select.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    )
}
