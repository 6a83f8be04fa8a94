//! The read queries against a real PostgreSQL: each test on a schema of its
//! own, fixtures in plain SQL.
#![allow(clippy::unwrap_used)]

use super::accounts::*;
use super::friends::*;
use super::groups::*;
use super::lists::*;
use super::messages::*;
use super::sync::*;
use crate::rules::{Refusal, SYNC_CONVERSATIONS};
use crate::{
    Before, BodyKind, ConversationId, ConversationKind, FriendList, FriendRecord,
    FriendRequestPage, GroupRecord, JoinRequestRecord, MemberRecord, MemberState, Page,
    RequestStatus, Role, SessionRecord, StoreError, SyncPage, UserId, UserRecord,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio_postgres::{Client, NoTls};

const BIG: Page = Page {
    items: 1000,
    bytes: 1 << 30,
};

fn items(n: usize) -> Page {
    Page {
        items: n,
        bytes: 1 << 30,
    }
}

/// Runs `body` against a fresh, migrated schema of its own, dropped
/// afterwards (also when `body` panics: the schema goes with its guard);
/// skips without a database.
async fn with_db<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Arc<Client>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(url) = std::env::var("NATTER_TEST_POSTGRES_URL") else {
        eprintln!("skipping {test}: NATTER_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = natter_testkit::pg::Schema::create(&url, "natter_reads_", true)
        .await
        .unwrap();
    let (mut client, conn) = tokio_postgres::connect(&schema.url, NoTls).await.unwrap();
    natter_testkit::spawn(async move {
        let _ = conn.await;
    });
    super::schema::migrate(&mut client, super::Partitioning::None)
        .await
        .unwrap();
    body(Arc::new(client)).await;
}

// ---- fixtures, in plain SQL

async fn user(c: &Client, name: &str) -> UserId {
    c.query_one(
        "INSERT INTO users (username, password_hash, created_at_ms) VALUES ($1, 'h', 0)
         RETURNING id",
        &[&name],
    )
    .await
    .unwrap()
    .get::<_, i64>(0) as UserId
}

async fn conv(c: &Client, kind: ConversationKind, activity_ms: i64) -> ConversationId {
    c.query_one(
        "INSERT INTO conversations (kind, created_at_ms, last_activity_ms) VALUES ($1, 0, $2)
         RETURNING id",
        &[&(kind as i16), &activity_ms],
    )
    .await
    .unwrap()
    .get::<_, i64>(0) as ConversationId
}

/// A membership: (joined, left, read, delivered) seqs.
async fn member(
    c: &Client,
    user: UserId,
    conv: ConversationId,
    role: Role,
    seqs: (u64, u64, u64, u64),
) {
    let (joined, left, read, delivered) = seqs;
    c.execute(
        "INSERT INTO members (user_id, conversation_id, role, joined_seq, left_seq, read_seq,
            delivered_seq, joined_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 5)",
        &[
            &(user as i64),
            &(conv as i64),
            &(role as i16),
            &(joined as i64),
            &(left as i64),
            &(read as i64),
            &(delivered as i64),
        ],
    )
    .await
    .unwrap();
}

async fn direct(c: &Client, a: UserId, b: UserId, activity_ms: i64) -> ConversationId {
    let id = conv(c, ConversationKind::Direct, activity_ms).await;
    member(c, a, id, Role::Member, (0, 0, 0, 0)).await;
    member(c, b, id, Role::Member, (0, 0, 0, 0)).await;
    id
}

async fn group_row(
    c: &Client,
    id: ConversationId,
    name: &str,
    owner: UserId,
    approval: bool,
    dismissed: bool,
) {
    c.execute(
        "INSERT INTO groups (conversation_id, name, owner_id, join_policy, dismissed,
            member_count, invite_code) VALUES ($1, $2, $3, $4, $5, 1, 'code')",
        &[
            &(id as i64),
            &name,
            &(owner as i64),
            &(if approval { 2i16 } else { 1i16 }),
            &dismissed,
        ],
    )
    .await
    .unwrap();
}

/// Appends a message with the next seq; returns the seq.
async fn say(c: &Client, conv: ConversationId, sender: UserId, kind: BodyKind, body: &str) -> u64 {
    say_with(c, conv, sender, kind, body, &[], false).await
}

async fn say_with(
    c: &Client,
    conv: ConversationId,
    sender: UserId,
    kind: BodyKind,
    body: &str,
    mentions: &[UserId],
    mention_all: bool,
) -> u64 {
    let seq: i64 = c
        .query_one(
            "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
            &[&(conv as i64)],
        )
        .await
        .unwrap()
        .get(0);
    let mentions: Vec<i64> = mentions.iter().map(|&u| u as i64).collect();
    c.execute(
        "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, created_at_ms,
            body_kind, body, mentions, mention_all)
         VALUES ($1, $2, $3, $4, 7, $5, $6, $7, $8)",
        &[
            &(conv as i64),
            &seq,
            &(sender as i64),
            &format!("c{conv}-{seq}"),
            &(kind as i16),
            &body,
            &mentions,
            &mention_all,
        ],
    )
    .await
    .unwrap();
    for u in &mentions {
        c.execute(
            "INSERT INTO mentions (user_id, conversation_id, seq) VALUES ($1, $2, $3)",
            &[u, &(conv as i64), &seq],
        )
        .await
        .unwrap();
    }
    seq as u64
}

