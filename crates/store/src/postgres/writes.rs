//! Writes that append nothing to a conversation: accounts, sessions,
//! cursors, friends and blocks. Each is one transaction on a pooled
//! connection. A social write first locks the rows of the users it is
//! about, in id order, so that two nodes cannot interleave, say, two
//! crossing friend requests into a state a single writer could not produce
//! (and never deadlock doing so).

use super::rows::{self, key, keys, REQUEST_SELECT};
use crate::rules::{self, FriendPlan, RequestFacts, RequestWrite};
use crate::{
    ConversationId, ConversationKind, Delivered, FriendRequestOutcome, FriendRequestRecord,
    NewSession, ReadMoved, Result, SessionGrant, SessionId, StoreError, UserId,
};
use tokio_postgres::{GenericClient, Transaction};

pub async fn create_user(
    c: &impl GenericClient,
    username: &str,
    hash: &str,
    now_ms: i64,
) -> Result<UserId> {
    match c
        .query_opt(
            "INSERT INTO users (username, password_hash, created_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (username) DO NOTHING RETURNING id",
            &[&username, &hash, &now_ms],
        )
        .await?
    {
        Some(r) => Ok(rows::id(&r, 0)),
        None => Err(StoreError::Conflict("username")),
    }
}

pub async fn set_password(
    tx: &Transaction<'_>,
    id: UserId,
    hash: &str,
    keep: Option<SessionId>,
) -> Result<Vec<SessionId>> {
    let n = tx
        .execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            &[&key(id), &hash],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(tx
        .query(
            "UPDATE sessions SET revoked = true
             WHERE user_id = $1 AND id != $2 AND NOT revoked RETURNING id",
            &[&key(id), &key(keep.unwrap_or(0))],
        )
        .await?
        .iter()
        .map(|r| rows::id(r, 0))
        .collect())
}

pub async fn create_session(tx: &Transaction<'_>, new: &NewSession) -> Result<SessionGrant> {
    // The user's row is the lock that keeps two nodes from both letting a
    // login past the limit.
    let found = tx
        .query_opt(
            "SELECT 1 FROM users WHERE id = $1 FOR UPDATE",
            &[&key(new.user_id)],
        )
        .await?;
    if found.is_none() {
        return Err(StoreError::NotFound("user"));
    }
    let mut revoked: Vec<SessionId> = tx
        .query(
            "UPDATE sessions SET revoked = true
             WHERE user_id = $1 AND device_id = $2 AND NOT revoked RETURNING id",
            &[&key(new.user_id), &new.device_id],
        )
        .await?
        .iter()
        .map(|r| rows::id(r, 0))
        .collect();
    let live: Vec<SessionId> = tx
        .query(
            "SELECT id FROM sessions WHERE user_id = $1 AND NOT revoked AND expires_at_ms > $2
             ORDER BY created_at_ms, id",
            &[&key(new.user_id), &new.now_ms],
        )
        .await?
        .iter()
        .map(|r| rows::id(r, 0))
        .collect();
    let revoke = rules::sessions_to_revoke(&live, new.policy, new.max_sessions)?;
    if !revoke.is_empty() {
        tx.execute(
            "UPDATE sessions SET revoked = true WHERE id = ANY($1)",
            &[&keys(&revoke)],
        )
        .await?;
        revoked.extend(revoke);
    }
    let row = tx
        .query_one(
            "INSERT INTO sessions (user_id, device_id, token_hash, created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &key(new.user_id),
                &new.device_id,
                &&new.token_hash[..],
                &new.now_ms,
                &new.expires_at_ms,
            ],
        )
        .await?;
    Ok(SessionGrant {
        session_id: rows::id(&row, 0),
        revoked,
    })
}

pub async fn revoke_session(c: &impl GenericClient, id: SessionId) -> Result<()> {
    c.execute(
        "UPDATE sessions SET revoked = true WHERE id = $1",
        &[&key(id)],
    )
    .await?;
    Ok(())
}

/// Which cursor of a member.
#[derive(Clone, Copy)]
pub enum Cursor {
    Delivered,
    Read,
}

