//! Groups and rooms through a real server: membership and roles as each
//! party sees them, system events in order with messages, join points,
//! approvals, mutes, dismissal, size limits, rooms, and fan-out to a large
//! group.

mod common;

use common::*;
use natter_client::{pb, Client, Inbox, ServerFrame};
use std::time::Duration;

const GROUP: pb::ConversationKind = pb::ConversationKind::Group;
const ROOM: pb::ConversationKind = pb::ConversationKind::Room;
const OPEN: pb::JoinPolicy = pb::JoinPolicy::Open;

/// Waits for the next system event pushed to `c`.
async fn next_event(c: &mut Client) -> (pb::Message, serde_json::Value) {
    loop {
        let m = next_message(c).await;
        if let Some(e) = system_event(&m) {
            return (m, e);
        }
    }
}

/// Waits for the next system event of one type, skipping earlier ones.
async fn event_of(c: &mut Client, kind: &str) -> (pb::Message, serde_json::Value) {
    loop {
        let (m, e) = next_event(c).await;
        if e["type"] == kind {
            return (m, e);
        }
    }
}

#[tokio::test]
async fn membership_roles_and_events_as_each_member_sees_them() {
    let server = TestServer::start().await;
    let (mut alice, a) = server.user("alice").await;
    let (mut bob, b) = server.user("bob").await;
    let (mut carol, c) = server.user("carol").await;

    let g = alice
        .create_group(GROUP, "team", OPEN, vec![b.user_id, c.user_id])
        .await
        .unwrap();
    assert_eq!((g.member_count, g.my_role()), (3, pb::Role::Owner));
    let id = g.conversation_id;
    for client in [&mut alice, &mut bob, &mut carol] {
        let (m, e) = next_event(client).await;
        assert_eq!(m.seq, 1);
        assert_eq!(e["type"], "created");
        assert_eq!(e["name"], "team");
    }

    // One seq per group, seen by every other member.
    let ack = bob.send_to(id, "b1", "hi all").await.unwrap();
    assert_eq!(ack.seq, 2);
    for client in [&mut alice, &mut carol] {
        let m = next_message(client).await;
        assert_eq!((m.seq, text(&m), m.sender_id), (2, "hi all", b.user_id));
    }

    // Member list pages by user id.
    let p1 = bob.members(id, 0, 2).await.unwrap();
    assert!(p1.has_more);
    let p2 = bob.members(id, p1.members[1].user_id, 2).await.unwrap();
    assert!(!p2.has_more);
    let roles: Vec<pb::Role> = p1
        .members
        .iter()
        .chain(&p2.members)
        .map(|m| m.role())
        .collect();
    assert_eq!(roles, [pb::Role::Owner, pb::Role::Member, pb::Role::Member]);

    // Only the owner sets roles; an admin may remove members, not the owner.
    assert_eq!(
        code(bob.set_role(id, c.user_id, pb::Role::Admin).await),
        pb::ErrorCode::Forbidden
    );
    alice
        .set_role(id, b.user_id, pb::Role::Admin)
        .await
        .unwrap();
    let (_, e) = event_of(&mut carol, "role_changed").await;
    assert_eq!(
        (e["user_ids"][0].as_u64(), e["role"].as_str()),
        (Some(b.user_id), Some("admin"))
    );
    assert_eq!(
        code(bob.kick(id, a.user_id).await),
        pb::ErrorCode::Forbidden
    );
    assert_eq!(
        code(carol.kick(id, b.user_id).await),
        pb::ErrorCode::Forbidden
    );
    bob.kick(id, c.user_id).await.unwrap();
    // The removed member is told, then hears nothing more.
    let (kicked, e) = event_of(&mut carol, "kicked").await;
    assert_eq!(e["user_ids"][0], c.user_id);
    alice.send_to(id, "a1", "after carol").await.unwrap();
    assert_eq!(
        code(carol.send_to(id, "c1", "let me in").await),
        pb::ErrorCode::Forbidden
    );
    let late = messages_in(&drain_pushes(&mut carol, Duration::from_millis(300)).await);
    assert!(late.is_empty(), "{late:?}");
    // Her history stops at the event that removed her.
    let h = carol.history(id, 0, 50).await.unwrap();
    assert_eq!(h.messages[0].seq, kicked.seq);
    let mut inbox = Inbox::default();
    let seen = inbox.sync(&carol, 100).await.unwrap();
    assert_eq!(seen.last().unwrap().seq, kicked.seq);
    assert!(carol.my_groups().await.unwrap().is_empty());
    assert_eq!(code(carol.group(id).await), pb::ErrorCode::NotFound);

    // Ownership moves; the owner cannot simply leave.
    assert_eq!(code(alice.leave_group(id).await), pb::ErrorCode::Forbidden);
    alice.transfer_ownership(id, b.user_id).await.unwrap();
    assert_eq!(bob.group(id).await.unwrap().my_role(), pb::Role::Owner);
    assert_eq!(alice.group(id).await.unwrap().my_role(), pb::Role::Admin);
    alice.leave_group(id).await.unwrap();
    let (t, _) = event_of(&mut bob, "owner_transferred").await;
    let (l, e) = next_event(&mut bob).await;
    assert_eq!((e["type"].as_str(), l.seq), (Some("left"), t.seq + 1));
    assert_eq!(bob.group(id).await.unwrap().member_count, 1);

    // Seqs stayed dense through messages and events alike.
    let mut inbox = Inbox::default();
    let all = inbox.sync(&bob, 100).await.unwrap();
    let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn new_members_see_history_from_their_join_point() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let g = alice
        .create_group(GROUP, "club", OPEN, vec![])
        .await
        .unwrap();
    let id = g.conversation_id;
    for i in 0..5 {
        alice.send_to(id, &format!("m{i}"), "before").await.unwrap();
    }
    let (dave, _) = server.user("dave").await;
    let joined = dave.join_group(id, "", &g.invite_code).await.unwrap();
    assert!(joined.joined && !joined.pending);
    alice.send_to(id, "m5", "after").await.unwrap();

    let mut inbox = Inbox::default();
    let seen = inbox.sync(&dave, 100).await.unwrap();
    let kinds: Vec<String> = seen
        .iter()
        .map(|m| {
            system_event(m)
                .map(|e| e["type"].as_str().unwrap().to_owned())
                .unwrap_or_else(|| text(m).to_owned())
        })
        .collect();
    assert_eq!(kinds, ["joined", "after"]);
    assert_eq!(seen[0].seq, 7);
    let h = dave.history(id, 0, 50).await.unwrap();
    assert_eq!(h.messages.len(), 2, "history starts at the join too");
    // Joining twice is harmless.
    assert!(
        dave.join_group(id, "", &g.invite_code)
            .await
            .unwrap()
            .joined
    );
}

