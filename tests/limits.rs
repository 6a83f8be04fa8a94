//! The HTTP listener's own limits, and fan-out that sheds pushes rather
//! than memory: what it drops is counted and recovered by Sync.

mod common;

use common::*;
use natter_client::{pb, Inbox, ServerFrame};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads until the server closes; the bytes read.
async fn read_to_close(s: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut out))
        .await
        .ok()
        .map(|_| out)
}

#[tokio::test]
async fn http_has_a_connection_cap_and_a_header_timeout() {
    let server = TestServer::start_with(|c| {
        c.http.max_connections = 8;
        c.http.header_timeout_ms = 300;
        c.http.idle_timeout_ms = 1_000;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(server.http).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Past the cap only the health endpoints are served: anything else is
    // answered 503 and closed.
    let (status, _) = http_get(server.http, "/v1/cluster/nodes").await;
    assert_eq!(status, 503);
    let (status, _) = http_get(server.http, "/healthz").await;
    assert_eq!(status, 200);
    // The chat port is not affected.
    let (alice, _) = server.user("alice").await;
    alice.ping().await.unwrap();
    // A slow sender of headers is cut off at the header timeout, and so are
    // the silent ones.
    idle[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    for s in idle.iter_mut() {
        assert!(
            read_to_close(s, Duration::from_secs(2)).await.is_some(),
            "an idle HTTP connection stays open past the header timeout"
        );
    }
    let (status, body) = http_get(server.http, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn fan_out_that_falls_behind_drops_pushes_and_sync_recovers_them() {
    let server = TestServer::start_with(|c| {
        c.limits.fanout_workers = 1;
        c.limits.fanout_queue = 1;
    })
    .await;
    let (alice, _) = server.user("alice").await;
    let (mut members, ids) = server.users("member", 20).await;
    let g = alice
        .create_group(
            pb::ConversationKind::Group,
            "busy",
            pb::JoinPolicy::Open,
            ids,
        )
        .await
        .unwrap()
        .conversation_id;
    let keys: Vec<String> = (0..300).map(|i| format!("s{i}")).collect();
    let sends: Vec<_> = keys.iter().map(|k| alice.send_to(g, k, "burst")).collect();
    for r in futures_util::future::join_all(sends).await {
        r.unwrap();
    }
    let (_, page) = http_get(server.http, "/metrics").await;
    let dropped = metric(
        &page,
        "natter_pushes_dropped_total{reason=\"fanout_queue_full\"}",
    )
    .unwrap_or(0.0);
    assert!(
        dropped > 0.0,
        "a one-slot fan-out queue kept up with 300 sends?"
    );
    // Whatever a member missed, Sync gives it, once.
    let m = &mut members[0];
    let mut inbox = Inbox::default();
    let mut seen = Vec::new();
    let mut gap = false;
    for f in drain_pushes(m, Duration::from_millis(300)).await {
        if let ServerFrame::MessagePush(p) = f {
            match inbox.accept(p.message.unwrap()) {
                natter_client::Accepted::New(msg) => seen.push(msg.seq),
                natter_client::Accepted::Gap => gap = true,
                natter_client::Accepted::Duplicate => {}
            }
        }
    }
    // The newest message always arrives, so a member sees any gap by
    // itself, and fills it.
    assert!(gap, "pushes were dropped before the newest one");
    seen.extend(inbox.sync(m, 0).await.unwrap().iter().map(|m| m.seq));
    assert_eq!(seen, (1..=301).collect::<Vec<u64>>());
}

/// A client that stops reading while pushes flood it is closed as a slow
/// consumer; when it reads again within the flush time, whole frames end
/// with `Disconnect{SLOW_CONSUMER}`. The server stays healthy and nothing
/// is lost: a Resume and a Sync bring every message.
#[tokio::test]
async fn a_slow_consumer_gets_its_reason_and_loses_nothing() {
    let server = TestServer::start_with(|c| c.limits.outbound_queue = 100).await;
    let (_first, alice) = server.user("alice").await;
    let (bob, _) = server.user("bob").await;
    // Alice's session on a socket with a tiny receive window that she does
    // not read while Bob sends.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.tcp.parse().unwrap()).await.unwrap();
    let mut slow = Raw::from_stream(stream);
    slow.hello().await;
    slow.resume(&alice.token).await;
    let body = "x".repeat(16 * 1024);
    let n = 600;
    let ids: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    let flood = futures_util::future::join_all(
        ids.iter().map(|id| bob.send_text(alice.user_id, id, &body)),
    );
    // Alice reads again as soon as the server has closed her as a slow
    // consumer (it counts the overflow), well within the flush time.
    let overflowed = "natter_limit_hits_total{limit=\"outbound_queue\"}";
    let read = async {
        tokio::time::timeout(WAIT, async {
            loop {
                let (_, page) = http_get(server.http, "/metrics").await;
                if metric(&page, overflowed).unwrap_or(0.0) >= 1.0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the queue overflows");
        tokio::time::timeout(WAIT, slow.until_closed())
            .await
            .expect("the slow consumer is closed")
    };
    let (acks, frames) = tokio::join!(flood, read);
    if let Some(Err(e)) = acks.iter().find(|a| a.is_err()) {
        panic!("a send failed: {e:?}");
    }
    let pushed = messages_in(&frames).len();
    assert!(pushed < n, "the queue overflowed ({pushed} of {n} pushed)");
    match frames.last() {
        Some(ServerFrame::Disconnect(d)) => {
            assert_eq!(d.reason(), pb::DisconnectReason::SlowConsumer, "{d:?}")
        }
        Some(other) => panic!(
            "the last frame is not a Disconnect but type {}",
            other.kind()
        ),
        None => panic!("no frame at all"),
    }

    let mut again = server.client().await;
    again.resume(&alice.token, "d1").await.unwrap();
    let mut cursors: Vec<pb::Cursor> = vec![];
    let mut seen = 0;
    loop {
        let page = again.sync_page(cursors.clone(), 0, 0).await.unwrap();
        for m in &page.messages {
            seen += 1;
            cursors = vec![pb::Cursor {
                conversation_id: m.conversation_id,
                seq: m.seq,
            }];
        }
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen, n, "every message is in the store");
}
