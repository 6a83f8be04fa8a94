//! Reads: lookups, sync, history, the conversation list, friends and
//! groups. Each page is a bounded number of statements, whatever its size;
//! statements of one read that do not depend on each other are sent
//! together (pipelined on the connection) instead of one after another.
//!
//! Every function takes any [`GenericClient`], so it runs on a pooled
//! client or inside a caller's transaction alike. Paging follows the SQLite
//! backend exactly: a page reads one row more than it may hold and is cut
//! with [`Page::cut`].

use super::rows::{
    self, id, key, keys, GROUP_SELECT, JOIN_REQUEST_SELECT, MESSAGE_COLUMNS, REQUEST_SELECT,
    USER_COLUMNS,
};
use crate::rules::ListRow;
use crate::rules::{self, Refusal, SyncRow, SYNC_CONVERSATIONS};
use crate::{
    Before, BodyKind, ConversationId, ConversationKind, ConversationSummary, FriendList,
    FriendRecord, FriendRequestPage, FriendRequestRecord, GroupRecord, HistoryPage,
    JoinRequestRecord, MemberRecord, MemberState, Page, RequestStatus, Result, Role, SessionRecord,
    StoreError, StoredMessage, SyncPage, UserId, UserRecord, SYNC_FRIEND_REQUESTS,
};
use std::collections::HashMap;
use tokio_postgres::GenericClient;

/// Unread counts stop here; a client shows "9999+".
const MAX_UNREAD: i64 = 9999;

/// A row count as a LIMIT: a page larger than BIGINT is as good as unbounded.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One row more than the page may hold, to know whether more follow.
fn fetch(page: Page) -> i64 {
    limit(page.items).saturating_add(1)
}

/// PostgreSQL text cannot hold NUL, and no stored name does: an argument
/// with one matches nothing, where sending it would fail the statement.
fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

// ---- accounts

pub async fn user_by_name(c: &impl GenericClient, username: &str) -> Result<Option<UserRecord>> {
    if has_nul(username) {
        return Ok(None);
    }
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
    Ok(c.query_opt(&sql, &[&username])
        .await?
        .map(|r| rows::user(&r)))
}

pub async fn user_by_id(c: &impl GenericClient, id: UserId) -> Result<Option<UserRecord>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(c.query_opt(&sql, &[&key(id)])
        .await?
        .map(|r| rows::user(&r)))
}

/// Users named by id or by name, each once, by id: one statement.
pub async fn users(
    c: &impl GenericClient,
    ids: &[UserId],
    names: &[String],
) -> Result<Vec<UserRecord>> {
    let names: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !has_nul(n))
        .collect();
    if ids.is_empty() && names.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1) OR username = ANY($2) ORDER BY id"
    );
    Ok(c.query(&sql, &[&keys(ids), &names])
        .await?
        .iter()
        .map(rows::user)
        .collect())
}

pub async fn session_by_token(
    c: &impl GenericClient,
    token_hash: &[u8; 32],
) -> Result<Option<SessionRecord>> {
    let row = c
        .query_opt(
            "SELECT s.id, s.user_id, u.username, s.device_id, s.expires_at_ms, s.revoked, u.disabled
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
            &[&token_hash.as_slice()],
        )
        .await?;
    Ok(row.map(|r| SessionRecord {
        id: id(&r, 0),
        user_id: id(&r, 1),
        username: r.get(2),
        device_id: r.get(3),
        expires_at_ms: r.get(4),
        revoked: r.get(5),
        user_disabled: r.get(6),
    }))
}

// ---- messages

