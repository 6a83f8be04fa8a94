//! Groups and rooms: creation, membership, roles, moderation and join
//! requests. Every change is recorded as a system event in the group's own
//! sequence, in the same transaction, so members see it in order with the
//! messages around it.

use super::engine::dialect::{now, Lite};
use super::engine::tx::Tx;
use super::messages::system_event;
use crate::rules::{self, Change, JoinStep};
use crate::sql::groups::{candidates, head, request_to_join};
use crate::sql::lists::{group, role_of};
use crate::{
    ConversationId, GroupAction, GroupLimits, GroupRecord, JoinOutcome, NewGroup, Result, Role,
    UserId,
};
use rusqlite::{params, Connection, OptionalExtension};

pub fn create(tx: &mut Tx<'_>, new: &NewGroup, limits: GroupLimits) -> Result<GroupRecord> {
    let conn = tx.conn;
    let found = now(candidates(&Lite(conn), &new.members, new.creator))?;
    let plan = rules::create_group(new, &found, limits)?;
    // Its id from the writer, not the table's next: the 1:1s made in the
    // log hold ids the database has no row for yet.
    let id = tx.next_conversation();
    conn.prepare_cached(
        "INSERT INTO conversations (id, kind, created_at_ms, last_activity_ms)
         VALUES (?1, ?2, ?3, ?3)",
    )?
    .execute(params![id, new.kind as i64, new.now_ms])?;
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
    now(group(&Lite(tx.conn), id, new.creator))
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
    let h = now(head(&Lite(conn), id))?;
    let member = now(role_of(&Lite(conn), id, user))?.is_some();
    let change = match rules::join(&h, user, member, invite_code, limits)? {
        JoinStep::AlreadyMember => return Ok(JoinOutcome::Joined),
        JoinStep::Join(change) => *change,
        JoinStep::Request => return now(request_to_join(&Lite(conn), id, user, message, now_ms)),
    };
    let before = tx.convs.get(conn, id)?.members.clone();
    apply(tx, id, &before, change, now_ms)?;
    Ok(JoinOutcome::Joined)
}

/// Changes a group if [`rules::act`] allows, and records the event.
pub fn act(
    tx: &mut Tx<'_>,
    actor: rules::GroupActor,
    id: ConversationId,
    action: &GroupAction,
    limits: GroupLimits,
    now_ms: i64,
) -> Result<()> {
    let conn = tx.conn;
    let h = now(head(&Lite(conn), id))?;
    // Roles come from the writer's cache: the same state a send is checked
    // against, read once.
    let view = tx.convs.get(conn, id)?;
    let found = match action {
        GroupAction::Invite(users) => now(candidates(
            &Lite(conn),
            users,
            actor.user().unwrap_or_default(),
        ))?,
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
