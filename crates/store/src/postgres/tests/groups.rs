//! PostgreSQL reads on SQL fixtures: groups, rooms, members and join requests, and corrupt enum columns.

use super::*;

#[tokio::test]
async fn reads_groups_rooms_members_and_join_requests() {
    with_db(
        "reads_groups_rooms_members_and_join_requests",
        |db| async move {
            let c = &*db;
            let owner = user(c, "owner").await;
            let admin = user(c, "admin").await;
            let plain = user(c, "plain").await;
            let out = user(c, "out").await;
            let left = user(c, "left").await;
            let g = conv(c, ConversationKind::Group, 1).await;
            group_row(c, g, "Secret", owner, true, false).await;
            member(c, owner, g, Role::Owner, (0, 0, 0, 0)).await;
            member(c, admin, g, Role::Admin, (0, 0, 0, 0)).await;
            member(c, plain, g, Role::Member, (0, 0, 0, 0)).await;
            member(c, left, g, Role::Member, (0, 2, 0, 0)).await;
            let mut rooms_made = Vec::new();
            for name in [
                "Chat Room",
                "chat_fans",
                "CHATTY",
                "ärger",
                "Ärger",
                "50% off",
            ] {
                let r = conv(c, ConversationKind::Room, 1).await;
                group_row(c, r, name, owner, false, false).await;
                member(c, owner, r, Role::Owner, (0, 0, 0, 0)).await;
                rooms_made.push(r);
            }
            let [chat, fans, chatty, lower_a, upper_a, sale]: [ConversationId; 6] =
                rooms_made.try_into().unwrap();
            let old = conv(c, ConversationKind::Room, 1).await;
            group_row(c, old, "chat old", owner, false, true).await;
            member(c, owner, old, Role::Owner, (0, 0, 0, 0)).await;
            let applicants = vec![user(c, "ap1").await, user(c, "ap2").await, out];
            for (i, u) in applicants.iter().enumerate() {
                c.execute(
                    "INSERT INTO join_requests (conversation_id, user_id, message, created_at_ms)
                 VALUES ($1, $2, 'let me in', $3)",
                    &[&(g as i64), &(*u as i64), &(i as i64)],
                )
                .await
                .unwrap();
            }

            // One group, as each may see it.
            let seen = group(&Pg(c), g, plain).await.unwrap();
            assert_eq!(
                (seen.name.as_str(), seen.kind, seen.my_role, seen.owner_id),
                ("Secret", ConversationKind::Group, Some(Role::Member), owner)
            );
            assert_eq!(
                group(&Pg(c), g, owner).await.unwrap().my_role,
                Some(Role::Owner)
            );
            for viewer in [out, left, u64::MAX] {
                assert!(matches!(
                    group(&Pg(c), g, viewer).await,
                    Err(StoreError::NotFound("group"))
                ));
            }
            assert_eq!(group(&Pg(c), chat, out).await.unwrap().my_role, None);
            for id in [999, u64::MAX] {
                assert!(matches!(
                    group(&Pg(c), id, owner).await,
                    Err(StoreError::NotFound("group"))
                ));
            }

            // The owner's groups and rooms by id; dismissed ones left out.
            let gids = |v: &[GroupRecord]| v.iter().map(|g| g.id).collect::<Vec<_>>();
            let (p, more) = groups_of(&Pg(c), owner, 0, items(2)).await.unwrap();
            assert_eq!((gids(&p), more), (vec![g, chat], true));
            let (p, more) = groups_of(&Pg(c), owner, chat, BIG).await.unwrap();
            assert_eq!(
                (gids(&p), more),
                (vec![fans, chatty, lower_a, upper_a, sale], false)
            );
            let (p, _) = groups_of(&Pg(c), plain, 0, BIG).await.unwrap();
            assert_eq!(gids(&p), vec![g]);
            assert!(groups_of(&Pg(c), left, 0, BIG).await.unwrap().0.is_empty());
            assert!(groups_of(&Pg(c), owner, u64::MAX, BIG)
                .await
                .unwrap()
                .0
                .is_empty());

            // Rooms by prefix: ASCII case folded, `_` and `%` literal.
            let find = |prefix: &'static str, after, p| async move {
                let (found, more) = rooms(&Pg(c), out, prefix, after, p).await.unwrap();
                (gids(&found), more)
            };
            assert_eq!(
                find("chat", 0, BIG).await,
                (vec![chat, fans, chatty], false)
            );
            assert_eq!(find("CHAT", 0, items(1)).await, (vec![chat], true));
            assert_eq!(find("chat", chat, items(1)).await, (vec![fans], true));
            assert_eq!(find("chat_", 0, BIG).await, (vec![fans], false));
            assert_eq!(find("chat ", 0, BIG).await, (vec![chat], false));
            assert_eq!(find("50%", 0, BIG).await, (vec![sale], false));
            assert_eq!(find("%", 0, BIG).await, (vec![], false));
            assert_eq!(find("ä", 0, BIG).await, (vec![lower_a], false));
            assert_eq!(find("Ä", 0, BIG).await, (vec![upper_a], false));
            assert_eq!(find("secret", 0, BIG).await, (vec![], false));
            assert_eq!(find("", 0, BIG).await.0.len(), 6);
            assert_eq!(find("chat", u64::MAX, BIG).await, (vec![], false));
            assert_eq!(find("c\0", 0, BIG).await, (vec![], false));

            // Members by id, current ones only.
            let uids = |v: &[MemberRecord]| v.iter().map(|m| m.user_id).collect::<Vec<_>>();
            let (p, more) = members(&Pg(c), g, plain, 0, items(2)).await.unwrap();
            assert_eq!((uids(&p), more), (vec![owner, admin], true));
            assert_eq!(
                p[1],
                MemberRecord {
                    user_id: admin,
                    username: "admin".into(),
                    role: Role::Admin,
                    muted_until_ms: 0,
                    joined_at_ms: 5,
                }
            );
            let (p, more) = members(&Pg(c), g, plain, admin, items(2)).await.unwrap();
            assert_eq!((uids(&p), more), (vec![plain], false));
            assert!(members(&Pg(c), g, plain, u64::MAX, BIG)
                .await
                .unwrap()
                .0
                .is_empty());
            assert!(matches!(
                members(&Pg(c), g, out, 0, BIG).await,
                Err(StoreError::NotFound("group"))
            ));
            assert_eq!(members(&Pg(c), chat, out, 0, BIG).await.unwrap().0.len(), 1);

            // Join requests: for the owner and admins only.
            let jids = |v: &[JoinRequestRecord]| v.iter().map(|j| j.user_id).collect::<Vec<_>>();
            let mut want = applicants.clone();
            want.sort_unstable();
            let (p, more) = join_requests_for(&Pg(c), admin, g, 0, items(2))
                .await
                .unwrap();
            assert_eq!((jids(&p), more), (want[..2].to_vec(), true));
            assert_eq!(
                (p[0].conversation_id, p[0].message.as_str()),
                (g, "let me in")
            );
            let (p, more) = join_requests_for(&Pg(c), owner, g, want[1], BIG)
                .await
                .unwrap();
            assert_eq!((jids(&p), more), (want[2..].to_vec(), false));
            assert!(join_requests_for(&Pg(c), owner, g, u64::MAX, BIG)
                .await
                .unwrap()
                .0
                .is_empty());
            assert!(matches!(
                join_requests_for(&Pg(c), plain, g, 0, BIG).await,
                Err(StoreError::Refused(Refusal::JoinRequestsAdminsOnly))
            ));
            for actor in [out, left] {
                assert!(matches!(
                    join_requests_for(&Pg(c), actor, g, 0, BIG).await,
                    Err(StoreError::NotMember(id)) if id == g
                ));
            }
            assert!(matches!(
                join_requests_for(&Pg(c), owner, u64::MAX, 0, BIG).await,
                Err(StoreError::NotMember(u64::MAX))
            ));

            assert_eq!(role_of(&Pg(c), g, admin).await.unwrap(), Some(Role::Admin));
            assert_eq!(role_of(&Pg(c), g, left).await.unwrap(), None);
            assert_eq!(role_of(&Pg(c), g, u64::MAX).await.unwrap(), None);
            assert_eq!(role_of(&Pg(c), u64::MAX, owner).await.unwrap(), None);
        },
    )
    .await;
}

