//! Friends, friend requests and blocks.

use crate::rules::{self, FriendPlan, RequestFacts, RequestWrite};
use crate::{
    FriendList, FriendRecord, FriendRequestOutcome, FriendRequestPage, FriendRequestRecord, Page,
    Result, StoreError, UserId, UserRecord,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

const REQUEST_SELECT: &str = "SELECT r.id, r.from_id, f.username, r.to_id, t.username, r.message,
    r.status, r.reply, r.created_at_ms, r.decided_at_ms
    FROM friend_requests r JOIN users f ON f.id = r.from_id JOIN users t ON t.id = r.to_id";

fn request_row(r: &Row<'_>) -> rusqlite::Result<FriendRequestRecord> {
    Ok(FriendRequestRecord {
        id: r.get(0)?,
        from: r.get(1)?,
        from_name: r.get(2)?,
        to: r.get(3)?,
        to_name: r.get(4)?,
        message: r.get(5)?,
        status: super::stored(r, 6)?,
        reply: r.get(7)?,
        created_at_ms: r.get(8)?,
        decided_at_ms: r.get(9)?,
    })
}

fn request(conn: &Connection, id: u64) -> Result<Option<FriendRequestRecord>> {
    let sql = format!("{REQUEST_SELECT} WHERE r.id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], request_row)
        .optional()?)
}

pub fn are_friends(conn: &Connection, a: UserId, b: UserId) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM friends WHERE user_id = ?1 AND friend_id = ?2")?
        .query_row([a, b], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn has_blocked(conn: &Connection, user: UserId, other: UserId) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = ?2")?
        .query_row([user, other], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn active_user(conn: &Connection, id: UserId) -> Result<()> {
    let disabled: Option<bool> = conn
        .prepare_cached("SELECT disabled FROM users WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    match disabled {
        Some(false) => Ok(()),
        _ => Err(StoreError::NotFound("user")),
    }
}

fn befriend(conn: &Connection, a: UserId, b: UserId, now_ms: i64) -> Result<()> {
    let mut add = conn.prepare_cached(
        "INSERT OR IGNORE INTO friends (user_id, friend_id, since_ms) VALUES (?1, ?2, ?3)",
    )?;
    add.execute(params![a, b, now_ms])?;
    add.execute(params![b, a, now_ms])?;
    Ok(())
}

/// Writes what a [`rules::FriendPlan`] says, with `text` as the request's
/// message or reply, and reads the request back.
fn apply(
    conn: &Connection,
    plan: FriendPlan,
    text: &str,
    now_ms: i64,
) -> Result<FriendRequestRecord> {
    if let Some((a, b)) = plan.befriend {
        befriend(conn, a, b, now_ms)?;
    }
    let id = match plan.request {
        RequestWrite::Decide(id, status) => {
            conn.prepare_cached(
                "UPDATE friend_requests SET status = ?2, reply = ?3, decided_at_ms = ?4
                 WHERE id = ?1",
            )?
            .execute(params![id, status as i64, text, now_ms])?;
            id
        }
        RequestWrite::Renew(id) => {
            conn.prepare_cached(
                "UPDATE friend_requests SET message = ?2, created_at_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id, text, now_ms])?;
            id
        }
        RequestWrite::Create { from, to } => {
            conn.prepare_cached(
                "INSERT INTO friend_requests (from_id, to_id, message, status, created_at_ms)
                 VALUES (?1, ?2, ?3, 1, ?4)",
            )?
            .execute(params![from, to, text, now_ms])?;
            conn.last_insert_rowid() as u64
        }
    };
    request(conn, id)?.ok_or(StoreError::NotFound("friend request"))
}

fn pending(conn: &Connection, from: UserId, to: UserId) -> Result<Option<u64>> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM friend_requests WHERE from_id = ?1 AND to_id = ?2 AND status = 1
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([from, to], |r| r.get(0))
        .optional()?)
}

fn is_active(conn: &Connection, id: UserId) -> Result<bool> {
    Ok(active_user(conn, id).is_ok())
}

pub fn send_request(
    conn: &Connection,
    from: UserId,
    to: UserId,
    message: &str,
    now_ms: i64,
) -> Result<FriendRequestOutcome> {
    let facts = if from == to {
        RequestFacts::default()
    } else {
        RequestFacts {
            to_active: is_active(conn, to)?,
            friends: are_friends(conn, from, to)?,
            blocked: has_blocked(conn, to, from)?,
            theirs: pending(conn, to, from)?,
            mine: pending(conn, from, to)?,
        }
    };
    let plan = rules::send_request(from, to, facts)?;
    let request = apply(conn, plan, message, now_ms)?;
    Ok(FriendRequestOutcome {
        request,
        notify: plan.notify,
    })
}

pub fn respond(
    conn: &Connection,
    me: UserId,
    id: u64,
    accept: bool,
    reply: &str,
    now_ms: i64,
) -> Result<FriendRequestRecord> {
    let r = request(conn, id)?;
    let from_active = match &r {
        Some(r) if accept => is_active(conn, r.from)?,
        _ => false,
    };
    let plan = rules::respond_request(r.as_ref(), me, accept, from_active)?;
    apply(conn, plan, reply, now_ms)
}

/// The newest pending requests to `me`, hiding those from users `me` has
/// blocked.
pub fn pending_incoming(
    conn: &Connection,
    me: UserId,
    limit: usize,
) -> Result<Vec<FriendRequestRecord>> {
    let sql = format!(
        "{REQUEST_SELECT} WHERE r.to_id = ?1 AND r.status = 1
         AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = ?1 AND b.blocked_id = r.from_id)
         ORDER BY r.id DESC LIMIT ?2"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map(params![me, limit as i64], request_row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// Requests to and from `me` below `before_id`, newest first, as one list
/// split into both directions.
pub fn requests(
    conn: &Connection,
    me: UserId,
    before_id: u64,
    page: Page,
) -> Result<FriendRequestPage> {
    let sql = format!(
        "{REQUEST_SELECT} WHERE r.id < ?2 AND (r.from_id = ?1 OR (r.to_id = ?1
         AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = ?1 AND b.blocked_id = r.from_id)))
         ORDER BY r.id DESC LIMIT ?3"
    );
    let before = if before_id == 0 {
        i64::MAX
    } else {
        before_id.min(i64::MAX as u64) as i64
    };
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![me, before, page.items as i64 + 1], request_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (rows, has_more) = page.cut(rows, FriendRequestRecord::size_hint);
    let (incoming, outgoing) = rows.into_iter().partition(|r| r.to == me);
    Ok(FriendRequestPage {
        incoming,
        outgoing,
        has_more,
    })
}

