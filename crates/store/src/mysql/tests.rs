//! The engine against a real MariaDB or MySQL (NATTER_TEST_MYSQL_URL; unset,
//! each test says so and skips): the schema migrates once and refuses a
//! newer one, the server's durability is read, and the shared topics' SQL
//! runs as rendered, each test on a database of its own.
#![allow(clippy::unwrap_used)]

use super::engine::connect::start_session;
use super::engine::dialect::My;
use super::engine::schema;
use super::{prepare, MyOptions};
use crate::sql::{accounts, admin, codes, friends};
use crate::{CodeTry, CodeVerdict, DevicePolicy, NewEmailCode, NewSession, Page, StoreError};
use mysql_async::prelude::Queryable;
use natter_domain::{AdminRole, Bar};

/// A migrated database of the test's own and a connection to it, with the
/// session every connection of the backend starts with; `None` (said)
/// without a server.
async fn fresh(test: &str) -> Option<(natter_testkit::my::Database, mysql_async::Conn)> {
    let Ok(url) = std::env::var("NATTER_TEST_MYSQL_URL") else {
        eprintln!("skipping {test}: NATTER_TEST_MYSQL_URL is not set");
        return None;
    };
    let db = natter_testkit::my::Database::create(&url, "natter_my_")
        .await
        .unwrap();
    let opts = MyOptions::new(&db.url);
    let mut conn = mysql_async::Conn::new(opts.opts(None).unwrap())
        .await
        .unwrap();
    start_session(&mut conn, opts.statement_timeout)
        .await
        .unwrap();
    schema::migrate(&mut conn).await.unwrap();
    Some((db, conn))
}

fn session(user: u64, device: &str, token: u8, now_ms: i64) -> NewSession {
    NewSession {
        user_id: user,
        device_id: device.into(),
        token_hash: [token; 32],
        now_ms,
        expires_at_ms: now_ms + 1_000_000,
        policy: DevicePolicy::ReplaceOldest,
        max_sessions: 2,
    }
}

const PAGE: Page = Page {
    items: 100,
    bytes: 1 << 20,
};

#[tokio::test]
async fn the_schema_migrates_once_and_a_newer_one_is_refused() {
    let Some((db, mut conn)) = fresh("the_schema_migrates_once_and_a_newer_one_is_refused").await
    else {
        return;
    };
    // Again: nothing to do, nothing broken.
    schema::migrate(&mut conn).await.unwrap();
    let v: Option<i64> = conn
        .query_first("SELECT version FROM natter_schema")
        .await
        .unwrap();
    assert_eq!(v, Some(schema::latest() as i64));
    // Every table is utf8mb4, compared bytewise.
    let odd: Vec<String> = conn
        .exec(
            "SELECT table_name FROM information_schema.tables
             WHERE table_schema = ? AND table_collation != 'utf8mb4_bin'",
            (db.name.as_str(),),
        )
        .await
        .unwrap();
    assert!(odd.is_empty(), "{odd:?}");
    // The server here keeps what it acknowledges; the check says so.
    let (_, not_durable) = prepare(&MyOptions::new(&db.url)).await.unwrap();
    assert_eq!(not_durable, None);
    conn.query_drop("UPDATE natter_schema SET version = version + 1")
        .await
        .unwrap();
    assert!(matches!(
        prepare(&MyOptions::new(&db.url)).await,
        Err(StoreError::NewerSchema { .. })
    ));
}