async fn text(c: &Client, conv: ConversationId, sender: UserId, n: usize) {
    for i in 0..n {
        say(c, conv, sender, BodyKind::Text, &format!("m{i}")).await;
    }
}

async fn friend_request(c: &Client, from: UserId, to: UserId, status: RequestStatus) -> u64 {
    c.query_one(
        "INSERT INTO friend_requests (from_id, to_id, message, status, created_at_ms)
         VALUES ($1, $2, 'hello', $3, 1) RETURNING id",
        &[&(from as i64), &(to as i64), &(status as i16)],
    )
    .await
    .unwrap()
    .get::<_, i64>(0) as u64
}

async fn befriend(c: &Client, a: UserId, b: UserId) {
    for (x, y) in [(a, b), (b, a)] {
        c.execute(
            "INSERT INTO friends (user_id, friend_id, remark, since_ms) VALUES ($1, $2, 'r', 3)",
            &[&(x as i64), &(y as i64)],
        )
        .await
        .unwrap();
    }
}

async fn block(c: &Client, who: UserId, whom: UserId) {
    c.execute(
        "INSERT INTO blocks (user_id, blocked_id) VALUES ($1, $2)",
        &[&(who as i64), &(whom as i64)],
    )
    .await
    .unwrap();
}

/// (conversation, seq) of each message of a sync page.
fn seqs(p: &SyncPage) -> Vec<(ConversationId, u64)> {
    p.messages
        .iter()
        .map(|m| (m.conversation_id, m.seq))
        .collect()
}

fn ids(p: &SyncPage) -> Vec<ConversationId> {
    p.conversations.iter().map(|s| s.id).collect()
}

// ---- the tests

