//! Wires store, service, gateway and HTTP API together and runs them until
//! the shutdown signal, then drains: stop accepting, answer what clients
//! already sent, tell them to go elsewhere, flush, wait for connections
//! (refusing writes still queued when the grace period ends), close the
//! store, and let fan-out finish.

use crate::config::{self, Config};
use crate::metrics as natter_metrics;
use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use natter_api::{ApiState, ClusterView, HttpLimits, ReadinessCheck};
use natter_cluster::{Cluster, ClusterConfig, NodeView, Strategy};
use natter_gateway::{Gateway, GatewayConfig, Registry};
use natter_runtime::limits::SendBuckets;
use natter_runtime::load::{self, Load, Thresholds};
use natter_runtime::tls::{Tls, TlsOptions};
use natter_service::{
    EventSink, Limiter, PasswordConfig, Presence, Service, ServiceConfig, ThrottleConfig,
};
use natter_store::model::DevicePolicy;
use natter_store::postgres::{Partitioning, PgOptions, PgStore};
use natter_store::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use natter_store::{self as store, Store};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The sockets a server serves, bound before it starts (port 0 allowed).
pub struct Listeners {
    pub tcp: TcpListener,
    pub ws: Option<TcpListener>,
    pub http: Option<TcpListener>,
    /// The same over TLS (`listen.tcp_tls`, `ws_tls`, `https`).
    pub tcp_tls: Option<TcpListener>,
    pub ws_tls: Option<TcpListener>,
    pub https: Option<TcpListener>,
}

impl Listeners {
    /// Binds every listener. The metrics recorder is installed first, so
    /// that no connection is ever accepted before it can be counted.
    pub async fn bind(listen: &config::Listen) -> anyhow::Result<Listeners> {
        metrics_handle();
        async fn bind(what: &str, addr: &str) -> anyhow::Result<Option<TcpListener>> {
            if addr.is_empty() {
                return Ok(None);
            }
            let l = listen_on(addr)
                .await
                .with_context(|| format!("cannot bind the {what} listener to {addr}"))?;
            Ok(Some(l))
        }
        Ok(Listeners {
            tcp: bind("TCP", &listen.tcp)
                .await?
                .context("listen.tcp must not be empty")?,
            ws: bind("WebSocket", &listen.ws).await?,
            http: bind("HTTP", &listen.http).await?,
            tcp_tls: bind("TCP over TLS", &listen.tcp_tls).await?,
            ws_tls: bind("WebSocket over TLS", &listen.ws_tls).await?,
            https: bind("HTTPS", &listen.https).await?,
        })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The TLS listeners' addresses: (name, address) for each one bound.
    pub fn tls_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        [
            ("tcp_tls", &self.tcp_tls),
            ("ws_tls", &self.ws_tls),
            ("https", &self.https),
        ]
        .into_iter()
        .filter_map(|(n, l)| Some((n, l.as_ref()?.local_addr().ok()?)))
        .collect()
    }
}

/// Binds with a deep accept backlog, so a reconnect storm of thousands of
/// clients is queued by the kernel instead of dropped into SYN retries.
async fn listen_on(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = std::io::Error::other("address resolved to nothing");
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if let Err(e) = socket.bind(a) {
            last = e;
            continue;
        }
        return socket.listen(8192);
    }
    Err(last)
}

/// The process-wide Prometheus recorder, installed on first use, with a
/// description of every metric natter exports.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let installed = metrics::set_global_recorder(recorder).ok().map(|_| handle);
            natter_metrics::describe();
            installed
        })
        .clone()
}

