//! PostgreSQL reads on SQL fixtures: the lookups of users, sessions and names, and reads inside a caller's transaction.

use super::*;

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

        assert_eq!(user_by_name(&Pg(c), "ann").await.unwrap().unwrap().id, ann);
        assert_eq!(user_by_name(&Pg(c), "nobody").await.unwrap(), None);
        assert_eq!(user_by_name(&Pg(c), "a\0b").await.unwrap(), None);
        let got = user_by_id(&Pg(c), bob).await.unwrap().unwrap();
        assert_eq!(
            got,
            UserRecord {
                id: bob,
                username: "bob".into(),
                password_hash: "h".into(),
                disabled: false,
                banned_until_ms: None,
            }
        );
        assert!(user_by_id(&Pg(c), off).await.unwrap().unwrap().disabled);
        assert_eq!(user_by_id(&Pg(c), 999).await.unwrap(), None);
        assert_eq!(user_by_id(&Pg(c), u64::MAX).await.unwrap(), None);

        // By id and by name, each once, by id; unknown ones left out.
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got: Vec<UserId> = users(
            &Pg(c),
            &[bob, ann, 999, u64::MAX],
            &names(&["ann", "anna", "zed", "x\0"]),
        )
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
        assert_eq!(got, vec![ann, anna, bob]);
        assert!(users(&Pg(c), &[], &[]).await.unwrap().is_empty());
        assert_eq!(
            users(&Pg(c), &[], &names(&["bob"])).await.unwrap()[0].id,
            bob
        );

        // Sessions.
        let token = [7u8; 32];
        c.execute(
            "INSERT INTO sessions (user_id, device_id, token_hash, created_at_ms,
                expires_at_ms, revoked) VALUES ($1, 'phone', $2, 1, 99, true)",
            &[&(off as i64), &&token[..]],
        )
        .await
        .unwrap();
        let s = session_by_token(&Pg(c), &token).await.unwrap().unwrap();
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
                user_banned_until_ms: None,
            }
        );
        assert_eq!(session_by_token(&Pg(c), &[8u8; 32]).await.unwrap(), None);

        // Prefix search: by name, active users only, `_` literal.
        let search = |p: &'static str, n| async move {
            search_users(&Pg(c), p, n)
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
        assert_eq!(search_users(&Pg(c), "an_", 1).await.unwrap()[0].id, an_x);
        assert_eq!(search("a%", 10).await, Vec::<String>::new());
        assert_eq!(search("", 10).await.len(), 4);
        assert_eq!(search("zz", 10).await, Vec::<String>::new());
        assert_eq!(search("a\0", 10).await, Vec::<String>::new());
    })
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
        let f = friends(&Pg(&tx), me, "", BIG).await.unwrap();
        assert!(f.friends.is_empty() && f.blocked.is_empty());
        tx.commit().await.unwrap();
    })
    .await;
}
