//! Store tests against a real SQLite file.

use super::*;
use crate::{commit_feed, Body, BodyKind, DevicePolicy, Target};

fn pg(items: usize) -> Page {
    Page {
        items,
        bytes: usize::MAX,
    }
}

fn open(dir: &tempfile::TempDir) -> (SqliteStore, crate::CommitFeed) {
    let (tx, mut feeds) = commit_feed(1, 1 << 16);
    let rx = feeds.remove(0);
    let store = SqliteStore::open(SqliteOptions::new(dir.path().join("t.db")), tx).unwrap();
    (store, rx)
}

fn msg(sender: UserId, peer: UserId, id: &str) -> NewMessage {
    NewMessage {
        sender_id: sender,
        target: Target::Peer(peer),
        client_msg_id: id.into(),
        body: Body {
            kind: BodyKind::Text,
            content: format!("text {id}"),
        },
        mentions: Vec::new(),
        mention_all: false,
        friends_only: false,
        now_ms: 1,
        origin: None,
    }
}

#[tokio::test]
async fn seq_is_dense_and_resend_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    assert!(matches!(
        store.create_user("a", "h", 0).await,
        Err(StoreError::Conflict(_))
    ));
    let mut seqs = Vec::new();
    for i in 0..5 {
        let (s, p) = if i % 2 == 0 { (a, b) } else { (b, a) };
        seqs.push(
            store
                .append_message(msg(s, p, &format!("m{i}")))
                .await
                .unwrap()
                .message
                .seq,
        );
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    let again = store.append_message(msg(a, b, "m0")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.seq, 1);
    let fed: Vec<u64> = std::iter::from_fn(|| feed.try_recv())
        .map(|c| c.message.seq)
        .collect();
    assert_eq!(fed, vec![1, 2, 3, 4, 5], "duplicates are not republished");
    let page = store.sync(b, &HashMap::new(), 0, pg(3)).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(page.has_more);
    let cursors = HashMap::from([(page.messages[0].conversation_id, 3)]);
    let page = store.sync(b, &cursors, 0, pg(3)).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![4, 5]
    );
    assert!(!page.has_more);
    store.close().await;
}

#[tokio::test]
async fn failed_write_does_not_spoil_its_batch_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let store = Arc::new(store);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Every fifth targets a user that does not exist.
            let peer = if i % 5 == 0 { 999 } else { b };
            store.append_message(msg(a, peer, &format!("m{i}"))).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(matches!(e, StoreError::NotFound(_)), "{e}"),
        }
    }
    assert_eq!(ok, 40);
    let page = store.sync(a, &HashMap::new(), 0, pg(100)).await.unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn device_policy_reject_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let u = store.create_user("u", "h", 0).await.unwrap();
    let new = |dev: &str, n: u8, policy| NewSession {
        user_id: u,
        device_id: dev.into(),
        token_hash: [n; 32],
        now_ms: n as i64,
        expires_at_ms: 1_000,
        policy,
        max_sessions: 2,
    };
    let s1 = store
        .create_session(new("d1", 1, DevicePolicy::Reject))
        .await
        .unwrap();
    let s2 = store
        .create_session(new("d2", 2, DevicePolicy::Reject))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_session(new("d3", 3, DevicePolicy::Reject))
            .await,
        Err(StoreError::Refused(crate::rules::Refusal::TooManySessions))
    ));
    // The same device replaces itself even at the limit.
    let s2b = store
        .create_session(new("d2", 4, DevicePolicy::Reject))
        .await
        .unwrap();
    assert_eq!(s2b.revoked, vec![s2.session_id]);
    let s3 = store
        .create_session(new("d3", 5, DevicePolicy::ReplaceOldest))
        .await
        .unwrap();
    assert_eq!(s3.revoked, vec![s1.session_id]);
    let rec = store.session_by_token([1; 32]).await.unwrap().unwrap();
    assert!(rec.revoked);
}

#[tokio::test]
async fn pages_are_cut_by_bytes_but_never_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    let mut conv = 0;
    for i in 0..6 {
        let mut m = msg(a, b, &format!("m{i}"));
        m.body.content = "x".repeat(1000);
        conv = store
            .append_message(m)
            .await
            .unwrap()
            .message
            .conversation_id;
    }
    let tight = Page {
        items: 100,
        bytes: 2500,
    };
    let p = store.sync(b, &HashMap::new(), 0, tight).await.unwrap();
    assert_eq!(p.messages.len(), 2);
    assert!(p.has_more);
    let tiny = Page {
        items: 100,
        bytes: 1,
    };
    let p = store.sync(b, &HashMap::new(), 0, tiny).await.unwrap();
    assert_eq!(p.messages.len(), 1, "one message always fits");
    let h = store.history(b, conv, 0, tight).await.unwrap();
    assert_eq!(
        h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![6, 5]
    );
    assert!(h.has_more);
    let h = store.history(b, conv, 3, pg(10)).await.unwrap();
    assert_eq!(
        h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert!(!h.has_more);
}

