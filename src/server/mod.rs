//! Wires store, service, gateway and HTTP API together and runs them until
//! the shutdown signal, then drains (`drain.rs`: stop accepting, answer what
//! clients already sent, tell them to go elsewhere, flush, wait for
//! connections, refusing writes still queued when the grace period ends,
//! close the store, and let fan-out finish). `run` reads in that order:
//! assemble the parts, start the background work, serve, drain.

pub mod assemble;
mod descriptors;
mod drain;
pub mod listeners;
pub mod logging;
mod memory;
pub mod metrics;
mod readiness;

pub use listeners::Listeners;

use crate::config::explain::{self, KeyReport};
use crate::config::Config;
use anyhow::Context;
use assemble::{bound, cluster_config, open_store, tls, FLUSH};
use natter_api::ApiState;
use natter_cluster::Cluster;
use natter_gateway::{Gateway, GatewayConfig, Registry};
use natter_runtime::limits::SendBuckets;
use natter_runtime::load::{self, Load};
use natter_service::{EventSink, Limiter, Presence, Service, ServiceConfig};
use natter_store as store;
use readiness::{readiness, single_node, NodeTable, StoreHealth};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Runs a server on `listeners` until `shutdown` is cancelled, then drains
/// within `shutdown.grace_ms` and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_then(config, None, listeners, shutdown, |_| {}).await
}

