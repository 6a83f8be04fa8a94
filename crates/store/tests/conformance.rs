//! The store conformance suite: every backend runs every test here, so the
//! backends keep exactly the same contract. Each test gets a fresh
//! database (a temporary SQLite file, or a fresh PostgreSQL schema on
//! NATTER_TEST_POSTGRES_URL; unset, the PostgreSQL half skips and says so).
//! Tests of several processes on one database run where the backend allows
//! them (PostgreSQL).
#![allow(clippy::unwrap_used)]

mod harness;

use harness::{msg, page, Env};
use natter_store::model::*;
use natter_store::rules::Refusal;
use natter_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

macro_rules! conformance {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::harness::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = super::harness::postgres().await {
                        super::$name(env).await
                    }
                }
            )*
        }
        /// Messages partitioned by conversation hash.
        mod postgres_hash {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let p = natter_store::postgres::Partitioning::Hash { partitions: 4 };
                    if let Some(env) = super::harness::postgres_with(p).await {
                        super::$name(env).await
                    }
                }
            )*
        }
        /// Messages partitioned by month.
        mod postgres_monthly {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let p = natter_store::postgres::Partitioning::Monthly { retention_days: 0 };
                    if let Some(env) = super::harness::postgres_with(p).await {
                        super::$name(env).await
                    }
                }
            )*
        }
    };
}

conformance!(
    accounts_and_lookups,
    the_device_policy,
    seqs_are_dense_and_resends_idempotent,
    a_refused_append_does_not_spoil_its_round,
    queueing_order_is_storing_order,
    seqs_stay_dense_across_sends_changes_and_refusals,
    pages_are_cut_by_bytes_but_never_empty,
    list_pages_keep_to_their_budget_and_cover_everything,
    sync_respects_cursors_joins_and_leaves,
    the_conversation_list,
    cursors_move_only_forward,
    friends_requests_and_blocks,
    groups_rooms_and_join_requests,
    recall_within_the_window,
    one_to_one_policy,
    writes_stop_when_told,
    two_nodes_append_to_one_conversation,
    two_nodes_race_on_one_client_msg_id,
    a_newer_schema_is_refused,
);

const LIMITS: GroupLimits = GroupLimits {
    max_members: 100,
    room_history: 2,
};

async fn users(s: &dyn Store, names: &[&str]) -> Vec<UserId> {
    let mut out = Vec::new();
    for n in names {
        out.push(s.create_user(n, "hash", 0).await.unwrap());
    }
    out
}

async fn group(s: &dyn Store, owner: UserId, members: Vec<UserId>, kind: ConversationKind) -> u64 {
    s.create_group(
        NewGroup {
            creator: owner,
            kind,
            name: format!("g{owner}-{}", members.len()),
            notice: String::new(),
            join_policy: JoinPolicy::Open,
            members,
            invite_code: "code".into(),
            now_ms: 1,
        },
        LIMITS,
    )
    .await
    .unwrap()
    .id
}

fn to(conversation: u64, sender: UserId, id: &str) -> NewMessage {
    NewMessage {
        target: Target::Conversation(conversation),
        ..msg(sender, 0, id)
    }
}

fn seqs(p: &SyncPage, conversation: u64) -> Vec<u64> {
    p.messages
        .iter()
        .filter(|m| m.conversation_id == conversation)
        .map(|m| m.seq)
        .collect()
}

/// What an id past what the database stores gets: nothing, or not found
/// (or not a member), never a failure of the store.
fn unknown(r: Result<bool, StoreError>) {
    match r {
        Ok(false) | Err(StoreError::NotFound(_)) | Err(StoreError::NotMember(_)) => {}
        other => panic!("an id past the stored range gave {other:?}"),
    }
}

