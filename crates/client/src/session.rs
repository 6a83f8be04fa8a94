//! A session that outlives its connections. A client of a cluster loses its
//! connection when its node dies, drains (GOING_AWAY) or cuts it; the
//! session then reconnects where the server said, or where assignment says
//! (passing over nodes it could not reach), resumes with its token, and
//! makes again what the cut left unanswered: a Send by its client_msg_id,
//! which the server answers with the original ACK. [`Feed`] turns the pushes
//! of each connection in turn into messages shown once and in seq order: it
//! syncs after every reconnect, on a gap and on a SyncHint.

use crate::{assign_with, Accepted, Client, ClientError, ConnectOptions, Inbox};
use natter_proto::pb::{self, DisconnectReason, ErrorCode};
use natter_proto::ServerFrame;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Where a session connects.
#[derive(Clone, Debug)]
pub enum Route {
    /// Frame addresses (`host:port`, or `ws://host:port`), the first one
    /// first; a reconnect tries the others in turn.
    Servers(Vec<String>),
    /// Assignment endpoints (`http://host:port` of any nodes, or
    /// `https://`, which leads to the nodes' TLS addresses), asked in turn.
    Assign(Vec<String>),
}

impl Route {
    /// A tool's `--server`: a comma-separated list of `http://` or `https://` endpoints
    /// (asked for a node) or of frame addresses.
    pub fn parse(servers: &str) -> Route {
        let list: Vec<String> = servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if list.iter().any(|s| crate::assign::endpoint(s).is_some()) {
            Route::Assign(list)
        } else {
            Route::Servers(list)
        }
    }
}

/// How a session connects and how long it keeps trying.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub connect: ConnectOptions,
    /// Keys the sticky assignment strategy (the user's id or name).
    pub user: Option<String>,
    /// Ask assignment for WebSocket addresses.
    pub ws: bool,
    /// A lost connection is given up after this long without a new one.
    pub reconnect_for: Duration,
    /// A call cut with its connection, or refused as UNAVAILABLE, is made
    /// again until this long after it was first made.
    pub retry_for: Duration,
    /// [`Session::open`] keeps trying a node that turns it away as busy
    /// (SERVER_FULL, UNAVAILABLE or RATE_LIMITED with a time to come back)
    /// until this long after it started, waiting each time at least as
    /// long as told, doubled per refusal, with jitter so that a crowd
    /// turned away together does not come back together. Zero: one try.
    pub busy_for: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            connect: ConnectOptions::default(),
            user: None,
            ws: false,
            reconnect_for: Duration::from_secs(60),
            retry_for: Duration::from_secs(60),
            busy_for: Duration::from_secs(60),
        }
    }
}

/// One outage: the connection was found lost at `lost`, and the session
/// resumed on a new one at `back`.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    pub lost: Instant,
    pub back: Instant,
    /// The server said why first (a Disconnect: draining, rebalancing, a
    /// slow reader); false when the connection just went (a node died, a
    /// network cut).
    pub told: bool,
}

/// A logged-in session, shared by whoever makes calls on it (clone it).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    plan: Plan,
    state: Mutex<State>,
    /// Ticks when a reconnect ends (with a new connection, or the end).
    changed: tokio::sync::watch::Sender<u64>,
}

struct State {
    /// Counts connections: a caller whose call failed on generation g
    /// reconnects only if g is still the current one.
    generation: u64,
    client: Arc<Client>,
    /// The connection's node, when assignment named it.
    node: Option<String>,
    address: String,
    /// The current connection's pushes, until a [`Feed`] takes them.
    pushes: Option<mpsc::UnboundedReceiver<ServerFrame>>,
    outages: Vec<Outage>,
    /// Why the session is over (revoked, replaced, logged out, or no node
    /// could be reached): nothing reconnects any more.
    ended: Option<ClientError>,
    /// A reconnect task is running.
    reconnecting: bool,
    /// Times the first connection was turned away as busy.
    busy_refusals: u32,
}

/// How to reach a node and resume there.
struct Plan {
    route: Route,
    token: String,
    device: String,
    options: SessionOptions,
}

/// The errors a call may meet because its connection went away.
fn cut(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Closed(_) | ClientError::Io(_) | ClientError::Timeout(_)
    )
}

