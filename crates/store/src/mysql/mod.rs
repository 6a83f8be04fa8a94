//! The MariaDB/MySQL backend (MariaDB 10.6+ and MySQL 8: one SQL for both;
//! `JSON_TABLE` reads list parameters, no `UPDATE ... RETURNING`).
//!
//! `engine/` connects, migrates and renders the shared SQL for these
//! servers; `store.rs` is the [`Store`](crate::Store) on them (`admin.rs`
//! its `AdminStore`), the shared topics on a pool; `writer.rs` the node's
//! writer task (appends group-committed through the shared round, whose
//! statements here are `messages.rs`; changes as jobs); `sync.rs` sync
//! pages and cursors. The conformance suite runs every case on it.

mod admin;
pub(crate) mod engine;
pub(crate) mod messages;
mod store;
mod sync;
#[cfg(test)]
mod tests;
mod writer;

pub use engine::connect::{Flavor, MyOptions};
pub use engine::schema::latest as latest_schema;
pub use store::{MyStore, MyStoreOptions};

use crate::Result;

/// Connects to the database `opts.url` names, brings its schema up to date
/// (refusing one a newer natter made) and says whether the server keeps
/// what it acknowledges (`Some(why not)`), and which server it is.
pub async fn prepare(opts: &MyOptions) -> Result<(Flavor, Option<String>)> {
    let pool = mysql_async::Pool::new(opts.opts(None)?);
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
