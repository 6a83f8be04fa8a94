//! The connection: a reader task routes answers to waiting requests and
//! everything else to the push channel; a writer task sends frames.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use natter_proto::pb::{self, ErrorCode};
use natter_proto::{ClientFrame, FrameDecoder, ServerFrame, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection failed: {0}")]
    Io(String),
    #[error("connection closed{}", .0.as_ref().map(|d| format!(" by the server: {} ({})", d.message, d.reason().as_str_name())).unwrap_or_default())]
    Closed(Option<pb::Disconnect>),
    #[error("{message} ({})", .code.as_str_name())]
    Server {
        code: ErrorCode,
        message: String,
        retry_after_ms: u32,
        /// For `MUTED`: when the mute ends, ms since the epoch (0: the
        /// whole group is muted).
        muted_until_ms: i64,
    },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("assignment failed: {0}")]
    Assign(String),
}

impl ClientError {
    /// The server's error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub client_name: String,
    pub request_timeout: Duration,
    /// Largest frame accepted from the server.
    pub max_frame_bytes: usize,
    /// Send Pings at the interval the server states at login.
    pub heartbeat: bool,
    /// Source address for TCP connections (e.g. 127.0.0.2, to use another
    /// range of ephemeral ports); `None` lets the OS choose.
    pub local_ip: Option<std::net::IpAddr>,
    /// For `tls://` and `wss://`: whom to trust, and the session cache that
    /// lets a reconnect resume ([`crate::client_config`]); `None`: the
    /// bundled web roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            client_name: format!("natter-client/{}", env!("CARGO_PKG_VERSION")),
            request_timeout: Duration::from_secs(30),
            max_frame_bytes: 16 * 1024 * 1024,
            heartbeat: true,
            local_ip: None,
            tls: None,
        }
    }
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<ServerFrame>>>>;

struct Shared {
    pending: Pending,
    closed: Mutex<Option<Option<pb::Disconnect>>>,
}

pub struct Client {
    out: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
    next_id: AtomicU32,
    pushes: mpsc::UnboundedReceiver<ServerFrame>,
    options: ConnectOptions,
    tasks: Vec<JoinHandle<()>>,
    pub hello: pb::HelloOk,
    /// Over TLS: whether the handshake resumed an earlier session.
    pub tls_resumed: Option<bool>,
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Client {
    /// Connects to `addr` ("host:port" or "tcp://host:port" for TCP,
    /// "tls://host:port" for TCP over TLS, "ws://host:port" for WebSocket,
    /// "wss://host:port" for WebSocket over TLS) and performs the Hello
    /// handshake.
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        Client::connect_with(addr, ConnectOptions::default()).await
    }

