//! The `[cluster]` section of the server's configuration, with its defaults
//! and rules, and the `ClusterConfig` a node joins with, made from it and
//! what only the running node knows (its id, its bound addresses).

use crate::{ClusterConfig, Strategy};
use natter_runtime::config::{check, Invalid};
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
    /// The same for the TLS listeners (`listen.tcp_tls`, `ws_tls`,
    /// `https`); empty: the bound address, or none when not bound.
    pub advertise_tcp_tls: String,
    pub advertise_wss: String,
    pub advertise_https: String,
    /// How the assignment endpoint picks a node.
    pub assign: Strategy,
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

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            redis_url: String::new(),
            name: "natter".into(),
            node_id: String::new(),
            advertise_tcp: String::new(),
            advertise_ws: String::new(),
            advertise_http: String::new(),
            advertise_tcp_tls: String::new(),
            advertise_wss: String::new(),
            advertise_https: String::new(),
            assign: Strategy::LeastLoaded,
            report_interval_ms: 2_000,
            presence_ttl_ms: 60_000,
            bus_queue: 65_536,
            rebalance_min_excess: 100,
            rebalance_per_sec: 20,
        }
    }
}

/// The addresses a node's listeners are bound to (empty: not bound), used
/// where no `advertise_*` address is configured.
#[derive(Clone, Debug, Default)]
pub struct Bound {
    pub tcp: String,
    pub ws: String,
    pub http: String,
    /// The TLS listeners: frames, WebSocket, HTTPS.
    pub tcp_tls: String,
    pub wss: String,
    pub https: String,
}

fn or(configured: &str, bound: &str) -> String {
    if configured.is_empty() {
        bound.to_owned()
    } else {
        configured.to_owned()
    }
}

impl ClusterSection {
    /// Whether this node is in a cluster at all.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }

    /// The section's rules, checked only when the cluster is on. (That a
    /// cluster needs the PostgreSQL store is the binary's rule: it spans
    /// two sections.)
    pub fn validate(&self) -> Result<(), Invalid> {
        if !self.enabled() {
            return Ok(());
        }
        check(
            self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://"),
            "cluster.redis_url",
            || "must be a redis:// URL".into(),
        )?;
        let name_ok = |s: &str| {
            s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        check(name_ok(&self.node_id), "cluster.node_id", || {
            "at most 64 of a-z A-Z 0-9 - _ .".into()
        })?;
        check(
            !self.name.is_empty() && name_ok(&self.name),
            "cluster.name",
            || "1 to 64 of a-z A-Z 0-9 - _ .".into(),
        )?;
        check(
            (100..=60_000).contains(&self.report_interval_ms),
            "cluster.report_interval_ms",
            || "must be between 100 and 60000".into(),
        )?;
        check(
            self.presence_ttl_ms >= 3 * self.report_interval_ms,
            "cluster.presence_ttl_ms",
            || "must be at least 3 × cluster.report_interval_ms".into(),
        )?;
        check(self.bus_queue >= 1, "cluster.bus_queue", || {
            "must be at least 1".into()
        })
    }

    /// The addresses clients are sent to: advertised, else bound.
    pub fn advertised(&self, bound: &Bound) -> Bound {
        Bound {
            tcp: or(&self.advertise_tcp, &bound.tcp),
            ws: or(&self.advertise_ws, &bound.ws),
            http: or(&self.advertise_http, &bound.http),
            tcp_tls: or(&self.advertise_tcp_tls, &bound.tcp_tls),
            wss: or(&self.advertise_wss, &bound.wss),
            https: or(&self.advertise_https, &bound.https),
        }
    }

    /// What the node joins with: this section plus what only the running
    /// node knows.
    pub fn join_config(
        &self,
        node_id: String,
        bound: &Bound,
        max_connections: usize,
        reconnect_after: Duration,
    ) -> ClusterConfig {
        let ms = Duration::from_millis;
        let a = self.advertised(bound);
        ClusterConfig {
            redis_url: self.redis_url.clone(),
            name: self.name.clone(),
            node_id,
            advertise_tcp: a.tcp,
            advertise_ws: a.ws,
            advertise_http: a.http,
            advertise_tcp_tls: a.tcp_tls,
            advertise_wss: a.wss,
            advertise_https: a.https,
            report_interval: ms(self.report_interval_ms),
            presence_ttl: ms(self.presence_ttl_ms),
            strategy: self.assign,
            bus_queue: self.bus_queue,
            max_connections,
            rebalance_min_excess: self.rebalance_min_excess,
            rebalance_per_sec: self.rebalance_per_sec,
            reconnect_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_addresses_are_advertised_else_bound_else_none() {
        let bound = Bound {
            tcp: "0.0.0.0:7700".into(),
            tcp_tls: "0.0.0.0:7443".into(),
            https: "0.0.0.0:7843".into(),
            ..Bound::default()
        };
        let section = ClusterSection {
            advertise_tcp_tls: "chat.example:443".into(),
            ..ClusterSection::default()
        };
        let a = section.advertised(&bound);
        assert_eq!(a.tcp_tls, "chat.example:443");
        assert_eq!(a.https, "0.0.0.0:7843");
        assert_eq!(a.wss, "", "no listener, nothing advertised");
        let c = section.join_config("n1".into(), &bound, 10, Duration::from_secs(1));
        assert_eq!(c.advertise_tcp_tls, "chat.example:443");
        assert_eq!(c.advertise_https, "0.0.0.0:7843");
    }
}