#[tokio::test]
async fn approval_invitations_and_requests() {
    let server = TestServer::start().await;
    let (mut alice, _) = server.user("alice").await;
    let (bob, b) = server.user("bob").await;
    let (mut eve, ev) = server.user("eve").await;
    let (frank, f) = server.user("frank").await;
    let g = alice
        .create_group(GROUP, "closed", pb::JoinPolicy::Approval, vec![b.user_id])
        .await
        .unwrap();
    let id = g.conversation_id;

    // Members may not invite into a group that needs approval.
    assert_eq!(
        code(bob.invite(id, vec![ev.user_id]).await),
        pb::ErrorCode::Forbidden
    );

    let r = eve
        .join_group(id, "let me in", &g.invite_code)
        .await
        .unwrap();
    assert!(!r.joined && r.pending);
    let asked = next_push(&mut alice, |f| match f {
        ServerFrame::JoinRequestPush(p) => p.request,
        _ => None,
    })
    .await;
    assert_eq!(
        (asked.user_id, asked.message.as_str()),
        (ev.user_id, "let me in")
    );
    frank
        .join_group(id, "me too", &g.invite_code)
        .await
        .unwrap();
    assert_eq!(code(bob.join_requests(id).await), pb::ErrorCode::Forbidden);
    let listed = alice.join_requests(id).await.unwrap();
    assert_eq!(listed.len(), 2);
    // Not a member yet: cannot send.
    assert_eq!(
        code(eve.send_to(id, "e1", "hi").await),
        pb::ErrorCode::Forbidden
    );

    alice.respond_join(id, ev.user_id, true).await.unwrap();
    alice.respond_join(id, f.user_id, false).await.unwrap();
    let (_, e) = event_of(&mut eve, "joined").await;
    assert_eq!(e["user_ids"][0].as_u64(), Some(ev.user_id));
    eve.send_to(id, "e2", "thanks").await.unwrap();
    assert_eq!(
        code(frank.send_to(id, "f1", "hi").await),
        pb::ErrorCode::Forbidden
    );
    assert!(alice.join_requests(id).await.unwrap().is_empty());
    assert_eq!(
        code(alice.respond_join(id, f.user_id, true).await),
        pb::ErrorCode::NotFound
    );

    // The owner invites directly.
    alice.invite(id, vec![f.user_id]).await.unwrap();
    frank.send_to(id, "f2", "in").await.unwrap();
    assert_eq!(alice.group(id).await.unwrap().member_count, 4);
}

