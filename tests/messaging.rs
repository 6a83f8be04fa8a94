//! 1:1 messaging through a real server: offline delivery, ordering under
//! concurrency, idempotent resends, multi-device pushes, receipts, history.

mod common;

use common::*;
use natter_client::{pb, Accepted, Inbox, ServerFrame};
use natter_proto::ClientFrame;
use std::collections::HashSet;

#[tokio::test]
async fn offline_recipient_gets_everything_in_order_on_login() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let bob_reg = server.client().await;
    bob_reg.register("bob", PASSWORD).await.unwrap();
    let bob_id = alice.user_id("bob").await.unwrap();
    drop(bob_reg);

    for i in 1..=25 {
        let ack = alice
            .send_text(bob_id, &format!("c{i}"), &format!("msg {i}"))
            .await
            .unwrap();
        assert_eq!(ack.seq, i, "ACK carries the dense seq");
        assert!(ack.msg_id > 0 && ack.server_ts_ms > 0);
    }

    let (bob, _) = server.device("bob", "phone").await;
    let mut inbox = Inbox::default();
    // Small pages force the paging path.
    let got = inbox.sync(&bob, 7).await.unwrap();
    let texts: Vec<&str> = got.iter().map(text).collect();
    let want: Vec<String> = (1..=25).map(|i| format!("msg {i}")).collect();
    assert_eq!(texts, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(got.iter().all(|m| m.sender_id != bob_id));
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=25).collect::<Vec<_>>());
    // Nothing more to fetch.
    assert!(inbox.sync(&bob, 7).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_senders_get_dense_unique_seqs() {
    let server = TestServer::start().await;
    let (_a, alice) = server.user("alice").await;
    let (_b, bob) = server.user("bob").await;
    // Three devices on each side all write into the one conversation at once.
    let mut tasks = Vec::new();
    for (name, peer) in [("alice", bob.user_id), ("bob", alice.user_id)] {
        for d in 0..3 {
            let (dev, _) = server.device(name, &format!("dev{d}")).await;
            tasks.push(natter_testkit::spawn(async move {
                let mut acks = Vec::new();
                for i in 0..40 {
                    acks.push(
                        dev.send_text(peer, &format!("d{d}-{i}"), "x")
                            .await
                            .unwrap(),
                    );
                }
                acks
            }));
        }
    }
    let mut seqs = Vec::new();
    let mut convs = HashSet::new();
    for t in tasks {
        for ack in t.await.unwrap() {
            seqs.push(ack.seq);
            convs.insert(ack.conversation_id);
        }
    }
    assert_eq!(convs.len(), 1);
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=240).collect::<Vec<_>>(),
        "dense, no gaps, no duplicates"
    );

    // A fresh device sees exactly those 240, in order.
    let (fresh, _) = server.device("bob", "fresh").await;
    let got = Inbox::default().sync(&fresh, 500).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=240).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn one_sender_to_many_peers() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let mut peers = Vec::new();
    for i in 0..20 {
        peers.push(server.user(&format!("peer{i}")).await);
    }
    let mut convs = HashSet::new();
    for (i, (_, login)) in peers.iter().enumerate() {
        for n in 1..=3 {
            let ack = alice
                .send_text(login.user_id, &format!("p{i}-{n}"), &format!("hi {i} #{n}"))
                .await
                .unwrap();
            assert_eq!(ack.seq, n, "every conversation has its own seq");
            convs.insert(ack.conversation_id);
        }
    }
    assert_eq!(convs.len(), 20);
    for (i, (c, _)) in peers.iter_mut().enumerate() {
        for n in 1..=3 {
            let m = next_message(c).await;
            assert_eq!((text(&m), m.seq), (format!("hi {i} #{n}").as_str(), n));
        }
    }
}

