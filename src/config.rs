//! Layered configuration: defaults, then a TOML file, then the environment
//! (`NATTER_DATA_DIR` and `NATTER_<SECTION>__<KEY>`; other `NATTER_*` names
//! are not the server's), then command-line flags.
//! Everything is validated at start-up; errors name the offending key.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded database lives.
    pub data_dir: PathBuf,
    pub listen: Listen,
    pub limits: Limits,
    pub session: Session,
    pub password: Password,
    pub store: StoreConfig,
    pub shutdown: Shutdown,
    pub log: Log,
    pub social: Social,
    pub http: Http,
    pub throttle: Throttle,
    pub overload: Overload,
    pub cluster: ClusterSection,
    pub tls: TlsSection,
}

/// The certificate the TLS listeners (`listen.tcp_tls`, `ws_tls`, `https`)
/// serve; reloaded on SIGHUP and when the files change.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM: the private key of the leaf certificate.
    pub key: PathBuf,
    /// Sessions kept for stateful resumption (tickets need none).
    pub session_cache: usize,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            session_cache: 20_000,
        }
    }
}

/// Several nodes on one PostgreSQL and one Redis. Off while `redis_url` is
/// empty: the node then behaves as a single server.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// `redis://host:port/db`; empty: no cluster.
    pub redis_url: String,
    /// The cluster's name: the prefix of its Redis keys and channels, so
    /// several clusters can share one Redis.
    pub name: String,
    /// This node's name; empty: generated once and kept in
    /// `data_dir/node-id`.
    pub node_id: String,
    /// The addresses clients are sent to for this node; empty: the bound
    /// listener's address.
    pub advertise_tcp: String,
    pub advertise_ws: String,
    pub advertise_http: String,
    /// How the assignment endpoint picks a node.
    pub assign: AssignStrategy,
    /// How often the node reports its load; three missed reports make it dead.
    pub report_interval_ms: u64,
    /// How long a presence entry lives without being refreshed.
    pub presence_ttl_ms: u64,
    /// Events waiting to be published to other nodes.
    pub bus_queue: usize,
    /// Connections above the cluster's average before a node asks some of
    /// its idle clients to move to less loaded nodes (0: never).
    pub rebalance_min_excess: usize,
    /// How many clients a node above it asks to move per second.
    pub rebalance_per_sec: usize,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AssignStrategy {
    LeastLoaded,
    RoundRobin,
    Sticky,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            redis_url: String::new(),
            name: "natter".into(),
            node_id: String::new(),
            advertise_tcp: String::new(),
            advertise_ws: String::new(),
            advertise_http: String::new(),
            assign: AssignStrategy::LeastLoaded,
            report_interval_ms: 2_000,
            presence_ttl_ms: 60_000,
            bus_queue: 65_536,
            rebalance_min_excess: 100,
            rebalance_per_sec: 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// Raw TCP frames.
    pub tcp: String,
    /// WebSocket (binary messages carry frames); empty disables it.
    pub ws: String,
    /// HTTP: health, readiness, metrics; empty disables it.
    pub http: String,
    /// The same over TLS (with `[tls]`); each empty (off) by default.
    pub tcp_tls: String,
    pub ws_tls: String,
    pub https: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_connections: usize,
    pub max_unauthenticated_per_address: usize,
    pub max_frame_bytes: usize,
    pub max_preauth_frame_bytes: usize,
    pub max_message_bytes: usize,
    pub outbound_queue: usize,
    pub outbound_queue_bytes: usize,
    pub fanout_workers: usize,
    pub fanout_queue: usize,
    pub send_rate_per_sec: f64,
    pub send_burst: f64,
    pub request_rate_per_sec: f64,
    pub request_burst: f64,
    pub max_sync_page: usize,
    pub max_history_page: usize,
}

/// Friends, groups, rooms and message features.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Social {
    /// Who may start a 1:1 conversation: "friends" or "anyone" (anyone who
    /// has not blocked the sender).
    pub direct_messages: DirectMessages,
    /// The most members a group or room may have.
    pub max_group_members: u32,
    /// Messages before the join point that a new room member can read.
    pub room_history: u32,
    /// How long after sending a message may be recalled.
    pub recall_window_secs: u64,
    /// Typing is passed on only in conversations with at most this many members.
    pub typing_max_members: usize,
    /// Users one user may block.
    pub max_blocked: usize,
}