pub fn friends(conn: &Connection, me: UserId, after: &str, page: Page) -> Result<FriendList> {
    let blocked: Vec<(UserId, String)> = if after.is_empty() {
        conn.prepare_cached(
            "SELECT b.blocked_id, u.username FROM blocks b JOIN users u ON u.id = b.blocked_id
             WHERE b.user_id = ?1 ORDER BY u.username",
        )?
        .query_map([me], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?
    } else {
        Vec::new()
    };
    let blocked_bytes: usize = blocked.iter().map(|(_, n)| n.len() + 16).sum();
    let friends = conn
        .prepare_cached(
            "SELECT f.friend_id, u.username, f.remark, f.since_ms,
                    EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = ?1 AND b.blocked_id = f.friend_id)
             FROM friends f JOIN users u ON u.id = f.friend_id
             WHERE f.user_id = ?1 AND u.username > ?2 ORDER BY u.username LIMIT ?3",
        )?
        .query_map(params![me, after, page.items as i64 + 1], |r| {
            Ok(FriendRecord {
                user_id: r.get(0)?,
                username: r.get(1)?,
                remark: r.get(2)?,
                since_ms: r.get(3)?,
                blocked: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let room = Page {
        items: page.items,
        bytes: page.bytes.saturating_sub(blocked_bytes),
    };
    let (friends, has_more) = room.cut(friends, FriendRecord::size_hint);
    Ok(FriendList {
        friends,
        blocked,
        has_more,
    })
}

pub fn friend_ids(conn: &Connection, me: UserId) -> Result<Vec<UserId>> {
    Ok(conn
        .prepare_cached("SELECT friend_id FROM friends WHERE user_id = ?1")?
        .query_map([me], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

pub fn set_remark(conn: &Connection, me: UserId, friend: UserId, remark: &str) -> Result<()> {
    let n = conn
        .prepare_cached("UPDATE friends SET remark = ?3 WHERE user_id = ?1 AND friend_id = ?2")?
        .execute(params![me, friend, remark])?;
    if n == 0 {
        return Err(StoreError::NotFound("friend"));
    }
    Ok(())
}

pub fn remove(conn: &Connection, me: UserId, other: UserId) -> Result<()> {
    let n = conn
        .prepare_cached(
            "DELETE FROM friends WHERE (user_id = ?1 AND friend_id = ?2)
                OR (user_id = ?2 AND friend_id = ?1)",
        )?
        .execute([me, other])?;
    if n == 0 {
        return Err(StoreError::NotFound("friend"));
    }
    Ok(())
}

pub fn set_blocked(
    conn: &Connection,
    me: UserId,
    other: UserId,
    blocked: bool,
    max_blocked: usize,
) -> Result<()> {
    let (active, already) = if me == other {
        (true, false)
    } else {
        (is_active(conn, other)?, has_blocked(conn, me, other)?)
    };
    let count = if blocked && !already && me != other {
        conn.prepare_cached("SELECT COUNT(*) FROM blocks WHERE user_id = ?1")?
            .query_row([me], |r| r.get::<_, i64>(0))? as usize
    } else {
        0
    };
    rules::may_block(me, other, active, blocked, already, count, max_blocked)?;
    let sql = if blocked {
        "INSERT OR IGNORE INTO blocks (user_id, blocked_id) VALUES (?1, ?2)"
    } else {
        "DELETE FROM blocks WHERE user_id = ?1 AND blocked_id = ?2"
    };
    conn.prepare_cached(sql)?.execute([me, other])?;
    Ok(())
}

/// Users whose name starts with `prefix`, by name. Names are ASCII below
/// 0x7f, so the range below is exactly the prefix and uses the name index.
pub fn search(conn: &Connection, prefix: &str, limit: usize) -> Result<Vec<UserRecord>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, username, password_hash, disabled FROM users
             WHERE username >= ?1 AND username < ?1 || char(127) AND disabled = 0
             ORDER BY username LIMIT ?2",
        )?
        .query_map(params![prefix, limit as i64], |r| {
            Ok(UserRecord {
                id: r.get(0)?,
                username: r.get(1)?,
                password_hash: r.get(2)?,
                disabled: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}
