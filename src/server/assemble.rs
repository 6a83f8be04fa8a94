//! Turns the configuration into the parts a server is made of: the store,
//! the cluster's settings and the TLS certificate. (The gateway's and the
//! service's settings are made by their crates, from the sections.)

use super::Listeners;
use crate::config::Config;
use anyhow::Context;
use natter_cluster::{Bound, ClusterConfig};
use natter_runtime::tls::Tls;
use natter_store::postgres::PgStore;
use natter_store::sqlite::SqliteStore;
use natter_store::{self as store, Backend, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a closing connection may take to write its last frames, and how
/// long shutdown waits for the refusals once the grace period has run out.
pub(super) const FLUSH: Duration = Duration::from_secs(2);

/// The addresses the listeners are bound to.
pub(super) fn bound(l: &Listeners) -> Bound {
    let s = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let tls_addrs = l.tls_addrs();
    let tls = |name: &str| tls_addrs.iter().find(|(n, _)| *n == name).map(|(_, a)| *a);
    Bound {
        tcp: l.tcp_addr().to_string(),
        ws: s(l.ws_addr()),
        http: s(l.http_addr()),
        tcp_tls: s(tls("tcp_tls")),
        wss: s(tls("ws_tls")),
        https: s(tls("https")),
    }
}

/// This node's id: configured, or generated once and kept in the data
/// directory so a restart is the same node (with a new incarnation).
fn node_id(config: &Config) -> anyhow::Result<String> {
    if !config.cluster.node_id.is_empty() {
        return Ok(config.cluster.node_id.clone());
    }
    let path = config.data_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let id = format!("node-{:08x}", random as u32);
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

pub(super) fn cluster_config(
    config: &Config,
    listeners: &Listeners,
    max_connections: usize,
) -> anyhow::Result<ClusterConfig> {
    Ok(config.cluster.join_config(
        node_id(config)?,
        &bound(listeners),
        max_connections,
        config.shutdown.reconnect_after(),
    ))
}

/// Opens the configured backend; only here does the binary know which.
pub(super) async fn open_store(
    config: &Config,
    feed: store::CommitFeedSender,
) -> anyhow::Result<Arc<dyn Store>> {
    let c = &config.store;
    Ok(match c.backend {
        Backend::Sqlite => {
            let db = config.data_dir.join("natter.db");
            Arc::new(
                SqliteStore::open(c.sqlite_options(db.clone()), feed)
                    .with_context(|| format!("cannot open the database {}", db.display()))?,
            )
        }
        Backend::Postgres => Arc::new(
            PgStore::open(c.pg_options(), feed)
                .await
                .context("cannot open the PostgreSQL store (store.url)")?,
        ),
        Backend::Mysql => Arc::new(
            natter_store::mysql::MyStore::open(c.my_options(), feed)
                .await
                .context("cannot open the MySQL store (store.url)")?,
        ),
    })
}

/// The configured store alone, for a command that runs no server
/// (`natter admin create-admin`); SQLite's refuses while a server holds it.
pub async fn open_store_alone(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let (feed, _feeds) = store::commit_feed(1, 16);
    open_store(config, feed).await
}

/// The TLS side, when a TLS listener is bound: the certificate is loaded
/// (a bad one stops start-up, naming the key) and watched for reloads.
pub(super) fn tls(
    config: &Config,
    listeners: &Listeners,
    background: &TaskTracker,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Arc<Tls>>> {
    if listeners.tls_addrs().is_empty() {
        return Ok(None);
    }
    let tls = Tls::new(config.tls.clone())
        .map_err(|e| anyhow::anyhow!("invalid TLS configuration: {e}"))?;
    background.spawn(tls.clone().watch(TLS_POLL, stop.clone()));
    Ok(Some(tls))
}

/// How often the certificate files are checked for a change.
const TLS_POLL: Duration = Duration::from_secs(2);
