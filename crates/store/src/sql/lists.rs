//! Lists, and group reads: the conversation list (every conversation of a
//! user with its last message, read cursor, unread count and mention flag,
//! newest first), a group as a viewer may see it, the groups of a user, the
//! rooms to discover, a group's members and its join requests.

use super::messages::message_row;
use super::{args, each, has_nul, Db, Row};
use crate::rules::{self, ListRow, Refusal};
use crate::{
    Before, BodyKind, ConversationId, ConversationKind, ConversationSummary, GroupRecord,
    JoinRequestRecord, MemberRecord, Page, Result, Role, StoreError, StoredMessage, UserId,
};
use std::collections::HashMap;

/// Unread counts stop here; a client shows "9999+".
const MAX_UNREAD: i64 = 9999;

// The kinds `conversations` names in its SQL.
const _: () = assert!(BodyKind::System as i64 == 4 && BodyKind::Recalled as i64 == 5);
const _: () = assert!(ConversationKind::Direct as i64 == 1);

/// A page of the conversation list in two statements whatever its length:
/// the memberships with their titles and counts, then the last messages.
/// The counts are select-list subqueries rather than joins so that the
/// database evaluates them after the sort and limit, for the page's rows
/// only.
pub(crate) async fn conversations(
    db: &impl Db,
    user: UserId,
    before: Option<Before>,
    page: Page,
) -> Result<(Vec<ConversationSummary>, bool)> {
    let before = before.unwrap_or(Before {
        activity_ms: i64::MAX,
        id: u64::MAX,
    });
    let found = db
        .rows(
            "SELECT c.id, c.kind, c.last_seq, c.last_activity_ms, m.read_seq, m.joined_seq, g.name,
                    p.user_id, pu.username,
                    (SELECT count(*) FROM (SELECT 1 FROM messages x
                        WHERE x.conversation_id = c.id
                          AND x.seq > greatest(m.read_seq, m.joined_seq)
                          AND x.sender_id <> $1 AND x.body_kind NOT IN (4, 5)
                        LIMIT $5) AS y),
                    EXISTS (SELECT 1 FROM mentions x WHERE x.user_id = $1
                        AND x.conversation_id = c.id
                        AND x.seq > greatest(m.read_seq, m.joined_seq))
                    OR EXISTS (SELECT 1 FROM messages x WHERE x.conversation_id = c.id
                        AND x.seq > greatest(m.read_seq, m.joined_seq) AND x.mention_all
                        AND x.sender_id <> $1)
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             LEFT JOIN groups g ON g.conversation_id = c.id
             LEFT JOIN members p ON c.kind = 1 AND p.conversation_id = c.id AND p.user_id <> $1
             LEFT JOIN users pu ON pu.id = p.user_id
             WHERE m.user_id = $1 AND m.left_seq = 0
               AND (c.last_activity_ms < $2 OR (c.last_activity_ms = $2 AND c.id < $3))
             ORDER BY c.last_activity_ms DESC, c.id DESC LIMIT $4",
            args![
                user,
                before.activity_ms,
                before.id,
                page.items.saturating_add(1),
                MAX_UNREAD
            ],
        )
        .await?;
    let listed = each(found, |r| {
        Ok(ListRow {
            id: r.get(0)?,
            kind: r.stored(1)?,
            last_seq: r.get(2)?,
            last_activity_ms: r.get(3)?,
            read_seq: r.get(4)?,
            joined_seq: r.get(5)?,
            name: r.get(6)?,
            peer: match r.get::<Option<u64>>(7)? {
                Some(p) => Some((p, r.get::<Option<String>>(8)?.unwrap_or_default())),
                None => None,
            },
            unread: r.get::<i64>(9)?.clamp(0, MAX_UNREAD) as u32,
            mentioned: r.get(10)?,
        })
    })?;
    let wanted: Vec<(u64, u64)> = listed
        .iter()
        .filter(|r| r.last_seq > r.joined_seq)
        .map(|r| (r.id, r.last_seq))
        .collect();
    let mut last: HashMap<ConversationId, StoredMessage> = HashMap::new();
    for r in db.messages_at(&wanted).await? {
        let m = message_row(&r)?;
        last.insert(m.conversation_id, m);
    }
    let out = listed
        .into_iter()
        .map(|r| {
            let last = last.remove(&r.id);
            rules::summarize(r, last)
        })
        .collect();
    Ok(page.cut(out, ConversationSummary::size_hint))
}

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
pub(crate) use group_select;

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
    let listed = member_rows(db, id, after, fetch(page));
    // Who may not see the group hears that it does not exist (see
    // `group`), whatever the page read alongside found.
    let (_, listed) = tokio::try_join!(group(db, id, viewer), listed)?;
    Ok(page.cut(listed, MemberRecord::size_hint))
}

/// Up to `limit` current members of a group by user id after `after`,
/// whoever asks (the callers check who may see them).
pub(crate) async fn member_rows(
    db: &impl Db,
    id: ConversationId,
    after: UserId,
    limit: usize,
) -> Result<Vec<MemberRecord>> {
    let found = db
        .rows(
            "SELECT m.user_id, u.username, m.role, m.muted_until_ms, m.joined_at_ms
             FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = $1 AND m.left_seq = 0 AND m.user_id > $2
             ORDER BY m.user_id LIMIT $3",
            args![id, after, limit],
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
