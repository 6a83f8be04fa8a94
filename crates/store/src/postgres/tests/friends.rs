//! PostgreSQL reads on SQL fixtures: friends, blocks and friend requests.

use super::*;

#[tokio::test]
async fn pages_friends_and_requests() {
    with_db("pages_friends_and_requests", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        let bob = user(c, "bob").await;
        let carol = user(c, "carol").await;
        let dave = user(c, "dave").await;
        let eve = user(c, "eve").await;
        let zed = user(c, "Zed").await;
        for f in [dave, bob, carol, zed] {
            befriend(c, me, f).await;
        }
        block(c, me, eve).await;
        block(c, me, dave).await;

        let names = |l: &FriendList| {
            l.friends
                .iter()
                .map(|f| f.username.clone())
                .collect::<Vec<_>>()
        };
        // Bytewise order: "Zed" sorts first.
        let p = friends(&Pg(c), me, "", items(2)).await.unwrap();
        assert_eq!(names(&p), vec!["Zed", "bob"]);
        assert!(p.has_more);
        assert_eq!(
            p.blocked,
            vec![(dave, "dave".to_string()), (eve, "eve".to_string())]
        );
        assert_eq!(
            p.friends[1],
            FriendRecord {
                user_id: bob,
                username: "bob".into(),
                remark: "r".into(),
                since_ms: 3,
                blocked: false,
            }
        );
        let p = friends(&Pg(c), me, "bob", items(2)).await.unwrap();
        assert_eq!(names(&p), vec!["carol", "dave"]);
        assert!(p.blocked.is_empty());
        assert!(!p.has_more);
        assert!(p.friends[1].blocked);
        let p = friends(&Pg(c), me, "bob\0zz", items(5)).await.unwrap();
        assert_eq!(names(&p), vec!["carol", "dave"]);
        let p = friends(&Pg(c), me, "dave", items(2)).await.unwrap();
        assert!(p.friends.is_empty() && !p.has_more);
        // The blocked list counts against the first page's bytes.
        let p = friends(
            &Pg(c),
            me,
            "",
            Page {
                items: 10,
                bytes: 1,
            },
        )
        .await
        .unwrap();
        assert_eq!((p.friends.len(), p.blocked.len(), p.has_more), (1, 2, true));
        assert!(friends(&Pg(c), u64::MAX, "", BIG)
            .await
            .unwrap()
            .friends
            .is_empty());

        let mut all = vec![bob, carol, dave, zed];
        all.sort_unstable();
        assert_eq!(friend_ids(&Pg(c), me).await.unwrap(), all);
        assert!(friend_ids(&Pg(c), u64::MAX).await.unwrap().is_empty());

        // Requests, oldest first: in, out, from a blocked user, in.
        let r1 = friend_request(c, bob, me, RequestStatus::Pending).await;
        let r2 = friend_request(c, me, carol, RequestStatus::Pending).await;
        friend_request(c, eve, me, RequestStatus::Pending).await;
        let r4 = friend_request(c, carol, me, RequestStatus::Accepted).await;
        friend_request(c, bob, carol, RequestStatus::Pending).await;
        let split = |p: &FriendRequestPage| {
            (
                p.incoming.iter().map(|r| r.id).collect::<Vec<_>>(),
                p.outgoing.iter().map(|r| r.id).collect::<Vec<_>>(),
                p.has_more,
            )
        };
        let p = friend_requests(&Pg(c), me, 0, items(2)).await.unwrap();
        assert_eq!(split(&p), (vec![r4], vec![r2], true));
        let p = friend_requests(&Pg(c), me, r2, items(2)).await.unwrap();
        assert_eq!(split(&p), (vec![r1], vec![], false));
        let p = friend_requests(&Pg(c), me, u64::MAX, BIG).await.unwrap();
        assert_eq!(split(&p), (vec![r4, r1], vec![r2], false));
        let p = friend_requests(
            &Pg(c),
            me,
            0,
            Page {
                items: 10,
                bytes: 1,
            },
        )
        .await
        .unwrap();
        assert_eq!(split(&p), (vec![r4], vec![], true));
        let got = &friend_requests(&Pg(c), me, 0, BIG).await.unwrap().outgoing[0];
        assert_eq!(
            (got.from_name.as_str(), got.to_name.as_str(), got.status),
            ("me", "carol", RequestStatus::Pending)
        );
        let p = friend_requests(&Pg(c), u64::MAX, 0, BIG).await.unwrap();
        assert_eq!(split(&p), (vec![], vec![], false));

        let waiting: Vec<u64> = pending_incoming(&Pg(c), me, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(waiting, vec![r1]);
        assert!(pending_incoming(&Pg(c), me, 0).await.unwrap().is_empty());
    })
    .await;
}
