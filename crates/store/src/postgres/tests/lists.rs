//! PostgreSQL reads on SQL fixtures: the conversation list.

use super::*;

#[tokio::test]
async fn lists_conversations_newest_first() {
    with_db("lists_conversations_newest_first", |db| async move {
        let c = &*db;
        let me = user(c, "me").await;
        let bob = user(c, "bob").await;
        // d: a 1:1, the most recent.
        let d = direct(c, me, bob, 300).await;
        say(c, d, bob, BodyKind::Text, "hi").await;
        // g: unread counts only others' plain messages; a mention.
        let g = conv(c, ConversationKind::Group, 200).await;
        group_row(c, g, "Team", me, false, false).await;
        member(c, me, g, Role::Owner, (0, 0, 1, 0)).await;
        say_with(c, g, bob, BodyKind::Text, "seen", &[me], false).await;
        say(c, g, bob, BodyKind::Text, "new").await;
        say(c, g, me, BodyKind::Text, "mine").await;
        say(c, g, bob, BodyKind::System, "{}").await;
        say(c, g, bob, BodyKind::Recalled, "").await;
        say_with(c, g, bob, BodyKind::Custom, "{\"a\":1}", &[me], false).await;
        // r: same activity as g, lower id after it; long text preview
        // and a mention of all.
        let r = conv(c, ConversationKind::Room, 200).await;
        group_row(c, r, "Lobby", bob, false, false).await;
        member(c, me, r, Role::Member, (0, 0, 0, 0)).await;
        say_with(c, r, bob, BodyKind::Text, "x", &[], true).await;
        let long = "é".repeat(150);
        say(c, r, bob, BodyKind::Text, &long).await;
        // f: a long custom body, which previews as nothing; the only
        // mention is read already.
        let f = conv(c, ConversationKind::Group, 100).await;
        group_row(c, f, "Files", bob, false, false).await;
        member(c, me, f, Role::Member, (0, 0, 1, 0)).await;
        say_with(c, f, bob, BodyKind::Text, "@me", &[me], false).await;
        say(
            c,
            f,
            bob,
            BodyKind::Custom,
            &format!("{{\"k\":\"{}\"}}", "v".repeat(300)),
        )
        .await;
        // j: joined after its only message; u: past the unread cap.
        let j = conv(c, ConversationKind::Group, 50).await;
        group_row(c, j, "Joined", bob, false, false).await;
        say(c, j, bob, BodyKind::Text, "before me").await;
        member(c, me, j, Role::Member, (1, 0, 0, 0)).await;
        let u = conv(c, ConversationKind::Group, 40).await;
        group_row(c, u, "Busy", bob, false, false).await;
        member(c, me, u, Role::Member, (0, 0, 0, 0)).await;
        c.execute(
            "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id,
                created_at_ms, body_kind, body)
             SELECT $1, s, $2, 'b' || s, 0, 1, 'x' FROM generate_series(1, 10050) s",
            &[&(u as i64), &(bob as i64)],
        )
        .await
        .unwrap();
        c.execute(
            "UPDATE conversations SET last_seq = 10050 WHERE id = $1",
            &[&(u as i64)],
        )
        .await
        .unwrap();
        // Left: not listed.
        let gone = conv(c, ConversationKind::Group, 999).await;
        group_row(c, gone, "Gone", bob, false, false).await;
        member(c, me, gone, Role::Member, (0, 1, 0, 0)).await;
        // Someone else's.
        let other = conv(c, ConversationKind::Group, 998).await;
        group_row(c, other, "Other", bob, false, false).await;
        member(c, bob, other, Role::Member, (0, 0, 0, 0)).await;

        let (all, more) = conversations(&Pg(c), me, None, BIG).await.unwrap();
        assert!(!more);
        let order: Vec<ConversationId> = all.iter().map(|s| s.id).collect();
        assert_eq!(order, vec![d, r, g, f, j, u]);
        let by = |id| all.iter().find(|s| s.id == id).unwrap();

        let ds = by(d);
        assert_eq!((ds.title.as_str(), ds.peer), ("bob", Some(bob)));
        assert_eq!(
            (ds.unread, ds.mentioned, ds.last_activity_ms),
            (1, false, 300)
        );
        assert_eq!(ds.last_message.as_ref().unwrap().body.content, "hi");

        let gs = by(g);
        assert_eq!((gs.title.as_str(), gs.peer), ("Team", None));
        assert_eq!(
            (gs.kind, gs.last_seq, gs.read_seq),
            (ConversationKind::Group, 6, 1)
        );
        // "new" and the custom one; not mine, the event or the tombstone.
        assert_eq!(gs.unread, 2);
        assert!(gs.mentioned);
        let last = gs.last_message.as_ref().unwrap();
        assert_eq!((last.seq, last.body.kind), (6, BodyKind::Custom));
        assert_eq!(last.mentions, vec![me]);
        assert!(!gs.preview_truncated);

        let rs = by(r);
        assert_eq!((rs.unread, rs.mentioned), (2, true));
        let preview = &rs.last_message.as_ref().unwrap().body.content;
        assert_eq!(preview.len(), 200);
        assert_eq!(*preview, "é".repeat(100));
        assert!(rs.preview_truncated);

        let fs = by(f);
        assert_eq!((fs.unread, fs.mentioned), (1, false));
        assert_eq!(fs.last_message.as_ref().unwrap().body.content, "");
        assert!(fs.preview_truncated);

        let js = by(j);
        assert_eq!(
            (js.unread, js.read_seq, js.last_message.clone()),
            (0, 1, None)
        );

        assert_eq!(by(u).unread, 9999);

        // Pages: by (activity, id) descending, ties by id.
        let (p1, more) = conversations(&Pg(c), me, None, items(2)).await.unwrap();
        assert_eq!(p1.iter().map(|s| s.id).collect::<Vec<_>>(), vec![d, r]);
        assert!(more);
        let before = Before {
            activity_ms: 200,
            id: r,
        };
        let (p2, more) = conversations(&Pg(c), me, Some(before), items(2))
            .await
            .unwrap();
        assert_eq!(p2.iter().map(|s| s.id).collect::<Vec<_>>(), vec![g, f]);
        assert!(more);
        let before = Before {
            activity_ms: 40,
            id: u,
        };
        let (p3, more) = conversations(&Pg(c), me, Some(before), items(2))
            .await
            .unwrap();
        assert!(p3.is_empty() && !more);
        // Cut by bytes: one at least.
        let (p, more) = conversations(
            &Pg(c),
            me,
            None,
            Page {
                items: 10,
                bytes: 1,
            },
        )
        .await
        .unwrap();
        assert_eq!((p.len(), more), (1, true));
        // A cursor past every id: everything at that time and before.
        let before = Before {
            activity_ms: 200,
            id: u64::MAX,
        };
        let (p, _) = conversations(&Pg(c), me, Some(before), BIG).await.unwrap();
        assert_eq!(
            p.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![r, g, f, j, u]
        );
        let (p, more) = conversations(&Pg(c), u64::MAX, None, BIG).await.unwrap();
        assert!(p.is_empty() && !more);
    })
    .await;
}