/// [`run`], calling `ready` once everything that can fail at start-up (the
/// configuration, the store, the cluster, the TLS certificate) has
/// succeeded and just before the listeners start serving: whoever reports
/// the addresses does it there, so a start-up that fails never reports any.
/// `explained` is the configuration with the layer that set each key
/// (`config::explain`), for the admin API; without it every key is
/// reported as `given`.
pub async fn run_then(
    config: Config,
    explained: Option<Arc<Vec<KeyReport>>>,
    listeners: Listeners,
    shutdown: CancellationToken,
    ready: impl FnOnce(&Listeners),
) -> anyhow::Result<()> {
    config.validate()?;
    natter_runtime::panics::install_hook();
    let budget = descriptors::budget(&config);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let (feed_tx, feeds) =
        store::commit_feed(config.limits.fanout_workers, config.limits.fanout_queue);
    let store = open_store(&config, feed_tx).await?;
    let load = Arc::new(Load::default());
    let gw_config = GatewayConfig::new(
        &config.limits,
        &config.session,
        &config.shutdown,
        &config.overload,
        budget.chat,
        FLUSH,
    );
    let registry = Arc::new(Registry::default());
    let background = TaskTracker::new();
    // One root: the background work (cluster, load monitor, memory trimmer,
    // TLS reload) stops on one child once the store has closed, the API on
    // the other, last of all.
    let root = CancellationToken::new();
    let background_stop = root.child_token();
    let api_stop = root.child_token();
    let cluster = if !config.cluster.enabled() {
        None
    } else {
        let c = cluster_config(&config, &listeners, budget.chat)?;
        Some(
            Cluster::join(c, registry.clone(), &background, background_stop.clone())
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
        ServiceConfig::new(
            &config.password,
            &config.social,
            &config.throttle,
            &config.session,
            &config.limits,
            &config.email,
        ),
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
    // Password-reset codes go out off the request path (with [email]).
    background.spawn(
        service
            .clone()
            .mail_resets(background_stop.clone().cancelled_owned()),
    );
    let s = store.clone();
    background.spawn(load::monitor(
        load.clone(),
        config.overload.thresholds(),
        move || {
            let (queued, capacity) = s.queue();
            queued as f64 / capacity.max(1) as f64
        },
        background_stop.clone(),
    ));
    let store_health = StoreHealth::new();
    background.spawn(readiness::watch_store(
        store.clone(),
        store_health.clone(),
        background_stop.clone(),
    ));
    background.spawn(memory::trimmer(
        Duration::from_secs(5),
        background_stop.clone(),
    ));
    if let Some(handle) = metrics::handle() {
        background.spawn(metrics::upkeep(
            handle,
            Duration::from_secs(5),
            background_stop.clone(),
        ));
    }
    let files =
        natter_service::files::Files::open(config.data_dir.join("files"), config.files.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the files directory: {e}"))?;
    background.spawn(expire_uploads(files.clone(), background_stop.clone()));
    service.set_files(files);
    let gateway = Gateway::new(service.clone(), registry, gw_config, shutdown.clone());
    if let Some(c) = &cluster {
        // GOING_AWAY sends each client to another live node.
        let c = c.clone();
        gateway.set_reconnect_target(Arc::new(move || {
            c.assign(None, &[c.node_id()]).map(|n| (n.tcp, n.ws))
        }));
    }

    let admin_config = admin_config(
        explained
            .as_deref()
            .map_or_else(|| explain::given(&config), Vec::clone),
    );
    let listeners_addrs = bound(&listeners);
    tracing::info!(addr = %listeners.tcp_addr(), "listening for TCP");
    let tls = tls(&config, &listeners, &background, &background_stop)?;
    let tls_listeners = [
        ("tcp_tls", listeners.tcp_tls.is_some()),
        ("ws_tls", listeners.ws_tls.is_some()),
        ("https", listeners.https.is_some()),
    ];
    let tls_listeners: Vec<_> = tls_listeners.iter().filter(|l| l.1).map(|l| l.0).collect();
    metrics::zero(&tls_listeners);
    ready(&listeners);
    let acceptor = |name| tls.as_ref().map(|t| t.acceptor(name, &[]));
    // The accept loops end on the shutdown signal; the drain awaits their
    // handles (`Running::accept`) before it drains the connections.
    #[allow(clippy::disallowed_methods)]
    let mut accept = vec![tokio::spawn(gateway.clone().serve_tcp(listeners.tcp, None))];
    if let Some(ws) = listeners.ws {
        tracing::info!(addr = %ws.local_addr()?, "listening for WebSocket");
        #[allow(clippy::disallowed_methods)] // awaited by the drain, as above
        accept.push(tokio::spawn(gateway.clone().serve_ws(ws, None)));
    }
    if let Some(l) = listeners.tcp_tls {
        tracing::info!(addr = %l.local_addr()?, "listening for TCP over TLS");
        #[allow(clippy::disallowed_methods)] // awaited by the drain, as above
        accept.push(tokio::spawn(
            gateway.clone().serve_tcp(l, acceptor("tcp_tls")),
        ));
    }
    if let Some(l) = listeners.ws_tls {
        tracing::info!(addr = %l.local_addr()?, "listening for WebSocket over TLS");
        #[allow(clippy::disallowed_methods)] // awaited by the drain, as above
        accept.push(tokio::spawn(
            gateway.clone().serve_ws(l, acceptor("ws_tls")),
        ));
    }
    let draining = Arc::new(AtomicBool::new(false));
    let node_table: Arc<dyn natter_api::ClusterView> = Arc::new(NodeTable {
        cluster: cluster.clone(),
        me: single_node(&config, &listeners_addrs),
        gateway: gateway.clone(),
    });
    let state = ApiState {
        metrics: metrics::handle(),
        ready: readiness(
            draining.clone(),
            load.clone(),
            store.clone(),
            store_health,
            cluster.clone(),
        ),
        cluster: node_table.clone(),
        rest: Some(natter_api::RestState {
            service: service.clone(),
            cluster: node_table,
            live: Arc::new(LiveHere(gateway.clone())),
        }),
    };
    // HTTP and HTTPS split the HTTP descriptors between them.
    let http_listeners = usize::from(listeners.http.is_some())
        + usize::from(listeners.https.is_some())
        + usize::from(listeners.admin.is_some());
    let limits = config.http.limits(budget.http / http_listeners.max(1));
    let admin = natter_api::admin::AdminState {
        service: service.clone(),
        https: false,
        metrics: metrics::handle(),
        cluster: Some(state.cluster.clone()),
        logs: logging::view::admin_view(),
        sampler: Arc::default(),
        config: admin_config.clone(),
    };
    let mut api = Vec::new();
    for (http, tls) in [
        (listeners.http, None),
        (
            listeners.https,
            tls.as_ref()
                .map(|t| t.acceptor("https", &[b"h2", b"http/1.1"])),
        ),
    ] {
        let Some(http) = http else { continue };
        // The admin console rides on a loopback HTTP listener unless it has
        // its own (or none): never on one others can reach.
        let loopback = http.local_addr().is_ok_and(|a| a.ip().is_loopback());
        let admin_here = config.listen.admin.is_empty() && loopback;
        if let Ok(addr) = http.local_addr() {
            let what = if tls.is_some() { "HTTPS" } else { "HTTP" };
            tracing::info!(%addr, admin = admin_here, "listening for {what} (/healthz, /readyz, /metrics)");
        }
        let admin = admin_here.then(|| natter_api::admin::AdminState {
            https: tls.is_some(),
            ..admin.clone()
        });
        // Ends when `api_stop` fires, last in the drain, which awaits it.
        #[allow(clippy::disallowed_methods)]
        api.push(tokio::spawn(natter_api::serve(
            http,
            natter_api::router(state.clone(), admin),
            limits,
            tls,
            api_stop.clone(),
        )));
    }
    if let Some(l) = listeners.admin {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(%addr, "listening for the admin console (/admin)");
        }
        // Ends with the other HTTP listeners, last in the drain.
        #[allow(clippy::disallowed_methods)]
        api.push(tokio::spawn(natter_api::serve(
            l,
            natter_api::admin_router(admin),
            limits,
            None,
            api_stop.clone(),
        )));
    }
    background.spawn(lift_bans(service.clone(), background_stop.clone()));
    tracing::info!(data_dir = %config.data_dir.display(), "natter is up");

    shutdown.cancelled().await;
    drain::Running {
        draining,
        cluster,
        accept,
        gateway,
        store,
        background,
        background_stop,
        api,
        api_stop,
    }
    .drain(config.shutdown.grace())
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// Indexes the files once their storage answers, then deletes unfinished
/// uploads past their expiry: looks a quarter of the expiry apart (at most
/// a minute, at least 100 ms).
async fn expire_uploads(files: natter_service::files::Files, stop: CancellationToken) {
    let every = Duration::from_millis(
        (files.config().expire_after_secs.saturating_mul(250)).clamp(100, 60_000),
    );
    // An object store that did not answer at start-up is read as soon as
    // it does.
    while files.load().await.is_err() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        files.expire(natter_runtime::clock::now_ms()).await;
    }
}

/// Lets accounts whose ban has ended back in, once a minute (a login
/// checks the ban's end itself; this clears the mark for the rest).
async fn lift_bans(service: Service, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        if let Err(e) = service.lift_ended_bans().await {
            tracing::warn!(error = %e, "cannot lift the bans that ended");
        }
    }
}

/// The configuration report as the admin API answers it.
fn admin_config(keys: Vec<KeyReport>) -> Arc<[natter_api::admin::ConfigKey]> {
    keys.into_iter()
        .map(|k| natter_api::admin::ConfigKey {
            key: k.key,
            value: k.value,
            source: k.source.name().into(),
            live: k.live,
            note: k.note,
        })
        .collect()
}

/// `GET /v1/events`' sessions, attached to this node's gateway like its
/// connections.
struct LiveHere(Arc<Gateway>);

impl natter_api::LiveSessions for LiveHere {
    fn open(
        &self,
        session: natter_service::SessionInfo,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<natter_api::LiveFeed, natter_service::ServiceError>,
                > + Send
                + '_,
        >,
    > {
        Box::pin(async move {
            let live = self.0.open_live(session).await?;
            Ok(Box::pin(live.into_stream()) as natter_api::LiveFeed)
        })
    }
}