/// One sync page; see [`crate::Store::sync`] and [`rules::assemble_sync`].
/// Four statements at most: the memberships, then, sent together, the 1:1
/// member states, the due messages and the pending friend requests. The
/// requests are read with the others unless the memberships alone show
/// that more pages follow (only a pass's last page lists them), so a page
/// that turns out not to be last has read up to [`SYNC_FRIEND_REQUESTS`]
/// rows it does not use; waiting for the messages to know would make the
/// last page, and so every sync that fits in one page, wait for the server
/// once more.
pub async fn sync(
    c: &impl GenericClient,
    user: UserId,
    cursors: &HashMap<ConversationId, u64>,
    after: ConversationId,
    page: Page,
) -> Result<SyncPage> {
    let rows: Vec<SyncRow> = c
        .query(
            "SELECT c.id, c.kind, c.last_seq, m.joined_seq, m.left_seq
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = $1 AND m.conversation_id > $2
             ORDER BY m.conversation_id LIMIT $3",
            &[&key(user), &key(after), &limit(SYNC_CONVERSATIONS + 1)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(SyncRow {
                id: id(r, 0),
                kind: rows::kind(r.get(1))?,
                last_seq: id(r, 2),
                joined_seq: id(r, 3),
                left_seq: id(r, 4),
            })
        })
        .collect::<Result<_>>()?;
    let direct = rules::direct_ids(&rows);
    let ranges = rules::due_ranges(&rows, cursors);
    let maybe_last = rows.len() <= SYNC_CONVERSATIONS;
    let (members, messages, pending) = tokio::try_join!(
        direct_states(c, &direct),
        due_messages(c, &ranges, page.items),
        async {
            if maybe_last {
                pending_incoming(c, user, SYNC_FRIEND_REQUESTS).await
            } else {
                Ok(Vec::new())
            }
        },
    )?;
    rules::assemble_sync(rows, cursors, members, messages, after, page, || {
        Ok(pending)
    })
}

/// Both members' delivered cursors of each 1:1, in one statement.
async fn direct_states(
    c: &impl GenericClient,
    direct: &[ConversationId],
) -> Result<HashMap<ConversationId, Vec<MemberState>>> {
    let mut out: HashMap<ConversationId, Vec<MemberState>> = HashMap::new();
    if direct.is_empty() {
        return Ok(out);
    }
    let found = c
        .query(
            "SELECT conversation_id, user_id, delivered_seq FROM members
             WHERE conversation_id = ANY($1) ORDER BY conversation_id, user_id",
            &[&keys(direct)],
        )
        .await?;
    for r in &found {
        out.entry(id(r, 0)).or_default().push(MemberState {
            user_id: id(r, 1),
            delivered_seq: id(r, 2),
        });
    }
    Ok(out)
}

/// The first `items` messages of all `ranges`, in range order and then seq
/// order, in one statement that stops reading there: the ordinality of
/// `unnest` is known to come sorted, so the planner sorts incrementally
/// range by range under the limit, and each range's own LIMIT keeps one
/// long backlog from being read whole before the sort may stop.
async fn due_messages(
    c: &impl GenericClient,
    ranges: &[(ConversationId, u64, u64)],
    items: usize,
) -> Result<Vec<StoredMessage>> {
    if ranges.is_empty() || items == 0 {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(ranges.len());
    let mut lo = Vec::with_capacity(ranges.len());
    let mut hi = Vec::with_capacity(ranges.len());
    for &(cid, a, u) in ranges {
        ids.push(key(cid));
        lo.push(key(a));
        hi.push(key(u));
    }
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS d(cid, lo, hi, ord)
         CROSS JOIN LATERAL (
            SELECT {MESSAGE_COLUMNS} FROM messages m
            WHERE m.conversation_id = d.cid AND m.seq > d.lo AND m.seq <= d.hi
            ORDER BY m.seq LIMIT $4
         ) AS m
         ORDER BY d.ord, m.seq LIMIT $4"
    );
    c.query(&sql, &[&ids, &lo, &hi, &limit(items)])
        .await?
        .iter()
        .map(rows::message)
        .collect()
}

/// A page of messages below `before_seq` (0: from the newest), newest
/// first, within what the user may see: two statements.
pub async fn history(
    c: &impl GenericClient,
    user: UserId,
    conversation: ConversationId,
    before_seq: u64,
    page: Page,
) -> Result<HistoryPage> {
    let Some((joined, upto)) = visible_range(c, user, conversation).await? else {
        return Err(StoreError::NotMember(conversation));
    };
    let newest = upto.saturating_add(1);
    let before = if before_seq == 0 {
        newest
    } else {
        before_seq.min(newest)
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m
         WHERE m.conversation_id = $1 AND m.seq < $2 AND m.seq > $3
         ORDER BY m.seq DESC LIMIT $4"
    );
    let found: Vec<StoredMessage> = c
        .query(
            &sql,
            &[&key(conversation), &key(before), &key(joined), &fetch(page)],
        )
        .await?
        .iter()
        .map(rows::message)
        .collect::<Result<_>>()?;
    let (messages, has_more) = page.cut(found, StoredMessage::size_hint);
    Ok(HistoryPage { messages, has_more })
}

