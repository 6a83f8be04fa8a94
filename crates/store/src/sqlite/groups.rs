//! Groups and rooms: creation, membership, roles, moderation and join
//! requests. Every change is recorded as a system event in the group's own
//! sequence, in the same transaction, so members see it in order with the
//! messages around it.

use super::friends::{active_user, has_blocked};
use super::messages::system_event;
use super::writer::Tx;
use crate::{
    ConversationId, ConversationKind, GroupAction, GroupLimits, GroupRecord, JoinOutcome,
    JoinPolicy, JoinRequestRecord, MemberRecord, NewGroup, Page, Result, Role, StoreError, UserId,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;

const GROUP_SELECT: &str = "SELECT g.conversation_id, c.kind, g.name, g.notice, g.owner_id,
    g.join_policy, g.muted_all, g.dismissed, g.member_count, c.last_seq, c.created_at_ms,
    (SELECT m.role FROM members m WHERE m.user_id = ?1 AND m.conversation_id = g.conversation_id
        AND m.left_seq = 0), g.invite_code
    FROM groups g JOIN conversations c ON c.id = g.conversation_id";

fn group_row(r: &Row<'_>) -> rusqlite::Result<GroupRecord> {
    let kind: i64 = r.get(1)?;
    let role: Option<i64> = r.get(11)?;
    Ok(GroupRecord {
        id: r.get(0)?,
        kind: ConversationKind::from_i64(kind).unwrap_or(ConversationKind::Group),
        name: r.get(2)?,
        notice: r.get(3)?,
        owner_id: r.get(4)?,
        join_policy: JoinPolicy::from_i64(r.get(5)?),
        muted_all: r.get(6)?,
        dismissed: r.get(7)?,
        member_count: r.get(8)?,
        last_seq: r.get(9)?,
        created_at_ms: r.get(10)?,
        my_role: role.map(Role::from_i64),
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

/// Compares invite codes in time that does not depend on where they differ.
fn same_code(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn of_user(
    conn: &Connection,
    user: UserId,
    after: ConversationId,
    page: Page,
) -> Result<(Vec<GroupRecord>, bool)> {
    let sql = format!(
        "{GROUP_SELECT} JOIN members me ON me.conversation_id = g.conversation_id
         WHERE me.user_id = ?1 AND me.left_seq = 0 AND g.dismissed = 0 AND g.conversation_id > ?2
         ORDER BY g.conversation_id LIMIT ?3"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![user, after.min(i64::MAX as u64), page.items as i64 + 1],
            group_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(page.cut(rows, GroupRecord::size_hint))
}

pub fn rooms(
    conn: &Connection,
    viewer: UserId,
    prefix: &str,
    after: ConversationId,
    page: Page,
) -> Result<(Vec<GroupRecord>, bool)> {
    let pattern = format!(
        "{}%",
        prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let sql = format!(
        "{GROUP_SELECT} WHERE c.kind = {} AND g.dismissed = 0 AND g.conversation_id > ?2
         AND g.name LIKE ?3 ESCAPE '\\' ORDER BY g.conversation_id LIMIT ?4",
        ConversationKind::Room as i64
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![
                viewer,
                after.min(i64::MAX as u64),
                pattern,
                page.items as i64 + 1
            ],
            group_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(page.cut(rows, GroupRecord::size_hint))
}

pub fn members(
    conn: &Connection,
    id: ConversationId,
    viewer: UserId,
    after: UserId,
    page: Page,
) -> Result<(Vec<MemberRecord>, bool)> {
    let g = info(conn, id, viewer)?;
    if g.my_role.is_none() && g.kind == ConversationKind::Group {
        return Err(StoreError::NotMember(id));
    }
    let rows: Vec<MemberRecord> = conn
        .prepare_cached(
            "SELECT m.user_id, u.username, m.role, m.muted_until_ms, m.joined_at_ms
             FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = ?1 AND m.left_seq = 0 AND m.user_id > ?2
             ORDER BY m.user_id LIMIT ?3",
        )?
        .query_map(params![id, after, page.items as i64 + 1], |r| {
            Ok(MemberRecord {
                user_id: r.get(0)?,
                username: r.get(1)?,
                role: Role::from_i64(r.get(2)?),
                muted_until_ms: r.get(3)?,
                joined_at_ms: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(page.cut(rows, MemberRecord::size_hint))
}

pub fn create(tx: &mut Tx<'_>, new: &NewGroup, limits: GroupLimits) -> Result<GroupRecord> {
    let conn = tx.conn;
    let mut seen = HashSet::from([new.creator]);
    let mut invited = Vec::new();
    for &u in &new.members {
        if !seen.insert(u) {
            continue;
        }
        active_user(conn, u)?;
        // Someone who blocked the creator is left out, without a word.
        if !has_blocked(conn, u, new.creator)? {
            invited.push(u);
        }
    }
    if invited.len() + 1 > limits.max_members as usize {
        return Err(StoreError::GroupFull(limits.max_members));
    }
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
    add_member(conn, id, new.creator, Role::Owner, 0, new.now_ms)?;
    for &u in &invited {
        add_member(conn, id, u, Role::Member, 0, new.now_ms)?;
    }
    let event =
        json!({"type": "created", "actor_id": new.creator, "name": new.name, "user_ids": invited});
    let to = current(tx, id)?;
    system_event(tx, id, new.creator, event, new.now_ms, to)?;
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

/// The members after a change: drops the cached entry and reloads it.
fn current(tx: &mut Tx<'_>, id: ConversationId) -> Result<Arc<[UserId]>> {
    tx.convs.forget(id);
    Ok(tx.convs.get(tx.conn, id)?.members.clone())
}

struct Head {
    kind: ConversationKind,
    policy: JoinPolicy,
    dismissed: bool,
    member_count: u32,
    last_seq: u64,
    invite_code: String,
}

fn head(conn: &Connection, id: ConversationId) -> Result<Head> {
    conn.prepare_cached(
        "SELECT c.kind, g.join_policy, g.dismissed, g.member_count, c.last_seq, g.invite_code
         FROM groups g JOIN conversations c ON c.id = g.conversation_id WHERE g.conversation_id = ?1",
    )?
    .query_row([id], |r| {
        Ok(Head {
            kind: ConversationKind::from_i64(r.get(0)?).unwrap_or(ConversationKind::Group),
            policy: JoinPolicy::from_i64(r.get(1)?),
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
    Ok(role.map(Role::from_i64))
}

/// Where a new member's view starts: at the join in groups, a little before
/// it in rooms so newcomers see the conversation they walk into.
fn join_point(h: &Head, limits: GroupLimits) -> u64 {
    match h.kind {
        ConversationKind::Room => h.last_seq.saturating_sub(limits.room_history as u64),
        _ => h.last_seq,
    }
}

/// Joins a room, or a group with its invite code (without the right code a
/// group does not exist, so ids cannot be probed).
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
    if h.dismissed {
        return Err(StoreError::NotFound("group"));
    }
    if role_of(conn, id, user)?.is_some() {
        return Ok(JoinOutcome::Joined);
    }
    if h.kind == ConversationKind::Group && !same_code(invite_code, &h.invite_code) {
        return Err(StoreError::NotFound("group"));
    }
    if h.member_count >= limits.max_members {
        return Err(StoreError::GroupFull(limits.max_members));
    }
    if h.kind == ConversationKind::Group && h.policy == JoinPolicy::Approval {
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
    add_member(conn, id, user, Role::Member, join_point(&h, limits), now_ms)?;
    let to = current(tx, id)?;
    let event = json!({"type": "joined", "actor_id": user, "user_ids": [user]});
    system_event(tx, id, user, event, now_ms, to)?;
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
        Some(_) => Err(forbidden("only the owner and admins see join requests")),
        None => Err(StoreError::NotMember(id)),
    }
}

fn forbidden(why: &str) -> StoreError {
    StoreError::Forbidden(why.into())
}

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
    let info = tx.convs.get(conn, id)?;
    let role = |u: UserId| info.roles.get(&u).map(|&(r, _)| r);
    let Some(my_role) = role(actor) else {
        return Err(StoreError::NotMember(id));
    };
    if h.dismissed {
        return Err(forbidden("the group has been dismissed"));
    }
    let admin = my_role >= Role::Admin;
    let target_role = |u: UserId| role(u).ok_or(StoreError::NotFound("member"));
    let before = info.members.clone();
    let event = match action {
        GroupAction::Invite(users) => {
            if !admin && h.kind == ConversationKind::Group && h.policy == JoinPolicy::Approval {
                return Err(forbidden(
                    "only the owner and admins may invite to a group that needs approval",
                ));
            }
            let mut seen = HashSet::new();
            let mut added = Vec::new();
            for &u in users {
                active_user(conn, u)?;
                if role(u).is_some() || !seen.insert(u) || has_blocked(conn, u, actor)? {
                    continue;
                }
                added.push(u);
            }
            if added.is_empty() {
                return Ok(());
            }
            if h.member_count as usize + added.len() > limits.max_members as usize {
                return Err(StoreError::GroupFull(limits.max_members));
            }
            for &u in &added {
                add_member(conn, id, u, Role::Member, join_point(&h, limits), now_ms)?;
            }
            json!({"type": "invited", "actor_id": actor, "user_ids": added})
        }
        GroupAction::Leave => {
            if my_role == Role::Owner {
                return Err(forbidden(
                    "the owner must transfer ownership or dismiss the group",
                ));
            }
            let event = json!({"type": "left", "actor_id": actor, "user_ids": [actor]});
            let m = system_event(tx, id, actor, event, now_ms, before)?;
            remove_member(tx.conn, id, actor, m.seq)?;
            tx.convs.forget(id);
            return Ok(());
        }
        GroupAction::Kick(u) => {
            let theirs = target_role(*u)?;
            if !admin || theirs >= my_role {
                return Err(forbidden(
                    "the owner may remove anyone, admins may remove members",
                ));
            }
            let event = json!({"type": "kicked", "actor_id": actor, "user_ids": [u]});
            let m = system_event(tx, id, actor, event, now_ms, before)?;
            remove_member(tx.conn, id, *u, m.seq)?;
            tx.convs.forget(id);
            return Ok(());
        }
        GroupAction::SetRole(u, role) => {
            if my_role != Role::Owner {
                return Err(forbidden("only the owner may change roles"));
            }
            if target_role(*u)? == Role::Owner || *role == Role::Owner {
                return Err(StoreError::Invalid("use a transfer to change the owner"));
            }
            set_role(conn, id, *u, *role)?;
            json!({"type": "role_changed", "actor_id": actor, "user_ids": [u], "role": role.name()})
        }
        GroupAction::Transfer(u) => {
            if my_role != Role::Owner {
                return Err(forbidden("only the owner may transfer ownership"));
            }
            if *u == actor {
                return Err(StoreError::Invalid("already the owner"));
            }
            target_role(*u)?;
            set_role(conn, id, *u, Role::Owner)?;
            set_role(conn, id, actor, Role::Admin)?;
            conn.prepare_cached("UPDATE groups SET owner_id = ?2 WHERE conversation_id = ?1")?
                .execute(params![id, u])?;
            json!({"type": "owner_transferred", "actor_id": actor, "user_ids": [u]})
        }
        GroupAction::Mute(u, until_ms) => {
            if !admin || target_role(*u)? >= my_role {
                return Err(forbidden(
                    "the owner may mute anyone, admins may mute members",
                ));
            }
            conn.prepare_cached(
                "UPDATE members SET muted_until_ms = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .execute(params![id, u, until_ms])?;
            if *until_ms > now_ms {
                json!({"type": "muted", "actor_id": actor, "user_ids": [u], "until_ms": until_ms})
            } else {
                json!({"type": "unmuted", "actor_id": actor, "user_ids": [u]})
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
                return Err(forbidden("only the owner and admins may change the group"));
            }
            let mut event = json!({"type": "updated", "actor_id": actor});
            if let Some(name) = name {
                conn.prepare_cached("UPDATE groups SET name = ?2 WHERE conversation_id = ?1")?
                    .execute(params![id, name])?;
                event["name"] = json!(name);
            }
            if let Some(notice) = notice {
                conn.prepare_cached("UPDATE groups SET notice = ?2 WHERE conversation_id = ?1")?
                    .execute(params![id, notice])?;
                event["notice"] = json!(notice);
            }
            if let Some(p) = join_policy {
                conn.prepare_cached(
                    "UPDATE groups SET join_policy = ?2 WHERE conversation_id = ?1",
                )?
                .execute(params![id, *p as i64])?;
                event["join_policy"] = json!(match p {
                    JoinPolicy::Open => "open",
                    JoinPolicy::Approval => "approval",
                });
            }
            if let Some(m) = muted_all {
                conn.prepare_cached("UPDATE groups SET muted_all = ?2 WHERE conversation_id = ?1")?
                    .execute(params![id, m])?;
                event["muted_all"] = json!(m);
            }
            if let Some(code) = invite_code {
                conn.prepare_cached(
                    "UPDATE groups SET invite_code = ?2 WHERE conversation_id = ?1",
                )?
                .execute(params![id, code])?;
                // Not the code itself: not every member may see it.
                event["invite_code_reset"] = json!(true);
            }
            event
        }
        GroupAction::Dismiss => {
            if my_role != Role::Owner {
                return Err(forbidden("only the owner may dismiss the group"));
            }
            conn.prepare_cached("UPDATE groups SET dismissed = 1 WHERE conversation_id = ?1")?
                .execute([id])?;
            json!({"type": "dismissed", "actor_id": actor})
        }
        GroupAction::RespondJoin(u, accept) => {
            if !admin {
                return Err(forbidden("only the owner and admins answer join requests"));
            }
            let n = conn
                .prepare_cached(
                    "DELETE FROM join_requests WHERE conversation_id = ?1 AND user_id = ?2",
                )?
                .execute([id, *u])?;
            if n == 0 {
                return Err(StoreError::NotFound("join request"));
            }
            if !accept {
                return Ok(());
            }
            if h.member_count >= limits.max_members {
                return Err(StoreError::GroupFull(limits.max_members));
            }
            add_member(conn, id, *u, Role::Member, join_point(&h, limits), now_ms)?;
            json!({"type": "joined", "actor_id": actor, "user_ids": [u]})
        }
    };
    let to = current(tx, id)?;
    system_event(tx, id, actor, event, now_ms, to)?;
    Ok(())
}

fn set_role(conn: &Connection, id: ConversationId, user: UserId, role: Role) -> Result<()> {
    conn.prepare_cached(
        "UPDATE members SET role = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
    )?
    .execute(params![id, user, role as i64])?;
    Ok(())
}
