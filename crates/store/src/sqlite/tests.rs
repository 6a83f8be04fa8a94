//! SQLite-only store tests against a real file: the checkpoint thread, the
//! writer's cache and savepoints, panics and a full disk. What every backend
//! must do is in the conformance suite (tests/conformance.rs).

use super::*;
use crate::{commit_feed, Body, BodyKind, Target};
use std::sync::atomic::Ordering;

fn open(dir: &tempfile::TempDir) -> (SqliteStore, crate::CommitFeed) {
    let (tx, mut feeds) = commit_feed(1, 1 << 16);
    let rx = feeds.remove(0);
    let store = SqliteStore::open(SqliteOptions::new(dir.path().join("t.db")), tx).unwrap();
    (store, rx)
}

/// A page that holds every message these tests send.
const PAGE: Page = Page {
    items: 50,
    bytes: 1 << 20,
};

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
    let mut conversation = 0;
    for i in 0..300 {
        let mut m = msg(a, b, &format!("m{i}"));
        m.body.content = "x".repeat(1000);
        conversation = store
            .append_message(m)
            .await
            .unwrap()
            .message
            .conversation_id;
    }
    // A read copies the messages out of the message log into the WAL now,
    // rather than after `COPY_AGE`: what is timed is the checkpoint.
    let page = Page {
        items: 1,
        bytes: 1 << 20,
    };
    store.history(a, conversation, 0, page).await.unwrap();
    let deadline = natter_runtime::clock::Instant::now() + std::time::Duration::from_secs(20);
    while db_len() < before + 300 * 1000 {
        assert!(
            natter_runtime::clock::Instant::now() < deadline,
            "the database file stayed at {} bytes",
            db_len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Opens a second store on `dir`'s database, with a feed of its own.
/// The copy thread's commits leave checkpoints to the checkpoint thread:
/// at SQLite's default (1,000 WAL pages) a copy's COMMIT ran a checkpoint,
/// with its fsync, under the copy gate.
#[tokio::test]
async fn the_copy_connection_leaves_checkpoints_to_their_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let pages: u32 = store
        .shared
        .gate()
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pages, checkpoint::BACKSTOP_PAGES);
}

fn open_again(dir: &tempfile::TempDir) -> Result<SqliteStore> {
    let (tx, _feeds) = commit_feed(1, 1 << 16);
    SqliteStore::open(SqliteOptions::new(dir.path().join("t.db")), tx)
}

/// Two stores on one file would each hand out seqs from their own cache:
/// the second is refused for as long as the first is open. Once the first
/// is closed it writes nothing more, and a second opens even while someone
/// still holds the first (a server restarted in the same process while a
/// task of the old one winds down).
#[tokio::test]
async fn a_second_store_on_the_same_database_is_refused_until_the_first_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _feed) = open(&dir);
    let a = first.create_user("a", "h", 0).await.unwrap();
    let b = first.create_user("b", "h", 0).await.unwrap();
    first.append_message(msg(a, b, "m1")).await.unwrap();
    let Err(e) = open_again(&dir) else {
        panic!("a second store opened the same database");
    };
    let lock = dir.path().join("t.db.lock");
    assert!(
        matches!(&e, StoreError::Locked { path } if *path == lock),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "the data directory is in use by another natter process (lock held on {}); \
             stop it first, or use another data_dir",
            lock.display()
        )
    );
    first.close().await;
    let again = open_again(&dir).expect("the closed store let go of the lock");
    assert!(again.user_by_name("a").await.unwrap().is_some());
    let m = again.append_message(msg(a, b, "m2")).await.unwrap().message;
    assert_eq!(m.seq, 2, "the second store follows the first's seqs");
    assert!(
        first.append_message(msg(a, b, "m3")).await.is_err(),
        "the closed store takes no writes"
    );
    drop(first);
    again.close().await;
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

/// Ten messages from a new user "a" to "b", waiting in the log: a's id and
/// how many records wait.
async fn ten_waiting(store: &SqliteStore) -> (UserId, usize) {
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    for i in 0..10 {
        store
            .append_message(msg(a, b, &format!("m{i}")))
            .await
            .unwrap();
    }
    let waiting = store.pending.load(Ordering::Acquire);
    assert!(waiting >= 10, "the messages wait in the log: {waiting}");
    (a, waiting)
}