/// The HTTP listener's own limits.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    pub max_connections: usize,
    /// A request's headers must arrive within this; it also bounds how long
    /// an idle keep-alive connection waits for its next request.
    pub header_timeout_ms: u64,
    /// A connection on which no byte moves this long is closed.
    pub idle_timeout_ms: u64,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            max_connections: 512,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
        }
    }
}

/// Limits on logins, registrations and typing.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Throttle {
    pub login_rate_per_address: f64,
    pub login_burst_per_address: f64,
    pub failed_login_rate_per_address: f64,
    pub failed_login_burst_per_address: f64,
    pub failed_login_free_per_user: u32,
    pub failed_login_backoff_ms: u64,
    pub failed_login_backoff_max_ms: u64,
    pub failed_login_window_secs: u64,
    pub register_rate_per_address: f64,
    pub register_burst_per_address: f64,
    pub typing_interval_ms: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            login_rate_per_address: 2.0,
            login_burst_per_address: 20.0,
            failed_login_rate_per_address: 0.1,
            failed_login_burst_per_address: 20.0,
            failed_login_free_per_user: 5,
            failed_login_backoff_ms: 1_000,
            failed_login_backoff_max_ms: 60_000,
            failed_login_window_secs: 900,
            register_rate_per_address: 1.0 / 60.0,
            register_burst_per_address: 5.0,
            typing_interval_ms: 3_000,
        }
    }
}

/// Where the overload stages begin.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Overload {
    /// 0: three quarters of the memory the machine (or its cgroup) has.
    pub memory_budget_mb: u64,
    pub shed_memory_pct: u32,
    pub essential_memory_pct: u32,
    pub shed_lag_ms: u64,
    pub essential_lag_ms: u64,
    pub shed_queue_pct: u32,
    pub essential_queue_pct: u32,
    pub calm_ms: u64,
    pub interval_ms: u64,
    /// Connections that may wait to log in, in all, while shedding.
    pub max_unauthenticated: usize,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            memory_budget_mb: 0,
            shed_memory_pct: 80,
            essential_memory_pct: 90,
            shed_lag_ms: 250,
            essential_lag_ms: 1_000,
            shed_queue_pct: 50,
            essential_queue_pct: 90,
            calm_ms: 5_000,
            interval_ms: 250,
            max_unauthenticated: 1_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DirectMessages {
    Friends,
    Anyone,
}

