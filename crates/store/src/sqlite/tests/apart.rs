//! Writes apart from the messages (accounts, sessions, bans, friend
//! requests, friends, remarks, blocks) do not copy the records waiting in the message log
//! into the database first: the periodic lifting of bans that ended, and
//! every remark, unfriending or block, once did, holding up every send
//! behind a copy of everything waiting (up to seconds under load).

use super::*;
use crate::{AdminStore, ConversationKind, JoinPolicy};
use natter_domain::admin::Bar;

#[tokio::test]
async fn bans_sessions_and_friends_copy_nothing_first() {
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
    for i in 0..50 {
        store
            .append_message(msg(a, b, &format!("m{i}")))
            .await
            .unwrap();
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
    assert!(
        !store
            .append_message(msg(a, c, "back"))
            .await
            .unwrap()
            .duplicate
    );
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
    // A write that does see the messages still copies everything first.
    store
        .create_group(
            NewGroup {
                creator: a,
                kind: ConversationKind::Group,
                name: "g".into(),
                notice: String::new(),
                join_policy: JoinPolicy::Open,
                members: vec![c],
                invite_code: "code".into(),
                now_ms: 1,
            },
            GroupLimits {
                max_members: 10,
                room_history: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(waiting(), 0);
    assert!(stored().await.unwrap() >= 51);
    store.close().await;
}
