//! Group reads and lists: a group as a viewer may see it, the groups of a
//! user, the rooms to discover, a group's members and its join requests.

use super::{args, each, has_nul, Db, Row};
use crate::rules::Refusal;
use crate::{
    ConversationId, ConversationKind, GroupRecord, JoinRequestRecord, MemberRecord, Page, Result,
    Role, StoreError, UserId,
};

/// The select a group is read with; `$1` is the viewer (for `my_role`).
macro_rules! group_select {
    () => {
        "SELECT g.conversation_id, c.kind, g.name, g.notice, g.owner_id,
         g.join_policy, g.muted_all, g.dismissed, g.member_count, c.last_seq, c.created_at_ms,
         (SELECT m.role FROM members m WHERE m.user_id = $1
             AND m.conversation_id = g.conversation_id AND m.left_seq = 0),
         g.invite_code
         FROM groups g JOIN conversations c ON c.id = g.conversation_id"
    };
}

/// Reads a group with [`group_select`]'s columns.
pub(crate) fn group_row(r: &Row) -> Result<GroupRecord> {
    Ok(GroupRecord {
        id: r.get(0)?,
        kind: r.stored(1)?,
        name: r.get(2)?,
        notice: r.get(3)?,
        owner_id: r.get(4)?,
        join_policy: r.stored(5)?,
        muted_all: r.get(6)?,
        dismissed: r.get(7)?,
        member_count: r.get::<i64>(8)?.clamp(0, u32::MAX.into()) as u32,
        last_seq: r.get(9)?,
        created_at_ms: r.get(10)?,
        my_role: match r.get::<Option<i64>>(11)? {
            Some(_) => Some(r.stored(11)?),
            None => None,
        },
        invite_code: r.get(12)?,
    })
}

/// A page's LIMIT: one row more than it may hold, to know whether more
/// follow.
fn fetch(page: Page) -> usize {
    page.items.saturating_add(1)
}

/// A group as `viewer` may see it: rooms are public, groups are visible to
/// their members only (to anyone else, one who asked to join included,
/// they do not exist).
pub(crate) async fn group(db: &impl Db, id: ConversationId, viewer: UserId) -> Result<GroupRecord> {
    let g = db
        .opt(
            concat!(group_select!(), " WHERE g.conversation_id = $2"),
            args![viewer, id],
        )
        .await?
        .map(|r| group_row(&r))
        .transpose()?
        .ok_or(StoreError::NotFound("group"))?;
    if g.kind == ConversationKind::Group && g.my_role.is_none() {
        return Err(StoreError::NotFound("group"));
    }
    Ok(g)
}

/// A page of the user's groups and rooms by id after `after`, dismissed
/// ones left out.
pub(crate) async fn groups_of(
    db: &impl Db,
    user: UserId,
    after: ConversationId,
    page: Page,
) -> Result<(Vec<GroupRecord>, bool)> {
    let found = db
        .rows(
            concat!(
                group_select!(),
                " JOIN members me ON me.conversation_id = g.conversation_id
                 WHERE me.user_id = $1 AND me.left_seq = 0 AND NOT g.dismissed
                   AND g.conversation_id > $2
                 ORDER BY g.conversation_id LIMIT $3"
            ),
            args![user, after, fetch(page)],
        )
        .await?;
    Ok(page.cut(each(found, group_row)?, GroupRecord::size_hint))
}

