//! How a connection is taken on: its place among the connections, the TLS
//! and WebSocket handshakes, then [`run`]. Each kind is a chain of futures,
//! each in the place of the one before, so that a connection's task keeps
//! no room for the handshakes it went through (a task reserves room for
//! the largest state its future may reach, for its whole life).

use crate::connection::{run, Admitted};
use crate::outbound::Close;
use crate::transport::{self, Kind};
use crate::Gateway;
use natter_runtime::tls::Acceptor;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Runs `f` (a handshake) unless the connection is evicted first.
async fn unless_evicted<F: std::future::Future>(
    admitted: &Result<Admitted, Close>,
    f: F,
) -> Option<F::Output> {
    let Ok(a) = admitted else {
        return Some(f.await);
    };
    let evicted = a.unauth.evicted();
    tokio::select! {
        _ = evicted.cancelled() => None,
        r = f => Some(r),
    }
}

/// Serves a plain TCP connection. Two futures one after the other, not an
/// `async fn`: that would keep its arguments (144 bytes) for the
/// connection's whole life, where here the second takes the place of the
/// first.
pub(crate) fn serve_tcp(
    gw: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Result<Admitted, Close>,
) -> impl std::future::Future<Output = ()> + Send {
    use futures_util::FutureExt;
    gw.clone().take_place(admitted).then(move |admitted| {
        let (r, w) = transport::tcp(stream, gw.config.max_preauth_frame_bytes);
        run(gw, r, w, peer, Kind::Tcp, admitted)
    })
}

/// Serves a plain WebSocket connection: its place, then the upgrade, then
/// the connection, each future in the place of the one before.
pub(crate) fn serve_ws(
    gw: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Result<Admitted, Close>,
) -> impl std::future::Future<Output = ()> + Send {
    use futures_util::FutureExt;
    gw.clone()
        .take_place(admitted)
        .then(move |admitted| upgrade(gw, stream, peer, admitted))
}

/// Serves a connection over TLS, frames or WebSocket: its place and the
/// TLS handshake, then the connection (or its upgrade), the second future
/// in the place of the first.
pub(crate) fn serve_tls(
    gw: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    kind: Kind,
    tls: Acceptor,
    admitted: Result<Admitted, Close>,
) -> impl std::future::Future<Output = ()> + Send {
    use futures_util::future::Either;
    use futures_util::FutureExt;
    let placing = gw.clone();
    async move {
        // The handshake counts against the time a connection has to log in.
        let timeout = placing.config.auth_timeout;
        let admitted = placing.take_place(admitted).await;
        let accepted = unless_evicted(&admitted, tls.accept(stream, timeout)).await;
        (admitted, accepted)
    }
    .then(move |(admitted, accepted)| {
        let Some(Some(stream)) = accepted else {
            return Either::Right(Either::Right(std::future::ready(())));
        };
        match kind {
            Kind::Tcp => {
                let (r, w) = transport::tcp_tls(stream, gw.config.max_preauth_frame_bytes);
                Either::Left(run(gw, r, w, peer, kind, admitted))
            }
            Kind::WebSocket => Either::Right(Either::Left(upgrade(gw, stream, peer, admitted))),
        }
    })
}

/// The WebSocket handshake (within the time to log in, unless evicted),
/// then the connection. Two futures in turn: the connection's task keeps
/// no room for the handshake, nor the arguments it was made from.
fn upgrade<S>(
    gw: Arc<Gateway>,
    stream: S,
    peer: SocketAddr,
    admitted: Result<Admitted, Close>,
) -> impl std::future::Future<Output = ()> + Send
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::future::Either;
    use futures_util::FutureExt;
    let cfg = &gw.config;
    let upgrade = transport::websocket(
        stream,
        cfg.max_frame_bytes,
        cfg.max_preauth_frame_bytes,
        cfg.max_preauth_bytes,
    );
    // Boxed: the handshake's state is not kept for the connection's life.
    let upgrade = Box::pin(tokio::time::timeout(cfg.auth_timeout, upgrade));
    async move {
        let upgraded = unless_evicted(&admitted, upgrade).await;
        (gw, admitted, upgraded)
    }
    .then(move |(gw, admitted, upgraded)| match upgraded {
        Some(Ok(Ok((r, w)))) => Either::Left(run(gw, r, w, peer, Kind::WebSocket, admitted)),
        failed => {
            match failed {
                Some(Ok(Err(e))) => {
                    tracing::debug!(%peer, error = %e, "websocket handshake failed")
                }
                Some(Err(_)) => tracing::debug!(%peer, "websocket handshake timed out"),
                _ => tracing::debug!(%peer, "evicted during the websocket handshake"),
            }
            Either::Right(std::future::ready(()))
        }
    })
}