/// The seqs a member may see: after `joined_seq`, up to what
/// [`rules::visible_upto`] says. `None` when the user was never a member.
pub async fn visible_range(
    c: &impl GenericClient,
    user: UserId,
    conversation: ConversationId,
) -> Result<Option<(u64, u64)>> {
    let row = c
        .query_opt(
            "SELECT m.joined_seq, m.left_seq, c.last_seq
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = $1 AND m.conversation_id = $2",
            &[&key(user), &key(conversation)],
        )
        .await?;
    Ok(row.map(|r| (id(&r, 0), rules::visible_upto(id(&r, 1), id(&r, 2)))))
}

/// Current members of a conversation, ascending.
pub async fn members_of(
    c: &impl GenericClient,
    conversation: ConversationId,
) -> Result<Vec<UserId>> {
    Ok(c.query(
        "SELECT user_id FROM members WHERE conversation_id = $1 AND left_seq = 0 ORDER BY user_id",
        &[&key(conversation)],
    )
    .await?
    .iter()
    .map(|r| id(r, 0))
    .collect())
}

/// Current members of a conversation the user belongs to (for ephemeral
/// signals such as typing).
pub async fn audience(
    c: &impl GenericClient,
    user: UserId,
    conversation: ConversationId,
) -> Result<Vec<UserId>> {
    let members = members_of(c, conversation).await?;
    if members.binary_search(&user).is_err() {
        return Err(StoreError::NotMember(conversation));
    }
    Ok(members)
}

// ---- the conversation list

/// A page of the list in two statements whatever its length: the
/// memberships with their titles and counts, then the last messages. The
/// counts are select-list subqueries rather than joins so that PostgreSQL
/// evaluates them after the sort and limit, for the page's rows only.
pub async fn conversations(
    c: &impl GenericClient,
    user: UserId,
    before: Option<Before>,
    page: Page,
) -> Result<(Vec<ConversationSummary>, bool)> {
    let before = before.unwrap_or(Before {
        activity_ms: i64::MAX,
        id: u64::MAX,
    });
    let sql = format!(
        "SELECT c.id, c.kind, c.last_seq, c.last_activity_ms, m.read_seq, m.joined_seq, g.name,
                p.user_id, pu.username,
                (SELECT count(*) FROM (SELECT 1 FROM messages x
                    WHERE x.conversation_id = c.id AND x.seq > greatest(m.read_seq, m.joined_seq)
                      AND x.sender_id <> $1 AND x.body_kind NOT IN ({system}, {recalled})
                    LIMIT $5) AS y),
                EXISTS (SELECT 1 FROM mentions x WHERE x.user_id = $1
                    AND x.conversation_id = c.id AND x.seq > greatest(m.read_seq, m.joined_seq))
                OR EXISTS (SELECT 1 FROM messages x WHERE x.conversation_id = c.id
                    AND x.seq > greatest(m.read_seq, m.joined_seq) AND x.mention_all
                    AND x.sender_id <> $1)
         FROM members m JOIN conversations c ON c.id = m.conversation_id
         LEFT JOIN groups g ON g.conversation_id = c.id
         LEFT JOIN members p ON c.kind = {direct} AND p.conversation_id = c.id AND p.user_id <> $1
         LEFT JOIN users pu ON pu.id = p.user_id
         WHERE m.user_id = $1 AND m.left_seq = 0
           AND (c.last_activity_ms < $2 OR (c.last_activity_ms = $2 AND c.id < $3))
         ORDER BY c.last_activity_ms DESC, c.id DESC LIMIT $4",
        system = BodyKind::System as i16,
        recalled = BodyKind::Recalled as i16,
        direct = ConversationKind::Direct as i16,
    );
    let listed: Vec<ListRow> = c
        .query(
            &sql,
            &[
                &key(user),
                &before.activity_ms,
                &key(before.id),
                &fetch(page),
                &MAX_UNREAD,
            ],
        )
        .await?
        .iter()
        .map(|r| {
            let peer: Option<i64> = r.get(7);
            let peer_name: Option<String> = r.get(8);
            Ok(ListRow {
                id: id(r, 0),
                kind: rows::kind(r.get(1))?,
                last_seq: id(r, 2),
                last_activity_ms: r.get(3),
                read_seq: id(r, 4),
                joined_seq: id(r, 5),
                name: r.get(6),
                peer: peer.map(|p| (p as UserId, peer_name.unwrap_or_default())),
                unread: r.get::<_, i64>(9).clamp(0, MAX_UNREAD) as u32,
                mentioned: r.get(10),
            })
        })
        .collect::<Result<_>>()?;
    let (ids, seqs): (Vec<i64>, Vec<i64>) = listed
        .iter()
        .filter(|r| r.last_seq > r.joined_seq)
        .map(|r| (key(r.id), key(r.last_seq)))
        .unzip();
    let mut last: HashMap<ConversationId, StoredMessage> = HashMap::new();
    if !ids.is_empty() {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM unnest($1::bigint[], $2::bigint[]) AS d(cid, seq)
             JOIN messages m ON m.conversation_id = d.cid AND m.seq = d.seq"
        );
        for r in c.query(&sql, &[&ids, &seqs]).await? {
            let m = rows::message(&r)?;
            last.insert(m.conversation_id, m);
        }
    }
    let out = listed
        .into_iter()
        .map(|r| {
            let last = last.remove(&r.id);
            crate::rules::summarize(r, last)
        })
        .collect();
    Ok(page.cut(out, ConversationSummary::size_hint))
}