/// A page of live rooms whose name starts with `prefix`, by id after
/// `after`. The prefix is matched literally (`%`, `_` and `\` escaped) and
/// case-insensitively for ASCII letters only (`COLLATE "C" ILIKE`).
pub(crate) async fn rooms(
    db: &impl Db,
    viewer: UserId,
    prefix: &str,
    after: ConversationId,
    page: Page,
) -> Result<(Vec<GroupRecord>, bool)> {
    if has_nul(prefix) {
        return Ok((Vec::new(), false));
    }
    let pattern = format!(
        "{}%",
        prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let found = db
        .rows(
            concat!(
                group_select!(),
                " WHERE c.kind = $5 AND NOT g.dismissed AND g.conversation_id > $2
                 AND g.name COLLATE \"C\" ILIKE $3 ESCAPE '\\'
                 ORDER BY g.conversation_id LIMIT $4"
            ),
            args![
                viewer,
                after,
                pattern.as_str(),
                fetch(page),
                ConversationKind::Room as i64
            ],
        )
        .await?;
    Ok(page.cut(each(found, group_row)?, GroupRecord::size_hint))
}

/// A page of a group's current members by user id after `after`, for
/// whoever may see the group: two statements, sent together where the
/// backend can.
pub(crate) async fn members(
    db: &impl Db,
    id: ConversationId,
    viewer: UserId,
    after: UserId,
    page: Page,
) -> Result<(Vec<MemberRecord>, bool)> {
    let listed = async {
        let found = db
            .rows(
                "SELECT m.user_id, u.username, m.role, m.muted_until_ms, m.joined_at_ms
                 FROM members m JOIN users u ON u.id = m.user_id
                 WHERE m.conversation_id = $1 AND m.left_seq = 0 AND m.user_id > $2
                 ORDER BY m.user_id LIMIT $3",
                args![id, after, fetch(page)],
            )
            .await?;
        each(found, |r| {
            Ok(MemberRecord {
                user_id: r.get(0)?,
                username: r.get(1)?,
                role: r.stored(2)?,
                muted_until_ms: r.get(3)?,
                joined_at_ms: r.get(4)?,
            })
        })
    };
    // Who may not see the group hears that it does not exist (see
    // `group`), whatever the page read alongside found.
    let (_, listed) = tokio::try_join!(group(db, id, viewer), listed)?;
    Ok(page.cut(listed, MemberRecord::size_hint))
}

macro_rules! join_request_select {
    () => {
        "SELECT j.conversation_id, j.user_id, u.username, j.message, j.created_at_ms
         FROM join_requests j JOIN users u ON u.id = j.user_id"
    };
}
pub(crate) use join_request_select;

pub(crate) fn join_request_row(r: &Row) -> Result<JoinRequestRecord> {
    Ok(JoinRequestRecord {
        conversation_id: r.get(0)?,
        user_id: r.get(1)?,
        username: r.get(2)?,
        message: r.get(3)?,
        created_at_ms: r.get(4)?,
    })
}

/// A current member's role; `None` for anyone else.
pub(crate) async fn role_of(
    db: &impl Db,
    id: ConversationId,
    user: UserId,
) -> Result<Option<Role>> {
    db.opt(
        "SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2 AND left_seq = 0",
        args![id, user],
    )
    .await?
    .map(|r| r.stored(0))
    .transpose()
}

/// The join requests of a group by user id after `after`, for its owner
/// and admins: two statements, sent together where the backend can; the
/// page read alongside is dropped when the actor may not see it.
pub(crate) async fn join_requests_for(
    db: &impl Db,
    actor: UserId,
    id: ConversationId,
    after: UserId,
    page: Page,
) -> Result<(Vec<JoinRequestRecord>, bool)> {
    let listed = async {
        let found = db
            .rows(
                concat!(
                    join_request_select!(),
                    " WHERE j.conversation_id = $1 AND j.user_id > $2
                     ORDER BY j.user_id LIMIT $3"
                ),
                args![id, after, fetch(page)],
            )
            .await?;
        each(found, join_request_row)
    };
    let (role, listed) = tokio::try_join!(role_of(db, id, actor), listed)?;
    match role {
        Some(r) if r >= Role::Admin => Ok(page.cut(listed, JoinRequestRecord::size_hint)),
        Some(_) => Err(Refusal::JoinRequestsAdminsOnly.into()),
        None => Err(StoreError::NotMember(id)),
    }
}