#[tokio::test]
async fn looks_up_users_sessions_and_names() {
    with_db("looks_up_users_sessions_and_names", |db| async move {
        let c = &*db;
        let ann = user(c, "ann").await;
        let anna = user(c, "anna").await;
        let bob = user(c, "bob").await;
        let an_x = user(c, "an_x").await;
        let off = user(c, "annoff").await;
        c.execute(
            "UPDATE users SET disabled = true WHERE id = $1",
            &[&(off as i64)],
        )
        .await
        .unwrap();

        assert_eq!(user_by_name(c, "ann").await.unwrap().unwrap().id, ann);
        assert_eq!(user_by_name(c, "nobody").await.unwrap(), None);
        assert_eq!(user_by_name(c, "a\0b").await.unwrap(), None);
        let got = user_by_id(c, bob).await.unwrap().unwrap();
        assert_eq!(
            got,
            UserRecord {
                id: bob,
                username: "bob".into(),
                password_hash: "h".into(),
                disabled: false,
            }
        );
        assert!(user_by_id(c, off).await.unwrap().unwrap().disabled);
        assert_eq!(user_by_id(c, 999).await.unwrap(), None);
        assert_eq!(user_by_id(c, u64::MAX).await.unwrap(), None);

        // By id and by name, each once, by id; unknown ones left out.
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got: Vec<UserId> = users(
            c,
            &[bob, ann, 999, u64::MAX],
            &names(&["ann", "anna", "zed", "x\0"]),
        )
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
        assert_eq!(got, vec![ann, anna, bob]);
        assert!(users(c, &[], &[]).await.unwrap().is_empty());
        assert_eq!(users(c, &[], &names(&["bob"])).await.unwrap()[0].id, bob);

        // Sessions.
        let token = [7u8; 32];
        c.execute(
            "INSERT INTO sessions (user_id, device_id, token_hash, created_at_ms,
                expires_at_ms, revoked) VALUES ($1, 'phone', $2, 1, 99, true)",
            &[&(off as i64), &&token[..]],
        )
        .await
        .unwrap();
        let s = session_by_token(c, &token).await.unwrap().unwrap();
        assert_eq!(
            s,
            SessionRecord {
                id: s.id,
                user_id: off,
                username: "annoff".into(),
                device_id: "phone".into(),
                expires_at_ms: 99,
                revoked: true,
                user_disabled: true,
            }
        );
        assert_eq!(session_by_token(c, &[8u8; 32]).await.unwrap(), None);

        // Prefix search: by name, active users only, `_` literal.
        let search = |p: &'static str, n| async move {
            search_users(c, p, n)
                .await
                .unwrap()
                .into_iter()
                .map(|u| u.username)
                .collect::<Vec<_>>()
        };
        assert_eq!(search("an", 10).await, vec!["an_x", "ann", "anna"]);
        assert_eq!(search("ann", 10).await, vec!["ann", "anna"]);
        assert_eq!(search("an", 2).await, vec!["an_x", "ann"]);
        assert_eq!(search("an_", 10).await, vec!["an_x"]);
        assert_eq!(search_users(c, "an_", 1).await.unwrap()[0].id, an_x);
        assert_eq!(search("a%", 10).await, Vec::<String>::new());
        assert_eq!(search("", 10).await.len(), 4);
        assert_eq!(search("zz", 10).await, Vec::<String>::new());
        assert_eq!(search("a\0", 10).await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn syncs_pages_by_items_bytes_and_cursors() {
    with_db("syncs_pages_by_items_bytes_and_cursors", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        let bob = user(c, "bob").await;
        let eve = user(c, "eve").await;
        // d: a 1:1 with three messages, both cursors set.
        let d = direct(c, me, bob, 1).await;
        text(c, d, bob, 3).await;
        c.execute(
            "UPDATE members SET delivered_seq = 2 WHERE conversation_id = $1 AND user_id = $2",
            &[&(d as i64), &(bob as i64)],
        )
        .await
        .unwrap();
        // g: joined after seq 2 of 5.
        let g = conv(c, ConversationKind::Group, 1).await;
        text(c, g, bob, 5).await;
        member(c, me, g, Role::Member, (2, 0, 0, 0)).await;
        // l: left at seq 3 of 6.
        let l = conv(c, ConversationKind::Group, 1).await;
        text(c, l, bob, 6).await;
        member(c, me, l, Role::Member, (0, 3, 0, 0)).await;
        // q: nothing at all; o: someone else's.
        let q = conv(c, ConversationKind::Room, 1).await;
        member(c, me, q, Role::Member, (0, 0, 0, 0)).await;
        let o = conv(c, ConversationKind::Group, 1).await;
        text(c, o, bob, 2).await;
        member(c, bob, o, Role::Member, (0, 0, 0, 0)).await;
        // Requests: one waiting, one from a blocked user, one answered.
        let waiting = friend_request(c, bob, me, RequestStatus::Pending).await;
        friend_request(c, eve, me, RequestStatus::Pending).await;
        friend_request(c, bob, me, RequestStatus::Rejected).await;
        block(c, me, eve).await;
        let none = HashMap::new();

        // Everything fits.
        let all = sync(c, me, &none, 0, BIG).await.unwrap();
        assert_eq!(ids(&all), vec![d, g, l, q]);
        assert_eq!(
            seqs(&all),
            vec![
                (d, 1),
                (d, 2),
                (d, 3),
                (g, 3),
                (g, 4),
                (g, 5),
                (l, 1),
                (l, 2),
                (l, 3)
            ]
        );
        assert!(!all.has_more);
        assert_eq!(all.next_after, q);
        let ds = &all.conversations[0];
        assert_eq!(ds.kind, ConversationKind::Direct);
        assert_eq!(ds.last_seq, 3);
        assert_eq!(
            ds.members,
            vec![
                MemberState {
                    user_id: me,
                    delivered_seq: 0
                },
                MemberState {
                    user_id: bob,
                    delivered_seq: 2
                },
            ]
        );
        let gs = &all.conversations[1];
        assert!(gs.members.is_empty());
        assert_eq!((gs.joined_seq, gs.left_seq, gs.last_seq), (2, 0, 5));
        let ls = &all.conversations[2];
        assert_eq!((ls.joined_seq, ls.left_seq, ls.last_seq), (0, 3, 6));
        let pending: Vec<u64> = all.pending_friend_requests.iter().map(|r| r.id).collect();
        assert_eq!(pending, vec![waiting]);
        let m = &all.messages[0];
        assert_eq!(
            (
                m.sender_id,
                m.body.kind,
                m.body.content.as_str(),
                m.server_ts_ms
            ),
            (bob, BodyKind::Text, "m0", 7)
        );

        // Cut by items inside g: d is done, g is not.
        let p = sync(c, me, &none, 0, items(4)).await.unwrap();
        assert_eq!(ids(&p), vec![d, g]);
        assert_eq!(seqs(&p), vec![(d, 1), (d, 2), (d, 3), (g, 3)]);
        assert!(p.has_more);
        assert_eq!(p.next_after, d);
        assert!(p.pending_friend_requests.is_empty());
        // Cut exactly at the end of d.
        let p = sync(c, me, &none, 0, items(3)).await.unwrap();
        assert_eq!(ids(&p), vec![d]);
        assert!(p.has_more);
        assert_eq!(p.next_after, d);
        // The next page starts after d, with g's cursor moved.
        let moved = HashMap::from([(g, 3)]);
        let p = sync(c, me, &moved, d, items(3)).await.unwrap();
        assert_eq!(ids(&p), vec![g, l]);
        assert_eq!(seqs(&p), vec![(g, 4), (g, 5), (l, 1)]);
        assert_eq!(p.next_after, g);

        // Cut by bytes: d and g's first message fit, no more.
        let used: usize = all.conversations[..2]
            .iter()
            .map(|s| s.size_hint())
            .sum::<usize>()
            + all.messages[..4]
                .iter()
                .map(|m| m.size_hint())
                .sum::<usize>();
        let p = sync(
            c,
            me,
            &none,
            0,
            Page {
                items: 100,
                bytes: used + 1,
            },
        )
        .await
        .unwrap();
        assert_eq!(ids(&p), vec![d, g]);
        assert_eq!(seqs(&p), vec![(d, 1), (d, 2), (d, 3), (g, 3)]);
        assert!(p.has_more);
        assert_eq!(p.next_after, d);
        // A message over the budget gets a page of its own.
        let p = sync(
            c,
            me,
            &none,
            0,
            Page {
                items: 100,
                bytes: 1,
            },
        )
        .await
        .unwrap();
        assert_eq!(seqs(&p), vec![(d, 1)]);
        assert!(p.has_more);

        // Cursors: seen messages are not sent again; joined_seq wins
        // over a lower cursor; nothing after left_seq.
        let seen = HashMap::from([(d, 2), (g, 1), (l, 2)]);
        let p = sync(c, me, &seen, 0, BIG).await.unwrap();
        assert_eq!(seqs(&p), vec![(d, 3), (g, 3), (g, 4), (g, 5), (l, 3)]);
        let done = HashMap::from([(d, 3), (g, 5), (l, 3)]);
        let p = sync(c, me, &done, 0, BIG).await.unwrap();
        assert!(p.messages.is_empty());
        assert_eq!(ids(&p), vec![d, g, l, q]);

        // Cursors past everything: an empty, final page.
        let p = sync(c, me, &none, u64::MAX, BIG).await.unwrap();
        assert!(p.conversations.is_empty() && p.messages.is_empty() && !p.has_more);
        let far = HashMap::from([(d, u64::MAX)]);
        let p = sync(c, me, &far, 0, BIG).await.unwrap();
        assert!(!seqs(&p).iter().any(|&(id, _)| id == d));
        let p = sync(c, u64::MAX, &none, 0, BIG).await.unwrap();
        assert!(p.conversations.is_empty() && !p.has_more);
    })
    .await;
}

#[tokio::test]
async fn sync_caps_memberships_per_page() {
    with_db("sync_caps_memberships_per_page", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        c.batch_execute(&format!(
            "INSERT INTO conversations (kind, created_at_ms, last_activity_ms)
                SELECT 2, 0, 0 FROM generate_series(1, {n});
             INSERT INTO members (user_id, conversation_id)
                SELECT {me}, id FROM conversations;",
            n = SYNC_CONVERSATIONS + 2
        ))
        .await
        .unwrap();
        let first = sync(c, me, &HashMap::new(), 0, BIG).await.unwrap();
        assert_eq!(first.conversations.len(), SYNC_CONVERSATIONS);
        assert!(first.has_more);
        assert!(first.pending_friend_requests.is_empty());
        let next = sync(c, me, &HashMap::new(), first.next_after, BIG)
            .await
            .unwrap();
        assert_eq!(next.conversations.len(), 2);
        assert!(!next.has_more);
    })
    .await;
}