/// The health check, which the server runs every second, proves the
/// writer answers without copying the log into the database on the
/// writer's thread: the records stay for the copy thread, and the sends
/// queued behind the check do not wait for a copy.
#[tokio::test]
async fn the_health_check_leaves_the_log_to_the_copy_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let (_, waiting) = ten_waiting(&store).await;
    store.check().await.unwrap();
    assert_eq!(
        store.pending.load(Ordering::Acquire),
        waiting,
        "the check copied the log on the writer's thread"
    );
}

/// A login's session (like an account or a code) touches no message, so
/// its round does not copy the waiting log records first: the sends behind
/// it do not wait for a copy. A write that sees messages still copies
/// them all before it runs.
#[tokio::test]
async fn a_session_write_leaves_the_log_and_a_message_write_copies_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let (a, waiting) = ten_waiting(&store).await;
    let grant = store
        .create_session(crate::NewSession {
            user_id: a,
            device_id: "phone".into(),
            token_hash: [7; 32],
            now_ms: 1,
            expires_at_ms: 1_000_000,
            policy: crate::DevicePolicy::ReplaceOldest,
            max_sessions: 2,
        })
        .await
        .unwrap();
    assert_eq!(store.pending.load(Ordering::Acquire), waiting);
    store.revoke_session(grant.session_id).await.unwrap();
    store.create_user("c", "h", 0).await.unwrap();
    assert_eq!(store.pending.load(Ordering::Acquire), waiting);
    // A write that may read messages sees every one before it.
    let stored: i64 = store
        .write(|t| {
            Ok(t.conn
                .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(stored, 10);
    assert_eq!(store.pending.load(Ordering::Acquire), 0);
}

/// A read of messages copies in the waiting records of its own
/// conversations (on its reader's thread) and sees every one of them; the
/// other conversations' records stay in the log for the copy thread.
#[tokio::test]
async fn a_read_copies_only_its_own_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let (a, _) = ten_waiting(&store).await;
    let b = store.user_by_name("b").await.unwrap().unwrap().id;
    let c = store.create_user("c", "h", 0).await.unwrap();
    let d = store.create_user("d", "h", 0).await.unwrap();
    let mut cd = 0;
    for i in 0..5 {
        cd = store
            .append_message(msg(c, d, &format!("c{i}")))
            .await
            .unwrap()
            .message
            .conversation_id;
    }
    let ab = store
        .append_message(msg(b, a, "b0"))
        .await
        .unwrap()
        .message
        .conversation_id;
    store.mark_read(d, cd, 5).await.unwrap();
    store.mark_read(a, ab, 11).await.unwrap();
    // Messages, cursors, and the two 1:1 conversations, made in the log.
    assert_eq!(store.pending.load(Ordering::Acquire), 11 + 5 + 2 + 2);
    let page = PAGE;
    let history = store.history(a, ab, 0, page).await.unwrap();
    assert_eq!(history.messages.len(), 11);
    assert_eq!(
        store.pending.load(Ordering::Acquire),
        5 + 1 + 1,
        "c and d's records wait; a and b's are in the database"
    );
    let (list, _) = store.conversations(d, None, page).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].last_seq, 5);
    assert_eq!(list[0].read_seq, 5, "the cursor raise is seen");
    assert_eq!(store.pending.load(Ordering::Acquire), 0);
}

