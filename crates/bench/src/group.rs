//! The group scenario: every client is a member of one group, a few of them
//! send into it at the offered rate, and every other member checks that it
//! receives each acknowledged message exactly once, in seq order. Latency
//! is from each message's scheduled send time to its arrival at a member,
//! so the histogram holds one sample per delivery (fan-out included).

use crate::report::{self, Totals, WorkerResult};
use crate::setup::username;
use crate::worker::{
    connect_all, count_send, emit, now_us, open_loop, outages, receive, start_at_head, wait_for_go,
    Expected, Progress,
};
use crate::Common;
use anyhow::Context;
use natter_client::pb::{self, send::Target};
use natter_client::{text_message, Feed, Session};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    let clients: Vec<Session> = conn
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
                .call(|c| async move { c.users(vec![], chunk.to_vec()).await })
                .await?
                .into_iter()
                .map(|u| u.user_id),
        );
    }
    // Not repeated if cut: creating a group twice would make two.
    let group = owner
        .client()
        .create_group(
            pb::ConversationKind::Group,
            "bench",
            pb::JoinPolicy::Open,
            ids,
        )
        .await
        .context("creating the bench group (is social.max_group_members high enough?)")?;
    let id = group.conversation_id;
    // Members 1..=senders send; the owner and the rest receive.
    let mut clients = clients.into_iter();
    let owner = clients.next().context("no owner")?;
    let senders: Vec<Session> = clients.by_ref().take(c.senders).collect();
    let mut receivers: Vec<Feed> = Vec::new();
    for r in clients.chain([owner]) {
        let mut feed = r.feed();
        start_at_head(&mut feed).await?;
        receivers.push(feed);
    }
    emit(serde_json::json!("ready"));
    wait_for_go().await?;

    counter.store(0, Ordering::Relaxed);
    let progress = Progress::start(counter.clone());
    let senders_n = c.senders;
    let period = Duration::from_secs_f64(senders_n as f64 / c.rate.max(0.001));
    let start = Instant::now();
    let start_wall = now_us();
    let end = start + Duration::from_secs_f64(c.duration);
    let shared = Arc::new(Expected::default());
    let totals = Arc::new(Mutex::new(Totals::default()));
    let padding = "x".repeat(c.size.saturating_sub(20));

    let mut receiver_tasks = Vec::new();
    for mut r in receivers {
        let shared = shared.clone();
        receiver_tasks.push(tokio::spawn(async move {
            let got = receive(&mut r, &shared).await;
            (got, r)
        }));
    }

    let mut sender_tasks = Vec::new();
    for (i, sender) in senders.iter().cloned().enumerate() {
        let (shared, totals, counter, padding) = (
            shared.clone(),
            totals.clone(),
            counter.clone(),
            padding.clone(),
        );
        let offset = period.mul_f64(i as f64 / senders_n as f64);
        sender_tasks.push(tokio::spawn(async move {
            open_loop((start, start_wall), offset, period, end, |n, ts| {
                let (sender, shared, totals, counter) = (
                    sender.clone(),
                    shared.clone(),
                    totals.clone(),
                    counter.clone(),
                );
                let (text, cid) = (format!("{ts} {padding}"), format!("g{ts}-{i}-{n}"));
                async move {
                    let send = text_message(Target::ConversationId(id), &cid, &text);
                    count_send(sender.send(send).await, &shared, &totals);
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
        }));
    }
    for t in sender_tasks {
        let _ = t.await;
    }
    shared.done.store(true, Ordering::Release);
    let send_secs = start.elapsed().as_secs_f64();

    let mut latency = report::histogram();
    let mut totals = totals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    totals.connections_from(&conn.totals);
    let acked = shared
        .acked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut feeds = Vec::new();
    for t in receiver_tasks {
        let (got, feed) = t.await?;
        latency.add(&got.latency)?;
        got.tally(&acked, &mut totals);
        feeds.push(feed);
    }
    drop(progress);
    let outages = outages(feeds.iter().map(Feed::session).chain(&senders));
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
