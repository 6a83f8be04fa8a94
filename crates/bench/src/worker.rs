//! One worker process: connects its share of clients, waits for the start
//! signal on stdin, runs the scenario, and prints its result as JSON.

use crate::report::{self, Totals, WorkerResult};
use crate::setup::{self, username};
use crate::{BenchArgs, Common, Scenario, DEVICE};
use anyhow::Context;
use hdrhistogram::Histogram;
use natter_client::pb::{self, send::Target};
use natter_client::{text_message, ConnectOptions, Delivery, Feed, Route, Session, SessionOptions};
use std::collections::HashMap;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;

/// After the last send, a receiver waits for missing messages until none has
/// arrived for this long; what is still missing then counts as lost.
pub(crate) const DRAIN: Duration = Duration::from_secs(5);

pub(crate) fn emit(line: serde_json::Value) {
    println!("{line}");
}

pub(crate) async fn wait_for_go() -> anyhow::Result<()> {
    let mut line = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await?;
    anyhow::ensure!(
        line.trim() == "go",
        "expected the start signal, got {line:?}"
    );
    // The parent holds stdin open until it has our result (and, for connect
    // and storm, has read the server's memory with our clients still
    // connected): end of input means the run is over, or the parent is gone
    // (killed, even by SIGKILL).
    // A plain thread: a blocked read on it never holds up the exit.
    std::thread::spawn(|| {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        std::process::exit(3);
    });
    Ok(())
}

pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Prints the counter as progress every 200 ms until dropped.
pub(crate) struct Progress(tokio::task::JoinHandle<()>);

impl Progress {
    pub(crate) fn start(counter: Arc<AtomicU64>) -> Progress {
        Progress(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                emit(serde_json::json!({"progress": counter.load(Ordering::Relaxed)}));
            }
        }))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) struct Connected {
    pub(crate) clients: Vec<Option<Session>>,
    pub(crate) latency: Histogram<u64>,
    pub(crate) totals: Totals,
    pub(crate) wall: Duration,
}

/// Connects and resumes the given users, `concurrency` at a time, each as a
/// session that reconnects (through assignment, or to the next of the
/// --server list) when its node goes away.
pub(crate) async fn connect_all(
    c: &Common,
    users: &[usize],
    tokens: &HashMap<String, String>,
    local_ip: Option<IpAddr>,
    concurrency: usize,
    counter: Arc<AtomicU64>,
) -> Connected {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(users.len());
    for &u in users {
        let name = username(&c.user_prefix, u);
        let token = tokens.get(&name).cloned().unwrap_or_default();
        let route = match &c.assign {
            Some(url) => Route::parse(url),
            None => Route::Servers(c.servers_for(u)),
        };
        let permits = permits.clone();
        let counter = counter.clone();
        let reconnect_for = Duration::from_secs_f64(c.reconnect_for);
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.ok();
            let t = Instant::now();
            let options = SessionOptions {
                connect: ConnectOptions {
                    local_ip,
                    ..crate::connect_options_for(u)
                },
                user: Some(name),
                reconnect_for,
                retry_for: reconnect_for,
                busy_for: reconnect_for,
                ..SessionOptions::default()
            };
            let session = Session::open(route, &token, DEVICE, options).await?;
            counter.fetch_add(1, Ordering::Relaxed);
            Ok::<_, natter_client::ClientError>((session, t.elapsed()))
        }));
    }
    let mut out = Connected {
        clients: Vec::with_capacity(users.len()),
        latency: report::histogram(),
        totals: Totals::default(),
        wall: Duration::ZERO,
    };
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok((client, took))) => {
                let _ = out.latency.record(took.as_micros().max(1) as u64);
                out.totals.connected += 1;
                out.totals.busy_refusals += client.busy_refusals() as u64;
                out.clients.push(Some(client));
            }
            Ok(Err(e)) => {
                report::note_error(format!("connect: {e}"));
                first_error.get_or_insert(e.to_string());
                out.totals.connect_failed += 1;
                out.clients.push(None);
            }
            Err(e) => {
                report::note_error(format!("connect: {e}"));
                first_error.get_or_insert(e.to_string());
                out.totals.connect_failed += 1;
                out.clients.push(None);
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!(
            "{} connections failed; first error: {e}",
            out.totals.connect_failed
        );
    }
    out.wall = started.elapsed();
    out
}

