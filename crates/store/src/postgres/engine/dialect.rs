//! The shared topics' SQL (`crate::sql`) on PostgreSQL: the shared dialect
//! is PostgreSQL's own, so statements run as written; a parameter takes
//! the type the statement gives it (an integer binds as SMALLINT, INTEGER
//! or BIGINT as its column is), and rows are read by their columns' types.

use crate::sql::messages::message_columns;
use crate::sql::{key, Arg, Db, Row, Value};
use crate::{Result, StoreError};
use bytes::BytesMut;
use std::error::Error;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::GenericClient;

/// A pooled connection or a transaction as a [`Db`].
pub(crate) struct Pg<'c, C>(pub(crate) &'c C);

impl ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Arg::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql_checked(ty, out),
            Arg::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql_checked(ty, out),
            Arg::Int(v) => v.to_sql_checked(ty, out),
            Arg::Bool(v) => v.to_sql_checked(ty, out),
            Arg::Text(v) => v.to_sql_checked(ty, out),
            Arg::Bytes(v) => v.to_sql_checked(ty, out),
            Arg::Ints(v) => v.to_sql_checked(ty, out),
            Arg::Texts(v) => v.to_sql_checked(ty, out),
            Arg::Null => Ok(IsNull::Yes),
        }
    }

    /// Every type: `to_sql` checks the one it is given.
    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn value(r: &tokio_postgres::Row, i: usize) -> Result<Value> {
    let ty = r.columns()[i].type_();
    let v = match *ty {
        Type::INT2 => r
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
        Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(Value::Bool),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        }
        Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes),
        Type::INT8_ARRAY => r.try_get::<_, Option<Vec<i64>>>(i)?.map(Value::Ints),
        _ => {
            return Err(StoreError::bug(
                "a column of a type the shared topics do not read",
            ))
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

impl<C: GenericClient + Sync> Db for Pg<'_, C> {
    async fn rows(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        let found = self.0.query(sql, &params).await?;
        found
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| value(r, i))
                    .collect::<Result<_>>()
                    .map(Row)
            })
            .collect()
    }

    async fn exec(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        Ok(self.0.execute(sql, &params).await?)
    }

    async fn lock_users(&self, users: &[u64]) -> Result<()> {
        let ids: Vec<i64> = users.iter().map(|&u| key(u)).collect();
        self.0
            .query(
                "SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&ids],
            )
            .await?;
        Ok(())
    }

    async fn messages_at(&self, at: &[(u64, u64)]) -> Result<Vec<Row>> {
        if at.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, seqs): (Vec<i64>, Vec<i64>) = at.iter().map(|&(c, s)| (key(c), key(s))).unzip();
        self.rows(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM unnest($1::bigint[], $2::bigint[]) AS d(cid, seq)
                 JOIN messages m ON m.conversation_id = d.cid AND m.seq = d.seq"
            ),
            &[Arg::Ints(ids), Arg::Ints(seqs)],
        )
        .await
    }
}
