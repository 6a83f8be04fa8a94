//! The read queries against a real PostgreSQL: each test on a schema of its
//! own, fixtures in plain SQL.
#![allow(clippy::unwrap_used)]

use super::engine::dialect::Pg;
use super::sync::*;
use crate::rules::{Refusal, SYNC_CONVERSATIONS};
use crate::sql::accounts::*;
use crate::sql::friends::*;
use crate::sql::lists::{
    conversations, group, groups_of, join_requests_for, members, role_of, rooms,
};
use crate::sql::messages::{audience, history, members_of, visible_range};
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

mod accounts;
mod friends;
mod groups;
mod lists;
mod sync;
