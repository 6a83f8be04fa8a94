//! The facts group writes load, and the writes that are the same
//! everywhere: a group's head, the users someone adds, a request to join.
//! The membership changes themselves (events, seqs, the fan-out) are each
//! backend's own `apply`, which follows its engine's write path.

use super::lists::{join_request_row, join_request_select};
use super::{args, each, Db};
use crate::rules::{Candidate, GroupHead};
use crate::{ConversationId, JoinOutcome, Result, Role, StoreError, UserId};
use std::collections::HashMap;

/// What the rules need to know of a group before changing it.
pub(crate) async fn head(db: &impl Db, id: ConversationId) -> Result<GroupHead> {
    let r = db
        .opt(
            "SELECT c.kind, g.join_policy, g.dismissed, g.member_count, c.last_seq, g.invite_code,
                    g.owner_id
             FROM groups g JOIN conversations c ON c.id = g.conversation_id
             WHERE g.conversation_id = $1",
            args![id],
        )
        .await?
        .ok_or(StoreError::NotFound("group"))?;
    Ok(GroupHead {
        id,
        kind: r.stored(0)?,
        policy: r.stored(1)?,
        dismissed: r.get(2)?,
        member_count: r.get::<i64>(3)?.clamp(0, u32::MAX.into()) as u32,
        last_seq: r.get(4)?,
        invite_code: r.get(5)?,
        owner: r.get(6)?,
    })
}

/// What the rules need to know of users someone adds, in the order asked;
/// a user who does not exist is inactive.
pub(crate) async fn candidates(
    db: &impl Db,
    users: &[UserId],
    actor: UserId,
) -> Result<Vec<Candidate>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let found = db
        .rows(
            "SELECT u.id, u.disabled,
                    EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.id AND b.blocked_id = $2)
             FROM users u WHERE u.id = ANY($1)",
            args![users, actor],
        )
        .await?;
    let found: HashMap<u64, (bool, bool)> =
        each(found, |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
            .into_iter()
            .collect();
    Ok(users
        .iter()
        .map(|&u| {
            let (disabled, blocked) = found.get(&u).copied().unwrap_or((true, false));
            Candidate {
                id: u,
                active: !disabled,
                blocked_actor: blocked,
            }
        })
        .collect())
}

/// Records (or renews) `user`'s request to join a group that needs
/// approval; the request and who may approve it.
pub(crate) async fn request_to_join(
    db: &impl Db,
    id: ConversationId,
    user: UserId,
    message: &str,
    now_ms: i64,
) -> Result<JoinOutcome> {
    db.exec(
        "INSERT INTO join_requests (conversation_id, user_id, message, created_at_ms)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (conversation_id, user_id) DO UPDATE SET message = $3, created_at_ms = $4",
        args![id, user, message, now_ms],
    )
    .await?;
    let approvers = db
        .rows(
            "SELECT user_id FROM members WHERE conversation_id = $1 AND left_seq = 0
             AND role >= $2 ORDER BY user_id",
            args![id, Role::Admin as i64],
        )
        .await?;
    let request = db
        .one(
            concat!(
                join_request_select!(),
                " WHERE j.conversation_id = $1 AND j.user_id = $2"
            ),
            args![id, user],
        )
        .await?;
    Ok(JoinOutcome::Pending {
        request: join_request_row(&request)?,
        approvers: each(approvers, |r| r.get(0))?,
    })
}
