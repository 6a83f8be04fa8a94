//! The changes of a conversation that append a system event, written once
//! for the backends with a writer task of their own per node (PostgreSQL,
//! MySQL): groups made, joined and changed, and messages recalled. Each
//! runs in one transaction that first locks the conversation row, so it is
//! ordered with the sends around it (on every node) and judged against the
//! members as they are; it records its system event in the same
//! transaction and leaves it to publish once the transaction commits.
//!
//! What a backend writes its own way (its message table's form) it gives
//! through [`Writes`].

use super::groups::{candidates, head, request_to_join};
use super::lists::{group, role_of};
use super::{args, each, Db};
use crate::rules::{self, Change, ConversationView, JoinStep, RecallStep, Recallable, SystemEvent};
use crate::{
    BodyKind, Committed, ConversationId, GroupAction, GroupLimits, GroupRecord, JoinOutcome,
    NewGroup, Result, Role, StoreError, StoredMessage, UserId,
};
use std::collections::HashMap;
use std::sync::Arc;

/// What a change leaves to publish once it commits.
pub(crate) type Published = Vec<Committed>;

/// A transaction of a backend whose message rows are its own form.
pub(crate) trait Writes: Db {
    /// Inserts messages (with what makes their (conversation, sender,
    /// client_msg_id) unique); their ids, in order.
    async fn insert_messages(&self, messages: &[&StoredMessage]) -> Result<Vec<u64>>;

    /// Empties a recalled message: its body and its mentions.
    async fn blank_message(&self, conversation: ConversationId, seq: u64) -> Result<()>;
}

/// Locks a conversation row; its last seq, or `None` when there is none.
pub(crate) async fn lock(db: &impl Db, id: ConversationId) -> Result<Option<u64>> {
    db.opt(
        "SELECT last_seq FROM conversations WHERE id = $1 FOR UPDATE",
        args![id],
    )
    .await?
    .map(|r| r.get(0))
    .transpose()
}

/// A conversation as the rules judge it: its kind, state, members and roles.
pub(crate) async fn view(db: &impl Db, id: ConversationId) -> Result<ConversationView> {
    let head = db
        .opt(
            "SELECT c.kind, COALESCE(g.dismissed, false), COALESCE(g.muted_all, false)
             FROM conversations c LEFT JOIN groups g ON g.conversation_id = c.id WHERE c.id = $1",
            args![id],
        )
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
    let found = db
        .rows(
            "SELECT user_id, role, muted_until_ms FROM members
             WHERE conversation_id = $1 AND left_seq = 0 ORDER BY user_id",
            args![id],
        )
        .await?;
    let found = each(found, |r| {
        Ok((r.get::<u64>(0)?, (r.stored::<Role>(1)?, r.get::<i64>(2)?)))
    })?;
    let members: Vec<UserId> = found.iter().map(|&(u, _)| u).collect();
    let roles: HashMap<UserId, (Role, i64)> = found.into_iter().collect();
    Ok(ConversationView {
        kind: head.stored(0)?,
        dismissed: head.get(1)?,
        muted_all: head.get(2)?,
        members: members.into(),
        roles,
    })
}

/// Appends a system event after `last_seq` and queues it for `to`.
pub(crate) async fn system_event(
    db: &impl Writes,
    conversation: ConversationId,
    last_seq: u64,
    event: &SystemEvent,
    now_ms: i64,
    to: Arc<[UserId]>,
    publish: &mut Published,
) -> Result<StoredMessage> {
    let seq = last_seq + 1;
    let mut m = event.message(conversation, seq, now_ms);
    m.msg_id = db
        .insert_messages(&[&m])
        .await?
        .first()
        .copied()
        .unwrap_or(0);
    db.exec(
        "UPDATE conversations SET last_seq = $2, last_activity_ms = greatest(last_activity_ms, $3)
         WHERE id = $1",
        args![conversation, seq, now_ms],
    )
    .await?;
    publish.push(Committed {
        message: Arc::new(m.clone()),
        members: to,
        origin: None,
    });
    Ok(m)
}

