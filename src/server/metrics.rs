//! Every metric natter exports, with its help text, in one place, and every
//! series a fresh node has at zero. The tidy test checks that each metric
//! named in the code is described here; `tests/tls.rs` that a fresh node's
//! `/metrics` shows every metric described.
//!
//! What is counted per frame, message or push (`natter_frames_in_total`,
//! `natter_messages_total`, `natter_pushes_total`, `natter_delivery_seconds`)
//! is counted through a handle made once, in a static, at its first use: a
//! macro call looks its series up in the recorder's registry each time
//! (3.2 % of the server's samples under `natter bench dm`). A handle made
//! before a recorder is installed stays a no-op, so the server installs the
//! recorder first ([`handle`], from `logging::init`).
//!
//! The recorder keeps every value a histogram records (16 bytes each, with
//! its time) until it is drained: by a scrape of `/metrics`, or by
//! [`upkeep`] every few seconds, so that a node nobody scrapes does not grow
//! by ~10 MB a minute at 10,000 messages a second.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The process-wide Prometheus recorder, installed on first use, with a
/// description of every metric natter exports.
pub fn handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let installed = metrics::set_global_recorder(recorder).ok().map(|_| handle);
            describe();
            installed
        })
        .clone()
}

/// Drains the histograms' recorded values into their summaries every
/// `every` until `stop`, so that what they hold is bounded whether or not
/// anyone scrapes `/metrics`. A drain at 10,000 messages a second takes a
/// few milliseconds every 5 s (a scrape does the same work).
pub async fn upkeep(handle: PrometheusHandle, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => handle.run_upkeep(),
        }
    }
}

