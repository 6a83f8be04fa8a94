//! Friends, friend requests and blocks. A social write first locks the rows
//! of the users it is about, in id order, so that two nodes cannot
//! interleave, say, two crossing friend requests into a state a single
//! writer could not produce (and never deadlock doing so).

use super::rows::{self, fetch, has_nul, id, key, keys, limit, REQUEST_SELECT, USER_COLUMNS};
use crate::rules::{self, FriendPlan, RequestFacts, RequestWrite};
use crate::{
    FriendList, FriendRecord, FriendRequestOutcome, FriendRequestPage, FriendRequestRecord, Page,
    RequestStatus, Result, StoreError, UserId, UserRecord,
};
use tokio_postgres::GenericClient;

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

/// The newest pending requests to `me`, hiding those from users `me` has
/// blocked.
pub async fn pending_incoming(
    c: &impl GenericClient,
    me: UserId,
    max: usize,
) -> Result<Vec<FriendRequestRecord>> {
    let sql = format!(
        "{REQUEST_SELECT} WHERE r.to_id = $1 AND r.status = {pending}
         AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = $1 AND b.blocked_id = r.from_id)
         ORDER BY r.id DESC LIMIT $2",
        pending = RequestStatus::Pending as i16,
    );
    c.query(&sql, &[&key(me), &limit(max)])
        .await?
        .iter()
        .map(rows::request)
        .collect()
}

/// Requests to and from `me` below `before_id` (0: from the newest), newest
/// first, as one list split into both directions; requests from users `me`
/// has blocked are left out.
pub async fn friend_requests(
    c: &impl GenericClient,
    me: UserId,
    before_id: u64,
    page: Page,
) -> Result<FriendRequestPage> {
    let sql = format!(
        "{REQUEST_SELECT} WHERE r.id < $2 AND (r.from_id = $1 OR (r.to_id = $1
         AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = $1 AND b.blocked_id = r.from_id)))
         ORDER BY r.id DESC LIMIT $3"
    );
    let before = if before_id == 0 {
        i64::MAX
    } else {
        key(before_id)
    };
    let found: Vec<FriendRequestRecord> = c
        .query(&sql, &[&key(me), &before, &fetch(page)])
        .await?
        .iter()
        .map(rows::request)
        .collect::<Result<_>>()?;
    let (found, has_more) = page.cut(found, FriendRequestRecord::size_hint);
    let (incoming, outgoing) = found.into_iter().partition(|r| r.to == me);
    Ok(FriendRequestPage {
        incoming,
        outgoing,
        has_more,
    })
}

/// A page of friends by username after `after`, with the blocked list on
/// the first page: one statement, two sent together on the first page.
/// Names compare bytewise (`COLLATE "C"`) as in SQLite, whatever the
/// database's collation.
pub async fn friends(
    c: &impl GenericClient,
    me: UserId,
    after: &str,
    page: Page,
) -> Result<FriendList> {
    // Stored names hold no NUL, so the names after "ab\0..." are exactly
    // those after "ab".
    let after = after.split('\0').next().unwrap_or_default();
    let first = after.is_empty();
    let blocked = async {
        if !first {
            return Ok(Vec::new());
        }
        let found = c
            .query(
                "SELECT b.blocked_id, u.username FROM blocks b JOIN users u ON u.id = b.blocked_id
                 WHERE b.user_id = $1 ORDER BY u.username COLLATE \"C\"",
                &[&key(me)],
            )
            .await?;
        Ok::<_, StoreError>(found.iter().map(|r| (id(r, 0), r.get(1))).collect())
    };
    let listed = async {
        let found = c
            .query(
                "SELECT f.friend_id, u.username, f.remark, f.since_ms,
                    EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = $1 AND b.blocked_id = f.friend_id)
                 FROM friends f JOIN users u ON u.id = f.friend_id
                 WHERE f.user_id = $1 AND u.username COLLATE \"C\" > $2
                 ORDER BY u.username COLLATE \"C\" LIMIT $3",
                &[&key(me), &after, &fetch(page)],
            )
            .await?;
        Ok::<_, StoreError>(
            found
                .iter()
                .map(|r| FriendRecord {
                    user_id: id(r, 0),
                    username: r.get(1),
                    remark: r.get(2),
                    since_ms: r.get(3),
                    blocked: r.get(4),
                })
                .collect::<Vec<_>>(),
        )
    };
    let (blocked, listed): (Vec<(UserId, String)>, _) = tokio::try_join!(blocked, listed)?;
    let blocked_bytes: usize = blocked.iter().map(|(_, n)| n.len() + 16).sum();
    let room = Page {
        items: page.items,
        bytes: page.bytes.saturating_sub(blocked_bytes),
    };
    let (friends, has_more) = room.cut(listed, FriendRecord::size_hint);
    Ok(FriendList {
        friends,
        blocked,
        has_more,
    })
}

/// Everyone `me` counts as a friend, by id.
pub async fn friend_ids(c: &impl GenericClient, me: UserId) -> Result<Vec<UserId>> {
    Ok(c.query(
        "SELECT friend_id FROM friends WHERE user_id = $1 ORDER BY friend_id",
        &[&key(me)],
    )
    .await?
    .iter()
    .map(|r| id(r, 0))
    .collect())
}

/// Active users whose name starts with `prefix`, by name. Names are ASCII
/// below 0x7f, so the bytewise range `[prefix, prefix || 0x7f)` is exactly
/// the prefix, as in SQLite. The range is compared in the C collation to be
/// bytewise; the name's unique index has the database's collation, so it
/// serves this only where that is C, until an index on
/// `username COLLATE "C"` exists.
pub async fn search_users(
    c: &impl GenericClient,
    prefix: &str,
    max: usize,
) -> Result<Vec<UserRecord>> {
    if has_nul(prefix) {
        return Ok(Vec::new());
    }
    let upper = format!("{prefix}\u{7f}");
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users
         WHERE username COLLATE \"C\" >= $1 AND username COLLATE \"C\" < $2 AND NOT disabled
         ORDER BY username COLLATE \"C\" LIMIT $3"
    );
    Ok(c.query(&sql, &[&prefix, &upper, &limit(max)])
        .await?
        .iter()
        .map(rows::user)
        .collect())
}
