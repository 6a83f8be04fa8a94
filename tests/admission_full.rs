//! tests/admission.rs's flood at the issue's own size: 19,000 connections
//! that never log in, from 250 addresses, cannot keep a password login or a
//! token Resume out.

mod common;

use common::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The issue's own size: 250 addresses (127.0.1.1–250) each holding its 76
/// newest connections that never log in and opening one more every 40 ms
/// (19,250 wanted, renewed all the time) against a node of 19,000. The flood
/// is held to half the node and pays for its renewals with its own
/// connections; a password login and a Resume from 127.0.0.1 are each in
/// within 2 s, ten rounds running. Alone in its file: the test process
/// holds some 19,300 sockets of its 20,000.
#[tokio::test]
async fn nineteen_thousand_waiting_connections_from_250_addresses_keep_no_login_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(
        dir.path(),
        &[("NATTER_LIMITS__MAX_CONNECTIONS", "19000")],
        &[],
    )
    .await;
    let tcp = server.tcp.clone();
    let mut alice = client_from(&tcp, "127.0.0.1").await;
    alice.register("alice", PASSWORD).await.unwrap();
    let token = alice.login("alice", PASSWORD, "d1").await.unwrap().token;
    drop(alice);

    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for a in 1..=250 {
        let (tcp, stop) = (tcp.clone(), stop.clone());
        attackers.push(natter_testkit::spawn(async move {
            let mut held = VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket
                    .bind(format!("127.0.1.{a}:0").parse().unwrap())
                    .unwrap();
                if let Ok(s) = socket.connect(tcp.parse().unwrap()).await {
                    held.push_back(s);
                }
                if held.len() > 76 {
                    held.pop_front();
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }));
    }
    // Let the flood fill the node.
    tokio::time::sleep(Duration::from_millis(8000)).await;
    let page = server.get("/metrics").await.1;
    let waiting = metric(&page, "natter_unauthenticated_connections").unwrap();
    eprintln!("waiting to log in after the fill: {waiting}");
    assert!(waiting >= 9000.0, "the flood holds {waiting} connections");

    let mut failures = Vec::new();
    for round in 0..10 {
        let t0 = tokio::time::Instant::now();
        let login = within_2s(&tcp, "127.0.0.1", |mut c| async move {
            let ok = c.login("alice", PASSWORD, "d2").await?;
            Ok((c, ok))
        })
        .await;
        let t = token.clone();
        let resume = within_2s(&tcp, "127.0.0.1", |mut c| async move {
            let ok = c.resume(&t, "d1").await?;
            Ok((c, ok))
        })
        .await;
        for (what, r) in [("login", login), ("resume", resume)] {
            if let Err(e) = r {
                failures.push(format!("round {round}, {what}: {e}"));
            }
        }
        eprintln!(
            "round {round}: login and resume took {:?} together",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = server.get("/metrics").await.1;
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    assert!(
        failures.is_empty(),
        "refused during the flood: {failures:#?}"
    );
    // The flood was held to its share and paid for its own renewals.
    let waiting = metric(&page, "natter_unauthenticated_connections").unwrap();
    assert!(
        waiting <= 9500.0,
        "{waiting} waiting to log in, over half of 200"
    );
    let evicted = metric(&page, "natter_unauthenticated_evictions_total").unwrap();
    eprintln!("evicted {evicted}, waiting {waiting}");
    assert!(evicted > 0.0, "no connection was evicted");
}