#[tokio::test]
async fn mutes_rename_notice_and_dismissal() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (mut bob, b) = server.user("bob").await;
    let (carol, c) = server.user("carol").await;
    let g = alice
        .create_group(GROUP, "mutable", OPEN, vec![b.user_id, c.user_id])
        .await
        .unwrap();
    let id = g.conversation_id;
    alice
        .set_role(id, c.user_id, pb::Role::Admin)
        .await
        .unwrap();

    alice.mute(id, b.user_id, 60).await.unwrap();
    // The error says until when, for a client to show (not only in words).
    let now_ms = natter_runtime::clock::now_ms();
    match bob.send_to(id, "b1", "hm").await {
        Err(natter_client::ClientError::Server {
            code: pb::ErrorCode::Muted,
            muted_until_ms,
            ..
        }) => assert!(
            (now_ms + 50_000..=now_ms + 70_000).contains(&muted_until_ms),
            "muted until {muted_until_ms}, now {now_ms}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(carol.mute(id, a_id(&alice).await, 60).await),
        pb::ErrorCode::Forbidden
    );
    alice.mute(id, b.user_id, 0).await.unwrap();
    bob.send_to(id, "b2", "free").await.unwrap();

    let update = |muted_all: Option<bool>, name: Option<&str>| pb::UpdateGroup {
        conversation_id: id,
        name: name.map(Into::into),
        notice: None,
        join_policy: None,
        muted_all,
        reset_invite_code: false,
    };
    let info = carol.update_group(update(Some(true), None)).await.unwrap();
    assert!(info.muted_all);
    match bob.send_to(id, "b3", "hm").await {
        Err(natter_client::ClientError::Server {
            code: pb::ErrorCode::Muted,
            muted_until_ms: 0,
            ..
        }) => {}
        other => panic!("the whole group is muted: {other:?}"),
    }
    carol.send_to(id, "c1", "admins may").await.unwrap();
    assert_eq!(
        code(bob.update_group(update(Some(false), None)).await),
        pb::ErrorCode::Forbidden
    );
    carol.update_group(update(Some(false), None)).await.unwrap();

    let renamed = alice
        .update_group(pb::UpdateGroup {
            notice: Some("be nice".into()),
            ..update(None, Some("renamed"))
        })
        .await
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.notice.as_str()),
        ("renamed", "be nice")
    );
    let e = loop {
        let (_, e) = event_of(&mut bob, "updated").await;
        if e.get("name").is_some() {
            break e;
        }
    };
    assert_eq!(
        (e["name"].as_str(), e["notice"].as_str()),
        (Some("renamed"), Some("be nice"))
    );
    assert_eq!(
        code(alice.update_group(update(None, Some("  "))).await),
        pb::ErrorCode::InvalidArgument
    );

    assert_eq!(code(carol.dismiss(id).await), pb::ErrorCode::Forbidden);
    alice.dismiss(id).await.unwrap();
    event_of(&mut bob, "dismissed").await;
    assert_eq!(
        code(bob.send_to(id, "b4", "?").await),
        pb::ErrorCode::Forbidden
    );
    assert!(bob.my_groups().await.unwrap().is_empty());
    assert!(bob.group(id).await.unwrap().dismissed);
}

