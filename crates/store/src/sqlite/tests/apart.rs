//! Writes apart from the messages (accounts, sessions, bans, friend
//! requests, friends, remarks, blocks, a group's creation) do not copy the
//! records waiting in the message log into the database first, and a write
//! in one conversation (a group's change, a recall) copies that
//! conversation's alone: the periodic lifting of bans that ended, and every
//! remark, unfriending, block or group join, once copied everything,
//! holding up every send behind it (up to seconds under load).

use super::*;
use crate::{AdminStore, ConversationKind, JoinPolicy};
use natter_domain::admin::Bar;

#[tokio::test]
async fn writes_copy_first_only_what_they_see() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir);
    let a = store.create_user("a", "h", 0).await.unwrap();
    let b = store.create_user("b", "h", 0).await.unwrap();
    let c = store.create_user("c", "h", 0).await.unwrap();
    let banned = |until_ms| Bar {
        disabled: true,
        until_ms: Some(until_ms),
        reason: "spam".into(),
    };
    store.set_bar(c, banned(100)).await.unwrap();
    let mut ab = 0;
    for i in 0..50 {
        let sent = store.append_message(msg(a, b, &format!("m{i}")));
        ab = sent.await.unwrap().message.conversation_id;
    }
    let waiting = || store.pending.load(Ordering::Acquire);
    let stored = || {
        store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))?))
    };
    let before = waiting();
    assert!(before >= 50, "the records wait in the log");
    assert_eq!(store.lift_ended_bans(1_000).await.unwrap(), vec![c]);
    assert_eq!(waiting(), before, "lifting bans copied nothing");
    assert_eq!(stored().await.unwrap(), 0);
    store.set_bar(b, banned(i64::MAX)).await.unwrap();
    store.end_sessions(b).await.unwrap();
    assert_eq!(waiting(), before, "nor did a ban or ending sessions");
    // What the writer caches follows them: c takes messages again, b not.
    let back = store.append_message(msg(a, c, "back")).await.unwrap();
    assert!(!back.duplicate);
    let ac = back.message.conversation_id;
    assert!(matches!(
        store.append_message(msg(a, b, "banned")).await,
        Err(StoreError::NotFound(_))
    ));
    // Nor do remarks, unfriending and blocks, which the writer's cache
    // follows too: a block refuses a's next message.
    let asked = store.send_friend_request(a, c, "hi", 5).await.unwrap();
    store
        .respond_friend_request(c, asked.request.id, true, "ok", 6)
        .await
        .unwrap();
    let _ = store.set_remark(a, c, "c").await;
    let _ = store.remove_friend(a, c).await;
    store.set_blocked(c, a, true, 10).await.unwrap();
    assert_eq!(
        stored().await.unwrap(),
        0,
        "a friend request, its answer, a remark, unfriending or a block copied nothing"
    );
    assert!(store.append_message(msg(a, c, "blocked")).await.is_err());
    // A group's creation copies nothing either, and takes an id none of
    // the 1:1s made in the log has.
    let d = store.create_user("d", "h", 0).await.unwrap();
    let e = store.create_user("e", "h", 0).await.unwrap();
    let limits = GroupLimits {
        max_members: 10,
        room_history: 2,
    };
    let g = store
        .create_group(
            NewGroup {
                creator: d,
                kind: ConversationKind::Room,
                name: "g".into(),
                notice: String::new(),
                join_policy: JoinPolicy::Open,
                members: Vec::new(),
                invite_code: "code".into(),
                now_ms: 1,
            },
            limits,
        )
        .await
        .unwrap()
        .id;
    assert!(g != ab && g != ac, "the group took a 1:1's id");
    let stored_in = |id: ConversationId| {
        store.read(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM messages WHERE conversation_id = ?1 AND client_msg_id NOT LIKE 'system-%'",
                [id],
                |r| r.get::<_, i64>(0),
            )?)
        })
    };
    assert_eq!(
        stored_in(ab).await.unwrap() + stored_in(ac).await.unwrap(),
        0
    );
    let mut in_g = msg(d, 0, "g1");
    in_g.target = Target::Conversation(g);
    store.append_message(in_g).await.unwrap();
    assert_eq!(
        stored_in(g).await.unwrap(),
        0,
        "d's message waits in the log"
    );
    // A join copies the group's records, and only those.
    let joined = store.join_group(e, g, "", "", limits, 2).await.unwrap();
    assert!(matches!(joined, JoinOutcome::Joined));
    assert_eq!(stored_in(g).await.unwrap(), 1);
    assert_eq!(stored_in(ab).await.unwrap(), 0, "a join copied a 1:1");
    // A recall copies its conversation's records, and only those.
    store.recall(a, ab, 1, 60_000, 2).await.unwrap();
    assert_eq!(stored_in(ab).await.unwrap(), 50);
    assert_eq!(
        stored_in(ac).await.unwrap(),
        0,
        "a recall copied another 1:1"
    );
    // A write that may touch any of a user's conversations still copies
    // everything first; the 1:1s made in the log and the group stay apart.
    store.delete_account(e).await.unwrap();
    assert_eq!(waiting(), 0);
    assert_eq!(stored_in(ac).await.unwrap(), 1);
    let kinds = store
        .read(move |c| {
            let mut q = c.prepare("SELECT id, kind FROM conversations ORDER BY id")?;
            let rows = q.query_map([], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, i64>(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
        .unwrap();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    for (id, kind) in kinds {
        let room = ConversationKind::Room as i64;
        assert_eq!(kind == room, id == g, "{id} of kind {kind}");
    }
    store.close().await;
}
