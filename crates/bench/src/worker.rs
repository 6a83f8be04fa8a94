//! One worker process: connects its share of clients, waits for the start
//! signal on stdin, runs the scenario, and prints its result as JSON.

use crate::report::{self, Totals, WorkerResult};
use crate::setup::{self, username};
use crate::{BenchArgs, Common, Scenario, DEVICE};
use anyhow::Context;
use hdrhistogram::Histogram;
use natter_client::{pb, Client, ConnectOptions, ServerFrame};
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
    pub(crate) clients: Vec<Option<Client>>,
    pub(crate) latency: Histogram<u64>,
    pub(crate) totals: Totals,
    pub(crate) wall: Duration,
}

/// Connects and resumes the given users, `concurrency` at a time.
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
        let server = c.server_for(u);
        let assign = c.assign.clone();
        let permits = permits.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.ok();
            let t = Instant::now();
            let options = ConnectOptions {
                local_ip,
                ..ConnectOptions::default()
            };
            let server = match &assign {
                Some(url) => natter_client::resolve(url, Some(&name), false).await?,
                None => server,
            };
            let mut client = Client::connect_with(&server, options).await?;
            client.resume(&token, DEVICE).await?;
            counter.fetch_add(1, Ordering::Relaxed);
            Ok::<_, natter_client::ClientError>((client, t.elapsed()))
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
                out.clients.push(Some(client));
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e.to_string());
                out.totals.connect_failed += 1;
                out.clients.push(None);
            }
            Err(e) => {
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
            WorkerResult {
                totals: Totals {
                    connected: alive as u64,
                    ..conn.totals
                },
                connect_us: report::encode(&conn.latency),
                latency_us: report::encode(&report::histogram()),
                connect_wall_ms: conn.wall.as_millis() as u64,
                send_secs: 0.0,
            }
        }
        Scenario::Storm => {
            let users: Vec<usize> = mine(c.clients).collect();
            emit(serde_json::json!("ready"));
            wait_for_go().await?;
            let progress = Progress::start(counter.clone());
            let conn = connect_all(c, &users, &tokens, local_ip, usize::MAX >> 4, counter).await;
            drop(progress);
            WorkerResult {
                totals: conn.totals,
                connect_us: report::encode(&conn.latency),
                latency_us: report::encode(&report::histogram()),
                connect_wall_ms: conn.wall.as_millis() as u64,
                send_secs: 0.0,
            }
        }
        Scenario::Dm => dm(c, index, &tokens, local_ip, counter).await?,
        Scenario::Group => crate::group::run(c, &tokens, local_ip, counter).await?,
    };
    emit(serde_json::json!({ "result": result }));
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
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
}

impl Received {
    /// Adds this receiver's counts to `totals`, judging loss against `acked`.
    pub(crate) fn tally(&self, acked: &[u64], totals: &mut Totals) {
        totals.delivered += self.seqs.len() as u64 + self.duplicates;
        totals.duplicates += self.duplicates;
        totals.out_of_order += self.out_of_order;
        totals.lost += acked.iter().filter(|s| !self.seqs.contains(s)).count() as u64;
    }
}

/// Receives pushed messages (system events aside) until sending is over and
/// every ACKed seq has arrived, or nothing has arrived for [`DRAIN`]. Latency
/// is measured from the send time at the start of each message's text.
pub(crate) async fn receive(receiver: &mut Client, expected: &Expected) -> Received {
    let mut got = Received {
        latency: report::histogram(),
        seqs: HashSet::new(),
        duplicates: 0,
        out_of_order: 0,
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
            return got;
        }
        let push =
            match tokio::time::timeout(Duration::from_millis(100), receiver.next_push()).await {
                Ok(Some(p)) => p,
                Ok(None) => return got,
                Err(_) => continue,
            };
        let ServerFrame::MessagePush(pb::MessagePush { message: Some(m) }) = push else {
            continue;
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
            got.duplicates += 1;
        } else if m.seq < last {
            got.out_of_order += 1;
        }
        last = last.max(m.seq);
    }
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
        Err(_) => t.send_failed += 1,
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
            for u in probe.users(vec![], chunk.to_vec()).await? {
                ids.insert(u.username, u.user_id);
            }
        }
        names
            .iter()
            .map(|n| ids.get(n).copied().unwrap_or(0))
            .collect()
    };
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

    let receivers: Vec<Client> = conn
        .clients
        .drain(pairs.len()..)
        .map(|c| c.context("a receiver failed to connect"))
        .collect::<anyhow::Result<_>>()?;
    let senders: Vec<Option<Client>> = conn.clients;
    let mut receiver_tasks = Vec::new();
    let mut sender_tasks = Vec::new();
    for (i, (sender, mut receiver)) in senders.into_iter().zip(receivers).enumerate() {
        let pair = Arc::new(Expected::default());
        let p = pair.clone();
        receiver_tasks.push(tokio::spawn(async move {
            let got = receive(&mut receiver, &p).await;
            (got, p)
        }));
        let Some(sender) = sender else {
            pair.done.store(true, Ordering::Release);
            continue;
        };
        let sender = Arc::new(sender);
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
                    count_send(sender.send_text(to, &id, &text).await, &pair, &totals);
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
    totals.connected = conn.totals.connected;
    totals.connect_failed = conn.totals.connect_failed;
    for t in receiver_tasks {
        let (got, pair) = t.await?;
        latency.add(&got.latency)?;
        let acked = pair.acked.lock().unwrap_or_else(|p| p.into_inner());
        got.tally(&acked, &mut totals);
    }
    drop(progress);
    Ok(WorkerResult {
        totals,
        connect_us: report::encode(&conn.latency),
        latency_us: report::encode(&latency),
        connect_wall_ms: conn.wall.as_millis() as u64,
        send_secs,
    })
}