#[tokio::test]
async fn history_pages_newest_first_within_view() {
    with_db("history_pages_newest_first_within_view", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        let bob = user(c, "bob").await;
        let g = conv(c, ConversationKind::Group, 1).await;
        text(c, g, bob, 10).await;
        // Sees seqs 3..=8.
        member(c, me, g, Role::Member, (2, 8, 0, 0)).await;
        member(c, bob, g, Role::Member, (0, 0, 0, 0)).await;
        let page = |before, p| async move {
            let h = history(c, me, g, before, p).await.unwrap();
            let s: Vec<u64> = h.messages.iter().map(|m| m.seq).collect();
            (s, h.has_more)
        };
        assert_eq!(page(0, items(3)).await, (vec![8, 7, 6], true));
        assert_eq!(page(6, items(3)).await, (vec![5, 4, 3], false));
        assert_eq!(page(4, items(3)).await, (vec![3], false));
        assert_eq!(page(3, items(3)).await, (vec![], false));
        assert_eq!(page(u64::MAX, items(2)).await, (vec![8, 7], true));
        assert_eq!(page(0, BIG).await.0, vec![8, 7, 6, 5, 4, 3]);
        let one = Page {
            items: 10,
            bytes: 1,
        };
        assert_eq!(page(0, one).await, (vec![8], true));
        // A current member sees the newest.
        let h = history(c, bob, g, 0, items(1)).await.unwrap();
        assert_eq!(h.messages[0].seq, 10);

        let outsider = user(c, "out").await;
        for (u, conv) in [(outsider, g), (me, 999), (me, u64::MAX), (u64::MAX, g)] {
            assert!(matches!(
                history(c, u, conv, 0, BIG).await,
                Err(StoreError::NotMember(id)) if id == conv
            ));
        }

        assert_eq!(visible_range(c, me, g).await.unwrap(), Some((2, 8)));
        assert_eq!(visible_range(c, bob, g).await.unwrap(), Some((0, 10)));
        assert_eq!(visible_range(c, outsider, g).await.unwrap(), None);
        assert_eq!(visible_range(c, me, u64::MAX).await.unwrap(), None);
        // Who left is no longer in the audience.
        assert_eq!(members_of(c, g).await.unwrap(), vec![bob]);
        assert!(members_of(c, u64::MAX).await.unwrap().is_empty());
        assert_eq!(audience(c, bob, g).await.unwrap(), vec![bob]);
        assert!(matches!(
            audience(c, me, g).await,
            Err(StoreError::NotMember(id)) if id == g
        ));
    })
    .await;
}