/// The writer skips the idempotency lookup for keys its filter has never
/// seen in conversations made in this run (`engine::keys`): a resend there
/// is still a duplicate whether its original waits in the log or is in the
/// database, and after a restart, when the conversation is from before.
#[tokio::test]
async fn a_resend_finds_its_original_wherever_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    let first = store.append_message(msg(a, b, "m1")).await.unwrap();
    assert!(!first.duplicate);
    let conversation = first.message.conversation_id;
    let same = |again: &crate::Appended, seq: u64| {
        assert!(again.duplicate, "{again:?}");
        assert_eq!(again.message.seq, seq);
    };
    // Its original waits in the log.
    same(&store.append_message(msg(a, b, "m1")).await.unwrap(), 1);
    // A read copies the conversation's records into the database.
    store.history(a, conversation, 0, PAGE).await.unwrap();
    assert_eq!(store.pending.load(Ordering::Acquire), 0);
    same(&store.append_message(msg(a, b, "m1")).await.unwrap(), 1);
    // New keys, the peer's same one among them, are new messages.
    let next = store.append_message(msg(a, b, "m2")).await.unwrap();
    assert!(!next.duplicate);
    assert_eq!(next.message.seq, 2);
    let theirs = store.append_message(msg(b, a, "m1")).await.unwrap();
    assert!(!theirs.duplicate);
    assert_eq!(theirs.message.seq, 3);
    store.close().await;
    let store = open_again(&dir).unwrap();
    same(&store.append_message(msg(a, b, "m1")).await.unwrap(), 1);
    same(&store.append_message(msg(b, a, "m1")).await.unwrap(), 3);
    let last = store.append_message(msg(a, b, "m3")).await.unwrap();
    assert!(!last.duplicate);
    assert_eq!(last.message.seq, 4);
    store.close().await;
}

/// A round that copies nothing (messages only, no gate) does not settle a
/// copy another thread has in flight: if that copy then fails, its records
/// still wait, to be copied again, and their log segment is kept.
#[tokio::test]
async fn a_round_leaves_a_copy_in_flight_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let (a, waiting) = ten_waiting(&store).await;
    let b = store.user_by_name("b").await.unwrap().unwrap().id;
    let all = store.shared.pending().waiting_ids();
    let (chunk, _) = store.shared.pending().take_these(&all, usize::MAX);
    assert_eq!(chunk.len(), waiting);
    store.append_message(msg(a, b, "meanwhile")).await.unwrap();
    store.shared.pending().copied_rolled_back();
    assert_eq!(
        store.pending.load(Ordering::Acquire),
        waiting + 1,
        "the round settled a copy it did not make"
    );
    let page = PAGE;
    let ab = chunk.messages[0].conversation_id;
    assert_eq!(
        store.history(a, ab, 0, page).await.unwrap().messages.len(),
        11
    );
}

/// A full database is a storage fault. A message is durable once its log
/// record is, so an append still succeeds; the database cannot take it,
/// so reads that must see it fail with the fault, and so does the health
/// check, until the database has room again; then both pass and the
/// message is there.
#[tokio::test]
async fn a_full_database_fails_the_check_until_writes_work_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    // Their conversation exists before the database fills.
    store.append_message(msg(a, b, "first")).await.unwrap();
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
    // The copy connection, which a read copies with, is as full.
    store
        .shared
        .gate()
        .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
        .unwrap();
    let mut big = msg(a, b, "big");
    big.body.content = "x".repeat(200_000);
    let ack = store.append_message(big.clone()).await.unwrap();
    let e = store
        .history(a, ack.message.conversation_id, 0, PAGE)
        .await
        .unwrap_err();
    assert_eq!(e.fault(), Some(crate::Fault::Full), "{e:?}");
    assert!(store.check().await.is_err(), "a full store is not healthy");
    // A write in the database cannot run now (the database must first take
    // the message before it); a staged job reaches the writer's connection.
    store
        .staged(|t| {
            t.conn
                .query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
    store
        .shared
        .gate()
        .query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(()))
        .unwrap();
    store.check().await.unwrap();
    let page = store
        .history(a, ack.message.conversation_id, 0, PAGE)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 2);
    assert_eq!(page.messages[0].body.content.len(), 200_000);
    let again = store.append_message(big).await.unwrap();
    assert!(again.duplicate);
}

