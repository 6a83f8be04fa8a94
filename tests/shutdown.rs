//! Shutdown answers every request a client sent before GOING_AWAY: with
//! an ACK when the write committed, or UNAVAILABLE when it was not stored
//! (then it is not stored, so resending is safe), also when the grace
//! period runs out with writes still queued.

mod common;

use common::*;
use natter_client::{pb, Inbox, ServerFrame};
use natter_proto::ClientFrame;
use std::collections::{BTreeMap, BTreeSet};

const SENDS: u32 = 1500;

/// Logs in on a raw connection, writes `SENDS` Sends to `to` in one go,
/// asks the server to stop, and returns every frame up to the close.
async fn sends_then_shutdown(server: &TestServer, token: &str, to: u64) -> Vec<(u32, ServerFrame)> {
    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    raw.resume(token).await;
    let mut bytes = Vec::new();
    for i in 0..SENDS {
        let send = ClientFrame::Send(pb::Send {
            client_msg_id: format!("m{i}"),
            target: Some(pb::send::Target::PeerUserId(to)),
            body: Some(pb::Body {
                kind: pb::BodyKind::Text as i32,
                content: format!("message {i}"),
            }),
            ..Default::default()
        });
        bytes.extend_from_slice(&send.to_bytes(i + 10));
    }
    raw.send(&bytes).await;
    server.shutdown.cancel();
    let mut frames = Vec::new();
    while let Some(f) = raw.frame().await {
        frames.push(f);
    }
    frames
}

/// Checks the answers; returns the client_msg_ids that were ACKed and
/// those refused as UNAVAILABLE.
fn answers(frames: &[(u32, ServerFrame)]) -> (BTreeSet<String>, BTreeSet<String>) {
    let last = frames.last().expect("frames before the close");
    match &last.1 {
        ServerFrame::Disconnect(d) => assert_eq!(d.reason(), pb::DisconnectReason::GoingAway),
        other => panic!("the last frame is {other:?}, not GOING_AWAY"),
    }
    let mut by_id = BTreeMap::new();
    for (id, f) in &frames[..frames.len() - 1] {
        assert!(
            by_id.insert(*id, f).is_none(),
            "request {id} answered twice"
        );
    }
    let (mut acked, mut refused) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..SENDS {
        let key = format!("m{i}");
        match by_id.get(&(i + 10)) {
            Some(ServerFrame::SendAck(_)) => acked.insert(key),
            Some(ServerFrame::Error(e)) if e.code() == pb::ErrorCode::Unavailable => {
                assert!(e.retry_after_ms > 0);
                refused.insert(key)
            }
            other => panic!("Send {i} got {other:?} before GOING_AWAY"),
        };
    }
    (acked, refused)
}

async fn stored_after_restart(dir: tempfile::TempDir) -> BTreeSet<String> {
    let server = TestServer::start_in(dir, |_| {}).await;
    let (bob, _) = server.device("bob", "check").await;
    Inbox::default()
        .sync(&bob, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.client_msg_id)
        .collect()
}

#[tokio::test]
async fn every_request_sent_before_going_away_is_answered() {
    let server = TestServer::start().await;
    let (_a, alice) = server.user("alice").await;
    let (_b, bob) = server.user("bob").await;
    let frames = sends_then_shutdown(&server, &alice.token, bob.user_id).await;
    let (acked, refused) = answers(&frames);
    eprintln!("{} acked, {} refused", acked.len(), refused.len());
    let dir = server.stop().await;
    assert_eq!(stored_after_restart(dir).await, acked);
    assert!(refused.is_empty(), "within the grace period all are stored");
}

#[tokio::test]
async fn when_the_grace_period_runs_out_queued_writes_are_refused_and_said_so() {
    let server = TestServer::start_with(|c| c.shutdown.grace_ms = 1).await;
    let (_a, alice) = server.user("alice").await;
    let (_b, bob) = server.user("bob").await;
    let frames = sends_then_shutdown(&server, &alice.token, bob.user_id).await;
    let (acked, refused) = answers(&frames);
    eprintln!("{} acked, {} refused", acked.len(), refused.len());
    let dir = server.stop().await;
    // Exactly what was ACKed is stored: an UNAVAILABLE Send was not.
    assert_eq!(stored_after_restart(dir).await, acked);
}