/// A refusal that no reconnect mends: the session itself is gone.
fn final_refusal(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(
            ErrorCode::TokenInvalid
                | ErrorCode::TokenExpired
                | ErrorCode::AccountDisabled
                | ErrorCode::TooManySessions
                | ErrorCode::BadCredentials
        )
    )
}

/// How long a node that turned us away as busy asked us to stay away: a
/// SERVER_FULL close's reconnect_after_ms, or a busy error's retry_after_ms.
fn told_to_wait(e: &ClientError) -> Option<Duration> {
    let ms = match e {
        ClientError::Closed(Some(d)) if d.reason() == DisconnectReason::ServerFull => {
            d.reconnect_after_ms
        }
        ClientError::Server {
            code: ErrorCode::ServerFull | ErrorCode::Unavailable | ErrorCode::RateLimited,
            retry_after_ms,
            ..
        } => *retry_after_ms,
        _ => return None,
    };
    Some(Duration::from_millis(ms.clamp(50, 10_000) as u64))
}

/// A number in [0, 1) from the system's randomness.
fn unit_random() -> f64 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    u16::from_le_bytes(b) as f64 / (u16::MAX as f64 + 1.0)
}

/// `base` with up to a quarter of it added at random.
fn jittered(base: Duration) -> Duration {
    base + base.mul_f64(unit_random() / 4.0)
}

/// The pause before the `n`-th retry (from 0) of a node that asked for
/// `told`: `told` doubled per refusal up to 16×, then anywhere between it
/// and twice it, so a crowd refused at once comes back spread out.
fn busy_pause(told: Duration, n: u32) -> Duration {
    let base = told * (1u32 << n.min(4));
    base + base.mul_f64(unit_random())
}

impl Session {
    /// Connects along `route` and resumes `token` on `device`: one try per
    /// route entry; when every entry turned it away as busy, it tries again
    /// after the pause the server asked for, for up to `busy_for` (any
    /// other failure is the caller's to report at once).
    pub async fn open(
        route: Route,
        token: &str,
        device: &str,
        options: SessionOptions,
    ) -> Result<Session, ClientError> {
        let plan = Plan {
            route,
            token: token.to_owned(),
            device: device.to_owned(),
            options,
        };
        let entries = match &plan.route {
            Route::Servers(s) | Route::Assign(s) => s.len().max(1),
        };
        let deadline = Instant::now() + plan.options.busy_for;
        let mut refusals = 0;
        loop {
            let mut last = ClientError::Io("no server given".into());
            let mut busy = None;
            for k in 0..entries {
                let attached = match plan.pick(k, &[]).await {
                    Ok((address, node)) => plan.attach(&address).await.map(|c| (c, address, node)),
                    Err(e) => Err(e),
                };
                match attached {
                    Ok((client, address, node)) => {
                        let session = Session::with(plan, client, address, node);
                        session.inner.lock().busy_refusals = refusals;
                        return Ok(session);
                    }
                    Err(e) if final_refusal(&e) => return Err(e),
                    Err(e) => {
                        busy = busy.max(told_to_wait(&e));
                        last = e;
                    }
                }
            }
            // Every node turned us away; come back if one said when.
            let Some(told) = busy else { return Err(last) };
            let pause = busy_pause(told, refusals);
            if Instant::now() + pause > deadline {
                return Err(last);
            }
            refusals += 1;
            tokio::time::sleep(pause).await;
        }
    }

    /// How many times [`Session::open`] was turned away as busy before it
    /// got in.
    pub fn busy_refusals(&self) -> u32 {
        self.inner.lock().busy_refusals
    }

    /// Takes over `client`, already connected to `address` and logged in
    /// with `token` on `device`; reconnects follow `route`.
    pub fn adopt(
        client: Client,
        address: &str,
        token: &str,
        device: &str,
        route: Route,
        options: SessionOptions,
    ) -> Session {
        let plan = Plan {
            route,
            token: token.to_owned(),
            device: device.to_owned(),
            options,
        };
        Session::with(plan, client, address.to_owned(), None)
    }

