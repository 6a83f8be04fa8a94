//! `natter admin migrate`: a SQLite data directory built through the
//! protocol is copied into PostgreSQL, and a server on the copy answers
//! Sync, History and the conversation list exactly as the source does;
//! and one goes SQLite -> MySQL -> PostgreSQL -> a new SQLite data
//! directory, each hop verified, and answers the same at the end. A target
//! that already holds data is refused unless resuming. Needs
//! NATTER_TEST_POSTGRES_URL, and for the round trip NATTER_TEST_MYSQL_URL
//! too (skipped, with the reason printed, when unset).

mod common;

use common::*;
use natter_client::{pb, Client};

async fn admin_migrate(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["admin", "migrate"])
        .args(args)
        .output()
        .await
        .expect("run natter admin migrate")
}

/// Everything a user's client can read: every sync page from scratch, the
/// conversation list, and each conversation's whole history.
async fn view(
    c: &Client,
) -> (
    Vec<pb::SyncPage>,
    Vec<pb::ConversationSummary>,
    Vec<pb::HistoryPage>,
) {
    let (mut pages, mut after) = (Vec::new(), 0);
    let mut cursors = std::collections::BTreeMap::new();
    loop {
        let list = cursors
            .iter()
            .map(|(&conversation_id, &seq)| pb::Cursor {
                conversation_id,
                seq,
            })
            .collect();
        let p = c.sync_page(list, after, 7).await.unwrap();
        for m in &p.messages {
            cursors.insert(m.conversation_id, m.seq);
        }
        after = p.next_after_conversation_id;
        let more = p.has_more;
        pages.push(p);
        if !more {
            break;
        }
    }
    let list = c.conversations(100).await.unwrap();
    let mut histories = Vec::new();
    for conv in &list {
        let mut before = 0;
        loop {
            let h = c.history(conv.conversation_id, before, 4).await.unwrap();
            before = h.messages.last().map_or(0, |m| m.seq);
            let more = h.has_more;
            histories.push(h);
            if !more {
                break;
            }
        }
    }
    (pages, list, histories)
}

#[tokio::test]
async fn a_data_dir_moves_to_postgres_and_answers_the_same() {
    let Ok(base) = std::env::var("NATTER_TEST_POSTGRES_URL") else {
        eprintln!("skipped: NATTER_TEST_POSTGRES_URL is not set (migration to PostgreSQL)");
        return;
    };
    let sqlite = |c: &mut natter::Config| c.store.backend = natter::config::Backend::Sqlite;
    let source = TestServer::start_with(sqlite).await;
    let (alice, a) = source.user("alice").await;
    let (bob, b) = source.user("bob").await;
    let (carol, c) = source.user("carol").await;
    for i in 0..12 {
        alice
            .send_text(b.user_id, &format!("ab{i}"), &format!("hello {i}"))
            .await
            .unwrap();
    }
    let dm = bob
        .send_text(a.user_id, "ba", "back")
        .await
        .unwrap()
        .conversation_id;
    let g = alice
        .create_group(
            pb::ConversationKind::Group,
            "team",
            pb::JoinPolicy::Open,
            vec![b.user_id, c.user_id],
        )
        .await
        .unwrap()
        .conversation_id;
    for i in 0..9 {
        carol
            .send_to(g, &format!("g{i}"), &format!("group {i}"))
            .await
            .unwrap();
    }
    let oops = bob.send_to(g, "oops", "wrong chat").await.unwrap();
    bob.recall(g, oops.seq).await.unwrap();
    bob.mark_read(dm, 5).await.unwrap();
    carol.friend_request(a.user_id, "hi alice").await.unwrap();
    bob.befriend(&carol, c.user_id).await.unwrap();
    carol.block(a.user_id, true).await.unwrap();
    let dir = source.stop().await;

    let schema = natter_testkit::pg::Schema::create(&base, "natter_bb_", false)
        .await
        .unwrap();
    let from = dir.path().to_str().unwrap().to_owned();
    let out = admin_migrate(&["--from", &from, "--to", &schema.url]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    // 13 in the 1:1; created, 9, one recalled and its event in the group.
    assert!(report.contains("messages: 25 rows"), "{report}");
    assert!(report.contains("verified"), "{report}");
    // Copying again onto data is refused, resuming is not.
    let again = admin_migrate(&["--from", &from, "--to", &schema.url]).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds natter data"));
    let resumed = admin_migrate(&["--from", &from, "--to", &schema.url, "--resume"]).await;
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );

    let source = TestServer::start_in(dir, sqlite).await;
    let url = schema.url.clone();
    let target = TestServer::start_with(move |c| {
        c.store.backend = natter::config::Backend::Postgres;
        c.store.url = url;
    })
    .await;
    for name in ["alice", "bob", "carol"] {
        let (here, _) = source.device(name, "compare").await;
        let (there, _) = target.device(name, "compare").await;
        let (want, got) = (view(&here).await, view(&there).await);
        assert!(!want.0.is_empty() && !want.2.is_empty());
        assert_eq!(got.0, want.0, "{name}: sync pages");
        assert_eq!(got.1, want.1, "{name}: conversation list");
        assert_eq!(got.2, want.2, "{name}: history");
    }
    // The copy goes on from where the source stopped: ids and seqs follow.
    let (alice2, _) = target.device("alice", "new").await;
    let next = alice2
        .send_text(b.user_id, "after", "on postgres")
        .await
        .unwrap();
    assert_eq!(next.seq, 14);
    target.stop().await;
    source.stop().await;
}

