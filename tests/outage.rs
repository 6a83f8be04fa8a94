//! The database server misbehaving under a running server (PostgreSQL, or
//! MySQL in a run with NATTER_TEST_BACKEND=mysql), through a fault-injecting
//! proxy between natter and the database: cut, stalled (briefly, or silent
//! for seconds: `Mode::Stall` forwards nothing and closes nothing, as a
//! partition or a hung primary would), slow. Nothing
//! uncommitted is ACKed, senders hear UNAVAILABLE with a retry hint quickly,
//! /readyz says so while the breaker is open, the server recovers by itself
//! when the database is back, and every ACKed message is stored exactly
//! once, resends of unanswered ones included. Needs NATTER_TEST_POSTGRES_URL
//! (or NATTER_TEST_MYSQL_URL; skipped, with the reason printed, when it is
//! unset).

mod common;

use common::*;
use natter_client::{pb, Client, ClientError};
use natter_testkit::{FaultProxy, Mode};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// A server whose database connections all go through `proxy`: MySQL's
/// in a MySQL run, PostgreSQL's otherwise.
async fn behind_proxy(
    tweak: impl FnOnce(&mut natter::Config),
) -> Option<(TestServer, FaultProxy, String)> {
    let mysql = backend() == natter::config::Backend::Mysql;
    let (var, port) = if mysql {
        ("NATTER_TEST_MYSQL_URL", 3306)
    } else {
        ("NATTER_TEST_POSTGRES_URL", 5432)
    };
    let Ok(base) = std::env::var(var) else {
        eprintln!("skipped: {var} is not set (database outage tests)");
        return None;
    };
    let direct = if mysql {
        natter_testkit::my::Database::create(&base, "natter_bb_")
            .await
            .expect("a database")
            .keep()
    } else {
        natter_testkit::pg::Schema::create(&base, "natter_bb_", false)
            .await
            .expect("a schema")
            .url
            .clone()
    };
    let (authority, upstream) = database_address(&direct, port);
    let proxy = FaultProxy::start(upstream).await.expect("proxy");
    let url = direct.replacen(&authority, &proxy.addr().to_string(), 1);
    let server = TestServer::start_with(|c| {
        c.store.backend = if mysql {
            natter::config::Backend::Mysql
        } else {
            natter::config::Backend::Postgres
        };
        c.store.url = url;
        c.store.connect_timeout_ms = 500;
        c.store.statement_timeout_ms = 1_000;
        c.store.pool_wait_ms = 500;
        c.store.breaker_failures = 2;
        c.store.breaker_open_ms = 300;
        tweak(c);
    })
    .await;
    Some((server, proxy, direct))
}

/// The `host:port` of a database URL (`port` when it names none), and it
/// resolved.
fn database_address(url: &str, port: u16) -> (String, SocketAddr) {
    let rest = url.split_once("://").expect("a URL").1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest
        .split(['/', '?'])
        .next()
        .expect("an authority")
        .to_owned();
    let addr = if authority.contains(':') {
        authority.clone()
    } else {
        format!("{authority}:{port}")
    };
    let addr = addr.replace("localhost", "127.0.0.1");
    (authority, addr.parse().expect("an IP address and port"))
}

fn unavailable(r: &Result<pb::SendAck, ClientError>) -> bool {
    matches!(r, Err(ClientError::Server { code, retry_after_ms, .. })
        if *code == pb::ErrorCode::Unavailable && *retry_after_ms > 0)
}

/// Every message bob can sync, by client_msg_id, with how often it is there.
async fn stored(server: &TestServer) -> BTreeMap<String, usize> {
    let (bob, _) = server.device("bob", "check").await;
    let mut out = BTreeMap::new();
    for m in natter_client::Inbox::default().sync(&bob, 0).await.unwrap() {
        *out.entry(m.client_msg_id).or_insert(0) += 1;
    }
    out
}

async fn ready(server: &TestServer) -> u16 {
    http_get(server.http, "/readyz").await.0
}