    fn with(plan: Plan, mut client: Client, address: String, node: Option<String>) -> Session {
        let state = State {
            generation: 1,
            pushes: Some(client.take_pushes()),
            client: Arc::new(client),
            node,
            address,
            outages: Vec::new(),
            ended: None,
            reconnecting: false,
            busy_refusals: 0,
        };
        Session {
            inner: Arc::new(Inner {
                plan,
                state: Mutex::new(state),
                changed: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// The current connection (it may be found lost at its next call).
    pub fn client(&self) -> Arc<Client> {
        self.inner.lock().client.clone()
    }

    /// The address of the current connection.
    pub fn address(&self) -> String {
        self.inner.lock().address.clone()
    }

    /// Every outage so far, in order.
    pub fn outages(&self) -> Vec<Outage> {
        self.inner.lock().outages.clone()
    }

    /// Takes this session's pushes from here on: every message once, in
    /// order. Take it once; a second feed would share the pushes.
    pub fn feed(&self) -> Feed {
        let (generation, pushes) = {
            let mut st = self.inner.lock();
            (st.generation, st.pushes.take())
        };
        Feed {
            session: self.clone(),
            generation,
            pushes: pushes.unwrap_or_else(|| mpsc::unbounded_channel().1),
            inbox: Inbox::default(),
            ready: VecDeque::new(),
            owed: false,
            syncing: None,
            page: 500,
            duplicates: 0,
            gaps: 0,
            hints: 0,
        }
    }

    /// Makes `call` on the current connection. A call cut with its
    /// connection is made again on the next one, and one refused as
    /// UNAVAILABLE again after the wait the server asked for, until
    /// `retry_for` has passed: only for calls that are safe to repeat
    /// (reads, and a Send, by its client_msg_id).
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let deadline = Instant::now() + self.inner.plan.options.retry_for;
        loop {
            let (generation, client) = {
                let st = self.inner.lock();
                (st.generation, st.client.clone())
            };
            let e = match call(client).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(e);
            }
            match &e {
                e if cut(e) => self.reconnect(generation).await?,
                ClientError::Server {
                    code: ErrorCode::Unavailable,
                    retry_after_ms,
                    ..
                } => {
                    let wait = Duration::from_millis((*retry_after_ms).clamp(50, 5_000) as u64);
                    tokio::time::sleep(jittered(wait)).await;
                }
                _ => return Err(e),
            }
        }
    }

    /// Sends a message, again after a cut or UNAVAILABLE (see [`call`]).
    ///
    /// [`call`]: Session::call
    pub async fn send(&self, send: pb::Send) -> Result<pb::SendAck, ClientError> {
        self.call(|c| {
            let send = send.clone();
            async move { c.send(send).await }
        })
        .await
    }

    /// Replaces connection `generation`, found lost, with a new one; returns
    /// at once if that already happened. Fails when the server ended the
    /// session or no node could be reached within `reconnect_for`. The
    /// reconnect runs as a task of its own: a caller that stops waiting
    /// (a timeout, a cancelled select) does not stop it.
    pub async fn reconnect(&self, generation: u64) -> Result<(), ClientError> {
        let mut changed = self.inner.changed.subscribe();
        {
            let mut st = self.inner.lock();
            if let Some(e) = &st.ended {
                return Err(e.clone());
            }
            if st.generation != generation {
                return Ok(());
            }
            if !st.reconnecting {
                st.reconnecting = true;
                let inner = self.inner.clone();
                // Meant to outlive a caller that stops waiting; it ends when
                // the new connection is made or `reconnect_for` runs out.
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(async move {
                    let outcome = inner.replace(generation).await;
                    let mut st = inner.lock();
                    st.reconnecting = false;
                    if let Err(e) = outcome {
                        st.ended = Some(e);
                    }
                    drop(st);
                    inner.changed.send_modify(|n| *n += 1);
                });
            }
        }
        loop {
            if changed.changed().await.is_err() {
                return Err(ClientError::Closed(None));
            }
            let st = self.inner.lock();
            if let Some(e) = &st.ended {
                return Err(e.clone());
            }
            if st.generation != generation {
                return Ok(());
            }
        }
    }
}

impl Inner {
    /// Finds a node and resumes there, in place of connection `generation`.
    async fn replace(&self, generation: u64) -> Result<(), ClientError> {
        let (told, node, address) = {
            let st = self.lock();
            if st.generation != generation {
                return Ok(());
            }
            (st.client.closed_by(), st.node.clone(), st.address.clone())
        };
        let lost = Instant::now();
        let reason = told.as_ref().map(|d| d.reason());
        if matches!(
            reason,
            Some(
                DisconnectReason::Kicked | DisconnectReason::Replaced | DisconnectReason::LoggedOut
            )
        ) {
            return Err(ClientError::Closed(told));
        }
        // Where the server sent us, after the pause it asked for.
        let mut target = told.as_ref().and_then(|d| {
            if address.starts_with("ws://") {
                (!d.reconnect_ws.is_empty()).then(|| format!("ws://{}", d.reconnect_ws))
            } else {
                (!d.reconnect_tcp.is_empty()).then(|| d.reconnect_tcp.clone())
            }
        });
        if let Some(d) = &told {
            let pause = Duration::from_millis(d.reconnect_after_ms.min(10_000) as u64);
            tokio::time::sleep(jittered(pause)).await;
        }
        // A node that dropped us without a word, or is draining, is passed
        // over; one that only found us slow is not.
        let mut avoid: Vec<String> = match reason {
            Some(DisconnectReason::SlowConsumer | DisconnectReason::HeartbeatTimeout) => vec![],
            _ => node.into_iter().collect(),
        };
        let plan = &self.plan;
        let mut k = match &plan.route {
            Route::Servers(s) => s.iter().position(|a| *a == address).map_or(0, |i| i + 1),
            Route::Assign(_) => 0,
        };
        let deadline = lost + plan.options.reconnect_for;
        let mut backoff = Duration::from_millis(50);
        loop {
            let picked = match target.take() {
                Some(t) => Ok((t, None)),
                None => {
                    k += 1;
                    plan.pick(k - 1, &avoid).await
                }
            };
            let e = match picked {
                Ok((address, node)) => match plan.attach(&address).await {
                    Ok(mut client) => {
                        let mut st = self.lock();
                        st.generation += 1;
                        st.pushes = Some(client.take_pushes());
                        st.client = Arc::new(client);
                        st.address = address;
                        st.node = node;
                        st.outages.push(Outage {
                            lost,
                            back: Instant::now(),
                            told: reason.is_some(),
                        });
                        return Ok(());
                    }
                    Err(e) => {
                        // Unreachable, not merely busy: pass it over.
                        if cut(&e) {
                            avoid.extend(node);
                        }
                        e
                    }
                },
                Err(e) => e,
            };
            if final_refusal(&e) || Instant::now() >= deadline {
                return Err(e);
            }
            // A node that said when to come back is taken at its word.
            match told_to_wait(&e) {
                Some(told) => {
                    tokio::time::sleep(busy_pause(told.max(backoff), 0)).await;
                }
                None => tokio::time::sleep(jittered(backoff)).await,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Plan {
    /// The `k`-th choice along the route: an address, and its node when
    /// assignment named one.
    async fn pick(
        &self,
        k: usize,
        avoid: &[String],
    ) -> Result<(String, Option<String>), ClientError> {
        match &self.route {
            Route::Servers(s) if s.is_empty() => Err(ClientError::Io("no server given".into())),
            Route::Servers(s) => Ok((s[k % s.len()].clone(), None)),
            Route::Assign(s) if s.is_empty() => Err(ClientError::Io("no server given".into())),
            Route::Assign(s) => {
                let endpoint = &s[k % s.len()];
                let user = self.options.user.as_deref();
                let a = assign_with(endpoint, user, avoid, &self.options.connect).await?;
                let tls = crate::assign::endpoint(endpoint) == Some(true);
                Ok((a.address(self.options.ws, tls)?, Some(a.node_id)))
            }
        }
    }

    /// Connects to `address` and resumes the session there.
    async fn attach(&self, address: &str) -> Result<Client, ClientError> {
        let mut client = Client::connect_with(address, self.options.connect.clone()).await?;
        client.resume(&self.token, &self.device).await?;
        Ok(client)
    }
}

/// What a [`Feed`] yields.
#[derive(Debug)]
pub enum Delivery {
    /// The next message of its conversation, shown once, in seq order.
    Message(pb::Message),
    /// Any other push (typing, receipts, presence, friend requests, a
    /// Disconnect before the session reconnects); heartbeat Pongs aside.
    Other(ServerFrame),
}

/// What a Sync brought, and the inbox moved past it.
type Synced = (Vec<pb::Message>, Inbox);

/// A session's pushes across its connections, as messages shown once each,
/// in seq order per conversation.
pub struct Feed {
    session: Session,
    generation: u64,
    pushes: mpsc::UnboundedReceiver<ServerFrame>,
    pub inbox: Inbox,
    ready: VecDeque<pb::Message>,
    /// A Sync is owed (a gap, a hint, a new connection) and not yet whole.
    owed: bool,
    /// The Sync under way, as a task of its own so that a caller who stops
    /// waiting does not stop it.
    syncing: Option<tokio::task::JoinHandle<Result<Synced, ClientError>>>,
    /// Messages per Sync page.
    pub page: u32,
    /// Pushes of messages already shown.
    pub duplicates: u64,
    /// Pushes that came ahead of the one before them (each cost a Sync).
    pub gaps: u64,
    /// SyncHints heard (each cost a Sync).
    pub hints: u64,
}

impl Feed {
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The next delivery; waits for it, reconnecting as needed. Fails only
    /// when the session is over (see [`Session::reconnect`]). Cancel-safe:
    /// a Sync cut short is made again at the next call.
    pub async fn next(&mut self) -> Result<Delivery, ClientError> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Ok(Delivery::Message(m));
            }
            if self.take_newer_pushes() || self.owed {
                self.sync().await?;
                continue;
            }
            match self.pushes.recv().await {
                Some(ServerFrame::MessagePush(pb::MessagePush { message: Some(m) })) => {
                    match self.inbox.accept(m) {
                        Accepted::New(m) => return Ok(Delivery::Message(m)),
                        Accepted::Duplicate => self.duplicates += 1,
                        Accepted::Gap => {
                            self.gaps += 1;
                            self.owed = true;
                        }
                    }
                }
                Some(ServerFrame::SyncHintPush(_)) => {
                    self.hints += 1;
                    self.owed = true;
                }
                Some(ServerFrame::Pong(_)) | Some(ServerFrame::MessagePush(_)) => {}
                Some(other) => return Ok(Delivery::Other(other)),
                None => self.session.reconnect(self.generation).await?,
            }
        }
    }

    /// Pulls everything past the cursors now (the first thing a client does
    /// after logging in); [`next`](Feed::next) hands out what it brought.
    /// The Sync runs as a task: cancelled, this call leaves it running, and
    /// the next call (or `next`) waits for it.
    pub async fn sync(&mut self) -> Result<(), ClientError> {
        self.owed = true;
        let task = match &mut self.syncing {
            Some(task) => task,
            None => {
                self.take_newer_pushes();
                let (session, inbox, page) = (self.session.clone(), self.inbox.clone(), self.page);
                // Kept in `syncing`: the next call (or `next`) awaits it.
                #[allow(clippy::disallowed_methods)]
                self.syncing.insert(tokio::spawn(async move {
                    session
                        .call(|c| {
                            // A sync that a cut interrupts starts over on the
                            // next connection: the inbox moves on only when
                            // it is whole.
                            let mut inbox = inbox.clone();
                            async move { inbox.sync(&c, page).await.map(|m| (m, inbox)) }
                        })
                        .await
                }))
            }
        };
        let done = task.await;
        self.syncing = None;
        let (messages, inbox) =
            done.map_err(|e| ClientError::Protocol(format!("the sync task failed: {e}")))??;
        self.inbox = inbox;
        self.ready.extend(messages);
        self.owed = false;
        // If the sync had to reconnect, it ran on the new connection, which
        // is now routed pushes: take them (the inbox drops any repeats).
        self.take_newer_pushes();
        Ok(())
    }

    /// Swaps in the pushes of a connection newer than ours; true if it did.
    fn take_newer_pushes(&mut self) -> bool {
        let mut st = self.session.inner.lock();
        if st.generation == self.generation {
            return false;
        }
        self.generation = st.generation;
        if let Some(p) = st.pushes.take() {
            self.pushes = p;
        }
        true
    }
}
