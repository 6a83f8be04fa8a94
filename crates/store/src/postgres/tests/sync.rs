//! PostgreSQL reads on SQL fixtures: sync and history paging.

use super::*;

#[tokio::test]
async fn syncs_pages_by_items_bytes_and_cursors() {
    with_db("syncs_pages_by_items_bytes_and_cursors", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        let bob = user(c, "bob").await;
        let eve = user(c, "eve").await;
        // d: a 1:1 with three messages, both cursors set.
        let d = direct(c, me, bob, 1).await;
        text(c, d, bob, 3).await;
        c.execute(
            "UPDATE members SET delivered_seq = 2 WHERE conversation_id = $1 AND user_id = $2",
            &[&(d as i64), &(bob as i64)],
        )
        .await
        .unwrap();
        // g: joined after seq 2 of 5.
        let g = conv(c, ConversationKind::Group, 1).await;
        text(c, g, bob, 5).await;
        member(c, me, g, Role::Member, (2, 0, 0, 0)).await;
        // l: left at seq 3 of 6.
        let l = conv(c, ConversationKind::Group, 1).await;
        text(c, l, bob, 6).await;
        member(c, me, l, Role::Member, (0, 3, 0, 0)).await;
        // q: nothing at all; o: someone else's.
        let q = conv(c, ConversationKind::Room, 1).await;
        member(c, me, q, Role::Member, (0, 0, 0, 0)).await;
        let o = conv(c, ConversationKind::Group, 1).await;
        text(c, o, bob, 2).await;
        member(c, bob, o, Role::Member, (0, 0, 0, 0)).await;
        // Requests: one waiting, one from a blocked user, one answered.
        let waiting = friend_request(c, bob, me, RequestStatus::Pending).await;
        friend_request(c, eve, me, RequestStatus::Pending).await;
        friend_request(c, bob, me, RequestStatus::Rejected).await;
        block(c, me, eve).await;
        let none = HashMap::new();

        // Everything fits.
        let all = sync(c, me, &none, 0, BIG).await.unwrap();
        assert_eq!(ids(&all), vec![d, g, l, q]);
        assert_eq!(
            seqs(&all),
            vec![
                (d, 1),
                (d, 2),
                (d, 3),
                (g, 3),
                (g, 4),
                (g, 5),
                (l, 1),
                (l, 2),
                (l, 3)
            ]
        );
        assert!(!all.has_more);
        assert_eq!(all.next_after, q);
        let ds = &all.conversations[0];
        assert_eq!(ds.kind, ConversationKind::Direct);
        assert_eq!(ds.last_seq, 3);
        assert_eq!(
            ds.members,
            vec![
                MemberState {
                    user_id: me,
                    delivered_seq: 0
                },
                MemberState {
                    user_id: bob,
                    delivered_seq: 2
                },
            ]
        );
        let gs = &all.conversations[1];
        assert!(gs.members.is_empty());
        assert_eq!((gs.joined_seq, gs.left_seq, gs.last_seq), (2, 0, 5));
        let ls = &all.conversations[2];
        assert_eq!((ls.joined_seq, ls.left_seq, ls.last_seq), (0, 3, 6));
        let pending: Vec<u64> = all.pending_friend_requests.iter().map(|r| r.id).collect();
        assert_eq!(pending, vec![waiting]);
        let m = &all.messages[0];
        assert_eq!(
            (
                m.sender_id,
                m.body.kind,
                m.body.content.as_str(),
                m.server_ts_ms
            ),
            (bob, BodyKind::Text, "m0", 7)
        );

        // Cut by items inside g: d is done, g is not.
        let p = sync(c, me, &none, 0, items(4)).await.unwrap();
        assert_eq!(ids(&p), vec![d, g]);
        assert_eq!(seqs(&p), vec![(d, 1), (d, 2), (d, 3), (g, 3)]);
        assert!(p.has_more);
        assert_eq!(p.next_after, d);
        assert!(p.pending_friend_requests.is_empty());
        // Cut exactly at the end of d.
        let p = sync(c, me, &none, 0, items(3)).await.unwrap();
        assert_eq!(ids(&p), vec![d]);
        assert!(p.has_more);
        assert_eq!(p.next_after, d);
        // The next page starts after d, with g's cursor moved.
        let moved = HashMap::from([(g, 3)]);
        let p = sync(c, me, &moved, d, items(3)).await.unwrap();
        assert_eq!(ids(&p), vec![g, l]);
        assert_eq!(seqs(&p), vec![(g, 4), (g, 5), (l, 1)]);
        assert_eq!(p.next_after, g);

        // Cut by bytes: d and g's first message fit, no more.
        let used: usize = all.conversations[..2]
            .iter()
            .map(|s| s.size_hint())
            .sum::<usize>()
            + all.messages[..4]
                .iter()
                .map(|m| m.size_hint())
                .sum::<usize>();
        let p = sync(
            c,
            me,
            &none,
            0,
            Page {
                items: 100,
                bytes: used + 1,
            },
        )
        .await
        .unwrap();
        assert_eq!(ids(&p), vec![d, g]);
        assert_eq!(seqs(&p), vec![(d, 1), (d, 2), (d, 3), (g, 3)]);
        assert!(p.has_more);
        assert_eq!(p.next_after, d);
        // A message over the budget gets a page of its own.
        let p = sync(
            c,
            me,
            &none,
            0,
            Page {
                items: 100,
                bytes: 1,
            },
        )
        .await
        .unwrap();
        assert_eq!(seqs(&p), vec![(d, 1)]);
        assert!(p.has_more);

        // Cursors: seen messages are not sent again; joined_seq wins
        // over a lower cursor; nothing after left_seq.
        let seen = HashMap::from([(d, 2), (g, 1), (l, 2)]);
        let p = sync(c, me, &seen, 0, BIG).await.unwrap();
        assert_eq!(seqs(&p), vec![(d, 3), (g, 3), (g, 4), (g, 5), (l, 3)]);
        let done = HashMap::from([(d, 3), (g, 5), (l, 3)]);
        let p = sync(c, me, &done, 0, BIG).await.unwrap();
        assert!(p.messages.is_empty());
        assert_eq!(ids(&p), vec![d, g, l, q]);

        // Cursors past everything: an empty, final page.
        let p = sync(c, me, &none, u64::MAX, BIG).await.unwrap();
        assert!(p.conversations.is_empty() && p.messages.is_empty() && !p.has_more);
        let far = HashMap::from([(d, u64::MAX)]);
        let p = sync(c, me, &far, 0, BIG).await.unwrap();
        assert!(!seqs(&p).iter().any(|&(id, _)| id == d));
        let p = sync(c, u64::MAX, &none, 0, BIG).await.unwrap();
        assert!(p.conversations.is_empty() && !p.has_more);
    })
    .await;
}