/// Waits (a bounded while) for /readyz to give `status`.
async fn until_ready_is(server: &TestServer, status: u16) {
    let deadline = Instant::now() + WAIT;
    while ready(server).await != status {
        assert!(Instant::now() < deadline, "/readyz never became {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends until one is ACKed again (the server recovering by itself).
async fn until_a_send_works(alice: &Client, to: u64, id: &str) -> pb::SendAck {
    let deadline = Instant::now() + WAIT;
    loop {
        match alice.send_text(to, id, "back").await {
            Ok(ack) => return ack,
            Err(e) => {
                assert!(Instant::now() < deadline, "never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_cut_database_gets_quick_unavailable_and_the_server_recovers_by_itself() {
    let Some((server, proxy, _)) = behind_proxy(|_| {}).await else {
        return;
    };
    let (alice, _) = server.user("alice").await;
    let (_bob, bob) = server.user("bob").await;
    let mut acked = BTreeSet::new();
    for i in 0..20 {
        alice
            .send_text(bob.user_id, &format!("a{i}"), "before")
            .await
            .unwrap();
        acked.insert(format!("a{i}"));
    }
    assert_eq!(ready(&server).await, 200);

    proxy.set(Mode::Cut);
    let mut refused = 0;
    for i in 0..20 {
        let started = Instant::now();
        let r = alice
            .send_text(bob.user_id, &format!("b{i}"), "during")
            .await;
        assert!(unavailable(&r), "send {i} during the outage: {r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "answered quickly"
        );
        refused += 1;
    }
    assert_eq!(refused, 20);
    until_ready_is(&server, 503).await;
    let (_, page) = http_get(server.http, "/metrics").await;
    assert!(metric(&page, "natter_store_breaker_state").unwrap_or(0.0) >= 1.0);

    proxy.set(Mode::Pass);
    let ack = until_a_send_works(&alice, bob.user_id, "c0").await;
    assert!(!ack.duplicate);
    acked.insert("c0".into());
    until_ready_is(&server, 200).await;
    let (_, page) = http_get(server.http, "/metrics").await;
    assert_eq!(metric(&page, "natter_store_breaker_state"), Some(0.0));
    let have = stored(&server).await;
    assert!(
        have.values().all(|&n| n == 1),
        "each message once: {have:?}"
    );
    let ids: BTreeSet<String> = have.into_keys().collect();
    assert_eq!(ids, acked, "exactly what was ACKed, none of the refused");
    server.stop().await;
}

/// A database that stalls mid-load (and one whose link is cut while
/// commits are in flight): sends are answered within the bound, and after
/// recovery the client resends whatever was not ACKed with the same
/// client_msg_ids; each message ends up stored exactly once, ACKed ones
/// included.
#[tokio::test]
async fn stalls_and_cuts_mid_load_lose_nothing_and_store_nothing_twice() {
    let Some((server, proxy, _)) = behind_proxy(|_| {}).await else {
        return;
    };
    let (alice, _) = server.user("alice").await;
    let (_bob, bob) = server.user("bob").await;
    // Where the fault lands in a round of commits, in ms after the sends
    // go out: a cut is swept finely so that some land during a COMMIT.
    let stalls = (0..4).map(|i| (Mode::Stall, i * 100));
    let cuts = (0..23).map(|i| (Mode::Cut, i * 15));
    let (mut total, mut committed_unanswered) = (0, 0);
    for (round, (fault, delay)) in stalls.chain(cuts).enumerate() {
        {
            let ids: Vec<String> = (0..60).map(|i| format!("{fault:?}-{round}-{i}")).collect();
            total += ids.len();
            let sends = ids
                .iter()
                .map(|id| alice.send_text(bob.user_id, id, "load"));
            let all = futures_util::future::join_all(sends);
            // A slow link spreads the sends over several commits; the fault
            // lands somewhere among them (before, during, after a COMMIT).
            proxy.set(Mode::Slow(5));
            let fault_later = async {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                proxy.set(fault);
            };
            let started = Instant::now();
            let (results, ()) = tokio::join!(all, fault_later);
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "bounded: {:?}",
                started.elapsed()
            );
            let mut pending: Vec<&String> = Vec::new();
            for (id, r) in ids.iter().zip(&results) {
                match r {
                    Ok(_) => {}
                    Err(_) => {
                        assert!(unavailable(r), "{id}: {r:?}");
                        pending.push(id);
                    }
                }
            }
            eprintln!(
                "{fault:?} after {delay} ms: {} of {} unanswered",
                pending.len(),
                ids.len()
            );
            proxy.set(Mode::Pass);
            // The client's resends, until each is ACKed. A duplicate ACK is
            // a COMMIT that went through while its answer was lost.
            for id in pending {
                if until_a_send_works(&alice, bob.user_id, id).await.duplicate {
                    committed_unanswered += 1;
                }
            }
        }
    }
    eprintln!("{committed_unanswered} resends found their message already committed");
    let have = stored(&server).await;
    assert_eq!(have.len(), total, "every message is there");
    assert!(have.values().all(|&n| n == 1), "and none twice");
    server.stop().await;
}

/// A slow database with a tiny pool: requests wait a bounded time for a
/// connection and are told UNAVAILABLE, never queued without end.
#[tokio::test]
async fn a_slow_database_and_an_exhausted_pool_give_bounded_waits() {
    let Some((server, proxy, _)) = behind_proxy(|c| c.store.pool_size = 2).await else {
        return;
    };
    let (alice, _) = server.user("alice").await;
    proxy.set(Mode::Slow(300));
    let started = Instant::now();
    // Forty syncs at once on a slow link need more than the pool's two
    // connections for longer than its wait.
    let syncs = (0..40).map(|_| alice.sync_page(vec![], 0, 10));
    let results = futures_util::future::join_all(syncs).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(9), "bounded: {elapsed:?}");
    let busy = results
        .iter()
        .filter(|r| {
            matches!(r, Err(ClientError::Server { code, retry_after_ms, .. })
            if *code == pb::ErrorCode::Unavailable && *retry_after_ms > 0)
        })
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        busy + ok,
        results.len(),
        "only pages and UNAVAILABLE: {results:?}"
    );
    assert!(busy > 0, "the pool's wait ran out for some");
    proxy.set(Mode::Pass);
    drop(alice);
    server.stop().await;
}

/// A COMMIT that reached the database but whose answer never came back:
/// natter cannot know it committed, so it answers UNAVAILABLE; the
/// client's resends with the same client_msg_ids then resolve to the
/// stored messages (duplicate ACKs), and each is stored exactly once. The
/// database is watched directly (not through the proxy) to hold the
/// answers the moment the round's rows are committed.
#[tokio::test]
async fn a_commit_whose_answer_is_lost_resolves_to_one_message_on_resend() {
    // Answers 40 ms late on a link with room for a slow round: a wide
    // enough window to catch a COMMIT's answer on a loaded machine.
    let Some((server, proxy, direct)) =
        behind_proxy(|c| c.store.statement_timeout_ms = 2_500).await
    else {
        return;
    };
    let (alice, me) = server.user("alice").await;
    let (_bob, bob) = server.user("bob").await;
    let mut db = Direct::connect(&direct).await;
    let mut lost_commits = 0;
    const ATTEMPTS: usize = 5;
    let mut attempts = 0;
    for attempt in 0..ATTEMPTS {
        attempts += 1;
        let ids: Vec<String> = (0..40).map(|i| format!("lost-{attempt}-{i}")).collect();
        // Answers take a while to come back, long enough to catch them.
        proxy.set(Mode::Slow(40));
        let sends = futures_util::future::join_all(
            ids.iter().map(|id| alice.send_text(bob.user_id, id, "x")),
        );
        let watch = async {
            let pattern = format!("lost-{attempt}-%");
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                let n = db.stored_like(me.user_id, &pattern).await;
                if n == ids.len() as i64 {
                    proxy.set(Mode::HoldReplies);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let (results, ()) = tokio::join!(sends, watch);
        proxy.set(Mode::Cut);
        tokio::time::sleep(Duration::from_millis(50)).await;
        proxy.set(Mode::Pass);
        for (id, r) in ids.iter().zip(&results) {
            match r {
                Ok(ack) => assert!(!ack.duplicate, "{id}"),
                Err(_) => {
                    assert!(unavailable(r), "{id}: {r:?}");
                    let again = until_a_send_works(&alice, bob.user_id, id).await;
                    assert!(again.duplicate, "{id} was committed: its resend finds it");
                    lost_commits += 1;
                }
            }
        }
        if lost_commits > 0 {
            break;
        }
    }
    assert!(
        lost_commits > 0,
        "no COMMIT's answer was caught in {ATTEMPTS} tries"
    );
    let have = stored(&server).await;
    assert_eq!(have.len(), attempts * 40);
    assert!(have.values().all(|&n| n == 1), "each once");
    server.stop().await;
}

/// The test's own connection to the database, past the proxy.
enum Direct {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

impl Direct {
    async fn connect(url: &str) -> Direct {
        if url.starts_with("mysql://") {
            return Direct::My(
                mysql_async::Conn::from_url(url)
                    .await
                    .expect("a connection"),
            );
        }
        let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("a direct connection");
        natter_testkit::spawn(conn);
        Direct::Pg(db)
    }

    /// Messages committed from `sender` whose client_msg_id is `LIKE` `pattern`.
    async fn stored_like(&mut self, sender: u64, pattern: &str) -> i64 {
        match self {
            Direct::Pg(db) => db
                .query_one(
                    "SELECT count(*) FROM message_ids WHERE sender_id = $1 AND client_msg_id LIKE $2",
                    &[&(sender as i64), &pattern],
                )
                .await
                .expect("count")
                .get(0),
            Direct::My(db) => {
                use mysql_async::prelude::Queryable;
                db.exec_first(
                    "SELECT count(*) FROM messages WHERE sender_id = ? AND client_msg_id LIKE ?",
                    (sender, pattern),
                )
                .await
                .expect("count")
                .unwrap_or(0)
            }
        }
    }
}

/// Sets every `[store]` timeout and breaker setting back to its default
/// (`behind_proxy` shortens them): the silent-database tests measure what
/// a production configuration does.
fn store_defaults(c: &mut natter::Config) {
    let d = natter::config::StoreConfig::default();
    c.store.connect_timeout_ms = d.connect_timeout_ms;
    c.store.statement_timeout_ms = d.statement_timeout_ms;
    c.store.pool_wait_ms = d.pool_wait_ms;
    c.store.breaker_failures = d.breaker_failures;
    c.store.breaker_open_ms = d.breaker_open_ms;
}

/// The documented bound on a Send (`store.request_timeout_ms`, default
/// 2 s), and what a loaded test machine may add to it.
const SEND_DEADLINE: Duration = Duration::from_millis(2_000);
const MARGIN: Duration = Duration::from_millis(1_000);

/// A database that goes silent (a partition, a hung primary: the proxy in
/// `Mode::Stall` holds every byte and closes nothing) for 10 s under a steady stream of
/// pipelined Sends. Every Send is answered within its deadline, ACKed or
/// UNAVAILABLE with a retry hint; the breaker opens; /readyz answers 503
/// from what it knows, quickly; the server recovers without a restart.
/// Nothing ACKed is lost, and no Send refused after the silence began is
/// stored; Sends already in a round when it began have an unknown outcome,
/// which the client's resend with the same client_msg_id resolves to one
/// message.
#[tokio::test]
async fn a_silent_database_answers_every_send_within_its_deadline() {
    let Some((server, proxy, _)) = behind_proxy(store_defaults).await else {
        return;
    };
    let (alice, _) = server.user("alice").await;
    let (_bob, bob) = server.user("bob").await;
    const EVERY: Duration = Duration::from_millis(100);
    const SILENT_FROM: Duration = Duration::from_secs(2);
    const SILENT_FOR: Duration = Duration::from_secs(10);
    const SENDS: u32 = 170; // 17 s: 2 before, 10 silent, 5 after
    let start = Instant::now();
    let sends = futures_util::future::join_all((0..SENDS).map(|i| {
        let alice = &alice;
        async move {
            tokio::time::sleep_until(start + EVERY * i).await;
            let issued = Instant::now();
            let id = format!("s{i}");
            let r = alice.send_text(bob.user_id, &id, "steady").await;
            (id, issued - start, issued.elapsed(), r)
        }
    }));
    let outage = async {
        tokio::time::sleep_until(start + SILENT_FROM).await;
        proxy.set(Mode::Stall);
        // /readyz while the database is silent: always quick, and 503 with
        // the breaker named once it opens.
        let (mut slowest, mut saw_open, mut probes) = (Duration::ZERO, None, 0);
        while Instant::now() < start + SILENT_FROM + SILENT_FOR {
            let asked = Instant::now();
            let (status, body) = http_get(server.http, "/readyz").await;
            slowest = slowest.max(asked.elapsed());
            probes += 1;
            if status == 503 && body.contains("breaker") && saw_open.is_none() {
                saw_open = Some(asked - start - SILENT_FROM);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        proxy.set(Mode::Pass);
        (slowest, saw_open, probes)
    };
    let (results, (slowest_ready, opened_after, probes)) = tokio::join!(sends, outage);

    let mut answered_in: Vec<Duration> = results.iter().map(|r| r.2).collect();
    answered_in.sort();
    let (p50, max) = (
        answered_in[answered_in.len() / 2],
        answered_in[answered_in.len() - 1],
    );
    let refused: Vec<&(String, Duration, Duration, _)> =
        results.iter().filter(|r| r.3.is_err()).collect();
    eprintln!(
        "sends: {} answered, p50 {p50:?}, max {max:?}, {} refused; /readyz: {probes} probes, \
         slowest {slowest_ready:?}, breaker seen open {opened_after:?} after the silence began",
        results.len(),
        refused.len()
    );
    for (id, _, took, r) in &results {
        assert!(
            *took <= SEND_DEADLINE + MARGIN,
            "{id} answered after {took:?}: {r:?}"
        );
        assert!(r.is_ok() || unavailable(r), "{id}: {r:?}");
    }
    assert!(
        slowest_ready <= Duration::from_millis(200),
        "/readyz took {slowest_ready:?}"
    );
    assert!(opened_after.is_some(), "the breaker never opened");
    assert!(!refused.is_empty(), "the silence was noticed");

    // Back without a restart: a Send is ACKed again.
    until_a_send_works(&alice, bob.user_id, "after").await;
    until_ready_is(&server, 200).await;
    let have = stored(&server).await;
    for (id, _, _, r) in &results {
        if r.is_ok() {
            assert_eq!(have.get(id), Some(&1), "{id} was ACKed: stored once");
        }
    }
    // A Send that arrived once the database was silent never reached it.
    for (id, issued, _, _) in &refused {
        if *issued > SILENT_FROM + Duration::from_millis(50) {
            assert!(!have.contains_key(id), "{id} was refused but stored");
        }
    }
    // The rest (in a round when the silence began) are resent, and each
    // resolves to exactly one message.
    for (id, _, _, _) in &refused {
        let again = until_a_send_works(&alice, bob.user_id, id).await;
        assert_eq!(again.duplicate, have.contains_key(id), "{id}");
    }
    let have = stored(&server).await;
    assert!(
        have.values().all(|&n| n == 1),
        "each message once: {have:?}"
    );
    assert_eq!(
        have.len(),
        results.len() + 1,
        "every Send is stored in the end"
    );
    server.stop().await;
}

/// Logins refused because the database is down are not failed passwords:
/// once it is back, the owner logs in at once, however many tries failed
/// while it was down (6 used to put the account in back-off). A wrong
/// password still counts.
#[tokio::test]
async fn logins_refused_while_the_database_is_down_do_not_count_as_failures() {
    // The test configuration lifts the per-address limits (every client
    // is 127.0.0.1); the per-account back-off keeps its default.
    let Some((server, proxy, _)) = behind_proxy(|_| {}).await else {
        return;
    };
    let (_alice, _) = server.user("alice").await;
    proxy.set(Mode::Cut);
    for i in 0..10 {
        let mut c = server.client().await;
        let r = c.login("alice", PASSWORD, "d2").await;
        assert_eq!(code(r), pb::ErrorCode::Unavailable, "login {i} while down");
    }
    proxy.set(Mode::Pass);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = server.client().await;
        match c.login("alice", PASSWORD, "d2").await {
            Ok(_) => break,
            Err(e) => {
                let code = code::<()>(Err(e));
                assert_eq!(
                    code,
                    pb::ErrorCode::Unavailable,
                    "only the outage may refuse"
                );
                assert!(Instant::now() < deadline, "never logged in again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Wrong passwords do count: past the free ones the account backs off.
    let free = natter::config::Throttle::default().failed_login_free_per_user;
    for _ in 0..free {
        let mut c = server.client().await;
        let r = c.login("alice", "wrong", "d3").await;
        assert_eq!(code(r), pb::ErrorCode::BadCredentials);
    }
    let mut c = server.client().await;
    let _ = c.login("alice", "wrong", "d3").await;
    let mut c = server.client().await;
    let r = c.login("alice", PASSWORD, "d3").await;
    assert_eq!(code(r), pb::ErrorCode::RateLimited, "wrong passwords count");
    server.stop().await;
}

/// Sends the store refused (UNAVAILABLE) are given back to the sender's
/// allowance: the client resends them after the outage and each costs one
/// message, not two, so the resent backlog is not met by RATE_LIMITED.
#[tokio::test]
async fn sends_refused_during_an_outage_are_not_charged_twice() {
    let Some((server, proxy, _)) = behind_proxy(|c| {
        // Ten messages of allowance, refilled slowly: a backlog charged
        // twice would run out.
        c.limits.send_burst = 10.0;
        c.limits.send_rate_per_sec = 0.01;
    })
    .await
    else {
        return;
    };
    let (alice, _) = server.user("alice").await;
    let (_bob, bob) = server.user("bob").await;
    proxy.set(Mode::Cut);
    for i in 0..8 {
        let r = alice.send_text(bob.user_id, &format!("m{i}"), "x").await;
        assert!(unavailable(&r), "send {i} during the outage: {r:?}");
    }
    proxy.set(Mode::Pass);
    until_ready_is(&server, 200).await;
    for i in 0..8 {
        let r = alice.send_text(bob.user_id, &format!("m{i}"), "x").await;
        assert!(r.is_ok(), "resend {i} after the outage: {r:?}");
    }
    let have = stored(&server).await;
    assert_eq!(have.len(), 8, "{have:?}");
    server.stop().await;
}
