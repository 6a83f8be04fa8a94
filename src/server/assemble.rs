//! Turns the configuration into the parts a server is made of: the store,
//! the service's, gateway's and cluster's settings, the overload thresholds
//! and the TLS certificate.

use super::Listeners;
use crate::config::{self, Config};
use anyhow::Context;
use natter_cluster::{ClusterConfig, Strategy};
use natter_gateway::GatewayConfig;
use natter_runtime::load::{self, Thresholds};
use natter_runtime::tls::{Tls, TlsOptions};
use natter_service::{PasswordConfig, ServiceConfig, ThrottleConfig};
use natter_store::model::DevicePolicy;
use natter_store::postgres::{Partitioning, PgOptions, PgStore};
use natter_store::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use natter_store::{self as store, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The service's settings, from the sections that hold them.
pub(super) fn service_config(c: &Config) -> ServiceConfig {
    let ms = Duration::from_millis;
    let t = &c.throttle;
    ServiceConfig {
        password: PasswordConfig {
            min_length: c.password.min_length,
            argon2_memory_kib: c.password.argon2_memory_kib,
            argon2_iterations: c.password.argon2_iterations,
            argon2_parallelism: c.password.argon2_parallelism,
            max_concurrent_hashes: c.password.max_concurrent_hashes,
            max_queued_hashes: c.password.max_queued_hashes,
        },
        token_ttl_secs: c.session.token_ttl_secs,
        device_policy: match c.session.device_policy {
            config::DevicePolicy::ReplaceOldest => DevicePolicy::ReplaceOldest,
            config::DevicePolicy::Reject => DevicePolicy::Reject,
        },
        max_sessions_per_user: c.session.max_devices,
        max_message_bytes: c.limits.max_message_bytes,
        max_sync_page: c.limits.max_sync_page,
        max_history_page: c.limits.max_history_page,
        max_page_bytes: c.limits.max_frame_bytes / 2,
        friends_only_dm: c.social.direct_messages == config::DirectMessages::Friends,
        max_group_members: c.social.max_group_members,
        room_history: c.social.room_history,
        recall_window_secs: c.social.recall_window_secs,
        typing_max_members: c.social.typing_max_members,
        max_blocked: c.social.max_blocked,
        throttle: ThrottleConfig {
            login_rate_per_address: t.login_rate_per_address,
            login_burst_per_address: t.login_burst_per_address,
            failed_login_rate_per_address: t.failed_login_rate_per_address,
            failed_login_burst_per_address: t.failed_login_burst_per_address,
            failed_login_free_per_user: t.failed_login_free_per_user,
            failed_login_backoff: ms(t.failed_login_backoff_ms),
            failed_login_backoff_max: ms(t.failed_login_backoff_max_ms),
            failed_login_window: Duration::from_secs(t.failed_login_window_secs),
            register_rate_per_address: t.register_rate_per_address,
            register_burst_per_address: t.register_burst_per_address,
            typing_interval: ms(t.typing_interval_ms),
            max_tracked: 100_000,
        },
    }
}

/// How long a closing connection may take to write its last frames, and how
/// long shutdown waits for the refusals once the grace period has run out.
pub(super) const FLUSH: Duration = Duration::from_secs(2);

pub(super) fn gateway_config(c: &Config, max_connections: usize) -> GatewayConfig {
    let ms = Duration::from_millis;
    GatewayConfig {
        server_name: format!("natter/{}", env!("CARGO_PKG_VERSION")),
        max_frame_bytes: c.limits.max_frame_bytes,
        max_preauth_frame_bytes: c.limits.max_preauth_frame_bytes,
        max_preauth_bytes: 8 * c.limits.max_preauth_frame_bytes,
        max_connections,
        max_unauthenticated_per_address: c.limits.max_unauthenticated_per_address,
        max_unauthenticated_shedding: c.overload.max_unauthenticated,
        outbound_queue: c.limits.outbound_queue,
        outbound_queue_bytes: c.limits.outbound_queue_bytes,
        auth_timeout: ms(c.session.auth_timeout_ms),
        heartbeat_interval: ms(c.session.heartbeat_interval_ms),
        heartbeat_timeout: ms(c.session.heartbeat_timeout_ms),
        send_rate_per_sec: c.limits.send_rate_per_sec,
        send_burst: c.limits.send_burst,
        request_rate_per_sec: c.limits.request_rate_per_sec,
        request_burst: c.limits.request_burst,
        flush_timeout: FLUSH,
        reconnect_after: ms(c.shutdown.reconnect_after_ms),
    }
}

/// The load monitor's stages, from `[overload]`.
pub(super) fn thresholds(c: &config::Overload) -> Thresholds {
    let budget = match c.memory_budget_mb {
        0 => load::memory_available().map_or(u64::MAX / 4, |m| m / 4 * 3),
        mb => mb << 20,
    };
    Thresholds {
        memory_budget_bytes: budget,
        shed_memory: c.shed_memory_pct as f64 / 100.0,
        essential_memory: c.essential_memory_pct as f64 / 100.0,
        shed_lag: Duration::from_millis(c.shed_lag_ms),
        essential_lag: Duration::from_millis(c.essential_lag_ms),
        shed_queue: c.shed_queue_pct as f64 / 100.0,
        essential_queue: c.essential_queue_pct as f64 / 100.0,
        calm: Duration::from_millis(c.calm_ms),
        interval: Duration::from_millis(c.interval_ms),
    }
}

/// The addresses the listeners are bound to.
pub(super) struct Addrs {
    pub(super) tcp: String,
    pub(super) ws: String,
    pub(super) http: String,
}

impl Addrs {
    pub(super) fn of(l: &Listeners) -> Addrs {
        let s = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        Addrs {
            tcp: l.tcp_addr().to_string(),
            ws: s(l.ws_addr()),
            http: s(l.http_addr()),
        }
    }
}

pub(super) fn or(configured: &str, bound: &str) -> String {
    if configured.is_empty() {
        bound.to_owned()
    } else {
        configured.to_owned()
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
    let c = &config.cluster;
    let bound = Addrs::of(listeners);
    let ms = Duration::from_millis;
    Ok(ClusterConfig {
        redis_url: c.redis_url.clone(),
        name: c.name.clone(),
        node_id: node_id(config)?,
        advertise_tcp: or(&c.advertise_tcp, &bound.tcp),
        advertise_ws: or(&c.advertise_ws, &bound.ws),
        advertise_http: or(&c.advertise_http, &bound.http),
        report_interval: ms(c.report_interval_ms),
        presence_ttl: ms(c.presence_ttl_ms),
        strategy: match c.assign {
            config::AssignStrategy::LeastLoaded => Strategy::LeastLoaded,
            config::AssignStrategy::RoundRobin => Strategy::RoundRobin,
            config::AssignStrategy::Sticky => Strategy::Sticky,
        },
        bus_queue: c.bus_queue,
        max_connections,
        rebalance_min_excess: c.rebalance_min_excess,
        rebalance_per_sec: c.rebalance_per_sec,
        reconnect_after: ms(config.shutdown.reconnect_after_ms),
    })
}

/// The message table's layout on PostgreSQL, as configured.
pub fn partitioning(c: &config::StoreConfig) -> Partitioning {
    match c.partition {
        config::Partition::None => Partitioning::None,
        config::Partition::Hash => Partitioning::Hash {
            partitions: c.partitions,
        },
        config::Partition::Monthly => Partitioning::Monthly {
            retention_days: c.retention_days,
        },
    }
}

/// Opens the configured backend; only here does the binary know which.
pub(super) async fn open_store(
    config: &Config,
    feed: store::CommitFeedSender,
) -> anyhow::Result<Arc<dyn Store>> {
    let c = &config.store;
    Ok(match c.backend {
        config::Backend::Sqlite => {
            let db = config.data_dir.join("natter.db");
            Arc::new(
                SqliteStore::open(
                    SqliteOptions {
                        path: db.clone(),
                        synchronous: match c.synchronous {
                            config::Synchronous::Full => Synchronous::Full,
                            config::Synchronous::Normal => Synchronous::Normal,
                        },
                        max_batch: c.max_batch,
                        queue_depth: c.queue_depth,
                        readers: c.readers,
                    },
                    feed,
                )
                .with_context(|| format!("cannot open the database {}", db.display()))?,
            )
        }
        config::Backend::Postgres => {
            let ms = Duration::from_millis;
            let opts = PgOptions {
                url: c.url.clone(),
                pool_size: c.pool_size,
                connect_timeout: ms(c.connect_timeout_ms),
                statement_timeout: ms(c.statement_timeout_ms),
                pool_wait: ms(c.pool_wait_ms),
                max_batch: c.max_batch,
                queue_depth: c.queue_depth,
                breaker: store::BreakerOptions {
                    failures: c.breaker_failures,
                    open_for: ms(c.breaker_open_ms),
                },
                partitioning: partitioning(c),
            };
            Arc::new(
                PgStore::open(opts, feed)
                    .await
                    .context("cannot open the PostgreSQL store (store.url)")?,
            )
        }
    })
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
    let tls = Tls::new(TlsOptions {
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
        session_cache: config.tls.session_cache,
    })
    .map_err(|e| anyhow::anyhow!("invalid TLS configuration: {e}"))?;
    background.spawn(tls.clone().watch(TLS_POLL, stop.clone()));
    Ok(Some(tls))
}

/// How often the certificate files are checked for a change.
const TLS_POLL: Duration = Duration::from_secs(2);