fn service_config(c: &Config) -> ServiceConfig {
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
const FLUSH: Duration = Duration::from_secs(2);

fn gateway_config(c: &Config, max_connections: usize) -> GatewayConfig {
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

fn thresholds(c: &config::Overload) -> Thresholds {
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

/// The readiness answer: not while draining or shedding load, and only when
/// the store completes a round trip in time. The store's answer is reused for
/// a second, and one check runs at a time, so polling /readyz cannot load
/// the writer.
fn readiness(
    draining: Arc<AtomicBool>,
    load: Arc<Load>,
    store: Arc<dyn Store>,
    cluster: Option<Cluster>,
) -> ReadinessCheck {
    type Checked = Option<(natter_runtime::clock::Instant, Result<(), String>)>;
    let last: Arc<tokio::sync::Mutex<Checked>> = Arc::default();
    Arc::new(move || {
        let (draining, load, store, last, cluster) = (
            draining.clone(),
            load.clone(),
            store.clone(),
            last.clone(),
            cluster.clone(),
        );
        Box::pin(async move {
            if draining.load(Ordering::Acquire) {
                return Err("draining".into());
            }
            if cluster.as_ref().is_some_and(|c| !c.connected()) {
                return Err("cluster: no subscription to the bus (Redis)".into());
            }
            if !load.accepts_new() {
                return Err(format!("shedding load (stage {})", load.stage().name()));
            }
            let mut last = last.lock().await;
            if let Some((at, answer)) = last.as_ref() {
                if at.elapsed() < Duration::from_secs(1) {
                    return answer.clone();
                }
            }
            let answer = match tokio::time::timeout(Duration::from_secs(2), store.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("storage: {e}")),
                Err(_) => Err("storage: no answer within 2 s".into()),
            };
            *last = Some((natter_runtime::clock::Instant::now(), answer.clone()));
            answer
        })
    })
}

/// The addresses the listeners are bound to.
struct Addrs {
    tcp: String,
    ws: String,
    http: String,
}

impl Addrs {
    fn of(l: &Listeners) -> Addrs {
        let s = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        Addrs {
            tcp: l.tcp_addr().to_string(),
            ws: s(l.ws_addr()),
            http: s(l.http_addr()),
        }
    }
}

fn or(configured: &str, bound: &str) -> String {
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

fn cluster_config(
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

/// A node outside a cluster, as the cluster endpoints describe it.
fn single_node(config: &Config, bound: &Addrs) -> NodeView {
    let c = &config.cluster;
    NodeView {
        node_id: "local".into(),
        tcp: or(&c.advertise_tcp, &bound.tcp),
        ws: or(&c.advertise_ws, &bound.ws),
        http: or(&c.advertise_http, &bound.http),
        max_connections: config.limits.max_connections as u64,
        state: "up".into(),
        ..NodeView::default()
    }
}

/// What `/v1/cluster/*` answers: the cluster's table, or this node alone.
struct NodeTable {
    cluster: Option<Cluster>,
    me: NodeView,
    gateway: Arc<Gateway>,
}

fn assignment(n: &NodeView) -> serde_json::Value {
    serde_json::json!({ "node_id": n.node_id, "tcp": n.tcp, "ws": n.ws, "http": n.http })
}

impl ClusterView for NodeTable {
    fn assign(&self, user: Option<&str>, avoid: &[&str]) -> Option<serde_json::Value> {
        match &self.cluster {
            // Nodes a client could not reach are passed over while another
            // is live (its view may be older than this node's table).
            Some(c) => c
                .assign(user, avoid)
                .or_else(|| c.assign(user, &[]))
                .as_ref()
                .map(assignment),
            None => Some(assignment(&self.me)),
        }
    }

    fn nodes(&self) -> serde_json::Value {
        let nodes = match &self.cluster {
            Some(c) => c.nodes(),
            None => vec![NodeView {
                connections: self.gateway.connections() as u64,
                reported_at_ms: natter_runtime::clock::now_ms(),
                ..self.me.clone()
            }],
        };
        serde_json::to_value(nodes).unwrap_or_default()
    }
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
async fn open_store(
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
fn tls(
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

/// Runs a server on `listeners` until `shutdown` is cancelled, then drains
/// within `shutdown.grace_ms` and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    natter_runtime::panics::install_hook();
    let budget = crate::descriptors::budget(&config);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let (feed_tx, feeds) =
        store::commit_feed(config.limits.fanout_workers, config.limits.fanout_queue);
    let store = open_store(&config, feed_tx).await?;
    let load = Arc::new(Load::default());
    let gw_config = gateway_config(&config, budget.chat);
    let registry = Arc::new(Registry::default());
    let background = TaskTracker::new();
    let cluster_stop = CancellationToken::new();
    let cluster = if config.cluster.redis_url.is_empty() {
        None
    } else {
        let c = cluster_config(&config, &listeners, budget.chat)?;
        Some(
            Cluster::join(c, registry.clone(), &background, cluster_stop.clone())
                .await
                .context("cannot join the cluster")?,
        )
    };
    let (events, presence): (Arc<dyn EventSink>, Arc<dyn Presence>) = match &cluster {
        Some(c) => (Arc::new(c.clone()), Arc::new(c.clone())),
        None => (registry.clone(), registry.clone()),
    };
    // Each user's send rate: shared through Redis in a cluster, else this
    // node's own buckets.
    let limiter: Arc<dyn Limiter> = match &cluster {
        Some(c) => c.limiter(gw_config.send_rate_per_sec, gw_config.send_burst),
        None => Arc::new(SendBuckets::new(
            gw_config.send_rate_per_sec,
            gw_config.send_burst,
        )),
    };
    let service = Service::new(
        store.clone(),
        events,
        presence,
        limiter,
        service_config(&config),
        load.clone(),
    );
    if let Some(c) = &cluster {
        // A dead node's users are gone from the directory: their friends
        // hear it (one user at a time, in the background, on the cluster's
        // tracker).
        let service = service.clone();
        c.on_users_gone(Arc::new(move |users| {
            Box::pin(service.clone().users_gone(users))
        }));
    }
    for feed in feeds {
        background.spawn(service.clone().dispatch(feed));
    }
    let monitor_stop = CancellationToken::new();
    let s = store.clone();
    background.spawn(load::monitor(
        load.clone(),
        thresholds(&config.overload),
        move || {
            let (queued, capacity) = s.queue();
            queued as f64 / capacity.max(1) as f64
        },
        monitor_stop.clone(),
    ));
    background.spawn(crate::memory::trimmer(
        Duration::from_secs(5),
        monitor_stop.clone(),
    ));
    let gateway = Gateway::new(service, registry, gw_config, shutdown.clone());
    if let Some(c) = &cluster {
        // GOING_AWAY sends each client to another live node.
        let c = c.clone();
        gateway.set_reconnect_target(Arc::new(move || {
            c.assign(None, &[c.node_id()]).map(|n| (n.tcp, n.ws))
        }));
    }

    let listeners_addrs = Addrs::of(&listeners);
    tracing::info!(addr = %listeners.tcp_addr(), "listening for TCP");
    let tls_stop = CancellationToken::new();
    let tls = tls(&config, &listeners, &background, &tls_stop)?;
    let acceptor = |name| tls.as_ref().map(|t| t.acceptor(name, &[]));
    let mut accept = vec![tokio::spawn(gateway.clone().serve_tcp(listeners.tcp, None))];
    if let Some(ws) = listeners.ws {
        tracing::info!(addr = %ws.local_addr()?, "listening for WebSocket");
        accept.push(tokio::spawn(gateway.clone().serve_ws(ws, None)));
    }
    if let Some(l) = listeners.tcp_tls {
        tracing::info!(addr = %l.local_addr()?, "listening for TCP over TLS");
        accept.push(tokio::spawn(
            gateway.clone().serve_tcp(l, acceptor("tcp_tls")),
        ));
    }
    if let Some(l) = listeners.ws_tls {
        tracing::info!(addr = %l.local_addr()?, "listening for WebSocket over TLS");
        accept.push(tokio::spawn(
            gateway.clone().serve_ws(l, acceptor("ws_tls")),
        ));
    }
    let draining = Arc::new(AtomicBool::new(false));
    let api_stop = CancellationToken::new();
    let state = ApiState {
        metrics: metrics_handle(),
        ready: readiness(
            draining.clone(),
            load.clone(),
            store.clone(),
            cluster.clone(),
        ),
        cluster: Arc::new(NodeTable {
            cluster: cluster.clone(),
            me: single_node(&config, &listeners_addrs),
            gateway: gateway.clone(),
        }),
    };
    // HTTP and HTTPS split the HTTP descriptors between them.
    let http_listeners =
        usize::from(listeners.http.is_some()) + usize::from(listeners.https.is_some());
    let limits = HttpLimits {
        max_connections: budget.http / http_listeners.max(1),
        header_timeout: Duration::from_millis(config.http.header_timeout_ms),
        idle_timeout: Duration::from_millis(config.http.idle_timeout_ms),
    };
    let mut api = Vec::new();
    for (http, tls) in [
        (listeners.http, None),
        (
            listeners.https,
            tls.as_ref().map(|t| t.acceptor("https", &[b"http/1.1"])),
        ),
    ] {
        let Some(http) = http else { continue };
        if let Ok(addr) = http.local_addr() {
            let what = if tls.is_some() { "HTTPS" } else { "HTTP" };
            tracing::info!(%addr, "listening for {what} (/healthz, /readyz, /metrics)");
        }
        api.push(tokio::spawn(natter_api::serve(
            http,
            natter_api::router(state.clone()),
            limits,
            tls,
            api_stop.clone(),
        )));
    }
    tracing::info!(data_dir = %config.data_dir.display(), "natter is up");

    shutdown.cancelled().await;
    tracing::info!("shutting down: draining connections");
    draining.store(true, Ordering::Release);
    if let Some(c) = &cluster {
        c.drain().await;
    }
    for a in accept {
        let _ = a.await;
    }
    let grace = Duration::from_millis(config.shutdown.grace_ms);
    if !gateway.drain(grace).await {
        // Whatever is still queued will not be written: its callers hear
        // UNAVAILABLE (not stored) and resend after reconnecting.
        tracing::warn!(?grace, "grace period over: refusing queued writes");
        store.stop_writes();
        if !gateway.drain(FLUSH).await {
            tracing::warn!("connections still open after the grace period");
        }
    }
    if let Some(c) = &cluster {
        c.leave().await;
    }
    store.close().await;
    // The store has closed its feed: fan-out finishes what it holds and ends.
    monitor_stop.cancel();
    tls_stop.cancel();
    cluster_stop.cancel();
    background.close();
    if tokio::time::timeout(Duration::from_secs(2), background.wait())
        .await
        .is_err()
    {
        tracing::warn!("fan-out did not finish within 2 s");
    }
    api_stop.cancel();
    for api in api {
        let _ = api.await;
    }
    tracing::info!("stopped");
    Ok(())
}
