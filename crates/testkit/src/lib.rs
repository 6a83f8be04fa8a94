//! natter's test kit: throwaway PostgreSQL schemas (`pg`) and MySQL databases
//! (`my`), and a TCP proxy on 127.0.0.1 that sits between a test's
//! client and a real server and injects link faults on demand (cut, stall,
//! slow), so outage behaviour can be tested without touching the network.
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) -> std::io::Result<()> {
//! use natter_testkit::{FaultProxy, Mode};
//! let proxy = FaultProxy::start(server).await?;
//! // ... point the client at proxy.addr() ...
//! proxy.set(Mode::Cut); // every relayed connection dies now
//! proxy.set(Mode::Pass); // and new ones work again
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod my;
pub mod pg;
mod relay;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::relay::Counters;

/// The fault applied to every relayed connection, open or new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Relay bytes both ways unchanged.
    Pass,
    /// Reset every relayed connection at once (both sides) and refuse new
    /// ones: they are accepted and reset immediately.
    Cut,
    /// Keep connections open but forward nothing either way. Bytes are held,
    /// not dropped, and flow again in order when the mode leaves `Stall`.
    /// New connections are accepted and connected upstream, then held too.
    Stall,
    /// Relay, delaying every chunk by this many milliseconds from when it
    /// arrived, in each direction, order preserved.
    Slow(u64),
    /// Relay toward the server, but hold everything coming back (held,
    /// not dropped): the server does what it is asked and its answers are
    /// lost to the client, as when a link dies after a request went out.
    HoldReplies,
}

/// A fault-injecting proxy on 127.0.0.1 in front of one upstream address.
///
/// Dropping it stops the listener and closes every relayed connection.
/// It must be started, used and dropped inside a tokio runtime.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    counters: Arc<Counters>,
    listener: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and relays each accepted connection to
    /// `upstream`, starting in [`Mode::Pass`].
    ///
    /// `upstream` must be a loopback address: this is a test fixture and
    /// should never carry a test's traffic off the machine.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("FaultProxy relays only to loopback, not {upstream}"),
            ));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (mode, observed) = watch::channel(Mode::Pass);
        let counters = Arc::new(Counters::default());
        // Owned by the proxy, which aborts it when dropped.
        #[allow(clippy::disallowed_methods)]
        let listener = tokio::spawn(relay::serve(
            listener,
            upstream,
            observed,
            Arc::clone(&counters),
        ));
        Ok(FaultProxy {
            addr,
            mode,
            counters,
            listener,
        })
    }

    /// Where clients should connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the fault for existing and new connections.
    pub fn set(&self, mode: Mode) {
        // Setting the mode it already has wakes no relay.
        self.mode.send_if_modified(|current| {
            let changed = *current != mode;
            *current = mode;
            changed
        });
    }

    /// The fault now in force.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Connections accepted so far, including those refused under `Cut`.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Relayed connections currently open.
    pub fn open(&self) -> usize {
        self.counters.open.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The listener task owns the connection tasks, so aborting it takes
        // them all down; the mode sender going away afterwards also tells
        // every relay loop to stop, should one be mid-poll on another thread.
        self.listener.abort();
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("mode", &self.mode())
            .field("accepted", &self.accepted())
            .field("open", &self.open())
            .finish()
    }
}

