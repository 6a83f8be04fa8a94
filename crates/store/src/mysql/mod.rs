//! The MariaDB/MySQL backend (MariaDB 10.6+ and MySQL 8: one SQL for both;
//! `JSON_TABLE` reads list parameters, no `UPDATE ... RETURNING`).
//!
//! Built in steps: the engine is here (connections, the schema, the
//! shared topics' SQL rendered for these servers), tested against a real
//! server; the `Store` on it, with its group-committing writer, comes next.

pub(crate) mod engine;
pub(crate) mod messages;
#[cfg(test)]
mod tests;

pub use engine::connect::{Flavor, MyOptions};
pub use engine::schema::latest as latest_schema;

use crate::Result;

/// Connects to the database `opts.url` names, brings its schema up to date
/// (refusing one a newer natter made) and says whether the server keeps
/// what it acknowledges (`Some(why not)`), and which server it is.
pub async fn prepare(opts: &MyOptions) -> Result<(Flavor, Option<String>)> {
    let pool = mysql_async::Pool::new(opts.opts()?);
    let out = async {
        let mut conn = tokio::time::timeout(opts.connect_timeout, pool.get_conn())
            .await
            .map_err(|_| crate::StoreError::Fault {
                fault: crate::Fault::Down,
                source: std::sync::Arc::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no connection to the MySQL server in time",
                )),
            })??;
        let flavor = engine::connect::start_session(&mut conn, opts.statement_timeout).await?;
        engine::schema::migrate(&mut conn).await?;
        let durable = engine::connect::not_durable(&mut conn).await?;
        Ok((flavor, durable))
    }
    .await;
    let _ = pool.disconnect().await;
    out
}
