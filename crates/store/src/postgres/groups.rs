//! Groups and rooms: creation, joining, roles, moderation and join requests.
//! Each change runs in its own transaction that first locks the conversation
//! row, so it is ordered with the sends around it (on every node) and judged
//! against the members as they are; it records a system event in the same
//! transaction.

use super::messages::{lock, system_event, view, Published};
use super::rows::{self, fetch, key, keys, GROUP_SELECT, JOIN_REQUEST_SELECT};
use crate::rules::{self, Candidate, Change, GroupHead, JoinStep, Refusal};
use crate::{
    ConversationId, ConversationKind, GroupAction, GroupLimits, GroupRecord, JoinOutcome,
    JoinRequestRecord, NewGroup, Page, Result, Role, StoreError, UserId,
};
use std::collections::HashMap;
use tokio_postgres::{GenericClient, Transaction};

/// A group as `viewer` may see it: rooms are public, groups are visible to
/// their members only (to anyone else, one who asked to join included,
/// they do not exist).
pub async fn group(
    c: &impl GenericClient,
    id: ConversationId,
    viewer: UserId,
) -> Result<GroupRecord> {
    let sql = format!("{GROUP_SELECT} WHERE g.conversation_id = $2");
    let g = c
        .query_opt(&sql, &[&key(viewer), &key(id)])
        .await?
        .map(|r| rows::group(&r))
        .transpose()?
        .ok_or(StoreError::NotFound("group"))?;
    if g.kind == ConversationKind::Group && g.my_role.is_none() {
        return Err(StoreError::NotFound("group"));
    }
    Ok(g)
}

/// The join requests of a group by user id after `after`, for its owner
/// and admins: two statements, sent together; the page read alongside is
/// dropped when the actor may not see it.
pub async fn join_requests_for(
    c: &impl GenericClient,
    actor: UserId,
    id: ConversationId,
    after: UserId,
    page: Page,
) -> Result<(Vec<JoinRequestRecord>, bool)> {
    let listed = async {
        let sql = format!(
            "{JOIN_REQUEST_SELECT} WHERE j.conversation_id = $1 AND j.user_id > $2
             ORDER BY j.user_id LIMIT $3"
        );
        let found = c
            .query(&sql, &[&key(id), &key(after), &fetch(page)])
            .await?;
        Ok::<_, StoreError>(found.iter().map(rows::join_request).collect::<Vec<_>>())
    };
    let (role, listed) = tokio::try_join!(role_of(c, id, actor), listed)?;
    match role {
        Some(r) if r >= Role::Admin => Ok(page.cut(listed, JoinRequestRecord::size_hint)),
        Some(_) => Err(Refusal::JoinRequestsAdminsOnly.into()),
        None => Err(StoreError::NotMember(id)),
    }
}

/// A current member's role; `None` for anyone else.
pub async fn role_of(
    c: &impl GenericClient,
    id: ConversationId,
    user: UserId,
) -> Result<Option<Role>> {
    let row = c
        .query_opt(
            "SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2 AND left_seq = 0",
            &[&key(id), &key(user)],
        )
        .await?;
    row.map(|r| rows::stored(&r, 0)).transpose()
}

async fn head(tx: &Transaction<'_>, id: ConversationId) -> Result<GroupHead> {
    let r = tx
        .query_opt(
            "SELECT c.kind, g.join_policy, g.dismissed, g.member_count, c.last_seq, g.invite_code
             FROM groups g JOIN conversations c ON c.id = g.conversation_id
             WHERE g.conversation_id = $1",
            &[&key(id)],
        )
        .await?
        .ok_or(StoreError::NotFound("group"))?;
    Ok(GroupHead {
        id,
        kind: rows::stored(&r, 0)?,
        policy: rows::stored(&r, 1)?,
        dismissed: r.get(2),
        member_count: r.get::<_, i32>(3).max(0) as u32,
        last_seq: rows::id(&r, 4),
        invite_code: r.get(5),
    })
}

/// What the rules need to know of users someone adds, in the order asked.
async fn candidates(
    tx: &Transaction<'_>,
    users: &[UserId],
    actor: UserId,
) -> Result<Vec<Candidate>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let found: HashMap<u64, (bool, bool)> = tx
        .query(
            "SELECT u.id, u.disabled,
                    EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.id AND b.blocked_id = $2)
             FROM users u WHERE u.id = ANY($1)",
            &[&keys(users), &key(actor)],
        )
        .await?
        .iter()
        .map(|r| (rows::id(r, 0), (r.get(1), r.get(2))))
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
    let found = candidates(tx, &new.members, new.creator).await?;
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
    group(tx, id, new.creator).await
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
    let h = head(tx, id).await?;
    let member = role_of(tx, id, user).await?.is_some();
    let change = match rules::join(&h, user, member, code, limits)? {
        JoinStep::AlreadyMember => return Ok(JoinOutcome::Joined),
        JoinStep::Join(change) => *change,
        JoinStep::Request => {
            tx.execute(
                "INSERT INTO join_requests (conversation_id, user_id, message, created_at_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (conversation_id, user_id) DO UPDATE SET message = $3, created_at_ms = $4",
                &[&key(id), &key(user), &message, &now_ms],
            )
            .await?;
            let approvers = tx
                .query(
                    "SELECT user_id FROM members WHERE conversation_id = $1 AND left_seq = 0
                     AND role >= $2 ORDER BY user_id",
                    &[&key(id), &(Role::Admin as i16)],
                )
                .await?
                .iter()
                .map(|r| rows::id(r, 0))
                .collect();
            let request = rows::join_request(
                &tx.query_one(
                    &format!(
                        "{JOIN_REQUEST_SELECT} WHERE j.conversation_id = $1 AND j.user_id = $2"
                    ),
                    &[&key(id), &key(user)],
                )
                .await?,
            );
            return Ok(JoinOutcome::Pending { request, approvers });
        }
    };
    let before = view(tx, id).await?.members;
    apply(tx, id, h.last_seq, &before, change, now_ms, publish).await?;
    Ok(JoinOutcome::Joined)
}

#[allow(clippy::too_many_arguments)]
pub async fn act(
    tx: &Transaction<'_>,
    actor: UserId,
    id: ConversationId,
    action: &GroupAction,
    limits: GroupLimits,
    now_ms: i64,
    publish: &mut Published,
) -> Result<()> {
    lock(tx, id).await?.ok_or(StoreError::NotFound("group"))?;
    let h = head(tx, id).await?;
    let v = view(tx, id).await?;
    let found = match action {
        GroupAction::Invite(users) => candidates(tx, users, actor).await?,
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