/// Spawns a test's task. A test owns and awaits (or drops) what it spawns,
/// so it needs no tracker; this is the one place tests may call
/// `tokio::spawn`, and the clock bans stay on in every test file.
#[allow(clippy::disallowed_methods)] // see above: a test owns the tasks it spawns
pub fn spawn<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(task)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::{timeout, Instant};

    /// For what must happen: long enough never to flake on a loaded machine.
    const HAPPENS: Duration = Duration::from_secs(2);
    /// For what must not happen: only as long as it takes to be convincing.
    const NOT_YET: Duration = Duration::from_millis(200);

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        super::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                super::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, msg: &[u8]) {
        stream.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        timeout(HAPPENS, stream.read_exact(&mut back))
            .await
            .expect("echo within the timeout")
            .unwrap();
        assert_eq!(back, msg);
    }

    /// A closed connection reads as end of stream or as a reset, within
    /// `limit`; bytes that were already on their way may come first.
    async fn assert_closed(stream: &mut TcpStream, limit: Duration) {
        let drained = async {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        assert!(
            timeout(limit, drained).await.is_ok(),
            "connection still open after {limit:?}"
        );
    }

    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + HAPPENS;
        while !cond() {
            assert!(Instant::now() < deadline, "{what} within {HAPPENS:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn pass_relays_bytes_both_ways() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        assert_eq!(proxy.mode(), Mode::Pass);
        let stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let sent: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let writer = {
            let sent = sent.clone();
            // Hands the half back: dropping it would half-close the stream
            // and so, correctly, end the relay before the checks below.
            super::spawn(async move {
                w.write_all(&sent).await.unwrap();
                w
            })
        };
        let mut got = vec![0u8; sent.len()];
        timeout(HAPPENS, r.read_exact(&mut got))
            .await
            .expect("64 KiB echoed within the timeout")
            .unwrap();
        let _w = writer.await.unwrap();
        assert!(got == sent, "echoed bytes differ from those sent");
        assert_eq!(proxy.accepted(), 1);
        assert_eq!(proxy.open(), 1);
    }

    #[tokio::test]
    async fn cut_closes_open_connections_and_refuses_new_ones() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut open, b"before").await;

        // In flight: the request is out, the cut lands before it is read back.
        open.write_all(b"in flight").await.unwrap();
        proxy.set(Mode::Cut);
        assert_eq!(proxy.mode(), Mode::Cut);
        assert_closed(&mut open, Duration::from_secs(1)).await;
        eventually("the cut connection is no longer open", || proxy.open() == 0).await;

        match timeout(HAPPENS, TcpStream::connect(proxy.addr())).await {
            Ok(Ok(mut refused)) => assert_closed(&mut refused, HAPPENS).await,
            Ok(Err(_)) => {}
            Err(_) => panic!("connect neither finished nor failed"),
        }

        proxy.set(Mode::Pass);
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut again, b"after").await;
        assert_eq!(proxy.open(), 1);
    }

    #[tokio::test]
    async fn stall_holds_bytes_then_releases_them_in_order() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut stream, b"warm").await;

        proxy.set(Mode::Stall);
        stream.write_all(b"hello ").await.unwrap();
        stream.write_all(b"world").await.unwrap();
        let mut buf = [0u8; 11];
        assert!(
            timeout(NOT_YET, stream.read(&mut buf)).await.is_err(),
            "bytes went through a stalled proxy"
        );
        // A connection made during the stall is held the same way.
        let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
        late.write_all(b"late").await.unwrap();
        let mut late_buf = [0u8; 4];
        assert!(
            timeout(NOT_YET, late.read(&mut late_buf)).await.is_err(),
            "a new connection's bytes went through a stalled proxy"
        );
        assert_eq!(proxy.open(), 2);

        proxy.set(Mode::Pass);
        timeout(HAPPENS, stream.read_exact(&mut buf))
            .await
            .expect("held bytes arrive after the stall")
            .unwrap();
        assert_eq!(&buf, b"hello world");
        timeout(HAPPENS, late.read_exact(&mut late_buf))
            .await
            .expect("the late connection's bytes arrive after the stall")
            .unwrap();
        assert_eq!(&late_buf, b"late");
    }

    /// The request reaches the server (a second upstream connection shows
    /// it was relayed: the echo server answers), but the answer is held.
    #[tokio::test]
    async fn hold_replies_lets_requests_through_and_keeps_the_answers() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut stream, b"warm").await;
        proxy.set(Mode::HoldReplies);
        stream.write_all(b"sent").await.unwrap();
        let mut buf = [0u8; 4];
        assert!(
            timeout(NOT_YET, stream.read(&mut buf)).await.is_err(),
            "an answer went through while replies were held"
        );
        proxy.set(Mode::Pass);
        timeout(HAPPENS, stream.read_exact(&mut buf))
            .await
            .expect("the held answer arrives")
            .unwrap();
        assert_eq!(&buf, b"sent", "the request had reached the server");
    }

    #[tokio::test]
    async fn slow_delays_each_chunk_and_keeps_order() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut stream, b"warm").await;

        proxy.set(Mode::Slow(100));
        let started = Instant::now();
        round_trip(&mut stream, b"ping").await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(90),
            "round trip took {took:?}"
        );

        for part in [&b"one "[..], b"two ", b"three"] {
            stream.write_all(part).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut buf = [0u8; 13];
        timeout(HAPPENS, stream.read_exact(&mut buf))
            .await
            .expect("delayed chunks arrive")
            .unwrap();
        assert_eq!(&buf, b"one two three");
    }

    #[tokio::test]
    async fn drop_stops_the_listener_and_closes_relayed_connections() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let addr = proxy.addr();
        let mut open = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut open, b"alive").await;

        drop(proxy);
        assert_closed(&mut open, HAPPENS).await;
        match timeout(HAPPENS, TcpStream::connect(addr)).await {
            Ok(Ok(mut late)) => assert_closed(&mut late, HAPPENS).await,
            Ok(Err(_)) => {}
            Err(_) => panic!("connect neither finished nor failed"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_upstream_closes_the_client() {
        // Bind then drop to get a loopback port that refuses connections.
        let dead = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            l.local_addr().unwrap()
        };
        let proxy = FaultProxy::start(dead).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_closed(&mut stream, HAPPENS).await;
        eventually("the failed relay is no longer open", || proxy.open() == 0).await;
        assert_eq!(proxy.accepted(), 1);
    }

    #[tokio::test]
    async fn only_loopback_upstreams_are_accepted() {
        let err = FaultProxy::start("192.0.2.1:80".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
