//! A 1:1 conversation is made in the message log by its first message: no
//! round waits on the copy gate for it, the database gets it with the first
//! copy of any of its records (or at start-up, from the log), and its id
//! never meets another conversation's.

use super::*;
use crate::{Appended, StoredMessage};
use std::time::Duration;

/// Holds the copy gate (as a copy in flight does) until told to let go.
fn hold_gate(store: &SqliteStore) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let shared = store.shared.clone();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _gate = shared.gate();
        held_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    held_rx.recv().unwrap();
    (release, holder)
}

async fn rows(store: &SqliteStore, sql: &'static str, id: ConversationId) -> i64 {
    store
        .read(move |c| Ok(c.query_row(sql, [id], |r| r.get(0))?))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_first_message_waits_for_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    let c = store.create_user("c", "h", 0).await.unwrap();
    let (release, holder) = hold_gate(&store);
    let wait = Duration::from_secs(5);
    let sent = tokio::time::timeout(wait, store.append_message(msg(a, b, "first")))
        .await
        .expect("the first message between two users waits for no copy")
        .unwrap();
    let id = sent.message.conversation_id;
    assert_eq!(sent.message.seq, 1);
    let again = tokio::time::timeout(wait, store.append_message(msg(b, a, "second")))
        .await
        .expect("nor does the reply")
        .unwrap();
    assert_eq!((again.message.conversation_id, again.message.seq), (id, 2));
    let read = tokio::time::timeout(wait, store.mark_read(b, id, 2))
        .await
        .expect("nor a cursor in it")
        .unwrap();
    assert_eq!(read.map(|r| r.seq), Some(2));
    assert!(matches!(
        tokio::time::timeout(wait, store.mark_read(c, id, 1))
            .await
            .unwrap(),
        Err(StoreError::NotMember(_))
    ));
    let made = "SELECT count(*) FROM conversations WHERE id = ?1";
    assert_eq!(rows(&store, made, id).await, 0, "made in the log only");
    release.send(()).unwrap();
    holder.join().unwrap();

    // A read of b's conversations copies it in first: the conversation, its
    // pair, both members and the cursor.
    let (list, _) = store.conversations(b, None, PAGE).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].id, list[0].peer), (id, Some(a)));
    assert_eq!((list[0].last_seq, list[0].read_seq), (2, 2));
    assert_eq!(rows(&store, made, id).await, 1);
    let pair = "SELECT count(*) FROM direct_pairs WHERE conversation_id = ?1";
    assert_eq!(rows(&store, pair, id).await, 1);
    let mut audience = store.audience(a, id).await.unwrap();
    audience.sort_unstable();
    assert_eq!(audience, vec![a, b]);
    assert_eq!(store.pending.load(Ordering::Acquire), 0);
    // The pair keeps its conversation.
    let third = store.append_message(msg(a, b, "third")).await.unwrap();
    assert_eq!((third.message.conversation_id, third.message.seq), (id, 3));
    store.close().await;
}

/// Before anyone reads them, a conversation made in the log is visible to
/// the reads that name it (its members, who hears of typing).
#[tokio::test]
async fn reads_that_name_a_made_conversation_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    let id = store
        .append_message(msg(a, b, "first"))
        .await
        .unwrap()
        .message
        .conversation_id;
    let mut audience = store.audience(b, id).await.unwrap();
    audience.sort_unstable();
    assert_eq!(audience, vec![a, b]);
    let history = store.history(a, id, 0, PAGE).await.unwrap();
    assert_eq!(history.messages.len(), 1);
    store.close().await;
}

/// Conversations made in the log and those made in the database (groups)
/// never share an id: a group made while a 1:1 waits in the log follows
/// it, and the next 1:1 follows the group.
#[tokio::test]
async fn ids_made_in_the_log_and_in_the_database_never_meet() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    let c = store.create_user("c", "h", 0).await.unwrap();
    let conv = |m: Appended| m.message.conversation_id;
    let ab = conv(store.append_message(msg(a, b, "ab")).await.unwrap());
    let group = group_of(&store, a, vec![b, c]).await;
    let bc = conv(store.append_message(msg(b, c, "bc")).await.unwrap());
    let ac = conv(store.append_message(msg(a, c, "ac")).await.unwrap());
    let mut ids = vec![ab, group, bc, ac];
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{ab} {group} {bc} {ac}");
    for (id, peer, text) in [(ab, b, "text ab"), (bc, b, "text bc"), (ac, a, "text ac")] {
        let h = store.history(peer, id, 0, PAGE).await.unwrap();
        assert_eq!(h.messages.len(), 1);
        assert_eq!(h.messages[0].body.content, text);
    }
    store.close().await;
}

/// After a crash, the log's record makes the conversation before its
/// messages are replayed into it; ids made afterwards follow it.
#[tokio::test]
async fn a_conversation_made_in_the_log_is_replayed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    let c = store.create_user("c", "h", 0).await.unwrap();
    store.close().await;
    drop(store);
    // What a crashed server leaves: the records, never copied.
    let made = log::NewDirect {
        id: 1,
        lo: a,
        hi: b,
        at_ms: 5,
    };
    let mut bytes = Vec::new();
    log::encode_direct(&made, &mut bytes);
    let m = StoredMessage {
        conversation_id: 1,
        seq: 1,
        msg_id: 1,
        sender_id: a,
        client_msg_id: "m1".into(),
        server_ts_ms: 5,
        body: Body {
            kind: BodyKind::Text,
            content: "replayed".into(),
        },
        mentions: Vec::new(),
        mention_all: false,
    };
    log::encode_message(&m, &mut bytes);
    log::encode_cursor(b, 1, log::CursorKind::Read, 1, &mut bytes);
    let log_dir = log::dir_of(&dir.path().join("t.db"));
    let mut l = log::Log::start(&log_dir, None, true).unwrap();
    l.append(&bytes).unwrap();
    drop(l);

    let (store, _feed) = open(&dir);
    let (list, _) = store.conversations(b, None, PAGE).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].id, list[0].peer), (1, Some(a)));
    assert_eq!((list[0].last_seq, list[0].read_seq), (1, 1));
    let next = store.append_message(msg(b, a, "reply")).await.unwrap();
    assert_eq!((next.message.conversation_id, next.message.seq), (1, 2));
    let other = store.append_message(msg(a, c, "new")).await.unwrap();
    assert_eq!(
        other.message.conversation_id, 2,
        "ids follow the replayed one"
    );
    store.close().await;
}