/// Recalls a message (its sender within the window, or a group's admins),
/// leaving a tombstone and a system event.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn recall(
    db: &impl Writes,
    actor: UserId,
    conversation: ConversationId,
    seq: u64,
    window_ms: i64,
    now_ms: i64,
    publish: &mut Published,
) -> Result<()> {
    let last_seq = lock(db, conversation)
        .await?
        .ok_or(StoreError::NotMember(conversation))?;
    let v = view(db, conversation).await?;
    let message = db
        .opt(
            "SELECT sender_id, body_kind, created_at_ms FROM messages
             WHERE conversation_id = $1 AND seq = $2",
            args![conversation, seq],
        )
        .await?
        .map(|r| {
            Ok::<_, StoreError>(Recallable {
                sender: r.get(0)?,
                kind: r.stored::<BodyKind>(1)?,
                server_ts_ms: r.get(2)?,
            })
        })
        .transpose()?;
    let plan = match rules::recall(&v, conversation, seq, actor, message, window_ms, now_ms)? {
        RecallStep::Done => return Ok(()),
        RecallStep::Recall(plan) => plan,
    };
    db.blank_message(conversation, plan.seq).await?;
    db.exec(
        "DELETE FROM mentions WHERE conversation_id = $1 AND seq = $2",
        args![conversation, plan.seq],
    )
    .await?;
    system_event(
        db,
        conversation,
        last_seq,
        &plan.event,
        now_ms,
        plan.audience,
        publish,
    )
    .await?;
    Ok(())
}

async fn add_member(
    db: &impl Db,
    id: ConversationId,
    user: UserId,
    role: Role,
    joined_seq: u64,
    now_ms: i64,
) -> Result<()> {
    db.exec(
        "INSERT INTO members (user_id, conversation_id, role, joined_seq, read_seq, delivered_seq,
            joined_at_ms)
         VALUES ($1, $2, $3, $4, $4, $4, $5)
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET role = $3, joined_seq = $4,
            read_seq = $4, delivered_seq = $4, left_seq = 0, muted_until_ms = 0, joined_at_ms = $5",
        args![user, id, role as i64, joined_seq, now_ms],
    )
    .await?;
    db.exec(
        "UPDATE groups SET member_count = member_count + 1 WHERE conversation_id = $1",
        args![id],
    )
    .await?;
    db.exec(
        "DELETE FROM join_requests WHERE conversation_id = $1 AND user_id = $2",
        args![id, user],
    )
    .await?;
    Ok(())
}