async fn a_id(c: &Client) -> u64 {
    c.user_id("alice").await.unwrap()
}

#[tokio::test]
async fn a_full_group_refuses_joins_and_invites() {
    let server = TestServer::start_with(|c| c.social.max_group_members = 3).await;
    let (alice, _) = server.user("alice").await;
    let mut ids = Vec::new();
    for n in ["bob", "carol", "dave"] {
        ids.push(server.user(n).await.1.user_id);
    }
    assert_eq!(
        code(alice.create_group(GROUP, "big", OPEN, ids.clone()).await),
        pb::ErrorCode::GroupFull
    );
    let g = alice
        .create_group(GROUP, "small", OPEN, ids[..2].to_vec())
        .await
        .unwrap();
    assert_eq!(g.max_members, 3);
    let (dave, _) = server.device("dave", "d2").await;
    assert_eq!(
        code(dave.join_group(g.conversation_id, "", &g.invite_code).await),
        pb::ErrorCode::GroupFull
    );
    assert_eq!(
        code(alice.invite(g.conversation_id, vec![ids[2]]).await),
        pb::ErrorCode::GroupFull
    );
    assert_eq!(
        alice.group(g.conversation_id).await.unwrap().member_count,
        3
    );
}

#[tokio::test]
async fn rooms_are_public_with_recent_history_and_moderation() {
    let server = TestServer::start_with(|c| c.social.room_history = 10).await;
    let (alice, _) = server.user("alice").await;
    let room = alice
        .create_group(ROOM, "rust-lovers", OPEN, vec![])
        .await
        .unwrap();
    alice
        .create_group(ROOM, "go-fans", OPEN, vec![])
        .await
        .unwrap();
    alice
        .create_group(GROUP, "rust-private", OPEN, vec![])
        .await
        .unwrap();
    let id = room.conversation_id;
    for i in 0..30 {
        alice
            .send_to(id, &format!("r{i}"), &format!("talk {i}"))
            .await
            .unwrap();
    }

    let (mut bob, b) = server.user("bob").await;
    let found = bob.rooms("rust", 0, 10).await.unwrap();
    assert_eq!(
        found.len(),
        1,
        "groups are not listed, other names do not match"
    );
    assert_eq!(found[0].my_role(), pb::Role::Unspecified);
    assert_eq!(bob.rooms("", 0, 10).await.unwrap().len(), 2);
    // Visible before joining, but not readable.
    assert_eq!(bob.group(id).await.unwrap().name, "rust-lovers");
    assert_eq!(code(bob.history(id, 0, 10).await), pb::ErrorCode::Forbidden);

    assert!(bob.join_group(id, "", "").await.unwrap().joined);
    let h = bob.history(id, 0, 100).await.unwrap();
    // The 10 messages before the join, then the join itself.
    assert_eq!(h.messages.len(), 11);
    assert_eq!(text(h.messages.last().unwrap()), "talk 20");
    assert_eq!(system_event(&h.messages[0]).unwrap()["type"], "joined");

    // The owner moderates.
    alice.mute(id, b.user_id, 30).await.unwrap();
    assert_eq!(
        code(bob.send_to(id, "b1", "spam").await),
        pb::ErrorCode::Muted
    );
    alice.kick(id, b.user_id).await.unwrap();
    event_of(&mut bob, "kicked").await;
    // Rooms let anyone back in.
    assert!(bob.join_group(id, "", "").await.unwrap().joined);
    bob.send_to(id, "b2", "back").await.unwrap();
    bob.leave_group(id).await.unwrap();
    assert!(bob.my_groups().await.unwrap().is_empty());
}