/// Registers every series this node can have at zero (labelled ones under
/// each label value the code uses; TLS ones for each of `tls_listeners`), so
/// that a counter exists before its first event: an alert on a series that
/// is absent never fires, and a rate needs a zero to start from. Existing
/// values are kept. Gauges and histograms their owners set at start are left
/// to them (`natter_store_breaker_state` only exists on PostgreSQL,
/// `natter_tls_certificate_expiry_seconds` once a certificate is loaded).
pub fn zero(tls_listeners: &[&'static str]) {
    for name in [
        "natter_frames_in_total",
        "natter_unauthenticated_evictions_total",
        "natter_http_idle_closed_total",
        "natter_http_health_slot_evictions_total",
        "natter_oversized_frames_total",
        "natter_typing_dropped_total",
        "natter_users_registered_total",
        "natter_uploads_expired_total",
        "natter_login_failures_total",
        "natter_admin_login_failures_total",
        "natter_store_expired_total",
        "natter_email_codes_sent_total",
        "natter_email_failures_total",
        "natter_pushes_total",
        "natter_bus_publishes_total",
        "natter_bus_published_bytes_total",
        "natter_bus_received_total",
        "natter_bus_dropped_total",
        "natter_bus_order_released_total",
        "natter_bus_resubscribes_total",
        "natter_bus_resyncs_total",
        "natter_cluster_moved_total",
        "natter_cluster_nodes_dead_total",
        "natter_log_dropped_lines_total",
        "natter_log_suppressed_lines_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    let reasons: Vec<&'static str> = (1..=u8::MAX)
        .filter_map(|v| natter_proto::pb::DisconnectReason::try_from(i32::from(v)).ok())
        .map(|r| r.as_str_name())
        .collect();
    let stages = natter_runtime::load::Stage::ALL.map(|s| s.name());
    let labelled: [(&'static str, &'static str, &[&'static str]); 12] = [
        (
            "natter_connections_total",
            "transport",
            &["tcp", "ws", "sse"],
        ),
        ("natter_disconnects_total", "reason", &reasons),
        (
            "natter_limit_hits_total",
            "limit",
            // gateway (admission, frames, requests, outbound queue, group
            // size), api (HTTP connections), service (sends, logins,
            // registrations, hashing, overload, email codes)
            &[
                "connections",
                "unauthenticated_per_address",
                "overload",
                "frame_size",
                "request_rate",
                "outbound_queue",
                "group_size",
                "http_connections",
                "send_rate",
                "hash_queue",
                "login_rate",
                "failed_logins_address",
                "failed_logins_user",
                "registrations",
                "email_codes_address",
                "email_codes_source",
                "email_code_tries",
                "email_queue",
            ],
        ),
        (
            // The tables of runtime::limits, by the names their owners give.
            "natter_limit_table_full_total",
            "table",
            &[
                "send",
                "logins",
                "failed_logins_address",
                "failed_logins_user",
                "registrations",
                "typing",
                "known_logins",
                "email_codes_address",
                "email_codes_source",
                "email_code_tries",
            ],
        ),
        ("natter_logins_total", "method", &["password", "token"]),
        ("natter_messages_total", "outcome", &["stored", "duplicate"]),
        (
            // The commit feed's reasons (store/src/feed.rs).
            "natter_pushes_dropped_total",
            "reason",
            &["fanout_queue_full", "fanout_overflow_full"],
        ),
        (
            "natter_bus_errors_total",
            "op",
            &[
                "publish",
                "subscribe",
                "decode",
                "presence",
                "report",
                "limit",
            ],
        ),
        ("natter_log_write_errors_total", "sink", &["stdout", "file"]),
        ("natter_log_events_total", "level", &["error", "warn"]),
        (
            // Every panics::guard and panics::catch, and the hook's own.
            "natter_panics_total",
            "component",
            &[
                "unguarded",
                "connection",
                "connection_writer",
                "fanout",
                "password_hash",
                "reset_mail",
                "store_writer",
            ],
        ),
        ("natter_overload_transitions_total", "to", &stages),
    ];
    for (name, label, values) in labelled {
        for &value in values {
            metrics::counter!(name, label => value).increment(0);
        }
    }
    if !tls_listeners.is_empty() {
        metrics::counter!("natter_tls_accept_pauses_total").increment(0);
        for result in ["ok", "error"] {
            metrics::counter!("natter_tls_reloads_total", "result" => result).increment(0);
        }
    }
    for &listener in tls_listeners {
        for kind in ["full", "resumed"] {
            metrics::counter!("natter_tls_handshakes_total",
                "listener" => listener, "kind" => kind)
            .increment(0);
        }
        for reason in natter_runtime::tls::FAILURE_REASONS {
            metrics::counter!("natter_tls_handshake_failures_total",
                "listener" => listener, "reason" => reason)
            .increment(0);
        }
    }
    for name in [
        "natter_connections",
        "natter_unauthenticated_connections",
        "natter_http_connections",
        "natter_users_online",
        "natter_store_queue_depth",
        "natter_store_log_waiting",
        "natter_runtime_tasks",
    ] {
        metrics::gauge!(name).increment(0.0);
    }
    for name in [
        "natter_store_batch_size",
        "natter_store_commit_seconds",
        "natter_store_wait_seconds",
        "natter_store_copy_seconds",
        "natter_store_copy_size",
        "natter_store_checkpoint_seconds",
        "natter_delivery_seconds",
    ] {
        // A handle is enough: an empty histogram shows a count of 0.
        let _ = metrics::histogram!(name);
    }
}

/// Describes every metric to the installed recorder.
pub fn describe() {
    // Connections
    describe_gauge!(
        "natter_users_online",
        "Users with at least one session attached to this node now."
    );
    describe_histogram!(
        "natter_delivery_seconds",
        Unit::Seconds,
        "From a message's arrival to its push made for its recipients (each message once)."
    );
    describe_counter!(
        "natter_log_events_total",
        "Warnings and errors logged, by level (counted before repeats are held back)."
    );
    describe_gauge!(
        "natter_connections",
        "Chat connections (TCP, WebSocket and HTTP event streams) open now."
    );
    describe_counter!(
        "natter_connections_total",
        "Chat connections accepted, by transport (tcp, ws, sse: an HTTP event stream)."
    );
    describe_gauge!(
        "natter_unauthenticated_connections",
        "Chat connections that have not logged in yet."
    );
    describe_counter!(
        "natter_unauthenticated_evictions_total",
        "Connections that had not logged in, closed with SERVER_FULL to make room for a newer one (past limits.max_unauthenticated waiting, or the node at limits.max_connections)."
    );
    describe_counter!(
        "natter_disconnects_total",
        "Connections the server closed with a Disconnect frame, by reason."
    );
    describe_counter!("natter_frames_in_total", "Frames received from clients.");
    describe_gauge!("natter_http_connections", "HTTP connections open now.");
    describe_counter!(
        "natter_http_idle_closed_total",
        "HTTP connections closed because no byte moved within http.idle_timeout_ms."
    );
    describe_counter!(
        "natter_http_health_slot_evictions_total",
        "Connections in the health slots past http.max_connections (served /healthz, /readyz and /metrics only) closed to make room for a newer one."
    );
    // TLS
    describe_counter!(
        "natter_tls_handshakes_total",
        "Completed TLS handshakes by listener (tcp_tls, ws_tls, https) and kind (full, resumed)."
    );
    describe_counter!(
        "natter_tls_handshake_failures_total",
        "Failed TLS handshakes by listener and reason (not_tls, bad_certificate, timeout, eof, protocol, ...)."
    );
    describe_gauge!(
        "natter_tls_certificate_expiry_seconds",
        Unit::Seconds,
        "Seconds until the certificate served now expires."
    );
    describe_counter!(
        "natter_tls_accept_pauses_total",
        "Times a TLS listener stopped accepting because the node was shedding load with its logins at overload.max_unauthenticated (new connections wait in the listen queue instead of costing a handshake to refuse)."
    );
    describe_counter!(
        "natter_tls_reloads_total",
        "Certificate reloads (SIGHUP or changed files) by result (ok, error); on error the old certificate stays."
    );
    // Limits
    describe_counter!(
        "natter_limit_hits_total",
        "Requests or connections refused by a limit, by limit."
    );
    describe_counter!(
        "natter_limit_table_full_total",
        "Times a rate-limit table was full of live entries and did not track a new key, by table."
    );
    describe_counter!(
        "natter_oversized_frames_total",
        "Frames not sent because they exceeded limits.max_frame_bytes (a bug if ever non-zero)."
    );
    describe_counter!(
        "natter_typing_dropped_total",
        "Typing signals answered but not passed on (throttled, large conversation, or overload)."
    );
    // Accounts
    describe_counter!("natter_users_registered_total", "Accounts created.");
    describe_counter!(
        "natter_uploads_expired_total",
        "Unfinished uploads deleted past files.expire_after_secs."
    );
    describe_counter!(
        "natter_logins_total",
        "Successful logins, by method (password or token)."
    );
    describe_counter!(
        "natter_login_failures_total",
        "Logins refused for a wrong username or password."
    );
    describe_counter!(
        "natter_admin_login_failures_total",
        "Administrator logins refused for a wrong name or password."
    );
    describe_counter!(
        "natter_email_codes_sent_total",
        "Codes emailed (registration and password reset), with [email]."
    );
    describe_counter!(
        "natter_email_failures_total",
        "Emails the SMTP server refused or did not take within email.send_timeout_ms."
    );
    // Messages and fan-out
    describe_counter!(
        "natter_messages_total",
        "Sends answered with an ACK, by outcome (stored or duplicate)."
    );
    describe_counter!(
        "natter_pushes_total",
        "Frames queued to connections by fan-out."
    );
    describe_counter!(
        "natter_pushes_dropped_total",
        "Pushes dropped before fan-out (recovered by Sync), by reason."
    );
    // Cluster
    describe_counter!(
        "natter_bus_publishes_total",
        "Batches published to other nodes (one per node per batch of events)."
    );
    describe_counter!(
        "natter_bus_published_bytes_total",
        "Bytes published to other nodes."
    );
    describe_counter!(
        "natter_bus_received_total",
        "Routed events received from other nodes."
    );
    describe_counter!(
        "natter_bus_dropped_total",
        "Events not delivered to other nodes (queue full, or Redis away too long); the nodes are told to resync."
    );
    describe_counter!(
        "natter_bus_errors_total",
        "Failed Redis operations of the cluster, by op (publish, subscribe, presence, report, decode)."
    );
    describe_counter!(
        "natter_bus_order_released_total",
        "Times pushes held for seq order were let go without the message before them (it came late or never)."
    );
    describe_counter!(
        "natter_bus_resubscribes_total",
        "Times this node subscribed again after losing its bus subscription."
    );
    describe_counter!(
        "natter_bus_resyncs_total",
        "Times every session on this node was asked to Sync (SyncHintPush)."
    );
    describe_counter!(
        "natter_cluster_moved_total",
        "Clients this node asked to reconnect to a less loaded node (rebalancing)."
    );
    describe_counter!(
        "natter_cluster_nodes_dead_total",
        "Dead nodes whose presence this node cleared."
    );
    // Store
    describe_histogram!(
        "natter_store_batch_size",
        "Writes per group-commit transaction."
    );
    describe_histogram!(
        "natter_store_commit_seconds",
        Unit::Seconds,
        "Time to apply and commit one write transaction."
    );
    describe_histogram!(
        "natter_store_wait_seconds",
        Unit::Seconds,
        "How long the oldest write of a group-commit round waited in the queue before the round began (SQLite)."
    );
    describe_histogram!(
        "natter_store_copy_seconds",
        Unit::Seconds,
        "Time to copy one chunk of message log records into the SQLite database."
    );
    describe_histogram!(
        "natter_store_copy_size",
        "Message log records copied into the SQLite database per chunk."
    );
    describe_gauge!(
        "natter_store_log_waiting",
        "Message log records not yet copied into the SQLite database."
    );
    describe_histogram!(
        "natter_store_checkpoint_seconds",
        Unit::Seconds,
        "Time of one WAL checkpoint."
    );
    describe_gauge!(
        "natter_store_queue_depth",
        "Writes waiting for the store's writer."
    );
    describe_counter!(
        "natter_store_expired_total",
        "Writes answered UNAVAILABLE without being sent to the database: their deadline (store.request_timeout_ms) passed while they were queued."
    );
    describe_gauge!(
        "natter_store_breaker_state",
        "The database circuit breaker (PostgreSQL): 0 closed, 1 half-open (probing), 2 open."
    );
    // Logging
    describe_counter!(
        "natter_log_dropped_lines_total",
        "Log lines dropped because the log queue (log.buffer_lines) was full."
    );
    describe_counter!(
        "natter_log_write_errors_total",
        "Log lines a sink (stdout or file) failed to take, by sink."
    );
    describe_counter!(
        "natter_log_suppressed_lines_total",
        "Repeated warnings and errors not logged (log.repeat_burst), each window summed up in one line."
    );
    // Health and overload
    describe_counter!(
        "natter_panics_total",
        "Panics caught (the unit of work was lost, the process went on), by component."
    );
    describe_gauge!(
        "natter_memory_rss_bytes",
        Unit::Bytes,
        "Resident memory of the process."
    );
    describe_gauge!(
        "natter_memory_budget_bytes",
        Unit::Bytes,
        "The memory budget the overload stages are measured against."
    );
    describe_gauge!(
        "natter_runtime_tasks",
        "Tasks alive in the async runtime as /metrics is read: one per open connection, plus the server's own."
    );
    describe_gauge!(
        "natter_event_loop_lag_seconds",
        Unit::Seconds,
        "How late the overload monitor woke up: the async runtime's lag."
    );
    describe_gauge!(
        "natter_overload_stage",
        "Overload stage: 0 normal, 1 shedding new work, 2 essential traffic only."
    );
    describe_counter!(
        "natter_overload_transitions_total",
        "Overload stage changes, by the stage entered."
    );
}