#[tokio::test]
async fn resent_client_msg_id_returns_the_original_ack() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (mut bob, bob_login) = server.user("bob").await;
    let first = alice
        .send_text(bob_login.user_id, "same-id", "once")
        .await
        .unwrap();
    assert!(!first.duplicate);
    // A resend after a "timeout", even with other text, and from another device.
    let again = alice
        .send_text(bob_login.user_id, "same-id", "once")
        .await
        .unwrap();
    let (alice2, _) = server.device("alice", "tablet").await;
    let third = alice2
        .send_text(bob_login.user_id, "same-id", "changed")
        .await
        .unwrap();
    for a in [&again, &third] {
        assert!(a.duplicate);
        assert_eq!(
            (a.seq, a.msg_id, a.conversation_id, a.server_ts_ms),
            (
                first.seq,
                first.msg_id,
                first.conversation_id,
                first.server_ts_ms
            )
        );
    }
    let next = alice
        .send_text(bob_login.user_id, "other-id", "twice")
        .await
        .unwrap();
    assert_eq!(next.seq, 2, "the duplicate used no seq");

    let m = next_message(&mut bob).await;
    assert_eq!((m.seq, text(&m)), (1, "once"));
    let m = next_message(&mut bob).await;
    assert_eq!(
        (m.seq, text(&m)),
        (2, "twice"),
        "the resend was not pushed again"
    );
    let all = Inbox::default().sync(&bob, 100).await.unwrap();
    assert_eq!(all.len(), 2, "one stored message per client_msg_id");
}

#[tokio::test]
async fn every_device_of_both_users_sees_each_message_once() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (mut alice_tablet, _) = server.device("alice", "tablet").await;
    let (mut bob1, bob) = server.user("bob").await;
    let (mut bob2, _) = server.device("bob", "laptop").await;
    for i in 1..=5 {
        alice
            .send_text(bob.user_id, &format!("m{i}"), &format!("hello {i}"))
            .await
            .unwrap();
    }
    for c in [&mut bob1, &mut bob2, &mut alice_tablet] {
        let mut inbox = Inbox::default();
        for i in 1..=5u64 {
            let m = next_message(c).await;
            assert_eq!(inbox.accept(m.clone()), Accepted::New(m.clone()));
            assert_eq!((m.seq, text(&m)), (i, format!("hello {i}").as_str()));
        }
        // Nothing further, and a sync after the pushes adds nothing new.
        assert!(inbox.sync(c, 100).await.unwrap().is_empty());
    }
    // The sending session got ACKs, not pushes of its own messages.
    let mut alice = alice;
    assert!(alice.try_push().is_none());
}

#[tokio::test]
async fn delivery_acks_reach_the_sender_and_are_kept() {
    let server = TestServer::start().await;
    let (mut alice, alice_login) = server.user("alice").await;
    let (bob, bob_login) = server.user("bob").await;
    let ack = alice
        .send_text(bob_login.user_id, "r1", "read me")
        .await
        .unwrap();
    alice
        .send_text(bob_login.user_id, "r2", "me too")
        .await
        .unwrap();
    bob.delivery_ack(ack.conversation_id, 2).await.unwrap();
    let receipt = loop {
        match tokio::time::timeout(WAIT, alice.next_push()).await.unwrap() {
            Some(ServerFrame::ReceiptPush(r)) => break r,
            Some(_) => continue,
            None => panic!("closed"),
        }
    };
    assert_eq!(
        receipt,
        pb::ReceiptPush {
            conversation_id: ack.conversation_id,
            user_id: bob_login.user_id,
            seq: 2
        }
    );
    // An offline sender learns it from sync.
    let page = alice.sync_page(vec![], 0, 10).await.unwrap();
    let conv = &page.conversations[0];
    let bob_cursor = conv
        .delivered
        .iter()
        .find(|c| c.user_id == bob_login.user_id)
        .unwrap();
    assert_eq!(bob_cursor.seq, 2);
    assert_eq!(conv.last_seq, 2);
    let mut members = conv.member_ids.clone();
    members.sort_unstable();
    let mut want = vec![alice_login.user_id, bob_login.user_id];
    want.sort_unstable();
    assert_eq!(members, want);
    // Acks never move backwards nor past the last seq; strangers are refused.
    bob.delivery_ack(ack.conversation_id, 1).await.unwrap();
    let (carol, _) = server.user("carol").await;
    let err = carol
        .delivery_ack(ack.conversation_id, 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(pb::ErrorCode::Forbidden));
}