/// Sends take seqs from the writer's cache and group changes take theirs
/// inside savepoints; mixed in the same transactions, with some of each
/// refused, the seqs stay dense, and after a reopen the next one follows on.
#[tokio::test]
async fn seqs_stay_dense_across_sends_changes_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let store = Arc::new(store);
    let owner = store.create_user("owner", "h", 0).await.unwrap();
    let member = store.create_user("member", "h", 0).await.unwrap();
    let outsider = store.create_user("outsider", "h", 0).await.unwrap();
    let limits = GroupLimits {
        max_members: 100,
        room_history: 0,
    };
    let group = group_of(&store, owner, vec![member]).await;
    let send = move |sender: UserId, id: String| NewMessage {
        target: Target::Conversation(group),
        ..msg(sender, 0, &id)
    };
    let mut tasks = Vec::new();
    for i in 0..120u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            match i % 6 {
                // A rename: a system event with its own seq, in a savepoint.
                0 => store
                    .group_action(
                        owner,
                        group,
                        GroupAction::Update {
                            name: Some(format!("g{i}")),
                            notice: None,
                            join_policy: None,
                            muted_all: None,
                            invite_code: None,
                        },
                        limits,
                        1,
                    )
                    .await
                    .is_ok(),
                // Refused: a member may not kick the owner.
                1 => store
                    .group_action(member, group, GroupAction::Kick(owner), limits, 1)
                    .await
                    .map(|_| panic!("a member kicked the owner"))
                    .is_ok(),
                // Refused: not a member.
                2 => store
                    .append_message(send(outsider, format!("x{i}")))
                    .await
                    .is_ok(),
                _ => store
                    .append_message(send(member, format!("m{i}")))
                    .await
                    .is_ok(),
            }
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap() as u64;
    }
    // 20 renames and 60 sends, after the `created` event.
    assert_eq!(stored, 80);
    let history = |store: Arc<SqliteStore>| async move {
        let page = store
            .sync(owner, &HashMap::new(), 0, pg(1000))
            .await
            .unwrap();
        page.messages
            .iter()
            .filter(|m| m.conversation_id == group)
            .map(|m| m.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(history(store.clone()).await, (1..=81).collect::<Vec<_>>());
    store.close().await;
    drop(store);

    let (store, _feed) = open(&dir);
    let store = Arc::new(store);
    let next = store
        .append_message(send(member, "after".into()))
        .await
        .unwrap();
    assert_eq!(next.message.seq, 82);
    assert_eq!(history(store).await, (1..=82).collect::<Vec<_>>());
}

/// Committed frames reach the database file without waiting for the
/// writer's own (much later) automatic checkpoint.
#[tokio::test]
async fn the_checkpoint_thread_copies_the_wal_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    let db_len = || std::fs::metadata(dir.path().join("t.db")).unwrap().len();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = db_len();
    for i in 0..300 {
        let mut m = msg(a, b, &format!("m{i}"));
        m.body.content = "x".repeat(1000);
        store.append_message(m).await.unwrap();
    }
    let deadline = natter_runtime::clock::Instant::now() + std::time::Duration::from_secs(5);
    while db_len() < before + 300 * 1000 {
        assert!(
            natter_runtime::clock::Instant::now() < deadline,
            "the database file stayed at {} bytes",
            db_len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn group_of(store: &SqliteStore, owner: UserId, members: Vec<UserId>) -> u64 {
    store
        .create_group(
            crate::NewGroup {
                creator: owner,
                kind: crate::ConversationKind::Group,
                name: "g".into(),
                notice: String::new(),
                join_policy: crate::JoinPolicy::Open,
                members,
                invite_code: "code".into(),
                now_ms: 1,
            },
            GroupLimits {
                max_members: 100,
                room_history: 0,
            },
        )
        .await
        .unwrap()
        .id
}

/// A write in its own savepoint that loads membership it changed itself and
/// then fails must not leave that membership in the writer's cache.
#[tokio::test]
async fn a_rolled_back_write_leaves_nothing_in_the_writers_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let owner = store.create_user("owner", "h", 0).await.unwrap();
    let outsider = store.create_user("outsider", "h", 0).await.unwrap();
    let group = group_of(&store, owner, vec![]).await;
    let failed = store
        .write(move |t| {
            t.conn.execute(
                "INSERT INTO members (user_id, conversation_id, joined_at_ms) VALUES (?1, ?2, 0)",
                rusqlite::params![outsider, group],
            )?;
            t.convs.forget(group);
            t.convs.get(t.conn, group)?;
            Err::<(), _>(StoreError::bug("fails after loading"))
        })
        .await;
    assert!(failed.is_err());
    let send = NewMessage {
        target: Target::Conversation(group),
        ..msg(outsider, 0, "sneak")
    };
    assert!(
        matches!(
            store.append_message(send).await,
            Err(StoreError::NotMember(_))
        ),
        "the rolled-back membership must not let the outsider send"
    );
}

/// A panic inside a write fails that write's batch and nothing else: the
/// writer goes on with the next.
#[tokio::test]
async fn a_panic_in_a_write_fails_its_batch_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let r = store
        .write(|_| -> Result<()> { panic!("injected for the test") })
        .await;
    assert!(matches!(r, Err(StoreError::Backend { .. })), "{r:?}");
    let b = store.create_user("b", "h", 0).await.unwrap();
    let m = store.append_message(msg(a, b, "after")).await.unwrap();
    assert_eq!(m.message.seq, 1);
    store.check().await.unwrap();
}

/// A full database is a storage fault: writes fail with it, the health
/// check fails until a write succeeds again, and then it passes.
#[tokio::test]
async fn a_full_database_fails_the_check_until_writes_work_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    store.check().await.unwrap();
    let pages: i64 = store
        .write(|t| Ok(t.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?))
        .await
        .unwrap();
    store
        .write(move |t| {
            t.conn
                .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
    let mut big = msg(a, b, "big");
    big.body.content = "x".repeat(200_000);
    let e = store.append_message(big.clone()).await.unwrap_err();
    assert_eq!(e.fault(), Some(crate::Fault::Full), "{e:?}");
    assert!(store.check().await.is_err(), "a full store is not healthy");
    store
        .write(|t| {
            t.conn
                .query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
    store.check().await.unwrap();
    store.append_message(big).await.unwrap();
}

/// Pages of every list stay within their byte budget and, followed by
/// their cursors, reach every item once.
#[tokio::test]
async fn list_pages_keep_to_their_budget_and_cover_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let me = store.create_user("me", "h", 0).await.unwrap();
    let mut groups = Vec::new();
    for _ in 0..120 {
        groups.push(group_of(&store, me, vec![]).await);
    }
    let page = Page {
        items: 500,
        bytes: 2000,
    };
    // Sync: conversation states page by the conversation cursor.
    let (mut after, mut seen, mut pages) = (0, Vec::new(), 0);
    loop {
        let p = store.sync(me, &HashMap::new(), after, page).await.unwrap();
        let bytes: usize = p.conversations.iter().map(|c| c.size_hint()).sum::<usize>()
            + p.messages.iter().map(|m| m.size_hint()).sum::<usize>();
        assert!(bytes <= page.bytes, "{bytes}");
        seen.extend(p.conversations.iter().map(|c| c.id));
        pages += 1;
        if !p.has_more {
            break;
        }
        assert!(p.next_after > after, "every page moves on");
        after = p.next_after;
    }
    assert!(pages > 1);
    // Each group's "created" event is due to a new device: it came too.
    assert_eq!(seen, groups);
    // The group list pages by id.
    let (mut after, mut listed) = (0, Vec::new());
    loop {
        let (g, more) = store.groups_of(me, after, page).await.unwrap();
        assert!(g.iter().map(|g| g.size_hint()).sum::<usize>() <= page.bytes);
        after = g.last().map_or(after, |g| g.id);
        listed.extend(g.into_iter().map(|g| g.id));
        if !more {
            break;
        }
    }
    assert_eq!(listed, groups);
    // The conversation list pages by activity.
    let (mut before, mut listed) = (None, Vec::new());
    loop {
        let (c, more) = store.conversations(me, before, page).await.unwrap();
        assert!(c.iter().map(|c| c.size_hint()).sum::<usize>() <= page.bytes);
        before = c.last().map(|c| crate::Before {
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
}
