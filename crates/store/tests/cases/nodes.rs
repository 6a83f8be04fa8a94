//! Several store instances on one database (where the backend allows
//! it), and retention on a monthly-partitioned one.

use super::*;

pub async fn two_nodes_append_to_one_conversation(env: Env) {
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
        tasks.push(natter_testkit::spawn(async move {
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

pub async fn two_nodes_race_on_one_client_msg_id(env: Env) {
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
    // The first message of a pair, whose key has no conversation yet.
    for round in 0..5 {
        let [c, d] = users(&*s, &[&format!("c{round}"), &format!("d{round}")]).await[..] else {
            unreachable!()
        };
        let (x, y) = tokio::join!(
            s.append_message(msg(c, d, "hello")),
            other.append_message(msg(c, d, "hello"))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(
            (x.message.conversation_id, x.message.seq, x.message.msg_id),
            (y.message.conversation_id, y.message.seq, y.message.msg_id),
            "one message"
        );
        assert!(x.duplicate != y.duplicate, "exactly one stored it");
    }
    other.close().await;
    env.close().await;
}

/// Monthly partitions with a retention: upkeep drops the months that ended
/// before it, with their idempotency keys, and reads go on over the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_retention_drops_old_months_and_reads_go_on() {
    use natter_store::postgres::{Partitioning, PgStore};
    let p = Partitioning::Monthly { retention_days: 30 };
    let Some(env) = crate::harness::postgres_with(p).await else {
        return;
    };
    let (url, _) = env.postgres_url().unwrap();
    let (tx, _feed) = natter_store::commit_feed(1, 1 << 10);
    let admin = PgStore::open(crate::harness::pg_options(url, p), tx)
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
