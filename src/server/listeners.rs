//! The sockets a server serves, bound before it starts (port 0 allowed), so
//! tests and scripts can learn the addresses before anything is accepted.

use crate::config;
use anyhow::Context;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// The sockets a server serves, bound before it starts (port 0 allowed).
pub struct Listeners {
    pub tcp: TcpListener,
    pub ws: Option<TcpListener>,
    pub http: Option<TcpListener>,
    /// The same over TLS (`listen.tcp_tls`, `ws_tls`, `https`).
    pub tcp_tls: Option<TcpListener>,
    pub ws_tls: Option<TcpListener>,
    pub https: Option<TcpListener>,
    /// The admin console's own listener (`listen.admin`), when it has one.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds every listener. The metrics recorder is installed first, so
    /// that no connection is ever accepted before it can be counted.
    pub async fn bind(listen: &config::Listen) -> anyhow::Result<Listeners> {
        super::metrics::handle();
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
            admin: match listen.admin.as_str() {
                "none" => None,
                a => bind("admin", a).await?,
            },
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

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
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
