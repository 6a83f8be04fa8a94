//! Friends, blocks, groups, rooms and join requests.

use super::*;

pub async fn friends_requests_and_blocks(env: Env) {
    let s = env.store();
    let [a, b, c, d] = users(s, &["a", "b", "c", "d"]).await[..] else {
        unreachable!()
    };
    let r = s.send_friend_request(a, b, "hi", 1).await.unwrap();
    assert!(r.notify);
    assert_eq!(r.request.status, RequestStatus::Pending);
    // Asking again renews; asking back accepts.
    let again = s.send_friend_request(a, b, "hello", 2).await.unwrap();
    assert_eq!(
        (again.request.id, again.request.message.as_str()),
        (r.request.id, "hello")
    );
    let back = s.send_friend_request(b, a, "yes", 3).await.unwrap();
    assert_eq!(back.request.status, RequestStatus::Accepted);
    assert_eq!(s.friend_ids(a).await.unwrap(), vec![b]);
    refused(
        s.send_friend_request(a, b, "", 4).await,
        Refusal::AlreadyFriends,
    );
    refused(
        s.send_friend_request(a, a, "", 4).await,
        Refusal::SelfFriend,
    );
    // A request from a blocked user waits unseen.
    s.set_blocked(c, d, true, 10).await.unwrap();
    let hidden = s.send_friend_request(d, c, "?", 5).await.unwrap();
    assert!(!hidden.notify);
    let page_c = s.friend_requests(c, 0, page(10)).await.unwrap();
    assert!(page_c.incoming.is_empty());
    let p = s.sync(c, &HashMap::new(), 0, page(10)).await.unwrap();
    assert!(p.pending_friend_requests.is_empty());
    s.set_blocked(c, d, false, 10).await.unwrap();
    let p = s.sync(c, &HashMap::new(), 0, page(10)).await.unwrap();
    assert_eq!(p.pending_friend_requests.len(), 1);
    let rejected = s
        .respond_friend_request(c, hidden.request.id, false, "no", 6)
        .await
        .unwrap();
    assert_eq!(
        (rejected.status, rejected.reply.as_str()),
        (RequestStatus::Rejected, "no")
    );
    assert!(matches!(
        s.respond_friend_request(c, hidden.request.id, true, "", 7)
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Paging requests newest first, split by direction.
    s.send_friend_request(a, c, "1", 8).await.unwrap();
    s.send_friend_request(d, a, "2", 9).await.unwrap();
    let p1 = s.friend_requests(a, 0, page(2)).await.unwrap();
    assert!(p1.has_more);
    assert_eq!((p1.incoming.len(), p1.outgoing.len()), (1, 1));
    let oldest = p1
        .incoming
        .iter()
        .chain(&p1.outgoing)
        .map(|r| r.id)
        .min()
        .unwrap();
    let p2 = s.friend_requests(a, oldest, page(2)).await.unwrap();
    assert!(!p2.has_more);
    assert_eq!(p2.outgoing.len() + p2.incoming.len(), 1);
    // Friends, remarks, blocks on the first page, removal.
    let req = s.send_friend_request(c, a, "", 10).await.unwrap();
    assert_eq!(req.request.status, RequestStatus::Accepted, "a had asked c");
    s.set_remark(a, c, "cee").await.unwrap();
    assert!(matches!(
        s.set_remark(a, d, "x").await,
        Err(StoreError::NotFound(_))
    ));
    s.set_blocked(a, d, true, 10).await.unwrap();
    refused(
        s.set_blocked(a, b, true, 1).await,
        Refusal::TooManyBlocked { max: 1 },
    );
    refused(s.set_blocked(a, a, true, 10).await, Refusal::SelfBlock);
    let f = s.friends(a, "", page(1)).await.unwrap();
    assert_eq!(
        f.friends
            .iter()
            .map(|f| f.username.as_str())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
    assert!(f.has_more);
    assert_eq!(f.blocked, vec![(d, "d".to_owned())]);
    let f = s.friends(a, "b", page(5)).await.unwrap();
    assert_eq!(
        (f.friends[0].username.as_str(), f.friends[0].remark.as_str()),
        ("c", "cee")
    );
    assert!(f.blocked.is_empty() && !f.has_more);
    s.remove_friend(b, a).await.unwrap();
    assert_eq!(s.friend_ids(a).await.unwrap(), vec![c]);
    assert!(matches!(
        s.remove_friend(b, a).await,
        Err(StoreError::NotFound(_))
    ));
    env.close().await;
}

pub async fn groups_rooms_and_join_requests(env: Env) {
    let s = env.store();
    let [o, m, x, y] = users(s, &["o", "m", "x", "y"]).await[..] else {
        unreachable!()
    };
    let g = group(s, o, vec![m, m, o], ConversationKind::Group).await;
    let info = s.group(g, m).await.unwrap();
    assert_eq!(
        (info.member_count, info.my_role, info.owner_id),
        (2, Some(Role::Member), o)
    );
    assert!(
        matches!(s.group(g, x).await, Err(StoreError::NotFound(_))),
        "hidden from outsiders"
    );
    // Joining a group needs its code; an approval group makes a request.
    assert!(matches!(
        s.join_group(x, g, "", "wrong", LIMITS, 1).await,
        Err(StoreError::NotFound(_))
    ));
    let approval = GroupAction::Update {
        name: None,
        notice: Some("rules".into()),
        join_policy: Some(JoinPolicy::Approval),
        muted_all: None,
        invite_code: None,
    };
    s.group_action(o, g, approval, LIMITS, 2).await.unwrap();
    match s
        .join_group(x, g, "let me in", "code", LIMITS, 3)
        .await
        .unwrap()
    {
        JoinOutcome::Pending { request, approvers } => {
            assert_eq!(
                (request.user_id, request.message.as_str()),
                (x, "let me in")
            );
            assert_eq!(approvers, vec![o]);
        }
        other => panic!("{other:?}"),
    }
    s.join_group(y, g, "me too", "code", LIMITS, 4)
        .await
        .unwrap();
    refused(
        s.join_requests(m, g, 0, page(10)).await,
        Refusal::JoinRequestsAdminsOnly,
    );
    let (reqs, more) = s.join_requests(o, g, 0, page(1)).await.unwrap();
    assert!(more);
    let (rest, _) = s
        .join_requests(o, g, reqs[0].user_id, page(5))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    s.group_action(o, g, GroupAction::RespondJoin(x, true), LIMITS, 5)
        .await
        .unwrap();
    s.group_action(o, g, GroupAction::RespondJoin(y, false), LIMITS, 6)
        .await
        .unwrap();
    assert!(matches!(
        s.group_action(o, g, GroupAction::RespondJoin(y, true), LIMITS, 7)
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Roles, mute, transfer, kick.
    s.group_action(o, g, GroupAction::SetRole(m, Role::Admin), LIMITS, 8)
        .await
        .unwrap();
    s.group_action(m, g, GroupAction::Mute(x, 1_000_000), LIMITS, 9)
        .await
        .unwrap();
    refused(
        s.append_message(to(g, x, "shh")).await,
        Refusal::Muted {
            until_ms: 1_000_000,
        },
    );
    refused(
        s.group_action(m, g, GroupAction::Kick(o), LIMITS, 10).await,
        Refusal::KickNotAllowed,
    );
    s.group_action(o, g, GroupAction::Transfer(m), LIMITS, 11)
        .await
        .unwrap();
    let info = s.group(g, o).await.unwrap();
    assert_eq!((info.owner_id, info.my_role), (m, Some(Role::Admin)));
    s.group_action(m, g, GroupAction::Kick(x), LIMITS, 12)
        .await
        .unwrap();
    let (members, more) = s.members(g, o, 0, page(1)).await.unwrap();
    assert!(more);
    let (rest, more) = s.members(g, o, members[0].user_id, page(10)).await.unwrap();
    assert!(!more);
    let all: Vec<(UserId, Role)> = members
        .iter()
        .chain(&rest)
        .map(|r| (r.user_id, r.role))
        .collect();
    assert_eq!(all, vec![(o, Role::Admin), (m, Role::Owner)]);
    let events: Vec<String> = s
        .history(m, g, 0, page(100))
        .await
        .unwrap()
        .messages
        .iter()
        .rev()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.body.content).unwrap();
            v["type"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        events,
        [
            "created",
            "updated",
            "joined",
            "role_changed",
            "muted",
            "owner_transferred",
            "kicked"
        ]
    );
    // Rooms: listed and searched by name, joined without a code.
    let r1 = s
        .create_group(
            NewGroup {
                creator: o,
                kind: ConversationKind::Room,
                name: "Lobby".into(),
                notice: String::new(),
                join_policy: JoinPolicy::Open,
                members: vec![],
                invite_code: String::new(),
                now_ms: 1,
            },
            LIMITS,
        )
        .await
        .unwrap()
        .id;
    group(s, o, vec![], ConversationKind::Room).await;
    let (found, _) = s.rooms(y, "lob", 0, page(10)).await.unwrap();
    assert_eq!(found.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r1]);
    let (found, more) = s.rooms(y, "", 0, page(1)).await.unwrap();
    assert!(more && found[0].my_role.is_none());
    assert_eq!(
        s.join_group(y, r1, "", "", LIMITS, 1).await.unwrap(),
        JoinOutcome::Joined
    );
    assert_eq!(s.group(r1, y).await.unwrap().my_role, Some(Role::Member));
    let (mine, _) = s.groups_of(y, 0, page(10)).await.unwrap();
    assert_eq!(mine.iter().map(|g| g.id).collect::<Vec<_>>(), vec![r1]);
    // Dismissed: read-only, gone from lists.
    s.group_action(m, g, GroupAction::Dismiss, LIMITS, 13)
        .await
        .unwrap();
    refused(s.append_message(to(g, m, "late")).await, Refusal::Dismissed);
    let (mine, _) = s.groups_of(o, 0, page(10)).await.unwrap();
    assert!(!mine.iter().any(|x| x.id == g));
    env.close().await;
}

/// The admin API's groups: found by name (dismissed ones too), read whole
/// as nobody, and changed as the server's operators through the same rules
/// and write as a member's change.
pub async fn the_operators_find_thin_and_dismiss_groups(env: Env) {
    let s = env.store();
    let [o, m, x] = users(s, &["o", "m", "x"]).await[..] else {
        unreachable!()
    };
    let g = group(s, o, vec![m, x], ConversationKind::Group).await;
    let found = s.admin_groups("G1-", 0, 10).await.unwrap();
    assert_eq!(found.iter().map(|g| g.id).collect::<Vec<_>>(), [g]);
    assert_eq!(found[0].my_role, None);
    assert!(s.admin_groups("%", 0, 10).await.unwrap().is_empty());
    assert!(s.admin_groups("", g, 10).await.unwrap().is_empty());
    let (head, members) = s.admin_group(g, 0, 200).await.unwrap().unwrap();
    assert_eq!((head.owner_id, head.member_count), (o, 3));
    let roles: Vec<(UserId, Role)> = members.iter().map(|m| (m.user_id, m.role)).collect();
    assert_eq!(
        roles,
        [(o, Role::Owner), (m, Role::Member), (x, Role::Member)]
    );
    assert_eq!(s.admin_group(g, o, 1).await.unwrap().unwrap().1.len(), 1);
    assert!(s.admin_group(999_999, 0, 10).await.unwrap().is_none());

    s.operate_group(g, GroupAction::Kick(x), LIMITS, 5)
        .await
        .unwrap();
    let (head, members) = s.admin_group(g, 0, 200).await.unwrap().unwrap();
    assert_eq!((head.member_count, members.len()), (2, 2));
    let h = s.history(o, g, 0, page(10)).await.unwrap();
    let last = h.messages.first().unwrap(); // newest first
    assert_eq!(last.sender_id, o, "sent in the owner's name");
    assert!(
        last.body.content.contains("\"by\":\"operator\""),
        "{last:?}"
    );
    refused(
        s.operate_group(g, GroupAction::Kick(o), LIMITS, 6).await,
        Refusal::OwnerNotRemovable,
    );
    refused(
        s.operate_group(g, GroupAction::Leave, LIMITS, 6).await,
        Refusal::OperatorRemovesAndDismissesOnly,
    );
    s.operate_group(g, GroupAction::Dismiss, LIMITS, 7)
        .await
        .unwrap();
    assert!(s.admin_group(g, 0, 10).await.unwrap().unwrap().0.dismissed);
    assert_eq!(s.admin_groups("", 0, 10).await.unwrap().len(), 1);
    refused(
        s.operate_group(g, GroupAction::Dismiss, LIMITS, 8).await,
        Refusal::Dismissed,
    );
    assert!(matches!(
        s.operate_group(999_999, GroupAction::Dismiss, LIMITS, 8)
            .await,
        Err(StoreError::NotFound(_))
    ));
}
