//! Friends, friend requests and blocks. A social write first locks the rows
//! of the users it is about (`Db::lock_users`, in id order), so that two
//! writers cannot interleave, say, two crossing friend requests into a
//! state one writer could not produce (and never deadlock doing so).

use super::accounts::{user_columns, user_row};
use super::{args, each, has_nul, Db, Row};
use crate::rules::{self, FriendPlan, RequestFacts, RequestWrite};
use crate::{
    FriendList, FriendRecord, FriendRequestOutcome, FriendRequestPage, FriendRequestRecord, Page,
    Result, StoreError, UserId, UserRecord,
};

macro_rules! request_select {
    () => {
        "SELECT r.id, r.from_id, f.username, r.to_id, t.username, r.message,
         r.status, r.reply, r.created_at_ms, r.decided_at_ms
         FROM friend_requests r JOIN users f ON f.id = r.from_id JOIN users t ON t.id = r.to_id"
    };
}

fn request_row(r: &Row) -> Result<FriendRequestRecord> {
    Ok(FriendRequestRecord {
        id: r.get(0)?,
        from: r.get(1)?,
        from_name: r.get(2)?,
        to: r.get(3)?,
        to_name: r.get(4)?,
        message: r.get(5)?,
        status: r.stored(6)?,
        reply: r.get(7)?,
        created_at_ms: r.get(8)?,
        decided_at_ms: r.get(9)?,
    })
}

/// A page's LIMIT: one row more than it may hold, to know whether more
/// follow.
fn fetch(page: Page) -> usize {
    page.items.saturating_add(1)
}

pub(crate) async fn is_active(db: &impl Db, id: UserId) -> Result<bool> {
    let row = db
        .opt("SELECT disabled FROM users WHERE id = $1", args![id])
        .await?;
    Ok(match row {
        Some(r) => !r.get::<bool>(0)?,
        None => false,
    })
}

pub(crate) async fn are_friends(db: &impl Db, a: UserId, b: UserId) -> Result<bool> {
    db.exists(
        "SELECT 1 FROM friends WHERE user_id = $1 AND friend_id = $2",
        args![a, b],
    )
    .await
}

pub(crate) async fn has_blocked(db: &impl Db, user: UserId, other: UserId) -> Result<bool> {
    db.exists(
        "SELECT 1 FROM blocks WHERE user_id = $1 AND blocked_id = $2",
        args![user, other],
    )
    .await
}

async fn request(db: &impl Db, id: u64) -> Result<Option<FriendRequestRecord>> {
    db.opt(concat!(request_select!(), " WHERE r.id = $1"), args![id])
        .await?
        .map(|r| request_row(&r))
        .transpose()
}

async fn pending(db: &impl Db, from: UserId, to: UserId) -> Result<Option<u64>> {
    db.opt(
        "SELECT id FROM friend_requests WHERE from_id = $1 AND to_id = $2 AND status = 1
         ORDER BY id DESC LIMIT 1",
        args![from, to],
    )
    .await?
    .map(|r| r.get(0))
    .transpose()
}

/// Writes what a [`rules::FriendPlan`] says, with `text` as the request's
/// message or reply, and reads the request back.
async fn apply(
    db: &impl Db,
    plan: FriendPlan,
    text: &str,
    now_ms: i64,
) -> Result<FriendRequestRecord> {
    if let Some((a, b)) = plan.befriend {
        db.exec(
            "INSERT INTO friends (user_id, friend_id, since_ms) VALUES ($1, $2, $3), ($2, $1, $3)
             ON CONFLICT DO NOTHING",
            args![a, b, now_ms],
        )
        .await?;
    }
    let id = match plan.request {
        RequestWrite::Decide(id, status) => {
            db.exec(
                "UPDATE friend_requests SET status = $2, reply = $3, decided_at_ms = $4
                 WHERE id = $1",
                args![id, status as i64, text, now_ms],
            )
            .await?;
            id
        }
        RequestWrite::Renew(id) => {
            db.exec(
                "UPDATE friend_requests SET message = $2, created_at_ms = $3 WHERE id = $1",
                args![id, text, now_ms],
            )
            .await?;
            id
        }
        RequestWrite::Create { from, to } => db
            .one(
                "INSERT INTO friend_requests (from_id, to_id, message, status, created_at_ms)
                 VALUES ($1, $2, $3, 1, $4) RETURNING id",
                args![from, to, text, now_ms],
            )
            .await?
            .get(0)?,
    };
    request(db, id)
        .await?
        .ok_or(StoreError::NotFound("friend request"))
}

