//! The SQL the backends share, written once, and the topics that run it.
//!
//! A topic here (`accounts.rs`, `friends.rs`, ...) loads the facts a rule
//! needs, asks the rule (`natter_domain::rules`) and writes the plan it
//! returns, through [`Db`]: a backend's connection or transaction, which
//! takes statements in one dialect (below) and gives rows back as
//! [`Row`]s. A backend provides a [`Db`] and nothing else for these
//! topics; what stays in a backend is its engine and its hot paths (the
//! message write path, sync and history), whose statements are tuned to
//! it.
//!
//! # The dialect
//!
//! PostgreSQL's, restricted to what every backend can render:
//! - parameters are `$1`, `$2`, ...; `= ANY($n)` takes a list ([`Arg::Ints`]
//!   or [`Arg::Texts`]);
//! - `COLLATE "C"` compares bytewise, and `COLLATE "C" ILIKE` matches
//!   case-insensitively for ASCII letters only; `FOR UPDATE` locks rows where the
//!   database has more than one writer (and means nothing where it has one);
//! - `greatest(a, b)` is the larger of two values;
//! - `(SELECT count(*) FROM (SELECT 1 FROM ... LIMIT $n) AS y)` counts at
//!   most `n` rows (a backend whose derived tables cannot name an outer
//!   column counts them all and answers the least);
//! - booleans are `true`/`false` and plain boolean columns (`NOT revoked`);
//!   `ON CONFLICT ... DO NOTHING` and `ON CONFLICT (...) DO UPDATE SET`;
//!   `RETURNING id` after an `INSERT` of one row only (MySQL makes it of
//!   the id the insert made), never after `UPDATE` or `DELETE`: a topic
//!   selects the rows `FOR UPDATE`, then changes them by id.
//!
//! Statements are `&'static str` (built with `concat!`), so a backend can
//! render each once and keep it.
//!
//! This module imports no backend.

pub(crate) mod accounts;
pub(crate) mod admin;
pub(crate) mod changes;
pub(crate) mod codes;
pub(crate) mod friends;
pub(crate) mod groups;
pub(crate) mod lists;
pub(crate) mod messages;
pub(crate) mod round;

use crate::{BadValue, Result, StoreError};

/// A statement's parameter.
#[derive(Clone, Debug)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Bool(bool),
    Text(&'a str),
    Bytes(&'a [u8]),
    /// A list for `= ANY($n)`.
    Ints(Vec<i64>),
    /// A list for `= ANY($n)`.
    Texts(Vec<&'a str>),
    /// SQL NULL: an absent value (`COALESCE($n, column)` keeps the column).
    Null,
}

impl<'a, T: Into<Arg<'a>>> From<Option<T>> for Arg<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

/// An id, seq or count as a parameter. Nothing stored is above
/// `i64::MAX`, so a larger one is clamped: no row has it, and nothing comes
/// after it.
pub(crate) fn key(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<u64> for Arg<'_> {
    fn from(v: u64) -> Self {
        Arg::Int(key(v))
    }
}

impl From<usize> for Arg<'_> {
    fn from(v: usize) -> Self {
        Arg::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Bytes(v)
    }
}

impl<'a> From<&'a [u64]> for Arg<'a> {
    fn from(v: &'a [u64]) -> Self {
        Arg::Ints(v.iter().map(|&v| key(v)).collect())
    }
}

/// A statement's parameters: `args![a, b]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$($crate::sql::Arg::from($a)),*] };
}
pub(crate) use args;

/// A column's value, as every backend can give it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Ints(Vec<i64>),
}

/// One row a statement returned.
#[derive(Clone, Debug, Default)]
pub(crate) struct Row(pub(crate) Vec<Value>);

/// A column that is not what the statement promised: a bug or a corrupt
/// row, never a value read as another.
#[derive(Debug, thiserror::Error)]
#[error("column {column} holds {found}, not {wanted}")]
pub(crate) struct WrongType {
    column: usize,
    found: &'static str,
    wanted: &'static str,
}

impl Value {
    fn name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Ints(_) => "a list of integers",
        }
    }
}

/// A Rust value a column can be read as.
pub(crate) trait FromValue: Sized {
    const WANTED: &'static str;
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    const WANTED: &'static str = "an integer";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// Ids and seqs: the store writes them from u64s.
impl FromValue for u64 {
    const WANTED: &'static str = "an id";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i as u64),
            _ => None,
        }
    }
}

impl FromValue for bool {
    const WANTED: &'static str = "a boolean";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}

impl FromValue for String {
    const WANTED: &'static str = "text";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    const WANTED: &'static str = "bytes";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }
}

/// A list of ids: an array where the database has them, and where it has
/// not, text with the ids separated by spaces (`""` is the empty list).
impl FromValue for Vec<u64> {
    const WANTED: &'static str = "a list of ids";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Ints(v) => Some(v.iter().map(|&i| i as u64).collect()),
            Value::Text(s) => s
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().ok())
                .collect(),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    const WANTED: &'static str = T::WANTED;
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl Row {
    /// Column `i` as a `T`.
    pub(crate) fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let v = self.0.get(i).unwrap_or(&Value::Null);
        T::from_value(v).ok_or_else(|| {
            StoreError::backend(
                "a corrupt row",
                WrongType {
                    column: i,
                    found: v.name(),
                    wanted: T::WANTED,
                },
            )
        })
    }

    /// An enum column: a number no variant has is a corrupt row, never
    /// another variant.
    pub(crate) fn stored<T: TryFrom<i64, Error = BadValue>>(&self, i: usize) -> Result<T> {
        Ok(T::try_from(self.get::<i64>(i)?)?)
    }
}

/// A backend's connection or transaction, as the topics here use it.
///
/// On a backend whose driver blocks (SQLite), every future is ready when
/// first polled; such a backend runs a topic with its own `now`.
pub(crate) trait Db {
    /// The rows the statement returns.
    async fn rows(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<Row>>;

    /// Runs the statement; the number of rows it changed.
    async fn exec(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64>;

    /// Locks the users' rows, in id order, for the rest of the transaction,
    /// where more than one writer could interleave two social writes into a
    /// state one writer could not produce (a no-op with one writer).
    async fn lock_users(&self, users: &[u64]) -> Result<()>;

    /// The messages at these `(conversation, seq)` pairs, as rows of
    /// `messages::message_columns`, in no order (a pair with no message is
    /// left out): one statement for any number of pairs, whose form is the
    /// backend's own.
    async fn messages_at(&self, at: &[(u64, u64)]) -> Result<Vec<Row>>;

    /// The first row, if any.
    async fn opt(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<Option<Row>> {
        Ok(self.rows(sql, args).await?.into_iter().next())
    }

    /// The one row the statement always returns.
    async fn one(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<Row> {
        self.opt(sql, args)
            .await?
            .ok_or_else(|| StoreError::bug("a statement that returns a row returned none"))
    }

    /// Whether the statement returns a row.
    async fn exists(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<bool> {
        Ok(self.opt(sql, args).await?.is_some())
    }
}

/// Reads every row with `f`.
pub(crate) fn each<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// Text the database cannot hold (PostgreSQL's text has no NUL) and no
/// stored name has: an argument with one matches nothing.
pub(crate) fn has_nul(s: &str) -> bool {
    s.contains('\0')
}
