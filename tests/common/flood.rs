//! Floods of connections that never log in, from many source addresses,
//! and whether a password login and a token Resume from another address
//! still get in (tests/admission.rs, tests/admission_full.rs).

use super::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A node of `node` connections; `addresses` addresses (127.0.1.1 on), each
/// holding its `held_per_address` newest connections that never log in and
/// opening one more every 40 ms; `fill` to let it fill the node, then
/// `rounds` of a login and a Resume from 127.0.0.1.
pub struct Flood {
    pub node: usize,
    pub addresses: u32,
    pub held_per_address: usize,
    pub fill: Duration,
    pub rounds: usize,
    /// Each address opens one more connection this often.
    pub every: Duration,
}

/// Runs `f`: the flood is held to half the node (at least 90 % of that
/// while it lasts), some of it is evicted, and every login and Resume is in
/// within 2 s.
pub async fn logins_get_in_during(f: Flood) {
    let node = f.node.to_string();
    let half = (f.node / 2) as f64;
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(
        dir.path(),
        &[("NATTER_LIMITS__MAX_CONNECTIONS", node.as_str())],
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
    for a in 1..=f.addresses {
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
                if held.len() > f.held_per_address {
                    held.pop_front();
                }
                tokio::time::sleep(f.every).await;
            }
        }));
    }
    // Let the flood fill the node.
    tokio::time::sleep(f.fill).await;
    let page = server.get("/metrics").await.1;
    let waiting = metric(&page, "natter_unauthenticated_connections").unwrap();
    eprintln!("waiting to log in after the fill: {waiting}");
    assert!(
        waiting >= 0.9 * half,
        "the flood holds {waiting} connections"
    );

    let mut failures = Vec::new();
    for round in 0..f.rounds {
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
        waiting <= half,
        "{waiting} waiting to log in, over half of {}",
        f.node
    );
    let evicted = metric(&page, "natter_unauthenticated_evictions_total").unwrap();
    eprintln!("evicted {evicted}, waiting {waiting}");
    assert!(evicted > 0.0, "no connection was evicted");
}

/// A client from `ip`, logged in by `login` within 2 s, or why not.
pub async fn within_2s<F, Fut>(tcp: &str, ip: &str, login: F) -> Result<(), String>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<(Client, pb::LoginOk), natter_client::ClientError>>,
{
    let options = natter_client::ConnectOptions {
        local_ip: Some(ip.parse().unwrap()),
        ..Default::default()
    };
    let attempt = async {
        let c = Client::connect_with(tcp, options)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (c, _) = login(c).await.map_err(|e| format!("login: {e}"))?;
        c.ping().await.map_err(|e| format!("ping: {e}"))?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .map_err(|_| "no answer within 2 s".to_owned())?
}