/// Raises a cursor to `seq`, clamped to what the user may see; `None` when
/// it did not move. One conditional UPDATE, so racing raises from several
/// nodes only ever move it up.
pub async fn raise_cursor(
    c: &impl GenericClient,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
    cursor: Cursor,
) -> Result<Option<(u64, Vec<UserId>)>> {
    let Some((_, upto)) = super::reads::visible_range(c, user, conversation).await? else {
        return Err(StoreError::NotMember(conversation));
    };
    let seq = seq.min(upto);
    let sql = match cursor {
        Cursor::Delivered => {
            "UPDATE members m SET delivered_seq = $3 FROM conversations c
             WHERE m.user_id = $1 AND m.conversation_id = $2 AND m.delivered_seq < $3
               AND c.id = m.conversation_id RETURNING c.kind"
        }
        Cursor::Read => {
            "UPDATE members m SET read_seq = $3 FROM conversations c
             WHERE m.user_id = $1 AND m.conversation_id = $2 AND m.read_seq < $3
               AND c.id = m.conversation_id RETURNING c.kind"
        }
    };
    let Some(row) = c
        .query_opt(sql, &[&key(user), &key(conversation), &key(seq)])
        .await?
    else {
        return Ok(None);
    };
    let kind = rows::kind(row.get(0))?;
    let members = match kind {
        ConversationKind::Direct => super::reads::members_of(c, conversation).await?,
        _ => Vec::new(),
    };
    Ok(Some((seq, rules::cursor_audience(kind, user, &members))))
}

pub async fn mark_delivered(
    c: &impl GenericClient,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
) -> Result<Option<Delivered>> {
    Ok(raise_cursor(c, user, conversation, seq, Cursor::Delivered)
        .await?
        .map(|(seq, members)| Delivered { seq, members }))
}

pub async fn mark_read(
    c: &impl GenericClient,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
) -> Result<Option<ReadMoved>> {
    Ok(raise_cursor(c, user, conversation, seq, Cursor::Read)
        .await?
        .map(|(seq, notify)| ReadMoved { seq, notify }))
}

// ---- friends and blocks

/// Locks the users' rows, in id order, for the rest of the transaction.
pub async fn lock_users(c: &impl GenericClient, users: &[UserId]) -> Result<()> {
    c.query(
        "SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&keys(users)],
    )
    .await?;
    Ok(())
}

pub async fn is_active(c: &impl GenericClient, id: UserId) -> Result<bool> {
    Ok(
        c.query_opt("SELECT disabled FROM users WHERE id = $1", &[&key(id)])
            .await?
            .is_some_and(|r| !r.get::<_, bool>(0)),
    )
}

async fn exists(c: &impl GenericClient, sql: &str, a: UserId, b: UserId) -> Result<bool> {
    Ok(c.query_opt(sql, &[&key(a), &key(b)]).await?.is_some())
}

pub async fn has_blocked(c: &impl GenericClient, user: UserId, other: UserId) -> Result<bool> {
    exists(
        c,
        "SELECT 1 FROM blocks WHERE user_id = $1 AND blocked_id = $2",
        user,
        other,
    )
    .await
}

async fn request(c: &impl GenericClient, id: u64) -> Result<Option<FriendRequestRecord>> {
    let sql = format!("{REQUEST_SELECT} WHERE r.id = $1");
    c.query_opt(&sql, &[&key(id)])
        .await?
        .map(|r| rows::request(&r))
        .transpose()
}

async fn pending(c: &impl GenericClient, from: UserId, to: UserId) -> Result<Option<u64>> {
    Ok(c.query_opt(
        "SELECT id FROM friend_requests WHERE from_id = $1 AND to_id = $2 AND status = 1
             ORDER BY id DESC LIMIT 1",
        &[&key(from), &key(to)],
    )
    .await?
    .map(|r| rows::id(&r, 0)))
}

async fn befriend(c: &impl GenericClient, a: UserId, b: UserId, now_ms: i64) -> Result<()> {
    c.execute(
        "INSERT INTO friends (user_id, friend_id, since_ms) VALUES ($1, $2, $3), ($2, $1, $3)
         ON CONFLICT DO NOTHING",
        &[&key(a), &key(b), &now_ms],
    )
    .await?;
    Ok(())
}

