//! Who gets in while attackers hold every slot they can, from many
//! addresses: connections that never log in cannot keep a password login
//! or a token Resume out, and the health endpoints answer while every HTTP
//! slot is taken.

mod common;

use common::*;
use natter_client::{pb, Client};
use std::time::Duration;

/// 40 addresses (127.0.1.1–40), each holding its 10 newest connections
/// that never log in and opening one more every 40 ms: 400 wanted against
/// a node of 200, renewed all the time. Without a bound on them they keep
/// the node full, and the login and the Resume from 127.0.0.1 are refused
/// SERVER_FULL; with it, each gets in at once, round after round.
#[tokio::test]
async fn logins_and_resumes_get_in_while_many_addresses_hold_the_node_full() {
    flood::logins_get_in_during(flood::Flood {
        node: 200,
        addresses: 40,
        held_per_address: 10,
        fill: Duration::from_millis(1500),
        every: Duration::from_millis(40),
        rounds: 5,
    })
    .await;
}

/// A node full of connections, one of which has not logged in: a Resume
/// takes that one's place (it hears SERVER_FULL), and only once every
/// connection has logged in is a newcomer refused.
#[tokio::test]
async fn a_full_node_lets_a_resume_in_by_evicting_one_that_has_not_logged_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(dir.path(), &[("NATTER_LIMITS__MAX_CONNECTIONS", "2")], &[]).await;
    let mut first = Client::connect(&server.tcp).await.unwrap();
    first.register("alice", PASSWORD).await.unwrap();
    first.register("bob", PASSWORD).await.unwrap();
    let token = first.login("alice", PASSWORD, "d1").await.unwrap().token;
    drop(first);
    // Its place comes back once it has closed.
    for _ in 0..100 {
        let page = server.get("/metrics").await.1;
        if metric(&page, "natter_connections") == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut bob = Client::connect(&server.tcp).await.unwrap();
    bob.login("bob", PASSWORD, "b1").await.unwrap();
    let mut waiting = Raw::connect(&server.tcp).await;
    waiting.hello().await;

    let mut resumed = Client::connect(&server.tcp).await.unwrap();
    resumed.resume(&token, "d1").await.unwrap();
    resumed.ping().await.unwrap();
    let frames = waiting.until_closed().await;
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::ServerFull)
    );

    // Both places are logged in now: nothing to evict, so a refusal.
    let mut third = Raw::connect(&server.tcp).await;
    let frames = third.until_closed().await;
    assert_eq!(
        disconnect_reason(&frames),
        Some(pb::DisconnectReason::ServerFull)
    );
    bob.ping().await.unwrap();
    let page = server.get("/metrics").await.1;
    assert_eq!(
        metric(&page, "natter_unauthenticated_evictions_total"),
        Some(1.0)
    );
}

/// Clients holding every HTTP slot, and more queued behind them: the
/// health endpoints still answer, truthfully (the metrics show the slots
/// held), and anything else past the cap is refused.
#[tokio::test]
async fn health_checks_answer_while_every_http_slot_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(dir.path(), &[("NATTER_HTTP__MAX_CONNECTIONS", "64")], &[]).await;
    let http = server.http.unwrap();
    // 64 slots and the 8 health slots held by connections that send
    // nothing, and as many again that keep closing each other.
    let mut held = Vec::new();
    for _ in 0..64 + 2 * natter_api::HEALTH_SLOTS {
        held.push(tokio::net::TcpStream::connect(http).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for round in 0..3 {
        for path in ["/healthz", "/readyz", "/metrics"] {
            let (status, body) = tokio::time::timeout(Duration::from_secs(2), http_get(http, path))
                .await
                .unwrap_or_else(|_| panic!("round {round}: {path} did not answer within 2 s"));
            assert_eq!(status, 200, "round {round}: {path}: {body}");
            if path == "/metrics" {
                let open = metric(&body, "natter_http_connections").unwrap();
                assert_eq!(open, 64.0, "the slots held are shown");
            }
        }
        // An idle newcomer takes a health slot too, and is closed by the
        // next one rather than keep it.
        held.push(tokio::net::TcpStream::connect(http).await.unwrap());
    }
    let (status, _) = http_get(http, "/v1/cluster/nodes").await;
    assert_eq!(
        status, 503,
        "only the health endpoints are served past the cap"
    );
    let page = server.get("/metrics").await.1;
    assert!(metric(&page, "natter_http_health_slot_evictions_total").unwrap() >= 8.0);
}
