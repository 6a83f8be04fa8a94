//! TCP and WebSocket differ only in how bytes arrive and leave: both yield
//! frames through the same decoder and take encoded frames to write.

use crate::outbound::Farewell;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use natter_proto::pb::DisconnectReason;
use natter_proto::{Frame, FrameDecoder, FrameError};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    WebSocket,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::WebSocket => "ws",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("text WebSocket messages are not part of the protocol")]
    TextMessage,
    /// A WebSocket sent more than its pre-login budget: answered like a
    /// frame too large.
    #[error("more than {max} bytes sent")]
    OverBudget { max: usize },
    #[error("i/o: {0}")]
    Io(String),
}

pub trait FrameRead: Send {
    /// The next whole frame, `None` on a clean end of stream. Cancel-safe:
    /// bytes already read stay buffered.
    fn read_frame(&mut self) -> impl Future<Output = Result<Option<Frame>, ReadError>> + Send;
    /// Lifts the limits that hold before login: frames may now be as large
    /// as `max_frame_bytes`.
    fn authenticated(&mut self, max_frame_bytes: usize);
}

/// Writes encoded frames: `start` takes a batch, `poll_written` writes it
/// to its end. The write in flight is kept here, not in a future, so its
/// caller may stop polling between any two polls and carry on.
pub trait FrameWrite: Send + 'static {
    /// Takes `frames` as the next write; called only once the last one is
    /// written.
    fn start(&mut self, frames: &[Bytes]);
    /// Writes what `start` took, and flushes; `Ready(Ok)` once all of it
    /// is written (at once when nothing was started).
    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
    /// Ends the stream; `why` is the Disconnect just sent, if any (a
    /// WebSocket says it again in its close frame).
    fn shutdown(&mut self, why: Option<&Farewell>) -> impl Future<Output = ()> + Send;
}

/// Reads whatever the socket has, up to this much at a time, into a buffer
/// that exists only while a frame is partly received.
const READ_CHUNK: usize = 4096;

/// A WebSocket's read buffer: allocated at the handshake and kept, filled,
/// for the connection's life, and the most one read asks of the socket. At
/// 4,096 bytes it was more than half of an idle WebSocket connection's
/// memory (7.6 KB against 4.2 KB at 512, docs/BENCHMARKS.md); a frame
/// larger than it takes one read per 512 bytes, which a 60 KB message felt
/// (within the noise, ~10 %) and a chat message does not.
const WS_READ_BUFFER: usize = 512;