#[tokio::test]
async fn history_pages_backwards_and_is_members_only() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (bob, bob_login) = server.user("bob").await;
    let mut conv = 0;
    for i in 1..=12 {
        conv = alice
            .send_text(bob_login.user_id, &format!("h{i}"), &format!("{i}"))
            .await
            .unwrap()
            .conversation_id;
    }
    let p1 = bob.history(conv, 0, 5).await.unwrap();
    assert_eq!(
        p1.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![12, 11, 10, 9, 8]
    );
    assert!(p1.has_more);
    let p2 = bob.history(conv, 8, 5).await.unwrap();
    assert_eq!(
        p2.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![7, 6, 5, 4, 3]
    );
    let p3 = bob.history(conv, 3, 5).await.unwrap();
    assert_eq!(
        p3.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert!(!p3.has_more);
    let (eve, _) = server.user("eve").await;
    assert_eq!(
        eve.history(conv, 0, 5).await.unwrap_err().code(),
        Some(pb::ErrorCode::Forbidden)
    );
    // Sending into a conversation one is not part of is refused too.
    let err = eve
        .send(pb::Send {
            client_msg_id: "x".into(),
            target: Some(pb::send::Target::ConversationId(conv)),
            body: Some(pb::Body {
                kind: pb::BodyKind::Text as i32,
                content: "hi".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(pb::ErrorCode::Forbidden));
}

#[tokio::test]
async fn bad_sends_are_refused_with_clear_errors() {
    let server = TestServer::start_with(|c| c.limits.max_message_bytes = 100).await;
    let (alice, me) = server.user("alice").await;
    let (_bob, bob) = server.user("bob").await;
    let e = alice
        .send_text(bob.user_id, "big", &"x".repeat(101))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::MessageTooLarge));
    let e = alice.send_text(999_999, "nobody", "hi").await.unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::NotFound));
    let e = alice.send_text(me.user_id, "self", "hi").await.unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::InvalidArgument));
    let e = alice.send_text(bob.user_id, "", "hi").await.unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::InvalidArgument));
    let custom = |content: &str| pb::Send {
        client_msg_id: format!("j{}", content.len()),
        target: Some(pb::send::Target::PeerUserId(bob.user_id)),
        body: Some(pb::Body {
            kind: pb::BodyKind::Custom as i32,
            content: content.into(),
        }),
        ..Default::default()
    };
    let e = alice.send(custom("{not json")).await.unwrap_err();
    assert_eq!(e.code(), Some(pb::ErrorCode::InvalidArgument));
    let ok = alice.send(custom("{\"card\":1}")).await.unwrap();
    assert_eq!(ok.seq, 1, "refused sends used no seq");
}

#[tokio::test]
async fn websocket_and_tcp_clients_talk_to_each_other() {
    let server = TestServer::start().await;
    let mut ws = natter_client::Client::connect(&server.ws).await.unwrap();
    ws.register("wsuser", PASSWORD).await.unwrap();
    let ws_login = ws.login("wsuser", PASSWORD, "browser").await.unwrap();
    let (mut tcp, tcp_login) = server.user("tcpuser").await;
    tcp.send_text(ws_login.user_id, "a", "over tcp")
        .await
        .unwrap();
    assert_eq!(text(&next_message(&mut ws).await), "over tcp");
    ws.send_text(tcp_login.user_id, "b", "over ws")
        .await
        .unwrap();
    assert_eq!(text(&next_message(&mut tcp).await), "over ws");
    // Frames many times the WebSocket's read buffer (512 bytes) arrive
    // whole, both ways, one after another.
    for (i, len) in [1_500usize, 60_000, 700].into_iter().enumerate() {
        let body: String = (0..len)
            .map(|k| char::from(b'a' + (k % 26) as u8))
            .collect();
        let (to_tcp, to_ws) = (format!("big-ws-{i}"), format!("big-tcp-{i}"));
        arrives_whole(&ws, &mut tcp, tcp_login.user_id, &to_tcp, &body).await;
        arrives_whole(&tcp, &mut ws, ws_login.user_id, &to_ws, &body).await;
    }
}

