//! Throwaway PostgreSQL schemas, so that every test gets a database of its
//! own on the one shared server. A schema is named after the process that
//! made it; schemas of processes that are gone are dropped the first time a
//! process makes one, so an interrupted run leaves nothing behind for long.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio_postgres::NoTls;

static MADE: AtomicU64 = AtomicU64::new(0);
static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// A fresh schema on the server at `base`, and a URL whose connections
/// use it.
pub struct Schema {
    pub name: String,
    pub url: String,
    base: String,
    drop_on_drop: bool,
}

async fn connect(base: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(base, NoTls).await?;
    // A test fixture's connection driver: it ends when the client is dropped.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(connection);
    Ok(client)
}

/// Drops the schemas with `prefix` left by processes that no longer run.
async fn sweep(client: &tokio_postgres::Client, prefix: &str) {
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
            &[&format!("{prefix}%")],
        )
        .await
    else {
        return;
    };
    for r in rows {
        let name: String = r.get(0);
        // LIKE reads `_` as any character: `natter_c_%` also matches another
        // suite's `natter_cl_…`, whose live schemas must not be swept.
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('_').next().unwrap_or("");
        let alive = !pid.is_empty() && std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await;
        }
    }
}

impl Schema {
    /// Creates `<prefix><pid>_<n>` on the server at `base`. With
    /// `drop_on_drop` it goes when the value does; otherwise it lives until
    /// a later run sweeps it (for data that outlives one server, as a
    /// restart test's does).
    pub async fn create(base: &str, prefix: &str, drop_on_drop: bool) -> Result<Schema, String> {
        let client = connect(base)
            .await
            .map_err(|e| format!("cannot connect to {base}: {e}"))?;
        SWEPT.get_or_init(|| sweep(&client, prefix)).await;
        let name = format!(
            "{prefix}{}_{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await
            .map_err(|e| format!("cannot create schema {name}: {e}"))?;
        let sep = if base.contains('?') { '&' } else { '?' };
        Ok(Schema {
            url: format!("{base}{sep}options=-c%20search_path%3D{name}"),
            name,
            base: base.to_owned(),
            drop_on_drop,
        })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if !self.drop_on_drop {
            return;
        }
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop may run inside a runtime, which cannot be blocked on: the
        // schema goes on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(c) = connect(&base).await {
                    let _ = c
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}