/// A database from before messages were clustered by conversation (keyed
/// by the global id, two conversations' messages interleaved) is migrated
/// at open: every message keeps its seq, id and body, a resend still finds
/// its original, and new messages carry on both counters.
#[tokio::test]
async fn messages_keyed_by_id_are_migrated_to_the_conversation_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (a, b, c) = {
        let (store, _feed) = open(&dir);
        let a = store.create_user("a", "h", 0).await.unwrap();
        let b = store.create_user("b", "h", 0).await.unwrap();
        let c = store.create_user("c", "h", 0).await.unwrap();
        for i in 0..40 {
            let to = if i % 2 == 0 { b } else { c };
            store
                .append_message(msg(a, to, &format!("m{i}")))
                .await
                .unwrap();
        }
        store.close().await;
        (a, b, c)
    };
    {
        // Put the table back as schema 3 had it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE old (
                 id INTEGER PRIMARY KEY,
                 conversation_id INTEGER NOT NULL REFERENCES conversations(id),
                 seq INTEGER NOT NULL,
                 sender_id INTEGER NOT NULL REFERENCES users(id),
                 client_msg_id TEXT NOT NULL,
                 created_at_ms INTEGER NOT NULL,
                 body_kind INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 mentions TEXT NOT NULL DEFAULT '',
                 mention_all INTEGER NOT NULL DEFAULT 0,
                 UNIQUE (conversation_id, seq));
             INSERT INTO old SELECT id, conversation_id, seq, sender_id, client_msg_id,
                 created_at_ms, body_kind, body, mentions, mention_all FROM messages ORDER BY id;
             DROP TABLE messages;
             ALTER TABLE old RENAME TO messages;
             CREATE UNIQUE INDEX messages_by_client_id ON messages(sender_id, client_msg_id);
             -- And without what migration 5 adds.
             DROP TABLE email_codes;
             DROP INDEX users_by_email;
             ALTER TABLE users DROP COLUMN email;
             -- And without what migration 6 adds.
             DROP TABLE admin_audit;
             DROP TABLE admin_sessions;
             DROP TABLE admins;
             DROP INDEX users_by_ban;
             ALTER TABLE users DROP COLUMN banned_until_ms;
             ALTER TABLE users DROP COLUMN ban_reason;
             PRAGMA user_version = 3;
             COMMIT;",
        )
        .unwrap();
    }
    let layout = |path: &std::path::Path| -> String {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'messages'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(!layout(&path).contains("WITHOUT ROWID"));
    let (store, _feed) = open(&dir);
    assert!(layout(&path).contains("WITHOUT ROWID"), "{}", layout(&path));
    let page = Page {
        items: 100,
        bytes: 1 << 20,
    };
    let mut ids = Vec::new();
    for (peer, parity) in [(b, 0), (c, 1)] {
        let first = store
            .append_message(msg(a, peer, &format!("m{parity}")))
            .await
            .unwrap();
        assert!(
            first.duplicate,
            "a resend finds its original after the migration"
        );
        let h = store
            .history(a, first.message.conversation_id, 0, page)
            .await
            .unwrap();
        let seqs: Vec<u64> = h.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=20).rev().collect::<Vec<_>>());
        for m in &h.messages {
            let i = (m.seq - 1) * 2 + parity;
            assert_eq!(m.client_msg_id, format!("m{i}"));
            assert_eq!(m.body.content, format!("text m{i}"));
        }
        ids.extend(h.messages.iter().map(|m| m.msg_id));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40, "ids stay unique");
    let next = store.append_message(msg(a, b, "after")).await.unwrap();
    assert!(!next.duplicate);
    assert_eq!(next.message.seq, 21);
    assert_eq!(
        next.message.msg_id,
        ids[39] + 1,
        "ids carry on from the highest"
    );
}

/// A stored enum no variant has is a corrupt row: reading it fails, it is
/// never read as another kind, policy or role.
#[tokio::test]
async fn a_corrupt_enum_column_is_an_error_not_another_variant() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let owner = store.create_user("o", "h", 0).await.unwrap();
    let id = group_of(&store, owner, Vec::new()).await;
    store.close().await;
    drop(store);
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
        rusqlite::Connection::open(dir.path().join("t.db"))
            .unwrap()
            .execute(sql, [])
            .unwrap();
        let store = open_again(&dir).unwrap();
        let got = store.group(id, owner).await;
        if what.is_empty() {
            assert!(got.is_ok(), "{sql}: {got:?}");
        } else {
            let e = got.unwrap_err();
            assert!(matches!(e, StoreError::Backend { .. }), "{sql}: {e:?}");
            assert!(e.to_string().contains(what), "{sql}: {e}");
        }
        store.close().await;
    }
}

mod apart;
mod direct;
