//! Groups and rooms: creation, joining, roles, moderation and join requests.
//! Each change runs in its own transaction that first locks the conversation
//! row, so it is ordered with the sends around it (on every node) and judged
//! against the members as they are; it records a system event in the same
//! transaction.

use super::engine::dialect::Pg;
use super::messages::{lock, system_event, view, Published};
use super::rows::{self, key};
use crate::rules::{self, Change, JoinStep};
use crate::sql::groups::{candidates, head, request_to_join};
use crate::sql::lists::{group, role_of};
use crate::{
    ConversationId, GroupAction, GroupLimits, GroupRecord, JoinOutcome, NewGroup, Result, Role,
    StoreError, UserId,
};
use tokio_postgres::Transaction;

async fn add_member(
    tx: &Transaction<'_>,
    id: ConversationId,
    user: UserId,
    role: Role,
    joined_seq: u64,
    now_ms: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO members (user_id, conversation_id, role, joined_seq, read_seq, delivered_seq, joined_at_ms)
         VALUES ($1, $2, $3, $4, $4, $4, $5)
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET role = $3, joined_seq = $4,
            read_seq = $4, delivered_seq = $4, left_seq = 0, muted_until_ms = 0, joined_at_ms = $5",
        &[&key(user), &key(id), &(role as i16), &key(joined_seq), &now_ms],
    )
    .await?;
    tx.execute(
        "UPDATE groups SET member_count = member_count + 1 WHERE conversation_id = $1",
        &[&key(id)],
    )
    .await?;
    tx.execute(
        "DELETE FROM join_requests WHERE conversation_id = $1 AND user_id = $2",
        &[&key(id), &key(user)],
    )
    .await?;
    Ok(())
}

pub async fn create_group(
    tx: &Transaction<'_>,
    new: &NewGroup,
    limits: GroupLimits,
    publish: &mut Published,
) -> Result<GroupRecord> {
    let found = candidates(&Pg(tx), &new.members, new.creator).await?;
    let plan = rules::create_group(new, &found, limits)?;
    let id = rows::id(
        &tx.query_one(
            "INSERT INTO conversations (kind, created_at_ms, last_activity_ms) VALUES ($1, $2, $2)
             RETURNING id",
            &[&(new.kind as i16), &new.now_ms],
        )
        .await?,
        0,
    );
    tx.execute(
        "INSERT INTO groups (conversation_id, name, notice, owner_id, join_policy, member_count,
            invite_code) VALUES ($1, $2, $3, $4, $5, 0, $6)",
        &[
            &key(id),
            &new.name,
            &new.notice,
            &key(new.creator),
            &(new.join_policy as i16),
            &new.invite_code,
        ],
    )
    .await?;
    for &(u, role) in &plan.members {
        add_member(tx, id, u, role, 0, new.now_ms).await?;
    }
    system_event(tx, id, 0, &plan.event, new.now_ms, plan.audience, publish).await?;
    group(&Pg(tx), id, new.creator).await
}

#[allow(clippy::too_many_arguments)]
pub async fn join(
    tx: &Transaction<'_>,
    user: UserId,
    id: ConversationId,
    message: &str,
    code: &str,
    limits: GroupLimits,
    now_ms: i64,
    publish: &mut Published,
) -> Result<JoinOutcome> {
    lock(tx, id).await?.ok_or(StoreError::NotFound("group"))?;
    let h = head(&Pg(tx), id).await?;
    let member = role_of(&Pg(tx), id, user).await?.is_some();
    let change = match rules::join(&h, user, member, code, limits)? {
        JoinStep::AlreadyMember => return Ok(JoinOutcome::Joined),
        JoinStep::Join(change) => *change,
        JoinStep::Request => return request_to_join(&Pg(tx), id, user, message, now_ms).await,
    };
    let before = view(tx, id).await?.members;
    apply(tx, id, h.last_seq, &before, change, now_ms, publish).await?;
    Ok(JoinOutcome::Joined)
}

#[allow(clippy::too_many_arguments)]
pub async fn act(
    tx: &Transaction<'_>,
    actor: rules::GroupActor,
    id: ConversationId,
    action: &GroupAction,
    limits: GroupLimits,
    now_ms: i64,
    publish: &mut Published,
) -> Result<()> {
    lock(tx, id).await?.ok_or(StoreError::NotFound("group"))?;
    let h = head(&Pg(tx), id).await?;
    let v = view(tx, id).await?;
    let found = match action {
        GroupAction::Invite(users) => {
            candidates(&Pg(tx), users, actor.user().unwrap_or_default()).await?
        }
        _ => Vec::new(),
    };
    let asked = match action {
        GroupAction::RespondJoin(u, _) => tx
            .query_opt(
                "SELECT 1 FROM join_requests WHERE conversation_id = $1 AND user_id = $2",
                &[&key(id), &key(*u)],
            )
            .await?
            .is_some(),
        _ => false,
    };
    match rules::act(&h, &v.roles, actor, action, &found, asked, limits, now_ms)? {
        Some(change) => apply(tx, id, h.last_seq, &v.members, change, now_ms, publish).await,
        None => Ok(()),
    }
}

/// Writes a change in the order [`Change`] gives.
async fn apply(
    tx: &Transaction<'_>,
    id: ConversationId,
    last_seq: u64,
    before: &[UserId],
    change: Change,
    now_ms: i64,
    publish: &mut Published,
) -> Result<()> {
    if let Some(u) = change.drop_join_request {
        tx.execute(
            "DELETE FROM join_requests WHERE conversation_id = $1 AND user_id = $2",
            &[&key(id), &key(u)],
        )
        .await?;
    }
    let u = &change.update;
    tx.execute(
        "UPDATE groups SET name = COALESCE($2, name), notice = COALESCE($3, notice),
            join_policy = COALESCE($4, join_policy), muted_all = COALESCE($5, muted_all),
            invite_code = COALESCE($6, invite_code), owner_id = COALESCE($7, owner_id),
            dismissed = dismissed OR $8
         WHERE conversation_id = $1",
        &[
            &key(id),
            &u.name,
            &u.notice,
            &u.join_policy.map(|p| p as i16),
            &u.muted_all,
            &u.invite_code,
            &u.owner.map(key),
            &u.dismissed,
        ],
    )
    .await?;
    for &(user, role) in &change.roles {
        tx.execute(
            "UPDATE members SET role = $3 WHERE conversation_id = $1 AND user_id = $2",
            &[&key(id), &key(user), &(role as i16)],
        )
        .await?;
    }
    if let Some((user, until_ms)) = change.mute {
        tx.execute(
            "UPDATE members SET muted_until_ms = $3 WHERE conversation_id = $1 AND user_id = $2",
            &[&key(id), &key(user), &until_ms],
        )
        .await?;
    }
    for &user in &change.add {
        add_member(tx, id, user, Role::Member, change.joined_seq, now_ms).await?;
    }
    if let Some(event) = &change.event {
        let to = change.audience(before);
        let m = system_event(tx, id, last_seq, event, now_ms, to, publish).await?;
        if let Some(user) = change.remove {
            tx.execute(
                "UPDATE members SET left_seq = $3 WHERE user_id = $1 AND conversation_id = $2",
                &[&key(user), &key(id), &key(m.seq)],
            )
            .await?;
            tx.execute(
                "UPDATE groups SET member_count = member_count - 1 WHERE conversation_id = $1",
                &[&key(id)],
            )
            .await?;
        }
    }
    Ok(())
}
