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
    pub owner: UserId,
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

/// Who changes a group: one of its members, or the server's operators
/// (an administrator of the deployment, through the admin API). The
/// operators are no member: they may remove anyone but the owner and
/// dismiss any group, and nothing else; their events say so
/// ([`SystemEvent::Kicked`] and [`SystemEvent::Dismissed`] with
/// `operator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    Member(UserId),
    Operator,
}

impl From<UserId> for Actor {
    fn from(u: UserId) -> Actor {
        Actor::Member(u)
    }
}

impl Actor {
    /// The user whose blocks an invite respects: nobody for the operators.
    pub fn user(self) -> Option<UserId> {
        match self {
            Actor::Member(u) => Some(u),
            Actor::Operator => None,
        }
    }
}

/// Judges a change to a group by one of its members or its operators.
/// `roles` are the current members'; `candidates` describe the users an
/// invite names; `join_request` says whether the user a join answer names
/// asked. `Ok(None)`: allowed, and nothing to do.
#[allow(clippy::too_many_arguments)]
pub fn act(
    head: &GroupHead,
    roles: &HashMap<UserId, (Role, i64)>,
    actor: impl Into<Actor>,
    action: &GroupAction,
    candidates: &[Candidate],
    join_request: bool,
    limits: GroupLimits,
    now_ms: i64,
) -> Result<Option<Change>> {
    let role = |u: UserId| roles.get(&u).map(|&(r, _)| r);
    let actor = match actor.into() {
        Actor::Member(u) => u,
        Actor::Operator => return operate(head, roles, action),
    };
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
            SystemEvent::Kicked {
                actor,
                user: *u,
                operator: false,
            }
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
            SystemEvent::Dismissed {
                actor,
                operator: false,
            }
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

/// A change by the server's operators: removing a member or dismissing.
/// The event's message is sent in the owner's name (a message's sender is
/// a user); its JSON says the operators did it.
fn operate(
    head: &GroupHead,
    roles: &HashMap<UserId, (Role, i64)>,
    action: &GroupAction,
) -> Result<Option<Change>> {
    if head.dismissed {
        return Err(Refusal::Dismissed.into());
    }
    let mut c = Change::default();
    let event = match action {
        GroupAction::Kick(u) => match roles.get(u) {
            None => return Err(DomainError::NotFound("member")),
            Some((Role::Owner, _)) => return Err(Refusal::OwnerNotRemovable.into()),
            Some(_) => {
                c.remove = Some(*u);
                SystemEvent::Kicked {
                    actor: head.owner,
                    user: *u,
                    operator: true,
                }
            }
        },
        GroupAction::Dismiss => {
            c.update.dismissed = true;
            SystemEvent::Dismissed {
                actor: head.owner,
                operator: true,
            }
        }
        _ => return Err(Refusal::OperatorRemovesAndDismissesOnly.into()),
    };
    c.event = Some(event);
    Ok(Some(c))
}

#[cfg(test)]
mod tests;
