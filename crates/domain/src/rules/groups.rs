//! The group and room rules: who may create, join and change what, the
//! system event each change records, and who hears of it.

use super::{Refusal, SystemEvent};
use crate::{
    ConversationId, ConversationKind, DomainError, GroupAction, GroupLimits, JoinPolicy, NewGroup,
    Result, Role, UserId,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A group's row, as loaded for a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupHead {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub policy: JoinPolicy,
    pub dismissed: bool,
    pub member_count: u32,
    pub last_seq: u64,
    pub invite_code: String,
}

/// A user someone wants to add, with what the rule needs to know of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: UserId,
    /// Exists and is not disabled.
    pub active: bool,
    /// Has blocked the user who adds them: they are left out, without a word.
    pub blocked_actor: bool,
}

/// Where a new member's view starts: at the join in groups, a little before
/// it in rooms so newcomers see the conversation they walk into.
pub fn join_point(kind: ConversationKind, last_seq: u64, limits: GroupLimits) -> u64 {
    match kind {
        ConversationKind::Room => last_seq.saturating_sub(limits.room_history as u64),
        _ => last_seq,
    }
}

/// What creating a group writes once its rows exist: its members with their
/// roles (the creator first, as owner), then `event`, heard by `audience`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePlan {
    pub members: Vec<(UserId, Role)>,
    pub event: SystemEvent,
    pub audience: Arc<[UserId]>,
}

/// A new group starts with its creator and the candidates asked for, in
/// that order, leaving out those who blocked the creator. Every candidate
/// must exist.
pub fn create_group(
    new: &NewGroup,
    candidates: &[Candidate],
    limits: GroupLimits,
) -> Result<CreatePlan> {
    let creator = new.creator;
    let mut seen = HashSet::from([creator]);
    let mut invited = Vec::new();
    for c in candidates {
        if !seen.insert(c.id) {
            continue;
        }
        if !c.active {
            return Err(DomainError::NotFound("user"));
        }
        if !c.blocked_actor {
            invited.push(c.id);
        }
    }
    if invited.len() + 1 > limits.max_members as usize {
        return Err(Refusal::GroupFull {
            max: limits.max_members,
        }
        .into());
    }
    let audience = Change {
        add: invited.clone(),
        ..Change::default()
    }
    .audience(&[creator]);
    let members = std::iter::once((creator, Role::Owner))
        .chain(invited.iter().map(|&u| (u, Role::Member)))
        .collect();
    Ok(CreatePlan {
        members,
        event: SystemEvent::Created {
            actor: creator,
            name: new.name.clone(),
            users: invited,
        },
        audience,
    })
}

/// What a join does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinStep {
    AlreadyMember,
    /// The group needs approval: record (or renew) a join request.
    Request,
    /// Add the member, seeing messages after the change's `joined_seq`,
    /// and record that they joined.
    Join(Box<Change>),
}

/// Compares invite codes in time that does not depend on where they differ.
fn same_code(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Joins a room, or a group with its invite code. Without the right code a
/// group does not exist, so ids cannot be probed.
pub fn join(
    head: &GroupHead,
    user: UserId,
    member: bool,
    code: &str,
    limits: GroupLimits,
) -> Result<JoinStep> {
    if head.dismissed {
        return Err(DomainError::NotFound("group"));
    }
    if member {
        return Ok(JoinStep::AlreadyMember);
    }
    let group = head.kind == ConversationKind::Group;
    if group && !same_code(code, &head.invite_code) {
        return Err(DomainError::NotFound("group"));
    }
    if head.member_count >= limits.max_members {
        return Err(Refusal::GroupFull {
            max: limits.max_members,
        }
        .into());
    }
    if group && head.policy == JoinPolicy::Approval {
        return Ok(JoinStep::Request);
    }
    Ok(JoinStep::Join(Box::new(Change {
        add: vec![user],
        joined_seq: join_point(head.kind, head.last_seq, limits),
        event: Some(SystemEvent::Joined {
            actor: user,
            users: vec![user],
        }),
        ..Change::default()
    })))
}

/// Fields of a group an update sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub notice: Option<String>,
    pub join_policy: Option<JoinPolicy>,
    pub muted_all: Option<bool>,
    pub invite_code: Option<String>,
    pub owner: Option<UserId>,
    pub dismissed: bool,
}

/// What a group change writes, in this order: the join request dropped,
/// the group's fields, roles and mutes, the members added; then the event,
/// heard by [`Change::audience`]; then `remove` leaves, after the event's
/// seq, so the one who left sees why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub drop_join_request: Option<UserId>,
    pub update: GroupUpdate,
    pub roles: Vec<(UserId, Role)>,
    pub mute: Option<(UserId, i64)>,
    pub add: Vec<UserId>,
    pub joined_seq: u64,
    pub remove: Option<UserId>,
    /// `None`: nothing is recorded (a join request turned down).
    pub event: Option<SystemEvent>,
}

impl Change {
    /// Who hears the event: the members after the change, and anyone the
    /// change removes.
    pub fn audience(&self, before: &[UserId]) -> Arc<[UserId]> {
        let mut to: Vec<UserId> = before.iter().chain(&self.add).copied().collect();
        to.sort_unstable();
        to.dedup();
        to.into()
    }
}

fn full(limits: GroupLimits) -> DomainError {
    Refusal::GroupFull {
        max: limits.max_members,
    }
    .into()
}