#[tokio::test]
async fn accounts_and_sessions_run_as_rendered() {
    let Some((_db, mut conn)) = fresh("accounts_and_sessions_run_as_rendered").await else {
        return;
    };
    let db = My::new(&mut conn);
    let ann = accounts::create_user(&db, "ann", "h1", 10).await.unwrap();
    let bob = accounts::create_user(&db, "bob", "h2", 11).await.unwrap();
    assert!(bob > ann);
    assert!(matches!(
        accounts::create_user(&db, "ann", "h", 12).await,
        Err(StoreError::Conflict("username"))
    ));
    let got = accounts::users(&db, &[bob], &["ann".into(), "nobody".into()])
        .await
        .unwrap();
    assert_eq!(got.iter().map(|u| u.id).collect::<Vec<_>>(), vec![ann, bob]);
    assert_eq!(accounts::user_by_name(&db, "a\0b").await.unwrap(), None);
    // Sessions: the same device replaces its old one; past two, the oldest
    // goes; a password change ends all but the one kept.
    let s1 = accounts::create_session(&db, &session(ann, "d1", 1, 100))
        .await
        .unwrap();
    let s2 = accounts::create_session(&db, &session(ann, "d1", 2, 101))
        .await
        .unwrap();
    assert_eq!(s2.revoked, vec![s1.session_id]);
    let s3 = accounts::create_session(&db, &session(ann, "d2", 3, 102))
        .await
        .unwrap();
    let s4 = accounts::create_session(&db, &session(ann, "d3", 4, 103))
        .await
        .unwrap();
    assert_eq!(s4.revoked, vec![s2.session_id]);
    let found = accounts::session_by_token(&db, &[3; 32])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.id, found.user_id), (s3.session_id, ann));
    let ended = accounts::set_password(&db, ann, "h3", Some(s4.session_id))
        .await
        .unwrap();
    assert_eq!(ended, vec![s3.session_id]);
    let ended = admin::end_sessions(&db, ann).await.unwrap();
    assert_eq!(ended, vec![s4.session_id]);
    // Codes: one per purpose and address, counted, then used.
    let code = NewEmailCode {
        purpose: natter_domain::CodePurpose::Register,
        address: "ann@example.com".into(),
        code_hash: [7; 32],
        expires_at_ms: 10_000,
    };
    codes::put_email_code(&db, &code, 100).await.unwrap();
    let wrong = CodeTry {
        purpose: code.purpose,
        address: code.address.clone(),
        code_hash: [8; 32],
        now_ms: 200,
        max_attempts: 5,
    };
    assert!(matches!(
        codes::use_email_code(&db, &wrong).await.unwrap(),
        CodeVerdict::Wrong { .. }
    ));
    let right = CodeTry {
        code_hash: [7; 32],
        ..wrong
    };
    assert_eq!(
        codes::use_email_code(&db, &right).await.unwrap(),
        CodeVerdict::Accepted
    );
}