#[tokio::test]
async fn lists_conversations_newest_first() {
    with_db("lists_conversations_newest_first", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        let bob = user(c, "bob").await;
        // d: a 1:1, the most recent.
        let d = direct(c, me, bob, 300).await;
        say(c, d, bob, BodyKind::Text, "hi").await;
        // g: unread counts only others' plain messages; a mention.
        let g = conv(c, ConversationKind::Group, 200).await;
        group_row(c, g, "Team", me, false, false).await;
        member(c, me, g, Role::Owner, (0, 0, 1, 0)).await;
        say_with(c, g, bob, BodyKind::Text, "seen", &[me], false).await;
        say(c, g, bob, BodyKind::Text, "new").await;
        say(c, g, me, BodyKind::Text, "mine").await;
        say(c, g, bob, BodyKind::System, "{}").await;
        say(c, g, bob, BodyKind::Recalled, "").await;
        say_with(c, g, bob, BodyKind::Custom, "{\"a\":1}", &[me], false).await;
        // r: same activity as g, lower id after it; long text preview
        // and a mention of all.
        let r = conv(c, ConversationKind::Room, 200).await;
        group_row(c, r, "Lobby", bob, false, false).await;
        member(c, me, r, Role::Member, (0, 0, 0, 0)).await;
        say_with(c, r, bob, BodyKind::Text, "x", &[], true).await;
        let long = "é".repeat(150);
        say(c, r, bob, BodyKind::Text, &long).await;
        // f: a long custom body, which previews as nothing; the only
        // mention is read already.
        let f = conv(c, ConversationKind::Group, 100).await;
        group_row(c, f, "Files", bob, false, false).await;
        member(c, me, f, Role::Member, (0, 0, 1, 0)).await;
        say_with(c, f, bob, BodyKind::Text, "@me", &[me], false).await;
        say(
            c,
            f,
            bob,
            BodyKind::Custom,
            &format!("{{\"k\":\"{}\"}}", "v".repeat(300)),
        )
        .await;
        // j: joined after its only message; u: past the unread cap.
        let j = conv(c, ConversationKind::Group, 50).await;
        group_row(c, j, "Joined", bob, false, false).await;
        say(c, j, bob, BodyKind::Text, "before me").await;
        member(c, me, j, Role::Member, (1, 0, 0, 0)).await;
        let u = conv(c, ConversationKind::Group, 40).await;
        group_row(c, u, "Busy", bob, false, false).await;
        member(c, me, u, Role::Member, (0, 0, 0, 0)).await;
        c.execute(
            "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id,
                created_at_ms, body_kind, body)
             SELECT $1, s, $2, 'b' || s, 0, 1, 'x' FROM generate_series(1, 10050) s",
            &[&(u as i64), &(bob as i64)],
        )
        .await
        .unwrap();
        c.execute(
            "UPDATE conversations SET last_seq = 10050 WHERE id = $1",
            &[&(u as i64)],
        )
        .await
        .unwrap();
        // Left: not listed.
        let gone = conv(c, ConversationKind::Group, 999).await;
        group_row(c, gone, "Gone", bob, false, false).await;
        member(c, me, gone, Role::Member, (0, 1, 0, 0)).await;
        // Someone else's.
        let other = conv(c, ConversationKind::Group, 998).await;
        group_row(c, other, "Other", bob, false, false).await;
        member(c, bob, other, Role::Member, (0, 0, 0, 0)).await;

        let (all, more) = conversations(c, me, None, BIG).await.unwrap();
        assert!(!more);
        let order: Vec<ConversationId> = all.iter().map(|s| s.id).collect();
        assert_eq!(order, vec![d, r, g, f, j, u]);
        let by = |id| all.iter().find(|s| s.id == id).unwrap();

        let ds = by(d);
        assert_eq!((ds.title.as_str(), ds.peer), ("bob", Some(bob)));
        assert_eq!(
            (ds.unread, ds.mentioned, ds.last_activity_ms),
            (1, false, 300)
        );
        assert_eq!(ds.last_message.as_ref().unwrap().body.content, "hi");

        let gs = by(g);
        assert_eq!((gs.title.as_str(), gs.peer), ("Team", None));
        assert_eq!(
            (gs.kind, gs.last_seq, gs.read_seq),
            (ConversationKind::Group, 6, 1)
        );
        // "new" and the custom one; not mine, the event or the tombstone.
        assert_eq!(gs.unread, 2);
        assert!(gs.mentioned);
        let last = gs.last_message.as_ref().unwrap();
        assert_eq!((last.seq, last.body.kind), (6, BodyKind::Custom));
        assert_eq!(last.mentions, vec![me]);
        assert!(!gs.preview_truncated);

        let rs = by(r);
        assert_eq!((rs.unread, rs.mentioned), (2, true));
        let preview = &rs.last_message.as_ref().unwrap().body.content;
        assert_eq!(preview.len(), 200);
        assert_eq!(*preview, "é".repeat(100));
        assert!(rs.preview_truncated);

        let fs = by(f);
        assert_eq!((fs.unread, fs.mentioned), (1, false));
        assert_eq!(fs.last_message.as_ref().unwrap().body.content, "");
        assert!(fs.preview_truncated);

        let js = by(j);
        assert_eq!(
            (js.unread, js.read_seq, js.last_message.clone()),
            (0, 1, None)
        );

        assert_eq!(by(u).unread, 9999);

        // Pages: by (activity, id) descending, ties by id.
        let (p1, more) = conversations(c, me, None, items(2)).await.unwrap();
        assert_eq!(p1.iter().map(|s| s.id).collect::<Vec<_>>(), vec![d, r]);
        assert!(more);
        let before = Before {
            activity_ms: 200,
            id: r,
        };
        let (p2, more) = conversations(c, me, Some(before), items(2)).await.unwrap();
        assert_eq!(p2.iter().map(|s| s.id).collect::<Vec<_>>(), vec![g, f]);
        assert!(more);
        let before = Before {
            activity_ms: 40,
            id: u,
        };
        let (p3, more) = conversations(c, me, Some(before), items(2)).await.unwrap();
        assert!(p3.is_empty() && !more);
        // Cut by bytes: one at least.
        let (p, more) = conversations(
            c,
            me,
            None,
            Page {
                items: 10,
                bytes: 1,
            },
        )
        .await
        .unwrap();
        assert_eq!((p.len(), more), (1, true));
        // A cursor past every id: everything at that time and before.
        let before = Before {
            activity_ms: 200,
            id: u64::MAX,
        };
        let (p, _) = conversations(c, me, Some(before), BIG).await.unwrap();
        assert_eq!(
            p.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![r, g, f, j, u]
        );
        let (p, more) = conversations(c, u64::MAX, None, BIG).await.unwrap();
        assert!(p.is_empty() && !more);
    })
    .await;
}

