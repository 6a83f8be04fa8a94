//! TCP and WebSocket differ only in how bytes arrive and leave: both yield
//! frames through the same decoder and take encoded frames to write.

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use natter_proto::{Frame, FrameDecoder, FrameError};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
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
    #[error("i/o: {0}")]
    Io(String),
}

pub trait FrameRead: Send {
    /// The next whole frame, `None` on a clean end of stream. Cancel-safe:
    /// bytes already read stay buffered.
    fn read_frame(&mut self) -> impl Future<Output = Result<Option<Frame>, ReadError>> + Send;
}

pub trait FrameWrite: Send + 'static {
    fn write_frames(
        &mut self,
        frames: &[Bytes],
    ) -> impl Future<Output = std::io::Result<()>> + Send;
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send;
}

/// Reads whatever the socket has, up to this much at a time, into a buffer
/// that exists only while a frame is partly received.
const READ_CHUNK: usize = 4096;

pub struct TcpRead {
    rd: OwnedReadHalf,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FrameRead for TcpRead {
    async fn read_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.buf.is_empty() && self.buf.capacity() > 0 {
                // An idle connection holds no read buffer at all.
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
}

pub struct TcpWrite {
    wr: OwnedWriteHalf,
    scratch: BytesMut,
}

impl FrameWrite for TcpWrite {
    async fn write_frames(&mut self, frames: &[Bytes]) -> std::io::Result<()> {
        match frames {
            [] => Ok(()),
            [one] => self.wr.write_all(one).await,
            many => {
                // One syscall for everything queued.
                self.scratch.clear();
                for f in many {
                    self.scratch.extend_from_slice(f);
                }
                let r = self.wr.write_all(&self.scratch).await;
                if self.scratch.capacity() > 256 * 1024 {
                    self.scratch = BytesMut::new();
                }
                r
            }
        }
    }

    async fn shutdown(&mut self) {
        let _ = self.wr.shutdown().await;
    }
}

pub fn tcp(stream: TcpStream, max_frame_bytes: usize) -> (TcpRead, TcpWrite) {
    let (rd, wr) = stream.into_split();
    (
        TcpRead {
            rd,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max_frame_bytes),
        },
        TcpWrite {
            wr,
            scratch: BytesMut::new(),
        },
    )
}

pub struct WsRead {
    rd: SplitStream<WebSocketStream<TcpStream>>,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FrameRead for WsRead {
    async fn read_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(frame));
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
                Some(Err(e)) => return Err(ReadError::Io(e.to_string())),
            }
        }
    }
}

pub struct WsWrite {
    wr: SplitSink<WebSocketStream<TcpStream>, Message>,
}

impl FrameWrite for WsWrite {
    async fn write_frames(&mut self, frames: &[Bytes]) -> std::io::Result<()> {
        for f in frames {
            self.wr
                .feed(Message::Binary(f.clone()))
                .await
                .map_err(std::io::Error::other)?;
        }
        self.wr.flush().await.map_err(std::io::Error::other)
    }

    async fn shutdown(&mut self) {
        let _ = self.wr.close().await;
    }
}

pub async fn websocket(
    stream: TcpStream,
    max_frame_bytes: usize,
) -> Result<(WsRead, WsWrite), ReadError> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_frame_bytes + natter_proto::LENGTH_LEN))
        .max_frame_size(Some(max_frame_bytes + natter_proto::LENGTH_LEN));
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config))
        .await
        .map_err(|e| ReadError::Io(e.to_string()))?;
    let (wr, rd) = ws.split();
    Ok((
        WsRead {
            rd,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max_frame_bytes),
        },
        WsWrite { wr },
    ))
}