#[tokio::test]
async fn social_text_round_trips_in_utf8mb4_and_sorts_bytewise() {
    let Some((_db, mut conn)) =
        fresh("social_text_round_trips_in_utf8mb4_and_sorts_bytewise").await
    else {
        return;
    };
    let db = My::new(&mut conn);
    let ann = accounts::create_user(&db, "ann", "h", 1).await.unwrap();
    let bob = accounts::create_user(&db, "bob", "h", 1).await.unwrap();
    let cat = accounts::create_user(&db, "cat", "h", 1).await.unwrap();
    // Four-byte characters (emoji, a musical symbol) and combining marks,
    // in a request, its reply and a remark, come back as they went.
    let hello = "hi 🦀 𝄞 é (e\u{301})";
    let out = friends::send_friend_request(&db, ann, bob, hello, 10)
        .await
        .unwrap();
    let id = out.request.id;
    let page = friends::friend_requests(&db, bob, 0, PAGE).await.unwrap();
    assert_eq!(page.incoming[0].message, hello);
    friends::respond_friend_request(&db, bob, id, true, "ok 👍", 11)
        .await
        .unwrap();
    friends::set_remark(&db, ann, bob, "Bobby 🐝")
        .await
        .unwrap();
    let list = friends::friends(&db, ann, "", PAGE).await.unwrap();
    assert_eq!(list.friends.len(), 1);
    assert_eq!(list.friends[0].remark, "Bobby 🐝");
    // Again: nothing changes (a row already there is no error).
    friends::send_friend_request(&db, ann, cat, "x", 12)
        .await
        .unwrap();
    friends::set_blocked(&db, ann, cat, true, 10).await.unwrap();
    friends::set_blocked(&db, ann, cat, true, 10).await.unwrap();
    assert!(friends::has_blocked(&db, ann, cat).await.unwrap());
    // Prefix search, in name order.
    let found = friends::search_users(&db, "b", 10).await.unwrap();
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), vec![bob]);
    // Administrators: made once, replaced on request; the audit keeps text.
    assert!(
        admin::put_admin(&db, "root", "h", AdminRole::Admin, 1, false)
            .await
            .unwrap()
    );
    assert!(matches!(
        admin::put_admin(&db, "root", "h", AdminRole::Admin, 1, false).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        !admin::put_admin(&db, "root", "h2", AdminRole::Viewer, 1, true)
            .await
            .unwrap()
    );
    assert_eq!(
        admin::admin_by_name(&db, "root")
            .await
            .unwrap()
            .unwrap()
            .role,
        AdminRole::Viewer
    );
    // Accounts found by any-case text; a ban that ended is lifted.
    let found = admin::accounts(&db, "BO", 0, 10).await.unwrap();
    assert_eq!(found.iter().map(|a| a.id).collect::<Vec<_>>(), vec![bob]);
    let bar = Bar {
        disabled: true,
        until_ms: Some(50),
        reason: "a reason with 🦀 and a backslash \\".into(),
    };
    admin::set_bar(&db, cat, &bar).await.unwrap();
    assert_eq!(
        admin::lift_ended_bans(&db, 49).await.unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(admin::lift_ended_bans(&db, 50).await.unwrap(), vec![cat]);
}

#[tokio::test]
async fn group_changes_and_recall_run_as_rendered() {
    use crate::sql::changes::{self, Writes};
    use crate::sql::Db;
    use crate::{
        BodyKind, ConversationKind, GroupAction, GroupLimits, JoinOutcome, JoinPolicy, NewGroup,
        StoredMessage,
    };
    use mysql_async::TxOpts;
    let Some((_db, mut conn)) = fresh("group_changes_and_recall_run_as_rendered").await else {
        return;
    };
    let (ann, bob, cat) = {
        let db = My::new(&mut conn);
        (
            accounts::create_user(&db, "ann", "h", 1).await.unwrap(),
            accounts::create_user(&db, "bob", "h", 1).await.unwrap(),
            accounts::create_user(&db, "cat", "h", 1).await.unwrap(),
        )
    };
    let limits = GroupLimits {
        max_members: 100,
        room_history: 10,
    };
    let mut published = Vec::new();
    // Each change in a transaction of its own, as the writer runs them.
    macro_rules! change {
        (|$db:ident| $body:expr) => {{
            let mut tx = conn.start_transaction(TxOpts::default()).await.unwrap();
            let out = {
                let $db = My::new(&mut tx);
                $body
            };
            tx.commit().await.unwrap();
            out
        }};
    }
    let new = NewGroup {
        creator: ann,
        kind: ConversationKind::Group,
        name: "climbers 🧗".into(),
        notice: String::new(),
        join_policy: JoinPolicy::Open,
        members: vec![bob],
        invite_code: "c0de".into(),
        now_ms: 100,
    };
    let g = change!(
        |db| changes::create_group(&db, &new, limits, &mut published)
            .await
            .unwrap()
    );
    assert_eq!(
        (g.name.as_str(), g.member_count, g.last_seq),
        ("climbers 🧗", 2, 1)
    );
    let joined =
        change!(
            |db| changes::join(&db, cat, g.id, "", "c0de", limits, 200, &mut published)
                .await
                .unwrap()
        );
    assert_eq!(joined, JoinOutcome::Joined);
    change!(|db| changes::act(
        &db,
        ann.into(),
        g.id,
        &GroupAction::Kick(bob),
        limits,
        300,
        &mut published
    )
    .await
    .unwrap());
    let update = GroupAction::Update {
        name: None,
        notice: Some("ropes at ten ✨".into()),
        join_policy: None,
        muted_all: None,
        invite_code: None,
    };
    change!(
        |db| changes::act(&db, ann.into(), g.id, &update, limits, 400, &mut published)
            .await
            .unwrap()
    );
    // cat writes; cat takes it back.
    change!(|db| {
        let last = changes::lock(&db, g.id).await.unwrap().unwrap();
        let m = StoredMessage {
            conversation_id: g.id,
            seq: last + 1,
            msg_id: 0,
            sender_id: cat,
            client_msg_id: "m1".into(),
            server_ts_ms: 500,
            body: crate::Body {
                kind: BodyKind::Text,
                content: "hello @ann 🦀".into(),
            },
            mentions: vec![ann],
            mention_all: false,
        };
        db.insert_messages(&[&m]).await.unwrap();
        db.exec(
            "UPDATE conversations SET last_seq = $2 WHERE id = $1",
            crate::sql::args![g.id, last + 1],
        )
        .await
        .unwrap();
    });
    let page = crate::sql::messages::history(&My::new(&mut conn), ann, g.id, 0, PAGE)
        .await
        .unwrap();
    let sent = page
        .messages
        .iter()
        .find(|m| m.client_msg_id == "m1")
        .unwrap();
    assert_eq!(
        (sent.body.content.as_str(), sent.mentions.clone()),
        ("hello @ann 🦀", vec![ann])
    );
    let seq = sent.seq;
    change!(
        |db| changes::recall(&db, cat, g.id, seq, 60_000, 600, &mut published)
            .await
            .unwrap()
    );
    let page = crate::sql::messages::history(&My::new(&mut conn), ann, g.id, 0, PAGE)
        .await
        .unwrap();
    // Newest first: the recall's event, the tombstone, the changes before.
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=6).rev().collect::<Vec<_>>());
    let tomb = page.messages.iter().find(|m| m.seq == seq).unwrap();
    assert_eq!(
        (tomb.body.kind, tomb.mentions.clone()),
        (BodyKind::Recalled, vec![])
    );
    assert!(page.messages.iter().all(|m| m.msg_id > 0));
    // Five events published, in seq order, for the members of the time.
    let events: Vec<u64> = published.iter().map(|c| c.message.seq).collect();
    assert_eq!(events, vec![1, 2, 3, 4, 6]);
    let now = crate::sql::lists::group(&My::new(&mut conn), g.id, ann)
        .await
        .unwrap();
    assert_eq!(
        (now.member_count, now.notice.as_str(), now.last_seq),
        (2, "ropes at ten ✨", 6)
    );
}

