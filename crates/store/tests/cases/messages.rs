//! Messages: dense seqs, idempotency, queueing order, pages, sync,
//! the conversation list, cursors, recall, the 1:1 policy.

use super::*;

pub async fn seqs_are_dense_and_resends_idempotent(mut env: Env) {
    let [a, b] = users(env.store(), &["a", "b"]).await[..] else {
        unreachable!()
    };
    let mut got = Vec::new();
    for i in 0..5 {
        let (s, p) = if i % 2 == 0 { (a, b) } else { (b, a) };
        let m = env
            .store()
            .append_message(msg(s, p, &format!("m{i}")))
            .await
            .unwrap();
        assert!(!m.duplicate);
        got.push(m.message.seq);
    }
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    let again = env.store().append_message(msg(a, b, "m0")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.message.seq, again.message.body.content.as_str()),
        (1, "text m0")
    );
    let fed: Vec<u64> = env.drain_feed().iter().map(|c| c.message.seq).collect();
    assert_eq!(fed, vec![1, 2, 3, 4, 5], "duplicates are not republished");
    // Many at once, with every message sent twice: each stored once, dense.
    let s: Arc<dyn Store> = env.shared();
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let s = s.clone();
        tasks.push(natter_testkit::spawn(async move {
            s.append_message(msg(a, b, &format!("c{}", i / 2)))
                .await
                .unwrap()
        }));
    }
    let mut stored = HashMap::new();
    for t in tasks {
        let m = t.await.unwrap();
        let first = *stored
            .entry(m.message.client_msg_id.clone())
            .or_insert(m.message.seq);
        assert_eq!(first, m.message.seq, "a resend answers with the original");
    }
    let mut all: Vec<u64> = stored.values().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (6..=105).collect::<Vec<_>>());
    // After a restart the next seq follows on.
    drop(s);
    env.reopen().await;
    let next = env
        .store()
        .append_message(msg(b, a, "after"))
        .await
        .unwrap();
    assert_eq!(next.message.seq, 106);
    assert!(
        env.store()
            .append_message(msg(b, a, "m3"))
            .await
            .unwrap()
            .duplicate
    );
    env.close().await;
}

/// A `client_msg_id` is its sender's key within one conversation: a resend
/// names the same conversation (by the peer or by the 1:1's id) and gets
/// the original, while the same key in another conversation, or from the
/// other member, is a message of its own; also when sent at once, and
/// after a restart.
pub async fn a_key_belongs_to_its_conversation(mut env: Env) {
    let [a, b, c] = users(env.store(), &["a", "b", "c"]).await[..] else {
        unreachable!()
    };
    let g = group(env.store(), a, vec![b, c], ConversationKind::Group).await;
    let s = env.shared();
    let sends = [
        msg(a, b, "k"),
        msg(a, c, "k"),
        to(g, a, "k"),
        msg(b, a, "k"),
    ];
    let mut tasks = Vec::new();
    for m in sends.iter().cloned() {
        let s = s.clone();
        tasks.push(natter_testkit::spawn(async move {
            s.append_message(m).await.unwrap()
        }));
    }
    let mut first = Vec::new();
    for t in tasks {
        let m = t.await.unwrap();
        assert!(!m.duplicate, "{:?} is a message of its own", m.message);
        first.push(m.message);
    }
    let (ab, ac) = (first[0].conversation_id, first[1].conversation_id);
    assert_ne!(ab, ac);
    assert_eq!(first[2].conversation_id, g);
    assert_eq!(first[3].conversation_id, ab);
    drop(s);
    for round in 0..2 {
        let resends = [
            (msg(a, b, "k"), &first[0]),
            (to(ab, a, "k"), &first[0]),
            (msg(a, c, "k"), &first[1]),
            (to(g, a, "k"), &first[2]),
            (msg(b, a, "k"), &first[3]),
        ];
        for (m, want) in resends {
            let got = env.store().append_message(m).await.unwrap();
            assert!(got.duplicate, "round {round}: {want:?}");
            assert_eq!(
                (
                    got.message.conversation_id,
                    got.message.seq,
                    got.message.msg_id
                ),
                (want.conversation_id, want.seq, want.msg_id),
                "round {round}"
            );
        }
        env.reopen().await;
    }
    let p = env
        .store()
        .sync(a, &HashMap::new(), 0, page(1000))
        .await
        .unwrap();
    let keyed = p.messages.iter().filter(|m| m.client_msg_id == "k").count();
    assert_eq!(keyed, 4, "each stored once");
    env.close().await;
}