/// A group of thousands with a few hundred online: every online member gets
/// every message exactly once and in seq order, and an offline member's
/// sync gets the same.
#[tokio::test]
async fn large_group_fan_out_is_exactly_once_in_order() {
    const MEMBERS: usize = 2000;
    const ONLINE: usize = 200;
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 25;
    let server = TestServer::start().await;
    let started = tokio::time::Instant::now();

    // Accounts, registered over several connections so the writer batches.
    let names: Vec<String> = (0..MEMBERS).map(|i| format!("m{i:04}")).collect();
    let mut tasks = Vec::new();
    for chunk in names.chunks(MEMBERS / 16) {
        let (addr, chunk) = (server.tcp.clone(), chunk.to_vec());
        tasks.push(natter_testkit::spawn(async move {
            let c = Client::connect(&addr).await.unwrap();
            for n in chunk {
                c.register(&n, PASSWORD).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (owner, _) = server.user("owner").await;
    let mut ids = Vec::new();
    for chunk in names.chunks(500) {
        ids.extend(
            owner
                .users(vec![], chunk.to_vec())
                .await
                .unwrap()
                .into_iter()
                .map(|u| u.user_id),
        );
    }
    assert_eq!(ids.len(), MEMBERS);

    // The online members connect before the group exists.
    let mut online = Vec::new();
    for n in &names[..ONLINE] {
        online.push(server.device(n, "d1").await.0);
    }
    let g = owner
        .create_group(GROUP, "everyone", OPEN, ids)
        .await
        .unwrap();
    assert_eq!(g.member_count as usize, MEMBERS + 1);
    let id = g.conversation_id;
    let setup = started.elapsed();

    // Senders are other members, each with its own session.
    let mut senders = Vec::new();
    for n in &names[ONLINE..ONLINE + SENDERS] {
        senders.push(server.device(n, "sender").await.0);
    }
    let sending = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for (s, c) in senders.into_iter().enumerate() {
        tasks.push(natter_testkit::spawn(async move {
            for k in 0..PER_SENDER {
                c.send_to(id, &format!("s{s}-{k}"), &format!("{s}:{k}"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = 1 + SENDERS * PER_SENDER; // the "created" event, then messages
    let mut checks = Vec::new();
    for mut c in online {
        checks.push(natter_testkit::spawn(async move {
            let mut seqs = Vec::with_capacity(total);
            while seqs.len() < total {
                let m = next_message(&mut c).await;
                seqs.push(m.seq);
            }
            let extra = messages_in(&drain_pushes(&mut c, Duration::from_millis(50)).await);
            (seqs, extra.len())
        }));
    }
    for t in checks {
        let (seqs, extra) = t.await.unwrap();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "every message once, in order"
        );
        assert_eq!(extra, 0, "no duplicates");
    }
    let delivered = sending.elapsed();

    // An offline member's sync holds the same, per-sender order intact.
    let (late, _) = server.device(&names[MEMBERS - 1], "late").await;
    let mut inbox = Inbox::default();
    let all = inbox.sync(&late, 500).await.unwrap();
    assert_eq!(all.len(), total);
    for s in 0..SENDERS {
        let mine: Vec<String> = all
            .iter()
            .map(|m| text(m).to_owned())
            .filter(|t| t.starts_with(&format!("{s}:")))
            .collect();
        let want: Vec<String> = (0..PER_SENDER).map(|k| format!("{s}:{k}")).collect();
        assert_eq!(mine, want);
    }
    eprintln!(
        "large group: {MEMBERS} members, {ONLINE} online; setup {setup:?}; {} messages fanned out to all online members in {delivered:?}",
        SENDERS * PER_SENDER
    );
}

#[tokio::test]
async fn groups_roles_and_cursors_survive_a_restart() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (bob, b) = server.user("bob").await;
    let g = alice
        .create_group(GROUP, "durable", OPEN, vec![b.user_id])
        .await
        .unwrap();
    let id = g.conversation_id;
    alice
        .set_role(id, b.user_id, pb::Role::Admin)
        .await
        .unwrap();
    alice.send_to(id, "a1", "before restart").await.unwrap();
    bob.mark_read(id, 3).await.unwrap();
    drop((alice, bob));
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, |_| {}).await;
    let (bob, _) = server.device("bob", "d2").await;
    let info = bob.group(id).await.unwrap();
    assert_eq!(
        (info.my_role(), info.member_count, info.last_seq),
        (pb::Role::Admin, 2, 3)
    );
    let ack = bob.send_to(id, "b1", "after restart").await.unwrap();
    assert_eq!(ack.seq, 4, "the group's seq continues");
    let list = bob.conversations(0).await.unwrap();
    assert_eq!((list[0].read_seq, list[0].unread), (3, 0));
}

/// JoinGroup as PROTOCOL.md states it: joining again is `joined` and
/// changes nothing; a wrong code, a dismissed group and a dismissed room
/// are `NOT_FOUND`, never `FORBIDDEN`.
#[tokio::test]
async fn join_group_again_is_joined_and_its_refusals_are_not_found() {
    use pb::{ConversationKind::*, JoinPolicy::*};
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (bob, _) = server.user("bob").await;
    let g = alice
        .create_group(Group, "team", Approval, vec![])
        .await
        .unwrap();
    let invite = g.invite_code.clone();
    assert_eq!(invite.len(), 32, "the owner sees the code");

    // Already a member (the owner): joined, and no new event.
    let again = alice.join_group(g.conversation_id, "", "").await.unwrap();
    assert!(again.joined && !again.pending, "{again:?}");
    let info = alice.group(g.conversation_id).await.unwrap();
    assert_eq!(info.last_seq, g.last_seq, "no event for a member's join");
    assert_eq!(info.member_count, 1);

    // A wrong code and no code: NOT_FOUND, as for an id that does not exist.
    for wrong in ["", "0123456789abcdef0123456789abcdef"] {
        let r = bob.join_group(g.conversation_id, "", wrong).await;
        assert_eq!(code(r), pb::ErrorCode::NotFound, "code {wrong:?}");
    }
    let r = bob.join_group(g.conversation_id + 1000, "", &invite).await;
    assert_eq!(code(r), pb::ErrorCode::NotFound);

    // The right code on an APPROVAL group: pending.
    let pending = bob
        .join_group(g.conversation_id, "hi", &invite)
        .await
        .unwrap();
    assert!(pending.pending && !pending.joined, "{pending:?}");

    // Dismissed: NOT_FOUND for a group (even with the code) and a room.
    let room = alice
        .create_group(Room, "lobby", Open, vec![])
        .await
        .unwrap();
    alice.dismiss(g.conversation_id).await.unwrap();
    alice.dismiss(room.conversation_id).await.unwrap();
    let r = bob.join_group(g.conversation_id, "", &invite).await;
    assert_eq!(code(r), pb::ErrorCode::NotFound);
    let r = bob.join_group(room.conversation_id, "", "").await;
    assert_eq!(code(r), pb::ErrorCode::NotFound);
}

/// To a non-member a private group does not exist: asking to change it is
/// answered `NOT_FOUND`, exactly like an id never used, so group ids cannot
/// be probed. A room is public: a non-member is `FORBIDDEN`.
#[tokio::test]
async fn a_non_member_cannot_tell_a_private_group_from_no_group() {
    use pb::{ConversationKind::*, JoinPolicy::*};
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (mallory, m) = server.user("mallory").await;
    let (_bob, b) = server.user("bob").await;
    let g = alice
        .create_group(Group, "secret", Approval, vec![b.user_id])
        .await
        .unwrap();
    let room = alice
        .create_group(Room, "lobby", Open, vec![])
        .await
        .unwrap();
    let never = room.conversation_id + 1000;
    let rename = |id: u64| pb::UpdateGroup {
        conversation_id: id,
        name: Some("mine".into()),
        ..Default::default()
    };
    for (id, want) in [
        (g.conversation_id, pb::ErrorCode::NotFound),
        (never, pb::ErrorCode::NotFound),
        (room.conversation_id, pb::ErrorCode::Forbidden),
    ] {
        assert_eq!(
            code(mallory.update_group(rename(id)).await),
            want,
            "update {id}"
        );
        assert_eq!(code(mallory.kick(id, b.user_id).await), want, "kick {id}");
        assert_eq!(code(mallory.leave_group(id).await), want, "leave {id}");
        assert_eq!(
            code(mallory.invite(id, vec![m.user_id]).await),
            want,
            "invite {id}"
        );
    }
}