/// Frames from a byte stream: a plain socket's read half, or a TLS
/// stream's.
pub struct TcpRead<R = OwnedReadHalf> {
    rd: R,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl<R: AsyncRead + Unpin + Send> FrameRead for TcpRead<R> {
    async fn read_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.buf.is_empty() {
                // An idle connection holds no read buffer at all (an empty
                // one may still share the allocation the last frame was
                // cut from, with no room left in it).
                self.buf = BytesMut::new();
            }
            let (rd, buf) = (&mut self.rd, &mut self.buf);
            let read = std::future::poll_fn(|cx| {
                // The chunk lives only inside one poll, so it costs the
                // task's future nothing; only the bytes read are kept. A
                // read through poll_read (unlike try_read) that comes back
                // short marks the socket drained, which saves the read that
                // would only have said "would block".
                let mut chunk = [0u8; READ_CHUNK];
                let mut rb = ReadBuf::new(&mut chunk);
                match Pin::new(&mut *rd).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        buf.extend_from_slice(rb.filled());
                        Poll::Ready(Ok(rb.filled().len()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match read {
                Ok(0) => {
                    return if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(ReadError::Truncated)
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(ReadError::Io(e.to_string())),
            }
        }
    }

    fn authenticated(&mut self, max_frame_bytes: usize) {
        self.decoder = FrameDecoder::new(max_frame_bytes);
    }
}

pub struct TcpWrite<W = OwnedWriteHalf> {
    wr: W,
    /// The write in flight: one frame as it is, or several copied into
    /// `scratch` so that they leave in one syscall.
    pending: Pending,
    /// Bytes of it written so far.
    at: usize,
    scratch: BytesMut,
}

enum Pending {
    Nothing,
    One(Bytes),
    Scratch,
}

impl<W: AsyncWrite + Unpin + Send + 'static> FrameWrite for TcpWrite<W> {
    fn start(&mut self, frames: &[Bytes]) {
        self.at = 0;
        self.pending = match frames {
            [] => Pending::Nothing,
            [one] => Pending::One(one.clone()),
            many => {
                self.scratch.clear();
                for f in many {
                    self.scratch.extend_from_slice(f);
                }
                Pending::Scratch
            }
        };
    }

    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let rest = match &self.pending {
                Pending::Nothing => &[][..],
                Pending::One(b) => &b[self.at..],
                Pending::Scratch => &self.scratch[self.at..],
            };
            if rest.is_empty() {
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.wr).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.at += n;
        }
        // A plain socket has nothing to flush; TLS may hold a record.
        std::task::ready!(Pin::new(&mut self.wr).poll_flush(cx))?;
        self.pending = Pending::Nothing;
        self.at = 0;
        if self.scratch.capacity() > 256 * 1024 {
            self.scratch = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    async fn shutdown(&mut self, _: Option<&Farewell>) {
        let _ = self.wr.shutdown().await;
    }
}

/// `max_frame_bytes` is the limit before login; see [`FrameRead::authenticated`].
pub fn tcp(stream: TcpStream, max_frame_bytes: usize) -> (TcpRead, TcpWrite) {
    let (rd, wr) = stream.into_split();
    halves(rd, wr, max_frame_bytes)
}

/// A TLS connection on a TCP socket.
type Tls = TlsStream<TcpStream>;

/// The same over TLS: the stream's halves share it through a lock.
pub fn tcp_tls(
    stream: TlsStream<TcpStream>,
    max_frame_bytes: usize,
) -> (TcpRead<ReadHalf<Tls>>, TcpWrite<WriteHalf<Tls>>) {
    let (rd, wr) = tokio::io::split(stream);
    halves(rd, wr, max_frame_bytes)
}

fn halves<R, W>(rd: R, wr: W, max_frame_bytes: usize) -> (TcpRead<R>, TcpWrite<W>) {
    (
        TcpRead {
            rd,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max_frame_bytes),
        },
        TcpWrite {
            wr,
            pending: Pending::Nothing,
            at: 0,
            scratch: BytesMut::new(),
        },
    )
}

/// A socket that lets through at most a budget of bytes, until the budget
/// is lifted. A WebSocket library buffers whole messages before natter sees
/// them, so before login the socket itself bounds what a client can make the
/// server hold.
pub struct Budgeted<S = TcpStream> {
    inner: S,
    left: Arc<AtomicUsize>,
}

const UNLIMITED: usize = usize::MAX;

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let left = self.left.load(Ordering::Relaxed);
        if left == UNLIMITED {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        if left == 0 {
            return Poll::Ready(Err(std::io::Error::other(
                "too many bytes before logging in",
            )));
        }
        let mut chunk = [0u8; READ_CHUNK];
        let n = left.min(buf.remaining()).min(READ_CHUNK);
        let mut rb = ReadBuf::new(&mut chunk[..n]);
        match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(rb.filled());
                self.left.fetch_sub(rb.filled().len(), Ordering::Relaxed);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub struct WsRead<S = TcpStream> {
    rd: SplitStream<WebSocketStream<Budgeted<S>>>,
    buf: BytesMut,
    decoder: FrameDecoder,
    budget: Arc<AtomicUsize>,
    /// The budget it started with.
    preauth_bytes: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> FrameRead for WsRead<S> {
    async fn read_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.buf.is_empty() {
                self.buf = BytesMut::new();
            }
            match self.rd.next().await {
                None | Some(Ok(Message::Close(_))) => {
                    return if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(ReadError::Truncated)
                    };
                }
                Some(Ok(Message::Binary(data))) => self.buf.extend_from_slice(&data),
                Some(Ok(Message::Text(_))) => return Err(ReadError::TextMessage),
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(_)) => {}
                // The socket refuses to read past the budget.
                Some(Err(_)) if self.budget.load(Ordering::Relaxed) == 0 => {
                    return Err(ReadError::OverBudget {
                        max: self.preauth_bytes,
                    });
                }
                // A message past the frame limit, refused by the WebSocket
                // layer before it was all read.
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                    return Err(ReadError::Frame(FrameError::TooLarge {
                        len: size,
                        max: max_size,
                    }));
                }
                Some(Err(e)) => return Err(ReadError::Io(e.to_string())),
            }
        }
    }

    fn authenticated(&mut self, max_frame_bytes: usize) {
        self.decoder = FrameDecoder::new(max_frame_bytes);
        self.budget.store(UNLIMITED, Ordering::Relaxed);
    }
}