fn refused(r: Result<impl std::fmt::Debug, StoreError>, want: Refusal) {
    match r {
        Err(StoreError::Refused(got)) => assert_eq!(got, want),
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

async fn accounts_and_lookups(env: Env) {
    let s = env.store();
    let [a, b] = users(s, &["alice", "bob"]).await[..] else {
        unreachable!()
    };
    assert!(matches!(
        s.create_user("alice", "h", 0).await,
        Err(StoreError::Conflict("username"))
    ));
    assert_eq!(s.user_by_name("alice").await.unwrap().unwrap().id, a);
    assert_eq!(s.user_by_id(b).await.unwrap().unwrap().username, "bob");
    assert!(s.user_by_name("nobody").await.unwrap().is_none());
    // Ids past what the database stores are unknown ids, never a failure.
    unknown(s.user_by_id(u64::MAX).await.map(|u| u.is_some()));
    let found = s
        .users(&[b, 999_999, u64::MAX], &["alice".into(), "bob".into()])
        .await
        .unwrap();
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), vec![a, b]);
    users(s, &["alina", "al_x", "bert"]).await;
    let names: Vec<String> = s
        .search_users("al", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, vec!["al_x", "alice", "alina"]);
    assert_eq!(s.search_users("al", 1).await.unwrap().len(), 1);
    // A password change revokes every other session.
    let session = |dev: &str, n: u8| NewSession {
        user_id: a,
        device_id: dev.into(),
        token_hash: [n; 32],
        now_ms: n as i64,
        expires_at_ms: 1_000_000,
        policy: DevicePolicy::ReplaceOldest,
        max_sessions: 5,
    };
    let s1 = s.create_session(session("d1", 1)).await.unwrap().session_id;
    let s2 = s.create_session(session("d2", 2)).await.unwrap().session_id;
    let s3 = s.create_session(session("d3", 3)).await.unwrap().session_id;
    let mut revoked = s.set_password(a, "new", Some(s2)).await.unwrap();
    revoked.sort_unstable();
    assert_eq!(revoked, vec![s1, s3]);
    assert_eq!(s.user_by_id(a).await.unwrap().unwrap().password_hash, "new");
    assert!(matches!(
        s.set_password(u64::MAX, "x", None).await,
        Err(StoreError::NotFound(_))
    ));
    let rec = s.session_by_token([2; 32]).await.unwrap().unwrap();
    assert_eq!((rec.id, rec.user_id, rec.revoked), (s2, a, false));
    assert_eq!(rec.username, "alice");
    s.revoke_session(s2).await.unwrap();
    assert!(s.session_by_token([2; 32]).await.unwrap().unwrap().revoked);
    assert!(s.session_by_token([9; 32]).await.unwrap().is_none());
    env.close().await;
}

async fn the_device_policy(env: Env) {
    let s = env.store();
    let u = users(s, &["u"]).await[0];
    let new = |dev: &str, n: u8, policy| NewSession {
        user_id: u,
        device_id: dev.into(),
        token_hash: [n; 32],
        now_ms: n as i64,
        expires_at_ms: 1_000,
        policy,
        max_sessions: 2,
    };
    let s1 = s
        .create_session(new("d1", 1, DevicePolicy::Reject))
        .await
        .unwrap();
    let s2 = s
        .create_session(new("d2", 2, DevicePolicy::Reject))
        .await
        .unwrap();
    refused(
        s.create_session(new("d3", 3, DevicePolicy::Reject)).await,
        Refusal::TooManySessions,
    );
    // The same device replaces itself even at the limit.
    let s2b = s
        .create_session(new("d2", 4, DevicePolicy::Reject))
        .await
        .unwrap();
    assert_eq!(s2b.revoked, vec![s2.session_id]);
    let s3 = s
        .create_session(new("d3", 5, DevicePolicy::ReplaceOldest))
        .await
        .unwrap();
    assert_eq!(s3.revoked, vec![s1.session_id]);
    assert!(s.session_by_token([1; 32]).await.unwrap().unwrap().revoked);
    env.close().await;
}