/// Writes what a [`rules::FriendPlan`] says, with `text` as the request's
/// message or reply, and reads the request back.
async fn apply(
    c: &impl GenericClient,
    plan: FriendPlan,
    text: &str,
    now_ms: i64,
) -> Result<FriendRequestRecord> {
    if let Some((a, b)) = plan.befriend {
        befriend(c, a, b, now_ms).await?;
    }
    let id = match plan.request {
        RequestWrite::Decide(id, status) => {
            c.execute(
                "UPDATE friend_requests SET status = $2, reply = $3, decided_at_ms = $4
                 WHERE id = $1",
                &[&key(id), &(status as i16), &text, &now_ms],
            )
            .await?;
            id
        }
        RequestWrite::Renew(id) => {
            c.execute(
                "UPDATE friend_requests SET message = $2, created_at_ms = $3 WHERE id = $1",
                &[&key(id), &text, &now_ms],
            )
            .await?;
            id
        }
        RequestWrite::Create { from, to } => rows::id(
            &c.query_one(
                "INSERT INTO friend_requests (from_id, to_id, message, status, created_at_ms)
                 VALUES ($1, $2, $3, 1, $4) RETURNING id",
                &[&key(from), &key(to), &text, &now_ms],
            )
            .await?,
            0,
        ),
    };
    request(c, id)
        .await?
        .ok_or(StoreError::NotFound("friend request"))
}

pub async fn send_friend_request(
    c: &impl GenericClient,
    from: UserId,
    to: UserId,
    message: &str,
    now_ms: i64,
) -> Result<FriendRequestOutcome> {
    lock_users(c, &[from, to]).await?;
    let facts = if from == to {
        RequestFacts::default()
    } else {
        RequestFacts {
            to_active: is_active(c, to).await?,
            friends: exists(
                c,
                "SELECT 1 FROM friends WHERE user_id = $1 AND friend_id = $2",
                from,
                to,
            )
            .await?,
            blocked: has_blocked(c, to, from).await?,
            theirs: pending(c, to, from).await?,
            mine: pending(c, from, to).await?,
        }
    };
    let plan = rules::send_request(from, to, facts)?;
    let request = apply(c, plan, message, now_ms).await?;
    Ok(FriendRequestOutcome {
        request,
        notify: plan.notify,
    })
}

pub async fn respond_friend_request(
    c: &impl GenericClient,
    me: UserId,
    id: u64,
    accept: bool,
    reply: &str,
    now_ms: i64,
) -> Result<FriendRequestRecord> {
    if let Some(r) = request(c, id).await? {
        lock_users(c, &[r.from, r.to]).await?;
    }
    // Read again under the locks: another node may have answered it.
    let r = request(c, id).await?;
    let from_active = match &r {
        Some(r) if accept => is_active(c, r.from).await?,
        _ => false,
    };
    let plan = rules::respond_request(r.as_ref(), me, accept, from_active)?;
    apply(c, plan, reply, now_ms).await
}

pub async fn set_remark(
    c: &impl GenericClient,
    me: UserId,
    friend: UserId,
    remark: &str,
) -> Result<()> {
    let n = c
        .execute(
            "UPDATE friends SET remark = $3 WHERE user_id = $1 AND friend_id = $2",
            &[&key(me), &key(friend), &remark],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound("friend"));
    }
    Ok(())
}

pub async fn remove_friend(c: &impl GenericClient, me: UserId, other: UserId) -> Result<()> {
    lock_users(c, &[me, other]).await?;
    let n = c
        .execute(
            "DELETE FROM friends WHERE (user_id = $1 AND friend_id = $2)
                OR (user_id = $2 AND friend_id = $1)",
            &[&key(me), &key(other)],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound("friend"));
    }
    Ok(())
}

pub async fn set_blocked(
    c: &impl GenericClient,
    me: UserId,
    other: UserId,
    blocked: bool,
    max_blocked: usize,
) -> Result<()> {
    // The blocker's row is what keeps two nodes from both passing the cap.
    lock_users(c, &[me, other]).await?;
    let (active, already) = if me == other {
        (true, false)
    } else {
        (is_active(c, other).await?, has_blocked(c, me, other).await?)
    };
    let count = if blocked && !already && me != other {
        c.query_one(
            "SELECT COUNT(*) FROM blocks WHERE user_id = $1",
            &[&key(me)],
        )
        .await?
        .get::<_, i64>(0) as usize
    } else {
        0
    };
    rules::may_block(me, other, active, blocked, already, count, max_blocked)?;
    let sql = if blocked {
        "INSERT INTO blocks (user_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2"
    };
    c.execute(sql, &[&key(me), &key(other)]).await?;
    Ok(())
}