// ---- friends

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

// ---- groups and rooms

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

/// A page of the user's groups and rooms by id after `after`, dismissed
/// ones left out.
pub async fn groups_of(
    c: &impl GenericClient,
    user: UserId,
    after: ConversationId,
    page: Page,
) -> Result<(Vec<GroupRecord>, bool)> {
    let sql = format!(
        "{GROUP_SELECT} JOIN members me ON me.conversation_id = g.conversation_id
         WHERE me.user_id = $1 AND me.left_seq = 0 AND NOT g.dismissed AND g.conversation_id > $2
         ORDER BY g.conversation_id LIMIT $3"
    );
    let found: Vec<GroupRecord> = c
        .query(&sql, &[&key(user), &key(after), &fetch(page)])
        .await?
        .iter()
        .map(rows::group)
        .collect::<Result<_>>()?;
    Ok(page.cut(found, GroupRecord::size_hint))
}

/// A page of live rooms whose name starts with `prefix`, by id after
/// `after`. The prefix is matched as SQLite's LIKE matches it: literally
/// (`%`, `_` and `\` escaped) and case-insensitively for ASCII letters
/// only, which is what ILIKE does in the C collation. That does not use
/// `rooms_by_name` (an index on `lower(name)` in the database's collation).
pub async fn rooms(
    c: &impl GenericClient,
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
    let sql = format!(
        "{GROUP_SELECT} WHERE c.kind = {room} AND NOT g.dismissed AND g.conversation_id > $2
         AND g.name COLLATE \"C\" ILIKE $3 ESCAPE '\\' ORDER BY g.conversation_id LIMIT $4",
        room = ConversationKind::Room as i16,
    );
    let found: Vec<GroupRecord> = c
        .query(&sql, &[&key(viewer), &key(after), &pattern, &fetch(page)])
        .await?
        .iter()
        .map(rows::group)
        .collect::<Result<_>>()?;
    Ok(page.cut(found, GroupRecord::size_hint))
}

/// A page of a group's current members by user id after `after`, for
/// whoever may see the group: two statements, sent together.
pub async fn members(
    c: &impl GenericClient,
    id: ConversationId,
    viewer: UserId,
    after: UserId,
    page: Page,
) -> Result<(Vec<MemberRecord>, bool)> {
    let listed = async {
        let found = c
            .query(
                "SELECT m.user_id, u.username, m.role, m.muted_until_ms, m.joined_at_ms
                 FROM members m JOIN users u ON u.id = m.user_id
                 WHERE m.conversation_id = $1 AND m.left_seq = 0 AND m.user_id > $2
                 ORDER BY m.user_id LIMIT $3",
                &[&key(id), &key(after), &fetch(page)],
            )
            .await?;
        found.iter().map(rows::member).collect::<Result<Vec<_>>>()
    };
    // Who may not see the group hears that it does not exist (see
    // `group`), whatever the page read alongside found.
    let (_, listed) = tokio::try_join!(group(c, id, viewer), listed)?;
    Ok(page.cut(listed, MemberRecord::size_hint))
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

#[cfg(test)]
mod tests;