pub(crate) async fn send_friend_request(
    db: &impl Db,
    from: UserId,
    to: UserId,
    message: &str,
    now_ms: i64,
) -> Result<FriendRequestOutcome> {
    db.lock_users(&[from, to]).await?;
    let facts = if from == to {
        RequestFacts::default()
    } else {
        RequestFacts {
            to_active: is_active(db, to).await?,
            friends: are_friends(db, from, to).await?,
            blocked: has_blocked(db, to, from).await?,
            theirs: pending(db, to, from).await?,
            mine: pending(db, from, to).await?,
        }
    };
    let plan = rules::send_request(from, to, facts)?;
    let request = apply(db, plan, message, now_ms).await?;
    Ok(FriendRequestOutcome {
        request,
        notify: plan.notify,
    })
}

pub(crate) async fn respond_friend_request(
    db: &impl Db,
    me: UserId,
    id: u64,
    accept: bool,
    reply: &str,
    now_ms: i64,
) -> Result<FriendRequestRecord> {
    if let Some(r) = request(db, id).await? {
        db.lock_users(&[r.from, r.to]).await?;
    }
    // Read again under the locks: another writer may have answered it.
    let r = request(db, id).await?;
    let from_active = match &r {
        Some(r) if accept => is_active(db, r.from).await?,
        _ => false,
    };
    let plan = rules::respond_request(r.as_ref(), me, accept, from_active)?;
    apply(db, plan, reply, now_ms).await
}

pub(crate) async fn set_remark(
    db: &impl Db,
    me: UserId,
    friend: UserId,
    remark: &str,
) -> Result<()> {
    let n = db
        .exec(
            "UPDATE friends SET remark = $3 WHERE user_id = $1 AND friend_id = $2",
            args![me, friend, remark],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound("friend"));
    }
    Ok(())
}

pub(crate) async fn remove_friend(db: &impl Db, me: UserId, other: UserId) -> Result<()> {
    db.lock_users(&[me, other]).await?;
    let n = db
        .exec(
            "DELETE FROM friends WHERE (user_id = $1 AND friend_id = $2)
                OR (user_id = $2 AND friend_id = $1)",
            args![me, other],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound("friend"));
    }
    Ok(())
}

pub(crate) async fn set_blocked(
    db: &impl Db,
    me: UserId,
    other: UserId,
    blocked: bool,
    max_blocked: usize,
) -> Result<()> {
    // The blocker's row is what keeps two writers from both passing the cap.
    db.lock_users(&[me, other]).await?;
    let (active, already) = if me == other {
        (true, false)
    } else {
        (
            is_active(db, other).await?,
            has_blocked(db, me, other).await?,
        )
    };
    let count = if blocked && !already && me != other {
        db.one("SELECT COUNT(*) FROM blocks WHERE user_id = $1", args![me])
            .await?
            .get::<u64>(0)? as usize
    } else {
        0
    };
    rules::may_block(me, other, active, blocked, already, count, max_blocked)?;
    if blocked {
        db.exec(
            "INSERT INTO blocks (user_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            args![me, other],
        )
        .await?;
    } else {
        db.exec(
            "DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2",
            args![me, other],
        )
        .await?;
    }
    Ok(())
}

/// The newest pending requests to `me`, hiding those from users `me` has
/// blocked.
pub(crate) async fn pending_incoming(
    db: &impl Db,
    me: UserId,
    max: usize,
) -> Result<Vec<FriendRequestRecord>> {
    let found = db
        .rows(
            concat!(
                request_select!(),
                " WHERE r.to_id = $1 AND r.status = 1
                 AND NOT EXISTS (SELECT 1 FROM blocks b
                     WHERE b.user_id = $1 AND b.blocked_id = r.from_id)
                 ORDER BY r.id DESC LIMIT $2"
            ),
            args![me, max],
        )
        .await?;
    each(found, request_row)
}