#[tokio::test]
async fn the_append_round_runs_as_rendered() {
    use crate::sql::round::{self, Pairs, Round};
    use crate::sql::Db;
    use crate::{
        Body, BodyKind, ConversationKind, GroupLimits, JoinPolicy, NewGroup, NewMessage, Target,
    };
    use mysql_async::TxOpts;
    let Some((_db, mut conn)) = fresh("the_append_round_runs_as_rendered").await else {
        return;
    };
    let (ann, bob, cat) = {
        let db = My::new(&mut conn);
        (
            accounts::create_user(&db, "ann", "h", 1).await.unwrap(),
            accounts::create_user(&db, "bob", "h", 1).await.unwrap(),
            accounts::create_user(&db, "cat", "h", 1).await.unwrap(),
        )
    };
    let group = {
        let mut tx = conn.start_transaction(TxOpts::default()).await.unwrap();
        let new = NewGroup {
            creator: ann,
            kind: ConversationKind::Group,
            name: "g".into(),
            notice: String::new(),
            join_policy: JoinPolicy::Open,
            members: vec![bob, cat],
            invite_code: "x".into(),
            now_ms: 1,
        };
        let limits = GroupLimits {
            max_members: 10,
            room_history: 0,
        };
        let g = crate::sql::changes::create_group(&My::new(&mut tx), &new, limits, &mut Vec::new())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        g.id
    };
    let send = |from: u64, to: Target, id: &str, text: &str, mentions: Vec<u64>| NewMessage {
        sender_id: from,
        target: to,
        client_msg_id: id.into(),
        body: Body {
            kind: BodyKind::Text,
            content: text.into(),
        },
        mentions,
        mention_all: false,
        friends_only: false,
        now_ms: 1000,
        origin: None,
    };
    let jobs = vec![
        send(ann, Target::Peer(bob), "a1", "hi bob 🦀", vec![]),
        send(bob, Target::Peer(ann), "b1", "hi ann", vec![]),
        send(ann, Target::Peer(bob), "a1", "hi bob 🦀", vec![]),
        send(
            cat,
            Target::Conversation(group),
            "c1",
            "@bob look",
            vec![bob],
        ),
        send(cat, Target::Peer(cat), "c2", "me", vec![]),
    ];
    let mut pairs = Pairs::new();
    let mut tx = conn.start_transaction(TxOpts::default()).await.unwrap();
    let (answers, published) =
        match round::round(&mut My::new(&mut tx), &jobs, &mut pairs, false).await {
            Ok(out) => out,
            Err(Round::Raced) => panic!("raced"),
            Err(Round::Failed(e)) => panic!("{e}"),
        };
    tx.commit().await.unwrap();
    let got: Vec<(u64, bool)> = answers[..4]
        .iter()
        .map(|a| {
            let a = a.as_ref().unwrap();
            (a.message.seq, a.duplicate)
        })
        .collect();
    assert_eq!(got, vec![(1, false), (2, false), (1, true), (2, false)]);
    assert!(answers[4].is_err(), "no conversation with oneself");
    assert_eq!(published.len(), 3);
    let direct = answers[0].as_ref().unwrap().message.conversation_id;
    assert_eq!(pairs.get(&(ann.min(bob), ann.max(bob))), Some(&direct));
    assert!(answers.iter().flatten().all(|a| a.message.msg_id > 0));
    // The mention is flagged; the rows were bumped.
    {
        let db = My::new(&mut conn);
        assert!(db
            .exists(
                "SELECT 1 FROM mentions WHERE user_id = $1 AND conversation_id = $2 AND seq = 2",
                crate::sql::args![bob, group],
            )
            .await
            .unwrap());
        let last: u64 = db
            .one(
                "SELECT last_seq FROM conversations WHERE id = $1",
                crate::sql::args![direct],
            )
            .await
            .unwrap()
            .get(0)
            .unwrap();
        assert_eq!(last, 2);
    }
    // A resend in a round that does not look first races on the key, and
    // looking, finds the original.
    let again = vec![send(ann, Target::Peer(bob), "a1", "hi bob 🦀", vec![])];
    let mut tx = conn.start_transaction(TxOpts::default()).await.unwrap();
    assert!(matches!(
        round::round(&mut My::new(&mut tx), &again, &mut pairs, false).await,
        Err(Round::Raced)
    ));
    tx.rollback().await.unwrap();
    let mut tx = conn.start_transaction(TxOpts::default()).await.unwrap();
    let Ok((answers, published)) =
        round::round(&mut My::new(&mut tx), &again, &mut pairs, true).await
    else {
        panic!("the looking round failed");
    };
    tx.commit().await.unwrap();
    let a = answers[0].as_ref().unwrap();
    assert!(a.duplicate);
    assert_eq!(
        (a.message.seq, a.message.body.content.as_str()),
        (1, "hi bob 🦀")
    );
    assert!(published.is_empty());
}
