//! Groups and rooms: creation, membership, roles, moderation and join
//! requests. Every change is recorded as a system event in the group's own
//! sequence, in the same transaction, so members see it in order with the
//! messages around it.

use super::engine::tx::Tx;
use super::friends::{active_user, has_blocked};
use super::messages::system_event;
use crate::rules::{self, Candidate, Change, GroupHead, JoinStep, Refusal};
use crate::{
    ConversationId, ConversationKind, GroupAction, GroupLimits, GroupRecord, JoinOutcome,
    JoinRequestRecord, NewGroup, Page, Result, Role, StoreError, UserId,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

pub(crate) const GROUP_SELECT: &str =
    "SELECT g.conversation_id, c.kind, g.name, g.notice, g.owner_id,
    g.join_policy, g.muted_all, g.dismissed, g.member_count, c.last_seq, c.created_at_ms,
    (SELECT m.role FROM members m WHERE m.user_id = ?1 AND m.conversation_id = g.conversation_id
        AND m.left_seq = 0), g.invite_code
    FROM groups g JOIN conversations c ON c.id = g.conversation_id";

pub(crate) fn group_row(r: &Row<'_>) -> rusqlite::Result<GroupRecord> {
    let role: Option<i64> = r.get(11)?;
    Ok(GroupRecord {
        id: r.get(0)?,
        kind: super::stored(r, 1)?,
        name: r.get(2)?,
        notice: r.get(3)?,
        owner_id: r.get(4)?,
        join_policy: super::stored(r, 5)?,
        muted_all: r.get(6)?,
        dismissed: r.get(7)?,
        member_count: r.get(8)?,
        last_seq: r.get(9)?,
        created_at_ms: r.get(10)?,
        my_role: match role {
            Some(_) => Some(super::stored(r, 11)?),
            None => None,
        },
        invite_code: r.get(12)?,
    })
}

/// A group as `viewer` may see it: rooms are public, groups are visible to
/// their members only (to anyone else, one who asked to join included,
/// they do not exist).
pub fn info(conn: &Connection, id: ConversationId, viewer: UserId) -> Result<GroupRecord> {
    let sql = format!("{GROUP_SELECT} WHERE g.conversation_id = ?2");
    let g = conn
        .prepare_cached(&sql)?
        .query_row([viewer, id], group_row)
        .optional()?
        .ok_or(StoreError::NotFound("group"))?;
    if g.kind == ConversationKind::Group && g.my_role.is_none() {
        return Err(StoreError::NotFound("group"));
    }
    Ok(g)
}

/// What the rules need to know of users someone adds.
fn candidates(conn: &Connection, users: &[UserId], actor: UserId) -> Result<Vec<Candidate>> {
    users
        .iter()
        .map(|&u| {
            Ok(Candidate {
                id: u,
                active: active_user(conn, u).is_ok(),
                blocked_actor: has_blocked(conn, u, actor)?,
            })
        })
        .collect()
}

pub fn create(tx: &mut Tx<'_>, new: &NewGroup, limits: GroupLimits) -> Result<GroupRecord> {
    let conn = tx.conn;
    let found = candidates(conn, &new.members, new.creator)?;
    let plan = rules::create_group(new, &found, limits)?;
    conn.prepare_cached(
        "INSERT INTO conversations (kind, created_at_ms, last_activity_ms) VALUES (?1, ?2, ?2)",
    )?
    .execute(params![new.kind as i64, new.now_ms])?;
    let id = conn.last_insert_rowid() as ConversationId;
    conn.prepare_cached(
        "INSERT INTO groups (conversation_id, name, notice, owner_id, join_policy, member_count,
            invite_code)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
    )?
    .execute(params![
        id,
        new.name,
        new.notice,
        new.creator,
        new.join_policy as i64,
        new.invite_code
    ])?;
    for &(u, role) in &plan.members {
        add_member(conn, id, u, role, 0, new.now_ms)?;
    }
    system_event(tx, id, &plan.event, new.now_ms, plan.audience)?;
    info(tx.conn, id, new.creator)
}