/// A stored enum no variant has is a corrupt row: reading it fails, it is
/// never read as another kind, policy or role.
#[tokio::test]
async fn a_corrupt_enum_column_is_an_error_not_another_variant() {
    with_db(
        "a_corrupt_enum_column_is_an_error_not_another_variant",
        |db| async move {
            let c = &*db;
            let ann = user(c, "ann").await;
            let id = conv(c, ConversationKind::Group, 1).await;
            group_row(c, id, "g", ann, false, false).await;
            member(c, ann, id, Role::Owner, (0, 0, 0, 0)).await;
            assert_eq!(
                group(&Pg(c), id, ann).await.unwrap().join_policy,
                crate::JoinPolicy::Open
            );
            for (sql, what) in [
                (
                    "UPDATE groups SET join_policy = 7",
                    "corrupt join policy in the database: 7",
                ),
                ("UPDATE groups SET join_policy = 1", ""),
                (
                    "UPDATE members SET role = 9",
                    "corrupt role in the database: 9",
                ),
                ("UPDATE members SET role = 3", ""),
                (
                    "UPDATE conversations SET kind = 0",
                    "corrupt conversation kind in the database: 0",
                ),
            ] {
                c.execute(sql, &[]).await.unwrap();
                let got = group(&Pg(c), id, ann).await;
                if what.is_empty() {
                    assert!(got.is_ok(), "{sql}: {got:?}");
                } else {
                    let e = got.unwrap_err();
                    assert!(matches!(e, StoreError::Backend { .. }), "{sql}: {e:?}");
                    assert!(e.to_string().contains(what), "{sql}: {e}");
                }
            }
        },
    )
    .await;
}