/// Judges a change to a group by one of its members. `roles` are the
/// current members'; `candidates` describe the users an invite names;
/// `join_request` says whether the user a join answer names asked.
/// `Ok(None)`: allowed, and nothing to do.
#[allow(clippy::too_many_arguments)]
pub fn act(
    head: &GroupHead,
    roles: &HashMap<UserId, (Role, i64)>,
    actor: UserId,
    action: &GroupAction,
    candidates: &[Candidate],
    join_request: bool,
    limits: GroupLimits,
    now_ms: i64,
) -> Result<Option<Change>> {
    let role = |u: UserId| roles.get(&u).map(|&(r, _)| r);
    let Some(mine) = role(actor) else {
        // A group is private: to a non-member it does not exist, the same
        // answer as for an id never used, so ids cannot be probed by
        // asking to change them. A room is public: not being a member is
        // the refusal.
        if head.kind == ConversationKind::Group {
            return Err(DomainError::NotFound("group"));
        }
        return Err(DomainError::NotMember(head.id));
    };
    if head.dismissed {
        return Err(Refusal::Dismissed.into());
    }
    let admin = mine >= Role::Admin;
    let theirs = |u: UserId| role(u).ok_or(DomainError::NotFound("member"));
    let refuse = |r: Refusal| Err(DomainError::Refused(r));
    let mut c = Change::default();
    let event = match action {
        GroupAction::Invite(_) => {
            if !admin && head.kind == ConversationKind::Group && head.policy == JoinPolicy::Approval
            {
                return refuse(Refusal::InviteAdminsOnly);
            }
            let mut seen = HashSet::new();
            for cand in candidates {
                if !cand.active {
                    return Err(DomainError::NotFound("user"));
                }
                if role(cand.id).is_some() || !seen.insert(cand.id) || cand.blocked_actor {
                    continue;
                }
                c.add.push(cand.id);
            }
            if c.add.is_empty() {
                return Ok(None);
            }
            if head.member_count as usize + c.add.len() > limits.max_members as usize {
                return Err(full(limits));
            }
            c.joined_seq = join_point(head.kind, head.last_seq, limits);
            SystemEvent::Invited {
                actor,
                users: c.add.clone(),
            }
        }
        GroupAction::Leave => {
            if mine == Role::Owner {
                return refuse(Refusal::OwnerCannotLeave);
            }
            c.remove = Some(actor);
            SystemEvent::Left { actor }
        }
        GroupAction::Kick(u) => {
            if !admin || theirs(*u)? >= mine {
                return refuse(Refusal::KickNotAllowed);
            }
            c.remove = Some(*u);
            SystemEvent::Kicked { actor, user: *u }
        }
        GroupAction::SetRole(u, r) => {
            if mine != Role::Owner {
                return refuse(Refusal::RolesOwnerOnly);
            }
            if theirs(*u)? == Role::Owner || *r == Role::Owner {
                return refuse(Refusal::OwnerByTransferOnly);
            }
            c.roles.push((*u, *r));
            SystemEvent::RoleChanged {
                actor,
                user: *u,
                role: *r,
            }
        }
        GroupAction::Transfer(u) => {
            if mine != Role::Owner {
                return refuse(Refusal::TransferOwnerOnly);
            }
            if *u == actor {
                return refuse(Refusal::AlreadyOwner);
            }
            theirs(*u)?;
            c.roles = vec![(*u, Role::Owner), (actor, Role::Admin)];
            c.update.owner = Some(*u);
            SystemEvent::OwnerTransferred { actor, user: *u }
        }
        GroupAction::Mute(u, until_ms) => {
            if !admin || theirs(*u)? >= mine {
                return refuse(Refusal::MuteNotAllowed);
            }
            c.mute = Some((*u, *until_ms));
            if *until_ms > now_ms {
                SystemEvent::Muted {
                    actor,
                    user: *u,
                    until_ms: *until_ms,
                }
            } else {
                SystemEvent::Unmuted { actor, user: *u }
            }
        }
        GroupAction::Update {
            name,
            notice,
            join_policy,
            muted_all,
            invite_code,
        } => {
            if !admin {
                return refuse(Refusal::UpdateAdminsOnly);
            }
            c.update = GroupUpdate {
                name: name.clone(),
                notice: notice.clone(),
                join_policy: *join_policy,
                muted_all: *muted_all,
                invite_code: invite_code.clone(),
                ..GroupUpdate::default()
            };
            SystemEvent::Updated {
                actor,
                name: name.clone(),
                notice: notice.clone(),
                join_policy: *join_policy,
                muted_all: *muted_all,
                invite_code_reset: invite_code.is_some(),
            }
        }
        GroupAction::Dismiss => {
            if mine != Role::Owner {
                return refuse(Refusal::DismissOwnerOnly);
            }
            c.update.dismissed = true;
            SystemEvent::Dismissed { actor }
        }
        GroupAction::RespondJoin(u, accept) => {
            if !admin {
                return refuse(Refusal::JoinRequestsAdminsOnly);
            }
            if !join_request {
                return Err(DomainError::NotFound("join request"));
            }
            c.drop_join_request = Some(*u);
            if !accept {
                return Ok(Some(c));
            }
            if head.member_count >= limits.max_members {
                return Err(full(limits));
            }
            c.add.push(*u);
            c.joined_seq = join_point(head.kind, head.last_seq, limits);
            SystemEvent::Joined {
                actor,
                users: vec![*u],
            }
        }
    };
    c.event = Some(event);
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
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
}