pub struct WsWrite<S = TcpStream> {
    wr: SplitSink<WebSocketStream<Budgeted<S>>, Message>,
    /// Frames of the write in flight not yet handed to the WebSocket.
    pending: VecDeque<Bytes>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> FrameWrite for WsWrite<S> {
    fn start(&mut self, frames: &[Bytes]) {
        self.pending.extend(frames.iter().cloned());
    }

    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pending.is_empty() {
            std::task::ready!(self.wr.poll_ready_unpin(cx)).map_err(std::io::Error::other)?;
            if let Some(f) = self.pending.pop_front() {
                self.wr
                    .start_send_unpin(Message::Binary(f))
                    .map_err(std::io::Error::other)?;
            }
        }
        if self.pending.capacity() > 64 {
            self.pending = VecDeque::new();
        }
        self.wr.poll_flush_unpin(cx).map_err(std::io::Error::other)
    }

    async fn shutdown(&mut self, why: Option<&Farewell>) {
        if let Some(why) = why {
            let frame = CloseFrame {
                code: close_code(why),
                reason: close_reason(&why.message).into(),
            };
            let _ = self.wr.send(Message::Close(Some(frame))).await;
        }
        let _ = self.wr.close().await;
    }
}

/// The WebSocket close code that goes with a Disconnect (docs/PROTOCOL.md
/// §1): the Disconnect frame before it says the rest.
fn close_code(why: &Farewell) -> CloseCode {
    if why.too_large {
        return CloseCode::Size;
    }
    match why.reason {
        DisconnectReason::GoingAway => CloseCode::Away,
        DisconnectReason::ProtocolError => CloseCode::Policy,
        DisconnectReason::ServerFull => CloseCode::Again,
        _ => CloseCode::Normal,
    }
}

/// A close frame's reason holds at most 123 bytes: `message` cut to fit, at
/// a character boundary.
fn close_reason(message: &str) -> &str {
    let mut end = message.len().min(123);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Upgrades to WebSocket. Until login the connection may send at most
/// `preauth_bytes` (the HTTP upgrade included) in frames of at most
/// `preauth_frame_bytes`; after it, frames up to `max_frame_bytes`.
pub async fn websocket<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    max_frame_bytes: usize,
    preauth_frame_bytes: usize,
    preauth_bytes: usize,
) -> Result<(WsRead<S>, WsWrite<S>), ReadError> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_frame_bytes + natter_proto::LENGTH_LEN))
        .max_frame_size(Some(max_frame_bytes + natter_proto::LENGTH_LEN))
        // The library's defaults (128 KiB each way, allocated up front) would
        // be most of an idle connection's memory.
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(4 * max_frame_bytes);
    let budget = Arc::new(AtomicUsize::new(preauth_bytes));
    let stream = Budgeted {
        inner: stream,
        left: budget.clone(),
    };
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config))
        .await
        .map_err(|e| ReadError::Io(e.to_string()))?;
    let (wr, rd) = ws.split();
    Ok((
        WsRead {
            rd,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(preauth_frame_bytes),
            budget,
            preauth_bytes,
        },
        WsWrite {
            wr,
            pending: VecDeque::new(),
        },
    ))
}
