//! Layered configuration: defaults, then a TOML file, then the environment
//! (`NATTER_DATA_DIR` and `NATTER_<SECTION>__<KEY>`; other `NATTER_*` names
//! are not the server's), then command-line flags.
//! Everything is validated at start-up; errors name the offending key.
//!
//! Each section is defined, with its defaults and its `validate`, by the
//! crate that uses it (`[limits]`, which several crates read, by the runtime
//! they share); this file only composes them, holds `[listen]`, and checks
//! the rules that span two sections. `explain.rs` reports, for the admin
//! API, which layer set each key.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use natter_runtime::config::{check, Invalid};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub mod explain;

// The sections the crates own, with their defaults and rules.
pub use natter_api::HttpConfig as Http;
pub use natter_cluster::{ClusterSection, Strategy as AssignStrategy};
pub use natter_gateway::ShutdownConfig as Shutdown;
pub use natter_runtime::config::LimitsConfig as Limits;
pub use natter_runtime::load::OverloadConfig as Overload;
pub use natter_runtime::tls::TlsOptions as TlsSection;
pub use natter_service::files::{FilesConfig as FilesSection, StorageKind as FilesStorage};
pub use natter_service::{
    DirectMessages, EmailConfig as Email, EmailTls, PasswordConfig as Password,
    SessionConfig as Session, SocialConfig as Social, ThrottleConfig as Throttle,
};
pub use natter_store::model::DevicePolicy;
pub use natter_store::sqlite::Synchronous;
pub use natter_store::{Backend, Partition, StoreConfig};

pub use crate::server::logging::config::{Log, LogFormat};

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
    pub files: FilesSection,
    /// Optional: without an SMTP host no email is sent.
    pub email: Email,
}

/// The `[listen]` section: the addresses the binary binds. It stays here
/// with the binary (as `[log]` does, in `server/logging/`): the sockets are
/// bound by the binary (`server/listeners.rs`) and handed to the gateway
/// and the API already bound, so no crate reads these keys.
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
    /// The admin console and its API (`/admin`): empty serves them on the
    /// HTTP listener when that is a loopback address; an address gives them
    /// a listener of their own (and takes them off the HTTP one); `none`
    /// serves them nowhere.
    pub admin: String,
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
            files: FilesSection::default(),
            email: Email::default(),
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
            admin: String::new(),
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

impl From<Invalid> for ConfigError {
    fn from(Invalid { key, reason }: Invalid) -> Self {
        ConfigError::Invalid { key, reason }
    }
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

    /// Every section's rules, then those that span two sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen.validate(&self.tls)?;
        self.social.validate()?;
        self.limits.validate()?;
        self.http.validate()?;
        self.files.validate()?;
        self.throttle.validate()?;
        self.overload.validate()?;
        self.session.validate()?;
        self.password.validate()?;
        self.store.validate()?;
        self.cluster.validate()?;
        check(
            !self.cluster.enabled() || self.store.backend != Backend::Sqlite,
            "cluster.redis_url",
            || {
                "a cluster needs store.backend = \"postgres\" or \"mysql\": nodes share one database"
                    .into()
            },
        )?;
        self.log.validate()?;
        self.email.validate()?;
        Ok(())
    }
}

impl Listen {
    /// A TCP listener is required; a TLS one needs `[tls]`'s files.
    fn validate(&self, tls: &TlsSection) -> Result<(), Invalid> {
        check(!self.tcp.is_empty(), "listen.tcp", || {
            "a TCP address is required".into()
        })?;
        let tls_on = !(self.tcp_tls.is_empty() && self.ws_tls.is_empty() && self.https.is_empty());
        check(
            !tls_on || !tls.cert.as_os_str().is_empty(),
            "tls.cert",
            || "a TLS listener (listen.tcp_tls, ws_tls or https) needs a certificate file".into(),
        )?;
        check(
            !tls_on || !tls.key.as_os_str().is_empty(),
            "tls.key",
            || "a TLS listener (listen.tcp_tls, ws_tls or https) needs a key file".into(),
        )?;
        tls.validate()
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
        let e = from_toml("[store]\ncommit_delay_us = 10001").unwrap_err();
        assert!(e.to_string().contains("store.commit_delay_us"), "{e}");
        let c = from_toml("[store]\ncommit_delay_us = 0").unwrap();
        assert_eq!(c.store.commit_delay_us, 0);
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
            ("[log]\nring_lines = 1000001", "log.ring_lines"),
            ("[log]\nring_bytes = 1000", "log.ring_bytes"),
        ] {
            let e = from_toml(toml).unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
        let c =
            from_toml("[log]\nstdout = false\nfile = \"n.log\"\nrotate_every = \"6h\"").unwrap();
        assert_eq!(c.log.file, PathBuf::from("n.log"));
        let c = from_toml("[log]\nrepeat_burst = 0\nrepeat_window_ms = 0").unwrap();
        assert_eq!(c.log.repeat_burst, 0);
        // A ring that is off needs no room.
        let c = from_toml("[log]\nring_lines = 0\nring_bytes = 0").unwrap();
        assert_eq!(c.log.ring_lines, 0);
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
