//! Conversation features through a real server: the conversation list with
//! unread counts, read cursors across devices and to the peer, typing,
//! presence, recall with its window, mentions, and message kinds.

mod common;

use common::*;
use natter_client::{pb, Client, ServerFrame};
use std::time::Duration;

fn read_push(f: ServerFrame) -> Option<pb::ReadPush> {
    match f {
        ServerFrame::ReadPush(p) => Some(p),
        _ => None,
    }
}

fn body(kind: pb::BodyKind, content: &str) -> Option<pb::Body> {
    Some(pb::Body {
        kind: kind as i32,
        content: content.into(),
    })
}

#[tokio::test]
async fn conversation_list_unread_and_read_cursors_across_devices() {
    let server = TestServer::start().await;
    let (alice, a) = server.user("alice").await;
    let (mut alice2, _) = server.device("alice", "tablet").await;
    let (mut bob, b) = server.user("bob").await;
    let (carol, _) = server.user("carol").await;

    for i in 1..=3 {
        bob.send_text(a.user_id, &format!("b{i}"), &format!("hi {i}"))
            .await
            .unwrap();
    }
    let g = carol
        .create_group(
            pb::ConversationKind::Group,
            "trio",
            pb::JoinPolicy::Open,
            vec![a.user_id, b.user_id],
        )
        .await
        .unwrap();
    carol
        .send_to(g.conversation_id, "c1", "group hello")
        .await
        .unwrap();

    let list = alice.conversations(0).await.unwrap();
    assert_eq!(list.len(), 2);
    // Newest activity first.
    let (group, direct) = (&list[0], &list[1]);
    assert_eq!(
        (group.kind(), group.title.as_str()),
        (pb::ConversationKind::Group, "trio")
    );
    assert_eq!(group.unread, 1, "system events do not count");
    assert_eq!(text(group.last_message.as_ref().unwrap()), "group hello");
    assert_eq!(
        (direct.title.as_str(), direct.peer_user_id),
        ("bob", b.user_id)
    );
    assert_eq!((direct.unread, direct.last_seq, direct.read_seq), (3, 3, 0));
    // Own messages are never unread.
    let bobs = bob.conversations(0).await.unwrap();
    let bob_direct = bobs
        .iter()
        .find(|s| s.kind() == pb::ConversationKind::Direct)
        .unwrap();
    assert_eq!(bob_direct.unread, 0);

    // Reading on one device moves the cursor on the others and tells the peer.
    alice.mark_read(direct.conversation_id, 2).await.unwrap();
    let on_tablet = next_push(&mut alice2, read_push).await;
    assert_eq!((on_tablet.user_id, on_tablet.seq), (a.user_id, 2));
    let to_peer = next_push(&mut bob, read_push).await;
    assert_eq!(
        (to_peer.conversation_id, to_peer.seq),
        (direct.conversation_id, 2)
    );
    let list = alice2.conversations(0).await.unwrap();
    let direct = list.iter().find(|s| s.peer_user_id == b.user_id).unwrap();
    assert_eq!((direct.read_seq, direct.unread), (2, 1));
    // Cursors never move back, and cannot pass the end.
    alice.mark_read(direct.conversation_id, 1).await.unwrap();
    alice.mark_read(direct.conversation_id, 99).await.unwrap();
    let direct = alice
        .conversations(0)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.peer_user_id == b.user_id)
        .unwrap();
    assert_eq!((direct.read_seq, direct.unread), (3, 0));
    // In a small group the members hear each other's reads (receipts).
    alice.mark_read(g.conversation_id, 2).await.unwrap();
    let group_read =
        |f: ServerFrame| read_push(f).filter(|r| r.conversation_id == g.conversation_id);
    let to_member = next_push(&mut bob, group_read).await;
    assert_eq!(
        (to_member.conversation_id, to_member.user_id, to_member.seq),
        (g.conversation_id, a.user_id, 2)
    );
    // In a room, and in a group past 32 members, reads stay with the
    // reader: one push per member per read would be too many.
    let (_, many) = server.users("crowd", 32).await;
    let big = carol
        .create_group(
            pb::ConversationKind::Group,
            "crowd",
            pb::JoinPolicy::Open,
            many.iter().copied().chain([a.user_id, b.user_id]).collect(),
        )
        .await
        .unwrap();
    let room = carol
        .create_group(
            pb::ConversationKind::Room,
            "hall",
            pb::JoinPolicy::Open,
            vec![a.user_id, b.user_id],
        )
        .await
        .unwrap();
    for c in [big.conversation_id, room.conversation_id] {
        carol.send_to(c, &format!("m{c}"), "hello").await.unwrap();
        alice.mark_read(c, 2).await.unwrap();
    }
    let pushes = drain_pushes(&mut bob, Duration::from_millis(300)).await;
    let quiet = [big.conversation_id, room.conversation_id];
    assert!(
        pushes
            .iter()
            .all(|f| read_push(f.clone()).is_none_or(|r| !quiet.contains(&r.conversation_id))),
        "{pushes:?}"
    );
    assert_eq!(
        code(carol.mark_read(direct.conversation_id, 1).await),
        pb::ErrorCode::Forbidden
    );
}