/// `natter admin migrate --from from --to to [extra]`, which must succeed:
/// its report as (table, rows), in its order.
async fn hop(from: &str, to: &str, extra: &[&str]) -> Vec<(String, i64)> {
    let out = admin_migrate(&[&["--from", from, "--to", to], extra].concat()).await;
    assert!(
        out.status.success(),
        "{from} -> {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("verified"), "{report}");
    report
        .lines()
        .filter_map(|l| {
            let (table, rows) = l.strip_suffix(" rows")?.split_once(": ")?;
            Some((table.to_owned(), rows.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn a_data_dir_goes_through_mysql_and_postgres_into_sqlite_and_answers_the_same() {
    let (Ok(my_base), Ok(pg_base)) = (
        std::env::var("NATTER_TEST_MYSQL_URL"),
        std::env::var("NATTER_TEST_POSTGRES_URL"),
    ) else {
        eprintln!(
            "skipped: SQLite -> MySQL -> PostgreSQL -> SQLite needs NATTER_TEST_MYSQL_URL \
             and NATTER_TEST_POSTGRES_URL"
        );
        return;
    };
    let sqlite = |c: &mut natter::Config| c.store.backend = natter::config::Backend::Sqlite;
    let source = TestServer::start_with(sqlite).await;
    let (alice, a) = source.user("alice").await;
    let (bob, b) = source.user("bob").await;
    let (carol, c) = source.user("carol").await;
    for i in 0..5 {
        alice
            .send_text(b.user_id, &format!("ab{i}"), &format!("hello {i}"))
            .await
            .unwrap();
    }
    let g = alice
        .create_group(
            pb::ConversationKind::Group,
            "team 🚀",
            pb::JoinPolicy::Open,
            vec![b.user_id, c.user_id],
        )
        .await
        .unwrap()
        .conversation_id;
    let party = "party 🎉 at 8, ünïcödé and 漢字";
    let mention = bob
        .send(pb::Send {
            client_msg_id: "m1".into(),
            target: Some(pb::send::Target::ConversationId(g)),
            body: Some(pb::Body {
                kind: pb::BodyKind::Text as i32,
                content: party.into(),
            }),
            mention_user_ids: vec![a.user_id, c.user_id],
            mention_all: false,
        })
        .await
        .unwrap();
    carol.send_to(g, "c1", "plain").await.unwrap();
    carol.friend_request(a.user_id, "hi alice").await.unwrap();
    bob.befriend(&carol, c.user_id).await.unwrap();
    carol.block(a.user_id, true).await.unwrap();
    let dir = source.stop().await;
    let from = dir.path().to_str().unwrap().to_owned();

    let my = natter_testkit::my::Database::create(&my_base, "natter_mig_")
        .await
        .unwrap();
    let pg = natter_testkit::pg::Schema::create(&pg_base, "natter_bb_", false)
        .await
        .unwrap();
    let last = tempfile::tempdir().unwrap();
    let last_path = last.path().to_str().unwrap().to_owned();

    let first = hop(&from, &my.url, &[]).await;
    let rows = |t: &str| first.iter().find(|r| r.0 == t).map(|r| r.1);
    assert_eq!(rows("users"), Some(3));
    // 5 in the 1:1; created, the mention and "plain" in the group.
    assert_eq!(rows("messages"), Some(8));
    assert_eq!(rows("mentions"), Some(2));
    assert_eq!(rows("friends"), Some(2));
    assert_eq!(rows("friend_requests"), Some(2));
    assert_eq!(rows("blocks"), Some(1));
    // A MySQL target with data is refused, resuming into it is not.
    let again = admin_migrate(&["--from", &from, "--to", &my.url]).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds natter data"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(hop(&from, &my.url, &["--resume"]).await, first);
    assert_eq!(hop(&my.url, &pg.url, &[]).await, first);
    assert_eq!(hop(&pg.url, &last_path, &[]).await, first);

    let source = TestServer::start_in(dir, sqlite).await;
    let target = TestServer::start_in(last, sqlite).await;
    for name in ["alice", "bob", "carol"] {
        let (here, _) = source.device(name, "compare").await;
        let (there, _) = target.device(name, "compare").await;
        let (want, got) = (view(&here).await, view(&there).await);
        assert!(!want.0.is_empty() && !want.2.is_empty());
        assert_eq!(got.0, want.0, "{name}: sync pages");
        assert_eq!(got.1, want.1, "{name}: conversation list");
        assert_eq!(got.2, want.2, "{name}: history");
        assert_eq!(
            there.friends().await.unwrap(),
            here.friends().await.unwrap(),
            "{name}: friends"
        );
    }
    // The mention came through every backend's form of it.
    let (carol2, _) = target.device("carol", "check").await;
    let h = carol2.history(g, mention.seq + 1, 1).await.unwrap();
    let m = &h.messages[0];
    assert_eq!(m.seq, mention.seq);
    assert_eq!(m.body.as_ref().unwrap().content, party);
    assert_eq!(m.mention_user_ids, vec![a.user_id, c.user_id]);
    // The block too: alice cannot write to carol.
    let (alice2, _) = target.device("alice", "new").await;
    let refused = alice2.send_text(c.user_id, "x", "hi?").await.unwrap_err();
    assert_eq!(refused.code(), Some(pb::ErrorCode::Forbidden));
    // And the copy goes on where the source stopped.
    let next = alice2
        .send_text(b.user_id, "after", "on sqlite again")
        .await
        .unwrap();
    assert_eq!(next.seq, 6);
    target.stop().await;
    source.stop().await;
}