/// Adds (or re-adds) a member who will see messages after `joined_seq`.
fn add_member(
    conn: &Connection,
    id: ConversationId,
    user: UserId,
    role: Role,
    joined_seq: u64,
    now_ms: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO members (user_id, conversation_id, role, joined_seq, read_seq, delivered_seq, joined_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5)
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET role = ?3, joined_seq = ?4,
            read_seq = ?4, delivered_seq = ?4, left_seq = 0, muted_until_ms = 0, joined_at_ms = ?5",
    )?
    .execute(params![user, id, role as i64, joined_seq, now_ms])?;
    conn.prepare_cached(
        "UPDATE groups SET member_count = member_count + 1 WHERE conversation_id = ?1",
    )?
    .execute([id])?;
    conn.prepare_cached("DELETE FROM join_requests WHERE conversation_id = ?1 AND user_id = ?2")?
        .execute([id, user])?;
    Ok(())
}

/// Removes a member after their last visible seq (the event that says so).
fn remove_member(conn: &Connection, id: ConversationId, user: UserId, left_seq: u64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE members SET left_seq = ?3 WHERE user_id = ?1 AND conversation_id = ?2",
    )?
    .execute(params![user, id, left_seq])?;
    conn.prepare_cached(
        "UPDATE groups SET member_count = member_count - 1 WHERE conversation_id = ?1",
    )?
    .execute([id])?;
    Ok(())
}

fn head(conn: &Connection, id: ConversationId) -> Result<GroupHead> {
    conn.prepare_cached(
        "SELECT c.kind, g.join_policy, g.dismissed, g.member_count, c.last_seq, g.invite_code
         FROM groups g JOIN conversations c ON c.id = g.conversation_id WHERE g.conversation_id = ?1",
    )?
    .query_row([id], |r| {
        Ok(GroupHead {
            id,
            kind: super::stored(r, 0)?,
            policy: super::stored(r, 1)?,
            dismissed: r.get(2)?,
            member_count: r.get(3)?,
            last_seq: r.get(4)?,
            invite_code: r.get(5)?,
        })
    })
    .optional()?
    .ok_or(StoreError::NotFound("group"))
}

fn role_of(conn: &Connection, id: ConversationId, user: UserId) -> Result<Option<Role>> {
    let role: Option<i64> = conn
        .prepare_cached(
            "SELECT role FROM members WHERE conversation_id = ?1 AND user_id = ?2 AND left_seq = 0",
        )?
        .query_row([id, user], |r| r.get(0))
        .optional()?;
    Ok(role.map(Role::try_from).transpose()?)
}