/// `from` sends `body` to `to` (user `to_id`), which receives it whole.
async fn arrives_whole(
    from: &natter_client::Client,
    to: &mut natter_client::Client,
    to_id: u64,
    client_msg_id: &str,
    body: &str,
) {
    from.send_text(to_id, client_msg_id, body).await.unwrap();
    let got = next_message(to).await;
    assert_eq!(text(&got), body, "{} bytes, {client_msg_id}", body.len());
}

/// A client may send many Sends without waiting: they are stored in the
/// order sent, and every answer (including those of other requests and of
/// refused Sends in between) comes back in request order.
#[tokio::test]
async fn pipelined_sends_keep_request_order() {
    let server = TestServer::start().await;
    let (mut bob, b) = server.user("bob").await;
    server
        .client()
        .await
        .register("alice", PASSWORD)
        .await
        .unwrap();
    let mut raw = Raw::connect(&server.tcp).await;
    raw.hello().await;
    raw.request(
        2,
        ClientFrame::Login(pb::Login {
            username: "alice".into(),
            password: PASSWORD.into(),
            device_id: "raw".into(),
        }),
    )
    .await;
    assert!(matches!(
        raw.frame().await,
        Some((2, ServerFrame::LoginOk(_)))
    ));

    // 150 Sends in one write, with a Ping and a refused Send among them.
    let mut bytes = Vec::new();
    for i in 0..150u32 {
        let id = 100 + i;
        let frame = match i {
            50 => ClientFrame::Ping(pb::Ping { client_time_ms: 7 }),
            90 => ClientFrame::Send(pb::Send {
                client_msg_id: String::new(), // refused: empty key
                target: Some(pb::send::Target::PeerUserId(b.user_id)),
                body: Some(pb::Body {
                    kind: pb::BodyKind::Text as i32,
                    content: "x".into(),
                }),
                ..Default::default()
            }),
            _ => ClientFrame::Send(pb::Send {
                client_msg_id: format!("p{i}"),
                target: Some(pb::send::Target::PeerUserId(b.user_id)),
                body: Some(pb::Body {
                    kind: pb::BodyKind::Text as i32,
                    content: format!("n{i}"),
                }),
                ..Default::default()
            }),
        };
        bytes.extend_from_slice(&frame.to_bytes(id));
    }
    raw.send(&bytes).await;
    let mut next_seq = 1;
    for i in 0..150u32 {
        let (id, frame) = raw.frame().await.expect("an answer");
        assert_eq!(id, 100 + i, "answers in request order");
        match (i, frame) {
            (50, ServerFrame::Pong(p)) => assert_eq!(p.client_time_ms, 7),
            (90, f) => assert_eq!(error_code(&f), Some(pb::ErrorCode::InvalidArgument)),
            (_, ServerFrame::SendAck(a)) => {
                assert_eq!(a.seq, next_seq, "stored in the order sent");
                next_seq += 1;
            }
            (_, other) => panic!("unexpected answer {other:?}"),
        }
    }
    // The recipient sees them in that order too.
    for i in (0..150u32).filter(|i| *i != 50 && *i != 90) {
        assert_eq!(text(&next_message(&mut bob).await), format!("n{i}"));
    }
}