/// Requests to and from `me` below `before_id` (0: from the newest), newest
/// first, as one list split into both directions; requests from users `me`
/// has blocked are left out.
pub(crate) async fn friend_requests(
    db: &impl Db,
    me: UserId,
    before_id: u64,
    page: Page,
) -> Result<FriendRequestPage> {
    let before = if before_id == 0 { u64::MAX } else { before_id };
    let found = db
        .rows(
            concat!(
                request_select!(),
                " WHERE r.id < $2 AND (r.from_id = $1 OR (r.to_id = $1
                 AND NOT EXISTS (SELECT 1 FROM blocks b
                     WHERE b.user_id = $1 AND b.blocked_id = r.from_id)))
                 ORDER BY r.id DESC LIMIT $3"
            ),
            args![me, before, fetch(page)],
        )
        .await?;
    let found = each(found, request_row)?;
    let (found, has_more) = page.cut(found, FriendRequestRecord::size_hint);
    let (incoming, outgoing) = found.into_iter().partition(|r| r.to == me);
    Ok(FriendRequestPage {
        incoming,
        outgoing,
        has_more,
    })
}

/// A page of friends by username after `after`, with the blocked list on
/// the first page. Names compare bytewise (`COLLATE "C"`), whatever the
/// database's collation.
pub(crate) async fn friends(
    db: &impl Db,
    me: UserId,
    after: &str,
    page: Page,
) -> Result<FriendList> {
    // Stored names hold no NUL, so the names after "ab\0..." are exactly
    // those after "ab".
    let after = after.split('\0').next().unwrap_or_default();
    let blocked = async {
        if !after.is_empty() {
            return Ok(Vec::new());
        }
        let found = db
            .rows(
                "SELECT b.blocked_id, u.username FROM blocks b JOIN users u ON u.id = b.blocked_id
                 WHERE b.user_id = $1 ORDER BY u.username COLLATE \"C\"",
                args![me],
            )
            .await?;
        each(found, |r| Ok((r.get(0)?, r.get(1)?)))
    };
    let listed = async {
        let found = db
            .rows(
                "SELECT f.friend_id, u.username, f.remark, f.since_ms,
                    EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = $1 AND b.blocked_id = f.friend_id)
                 FROM friends f JOIN users u ON u.id = f.friend_id
                 WHERE f.user_id = $1 AND u.username COLLATE \"C\" > $2
                 ORDER BY u.username COLLATE \"C\" LIMIT $3",
                args![me, after, fetch(page)],
            )
            .await?;
        each(found, |r| {
            Ok(FriendRecord {
                user_id: r.get(0)?,
                username: r.get(1)?,
                remark: r.get(2)?,
                since_ms: r.get(3)?,
                blocked: r.get(4)?,
            })
        })
    };
    // Both at once where the backend can (two statements in flight).
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
pub(crate) async fn friend_ids(db: &impl Db, me: UserId) -> Result<Vec<UserId>> {
    let found = db
        .rows(
            "SELECT friend_id FROM friends WHERE user_id = $1 ORDER BY friend_id",
            args![me],
        )
        .await?;
    each(found, |r| r.get(0))
}

/// Active users whose name starts with `prefix`, by name. Names are ASCII
/// below 0x7f, so the bytewise range `[prefix, prefix || 0x7f)` is exactly
/// the prefix. The range is compared bytewise (`COLLATE "C"`); where the
/// name's index has another collation it cannot serve this.
pub(crate) async fn search_users(
    db: &impl Db,
    prefix: &str,
    max: usize,
) -> Result<Vec<UserRecord>> {
    if has_nul(prefix) {
        return Ok(Vec::new());
    }
    let upper = format!("{prefix}\u{7f}");
    let found = db
        .rows(
            concat!(
                "SELECT ",
                user_columns!(),
                " FROM users
                 WHERE username COLLATE \"C\" >= $1 AND username COLLATE \"C\" < $2
                   AND NOT disabled
                 ORDER BY username COLLATE \"C\" LIMIT $3"
            ),
            args![prefix, upper.as_str(), max],
        )
        .await?;
    each(found, user_row)
}