    pub async fn connect_with(addr: &str, options: ConnectOptions) -> Result<Client, ClientError> {
        let (out, out_rx) = mpsc::unbounded_channel();
        let (push_tx, pushes) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pending: Arc::default(),
            closed: Mutex::new(None),
        });
        let decoder = FrameDecoder::new(options.max_frame_bytes);
        let mut tls_resumed = None;
        let tasks = if addr.starts_with("ws://") {
            let (ws, _) = tokio_tungstenite::connect_async(addr)
                .await
                .map_err(|e| ClientError::Io(e.to_string()))?;
            ws_tasks(ws, shared.clone(), push_tx, decoder, out_rx)
        } else if let Some(host) = addr.strip_prefix("wss://") {
            let host = host.trim_end_matches('/');
            let (stream, resumed) = tls_connect(host, &options).await?;
            tls_resumed = Some(resumed);
            let (ws, _) = tokio_tungstenite::client_async(format!("wss://{host}/"), stream)
                .await
                .map_err(|e| ClientError::Io(format!("{addr}: {e}")))?;
            ws_tasks(ws, shared.clone(), push_tx, decoder, out_rx)
        } else if let Some(host) = addr.strip_prefix("tls://") {
            let (stream, resumed) = tls_connect(host, &options).await?;
            tls_resumed = Some(resumed);
            let (rd, wr) = tokio::io::split(stream);
            byte_tasks(rd, wr, shared.clone(), push_tx, decoder, out_rx)
        } else {
            let host = addr.strip_prefix("tcp://").unwrap_or(addr);
            let stream = tcp_connect(host, options.local_ip)
                .await
                .map_err(|e| ClientError::Io(format!("{addr}: {e}")))?;
            let _ = stream.set_nodelay(true);
            let (rd, wr) = stream.into_split();
            byte_tasks(rd, wr, shared.clone(), push_tx, decoder, out_rx)
        };
        let mut client = Client {
            out,
            shared,
            next_id: AtomicU32::new(1),
            pushes,
            tasks,
            hello: pb::HelloOk::default(),
            tls_resumed,
            options,
        };
        let hello = ClientFrame::Hello(pb::Hello {
            min_version: 1,
            max_version: PROTOCOL_VERSION,
            client_name: client.options.client_name.clone(),
        });
        match client.request(hello).await? {
            ServerFrame::HelloOk(h) => client.hello = h,
            other => return Err(unexpected(&other)),
        }
        Ok(client)
    }

    fn closed_error(&self) -> ClientError {
        ClientError::Closed(self.closed_by())
    }

    /// Sends one request and waits for its answer; an Error frame becomes
    /// [`ClientError::Server`].
    pub async fn request(&self, frame: ClientFrame) -> Result<ServerFrame, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).max(1);
        let (tx, rx) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        // The reader marks the connection closed before it drops waiters, so
        // a request registered after that is caught here.
        if self
            .shared
            .closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            self.shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Err(self.closed_error());
        }
        self.out
            .send(frame.to_bytes(id))
            .map_err(|_| self.closed_error())?;
        let answer = match tokio::time::timeout(self.options.request_timeout, rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => return Err(self.closed_error()),
            Err(_) => {
                self.shared
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                return Err(ClientError::Timeout(self.options.request_timeout));
            }
        };
        match answer {
            ServerFrame::Error(e) => Err(ClientError::Server {
                code: e.code(),
                message: e.message,
                retry_after_ms: e.retry_after_ms,
                muted_until_ms: e.muted_until_ms,
            }),
            other => Ok(other),
        }
    }

    /// The next push (message, receipt, disconnect), or `None` once the
    /// connection is gone and every push has been taken.
    pub async fn next_push(&mut self) -> Option<ServerFrame> {
        self.pushes.recv().await
    }

    /// A push already received, without waiting.
    pub fn try_push(&mut self) -> Option<ServerFrame> {
        self.pushes.try_recv().ok()
    }

    /// Hands this connection's pushes to someone else; `next_push` then
    /// answers `None`.
    pub(crate) fn take_pushes(&mut self) -> mpsc::UnboundedReceiver<ServerFrame> {
        std::mem::replace(&mut self.pushes, mpsc::unbounded_channel().1)
    }

    /// The Disconnect the server sent before it closed, once the connection
    /// is gone; `None` while it is open or when it closed without one.
    pub fn closed_by(&self) -> Option<pb::Disconnect> {
        self.shared
            .closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .flatten()
    }

    pub async fn register(&self, username: &str, password: &str) -> Result<(), ClientError> {
        let r = self
            .request(ClientFrame::Register(pb::Register {
                username: username.into(),
                password: password.into(),
            }))
            .await?;
        expect_done(r)
    }

    pub async fn login(
        &mut self,
        username: &str,
        password: &str,
        device_id: &str,
    ) -> Result<pb::LoginOk, ClientError> {
        let r = self
            .request(ClientFrame::Login(pb::Login {
                username: username.into(),
                password: password.into(),
                device_id: device_id.into(),
            }))
            .await?;
        self.logged_in(r)
    }

    pub async fn resume(
        &mut self,
        token: &str,
        device_id: &str,
    ) -> Result<pb::LoginOk, ClientError> {
        let r = self
            .request(ClientFrame::Resume(pb::Resume {
                token: token.into(),
                device_id: device_id.into(),
            }))
            .await?;
        self.logged_in(r)
    }

    fn logged_in(&mut self, r: ServerFrame) -> Result<pb::LoginOk, ClientError> {
        let ok = match r {
            ServerFrame::LoginOk(ok) => ok,
            other => return Err(unexpected(&other)),
        };
        if self.options.heartbeat && ok.heartbeat_interval_ms > 0 {
            let out = self.out.clone();
            let every = Duration::from_millis(ok.heartbeat_interval_ms as u64);
            // Owned by the connection, which aborts its tasks when dropped.
            #[allow(clippy::disallowed_methods)]
            self.tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    // Request id 0: the Pong is a push nobody waits for.
                    let ping = ClientFrame::Ping(pb::Ping { client_time_ms: 0 }).to_bytes(0);
                    if out.send(ping).is_err() {
                        return;
                    }
                }
            }));
        }
        Ok(ok)
    }

    /// Sends a text message to a user.
    pub async fn send_text(
        &self,
        peer_user_id: u64,
        client_msg_id: &str,
        text: &str,
    ) -> Result<pb::SendAck, ClientError> {
        self.send(text_message(
            pb::send::Target::PeerUserId(peer_user_id),
            client_msg_id,
            text,
        ))
        .await
    }

    pub async fn send(&self, send: pb::Send) -> Result<pb::SendAck, ClientError> {
        match self.request(ClientFrame::Send(send)).await? {
            ServerFrame::SendAck(a) => Ok(a),
            other => Err(unexpected(&other)),
        }
    }

    /// One Sync page; `after_conversation_id` is the previous page's
    /// `next_after_conversation_id` while it had more, else 0.
    pub async fn sync_page(
        &self,
        cursors: Vec<pb::Cursor>,
        after_conversation_id: u64,
        limit: u32,
    ) -> Result<pb::SyncPage, ClientError> {
        match self
            .request(ClientFrame::Sync(pb::Sync {
                cursors,
                limit,
                after_conversation_id,
            }))
            .await?
        {
            ServerFrame::SyncPage(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn history(
        &self,
        conversation_id: u64,
        before_seq: u64,
        limit: u32,
    ) -> Result<pb::HistoryPage, ClientError> {
        let q = pb::History {
            conversation_id,
            before_seq,
            limit,
        };
        match self.request(ClientFrame::History(q)).await? {
            ServerFrame::HistoryPage(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn delivery_ack(&self, conversation_id: u64, seq: u64) -> Result<(), ClientError> {
        expect_done(
            self.request(ClientFrame::DeliveryAck(pb::DeliveryAck {
                conversation_id,
                seq,
            }))
            .await?,
        )
    }

    pub async fn users(
        &self,
        user_ids: Vec<u64>,
        usernames: Vec<String>,
    ) -> Result<Vec<pb::User>, ClientError> {
        match self
            .request(ClientFrame::GetUsers(pb::GetUsers {
                user_ids,
                usernames,
            }))
            .await?
        {
            ServerFrame::Users(u) => Ok(u.users),
            other => Err(unexpected(&other)),
        }
    }

    /// The id of a user by name.
    pub async fn user_id(&self, username: &str) -> Result<u64, ClientError> {
        self.users(vec![], vec![username.into()])
            .await?
            .first()
            .map(|u| u.user_id)
            .ok_or_else(|| ClientError::Server {
                code: ErrorCode::NotFound,
                message: format!("no user named {username}"),
                retry_after_ms: 0,
                muted_until_ms: 0,
            })
    }

    pub async fn change_password(&self, old: &str, new: &str) -> Result<(), ClientError> {
        expect_done(
            self.request(ClientFrame::ChangePassword(pb::ChangePassword {
                old_password: old.into(),
                new_password: new.into(),
            }))
            .await?,
        )
    }

    pub async fn ping(&self) -> Result<pb::Pong, ClientError> {
        match self
            .request(ClientFrame::Ping(pb::Ping { client_time_ms: 1 }))
            .await?
        {
            ServerFrame::Pong(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn logout(&self) -> Result<(), ClientError> {
        self.logout_with(vec![]).await
    }

    /// Logs out, ending also the user's other sessions whose `tokens` are
    /// given (their connections are told LOGGED_OUT).
    pub async fn logout_with(&self, tokens: Vec<String>) -> Result<(), ClientError> {
        expect_done(
            self.request(ClientFrame::Logout(pb::Logout { tokens }))
                .await?,
        )
    }
}

/// A text message to `target` (a user, or a group or room).
pub fn text_message(target: pb::send::Target, client_msg_id: &str, text: &str) -> pb::Send {
    pb::Send {
        client_msg_id: client_msg_id.into(),
        target: Some(target),
        body: Some(pb::Body {
            kind: pb::BodyKind::Text as i32,
            content: text.into(),
        }),
        ..Default::default()
    }
}

/// TCP, then a TLS handshake naming the host; also says whether it resumed.
pub(crate) async fn tls_connect(
    host: &str,
    options: &ConnectOptions,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, bool), ClientError> {
    let config = match &options.tls {
        Some(c) => c.clone(),
        None => crate::tls::default_config().map_err(ClientError::Io)?,
    };
    let name = crate::tls::server_name(host).map_err(ClientError::Io)?;
    let stream = tcp_connect(host, options.local_ip)
        .await
        .map_err(|e| ClientError::Io(format!("{host}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| ClientError::Io(crate::tls::handshake_failure(host, &e)))?;
    let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    Ok((stream, resumed))
}

/// The reader and writer tasks of a WebSocket connection.
fn ws_tasks<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    shared: Arc<Shared>,
    push_tx: mpsc::UnboundedSender<ServerFrame>,
    decoder: FrameDecoder,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) -> Vec<JoinHandle<()>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, stream) = ws.split();
    let reader = spawn_reader(shared, push_tx, decoder, WsSource(stream));
    // Owned by the connection, which aborts its tasks when dropped.
    #[allow(clippy::disallowed_methods)]
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if sink.send(Message::Binary(b)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    vec![reader, writer]
}

/// The reader and writer tasks of a byte stream (TCP, plain or TLS): the
/// writer sends everything queued in one write.
fn byte_tasks<R, W>(
    rd: R,
    mut wr: W,
    shared: Arc<Shared>,
    push_tx: mpsc::UnboundedSender<ServerFrame>,
    decoder: FrameDecoder,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) -> Vec<JoinHandle<()>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let reader = spawn_reader(shared, push_tx, decoder, TcpSource(rd));
    // Owned by the connection, which aborts its tasks when dropped.
    #[allow(clippy::disallowed_methods)]
    let writer = tokio::spawn(async move {
        let mut batch = BytesMut::new();
        while let Some(b) = rx.recv().await {
            batch.extend_from_slice(&b);
            while let Ok(more) = rx.try_recv() {
                batch.extend_from_slice(&more);
            }
            if wr.write_all(&batch).await.is_err() || wr.flush().await.is_err() {
                break;
            }
            batch.clear();
        }
        let _ = wr.shutdown().await;
    });
    vec![reader, writer]
}

async fn tcp_connect(addr: &str, local_ip: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = local_ip else {
        return TcpStream::connect(addr).await;
    };
    let mut last = std::io::Error::other("address resolved to nothing");
    for target in tokio::net::lookup_host(addr).await? {
        let socket = if target.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if target.is_ipv4() {
            crate::sys::bind_port_at_connect(&socket)?;
        }
        socket.bind(std::net::SocketAddr::new(ip, 0))?;
        match socket.connect(target).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

pub(crate) fn expect_done(r: ServerFrame) -> Result<(), ClientError> {
    match r {
        ServerFrame::Done(_) => Ok(()),
        other => Err(unexpected(&other)),
    }
}

pub(crate) fn unexpected(f: &ServerFrame) -> ClientError {
    ClientError::Protocol(format!("unexpected answer {}", f.name()))
}

/// Where received bytes come from.
trait Source: Send + 'static {
    /// Appends bytes to `buf`; false once the stream has ended.
    fn fill(
        &mut self,
        buf: &mut BytesMut,
    ) -> impl std::future::Future<Output = Result<bool, String>> + Send;
}

struct TcpSource<R>(R);

impl<R: tokio::io::AsyncRead + Unpin + Send + 'static> Source for TcpSource<R> {
    async fn fill(&mut self, buf: &mut BytesMut) -> Result<bool, String> {
        buf.reserve(8192);
        self.0
            .read_buf(buf)
            .await
            .map(|n| n > 0)
            .map_err(|e| e.to_string())
    }
}

struct WsSource<S>(futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<S>>);

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Source
    for WsSource<S>
{
    async fn fill(&mut self, buf: &mut BytesMut) -> Result<bool, String> {
        match self.0.next().await {
            Some(Ok(Message::Binary(b))) => {
                buf.extend_from_slice(&b);
                Ok(true)
            }
            Some(Ok(Message::Close(_))) | None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(e.to_string()),
        }
    }
}

/// Runs the read side until the stream ends.
fn spawn_reader<S: Source>(
    shared: Arc<Shared>,
    pushes: mpsc::UnboundedSender<ServerFrame>,
    decoder: FrameDecoder,
    mut source: S,
) -> JoinHandle<()> {
    // Owned by the connection, which aborts its tasks when dropped.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let mut disconnect = None;
        'read: loop {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => {
                        let Ok(msg) = ServerFrame::decode(&frame) else {
                            // A newer server's frame type: not ours to handle.
                            continue;
                        };
                        if let ServerFrame::Disconnect(d) = &msg {
                            disconnect = Some(d.clone());
                        }
                        let waiter = (frame.request_id != 0)
                            .then(|| {
                                shared
                                    .pending
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .remove(&frame.request_id)
                            })
                            .flatten();
                        match waiter {
                            Some(w) => {
                                let _ = w.send(msg);
                            }
                            None => {
                                let _ = pushes.send(msg);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => break 'read,
                }
            }
            match source.fill(&mut buf).await {
                Ok(true) => {}
                Ok(false) | Err(_) => break,
            }
        }
        *shared.closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(disconnect);
        // Waiters see the close through their dropped senders.
        shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    })
}