/// Joins a room, or a group with its invite code (see [`rules::join`]).
pub fn join(
    tx: &mut Tx<'_>,
    user: UserId,
    id: ConversationId,
    message: &str,
    invite_code: &str,
    limits: GroupLimits,
    now_ms: i64,
) -> Result<JoinOutcome> {
    let conn = tx.conn;
    let h = head(conn, id)?;
    let member = role_of(conn, id, user)?.is_some();
    let change = match rules::join(&h, user, member, invite_code, limits)? {
        JoinStep::AlreadyMember => return Ok(JoinOutcome::Joined),
        JoinStep::Join(change) => *change,
        JoinStep::Request => {
            conn.prepare_cached(
                "INSERT INTO join_requests (conversation_id, user_id, message, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (conversation_id, user_id) DO UPDATE SET message = ?3, created_at_ms = ?4",
            )?
            .execute(params![id, user, message, now_ms])?;
            let approvers = conn
                .prepare_cached(
                    "SELECT user_id FROM members WHERE conversation_id = ?1 AND left_seq = 0 AND role >= ?2",
                )?
                .query_map(params![id, Role::Admin as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let request = conn
                .prepare_cached(&format!(
                    "{JOIN_REQUEST_SELECT} WHERE j.conversation_id = ?1 AND j.user_id = ?2"
                ))?
                .query_row(params![id, user], join_request_row)?;
            return Ok(JoinOutcome::Pending { request, approvers });
        }
    };
    let before = tx.convs.get(conn, id)?.members.clone();
    apply(tx, id, &before, change, now_ms)?;
    Ok(JoinOutcome::Joined)
}

const JOIN_REQUEST_SELECT: &str =
    "SELECT j.conversation_id, j.user_id, u.username, j.message, j.created_at_ms
     FROM join_requests j JOIN users u ON u.id = j.user_id";

fn join_request_row(r: &Row<'_>) -> rusqlite::Result<JoinRequestRecord> {
    Ok(JoinRequestRecord {
        conversation_id: r.get(0)?,
        user_id: r.get(1)?,
        username: r.get(2)?,
        message: r.get(3)?,
        created_at_ms: r.get(4)?,
    })
}

/// A page of a group's join requests by user id after `after`.
pub fn join_requests(
    conn: &Connection,
    id: ConversationId,
    after: UserId,
    page: Page,
) -> Result<(Vec<JoinRequestRecord>, bool)> {
    let sql = format!(
        "{JOIN_REQUEST_SELECT} WHERE j.conversation_id = ?1 AND j.user_id > ?2
         ORDER BY j.user_id LIMIT ?3"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![id, after.min(i64::MAX as u64), page.items as i64 + 1],
            join_request_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(page.cut(rows, JoinRequestRecord::size_hint))
}

/// The join requests of a group, for its owner and admins.
pub fn join_requests_for(
    conn: &Connection,
    actor: UserId,
    id: ConversationId,
    after: UserId,
    page: Page,
) -> Result<(Vec<JoinRequestRecord>, bool)> {
    match role_of(conn, id, actor)? {
        Some(r) if r >= Role::Admin => join_requests(conn, id, after, page),
        Some(_) => Err(Refusal::JoinRequestsAdminsOnly.into()),
        None => Err(StoreError::NotMember(id)),
    }
}

/// Changes a group if [`rules::act`] allows, and records the event.
pub fn act(
    tx: &mut Tx<'_>,
    actor: UserId,
    id: ConversationId,
    action: &GroupAction,
    limits: GroupLimits,
    now_ms: i64,
) -> Result<()> {
    let conn = tx.conn;
    let h = head(conn, id)?;
    // Roles come from the writer's cache: the same state a send is checked
    // against, read once.
    let view = tx.convs.get(conn, id)?;
    let found = match action {
        GroupAction::Invite(users) => candidates(conn, users, actor)?,
        _ => Vec::new(),
    };
    let asked = match action {
        GroupAction::RespondJoin(u, _) => conn
            .prepare_cached(
                "SELECT 1 FROM join_requests WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .query_row([id, *u], |_| Ok(()))
            .optional()?
            .is_some(),
        _ => false,
    };
    let change = rules::act(
        &h,
        &view.roles,
        actor,
        action,
        &found,
        asked,
        limits,
        now_ms,
    )?;
    match change {
        Some(change) => apply(tx, id, &view.members, change, now_ms),
        None => Ok(()),
    }
}

/// Writes a change in the order [`Change`] gives.
fn apply(
    tx: &mut Tx<'_>,
    id: ConversationId,
    before: &[UserId],
    change: Change,
    now_ms: i64,
) -> Result<()> {
    let conn = tx.conn;
    if let Some(u) = change.drop_join_request {
        conn.prepare_cached(
            "DELETE FROM join_requests WHERE conversation_id = ?1 AND user_id = ?2",
        )?
        .execute([id, u])?;
    }
    let u = &change.update;
    let set = |column: &str, value: &dyn rusqlite::ToSql| -> Result<()> {
        conn.prepare_cached(&format!(
            "UPDATE groups SET {column} = ?2 WHERE conversation_id = ?1"
        ))?
        .execute(params![id, value])?;
        Ok(())
    };
    if let Some(v) = &u.name {
        set("name", v)?;
    }
    if let Some(v) = &u.notice {
        set("notice", v)?;
    }
    if let Some(v) = u.join_policy {
        set("join_policy", &(v as i64))?;
    }
    if let Some(v) = u.muted_all {
        set("muted_all", &v)?;
    }
    if let Some(v) = &u.invite_code {
        set("invite_code", v)?;
    }
    if let Some(v) = u.owner {
        set("owner_id", &v)?;
    }
    if u.dismissed {
        set("dismissed", &true)?;
    }
    for &(user, role) in &change.roles {
        set_role(conn, id, user, role)?;
    }
    if let Some((user, until_ms)) = change.mute {
        conn.prepare_cached(
            "UPDATE members SET muted_until_ms = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
        )?
        .execute(params![id, user, until_ms])?;
    }
    for &user in &change.add {
        add_member(conn, id, user, Role::Member, change.joined_seq, now_ms)?;
    }
    if let Some(event) = &change.event {
        let m = system_event(tx, id, event, now_ms, change.audience(before))?;
        if let Some(user) = change.remove {
            remove_member(tx.conn, id, user, m.seq)?;
        }
    }
    tx.convs.forget(id);
    Ok(())
}

fn set_role(conn: &Connection, id: ConversationId, user: UserId, role: Role) -> Result<()> {
    conn.prepare_cached(
        "UPDATE members SET role = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
    )?
    .execute(params![id, user, role as i64])?;
    Ok(())
}
