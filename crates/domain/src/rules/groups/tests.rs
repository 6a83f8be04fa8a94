//! The group rules' tables: each `(state, action)` and what it gives.
#![allow(clippy::unwrap_used)]
use super::*;

const LIMITS: GroupLimits = GroupLimits {
    max_members: 4,
    room_history: 10,
};

fn head(kind: ConversationKind, policy: JoinPolicy, count: u32) -> GroupHead {
    GroupHead {
        id: 7,
        kind,
        owner: 1,
        policy,
        dismissed: false,
        member_count: count,
        last_seq: 30,
        invite_code: "code".into(),
    }
}

fn cand(id: UserId) -> Candidate {
    Candidate {
        id,
        active: true,
        blocked_actor: false,
    }
}

/// A short name for an outcome, so tables stay readable.
fn outcome(r: Result<Option<Change>>) -> String {
    match r {
        Ok(None) => "nothing".into(),
        Ok(Some(c)) => match &c.event {
            Some(e) => e.name().into(),
            None => "no event".into(),
        },
        Err(DomainError::Refused(r)) => format!("{r:?}"),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn the_permission_matrix() {
    use GroupAction::*;
    let g = head(ConversationKind::Group, JoinPolicy::Open, 3);
    let approval = head(ConversationKind::Group, JoinPolicy::Approval, 3);
    let room = head(ConversationKind::Room, JoinPolicy::Open, 3);
    // 1 owner, 2 admin, 3 member, 4 another member.
    let roles: HashMap<UserId, (Role, i64)> = [
        (1, (Role::Owner, 0)),
        (2, (Role::Admin, 0)),
        (3, (Role::Member, 0)),
        (4, (Role::Member, 0)),
    ]
    .into();
    let update = |name: &str| Update {
        name: Some(name.into()),
        notice: None,
        join_policy: None,
        muted_all: None,
        invite_code: None,
    };
    // (head, actor, action, expected)
    let table: Vec<(&GroupHead, UserId, GroupAction, &str)> = vec![
        (&g, 3, Invite(vec![9]), "invited"),
        (&approval, 3, Invite(vec![9]), "InviteAdminsOnly"),
        (&approval, 2, Invite(vec![9]), "invited"),
        (&g, 3, Invite(vec![4]), "nothing"),
        (&g, 1, Leave, "OwnerCannotLeave"),
        (&g, 3, Leave, "left"),
        (&g, 1, Kick(2), "kicked"),
        (&g, 2, Kick(3), "kicked"),
        (&g, 2, Kick(1), "KickNotAllowed"),
        (&g, 3, Kick(4), "KickNotAllowed"),
        (&g, 2, Kick(9), "NotFound(\"member\")"),
        (&g, 1, SetRole(3, Role::Admin), "role_changed"),
        (&g, 2, SetRole(3, Role::Admin), "RolesOwnerOnly"),
        (&g, 1, SetRole(3, Role::Owner), "OwnerByTransferOnly"),
        (&g, 1, Transfer(3), "owner_transferred"),
        (&g, 1, Transfer(1), "AlreadyOwner"),
        (&g, 2, Transfer(3), "TransferOwnerOnly"),
        (&g, 2, Mute(3, 5_000), "muted"),
        (&g, 2, Mute(3, 0), "unmuted"),
        (&g, 2, Mute(1, 5_000), "MuteNotAllowed"),
        (&g, 3, Mute(4, 5_000), "MuteNotAllowed"),
        (&g, 2, update("n"), "updated"),
        (&g, 3, update("n"), "UpdateAdminsOnly"),
        (&g, 2, Dismiss, "DismissOwnerOnly"),
        (&g, 1, Dismiss, "dismissed"),
        (&g, 3, RespondJoin(9, true), "JoinRequestsAdminsOnly"),
        (&g, 2, RespondJoin(9, true), "joined"),
        (&g, 2, RespondJoin(9, false), "no event"),
        (&g, 9, Leave, "NotFound(\"group\")"),
        (&g, 9, update("n"), "NotFound(\"group\")"),
        (&room, 9, Leave, "NotMember(7)"),
        (&room, 9, update("n"), "NotMember(7)"),
    ];
    for (h, actor, action, want) in table {
        let found: Vec<Candidate> = match &action {
            Invite(users) => users.iter().map(|&u| cand(u)).collect(),
            _ => vec![],
        };
        let got = outcome(act(h, &roles, actor, &action, &found, true, LIMITS, 1_000));
        assert_eq!(got, want, "{actor} {action:?}");
    }
    let mut dismissed = g.clone();
    dismissed.dismissed = true;
    assert_eq!(
        outcome(act(&dismissed, &roles, 1, &Leave, &[], false, LIMITS, 0)),
        "Dismissed"
    );
    assert_eq!(
        outcome(act(
            &g,
            &roles,
            1,
            &RespondJoin(9, true),
            &[],
            false,
            LIMITS,
            0
        )),
        "NotFound(\"join request\")"
    );
}

#[test]
fn changes_say_what_to_write_and_who_hears() {
    let roles: HashMap<UserId, (Role, i64)> =
        [(1, (Role::Owner, 0)), (3, (Role::Member, 0))].into();
    let room = head(ConversationKind::Room, JoinPolicy::Open, 2);
    let c = act(
        &room,
        &roles,
        1,
        &GroupAction::Invite(vec![5, 5, 6, 3]),
        &[
            cand(5),
            cand(5),
            Candidate {
                blocked_actor: true,
                ..cand(6)
            },
            cand(3),
        ],
        false,
        LIMITS,
        0,
    )
    .unwrap()
    .unwrap();
    assert_eq!((c.add.clone(), c.joined_seq), (vec![5], 20));
    assert_eq!(&*c.audience(&[1, 3]), &[1, 3, 5]);
    let kick = act(
        &room,
        &roles,
        1,
        &GroupAction::Kick(3),
        &[],
        false,
        LIMITS,
        0,
    )
    .unwrap()
    .unwrap();
    assert_eq!(kick.remove, Some(3));
    assert_eq!(
        &*kick.audience(&[1, 3]),
        &[1, 3],
        "the kicked member hears it"
    );
    let t = act(
        &room,
        &roles,
        1,
        &GroupAction::Transfer(3),
        &[],
        false,
        LIMITS,
        0,
    )
    .unwrap()
    .unwrap();
    assert_eq!(t.roles, vec![(3, Role::Owner), (1, Role::Admin)]);
    assert_eq!(t.update.owner, Some(3));
    let full = head(ConversationKind::Group, JoinPolicy::Open, 4);
    assert_eq!(
        outcome(act(
            &full,
            &roles,
            1,
            &GroupAction::Invite(vec![5]),
            &[cand(5)],
            false,
            LIMITS,
            0
        )),
        "GroupFull { max: 4 }"
    );
    let missing = Candidate {
        active: false,
        ..cand(5)
    };
    assert_eq!(
        outcome(act(
            &room,
            &roles,
            1,
            &GroupAction::Invite(vec![5]),
            &[missing],
            false,
            LIMITS,
            0
        )),
        "NotFound(\"user\")"
    );
}

#[test]
fn creating_and_joining() {
    let blocked = Candidate {
        blocked_actor: true,
        ..cand(3)
    };
    let new = NewGroup {
        creator: 1,
        kind: ConversationKind::Group,
        name: "g".into(),
        notice: String::new(),
        join_policy: JoinPolicy::Open,
        members: Vec::new(),
        invite_code: "code".into(),
        now_ms: 0,
    };
    assert_eq!(
        create_group(&new, &[cand(4), cand(1), cand(4), blocked, cand(2)], LIMITS).unwrap(),
        CreatePlan {
            members: vec![(1, Role::Owner), (4, Role::Member), (2, Role::Member)],
            event: SystemEvent::Created {
                actor: 1,
                name: "g".into(),
                users: vec![4, 2],
            },
            audience: vec![1, 2, 4].into(),
        }
    );
    assert!(create_group(&new, &[cand(2), cand(3), cand(4), cand(5)], LIMITS).is_err());
    assert!(create_group(
        &new,
        &[Candidate {
            active: false,
            ..cand(2)
        }],
        LIMITS
    )
    .is_err());

    let g = head(ConversationKind::Group, JoinPolicy::Open, 2);
    let a = head(ConversationKind::Group, JoinPolicy::Approval, 2);
    let r = head(ConversationKind::Room, JoinPolicy::Open, 2);
    let f = head(ConversationKind::Room, JoinPolicy::Open, 4);
    let mut d = g.clone();
    d.dismissed = true;
    // (head, member, code, expected)
    let joins = |joined_seq| {
        Ok(JoinStep::Join(Box::new(Change {
            add: vec![7],
            joined_seq,
            event: Some(SystemEvent::Joined {
                actor: 7,
                users: vec![7],
            }),
            ..Change::default()
        })))
    };
    let table: Vec<(&GroupHead, bool, &str, Result<JoinStep>)> = vec![
        (&g, false, "code", joins(30)),
        (&g, false, "cod", Err(DomainError::NotFound("group"))),
        (&g, false, "", Err(DomainError::NotFound("group"))),
        (&g, true, "", Ok(JoinStep::AlreadyMember)),
        (&a, false, "code", Ok(JoinStep::Request)),
        (&r, false, "", joins(20)),
        (&f, false, "", Err(Refusal::GroupFull { max: 4 }.into())),
        (&d, true, "code", Err(DomainError::NotFound("group"))),
    ];
    for (h, member, code, want) in table {
        assert_eq!(
            format!("{:?}", join(h, 7, member, code, LIMITS)),
            format!("{want:?}"),
            "{h:?} {member} {code}"
        );
    }
    assert_eq!(join_point(ConversationKind::Room, 5, LIMITS), 0);
}

#[test]
fn the_operators_remove_anyone_but_the_owner_and_dismiss() {
    use GroupAction::*;
    let g = head(ConversationKind::Group, JoinPolicy::Open, 3);
    let gone = GroupHead {
        dismissed: true,
        ..g.clone()
    };
    let roles: HashMap<UserId, (Role, i64)> = [
        (1, (Role::Owner, 0)),
        (2, (Role::Admin, 0)),
        (3, (Role::Member, 0)),
    ]
    .into();
    let table: Vec<(&GroupHead, GroupAction, &str)> = vec![
        (&g, Kick(2), "kicked"),
        (&g, Kick(3), "kicked"),
        (&g, Kick(1), "OwnerNotRemovable"),
        (&g, Kick(9), "NotFound(\"member\")"),
        (&g, Dismiss, "dismissed"),
        (&gone, Dismiss, "Dismissed"),
        (&gone, Kick(3), "Dismissed"),
        (&g, Leave, "OperatorRemovesAndDismissesOnly"),
        (&g, Invite(vec![9]), "OperatorRemovesAndDismissesOnly"),
        (&g, Transfer(3), "OperatorRemovesAndDismissesOnly"),
        (
            &g,
            SetRole(3, Role::Admin),
            "OperatorRemovesAndDismissesOnly",
        ),
    ];
    for (h, action, want) in table {
        let got = act(h, &roles, Actor::Operator, &action, &[], false, LIMITS, 0);
        assert_eq!(outcome(got), want, "{action:?}");
    }
    // The event says the operators did it, and is sent in the owner's name;
    // the removed member hears it as their last.
    let c = act(&g, &roles, Actor::Operator, &Kick(3), &[], false, LIMITS, 0)
        .unwrap()
        .unwrap();
    let e = c.event.clone().unwrap();
    assert_eq!(e.actor(), 1);
    assert!(
        e.to_json().contains("\"by\":\"operator\""),
        "{}",
        e.to_json()
    );
    assert_eq!(c.remove, Some(3));
    assert_eq!(&*c.audience(&[1, 2, 3]), &[1, 2, 3]);
    let c = act(&g, &roles, Actor::Operator, &Dismiss, &[], false, LIMITS, 0)
        .unwrap()
        .unwrap();
    assert!(c.update.dismissed);
}