#[tokio::test]
async fn sync_caps_memberships_per_page() {
    with_db("sync_caps_memberships_per_page", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        c.batch_execute(&format!(
            "INSERT INTO conversations (kind, created_at_ms, last_activity_ms)
                SELECT 2, 0, 0 FROM generate_series(1, {n});
             INSERT INTO members (user_id, conversation_id)
                SELECT {me}, id FROM conversations;",
            n = SYNC_CONVERSATIONS + 2
        ))
        .await
        .unwrap();
        let first = sync(c, me, &HashMap::new(), 0, BIG).await.unwrap();
        assert_eq!(first.conversations.len(), SYNC_CONVERSATIONS);
        assert!(first.has_more);
        assert!(first.pending_friend_requests.is_empty());
        let next = sync(c, me, &HashMap::new(), first.next_after, BIG)
            .await
            .unwrap();
        assert_eq!(next.conversations.len(), 2);
        assert!(!next.has_more);
    })
    .await;
}

#[tokio::test]
async fn history_pages_newest_first_within_view() {
    with_db("history_pages_newest_first_within_view", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        let bob = user(c, "bob").await;
        let g = conv(c, ConversationKind::Group, 1).await;
        text(c, g, bob, 10).await;
        // Sees seqs 3..=8.
        member(c, me, g, Role::Member, (2, 8, 0, 0)).await;
        member(c, bob, g, Role::Member, (0, 0, 0, 0)).await;
        let page = |before, p| async move {
            let h = history(&Pg(c), me, g, before, p).await.unwrap();
            let s: Vec<u64> = h.messages.iter().map(|m| m.seq).collect();
            (s, h.has_more)
        };
        assert_eq!(page(0, items(3)).await, (vec![8, 7, 6], true));
        assert_eq!(page(6, items(3)).await, (vec![5, 4, 3], false));
        assert_eq!(page(4, items(3)).await, (vec![3], false));
        assert_eq!(page(3, items(3)).await, (vec![], false));
        assert_eq!(page(u64::MAX, items(2)).await, (vec![8, 7], true));
        assert_eq!(page(0, BIG).await.0, vec![8, 7, 6, 5, 4, 3]);
        let one = Page {
            items: 10,
            bytes: 1,
        };
        assert_eq!(page(0, one).await, (vec![8], true));
        // A current member sees the newest.
        let h = history(&Pg(c), bob, g, 0, items(1)).await.unwrap();
        assert_eq!(h.messages[0].seq, 10);

        let outsider = user(c, "out").await;
        for (u, conv) in [(outsider, g), (me, 999), (me, u64::MAX), (u64::MAX, g)] {
            assert!(matches!(
                history(&Pg(c), u, conv, 0, BIG).await,
                Err(StoreError::NotMember(id)) if id == conv
            ));
        }

        assert_eq!(visible_range(&Pg(c), me, g).await.unwrap(), Some((2, 8)));
        assert_eq!(visible_range(&Pg(c), bob, g).await.unwrap(), Some((0, 10)));
        assert_eq!(visible_range(&Pg(c), outsider, g).await.unwrap(), None);
        assert_eq!(visible_range(&Pg(c), me, u64::MAX).await.unwrap(), None);
        // Who left is no longer in the audience.
        assert_eq!(members_of(&Pg(c), g).await.unwrap(), vec![bob]);
        assert!(members_of(&Pg(c), u64::MAX).await.unwrap().is_empty());
        assert_eq!(audience(&Pg(c), bob, g).await.unwrap(), vec![bob]);
        assert!(matches!(
            audience(&Pg(c), me, g).await,
            Err(StoreError::NotMember(id)) if id == g
        ));
    })
    .await;
}