#[tokio::test]
async fn pages_friends_and_requests() {
    with_db("pages_friends_and_requests", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        let bob = user(c, "bob").await;
        let carol = user(c, "carol").await;
        let dave = user(c, "dave").await;
        let eve = user(c, "eve").await;
        let zed = user(c, "Zed").await;
        for f in [dave, bob, carol, zed] {
            befriend(c, me, f).await;
        }
        block(c, me, eve).await;
        block(c, me, dave).await;

        let names = |l: &FriendList| {
            l.friends
                .iter()
                .map(|f| f.username.clone())
                .collect::<Vec<_>>()
        };
        // Bytewise order: "Zed" sorts first.
        let p = friends(c, me, "", items(2)).await.unwrap();
        assert_eq!(names(&p), vec!["Zed", "bob"]);
        assert!(p.has_more);
        assert_eq!(
            p.blocked,
            vec![(dave, "dave".to_string()), (eve, "eve".to_string())]
        );
        assert_eq!(
            p.friends[1],
            FriendRecord {
                user_id: bob,
                username: "bob".into(),
                remark: "r".into(),
                since_ms: 3,
                blocked: false,
            }
        );
        let p = friends(c, me, "bob", items(2)).await.unwrap();
        assert_eq!(names(&p), vec!["carol", "dave"]);
        assert!(p.blocked.is_empty());
        assert!(!p.has_more);
        assert!(p.friends[1].blocked);
        let p = friends(c, me, "bob\0zz", items(5)).await.unwrap();
        assert_eq!(names(&p), vec!["carol", "dave"]);
        let p = friends(c, me, "dave", items(2)).await.unwrap();
        assert!(p.friends.is_empty() && !p.has_more);
        // The blocked list counts against the first page's bytes.
        let p = friends(
            c,
            me,
            "",
            Page {
                items: 10,
                bytes: 1,
            },
        )
        .await
        .unwrap();
        assert_eq!((p.friends.len(), p.blocked.len(), p.has_more), (1, 2, true));
        assert!(friends(c, u64::MAX, "", BIG)
            .await
            .unwrap()
            .friends
            .is_empty());

        let mut all = vec![bob, carol, dave, zed];
        all.sort_unstable();
        assert_eq!(friend_ids(c, me).await.unwrap(), all);
        assert!(friend_ids(c, u64::MAX).await.unwrap().is_empty());

        // Requests, oldest first: in, out, from a blocked user, in.
        let r1 = friend_request(c, bob, me, RequestStatus::Pending).await;
        let r2 = friend_request(c, me, carol, RequestStatus::Pending).await;
        friend_request(c, eve, me, RequestStatus::Pending).await;
        let r4 = friend_request(c, carol, me, RequestStatus::Accepted).await;
        friend_request(c, bob, carol, RequestStatus::Pending).await;
        let split = |p: &FriendRequestPage| {
            (
                p.incoming.iter().map(|r| r.id).collect::<Vec<_>>(),
                p.outgoing.iter().map(|r| r.id).collect::<Vec<_>>(),
                p.has_more,
            )
        };
        let p = friend_requests(c, me, 0, items(2)).await.unwrap();
        assert_eq!(split(&p), (vec![r4], vec![r2], true));
        let p = friend_requests(c, me, r2, items(2)).await.unwrap();
        assert_eq!(split(&p), (vec![r1], vec![], false));
        let p = friend_requests(c, me, u64::MAX, BIG).await.unwrap();
        assert_eq!(split(&p), (vec![r4, r1], vec![r2], false));
        let p = friend_requests(
            c,
            me,
            0,
            Page {
                items: 10,
                bytes: 1,
            },
        )
        .await
        .unwrap();
        assert_eq!(split(&p), (vec![r4], vec![], true));
        let got = &friend_requests(c, me, 0, BIG).await.unwrap().outgoing[0];
        assert_eq!(
            (got.from_name.as_str(), got.to_name.as_str(), got.status),
            ("me", "carol", RequestStatus::Pending)
        );
        let p = friend_requests(c, u64::MAX, 0, BIG).await.unwrap();
        assert_eq!(split(&p), (vec![], vec![], false));

        let waiting: Vec<u64> = pending_incoming(c, me, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(waiting, vec![r1]);
        assert!(pending_incoming(c, me, 0).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn reads_groups_rooms_members_and_join_requests() {
    with_db(
        "reads_groups_rooms_members_and_join_requests",
        |db| async move {
            let c = &*db;
            let owner = user(c, "owner").await;
            let admin = user(c, "admin").await;
            let plain = user(c, "plain").await;
            let out = user(c, "out").await;
            let left = user(c, "left").await;
            let g = conv(c, ConversationKind::Group, 1).await;
            group_row(c, g, "Secret", owner, true, false).await;
            member(c, owner, g, Role::Owner, (0, 0, 0, 0)).await;
            member(c, admin, g, Role::Admin, (0, 0, 0, 0)).await;
            member(c, plain, g, Role::Member, (0, 0, 0, 0)).await;
            member(c, left, g, Role::Member, (0, 2, 0, 0)).await;
            let mut rooms_made = Vec::new();
            for name in [
                "Chat Room",
                "chat_fans",
                "CHATTY",
                "ärger",
                "Ärger",
                "50% off",
            ] {
                let r = conv(c, ConversationKind::Room, 1).await;
                group_row(c, r, name, owner, false, false).await;
                member(c, owner, r, Role::Owner, (0, 0, 0, 0)).await;
                rooms_made.push(r);
            }
            let [chat, fans, chatty, lower_a, upper_a, sale]: [ConversationId; 6] =
                rooms_made.try_into().unwrap();
            let old = conv(c, ConversationKind::Room, 1).await;
            group_row(c, old, "chat old", owner, false, true).await;
            member(c, owner, old, Role::Owner, (0, 0, 0, 0)).await;
            let applicants = vec![user(c, "ap1").await, user(c, "ap2").await, out];
            for (i, u) in applicants.iter().enumerate() {
                c.execute(
                    "INSERT INTO join_requests (conversation_id, user_id, message, created_at_ms)
                 VALUES ($1, $2, 'let me in', $3)",
                    &[&(g as i64), &(*u as i64), &(i as i64)],
                )
                .await
                .unwrap();
            }

            // One group, as each may see it.
            let seen = group(c, g, plain).await.unwrap();
            assert_eq!(
                (seen.name.as_str(), seen.kind, seen.my_role, seen.owner_id),
                ("Secret", ConversationKind::Group, Some(Role::Member), owner)
            );
            assert_eq!(group(c, g, owner).await.unwrap().my_role, Some(Role::Owner));
            for viewer in [out, left, u64::MAX] {
                assert!(matches!(
                    group(c, g, viewer).await,
                    Err(StoreError::NotFound("group"))
                ));
            }
            assert_eq!(group(c, chat, out).await.unwrap().my_role, None);
            for id in [999, u64::MAX] {
                assert!(matches!(
                    group(c, id, owner).await,
                    Err(StoreError::NotFound("group"))
                ));
            }

            // The owner's groups and rooms by id; dismissed ones left out.
            let gids = |v: &[GroupRecord]| v.iter().map(|g| g.id).collect::<Vec<_>>();
            let (p, more) = groups_of(c, owner, 0, items(2)).await.unwrap();
            assert_eq!((gids(&p), more), (vec![g, chat], true));
            let (p, more) = groups_of(c, owner, chat, BIG).await.unwrap();
            assert_eq!(
                (gids(&p), more),
                (vec![fans, chatty, lower_a, upper_a, sale], false)
            );
            let (p, _) = groups_of(c, plain, 0, BIG).await.unwrap();
            assert_eq!(gids(&p), vec![g]);
            assert!(groups_of(c, left, 0, BIG).await.unwrap().0.is_empty());
            assert!(groups_of(c, owner, u64::MAX, BIG)
                .await
                .unwrap()
                .0
                .is_empty());

            // Rooms by prefix: ASCII case folded, `_` and `%` literal.
            let find = |prefix: &'static str, after, p| async move {
                let (found, more) = rooms(c, out, prefix, after, p).await.unwrap();
                (gids(&found), more)
            };
            assert_eq!(
                find("chat", 0, BIG).await,
                (vec![chat, fans, chatty], false)
            );
            assert_eq!(find("CHAT", 0, items(1)).await, (vec![chat], true));
            assert_eq!(find("chat", chat, items(1)).await, (vec![fans], true));
            assert_eq!(find("chat_", 0, BIG).await, (vec![fans], false));
            assert_eq!(find("chat ", 0, BIG).await, (vec![chat], false));
            assert_eq!(find("50%", 0, BIG).await, (vec![sale], false));
            assert_eq!(find("%", 0, BIG).await, (vec![], false));
            assert_eq!(find("ä", 0, BIG).await, (vec![lower_a], false));
            assert_eq!(find("Ä", 0, BIG).await, (vec![upper_a], false));
            assert_eq!(find("secret", 0, BIG).await, (vec![], false));
            assert_eq!(find("", 0, BIG).await.0.len(), 6);
            assert_eq!(find("chat", u64::MAX, BIG).await, (vec![], false));
            assert_eq!(find("c\0", 0, BIG).await, (vec![], false));

            // Members by id, current ones only.
            let uids = |v: &[MemberRecord]| v.iter().map(|m| m.user_id).collect::<Vec<_>>();
            let (p, more) = members(c, g, plain, 0, items(2)).await.unwrap();
            assert_eq!((uids(&p), more), (vec![owner, admin], true));
            assert_eq!(
                p[1],
                MemberRecord {
                    user_id: admin,
                    username: "admin".into(),
                    role: Role::Admin,
                    muted_until_ms: 0,
                    joined_at_ms: 5,
                }
            );
            let (p, more) = members(c, g, plain, admin, items(2)).await.unwrap();
            assert_eq!((uids(&p), more), (vec![plain], false));
            assert!(members(c, g, plain, u64::MAX, BIG)
                .await
                .unwrap()
                .0
                .is_empty());
            assert!(matches!(
                members(c, g, out, 0, BIG).await,
                Err(StoreError::NotFound("group"))
            ));
            assert_eq!(members(c, chat, out, 0, BIG).await.unwrap().0.len(), 1);

            // Join requests: for the owner and admins only.
            let jids = |v: &[JoinRequestRecord]| v.iter().map(|j| j.user_id).collect::<Vec<_>>();
            let mut want = applicants.clone();
            want.sort_unstable();
            let (p, more) = join_requests_for(c, admin, g, 0, items(2)).await.unwrap();
            assert_eq!((jids(&p), more), (want[..2].to_vec(), true));
            assert_eq!(
                (p[0].conversation_id, p[0].message.as_str()),
                (g, "let me in")
            );
            let (p, more) = join_requests_for(c, owner, g, want[1], BIG).await.unwrap();
            assert_eq!((jids(&p), more), (want[2..].to_vec(), false));
            assert!(join_requests_for(c, owner, g, u64::MAX, BIG)
                .await
                .unwrap()
                .0
                .is_empty());
            assert!(matches!(
                join_requests_for(c, plain, g, 0, BIG).await,
                Err(StoreError::Refused(Refusal::JoinRequestsAdminsOnly))
            ));
            for actor in [out, left] {
                assert!(matches!(
                    join_requests_for(c, actor, g, 0, BIG).await,
                    Err(StoreError::NotMember(id)) if id == g
                ));
            }
            assert!(matches!(
                join_requests_for(c, owner, u64::MAX, 0, BIG).await,
                Err(StoreError::NotMember(u64::MAX))
            ));

            assert_eq!(role_of(c, g, admin).await.unwrap(), Some(Role::Admin));
            assert_eq!(role_of(c, g, left).await.unwrap(), None);
            assert_eq!(role_of(c, g, u64::MAX).await.unwrap(), None);
            assert_eq!(role_of(c, u64::MAX, owner).await.unwrap(), None);
        },
    )
    .await;
}

#[tokio::test]
async fn reads_run_inside_a_transaction() {
    with_db("reads_run_inside_a_transaction", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        let bob = user(c, "bob").await;
        let d = direct(c, me, bob, 1).await;
        text(c, d, bob, 2).await;
        friend_request(c, bob, me, RequestStatus::Pending).await;
        // Pipelined statements work on a transaction as on a client.
        let schema: String = c
            .query_one("SELECT current_schema()", &[])
            .await
            .unwrap()
            .get(0);
        let url = std::env::var("NATTER_TEST_POSTGRES_URL").unwrap();
        let (mut own, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        natter_testkit::spawn(async move {
            let _ = conn.await;
        });
        own.batch_execute(&format!("SET search_path TO {schema}"))
            .await
            .unwrap();
        let tx = own.transaction().await.unwrap();
        let p = sync(&tx, me, &HashMap::new(), 0, BIG).await.unwrap();
        assert_eq!(seqs(&p), vec![(d, 1), (d, 2)]);
        assert_eq!(p.pending_friend_requests.len(), 1);
        assert_eq!(p.conversations[0].members.len(), 2);
        let f = friends(&tx, me, "", BIG).await.unwrap();
        assert!(f.friends.is_empty() && f.blocked.is_empty());
        tx.commit().await.unwrap();
    })
    .await;
}

/// A stored enum no variant has is a corrupt row: reading it fails, it is
/// never read as another kind, policy or role.
#[tokio::test]
async fn a_corrupt_enum_column_is_an_error_not_another_variant() {
    with_db(
        "a_corrupt_enum_column_is_an_error_not_another_variant",
        |db| async move {
            let c = &*db;
            let ann = user(c, "ann").await;
            let id = conv(c, ConversationKind::Group, 1).await;
            group_row(c, id, "g", ann, false, false).await;
            member(c, ann, id, Role::Owner, (0, 0, 0, 0)).await;
            assert_eq!(
                group(c, id, ann).await.unwrap().join_policy,
                crate::JoinPolicy::Open
            );
            for (sql, what) in [
                (
                    "UPDATE groups SET join_policy = 7",
                    "corrupt join policy in the database: 7",
                ),
                ("UPDATE groups SET join_policy = 1", ""),
                (
                    "UPDATE members SET role = 9",
                    "corrupt role in the database: 9",
                ),
                ("UPDATE members SET role = 3", ""),
                (
                    "UPDATE conversations SET kind = 0",
                    "corrupt conversation kind in the database: 0",
                ),
            ] {
                c.execute(sql, &[]).await.unwrap();
                let got = group(c, id, ann).await;
                if what.is_empty() {
                    assert!(got.is_ok(), "{sql}: {got:?}");
                } else {
                    let e = got.unwrap_err();
                    assert!(matches!(e, StoreError::Backend { .. }), "{sql}: {e:?}");
                    assert!(e.to_string().contains(what), "{sql}: {e}");
                }
            }
        },
    )
    .await;
}
