//! The group scenario: every client is a member of one group, a few of them
//! send into it at the offered rate, and every other member checks that it
//! receives each acknowledged message exactly once, in seq order. Latency
//! is from each message's scheduled send time to its arrival at a member,
//! so the histogram holds one sample per delivery (fan-out included).

use crate::report::{self, Totals, WorkerResult};
use crate::setup::username;
use crate::worker::{connect_all, emit, now_us, wait_for_go, Progress, DRAIN};
use crate::Common;
use anyhow::Context;
use natter_client::{pb, Client, ServerFrame};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the senders share with the members: every acknowledged seq, and
/// whether sending is over.
struct Shared {
    acked: Mutex<Vec<u64>>,
    done: AtomicBool,
}

pub async fn run(
    c: &Common,
    tokens: &HashMap<String, String>,
    local_ip: Option<IpAddr>,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<WorkerResult> {
    let users: Vec<usize> = (0..c.clients).collect();
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
    let clients: Vec<Client> = conn
        .clients
        .drain(..)
        .map(|c| c.context("a member failed to connect"))
        .collect::<anyhow::Result<_>>()?;

    // User 0 owns the group; everyone else is added at creation.
    let owner = &clients[0];
    let names: Vec<String> = (1..c.clients)
        .map(|i| username(&c.user_prefix, i))
        .collect();
    let mut ids = Vec::with_capacity(names.len());
    for chunk in names.chunks(500) {
        ids.extend(
            owner
                .users(vec![], chunk.to_vec())
                .await?
                .into_iter()
                .map(|u| u.user_id),
        );
    }
    let group = owner
        .create_group(
            pb::ConversationKind::Group,
            "bench",
            pb::JoinPolicy::Open,
            ids,
        )
        .await
        .context("creating the bench group (is social.max_group_members high enough?)")?;
    let id = group.conversation_id;
    emit(serde_json::json!("ready"));
    wait_for_go().await?;

    counter.store(0, Ordering::Relaxed);
    let progress = Progress::start(counter.clone());
    let senders_n = c.senders;
    let period = Duration::from_secs_f64(senders_n as f64 / c.rate.max(0.001));
    let start = Instant::now();
    let start_wall = now_us();
    let end = start + Duration::from_secs_f64(c.duration);
    let shared = Arc::new(Shared {
        acked: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
    });
    let totals = Arc::new(Mutex::new(Totals::default()));
    let padding = "x".repeat(c.size.saturating_sub(20));

    // Members 1..=senders send; the owner and the rest receive.
    let mut clients = clients.into_iter();
    let owner = clients.next().context("no owner")?;
    let senders: Vec<Client> = clients.by_ref().take(senders_n).collect();
    let mut receivers: Vec<Client> = clients.collect();
    receivers.push(owner);

    let mut receiver_tasks = Vec::new();
    for mut r in receivers {
        let shared = shared.clone();
        receiver_tasks.push(tokio::spawn(async move {
            let mut latency = report::histogram();
            let mut seqs = std::collections::HashSet::new();
            let (mut duplicates, mut out_of_order, mut last) = (0u64, 0u64, 0u64);
            let mut heard = Instant::now();
            loop {
                let done = shared.done.load(Ordering::Acquire);
                let settled = done
                    && shared
                        .acked
                        .lock()
                        .map(|a| a.iter().all(|s| seqs.contains(s)))
                        .unwrap_or(true);
                if settled || (done && heard.elapsed() > DRAIN) {
                    break;
                }
                let push =
                    match tokio::time::timeout(Duration::from_millis(100), r.next_push()).await {
                        Ok(Some(p)) => p,
                        Ok(None) => break,
                        Err(_) => continue,
                    };
                let ServerFrame::MessagePush(pb::MessagePush { message: Some(m) }) = push else {
                    continue;
                };
                if m.body
                    .as_ref()
                    .is_some_and(|b| b.kind() == pb::BodyKind::System)
                {
                    continue;
                }
                heard = Instant::now();
                let sent_us: u64 = m
                    .body
                    .as_ref()
                    .and_then(|b| b.content.split(' ').next())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let _ = latency.record(now_us().saturating_sub(sent_us).max(1));
                if !seqs.insert(m.seq) {
                    duplicates += 1;
                } else if m.seq < last {
                    out_of_order += 1;
                }
                last = last.max(m.seq);
            }
            (latency, seqs, duplicates, out_of_order)
        }));
    }

    let mut sender_tasks = Vec::new();
    for (i, sender) in senders.into_iter().enumerate() {
        let sender = Arc::new(sender);
        let (shared, totals, counter, padding) = (
            shared.clone(),
            totals.clone(),
            counter.clone(),
            padding.clone(),
        );
        let offset = period.mul_f64(i as f64 / senders_n as f64);
        sender_tasks.push(tokio::spawn(async move {
            let mut inflight = Vec::new();
            for n in 0u64.. {
                let scheduled = start + offset + period.mul_f64(n as f64);
                if scheduled >= end {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let ts = start_wall + (scheduled - start).as_micros() as u64;
                let (sender, shared, totals, counter) = (
                    sender.clone(),
                    shared.clone(),
                    totals.clone(),
                    counter.clone(),
                );
                let text = format!("{ts} {padding}");
                let cid = format!("g{ts}-{i}-{n}");
                inflight.push(tokio::spawn(async move {
                    let r = sender.send_to(id, &cid, &text).await;
                    let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                    t.sent += 1;
                    match r {
                        Ok(ack) => {
                            t.acked += 1;
                            shared
                                .acked
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(ack.seq);
                        }
                        Err(e) if e.code() == Some(pb::ErrorCode::RateLimited) => {
                            t.rate_limited += 1
                        }
                        Err(_) => t.send_failed += 1,
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                }));
            }
            for f in inflight {
                let _ = f.await;
            }
        }));
    }
    for t in sender_tasks {
        let _ = t.await;
    }
    shared.done.store(true, Ordering::Release);
    let send_secs = start.elapsed().as_secs_f64();

    let mut latency = report::histogram();
    let mut totals = totals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    totals.connected = conn.totals.connected;
    totals.connect_failed = conn.totals.connect_failed;
    let acked = shared
        .acked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for t in receiver_tasks {
        let (h, seqs, duplicates, out_of_order) = t.await?;
        latency.add(&h)?;
        totals.delivered += seqs.len() as u64 + duplicates;
        totals.duplicates += duplicates;
        totals.out_of_order += out_of_order;
        totals.lost += acked.iter().filter(|s| !seqs.contains(s)).count() as u64;
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