async fn seqs_are_dense_and_resends_idempotent(mut env: Env) {
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
        tasks.push(tokio::spawn(async move {
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

async fn a_refused_append_does_not_spoil_its_round(env: Env) {
    let s = env.shared();
    let [a, b] = users(&*s, &["a", "b"]).await[..] else {
        unreachable!()
    };
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
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

async fn queueing_order_is_storing_order(env: Env) {
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
async fn seqs_stay_dense_across_sends_changes_and_refusals(mut env: Env) {
    let s = env.shared();
    let [owner, member, outsider] = users(&*s, &["owner", "member", "outsider"]).await[..] else {
        unreachable!()
    };
    let g = group(&*s, owner, vec![member], ConversationKind::Group).await;
    let mut tasks = Vec::new();
    for i in 0..120u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
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

async fn pages_are_cut_by_bytes_but_never_empty(env: Env) {
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
async fn list_pages_keep_to_their_budget_and_cover_everything(env: Env) {
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

async fn sync_respects_cursors_joins_and_leaves(env: Env) {
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

async fn the_conversation_list(env: Env) {
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

async fn cursors_move_only_forward(env: Env) {
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
    let g = group(s, a, vec![b], ConversationKind::Group).await;
    assert_eq!(s.mark_read(b, g, 1).await.unwrap().unwrap().notify, vec![b]);
    assert_eq!(s.audience(a, g).await.unwrap(), vec![a, b]);
    assert!(matches!(
        s.audience(a, 999_999).await,
        Err(StoreError::NotMember(_))
    ));
    env.close().await;
}

async fn friends_requests_and_blocks(env: Env) {
    let s = env.store();
    let [a, b, c, d] = users(s, &["a", "b", "c", "d"]).await[..] else {
        unreachable!()
    };
    let r = s.send_friend_request(a, b, "hi", 1).await.unwrap();
    assert!(r.notify);
    assert_eq!(r.request.status, RequestStatus::Pending);
    // Asking again renews; asking back accepts.
    let again = s.send_friend_request(a, b, "hello", 2).await.unwrap();
    assert_eq!(
        (again.request.id, again.request.message.as_str()),
        (r.request.id, "hello")
    );
    let back = s.send_friend_request(b, a, "yes", 3).await.unwrap();
    assert_eq!(back.request.status, RequestStatus::Accepted);
    assert_eq!(s.friend_ids(a).await.unwrap(), vec![b]);
    refused(
        s.send_friend_request(a, b, "", 4).await,
        Refusal::AlreadyFriends,
    );
    refused(
        s.send_friend_request(a, a, "", 4).await,
        Refusal::SelfFriend,
    );
    // A request from a blocked user waits unseen.
    s.set_blocked(c, d, true, 10).await.unwrap();
    let hidden = s.send_friend_request(d, c, "?", 5).await.unwrap();
    assert!(!hidden.notify);
    let page_c = s.friend_requests(c, 0, page(10)).await.unwrap();
    assert!(page_c.incoming.is_empty());
    let p = s.sync(c, &HashMap::new(), 0, page(10)).await.unwrap();
    assert!(p.pending_friend_requests.is_empty());
    s.set_blocked(c, d, false, 10).await.unwrap();
    let p = s.sync(c, &HashMap::new(), 0, page(10)).await.unwrap();
    assert_eq!(p.pending_friend_requests.len(), 1);
    let rejected = s
        .respond_friend_request(c, hidden.request.id, false, "no", 6)
        .await
        .unwrap();
    assert_eq!(
        (rejected.status, rejected.reply.as_str()),
        (RequestStatus::Rejected, "no")
    );
    assert!(matches!(
        s.respond_friend_request(c, hidden.request.id, true, "", 7)
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Paging requests newest first, split by direction.
    s.send_friend_request(a, c, "1", 8).await.unwrap();
    s.send_friend_request(d, a, "2", 9).await.unwrap();
    let p1 = s.friend_requests(a, 0, page(2)).await.unwrap();
    assert!(p1.has_more);
    assert_eq!((p1.incoming.len(), p1.outgoing.len()), (1, 1));
    let oldest = p1
        .incoming
        .iter()
        .chain(&p1.outgoing)
        .map(|r| r.id)
        .min()
        .unwrap();
    let p2 = s.friend_requests(a, oldest, page(2)).await.unwrap();
    assert!(!p2.has_more);
    assert_eq!(p2.outgoing.len() + p2.incoming.len(), 1);
    // Friends, remarks, blocks on the first page, removal.
    let req = s.send_friend_request(c, a, "", 10).await.unwrap();
    assert_eq!(req.request.status, RequestStatus::Accepted, "a had asked c");
    s.set_remark(a, c, "cee").await.unwrap();
    assert!(matches!(
        s.set_remark(a, d, "x").await,
        Err(StoreError::NotFound(_))
    ));
    s.set_blocked(a, d, true, 10).await.unwrap();
    refused(
        s.set_blocked(a, b, true, 1).await,
        Refusal::TooManyBlocked { max: 1 },
    );
    refused(s.set_blocked(a, a, true, 10).await, Refusal::SelfBlock);
    let f = s.friends(a, "", page(1)).await.unwrap();
    assert_eq!(
        f.friends
            .iter()
            .map(|f| f.username.as_str())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
    assert!(f.has_more);
    assert_eq!(f.blocked, vec![(d, "d".to_owned())]);
    let f = s.friends(a, "b", page(5)).await.unwrap();
    assert_eq!(
        (f.friends[0].username.as_str(), f.friends[0].remark.as_str()),
        ("c", "cee")
    );
    assert!(f.blocked.is_empty() && !f.has_more);
    s.remove_friend(b, a).await.unwrap();
    assert_eq!(s.friend_ids(a).await.unwrap(), vec![c]);
    assert!(matches!(
        s.remove_friend(b, a).await,
        Err(StoreError::NotFound(_))
    ));
    env.close().await;
}

async fn groups_rooms_and_join_requests(env: Env) {
    let s = env.store();
    let [o, m, x, y] = users(s, &["o", "m", "x", "y"]).await[..] else {
        unreachable!()
    };
    let g = group(s, o, vec![m, m, o], ConversationKind::Group).await;
    let info = s.group(g, m).await.unwrap();
    assert_eq!(
        (info.member_count, info.my_role, info.owner_id),
        (2, Some(Role::Member), o)
    );
    assert!(
        matches!(s.group(g, x).await, Err(StoreError::NotFound(_))),
        "hidden from outsiders"
    );
    // Joining a group needs its code; an approval group makes a request.
    assert!(matches!(
        s.join_group(x, g, "", "wrong", LIMITS, 1).await,
        Err(StoreError::NotFound(_))
    ));
    let approval = GroupAction::Update {
        name: None,
        notice: Some("rules".into()),
        join_policy: Some(JoinPolicy::Approval),
        muted_all: None,
        invite_code: None,
    };
    s.group_action(o, g, approval, LIMITS, 2).await.unwrap();
    match s
        .join_group(x, g, "let me in", "code", LIMITS, 3)
        .await
        .unwrap()
    {
        JoinOutcome::Pending { request, approvers } => {
            assert_eq!(
                (request.user_id, request.message.as_str()),
                (x, "let me in")
            );
            assert_eq!(approvers, vec![o]);
        }
        other => panic!("{other:?}"),
    }
    s.join_group(y, g, "me too", "code", LIMITS, 4)
        .await
        .unwrap();
    refused(
        s.join_requests(m, g, 0, page(10)).await,
        Refusal::JoinRequestsAdminsOnly,
    );
    let (reqs, more) = s.join_requests(o, g, 0, page(1)).await.unwrap();
    assert!(more);
    let (rest, _) = s
        .join_requests(o, g, reqs[0].user_id, page(5))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    s.group_action(o, g, GroupAction::RespondJoin(x, true), LIMITS, 5)
        .await
        .unwrap();
    s.group_action(o, g, GroupAction::RespondJoin(y, false), LIMITS, 6)
        .await
        .unwrap();
    assert!(matches!(
        s.group_action(o, g, GroupAction::RespondJoin(y, true), LIMITS, 7)
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Roles, mute, transfer, kick.
    s.group_action(o, g, GroupAction::SetRole(m, Role::Admin), LIMITS, 8)
        .await
        .unwrap();
    s.group_action(m, g, GroupAction::Mute(x, 1_000_000), LIMITS, 9)
        .await
        .unwrap();
    refused(
        s.append_message(to(g, x, "shh")).await,
        Refusal::Muted {
            until_ms: 1_000_000,
        },
    );
    refused(
        s.group_action(m, g, GroupAction::Kick(o), LIMITS, 10).await,
        Refusal::KickNotAllowed,
    );
    s.group_action(o, g, GroupAction::Transfer(m), LIMITS, 11)
        .await
        .unwrap();
    let info = s.group(g, o).await.unwrap();
    assert_eq!((info.owner_id, info.my_role), (m, Some(Role::Admin)));
    s.group_action(m, g, GroupAction::Kick(x), LIMITS, 12)
        .await
        .unwrap();
    let (members, more) = s.members(g, o, 0, page(1)).await.unwrap();
    assert!(more);
    let (rest, more) = s.members(g, o, members[0].user_id, page(10)).await.unwrap();
    assert!(!more);
    let all: Vec<(UserId, Role)> = members
        .iter()
        .chain(&rest)
        .map(|r| (r.user_id, r.role))
        .collect();
    assert_eq!(all, vec![(o, Role::Admin), (m, Role::Owner)]);
    let events: Vec<String> = s
        .history(m, g, 0, page(100))
        .await
        .unwrap()
        .messages
        .iter()
        .rev()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.body.content).unwrap();
            v["type"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        events,
        [
            "created",
            "updated",
            "joined",
            "role_changed",
            "muted",
            "owner_transferred",
            "kicked"
        ]
    );
    // Rooms: listed and searched by name, joined without a code.
    let r1 = s
        .create_group(
            NewGroup {
                creator: o,
                kind: ConversationKind::Room,
                name: "Lobby".into(),
                notice: String::new(),
                join_policy: JoinPolicy::Open,
                members: vec![],
                invite_code: String::new(),
                now_ms: 1,
            },
            LIMITS,
        )
        .await
        .unwrap()
        .id;
    group(s, o, vec![], ConversationKind::Room).await;
    let (found, _) = s.rooms(y, "lob", 0, page(10)).await.unwrap();
    assert_eq!(found.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r1]);
    let (found, more) = s.rooms(y, "", 0, page(1)).await.unwrap();
    assert!(more && found[0].my_role.is_none());
    assert_eq!(
        s.join_group(y, r1, "", "", LIMITS, 1).await.unwrap(),
        JoinOutcome::Joined
    );
    assert_eq!(s.group(r1, y).await.unwrap().my_role, Some(Role::Member));
    let (mine, _) = s.groups_of(y, 0, page(10)).await.unwrap();
    assert_eq!(mine.iter().map(|g| g.id).collect::<Vec<_>>(), vec![r1]);
    // Dismissed: read-only, gone from lists.
    s.group_action(m, g, GroupAction::Dismiss, LIMITS, 13)
        .await
        .unwrap();
    refused(s.append_message(to(g, m, "late")).await, Refusal::Dismissed);
    let (mine, _) = s.groups_of(o, 0, page(10)).await.unwrap();
    assert!(!mine.iter().any(|x| x.id == g));
    env.close().await;
}

async fn recall_within_the_window(env: Env) {
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

async fn one_to_one_policy(env: Env) {
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

async fn writes_stop_when_told(env: Env) {
    let s = env.store();
    let [a, b] = users(s, &["a", "b"]).await[..] else {
        unreachable!()
    };
    s.check().await.unwrap();
    let (queued, capacity) = s.queue();
    assert!(queued <= capacity && capacity > 0);
    s.stop_writes();
    assert!(matches!(
        s.append_message(msg(a, b, "late")).await,
        Err(StoreError::Unavailable)
    ));
    assert!(s.user_by_id(a).await.unwrap().is_some(), "reads go on");
    env.close().await;
}

async fn two_nodes_append_to_one_conversation(env: Env) {
    let Some(other) = env.second_node().await else {
        return;
    };
    let s = env.shared();
    let [a, b] = users(&*s, &["a", "b"]).await[..] else {
        unreachable!()
    };
    let g = group(&*s, a, vec![b], ConversationKind::Group).await;
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let node = if i % 2 == 0 { s.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            if i % 50 == 7 {
                // Changes from both nodes interleave with the sends.
                node.group_action(
                    a,
                    g,
                    GroupAction::Update {
                        name: None,
                        notice: Some(format!("n{i}")),
                        join_policy: None,
                        muted_all: None,
                        invite_code: None,
                    },
                    LIMITS,
                    1,
                )
                .await
                .unwrap();
            } else {
                node.append_message(to(g, b, &format!("m{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let p = s.sync(a, &HashMap::new(), 0, page(1000)).await.unwrap();
    assert_eq!(seqs(&p, g), (1..=201).collect::<Vec<_>>());
    // Both nodes see the same conversation, and a 1:1 made on one is the
    // same conversation on the other.
    let one = s.append_message(msg(a, b, "x")).await.unwrap().message;
    let two = other.append_message(msg(b, a, "y")).await.unwrap().message;
    assert_eq!(one.conversation_id, two.conversation_id);
    assert_eq!(two.seq, one.seq + 1);
    other.close().await;
    env.close().await;
}

async fn two_nodes_race_on_one_client_msg_id(env: Env) {
    let Some(other) = env.second_node().await else {
        return;
    };
    let s = env.shared();
    let [a, b] = users(&*s, &["a", "b"]).await[..] else {
        unreachable!()
    };
    s.append_message(msg(a, b, "first")).await.unwrap();
    for round in 0..20 {
        let id = format!("r{round}");
        let (x, y) = tokio::join!(
            s.append_message(msg(a, b, &id)),
            other.append_message(msg(a, b, &id))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.message.seq, y.message.seq, "one message, one seq");
        assert_eq!(x.message.msg_id, y.message.msg_id);
        assert!(x.duplicate != y.duplicate, "exactly one stored it");
    }
    let p = s.sync(b, &HashMap::new(), 0, page(1000)).await.unwrap();
    assert_eq!(
        p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=21).collect::<Vec<_>>()
    );
    other.close().await;
    env.close().await;
}

async fn a_newer_schema_is_refused(mut env: Env) {
    users(env.store(), &["a"]).await;
    match env.open_as_if_newer().await {
        Err(e @ StoreError::NewerSchema { found: 999, .. }) => {
            assert!(
                e.to_string().contains("newer than this binary knows"),
                "{e}"
            );
        }
        other => panic!("a newer schema was not refused: {other:?}"),
    }
}

/// Monthly partitions with a retention: upkeep drops the months that ended
/// before it, with their idempotency keys, and reads go on over the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_retention_drops_old_months_and_reads_go_on() {
    use natter_store::postgres::{Partitioning, PgStore};
    let p = Partitioning::Monthly { retention_days: 30 };
    let Some(env) = harness::postgres_with(p).await else {
        return;
    };
    let (url, _) = env.postgres_url().unwrap();
    let (tx, _feed) = natter_store::commit_feed(1, 1 << 10);
    let admin = PgStore::open(harness::pg_options(url, p), tx)
        .await
        .unwrap();
    let now = natter_runtime::clock::now_ms();
    let old = now - 120 * 86_400_000;
    admin.maintain_partitions(p, old).await.unwrap();
    let s = env.store();
    let [a, b] = users(s, &["a", "b"]).await[..] else {
        unreachable!()
    };
    let at = |id: &str, t: i64| NewMessage {
        now_ms: t,
        ..msg(a, b, id)
    };
    for i in 0..5 {
        s.append_message(at(&format!("old{i}"), old)).await.unwrap();
    }
    let mut conv = 0;
    for i in 0..5 {
        conv = s
            .append_message(at(&format!("new{i}"), now))
            .await
            .unwrap()
            .message
            .conversation_id;
    }
    let dropped = admin.maintain_partitions(p, now).await.unwrap();
    assert!(!dropped.is_empty(), "the old month went");
    let synced = s.sync(b, &HashMap::new(), 0, page(100)).await.unwrap();
    assert_eq!(seqs(&synced, conv), vec![6, 7, 8, 9, 10]);
    assert!(!synced.has_more, "the gap does not stall a sync");
    let h = s.history(b, conv, 0, page(100)).await.unwrap();
    assert_eq!(
        h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![10, 9, 8, 7, 6]
    );
    assert!(!h.has_more);
    // A key of a dropped month is forgotten with it; a kept one is not.
    let again = s.append_message(at("old0", now)).await.unwrap();
    assert_eq!((again.duplicate, again.message.seq), (false, 11));
    assert!(s.append_message(at("new0", now)).await.unwrap().duplicate);
    admin.close().await;
    env.close().await;
}
