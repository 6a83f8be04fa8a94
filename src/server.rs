//! Wires store, service, gateway and HTTP API together and runs them until
//! the shutdown signal, then drains: stop accepting, tell clients to go
//! elsewhere, flush their queues, wait for connections, close the store.

use crate::config::{self, Config};
use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use natter_gateway::{Gateway, GatewayConfig, Registry};
use natter_service::store::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use natter_service::store::{self, DevicePolicy, Store};
use natter_service::{PasswordConfig, Service, ServiceConfig};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The sockets a server serves, bound before it starts (port 0 allowed).
pub struct Listeners {
    pub tcp: TcpListener,
    pub ws: Option<TcpListener>,
    pub http: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(listen: &config::Listen) -> anyhow::Result<Listeners> {
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

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .clone()
}

fn service_config(c: &Config) -> ServiceConfig {
    ServiceConfig {
        password: PasswordConfig {
            min_length: c.password.min_length,
            argon2_memory_kib: c.password.argon2_memory_kib,
            argon2_iterations: c.password.argon2_iterations,
            argon2_parallelism: c.password.argon2_parallelism,
            max_concurrent_hashes: c.password.max_concurrent_hashes,
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
    }
}

fn gateway_config(c: &Config) -> GatewayConfig {
    let ms = Duration::from_millis;
    GatewayConfig {
        server_name: format!("natter/{}", env!("CARGO_PKG_VERSION")),
        max_frame_bytes: c.limits.max_frame_bytes,
        max_connections: c.limits.max_connections,
        outbound_queue: c.limits.outbound_queue,
        auth_timeout: ms(c.session.auth_timeout_ms),
        heartbeat_interval: ms(c.session.heartbeat_interval_ms),
        heartbeat_timeout: ms(c.session.heartbeat_timeout_ms),
        send_rate_per_sec: c.limits.send_rate_per_sec,
        send_burst: c.limits.send_burst,
        request_rate_per_sec: c.limits.request_rate_per_sec,
        request_burst: c.limits.request_burst,
        flush_timeout: ms(c.shutdown.grace_ms.min(2_000)),
        reconnect_after: ms(c.shutdown.reconnect_after_ms),
    }
}

/// Runs a server on `listeners` until `shutdown` is cancelled, then drains
/// within `shutdown.grace_ms` and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let db = config.data_dir.join("natter.db");
    let (feed_tx, feed_rx) = store::commit_feed();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            SqliteOptions {
                path: db.clone(),
                synchronous: match config.store.synchronous {
                    config::Synchronous::Full => Synchronous::Full,
                    config::Synchronous::Normal => Synchronous::Normal,
                },
                max_batch: config.store.max_batch,
                queue_depth: config.store.queue_depth,
                readers: config.store.readers,
            },
            feed_tx,
        )
        .with_context(|| format!("cannot open the database {}", db.display()))?,
    );
    let gw_config = gateway_config(&config);
    let registry = Arc::new(Registry::new(
        gw_config.send_rate_per_sec,
        gw_config.send_burst,
    ));
    let service = Service::new(store.clone(), registry.clone(), service_config(&config));
    let dispatcher = tokio::spawn(service.clone().dispatch(feed_rx));
    let gateway = Gateway::new(service, registry, gw_config, shutdown.clone());

    tracing::info!(addr = %listeners.tcp_addr(), "listening for TCP");
    let mut accept = vec![tokio::spawn(gateway.clone().serve_tcp(listeners.tcp))];
    if let Some(ws) = listeners.ws {
        tracing::info!(addr = %ws.local_addr()?, "listening for WebSocket");
        accept.push(tokio::spawn(gateway.clone().serve_ws(ws)));
    }
    let ready = Arc::new(AtomicBool::new(true));
    let api_stop = CancellationToken::new();
    let api = listeners.http.map(|http| {
        if let Ok(addr) = http.local_addr() {
            tracing::info!(%addr, "listening for HTTP (/healthz, /readyz, /metrics)");
        }
        let state = natter_api::ApiState {
            metrics: metrics_handle(),
            ready: ready.clone(),
        };
        tokio::spawn(natter_api::serve(http, state, api_stop.clone()))
    });
    tracing::info!(data_dir = %config.data_dir.display(), "natter is up");

    shutdown.cancelled().await;
    tracing::info!("shutting down: draining connections");
    ready.store(false, Ordering::Release);
    for a in accept {
        let _ = a.await;
    }
    let grace = Duration::from_millis(config.shutdown.grace_ms);
    if !gateway.drain(grace).await {
        tracing::warn!(?grace, "connections still open after the grace period");
    }
    store.close().await;
    dispatcher.abort();
    api_stop.cancel();
    if let Some(api) = api {
        let _ = api.await;
    }
    tracing::info!("stopped");
    Ok(())
}
