//! The moving parts behind `FaultProxy`: the accept loop and the per-connection
//! relay, both of which re-read the fault mode whenever it changes so that a
//! fault lands on connections that are already open, not only on new ones.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Mode;

/// One read's worth; small enough that a delayed chunk is a realistic packet
/// train, large enough that `Pass` is not the bottleneck of a test.
const CHUNK: usize = 16 * 1024;

/// How much one direction may hold while delaying (`Slow`) before it stops
/// reading; beyond this the peer sees TCP back-pressure, as on a slow link.
const MAX_HELD: usize = 256 * 1024;

/// How long to back off after a failed accept (say, out of descriptors), so
/// the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) open: AtomicUsize,
}

/// Counts a relayed connection as open for exactly as long as its task's
/// future lives, including when the task is aborted before it first runs.
struct OpenGuard(Arc<Counters>);

impl OpenGuard {
    fn new(counters: Arc<Counters>) -> OpenGuard {
        counters.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(counters)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a relay direction stopped early, which decides how the sockets close.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The mode went to `Cut`: the peers should see a reset, like a dead link.
    Cut,
    /// The proxy was dropped.
    Shutdown,
    /// A read or write failed; the other side just gets closed.
    Failed,
}

/// Accepts until the proxy is dropped (its mode sender goes away or this task
/// is aborted). Connection tasks live in the `JoinSet`, so however this
/// future ends, dropping it aborts every relayed connection with it.
pub(crate) async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    counters.accepted.fetch_add(1, Ordering::SeqCst);
                    if *mode.borrow() == Mode::Cut {
                        reset(&stream);
                        continue;
                    }
                    let guard = OpenGuard::new(Arc::clone(&counters));
                    conns.spawn(relay(stream, upstream, mode.clone(), guard));
                }
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
            // Reaps finished connections so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            changed = mode.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    _open: OpenGuard,
) {
    let connected = tokio::select! {
        connected = TcpStream::connect(upstream) => connected,
        () = until_cut(&mut mode) => {
            reset(&client);
            return;
        }
    };
    let Ok(mut server) = connected else {
        reset(&client);
        return;
    };
    // Chunks are forwarded as they come; Nagle would add its own delay on
    // top of the one under test.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let outcome = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        tokio::try_join!(
            pump(client_read, server_write, mode.clone(), Toward::Server),
            pump(server_read, client_write, mode.clone(), Toward::Client),
        )
    };
    // Either direction may notice first, and the other may already have
    // failed on the dying socket; the mode itself says whether this was a cut.
    if outcome == Err(Stop::Cut) || *mode.borrow() == Mode::Cut {
        reset(&client);
        reset(&server);
    }
}

/// Resolves once the mode is `Cut` or the proxy is gone.
async fn until_cut(mode: &mut watch::Receiver<Mode>) {
    loop {
        if *mode.borrow_and_update() == Mode::Cut {
            return;
        }
        if mode.changed().await.is_err() {
            return;
        }
    }
}

/// Makes the coming close a reset rather than an orderly FIN, so the peer
/// learns at once that the link died instead of reading a clean end.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Bytes read but not yet written on, with when they may be written.
struct Held {
    due: Instant,
    bytes: Vec<u8>,
    sent: usize,
}

enum Event {
    ModeChanged,
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
}

/// Copies one direction, holding bytes in arrival order. Reading and writing
/// are separate select branches so that `Slow` delays each chunk from when it
/// arrived (a latency, not a bandwidth cap), and so that a mode change is seen
/// even while the peer is not reading. Ends `Ok` after relaying the sender's
/// end of stream.
/// Which way a pump copies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Toward {
    Server,
    Client,
}

async fn pump<R, W>(
    mut from: R,
    mut to: W,
    mut mode: watch::Receiver<Mode>,
    toward: Toward,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut held_bytes = 0usize;
    let mut eof = false;
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Cut {
            return Err(Stop::Cut);
        }
        if eof && held.is_empty() {
            let _ = to.shutdown().await;
            return Ok(());
        }
        // Stall reads nothing as well as writing nothing, so what the sender
        // writes meanwhile waits in the kernel and keeps its order.
        let flowing = match current {
            Mode::Stall => false,
            Mode::HoldReplies => toward == Toward::Server,
            _ => true,
        };
        let can_read = flowing && !eof && held_bytes < MAX_HELD;
        let can_write = flowing && !held.is_empty();
        let event = tokio::select! {
            changed = mode.changed() => match changed {
                Ok(()) => Event::ModeChanged,
                Err(_) => return Err(Stop::Shutdown),
            },
            read = from.read(&mut buf), if can_read => Event::Read(read),
            wrote = write_when_due(&mut to, held.front()), if can_write => Event::Wrote(wrote),
        };
        match event {
            Event::ModeChanged => {}
            Event::Read(Ok(0)) => eof = true,
            Event::Read(Ok(n)) => {
                let delay = match current {
                    Mode::Slow(ms) => Duration::from_millis(ms),
                    _ => Duration::ZERO,
                };
                held_bytes += n;
                held.push_back(Held {
                    due: Instant::now() + delay,
                    bytes: buf[..n].to_vec(),
                    sent: 0,
                });
            }
            Event::Wrote(Ok(0)) | Event::Read(Err(_)) | Event::Wrote(Err(_)) => {
                return Err(Stop::Failed)
            }
            Event::Wrote(Ok(n)) => {
                if let Some(head) = held.front_mut() {
                    head.sent += n;
                    if head.sent == head.bytes.len() {
                        held_bytes -= head.bytes.len();
                        held.pop_front();
                    }
                }
            }
        }
    }
}

/// Waits for the head chunk's time, then writes what is left of it. A single
/// `write` (not `write_all`) so that being cancelled by another branch never
/// loses track of how much went out.
async fn write_when_due<W>(to: &mut W, head: Option<&Held>) -> std::io::Result<usize>
where
    W: AsyncWrite + Unpin,
{
    let Some(head) = head else {
        return std::future::pending().await;
    };
    if Instant::now() < head.due {
        tokio::time::sleep_until(head.due).await;
    }
    to.write(&head.bytes[head.sent..]).await
}