impl Default for Social {
    fn default() -> Self {
        Social {
            direct_messages: DirectMessages::Friends,
            max_group_members: 5000,
            room_history: 50,
            recall_window_secs: 120,
            typing_max_members: 500,
            max_blocked: 500,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DevicePolicy {
    ReplaceOldest,
    Reject,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Session {
    pub auth_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub token_ttl_secs: u64,
    pub device_policy: DevicePolicy,
    pub max_devices: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Password {
    pub min_length: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub max_concurrent_hashes: usize,
    pub max_queued_hashes: usize,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    Full,
    Normal,
}

/// Which database the store uses.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Embedded, in `data_dir`; one process.
    Sqlite,
    /// A PostgreSQL server at `store.url`; one node or several.
    Postgres,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: Backend,
    /// PostgreSQL: `postgres://user:password@host:port/database`.
    pub url: String,
    /// SQLite: `full`: an ACKed message survives power loss; `normal`: a crash.
    pub synchronous: Synchronous,
    pub max_batch: usize,
    pub queue_depth: usize,
    /// SQLite: reader connections.
    pub readers: usize,
    /// PostgreSQL: pooled connections (the writer has one more).
    pub pool_size: usize,
    /// PostgreSQL: how long a connection attempt may take.
    pub connect_timeout_ms: u64,
    /// PostgreSQL: how long one statement may run.
    pub statement_timeout_ms: u64,
    /// PostgreSQL: how long a request waits for a free pooled connection.
    pub pool_wait_ms: u64,
    /// PostgreSQL: consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// PostgreSQL: how long the breaker stays open before a probe.
    pub breaker_open_ms: u64,
    /// PostgreSQL: the message table's partitioning, fixed when it is made.
    pub partition: Partition,
    /// PostgreSQL, `partition = "hash"`: how many partitions.
    pub partitions: u32,
    /// PostgreSQL, `partition = "monthly"`: months older than this many
    /// days are dropped (0: keep everything).
    pub retention_days: u32,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Partition {
    None,
    /// By hash of the conversation.
    Hash,
    /// By month of the message.
    Monthly,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Shutdown {
    pub grace_ms: u64,
    pub reconnect_after_ms: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// A tracing filter, e.g. `info` or `natter_gateway=debug,info`.
    pub level: String,
    pub format: LogFormat,
    /// Log lines to stdout (with or without a file).
    pub stdout: bool,
    /// A log file; empty: none. A relative path is under `data_dir`.
    pub file: PathBuf,
    /// Lines queued for the writer; past that they are dropped and counted.
    pub buffer_lines: usize,
    /// The file is rotated before a line would take it past this size.
    pub rotate_bytes: u64,
    /// And when this much time has passed: never, hourly, daily, or e.g. 6h.
    pub rotate_every: String,
    /// Log files kept, the current one included.
    pub max_files: u32,
    /// Bytes of log files kept, the current one included.
    pub max_total_bytes: u64,
    /// Warnings and errors let through per callsite per window; 0: all.
    pub repeat_burst: u32,
    pub repeat_window_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("natter-data"),
            listen: Listen::default(),
            limits: Limits::default(),
            session: Session::default(),
            password: Password::default(),
            store: StoreConfig::default(),
            shutdown: Shutdown::default(),
            log: Log::default(),
            social: Social::default(),
            http: Http::default(),
            throttle: Throttle::default(),
            overload: Overload::default(),
            cluster: ClusterSection::default(),
            tls: TlsSection::default(),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            tcp: "127.0.0.1:7700".into(),
            ws: "127.0.0.1:7701".into(),
            http: "127.0.0.1:7780".into(),
            tcp_tls: String::new(),
            ws_tls: String::new(),
            https: String::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 19_000,
            max_unauthenticated_per_address: 256,
            max_frame_bytes: 256 * 1024,
            max_preauth_frame_bytes: 4096,
            max_message_bytes: 64 * 1024,
            outbound_queue: 1024,
            outbound_queue_bytes: 2 * 1024 * 1024,
            fanout_workers: 4,
            fanout_queue: 65_536,
            send_rate_per_sec: 100.0,
            send_burst: 200.0,
            request_rate_per_sec: 500.0,
            request_burst: 1000.0,
            max_sync_page: 500,
            max_history_page: 200,
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session {
            auth_timeout_ms: 10_000,
            heartbeat_interval_ms: 30_000,
            heartbeat_timeout_ms: 90_000,
            token_ttl_secs: 30 * 24 * 3600,
            device_policy: DevicePolicy::ReplaceOldest,
            max_devices: 5,
        }
    }
}

impl Default for Password {
    fn default() -> Self {
        Password {
            min_length: 8,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 4,
            max_queued_hashes: 256,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            url: String::new(),
            synchronous: Synchronous::Full,
            max_batch: 512,
            queue_depth: 8192,
            readers: 4,
            pool_size: 16,
            connect_timeout_ms: 3_000,
            statement_timeout_ms: 5_000,
            pool_wait_ms: 2_000,
            breaker_failures: 3,
            breaker_open_ms: 2_000,
            partition: Partition::None,
            partitions: 16,
            retention_days: 0,
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            grace_ms: 10_000,
            reconnect_after_ms: 1_000,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: LogFormat::Text,
            stdout: true,
            file: PathBuf::new(),
            buffer_lines: 8192,
            rotate_bytes: 64 * 1024 * 1024,
            rotate_every: "daily".into(),
            max_files: 10,
            max_total_bytes: 1024 * 1024 * 1024,
            repeat_burst: 10,
            repeat_window_ms: 10_000,
        }
    }
}

/// Which `NATTER_*` variables are server settings (`key` is the name after
/// the prefix): `NATTER_DATA_DIR` and `NATTER_<SECTION>__<KEY>`. Everything
/// else under the prefix belongs to someone else — the client's
/// `NATTER_SERVER` and `NATTER_PASSWORD`, the test suite's `NATTER_TEST_*`,
/// a user's own — and is left alone. An unknown key in the server's shape
/// (`NATTER_LISTEN__NOPE`) still stops start-up.
fn is_server_key(key: &figment::value::UncasedStr) -> bool {
    let key = key.as_str();
    key.eq_ignore_ascii_case("data_dir")
        || (key.contains("__") && !key.to_ascii_lowercase().starts_with("test_"))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The message includes figment's, so figment's error is not also the
    // source: printed with its chain it would appear twice.
    #[error("configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    /// Defaults, then `file` (if any), then the process environment.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            f = f.merge(Toml::file_exact(file));
        }
        f.merge(Env::prefixed("NATTER_").filter(is_server_key).split("__"))
    }

    /// Extracts and validates a configuration.
    pub fn from_figment(f: Figment) -> Result<Config, ConfigError> {
        let c: Config = f.extract().map_err(|e| {
            // Name the variable itself, as it was set, not figment's
            // dotted key.
            let from_env = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment variable"));
            if from_env && !e.path.is_empty() {
                let stem = format!("NATTER_{}", e.path.join("__").to_ascii_uppercase());
                let set: Vec<String> = std::env::vars_os()
                    .filter_map(|(k, _)| k.into_string().ok())
                    .filter(|k| {
                        let k = k.to_ascii_uppercase();
                        k == stem || k.starts_with(&format!("{stem}__"))
                    })
                    .collect();
                let var = if set.is_empty() { stem } else { set.join(", ") };
                return ConfigError::Env {
                    var,
                    reason: e.kind.to_string(),
                };
            }
            ConfigError::Load(Box::new(e))
        })?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(
            ok: bool,
            key: &'static str,
            reason: impl FnOnce() -> String,
        ) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    reason: reason(),
                })
            }
        }
        let l = &self.limits;
        let s = &self.session;
        let p = &self.password;
        check(!self.listen.tcp.is_empty(), "listen.tcp", || {
            "a TCP address is required".into()
        })?;
        let ln = &self.listen;
        let tls_on = !(ln.tcp_tls.is_empty() && ln.ws_tls.is_empty() && ln.https.is_empty());
        check(
            !tls_on || !self.tls.cert.as_os_str().is_empty(),
            "tls.cert",
            || "a TLS listener (listen.tcp_tls, ws_tls or https) needs a certificate file".into(),
        )?;
        check(
            !tls_on || !self.tls.key.as_os_str().is_empty(),
            "tls.key",
            || "a TLS listener (listen.tcp_tls, ws_tls or https) needs a key file".into(),
        )?;
        check(self.tls.session_cache >= 1, "tls.session_cache", || {
            "must be at least 1".into()
        })?;
        check(
            (2..=100_000).contains(&self.social.max_group_members),
            "social.max_group_members",
            || "must be between 2 and 100000".into(),
        )?;
        check(l.max_connections >= 1, "limits.max_connections", || {
            "must be at least 1".into()
        })?;
        check(
            l.max_frame_bytes >= 65_536,
            "limits.max_frame_bytes",
            || "must be at least 65536".into(),
        )?;
        check(
            (1024..=l.max_frame_bytes).contains(&l.max_preauth_frame_bytes),
            "limits.max_preauth_frame_bytes",
            || "must be between 1024 and limits.max_frame_bytes".into(),
        )?;
        check(
            l.max_unauthenticated_per_address >= 1,
            "limits.max_unauthenticated_per_address",
            || "must be at least 1".into(),
        )?;
        check(
            l.outbound_queue_bytes >= 2 * l.max_frame_bytes,
            "limits.outbound_queue_bytes",
            || "must hold at least two frames (2 × limits.max_frame_bytes)".into(),
        )?;
        check(l.fanout_workers >= 1, "limits.fanout_workers", || {
            "must be at least 1".into()
        })?;
        check(l.fanout_queue >= 1, "limits.fanout_queue", || {
            "must be at least 1".into()
        })?;
        let h = &self.http;
        check(h.max_connections >= 1, "http.max_connections", || {
            "must be at least 1".into()
        })?;
        check(h.header_timeout_ms >= 1, "http.header_timeout_ms", || {
            "must be at least 1".into()
        })?;
        check(h.idle_timeout_ms >= 1, "http.idle_timeout_ms", || {
            "must be at least 1".into()
        })?;
        let t = &self.throttle;
        for (ok, key) in [
            (
                t.login_rate_per_address > 0.0,
                "throttle.login_rate_per_address",
            ),
            (
                t.login_burst_per_address >= 1.0,
                "throttle.login_burst_per_address",
            ),
            (
                t.failed_login_rate_per_address > 0.0,
                "throttle.failed_login_rate_per_address",
            ),
            (
                t.failed_login_burst_per_address >= 1.0,
                "throttle.failed_login_burst_per_address",
            ),
            (
                t.register_rate_per_address > 0.0,
                "throttle.register_rate_per_address",
            ),
            (
                t.register_burst_per_address >= 1.0,
                "throttle.register_burst_per_address",
            ),
            (
                t.failed_login_backoff_ms >= 1,
                "throttle.failed_login_backoff_ms",
            ),
            (
                t.failed_login_window_secs >= 1,
                "throttle.failed_login_window_secs",
            ),
            (t.typing_interval_ms >= 1, "throttle.typing_interval_ms"),
        ] {
            check(ok, key, || "must be positive (bursts at least 1)".into())?;
        }
        check(
            t.failed_login_backoff_max_ms >= t.failed_login_backoff_ms,
            "throttle.failed_login_backoff_max_ms",
            || "must be at least throttle.failed_login_backoff_ms".into(),
        )?;
        let o = &self.overload;
        for (lo, hi, key) in [
            (
                o.shed_memory_pct,
                o.essential_memory_pct,
                "overload.essential_memory_pct",
            ),
            (
                o.shed_queue_pct,
                o.essential_queue_pct,
                "overload.essential_queue_pct",
            ),
        ] {
            check(lo >= 1 && lo <= hi && hi <= 100, key, || {
                "the shed and essential percentages must satisfy 1 <= shed <= essential <= 100"
                    .into()
            })?;
        }
        check(
            o.shed_lag_ms >= 1 && o.shed_lag_ms <= o.essential_lag_ms,
            "overload.essential_lag_ms",
            || "must be at least overload.shed_lag_ms (itself at least 1)".into(),
        )?;
        check(o.interval_ms >= 10, "overload.interval_ms", || {
            "must be at least 10".into()
        })?;
        check(
            o.max_unauthenticated >= 1,
            "overload.max_unauthenticated",
            || "must be at least 1".into(),
        )?;
        check(
            l.max_frame_bytes <= 64 * 1024 * 1024,
            "limits.max_frame_bytes",
            || "must be at most 64 MiB".into(),
        )?;
        check(l.max_message_bytes >= 1, "limits.max_message_bytes", || {
            "must be at least 1".into()
        })?;
        check(
            l.max_message_bytes + 4096 <= l.max_frame_bytes,
            "limits.max_message_bytes",
            || {
                format!(
                    "must leave 4096 bytes of room below limits.max_frame_bytes ({})",
                    l.max_frame_bytes
                )
            },
        )?;
        check(l.outbound_queue >= 1, "limits.outbound_queue", || {
            "must be at least 1".into()
        })?;
        check(
            l.send_rate_per_sec > 0.0,
            "limits.send_rate_per_sec",
            || "must be positive".into(),
        )?;
        check(l.send_burst >= 1.0, "limits.send_burst", || {
            "must be at least 1".into()
        })?;
        check(
            l.request_rate_per_sec > 0.0,
            "limits.request_rate_per_sec",
            || "must be positive".into(),
        )?;
        check(l.request_burst >= 1.0, "limits.request_burst", || {
            "must be at least 1".into()
        })?;
        check(l.max_sync_page >= 1, "limits.max_sync_page", || {
            "must be at least 1".into()
        })?;
        check(l.max_history_page >= 1, "limits.max_history_page", || {
            "must be at least 1".into()
        })?;
        check(s.auth_timeout_ms >= 1, "session.auth_timeout_ms", || {
            "must be at least 1".into()
        })?;
        check(
            s.heartbeat_interval_ms >= 1,
            "session.heartbeat_interval_ms",
            || "must be at least 1".into(),
        )?;
        check(
            s.heartbeat_timeout_ms > s.heartbeat_interval_ms,
            "session.heartbeat_timeout_ms",
            || {
                format!(
                    "must exceed session.heartbeat_interval_ms ({})",
                    s.heartbeat_interval_ms
                )
            },
        )?;
        check(s.token_ttl_secs >= 1, "session.token_ttl_secs", || {
            "must be at least 1".into()
        })?;
        check(s.max_devices >= 1, "session.max_devices", || {
            "must be at least 1".into()
        })?;
        check(p.min_length >= 1, "password.min_length", || {
            "must be at least 1".into()
        })?;
        check(
            p.argon2_parallelism >= 1,
            "password.argon2_parallelism",
            || "must be at least 1".into(),
        )?;
        check(
            p.argon2_iterations >= 1,
            "password.argon2_iterations",
            || "must be at least 1".into(),
        )?;
        check(
            p.argon2_memory_kib >= 8 * p.argon2_parallelism,
            "password.argon2_memory_kib",
            || "must be at least 8 × password.argon2_parallelism".into(),
        )?;
        check(
            (1..=256).contains(&p.max_concurrent_hashes),
            "password.max_concurrent_hashes",
            || "must be between 1 and 256".into(),
        )?;
        check(self.store.max_batch >= 1, "store.max_batch", || {
            "must be at least 1".into()
        })?;
        check(self.store.queue_depth >= 1, "store.queue_depth", || {
            "must be at least 1".into()
        })?;
        check(self.store.readers >= 1, "store.readers", || {
            "must be at least 1".into()
        })?;
        let cl = &self.cluster;
        if !cl.redis_url.is_empty() {
            check(
                cl.redis_url.starts_with("redis://") || cl.redis_url.starts_with("rediss://"),
                "cluster.redis_url",
                || "must be a redis:// URL".into(),
            )?;
            check(
                self.store.backend == Backend::Postgres,
                "cluster.redis_url",
                || "a cluster needs store.backend = \"postgres\": nodes share one database".into(),
            )?;
            let name_ok = |s: &str| {
                s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            };
            check(name_ok(&cl.node_id), "cluster.node_id", || {
                "at most 64 of a-z A-Z 0-9 - _ .".into()
            })?;
            check(
                !cl.name.is_empty() && name_ok(&cl.name),
                "cluster.name",
                || "1 to 64 of a-z A-Z 0-9 - _ .".into(),
            )?;
            check(
                (100..=60_000).contains(&cl.report_interval_ms),
                "cluster.report_interval_ms",
                || "must be between 100 and 60000".into(),
            )?;
            check(
                cl.presence_ttl_ms >= 3 * cl.report_interval_ms,
                "cluster.presence_ttl_ms",
                || "must be at least 3 × cluster.report_interval_ms".into(),
            )?;
            check(cl.bus_queue >= 1, "cluster.bus_queue", || {
                "must be at least 1".into()
            })?;
        }
        if self.store.backend == Backend::Postgres {
            check(
                self.store.url.starts_with("postgres://")
                    || self.store.url.starts_with("postgresql://"),
                "store.url",
                || "the postgres backend needs a postgres:// URL".into(),
            )?;
            check(
                (1..=1000).contains(&self.store.pool_size),
                "store.pool_size",
                || "must be between 1 and 1000".into(),
            )?;
            for (v, key) in [
                (self.store.connect_timeout_ms, "store.connect_timeout_ms"),
                (
                    self.store.statement_timeout_ms,
                    "store.statement_timeout_ms",
                ),
                (self.store.pool_wait_ms, "store.pool_wait_ms"),
                (self.store.breaker_open_ms, "store.breaker_open_ms"),
            ] {
                check(v >= 1, key, || "must be at least 1".into())?;
            }
            check(
                self.store.breaker_failures >= 1,
                "store.breaker_failures",
                || "must be at least 1".into(),
            )?;
        }
        check(
            self.log
                .level
                .parse::<tracing_subscriber::EnvFilter>()
                .is_ok(),
            "log.level",
            || format!("`{}` is not a valid log filter", self.log.level),
        )?;
        let g = &self.log;
        check(
            g.stdout || !g.file.as_os_str().is_empty(),
            "log.stdout",
            || "with no log.file, logs would go nowhere (log.level = \"off\" silences them)".into(),
        )?;
        check(
            (1..=1_000_000).contains(&g.buffer_lines),
            "log.buffer_lines",
            || "must be between 1 and 1000000".into(),
        )?;
        check(g.rotate_bytes >= 1024, "log.rotate_bytes", || {
            "must be at least 1024".into()
        })?;
        if let Err(why) = crate::server::logging::rotate::parse_every(&g.rotate_every) {
            check(false, "log.rotate_every", || why)?;
        }
        check(g.max_files >= 1, "log.max_files", || {
            "must be at least 1".into()
        })?;
        check(
            g.max_total_bytes >= g.rotate_bytes,
            "log.max_total_bytes",
            || "must be at least log.rotate_bytes".into(),
        )?;
        check(
            g.repeat_burst == 0 || g.repeat_window_ms >= 1,
            "log.repeat_window_ms",
            || "must be at least 1".into(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(toml: &str) -> Result<Config, ConfigError> {
        Config::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)),
        )
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let e = from_toml("[session]\nheartbeat_interval_ms = 5000\nheartbeat_timeout_ms = 100")
            .unwrap_err();
        assert!(
            e.to_string().contains("session.heartbeat_timeout_ms"),
            "{e}"
        );
        let e = from_toml("[limits]\nmax_conections = 5").unwrap_err();
        assert!(e.to_string().contains("max_conections"), "{e}");
        let e = from_toml("[limits]\nmax_connections = \"many\"").unwrap_err();
        assert!(e.to_string().contains("max_connections"), "{e}");
        let e = from_toml("[session]\ndevice_policy = \"sometimes\"").unwrap_err();
        assert!(e.to_string().contains("device_policy"), "{e}");
    }

    #[test]
    fn log_settings_are_checked() {
        for (toml, key) in [
            ("[log]\nstdout = false", "log.stdout"),
            ("[log]\nbuffer_lines = 0", "log.buffer_lines"),
            (
                "[log]\nfile = \"n.log\"\nrotate_bytes = 10",
                "log.rotate_bytes",
            ),
            ("[log]\nrotate_every = \"weekly\"", "log.rotate_every"),
            ("[log]\nmax_files = 0", "log.max_files"),
            (
                "[log]\nrotate_bytes = 4096\nmax_total_bytes = 4095",
                "log.max_total_bytes",
            ),
            ("[log]\nrepeat_window_ms = 0", "log.repeat_window_ms"),
        ] {
            let e = from_toml(toml).unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
        let c =
            from_toml("[log]\nstdout = false\nfile = \"n.log\"\nrotate_every = \"6h\"").unwrap();
        assert_eq!(c.log.file, PathBuf::from("n.log"));
        let c = from_toml("[log]\nrepeat_burst = 0\nrepeat_window_ms = 0").unwrap();
        assert_eq!(c.log.repeat_burst, 0);
    }

    #[test]
    fn only_data_dir_and_sectioned_variables_are_server_settings() {
        for (key, server) in [
            ("data_dir", true),
            ("limits__max_connections", true),
            ("listen__nope", true),
            ("nosection__x", true),
            ("server", false),
            ("password", false),
            ("config_dir", false),
            ("foo", false),
            ("test_postgres_url", false),
            ("test__x", false),
        ] {
            assert_eq!(
                is_server_key(figment::value::UncasedStr::new(key)),
                server,
                "{key}"
            );
        }
    }

    #[test]
    fn a_float_key_takes_an_integer_and_an_integer_key_refuses_a_float() {
        let c = from_toml("[limits]\nsend_rate_per_sec = 100").unwrap();
        assert_eq!(c.limits.send_rate_per_sec, 100.0);
        let e = from_toml("[limits]\nmax_connections = 1000.0").unwrap_err();
        assert!(e.to_string().contains("max_connections"), "{e}");
    }

    #[test]
    fn a_tls_listener_needs_a_certificate_and_a_key() {
        let e = from_toml("[listen]\ntcp_tls = \"127.0.0.1:0\"").unwrap_err();
        assert!(e.to_string().contains("tls.cert"), "{e}");
        let e =
            from_toml("[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"c.pem\"").unwrap_err();
        assert!(e.to_string().contains("tls.key"), "{e}");
        let c = from_toml(
            "[listen]\nws_tls = \"127.0.0.1:0\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"",
        );
        assert_eq!(c.unwrap().tls.session_cache, 20_000);
        let e = from_toml("[tls]\nsession_cache = 0").unwrap_err();
        assert!(e.to_string().contains("tls.session_cache"), "{e}");
    }

    #[test]
    fn layers_override_in_order() {
        let c = from_toml("data_dir = \"/tmp/x\"\n[limits]\nmax_connections = 7").unwrap();
        assert_eq!(c.limits.max_connections, 7);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.limits.outbound_queue, Limits::default().outbound_queue);
    }
}