pub async fn a_refused_append_does_not_spoil_its_round(env: Env) {
    let s = env.shared();
    let [a, b] = users(&*s, &["a", "b"]).await[..] else {
        unreachable!()
    };
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let s = s.clone();
        tasks.push(natter_testkit::spawn(async move {
            // Every fifth targets a user that does not exist, or oneself.
            let peer = match i % 10 {
                0 => 999_999,
                5 => a,
                _ => b,
            };
            s.append_message(msg(a, peer, &format!("m{i}"))).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::NotFound(_)) | Err(StoreError::Refused(Refusal::SelfConversation)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 40);
    let p = s.sync(a, &HashMap::new(), 0, page(100)).await.unwrap();
    assert_eq!(
        p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );
    env.close().await;
}

pub async fn queueing_order_is_storing_order(env: Env) {
    let s = env.store();
    let [a, b] = users(s, &["a", "b"]).await[..] else {
        unreachable!()
    };
    let mut pending = Vec::new();
    for i in 0..100 {
        pending.push(s.queue_append(msg(a, b, &format!("q{i}"))).await.unwrap());
    }
    let mut last = 0;
    for (i, p) in pending.into_iter().enumerate() {
        let m = p.await.unwrap();
        assert_eq!(m.message.client_msg_id, format!("q{i}"));
        assert!(m.message.seq > last, "stored in the order queued");
        last = m.message.seq;
    }
    env.close().await;
}

/// Sends and group changes interleave, with some of each refused: the seqs
/// stay dense, and after a restart the next one follows on.
pub async fn seqs_stay_dense_across_sends_changes_and_refusals(mut env: Env) {
    let s = env.shared();
    let [owner, member, outsider] = users(&*s, &["owner", "member", "outsider"]).await[..] else {
        unreachable!()
    };
    let g = group(&*s, owner, vec![member], ConversationKind::Group).await;
    let mut tasks = Vec::new();
    for i in 0..120u64 {
        let s = s.clone();
        tasks.push(natter_testkit::spawn(async move {
            match i % 6 {
                0 => s
                    .group_action(
                        owner,
                        g,
                        GroupAction::Update {
                            name: Some(format!("g{i}")),
                            notice: None,
                            join_policy: None,
                            muted_all: None,
                            invite_code: None,
                        },
                        LIMITS,
                        1,
                    )
                    .await
                    .is_ok(),
                1 => {
                    let r = s
                        .group_action(member, g, GroupAction::Kick(owner), LIMITS, 1)
                        .await;
                    assert!(matches!(
                        r,
                        Err(StoreError::Refused(Refusal::KickNotAllowed))
                    ));
                    false
                }
                2 => {
                    let r = s.append_message(to(g, outsider, &format!("x{i}"))).await;
                    assert!(matches!(r, Err(StoreError::NotMember(_))), "{r:?}");
                    false
                }
                _ => s
                    .append_message(to(g, member, &format!("m{i}")))
                    .await
                    .is_ok(),
            }
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap() as u64;
    }
    assert_eq!(stored, 80, "20 renames and 60 sends");
    let history = |s: Arc<dyn Store>| async move {
        seqs(
            &s.sync(owner, &HashMap::new(), 0, page(1000)).await.unwrap(),
            g,
        )
    };
    assert_eq!(history(s.clone()).await, (1..=81).collect::<Vec<_>>());
    drop(s);
    env.reopen().await;
    let next = env
        .store()
        .append_message(to(g, member, "after"))
        .await
        .unwrap();
    assert_eq!(next.message.seq, 82);
    assert_eq!(history(env.shared()).await, (1..=82).collect::<Vec<_>>());
    env.close().await;
}

pub async fn pages_are_cut_by_bytes_but_never_empty(env: Env) {
    let s = env.store();
    let [a, b] = users(s, &["a", "b"]).await[..] else {
        unreachable!()
    };
    let mut conv = 0;
    for i in 0..6 {
        let mut m = msg(a, b, &format!("m{i}"));
        m.body.content = "x".repeat(1000);
        conv = s.append_message(m).await.unwrap().message.conversation_id;
    }
    let tight = Page {
        items: 100,
        bytes: 2500,
    };
    let p = s.sync(b, &HashMap::new(), 0, tight).await.unwrap();
    assert_eq!(p.messages.len(), 2);
    assert!(p.has_more);
    let tiny = Page {
        items: 100,
        bytes: 1,
    };
    let p = s.sync(b, &HashMap::new(), 0, tiny).await.unwrap();
    assert_eq!(p.messages.len(), 1, "one message always fits");
    let h = s.history(b, conv, 0, tight).await.unwrap();
    assert_eq!(
        h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![6, 5]
    );
    assert!(h.has_more);
    let h = s.history(b, conv, 3, page(10)).await.unwrap();
    assert_eq!(
        h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert!(!h.has_more);
    assert!(matches!(
        s.history(b, 999_999, 0, page(10)).await,
        Err(StoreError::NotMember(_))
    ));
    unknown(
        s.history(b, u64::MAX, 0, page(10))
            .await
            .map(|h| !h.messages.is_empty()),
    );
    let p = s
        .sync(b, &HashMap::new(), u64::MAX, page(10))
        .await
        .unwrap();
    assert!(
        p.conversations.is_empty() && !p.has_more,
        "nothing after the last id"
    );
    env.close().await;
}

/// Pages of every list stay within their byte budget and, followed by
/// their cursors, reach every item once.
pub async fn list_pages_keep_to_their_budget_and_cover_everything(env: Env) {
    let s = env.store();
    let me = users(s, &["me"]).await[0];
    let mut groups = Vec::new();
    for _ in 0..120 {
        groups.push(group(s, me, vec![], ConversationKind::Group).await);
    }
    let budget = Page {
        items: 500,
        bytes: 2000,
    };
    let (mut after, mut seen, mut pages) = (0, Vec::new(), 0);
    loop {
        let p = s.sync(me, &HashMap::new(), after, budget).await.unwrap();
        let bytes: usize = p.conversations.iter().map(|c| c.size_hint()).sum::<usize>()
            + p.messages.iter().map(|m| m.size_hint()).sum::<usize>();
        assert!(bytes <= budget.bytes, "{bytes}");
        seen.extend(p.conversations.iter().map(|c| c.id));
        pages += 1;
        if !p.has_more {
            break;
        }
        assert!(p.next_after > after, "every page moves on");
        after = p.next_after;
    }
    assert!(pages > 1);
    assert_eq!(seen, groups);
    let (mut after, mut listed) = (0, Vec::new());
    loop {
        let (g, more) = s.groups_of(me, after, budget).await.unwrap();
        assert!(g.iter().map(|g| g.size_hint()).sum::<usize>() <= budget.bytes);
        after = g.last().map_or(after, |g| g.id);
        listed.extend(g.into_iter().map(|g| g.id));
        if !more {
            break;
        }
    }
    assert_eq!(listed, groups);
    let (mut before, mut listed) = (None, Vec::new());
    loop {
        let (c, more) = s.conversations(me, before, budget).await.unwrap();
        assert!(c.iter().map(|c| c.size_hint()).sum::<usize>() <= budget.bytes);
        before = c.last().map(|c| Before {
            activity_ms: c.last_activity_ms,
            id: c.id,
        });
        listed.extend(c.into_iter().map(|c| c.id));
        if !more {
            break;
        }
    }
    listed.sort_unstable();
    assert_eq!(listed, groups);
    env.close().await;
}

pub async fn sync_respects_cursors_joins_and_leaves(env: Env) {
    let s = env.store();
    let [a, b, c] = users(s, &["a", "b", "c"]).await[..] else {
        unreachable!()
    };
    let room = group(s, a, vec![b], ConversationKind::Room).await;
    for i in 0..5 {
        s.append_message(to(room, a, &format!("r{i}")))
            .await
            .unwrap();
    }
    // seq 1 is `created`, 2..=6 the messages. A room shows a newcomer the
    // last `room_history` (2) before the join.
    s.join_group(c, room, "", "", LIMITS, 2).await.unwrap();
    let p = s.sync(c, &HashMap::new(), 0, page(100)).await.unwrap();
    assert_eq!(seqs(&p, room), vec![5, 6, 7]);
    let state = p.conversations.iter().find(|x| x.id == room).unwrap();
    assert_eq!((state.joined_seq, state.last_seq), (4, 7));
    // b leaves; what came after is not b's.
    s.group_action(b, room, GroupAction::Leave, LIMITS, 3)
        .await
        .unwrap();
    s.append_message(to(room, a, "later")).await.unwrap();
    let cursors = HashMap::from([(room, 6)]);
    let p = s.sync(b, &cursors, 0, page(100)).await.unwrap();
    assert_eq!(
        seqs(&p, room),
        vec![7, 8],
        "the join and b's own leave, not later"
    );
    assert_eq!(p.conversations[0].left_seq, 8);
    assert!(matches!(
        s.append_message(to(room, b, "gone")).await,
        Err(StoreError::NotMember(_))
    ));
    // A 1:1's state carries both members' delivered cursors.
    let d = s.append_message(msg(a, c, "hi")).await.unwrap().message;
    s.mark_delivered(c, d.conversation_id, 1).await.unwrap();
    let p = s.sync(a, &HashMap::new(), room, page(100)).await.unwrap();
    let state = p
        .conversations
        .iter()
        .find(|x| x.id == d.conversation_id)
        .unwrap();
    assert_eq!(state.kind, ConversationKind::Direct);
    assert_eq!(
        state
            .members
            .iter()
            .map(|m| (m.user_id, m.delivered_seq))
            .collect::<Vec<_>>(),
        vec![(a, 0), (c, 1)]
    );
    env.close().await;
}

pub async fn the_conversation_list(env: Env) {
    let s = env.store();
    let [a, b, c] = users(s, &["a", "b", "c"]).await[..] else {
        unreachable!()
    };
    let g = group(s, a, vec![b, c], ConversationKind::Group).await;
    let mut m = to(g, a, "g1");
    m.mentions = vec![b];
    m.now_ms = 10;
    s.append_message(m).await.unwrap();
    let mut own = msg(b, c, "d1");
    own.now_ms = 20;
    s.append_message(own).await.unwrap();
    let mut long = msg(c, b, "d2");
    long.body.content = "é".repeat(300);
    long.now_ms = 30;
    let d = s
        .append_message(long)
        .await
        .unwrap()
        .message
        .conversation_id;
    let (list, more) = s.conversations(b, None, page(10)).await.unwrap();
    assert!(!more);
    assert_eq!(list.iter().map(|x| x.id).collect::<Vec<_>>(), vec![d, g]);
    let direct = &list[0];
    assert_eq!((direct.title.as_str(), direct.peer), ("c", Some(c)));
    assert_eq!(direct.unread, 1, "b's own message is not unread");
    assert!(direct.preview_truncated);
    assert!(direct.last_message.as_ref().unwrap().body.content.len() <= PREVIEW_BYTES);
    let grp = &list[1];
    assert_eq!(
        (grp.unread, grp.mentioned),
        (1, true),
        "system events are not unread"
    );
    assert_eq!(grp.title, format!("g{a}-2"));
    s.mark_read(b, g, grp.last_seq).await.unwrap();
    let (list, _) = s.conversations(b, None, page(10)).await.unwrap();
    assert_eq!((list[1].unread, list[1].mentioned), (0, false));
    let (first, more) = s.conversations(b, None, page(1)).await.unwrap();
    assert!(more);
    let (rest, more) = s
        .conversations(
            b,
            Some(Before {
                activity_ms: first[0].last_activity_ms,
                id: first[0].id,
            }),
            page(1),
        )
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(rest[0].id, g);
    env.close().await;
}

pub async fn cursors_move_only_forward(env: Env) {
    let s = env.store();
    let [a, b] = users(s, &["a", "b"]).await[..] else {
        unreachable!()
    };
    let conv = s
        .append_message(msg(a, b, "1"))
        .await
        .unwrap()
        .message
        .conversation_id;
    s.append_message(msg(a, b, "2")).await.unwrap();
    let d = s.mark_delivered(b, conv, 1).await.unwrap().unwrap();
    assert_eq!((d.seq, d.members.clone()), (1, vec![a, b]));
    assert!(s.mark_delivered(b, conv, 1).await.unwrap().is_none());
    assert_eq!(
        s.mark_delivered(b, conv, 99).await.unwrap().unwrap().seq,
        2,
        "clamped"
    );
    let r = s.mark_read(b, conv, 2).await.unwrap().unwrap();
    assert_eq!(r.notify, vec![a, b]);
    assert!(s.mark_read(b, conv, 1).await.unwrap().is_none());
    assert!(matches!(
        s.mark_read(b, 999_999, 1).await,
        Err(StoreError::NotMember(_))
    ));
    unknown(s.mark_read(b, u64::MAX, 1).await.map(|r| r.is_some()));
    // A small group hears a member's read cursor, not its delivered one;
    // a room hears neither.
    let g = group(s, a, vec![b], ConversationKind::Group).await;
    assert_eq!(
        s.mark_read(b, g, 1).await.unwrap().unwrap().notify,
        vec![a, b]
    );
    assert_eq!(
        s.mark_delivered(b, g, 1).await.unwrap().unwrap().members,
        vec![b]
    );
    let room = group(s, a, vec![b], ConversationKind::Room).await;
    assert_eq!(
        s.mark_read(b, room, 1).await.unwrap().unwrap().notify,
        vec![b]
    );
    assert_eq!(s.audience(a, g).await.unwrap(), vec![a, b]);
    assert!(matches!(
        s.audience(a, 999_999).await,
        Err(StoreError::NotMember(_))
    ));
    env.close().await;
}

pub async fn recall_within_the_window(env: Env) {
    let s = env.store();
    let [a, b, c] = users(s, &["a", "b", "c"]).await[..] else {
        unreachable!()
    };
    let g = group(s, a, vec![b, c], ConversationKind::Group).await;
    let mut m = to(g, b, "oops");
    m.mentions = vec![c];
    m.now_ms = 1_000;
    let seq = s.append_message(m).await.unwrap().message.seq;
    refused(
        s.recall(c, g, seq, 60_000, 2_000).await,
        Refusal::RecallSenderOrAdmin,
    );
    refused(
        s.recall(b, g, seq, 60_000, 100_000).await,
        Refusal::RecallWindowPassed { window_ms: 60_000 },
    );
    refused(
        s.recall(a, g, 1, 60_000, 2_000).await,
        Refusal::RecallSystemEvent,
    );
    s.recall(a, g, seq, 60_000, 2_000).await.unwrap();
    s.recall(b, g, seq, 60_000, 2_000).await.unwrap();
    let h = s.history(c, g, 0, page(10)).await.unwrap();
    let tomb = h.messages.iter().find(|m| m.seq == seq).unwrap();
    assert_eq!(
        (tomb.body.kind, tomb.body.content.as_str()),
        (BodyKind::Recalled, "")
    );
    assert!(tomb.mentions.is_empty());
    let recalled = h
        .messages
        .iter()
        .filter(|m| m.body.content.contains("recalled"))
        .count();
    assert_eq!(recalled, 1, "recalling twice records it once");
    let (list, _) = s.conversations(c, None, page(10)).await.unwrap();
    assert!(!list[0].mentioned, "the mention went with the message");
    assert!(matches!(
        s.recall(a, g, 999, 60_000, 2_000).await,
        Err(StoreError::NotFound(_))
    ));
    env.close().await;
}

pub async fn one_to_one_policy(env: Env) {
    let s = env.store();
    let [a, b, c] = users(s, &["a", "b", "c"]).await[..] else {
        unreachable!()
    };
    let friendly = |sender, peer, id: &str| NewMessage {
        friends_only: true,
        ..msg(sender, peer, id)
    };
    refused(
        s.append_message(friendly(a, b, "1")).await,
        Refusal::FriendsOnly,
    );
    s.send_friend_request(a, b, "", 1).await.unwrap();
    s.send_friend_request(b, a, "", 1).await.unwrap();
    let m = s.append_message(friendly(a, b, "2")).await.unwrap().message;
    // A block looks the same as not being friends.
    s.set_blocked(b, a, true, 10).await.unwrap();
    refused(
        s.append_message(friendly(a, b, "3")).await,
        Refusal::FriendsOnly,
    );
    refused(
        s.append_message(to(m.conversation_id, a, "4")).await,
        Refusal::FriendsOnly,
    );
    s.append_message(msg(b, a, "5")).await.unwrap();
    let mut mention = msg(c, a, "6");
    mention.mentions = vec![a];
    refused(
        s.append_message(mention).await,
        Refusal::MentionsOutsideGroups,
    );
    assert!(matches!(
        s.append_message(msg(a, 999_999, "7")).await,
        Err(StoreError::NotFound(_))
    ));
    env.close().await;
}