#[tokio::test]
async fn typing_is_pushed_and_never_stored() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (mut bob, b) = server.user("bob").await;
    let (eve, _) = server.user("eve").await;
    let ack = alice.send_text(b.user_id, "a1", "hi").await.unwrap();
    next_message(&mut bob).await;
    alice.typing(ack.conversation_id).await.unwrap();
    let t = next_push(&mut bob, |f| match f {
        ServerFrame::TypingPush(t) => Some(t),
        _ => None,
    })
    .await;
    assert_eq!(t.conversation_id, ack.conversation_id);
    assert_eq!(
        code(eve.typing(ack.conversation_id).await),
        pb::ErrorCode::Forbidden
    );
    let page = bob
        .sync_page(
            vec![pb::Cursor {
                conversation_id: ack.conversation_id,
                seq: 1,
            }],
            0,
            10,
        )
        .await
        .unwrap();
    assert!(page.messages.is_empty(), "typing left nothing behind");
}

#[tokio::test]
async fn friends_see_each_other_come_and_go() {
    let server = TestServer::start().await;
    let (mut alice, _) = server.user("alice").await;
    let (bob, b) = server.user("bob").await;
    bob.befriend(&alice, alice.user_id("alice").await.unwrap())
        .await
        .unwrap();
    assert!(alice.friends().await.unwrap().friends[0].online);
    drop(bob);
    let off = next_push(&mut alice, |f| match f {
        ServerFrame::PresencePush(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!((off.user_id, off.online), (b.user_id, false));
    assert!(!alice.friends().await.unwrap().friends[0].online);
    let (_bob, _) = server.device("bob", "d2").await;
    let on = next_push(&mut alice, |f| match f {
        ServerFrame::PresencePush(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!((on.user_id, on.online), (b.user_id, true));
}

async fn events(c: &mut Client) -> Vec<pb::Message> {
    messages_in(&drain_pushes(c, Duration::from_millis(200)).await)
}

#[tokio::test]
async fn recall_leaves_a_tombstone_everyone_learns_of() {
    let server = TestServer::start_with(|c| c.social.recall_window_secs = 1).await;
    let (alice, _) = server.user("alice").await;
    let (mut bob, b) = server.user("bob").await;
    let ack = alice.send_text(b.user_id, "a1", "oops").await.unwrap();
    next_message(&mut bob).await;
    let conv = ack.conversation_id;

    assert_eq!(
        code(bob.recall(conv, ack.seq).await),
        pb::ErrorCode::Forbidden,
        "not his message"
    );
    alice.recall(conv, ack.seq).await.unwrap();
    let pushed = events(&mut bob).await;
    let e = system_event(&pushed[0]).unwrap();
    assert_eq!(
        (e["type"].as_str(), e["seq"].as_u64()),
        (Some("recalled"), Some(ack.seq))
    );
    // History and sync hold the tombstone, not the text.
    let h = bob.history(conv, 0, 10).await.unwrap();
    let tomb = h.messages.iter().find(|m| m.seq == ack.seq).unwrap();
    assert_eq!(tomb.body.as_ref().unwrap().kind(), pb::BodyKind::Recalled);
    assert_eq!(text(tomb), "");
    let page = bob.sync_page(vec![], 0, 10).await.unwrap();
    assert_eq!(
        page.messages[0].body.as_ref().unwrap().kind(),
        pb::BodyKind::Recalled
    );
    // Recalling again is harmless; system events cannot be recalled.
    alice.recall(conv, ack.seq).await.unwrap();
    assert_eq!(
        code(alice.recall(conv, ack.seq + 1).await),
        pb::ErrorCode::InvalidArgument
    );
    assert_eq!(code(alice.recall(conv, 99).await), pb::ErrorCode::NotFound);

    // After the window, no.
    let late = alice.send_text(b.user_id, "a2", "too late").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = alice.recall(conv, late.seq).await.unwrap_err();
    assert_eq!(err.code(), Some(pb::ErrorCode::Forbidden));
    assert!(err.to_string().contains("window"), "{err}");
}

#[tokio::test]
async fn group_admins_recall_and_mentions_flag_the_mentioned() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (bob, b) = server.user("bob").await;
    let (carol, c) = server.user("carol").await;
    let g = alice
        .create_group(
            pb::ConversationKind::Group,
            "m",
            pb::JoinPolicy::Open,
            vec![b.user_id, c.user_id],
        )
        .await
        .unwrap();
    let id = g.conversation_id;
    let send = |to_all: bool, mentions: Vec<u64>, cid: &str| pb::Send {
        client_msg_id: cid.into(),
        target: Some(pb::send::Target::ConversationId(id)),
        body: body(pb::BodyKind::Text, "look"),
        mention_user_ids: mentions,
        mention_all: to_all,
    };
    let ack = bob
        .send(send(false, vec![c.user_id, 424242], "b1"))
        .await
        .unwrap();
    let carol_list = carol.conversations(0).await.unwrap();
    assert!(carol_list[0].mentioned);
    assert!(!alice.conversations(0).await.unwrap()[0].mentioned);
    let h = carol.history(id, 0, 1).await.unwrap();
    assert_eq!(
        h.messages[0].mention_user_ids,
        vec![c.user_id],
        "non-members are dropped"
    );
    carol.mark_read(id, ack.seq).await.unwrap();
    assert!(!carol.conversations(0).await.unwrap()[0].mentioned);

    assert_eq!(
        code(bob.send(send(true, vec![], "b2")).await),
        pb::ErrorCode::Forbidden
    );
    alice.send(send(true, vec![], "a1")).await.unwrap();
    assert!(carol.conversations(0).await.unwrap()[0].mentioned);
    assert!(bob.conversations(0).await.unwrap()[0].mentioned);

    // The owner recalls a member's message.
    alice.recall(id, ack.seq).await.unwrap();
    let h = carol.history(id, ack.seq + 1, 1).await.unwrap();
    assert_eq!(
        h.messages[0].body.as_ref().unwrap().kind(),
        pb::BodyKind::Recalled
    );
    assert!(h.messages[0].mention_user_ids.is_empty());
}

#[tokio::test]
async fn message_kinds_text_file_custom_and_server_only() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (mut bob, b) = server.user("bob").await;
    let msg = |kind, content: &str, id: &str| pb::Send {
        client_msg_id: id.into(),
        target: Some(pb::send::Target::PeerUserId(b.user_id)),
        body: body(kind, content),
        ..Default::default()
    };
    let file = r#"{"file_id":"f_123","name":"cat.png","size":2048,"mime":"image/png","width":64,"height":64}"#;
    alice
        .send(msg(pb::BodyKind::File, file, "f1"))
        .await
        .unwrap();
    let got = next_message(&mut bob).await;
    assert_eq!(got.body.as_ref().unwrap().kind(), pb::BodyKind::File);
    assert_eq!(text(&got), file);
    for bad in [
        r#"{"name":"x","size":1}"#,
        r#"{"file_id":"","name":"x","size":1}"#,
        "not json",
    ] {
        assert_eq!(
            code(alice.send(msg(pb::BodyKind::File, bad, "f2")).await),
            pb::ErrorCode::InvalidArgument
        );
    }
    for kind in [pb::BodyKind::System, pb::BodyKind::Recalled] {
        assert_eq!(
            code(alice.send(msg(kind, "{}", "s1")).await),
            pb::ErrorCode::InvalidArgument
        );
    }
    let ack = alice
        .send(msg(pb::BodyKind::Custom, r#"{"card":"x"}"#, "c1"))
        .await
        .unwrap();
    assert_eq!(ack.seq, 2, "refused sends used no seq");
    // Mentions are for groups.
    let mut m = msg(pb::BodyKind::Text, "hi", "t1");
    m.mention_user_ids = vec![b.user_id];
    assert_eq!(code(alice.send(m).await), pb::ErrorCode::InvalidArgument);
}