pub(crate) async fn create_group(
    db: &impl Writes,
    new: &NewGroup,
    limits: GroupLimits,
    publish: &mut Published,
) -> Result<GroupRecord> {
    let found = candidates(db, &new.members, new.creator).await?;
    let plan = rules::create_group(new, &found, limits)?;
    let id: ConversationId = db
        .one(
            "INSERT INTO conversations (kind, created_at_ms, last_activity_ms) VALUES ($1, $2, $2)
             RETURNING id",
            args![new.kind as i64, new.now_ms],
        )
        .await?
        .get(0)?;
    db.exec(
        "INSERT INTO groups (conversation_id, name, notice, owner_id, join_policy, member_count,
            invite_code) VALUES ($1, $2, $3, $4, $5, 0, $6)",
        args![
            id,
            new.name.as_str(),
            new.notice.as_str(),
            new.creator,
            new.join_policy as i64,
            new.invite_code.as_str()
        ],
    )
    .await?;
    for &(u, role) in &plan.members {
        add_member(db, id, u, role, 0, new.now_ms).await?;
    }
    system_event(db, id, 0, &plan.event, new.now_ms, plan.audience, publish).await?;
    group(db, id, new.creator).await
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn join(
    db: &impl Writes,
    user: UserId,
    id: ConversationId,
    message: &str,
    code: &str,
    limits: GroupLimits,
    now_ms: i64,
    publish: &mut Published,
) -> Result<JoinOutcome> {
    lock(db, id).await?.ok_or(StoreError::NotFound("group"))?;
    let h = head(db, id).await?;
    let member = role_of(db, id, user).await?.is_some();
    let change = match rules::join(&h, user, member, code, limits)? {
        JoinStep::AlreadyMember => return Ok(JoinOutcome::Joined),
        JoinStep::Join(change) => *change,
        JoinStep::Request => return request_to_join(db, id, user, message, now_ms).await,
    };
    let before = view(db, id).await?.members;
    apply(db, id, h.last_seq, &before, change, now_ms, publish).await?;
    Ok(JoinOutcome::Joined)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn act(
    db: &impl Writes,
    actor: rules::GroupActor,
    id: ConversationId,
    action: &GroupAction,
    limits: GroupLimits,
    now_ms: i64,
    publish: &mut Published,
) -> Result<()> {
    lock(db, id).await?.ok_or(StoreError::NotFound("group"))?;
    let h = head(db, id).await?;
    let v = view(db, id).await?;
    let found = match action {
        GroupAction::Invite(users) => {
            candidates(db, users, actor.user().unwrap_or_default()).await?
        }
        _ => Vec::new(),
    };
    let asked = match action {
        GroupAction::RespondJoin(u, _) => {
            db.exists(
                "SELECT 1 FROM join_requests WHERE conversation_id = $1 AND user_id = $2",
                args![id, *u],
            )
            .await?
        }
        _ => false,
    };
    match rules::act(&h, &v.roles, actor, action, &found, asked, limits, now_ms)? {
        Some(change) => apply(db, id, h.last_seq, &v.members, change, now_ms, publish).await,
        None => Ok(()),
    }
}

/// Writes a change in the order [`Change`] gives.
async fn apply(
    db: &impl Writes,
    id: ConversationId,
    last_seq: u64,
    before: &[UserId],
    change: Change,
    now_ms: i64,
    publish: &mut Published,
) -> Result<()> {
    if let Some(u) = change.drop_join_request {
        db.exec(
            "DELETE FROM join_requests WHERE conversation_id = $1 AND user_id = $2",
            args![id, u],
        )
        .await?;
    }
    let u = &change.update;
    db.exec(
        "UPDATE groups SET name = COALESCE($2, name), notice = COALESCE($3, notice),
            join_policy = COALESCE($4, join_policy), muted_all = COALESCE($5, muted_all),
            invite_code = COALESCE($6, invite_code), owner_id = COALESCE($7, owner_id),
            dismissed = dismissed OR $8
         WHERE conversation_id = $1",
        args![
            id,
            u.name.as_deref(),
            u.notice.as_deref(),
            u.join_policy.map(|p| p as i64),
            u.muted_all,
            u.invite_code.as_deref(),
            u.owner,
            u.dismissed
        ],
    )
    .await?;
    for &(user, role) in &change.roles {
        db.exec(
            "UPDATE members SET role = $3 WHERE conversation_id = $1 AND user_id = $2",
            args![id, user, role as i64],
        )
        .await?;
    }
    if let Some((user, until_ms)) = change.mute {
        db.exec(
            "UPDATE members SET muted_until_ms = $3 WHERE conversation_id = $1 AND user_id = $2",
            args![id, user, until_ms],
        )
        .await?;
    }
    for &user in &change.add {
        add_member(db, id, user, Role::Member, change.joined_seq, now_ms).await?;
    }
    if let Some(event) = &change.event {
        let to = change.audience(before);
        let m = system_event(db, id, last_seq, event, now_ms, to, publish).await?;
        if let Some(user) = change.remove {
            db.exec(
                "UPDATE members SET left_seq = $3 WHERE user_id = $1 AND conversation_id = $2",
                args![user, id, m.seq],
            )
            .await?;
            db.exec(
                "UPDATE groups SET member_count = member_count - 1 WHERE conversation_id = $1",
                args![id],
            )
            .await?;
        }
    }
    Ok(())
}