pub async fn run(args: BenchArgs, index: usize) -> anyhow::Result<()> {
    let c = &args.common;
    let tokens = setup::load(c);
    let local_ip = c
        .source_ips
        .then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, (2 + index).min(254) as u8)));
    let mine = |n: usize| (0..n).filter(move |u| u % c.workers == index);
    let counter = Arc::new(AtomicU64::new(0));
    // The clients of connect and storm are held past the result, until the
    // parent has read the server's memory (and closes our stdin): the
    // reading is of the connections held, not of the server closing them.
    let mut held = None;
    let result = match args.scenario {
        Scenario::Connect => {
            let users: Vec<usize> = mine(c.clients).collect();
            let progress = Progress::start(counter.clone());
            let conn =
                connect_all(c, &users, &tokens, local_ip, c.connect_concurrency, counter).await;
            drop(progress);
            emit(serde_json::json!("ready"));
            wait_for_go().await?;
            tokio::time::sleep(Duration::from_secs_f64(c.duration)).await;
            let alive = conn.clients.iter().flatten().count();
            let result = WorkerResult {
                totals: Totals {
                    connected: alive as u64,
                    ..conn.totals
                },
                connect_us: report::encode(&conn.latency),
                latency_us: report::encode(&report::histogram()),
                connect_wall_ms: conn.wall.as_millis() as u64,
                send_secs: 0.0,
                outages: report::OutagesWire::default(),
                errors: Default::default(),
            };
            held = Some(conn);
            result
        }
        Scenario::Storm => {
            let users: Vec<usize> = mine(c.clients).collect();
            if c.tls_resume {
                crate::warm_tls(c, &users, local_ip).await?;
            }
            emit(serde_json::json!("ready"));
            wait_for_go().await?;
            let progress = Progress::start(counter.clone());
            let conn = connect_all(c, &users, &tokens, local_ip, usize::MAX >> 4, counter).await;
            drop(progress);
            let result = WorkerResult {
                totals: conn.totals.clone(),
                connect_us: report::encode(&conn.latency),
                latency_us: report::encode(&report::histogram()),
                connect_wall_ms: conn.wall.as_millis() as u64,
                send_secs: 0.0,
                outages: report::OutagesWire::default(),
                errors: Default::default(),
            };
            held = Some(conn);
            result
        }
        Scenario::Dm => dm(c, index, &tokens, local_ip, counter).await?,
        Scenario::Group => crate::group::run(c, &tokens, local_ip, counter).await?,
    };
    let result = WorkerResult {
        errors: report::noted_errors(),
        ..result
    };
    emit(serde_json::json!({ "result": result }));
    if held.is_some() {
        // `held` keeps the clients until the end of stdin ends the process
        // (see `wait_for_go`).
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// What senders share with the receivers that check them: every ACKed seq,
/// and whether sending is over.
#[derive(Default)]
pub(crate) struct Expected {
    pub(crate) acked: Mutex<Vec<u64>>,
    pub(crate) done: AtomicBool,
}

pub(crate) struct Received {
    pub(crate) latency: Histogram<u64>,
    pub(crate) seqs: HashSet<u64>,
    /// Messages shown more than once, or below one shown before: what the
    /// user would see wrong (the client dedupes and orders by seq, so any
    /// count here is a fault).
    pub(crate) shown_twice: u64,
    pub(crate) out_of_order: u64,
    /// Pushes of messages already shown (at-least-once at work), pushes
    /// that came ahead of a gap, and SyncHints (each cost a Sync).
    pub(crate) duplicate_pushes: u64,
    pub(crate) gap_syncs: u64,
    pub(crate) hints: u64,
    /// Why the session ended before the run did (it could not reconnect).
    pub(crate) failed: Option<String>,
}

impl Received {
    /// Adds this receiver's counts to `totals`, judging loss against `acked`.
    pub(crate) fn tally(&self, acked: &[u64], totals: &mut Totals) {
        totals.delivered += self.seqs.len() as u64 + self.shown_twice;
        totals.duplicates += self.shown_twice;
        totals.out_of_order += self.out_of_order;
        totals.duplicate_pushes += self.duplicate_pushes;
        totals.gap_syncs += self.gap_syncs + self.hints;
        totals.lost += acked.iter().filter(|s| !self.seqs.contains(s)).count() as u64;
        if let Some(why) = &self.failed {
            eprintln!("a receiver gave up: {why}");
            report::note_error(format!("a receiver gave up: {why}"));
            totals.sessions_failed += 1;
        }
    }
}

/// Counts every message of the receiver's conversations so far as seen:
/// the run audits only what is sent from now on.
pub(crate) async fn start_at_head(feed: &mut Feed) -> anyhow::Result<()> {
    let list = feed
        .session()
        .call(|c| async move { c.conversations(200).await })
        .await?;
    for c in list {
        feed.inbox.start_at(c.conversation_id, c.last_seq);
    }
    Ok(())
}

/// Shows messages (system events aside) as a client would, across
/// reconnects, until sending is over and every ACKed seq has arrived, or
/// nothing has arrived for [`DRAIN`]. Latency is measured from the send time
/// at the start of each message's text.
pub(crate) async fn receive(feed: &mut Feed, expected: &Expected) -> Received {
    let mut got = Received {
        latency: report::histogram(),
        seqs: HashSet::new(),
        shown_twice: 0,
        out_of_order: 0,
        duplicate_pushes: 0,
        gap_syncs: 0,
        hints: 0,
        failed: None,
    };
    let mut last = 0;
    let mut heard = Instant::now();
    loop {
        let done = expected.done.load(Ordering::Acquire);
        let settled = done
            && expected
                .acked
                .lock()
                .map(|a| a.iter().all(|s| got.seqs.contains(s)))
                .unwrap_or(true);
        if settled || (done && heard.elapsed() > DRAIN) {
            break;
        }
        let m = match tokio::time::timeout(Duration::from_millis(100), feed.next()).await {
            Ok(Ok(Delivery::Message(m))) => m,
            Ok(Ok(Delivery::Other(_))) | Err(_) => continue,
            Ok(Err(e)) => {
                got.failed = Some(e.to_string());
                break;
            }
        };
        let Some(body) = m.body.as_ref().filter(|b| b.kind() != pb::BodyKind::System) else {
            continue;
        };
        heard = Instant::now();
        let sent_us: u64 = body
            .content
            .split(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let _ = got.latency.record(now_us().saturating_sub(sent_us).max(1));
        if !got.seqs.insert(m.seq) {
            got.shown_twice += 1;
        } else if m.seq < last {
            got.out_of_order += 1;
        }
        last = last.max(m.seq);
    }
    got.duplicate_pushes = feed.duplicates;
    got.gap_syncs = feed.gaps;
    got.hints = feed.hints;
    got
}

/// The outages of these sessions: how many moved because the server asked
/// (GOING_AWAY), and for connections that just went (a node died) how long
/// each took to come back, and the first loss and last return as
/// wall-clock µs.
pub(crate) fn outages<'a>(sessions: impl Iterator<Item = &'a Session>) -> report::Outages {
    let (now, now_wall) = (tokio::time::Instant::now(), now_us());
    let wall = |t: tokio::time::Instant| now_wall - now.duration_since(t).as_micros() as u64;
    let mut out = report::Outages::default();
    for o in sessions.flat_map(Session::outages) {
        if o.told {
            out.moved += 1;
            continue;
        }
        let _ = out.took.record((o.back - o.lost).as_micros().max(1) as u64);
        let lost = wall(o.lost);
        out.first_lost_us = Some(out.first_lost_us.map_or(lost, |f| f.min(lost)));
        out.last_back_us = out.last_back_us.max(wall(o.back));
    }
    out
}

/// The send schedule of one sender: message n at `start + offset + n ×
/// period`, until `end`, each sent without waiting for earlier ones (open
/// loop). `send(n, ts)` gets the scheduled time as wall-clock µs, which the
/// message carries so receivers can measure from it. Returns when every
/// send has finished.
pub(crate) async fn open_loop<F, Fut>(
    clock: (Instant, u64),
    offset: Duration,
    period: Duration,
    end: Instant,
    mut send: F,
) where
    F: FnMut(u64, u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (start, start_wall) = clock;
    let mut inflight = Vec::new();
    for n in 0u64.. {
        let scheduled = start + offset + period.mul_f64(n as f64);
        if scheduled >= end {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let ts = start_wall + (scheduled - start).as_micros() as u64;
        inflight.push(tokio::spawn(send(n, ts)));
    }
    for f in inflight {
        let _ = f.await;
    }
}

/// Counts one send's outcome.
pub(crate) fn count_send(
    r: Result<pb::SendAck, natter_client::ClientError>,
    expected: &Expected,
    totals: &Mutex<Totals>,
) {
    let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
    t.sent += 1;
    match r {
        Ok(ack) => {
            t.acked += 1;
            expected
                .acked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ack.seq);
        }
        Err(e) if e.code() == Some(pb::ErrorCode::RateLimited) => t.rate_limited += 1,
        Err(e) => {
            report::note_error(format!("send: {e}"));
            t.send_failed += 1;
        }
    }
}

async fn dm(
    c: &Common,
    index: usize,
    tokens: &HashMap<String, String>,
    local_ip: Option<IpAddr>,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<WorkerResult> {
    let half = c.clients / 2;
    let pairs: Vec<usize> = (0..half).filter(|k| k % c.workers == index).collect();
    let mut users = pairs.clone();
    users.extend(pairs.iter().map(|k| k + half));
    let progress = Progress::start(counter.clone());
    let mut conn = connect_all(
        c,
        &users,
        tokens,
        local_ip,
        c.connect_concurrency,
        counter.clone(),
    )
    .await;
    drop(progress);
    let receiver_ids: Vec<u64> = {
        // Receivers' user ids, resolved through any connected client.
        let probe = conn
            .clients
            .iter()
            .flatten()
            .next()
            .context("no client connected")?;
        let names: Vec<String> = pairs
            .iter()
            .map(|k| username(&c.user_prefix, k + half))
            .collect();
        let mut ids = HashMap::new();
        for chunk in names.chunks(500) {
            let users = probe
                .call(|c| async move { c.users(vec![], chunk.to_vec()).await })
                .await?;
            for u in users {
                ids.insert(u.username, u.user_id);
            }
        }
        names
            .iter()
            .map(|n| ids.get(n).copied().unwrap_or(0))
            .collect()
    };
    let mut receivers = Vec::with_capacity(pairs.len());
    for r in conn.clients.drain(pairs.len()..) {
        let mut feed = r.context("a receiver failed to connect")?.feed();
        start_at_head(&mut feed).await?;
        receivers.push(feed);
    }
    emit(serde_json::json!("ready"));
    wait_for_go().await?;

    counter.store(0, Ordering::Relaxed);
    let progress = Progress::start(counter.clone());
    let period = Duration::from_secs_f64(half as f64 / c.rate.max(0.001));
    let start = Instant::now();
    let start_wall = now_us();
    let end = start + Duration::from_secs_f64(c.duration);
    let totals = Arc::new(Mutex::new(Totals::default()));
    let padding = "x".repeat(c.size.saturating_sub(20));

    let senders: Vec<Option<Session>> = conn.clients;
    let mut receiver_tasks = Vec::new();
    let mut sender_tasks = Vec::new();
    for (i, (sender, mut receiver)) in senders.iter().cloned().zip(receivers).enumerate() {
        let pair = Arc::new(Expected::default());
        let p = pair.clone();
        receiver_tasks.push(tokio::spawn(async move {
            let got = receive(&mut receiver, &p).await;
            (got, p, receiver)
        }));
        let Some(sender) = sender else {
            pair.done.store(true, Ordering::Release);
            continue;
        };
        let to = receiver_ids[i];
        let totals = totals.clone();
        let counter = counter.clone();
        let padding = padding.clone();
        // Spread the senders' first sends over one period.
        let offset = period.mul_f64(i as f64 / pairs.len().max(1) as f64);
        sender_tasks.push(tokio::spawn(async move {
            open_loop((start, start_wall), offset, period, end, |n, ts| {
                let (sender, pair, totals, counter) = (
                    sender.clone(),
                    pair.clone(),
                    totals.clone(),
                    counter.clone(),
                );
                let (text, id) = (format!("{ts} {padding}"), format!("{ts}-{i}-{n}"));
                async move {
                    let send = text_message(Target::PeerUserId(to), &id, &text);
                    count_send(sender.send(send).await, &pair, &totals);
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
            pair.done.store(true, Ordering::Release);
        }));
    }
    for t in sender_tasks {
        let _ = t.await;
    }
    let send_secs = start.elapsed().as_secs_f64();
    let mut latency = report::histogram();
    let mut totals = totals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    totals.connections_from(&conn.totals);
    let mut feeds = Vec::new();
    for t in receiver_tasks {
        let (got, pair, feed) = t.await?;
        latency.add(&got.latency)?;
        let acked = pair.acked.lock().unwrap_or_else(|p| p.into_inner());
        got.tally(&acked, &mut totals);
        feeds.push(feed);
    }
    drop(progress);
    let sessions = feeds.iter().map(Feed::session);
    let outages = outages(sessions.chain(senders.iter().flatten()));
    Ok(WorkerResult {
        totals,
        connect_us: report::encode(&conn.latency),
        latency_us: report::encode(&latency),
        connect_wall_ms: conn.wall.as_millis() as u64,
        send_secs,
        outages: outages.encode(),
        errors: Default::default(),
    })
}
