//! Throwaway MariaDB/MySQL databases, so that every test gets a database
//! of its own on the one shared server. A database is named after the
//! process that made it; those of processes that are gone are dropped the
//! first time a process makes one, so an interrupted run leaves nothing
//! behind for long.

use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicU64, Ordering};

static MADE: AtomicU64 = AtomicU64::new(0);
static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// A fresh database on the server at `base` (`mysql://user@host:port/db`),
/// and a URL that names it.
pub struct Database {
    pub name: String,
    pub url: String,
    base: String,
    drop_on_drop: bool,
}

/// `base` with its path (the database) replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("mysql", base));
    let (host, query) = match rest.split_once('/') {
        Some((host, path)) => (host, path.split_once('?').map(|(_, q)| q)),
        None => (rest, None),
    };
    match query {
        Some(q) => format!("{scheme}://{host}/{name}?{q}"),
        None => format!("{scheme}://{host}/{name}"),
    }
}

async fn connect(base: &str) -> Result<mysql_async::Conn, mysql_async::Error> {
    let opts = mysql_async::Opts::from_url(base)?;
    mysql_async::Conn::new(opts).await
}

/// Drops the databases with `prefix` left by processes that no longer run.
async fn sweep(conn: &mut mysql_async::Conn, prefix: &str) {
    let Ok(names) = conn.query::<String, _>("SHOW DATABASES").await else {
        return;
    };
    for name in names {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('_').next().unwrap_or("");
        let alive = !pid.is_empty() && std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = conn
                .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                .await;
        }
    }
}

impl Database {
    /// Creates `<prefix><pid>_<n>` (utf8mb4, bytewise collation) on the
    /// server at `base`; it goes when the value does.
    pub async fn create(base: &str, prefix: &str) -> Result<Database, String> {
        let mut conn = connect(base)
            .await
            .map_err(|e| format!("cannot connect to {base}: {e}"))?;
        SWEPT.get_or_init(|| sweep(&mut conn, prefix)).await;
        let name = format!(
            "{prefix}{}_{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS `{name}`; \
             CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ))
        .await
        .map_err(|e| format!("cannot create database {name}: {e}"))?;
        let _ = conn.disconnect().await;
        Ok(Database {
            url: with_database(base, &name),
            name,
            base: base.to_owned(),
            drop_on_drop: true,
        })
    }

    /// Keeps the database after the value goes (for data that outlives
    /// one server, as a restart test's does); a later run sweeps it.
    /// Its URL.
    pub fn keep(mut self) -> String {
        self.drop_on_drop = false;
        std::mem::take(&mut self.url)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if !self.drop_on_drop {
            return;
        }
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop may run inside a runtime, which cannot be blocked on: the
        // database goes on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = connect(&base).await {
                    let _ = c
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                    let _ = c.disconnect().await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_names_the_database() {
        assert_eq!(
            super::with_database("mysql://root@127.0.0.1:3306/test", "x"),
            "mysql://root@127.0.0.1:3306/x"
        );
        assert_eq!(
            super::with_database("mysql://root@h/test?a=1", "x"),
            "mysql://root@h/x?a=1"
        );
        assert_eq!(
            super::with_database("mysql://root@h", "x"),
            "mysql://root@h/x"
        );
    }
}
