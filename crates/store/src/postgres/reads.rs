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
        .map(|r| SyncRow {
            id: id(r, 0),
            kind: rows::kind(r.get(1)),
            last_seq: id(r, 2),
            joined_seq: id(r, 3),
            left_seq: id(r, 4),
        })
        .collect();
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
    Ok(c.query(&sql, &[&ids, &lo, &hi, &limit(items)])
        .await?
        .iter()
        .map(rows::message)
        .collect())
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
        .collect();
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
            ListRow {
                id: id(r, 0),
                kind: rows::kind(r.get(1)),
                last_seq: id(r, 2),
                last_activity_ms: r.get(3),
                read_seq: id(r, 4),
                joined_seq: id(r, 5),
                name: r.get(6),
                peer: peer.map(|p| (p as UserId, peer_name.unwrap_or_default())),
                unread: r.get::<_, i64>(9).clamp(0, MAX_UNREAD) as u32,
                mentioned: r.get(10),
            }
        })
        .collect();
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
            let m = rows::message(&r);
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
    Ok(c.query(&sql, &[&key(me), &limit(max)])
        .await?
        .iter()
        .map(rows::request)
        .collect())
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
        .collect();
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
        .collect();
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
        .collect();
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
        Ok::<_, StoreError>(found.iter().map(rows::member).collect::<Vec<_>>())
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
    Ok(row.map(|r| Role::from_i64(r.get::<_, i16>(0) as i64)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_util::FutureExt;
    use std::future::Future;
    use std::panic::AssertUnwindSafe;
    use std::sync::Arc;
    use tokio_postgres::{Client, NoTls};

    const BIG: Page = Page {
        items: 1000,
        bytes: 1 << 30,
    };

    fn items(n: usize) -> Page {
        Page {
            items: n,
            bytes: 1 << 30,
        }
    }

    /// Runs `body` against a fresh, migrated schema of its own, dropped
    /// afterwards even when `body` panics; skips without a database.
    async fn with_db<F, Fut>(test: &str, body: F)
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Ok(url) = std::env::var("NATTER_TEST_POSTGRES_URL") else {
            eprintln!("skipping {test}: NATTER_TEST_POSTGRES_URL is not set");
            return;
        };
        let (mut client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let schema: String = client
            .query_one(
                "SELECT 'natter_reads_' || md5(random()::text || clock_timestamp()::text)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path TO {schema}"
            ))
            .await
            .unwrap();
        super::super::schema::migrate(&mut client, super::super::Partitioning::None)
            .await
            .unwrap();
        let client = Arc::new(client);
        let out = AssertUnwindSafe(body(client.clone())).catch_unwind().await;
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
        if let Err(panic) = out {
            std::panic::resume_unwind(panic);
        }
    }

    // ---- fixtures, in plain SQL

    async fn user(c: &Client, name: &str) -> UserId {
        c.query_one(
            "INSERT INTO users (username, password_hash, created_at_ms) VALUES ($1, 'h', 0)
             RETURNING id",
            &[&name],
        )
        .await
        .unwrap()
        .get::<_, i64>(0) as UserId
    }

    async fn conv(c: &Client, kind: ConversationKind, activity_ms: i64) -> ConversationId {
        c.query_one(
            "INSERT INTO conversations (kind, created_at_ms, last_activity_ms) VALUES ($1, 0, $2)
             RETURNING id",
            &[&(kind as i16), &activity_ms],
        )
        .await
        .unwrap()
        .get::<_, i64>(0) as ConversationId
    }

    /// A membership: (joined, left, read, delivered) seqs.
    async fn member(
        c: &Client,
        user: UserId,
        conv: ConversationId,
        role: Role,
        seqs: (u64, u64, u64, u64),
    ) {
        let (joined, left, read, delivered) = seqs;
        c.execute(
            "INSERT INTO members (user_id, conversation_id, role, joined_seq, left_seq, read_seq,
                delivered_seq, joined_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 5)",
            &[
                &(user as i64),
                &(conv as i64),
                &(role as i16),
                &(joined as i64),
                &(left as i64),
                &(read as i64),
                &(delivered as i64),
            ],
        )
        .await
        .unwrap();
    }

    async fn direct(c: &Client, a: UserId, b: UserId, activity_ms: i64) -> ConversationId {
        let id = conv(c, ConversationKind::Direct, activity_ms).await;
        member(c, a, id, Role::Member, (0, 0, 0, 0)).await;
        member(c, b, id, Role::Member, (0, 0, 0, 0)).await;
        id
    }

    async fn group_row(
        c: &Client,
        id: ConversationId,
        name: &str,
        owner: UserId,
        approval: bool,
        dismissed: bool,
    ) {
        c.execute(
            "INSERT INTO groups (conversation_id, name, owner_id, join_policy, dismissed,
                member_count, invite_code) VALUES ($1, $2, $3, $4, $5, 1, 'code')",
            &[
                &(id as i64),
                &name,
                &(owner as i64),
                &(if approval { 2i16 } else { 1i16 }),
                &dismissed,
            ],
        )
        .await
        .unwrap();
    }

    /// Appends a message with the next seq; returns the seq.
    async fn say(
        c: &Client,
        conv: ConversationId,
        sender: UserId,
        kind: BodyKind,
        body: &str,
    ) -> u64 {
        say_with(c, conv, sender, kind, body, &[], false).await
    }

    async fn say_with(
        c: &Client,
        conv: ConversationId,
        sender: UserId,
        kind: BodyKind,
        body: &str,
        mentions: &[UserId],
        mention_all: bool,
    ) -> u64 {
        let seq: i64 = c
            .query_one(
                "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
                &[&(conv as i64)],
            )
            .await
            .unwrap()
            .get(0);
        let mentions: Vec<i64> = mentions.iter().map(|&u| u as i64).collect();
        c.execute(
            "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, created_at_ms,
                body_kind, body, mentions, mention_all)
             VALUES ($1, $2, $3, $4, 7, $5, $6, $7, $8)",
            &[
                &(conv as i64),
                &seq,
                &(sender as i64),
                &format!("c{conv}-{seq}"),
                &(kind as i16),
                &body,
                &mentions,
                &mention_all,
            ],
        )
        .await
        .unwrap();
        for u in &mentions {
            c.execute(
                "INSERT INTO mentions (user_id, conversation_id, seq) VALUES ($1, $2, $3)",
                &[u, &(conv as i64), &seq],
            )
            .await
            .unwrap();
        }
        seq as u64
    }

    async fn text(c: &Client, conv: ConversationId, sender: UserId, n: usize) {
        for i in 0..n {
            say(c, conv, sender, BodyKind::Text, &format!("m{i}")).await;
        }
    }

    async fn friend_request(c: &Client, from: UserId, to: UserId, status: RequestStatus) -> u64 {
        c.query_one(
            "INSERT INTO friend_requests (from_id, to_id, message, status, created_at_ms)
             VALUES ($1, $2, 'hello', $3, 1) RETURNING id",
            &[&(from as i64), &(to as i64), &(status as i16)],
        )
        .await
        .unwrap()
        .get::<_, i64>(0) as u64
    }

    async fn befriend(c: &Client, a: UserId, b: UserId) {
        for (x, y) in [(a, b), (b, a)] {
            c.execute(
                "INSERT INTO friends (user_id, friend_id, remark, since_ms) VALUES ($1, $2, 'r', 3)",
                &[&(x as i64), &(y as i64)],
            )
            .await
            .unwrap();
        }
    }

    async fn block(c: &Client, who: UserId, whom: UserId) {
        c.execute(
            "INSERT INTO blocks (user_id, blocked_id) VALUES ($1, $2)",
            &[&(who as i64), &(whom as i64)],
        )
        .await
        .unwrap();
    }

    /// (conversation, seq) of each message of a sync page.
    fn seqs(p: &SyncPage) -> Vec<(ConversationId, u64)> {
        p.messages
            .iter()
            .map(|m| (m.conversation_id, m.seq))
            .collect()
    }

    fn ids(p: &SyncPage) -> Vec<ConversationId> {
        p.conversations.iter().map(|s| s.id).collect()
    }

    // ---- the tests

    #[tokio::test]
    async fn looks_up_users_sessions_and_names() {
        with_db("looks_up_users_sessions_and_names", |db| async move {
            let c = &*db;
            let ann = user(c, "ann").await;
            let anna = user(c, "anna").await;
            let bob = user(c, "bob").await;
            let an_x = user(c, "an_x").await;
            let off = user(c, "annoff").await;
            c.execute(
                "UPDATE users SET disabled = true WHERE id = $1",
                &[&(off as i64)],
            )
            .await
            .unwrap();

            assert_eq!(user_by_name(c, "ann").await.unwrap().unwrap().id, ann);
            assert_eq!(user_by_name(c, "nobody").await.unwrap(), None);
            assert_eq!(user_by_name(c, "a\0b").await.unwrap(), None);
            let got = user_by_id(c, bob).await.unwrap().unwrap();
            assert_eq!(
                got,
                UserRecord {
                    id: bob,
                    username: "bob".into(),
                    password_hash: "h".into(),
                    disabled: false,
                }
            );
            assert!(user_by_id(c, off).await.unwrap().unwrap().disabled);
            assert_eq!(user_by_id(c, 999).await.unwrap(), None);
            assert_eq!(user_by_id(c, u64::MAX).await.unwrap(), None);

            // By id and by name, each once, by id; unknown ones left out.
            let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let got: Vec<UserId> = users(
                c,
                &[bob, ann, 999, u64::MAX],
                &names(&["ann", "anna", "zed", "x\0"]),
            )
            .await
            .unwrap()
            .iter()
            .map(|u| u.id)
            .collect();
            assert_eq!(got, vec![ann, anna, bob]);
            assert!(users(c, &[], &[]).await.unwrap().is_empty());
            assert_eq!(users(c, &[], &names(&["bob"])).await.unwrap()[0].id, bob);

            // Sessions.
            let token = [7u8; 32];
            c.execute(
                "INSERT INTO sessions (user_id, device_id, token_hash, created_at_ms,
                    expires_at_ms, revoked) VALUES ($1, 'phone', $2, 1, 99, true)",
                &[&(off as i64), &&token[..]],
            )
            .await
            .unwrap();
            let s = session_by_token(c, &token).await.unwrap().unwrap();
            assert_eq!(
                s,
                SessionRecord {
                    id: s.id,
                    user_id: off,
                    username: "annoff".into(),
                    device_id: "phone".into(),
                    expires_at_ms: 99,
                    revoked: true,
                    user_disabled: true,
                }
            );
            assert_eq!(session_by_token(c, &[8u8; 32]).await.unwrap(), None);

            // Prefix search: by name, active users only, `_` literal.
            let search = |p: &'static str, n| async move {
                search_users(c, p, n)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|u| u.username)
                    .collect::<Vec<_>>()
            };
            assert_eq!(search("an", 10).await, vec!["an_x", "ann", "anna"]);
            assert_eq!(search("ann", 10).await, vec!["ann", "anna"]);
            assert_eq!(search("an", 2).await, vec!["an_x", "ann"]);
            assert_eq!(search("an_", 10).await, vec!["an_x"]);
            assert_eq!(search_users(c, "an_", 1).await.unwrap()[0].id, an_x);
            assert_eq!(search("a%", 10).await, Vec::<String>::new());
            assert_eq!(search("", 10).await.len(), 4);
            assert_eq!(search("zz", 10).await, Vec::<String>::new());
            assert_eq!(search("a\0", 10).await, Vec::<String>::new());
        })
        .await;
    }

    #[tokio::test]
    async fn syncs_pages_by_items_bytes_and_cursors() {
        with_db("syncs_pages_by_items_bytes_and_cursors", |db| async move {
            let c = &*db;
            let me = user(c, "me").await;
            let bob = user(c, "bob").await;
            let eve = user(c, "eve").await;
            // d: a 1:1 with three messages, both cursors set.
            let d = direct(c, me, bob, 1).await;
            text(c, d, bob, 3).await;
            c.execute(
                "UPDATE members SET delivered_seq = 2 WHERE conversation_id = $1 AND user_id = $2",
                &[&(d as i64), &(bob as i64)],
            )
            .await
            .unwrap();
            // g: joined after seq 2 of 5.
            let g = conv(c, ConversationKind::Group, 1).await;
            text(c, g, bob, 5).await;
            member(c, me, g, Role::Member, (2, 0, 0, 0)).await;
            // l: left at seq 3 of 6.
            let l = conv(c, ConversationKind::Group, 1).await;
            text(c, l, bob, 6).await;
            member(c, me, l, Role::Member, (0, 3, 0, 0)).await;
            // q: nothing at all; o: someone else's.
            let q = conv(c, ConversationKind::Room, 1).await;
            member(c, me, q, Role::Member, (0, 0, 0, 0)).await;
            let o = conv(c, ConversationKind::Group, 1).await;
            text(c, o, bob, 2).await;
            member(c, bob, o, Role::Member, (0, 0, 0, 0)).await;
            // Requests: one waiting, one from a blocked user, one answered.
            let waiting = friend_request(c, bob, me, RequestStatus::Pending).await;
            friend_request(c, eve, me, RequestStatus::Pending).await;
            friend_request(c, bob, me, RequestStatus::Rejected).await;
            block(c, me, eve).await;
            let none = HashMap::new();

            // Everything fits.
            let all = sync(c, me, &none, 0, BIG).await.unwrap();
            assert_eq!(ids(&all), vec![d, g, l, q]);
            assert_eq!(
                seqs(&all),
                vec![
                    (d, 1),
                    (d, 2),
                    (d, 3),
                    (g, 3),
                    (g, 4),
                    (g, 5),
                    (l, 1),
                    (l, 2),
                    (l, 3)
                ]
            );
            assert!(!all.has_more);
            assert_eq!(all.next_after, q);
            let ds = &all.conversations[0];
            assert_eq!(ds.kind, ConversationKind::Direct);
            assert_eq!(ds.last_seq, 3);
            assert_eq!(
                ds.members,
                vec![
                    MemberState {
                        user_id: me,
                        delivered_seq: 0
                    },
                    MemberState {
                        user_id: bob,
                        delivered_seq: 2
                    },
                ]
            );
            let gs = &all.conversations[1];
            assert!(gs.members.is_empty());
            assert_eq!((gs.joined_seq, gs.left_seq, gs.last_seq), (2, 0, 5));
            let ls = &all.conversations[2];
            assert_eq!((ls.joined_seq, ls.left_seq, ls.last_seq), (0, 3, 6));
            let pending: Vec<u64> = all.pending_friend_requests.iter().map(|r| r.id).collect();
            assert_eq!(pending, vec![waiting]);
            let m = &all.messages[0];
            assert_eq!(
                (
                    m.sender_id,
                    m.body.kind,
                    m.body.content.as_str(),
                    m.server_ts_ms
                ),
                (bob, BodyKind::Text, "m0", 7)
            );

            // Cut by items inside g: d is done, g is not.
            let p = sync(c, me, &none, 0, items(4)).await.unwrap();
            assert_eq!(ids(&p), vec![d, g]);
            assert_eq!(seqs(&p), vec![(d, 1), (d, 2), (d, 3), (g, 3)]);
            assert!(p.has_more);
            assert_eq!(p.next_after, d);
            assert!(p.pending_friend_requests.is_empty());
            // Cut exactly at the end of d.
            let p = sync(c, me, &none, 0, items(3)).await.unwrap();
            assert_eq!(ids(&p), vec![d]);
            assert!(p.has_more);
            assert_eq!(p.next_after, d);
            // The next page starts after d, with g's cursor moved.
            let moved = HashMap::from([(g, 3)]);
            let p = sync(c, me, &moved, d, items(3)).await.unwrap();
            assert_eq!(ids(&p), vec![g, l]);
            assert_eq!(seqs(&p), vec![(g, 4), (g, 5), (l, 1)]);
            assert_eq!(p.next_after, g);

            // Cut by bytes: d and g's first message fit, no more.
            let used: usize = all.conversations[..2]
                .iter()
                .map(|s| s.size_hint())
                .sum::<usize>()
                + all.messages[..4]
                    .iter()
                    .map(|m| m.size_hint())
                    .sum::<usize>();
            let p = sync(
                c,
                me,
                &none,
                0,
                Page {
                    items: 100,
                    bytes: used + 1,
                },
            )
            .await
            .unwrap();
            assert_eq!(ids(&p), vec![d, g]);
            assert_eq!(seqs(&p), vec![(d, 1), (d, 2), (d, 3), (g, 3)]);
            assert!(p.has_more);
            assert_eq!(p.next_after, d);
            // A message over the budget gets a page of its own.
            let p = sync(
                c,
                me,
                &none,
                0,
                Page {
                    items: 100,
                    bytes: 1,
                },
            )
            .await
            .unwrap();
            assert_eq!(seqs(&p), vec![(d, 1)]);
            assert!(p.has_more);

            // Cursors: seen messages are not sent again; joined_seq wins
            // over a lower cursor; nothing after left_seq.
            let seen = HashMap::from([(d, 2), (g, 1), (l, 2)]);
            let p = sync(c, me, &seen, 0, BIG).await.unwrap();
            assert_eq!(seqs(&p), vec![(d, 3), (g, 3), (g, 4), (g, 5), (l, 3)]);
            let done = HashMap::from([(d, 3), (g, 5), (l, 3)]);
            let p = sync(c, me, &done, 0, BIG).await.unwrap();
            assert!(p.messages.is_empty());
            assert_eq!(ids(&p), vec![d, g, l, q]);

            // Cursors past everything: an empty, final page.
            let p = sync(c, me, &none, u64::MAX, BIG).await.unwrap();
            assert!(p.conversations.is_empty() && p.messages.is_empty() && !p.has_more);
            let far = HashMap::from([(d, u64::MAX)]);
            let p = sync(c, me, &far, 0, BIG).await.unwrap();
            assert!(!seqs(&p).iter().any(|&(id, _)| id == d));
            let p = sync(c, u64::MAX, &none, 0, BIG).await.unwrap();
            assert!(p.conversations.is_empty() && !p.has_more);
        })
        .await;
    }

    #[tokio::test]
    async fn sync_caps_memberships_per_page() {
        with_db("sync_caps_memberships_per_page", |db| async move {
            let c = &*db;
            let me = user(c, "me").await;
            c.batch_execute(&format!(
                "INSERT INTO conversations (kind, created_at_ms, last_activity_ms)
                    SELECT 2, 0, 0 FROM generate_series(1, {n});
                 INSERT INTO members (user_id, conversation_id)
                    SELECT {me}, id FROM conversations;",
                n = SYNC_CONVERSATIONS + 2
            ))
            .await
            .unwrap();
            let first = sync(c, me, &HashMap::new(), 0, BIG).await.unwrap();
            assert_eq!(first.conversations.len(), SYNC_CONVERSATIONS);
            assert!(first.has_more);
            assert!(first.pending_friend_requests.is_empty());
            let next = sync(c, me, &HashMap::new(), first.next_after, BIG)
                .await
                .unwrap();
            assert_eq!(next.conversations.len(), 2);
            assert!(!next.has_more);
        })
        .await;
    }

    #[tokio::test]
    async fn history_pages_newest_first_within_view() {
        with_db("history_pages_newest_first_within_view", |db| async move {
            let c = &*db;
            let me = user(c, "me").await;
            let bob = user(c, "bob").await;
            let g = conv(c, ConversationKind::Group, 1).await;
            text(c, g, bob, 10).await;
            // Sees seqs 3..=8.
            member(c, me, g, Role::Member, (2, 8, 0, 0)).await;
            member(c, bob, g, Role::Member, (0, 0, 0, 0)).await;
            let page = |before, p| async move {
                let h = history(c, me, g, before, p).await.unwrap();
                let s: Vec<u64> = h.messages.iter().map(|m| m.seq).collect();
                (s, h.has_more)
            };
            assert_eq!(page(0, items(3)).await, (vec![8, 7, 6], true));
            assert_eq!(page(6, items(3)).await, (vec![5, 4, 3], false));
            assert_eq!(page(4, items(3)).await, (vec![3], false));
            assert_eq!(page(3, items(3)).await, (vec![], false));
            assert_eq!(page(u64::MAX, items(2)).await, (vec![8, 7], true));
            assert_eq!(page(0, BIG).await.0, vec![8, 7, 6, 5, 4, 3]);
            let one = Page {
                items: 10,
                bytes: 1,
            };
            assert_eq!(page(0, one).await, (vec![8], true));
            // A current member sees the newest.
            let h = history(c, bob, g, 0, items(1)).await.unwrap();
            assert_eq!(h.messages[0].seq, 10);

            let outsider = user(c, "out").await;
            for (u, conv) in [(outsider, g), (me, 999), (me, u64::MAX), (u64::MAX, g)] {
                assert!(matches!(
                    history(c, u, conv, 0, BIG).await,
                    Err(StoreError::NotMember(id)) if id == conv
                ));
            }

            assert_eq!(visible_range(c, me, g).await.unwrap(), Some((2, 8)));
            assert_eq!(visible_range(c, bob, g).await.unwrap(), Some((0, 10)));
            assert_eq!(visible_range(c, outsider, g).await.unwrap(), None);
            assert_eq!(visible_range(c, me, u64::MAX).await.unwrap(), None);
            // Who left is no longer in the audience.
            assert_eq!(members_of(c, g).await.unwrap(), vec![bob]);
            assert!(members_of(c, u64::MAX).await.unwrap().is_empty());
            assert_eq!(audience(c, bob, g).await.unwrap(), vec![bob]);
            assert!(matches!(
                audience(c, me, g).await,
                Err(StoreError::NotMember(id)) if id == g
            ));
        })
        .await;
    }

    #[tokio::test]
    async fn lists_conversations_newest_first() {
        with_db("lists_conversations_newest_first", |db| async move {
            let c = &*db;
            let me = user(c, "me").await;
            let bob = user(c, "bob").await;
            // d: a 1:1, the most recent.
            let d = direct(c, me, bob, 300).await;
            say(c, d, bob, BodyKind::Text, "hi").await;
            // g: unread counts only others' plain messages; a mention.
            let g = conv(c, ConversationKind::Group, 200).await;
            group_row(c, g, "Team", me, false, false).await;
            member(c, me, g, Role::Owner, (0, 0, 1, 0)).await;
            say_with(c, g, bob, BodyKind::Text, "seen", &[me], false).await;
            say(c, g, bob, BodyKind::Text, "new").await;
            say(c, g, me, BodyKind::Text, "mine").await;
            say(c, g, bob, BodyKind::System, "{}").await;
            say(c, g, bob, BodyKind::Recalled, "").await;
            say_with(c, g, bob, BodyKind::Custom, "{\"a\":1}", &[me], false).await;
            // r: same activity as g, lower id after it; long text preview
            // and a mention of all.
            let r = conv(c, ConversationKind::Room, 200).await;
            group_row(c, r, "Lobby", bob, false, false).await;
            member(c, me, r, Role::Member, (0, 0, 0, 0)).await;
            say_with(c, r, bob, BodyKind::Text, "x", &[], true).await;
            let long = "é".repeat(150);
            say(c, r, bob, BodyKind::Text, &long).await;
            // f: a long custom body, which previews as nothing; the only
            // mention is read already.
            let f = conv(c, ConversationKind::Group, 100).await;
            group_row(c, f, "Files", bob, false, false).await;
            member(c, me, f, Role::Member, (0, 0, 1, 0)).await;
            say_with(c, f, bob, BodyKind::Text, "@me", &[me], false).await;
            say(
                c,
                f,
                bob,
                BodyKind::Custom,
                &format!("{{\"k\":\"{}\"}}", "v".repeat(300)),
            )
            .await;
            // j: joined after its only message; u: past the unread cap.
            let j = conv(c, ConversationKind::Group, 50).await;
            group_row(c, j, "Joined", bob, false, false).await;
            say(c, j, bob, BodyKind::Text, "before me").await;
            member(c, me, j, Role::Member, (1, 0, 0, 0)).await;
            let u = conv(c, ConversationKind::Group, 40).await;
            group_row(c, u, "Busy", bob, false, false).await;
            member(c, me, u, Role::Member, (0, 0, 0, 0)).await;
            c.execute(
                "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id,
                    created_at_ms, body_kind, body)
                 SELECT $1, s, $2, 'b' || s, 0, 1, 'x' FROM generate_series(1, 10050) s",
                &[&(u as i64), &(bob as i64)],
            )
            .await
            .unwrap();
            c.execute(
                "UPDATE conversations SET last_seq = 10050 WHERE id = $1",
                &[&(u as i64)],
            )
            .await
            .unwrap();
            // Left: not listed.
            let gone = conv(c, ConversationKind::Group, 999).await;
            group_row(c, gone, "Gone", bob, false, false).await;
            member(c, me, gone, Role::Member, (0, 1, 0, 0)).await;
            // Someone else's.
            let other = conv(c, ConversationKind::Group, 998).await;
            group_row(c, other, "Other", bob, false, false).await;
            member(c, bob, other, Role::Member, (0, 0, 0, 0)).await;

            let (all, more) = conversations(c, me, None, BIG).await.unwrap();
            assert!(!more);
            let order: Vec<ConversationId> = all.iter().map(|s| s.id).collect();
            assert_eq!(order, vec![d, r, g, f, j, u]);
            let by = |id| all.iter().find(|s| s.id == id).unwrap();

            let ds = by(d);
            assert_eq!((ds.title.as_str(), ds.peer), ("bob", Some(bob)));
            assert_eq!(
                (ds.unread, ds.mentioned, ds.last_activity_ms),
                (1, false, 300)
            );
            assert_eq!(ds.last_message.as_ref().unwrap().body.content, "hi");

            let gs = by(g);
            assert_eq!((gs.title.as_str(), gs.peer), ("Team", None));
            assert_eq!(
                (gs.kind, gs.last_seq, gs.read_seq),
                (ConversationKind::Group, 6, 1)
            );
            // "new" and the custom one; not mine, the event or the tombstone.
            assert_eq!(gs.unread, 2);
            assert!(gs.mentioned);
            let last = gs.last_message.as_ref().unwrap();
            assert_eq!((last.seq, last.body.kind), (6, BodyKind::Custom));
            assert_eq!(last.mentions, vec![me]);
            assert!(!gs.preview_truncated);

            let rs = by(r);
            assert_eq!((rs.unread, rs.mentioned), (2, true));
            let preview = &rs.last_message.as_ref().unwrap().body.content;
            assert_eq!(preview.len(), 200);
            assert_eq!(*preview, "é".repeat(100));
            assert!(rs.preview_truncated);

            let fs = by(f);
            assert_eq!((fs.unread, fs.mentioned), (1, false));
            assert_eq!(fs.last_message.as_ref().unwrap().body.content, "");
            assert!(fs.preview_truncated);

            let js = by(j);
            assert_eq!(
                (js.unread, js.read_seq, js.last_message.clone()),
                (0, 1, None)
            );

            assert_eq!(by(u).unread, 9999);

            // Pages: by (activity, id) descending, ties by id.
            let (p1, more) = conversations(c, me, None, items(2)).await.unwrap();
            assert_eq!(p1.iter().map(|s| s.id).collect::<Vec<_>>(), vec![d, r]);
            assert!(more);
            let before = Before {
                activity_ms: 200,
                id: r,
            };
            let (p2, more) = conversations(c, me, Some(before), items(2)).await.unwrap();
            assert_eq!(p2.iter().map(|s| s.id).collect::<Vec<_>>(), vec![g, f]);
            assert!(more);
            let before = Before {
                activity_ms: 40,
                id: u,
            };
            let (p3, more) = conversations(c, me, Some(before), items(2)).await.unwrap();
            assert!(p3.is_empty() && !more);
            // Cut by bytes: one at least.
            let (p, more) = conversations(
                c,
                me,
                None,
                Page {
                    items: 10,
                    bytes: 1,
                },
            )
            .await
            .unwrap();
            assert_eq!((p.len(), more), (1, true));
            // A cursor past every id: everything at that time and before.
            let before = Before {
                activity_ms: 200,
                id: u64::MAX,
            };
            let (p, _) = conversations(c, me, Some(before), BIG).await.unwrap();
            assert_eq!(
                p.iter().map(|s| s.id).collect::<Vec<_>>(),
                vec![r, g, f, j, u]
            );
            let (p, more) = conversations(c, u64::MAX, None, BIG).await.unwrap();
            assert!(p.is_empty() && !more);
        })
        .await;
    }

    #[tokio::test]
    async fn pages_friends_and_requests() {
        with_db("pages_friends_and_requests", |db| async move {
            let c = &*db;
            let me = user(c, "me").await;
            let bob = user(c, "bob").await;
            let carol = user(c, "carol").await;
            let dave = user(c, "dave").await;
            let eve = user(c, "eve").await;
            let zed = user(c, "Zed").await;
            for f in [dave, bob, carol, zed] {
                befriend(c, me, f).await;
            }
            block(c, me, eve).await;
            block(c, me, dave).await;

            let names = |l: &FriendList| {
                l.friends
                    .iter()
                    .map(|f| f.username.clone())
                    .collect::<Vec<_>>()
            };
            // Bytewise order: "Zed" sorts first.
            let p = friends(c, me, "", items(2)).await.unwrap();
            assert_eq!(names(&p), vec!["Zed", "bob"]);
            assert!(p.has_more);
            assert_eq!(
                p.blocked,
                vec![(dave, "dave".to_string()), (eve, "eve".to_string())]
            );
            assert_eq!(
                p.friends[1],
                FriendRecord {
                    user_id: bob,
                    username: "bob".into(),
                    remark: "r".into(),
                    since_ms: 3,
                    blocked: false,
                }
            );
            let p = friends(c, me, "bob", items(2)).await.unwrap();
            assert_eq!(names(&p), vec!["carol", "dave"]);
            assert!(p.blocked.is_empty());
            assert!(!p.has_more);
            assert!(p.friends[1].blocked);
            let p = friends(c, me, "bob\0zz", items(5)).await.unwrap();
            assert_eq!(names(&p), vec!["carol", "dave"]);
            let p = friends(c, me, "dave", items(2)).await.unwrap();
            assert!(p.friends.is_empty() && !p.has_more);
            // The blocked list counts against the first page's bytes.
            let p = friends(
                c,
                me,
                "",
                Page {
                    items: 10,
                    bytes: 1,
                },
            )
            .await
            .unwrap();
            assert_eq!((p.friends.len(), p.blocked.len(), p.has_more), (1, 2, true));
            assert!(friends(c, u64::MAX, "", BIG)
                .await
                .unwrap()
                .friends
                .is_empty());

            let mut all = vec![bob, carol, dave, zed];
            all.sort_unstable();
            assert_eq!(friend_ids(c, me).await.unwrap(), all);
            assert!(friend_ids(c, u64::MAX).await.unwrap().is_empty());

            // Requests, oldest first: in, out, from a blocked user, in.
            let r1 = friend_request(c, bob, me, RequestStatus::Pending).await;
            let r2 = friend_request(c, me, carol, RequestStatus::Pending).await;
            friend_request(c, eve, me, RequestStatus::Pending).await;
            let r4 = friend_request(c, carol, me, RequestStatus::Accepted).await;
            friend_request(c, bob, carol, RequestStatus::Pending).await;
            let split = |p: &FriendRequestPage| {
                (
                    p.incoming.iter().map(|r| r.id).collect::<Vec<_>>(),
                    p.outgoing.iter().map(|r| r.id).collect::<Vec<_>>(),
                    p.has_more,
                )
            };
            let p = friend_requests(c, me, 0, items(2)).await.unwrap();
            assert_eq!(split(&p), (vec![r4], vec![r2], true));
            let p = friend_requests(c, me, r2, items(2)).await.unwrap();
            assert_eq!(split(&p), (vec![r1], vec![], false));
            let p = friend_requests(c, me, u64::MAX, BIG).await.unwrap();
            assert_eq!(split(&p), (vec![r4, r1], vec![r2], false));
            let p = friend_requests(
                c,
                me,
                0,
                Page {
                    items: 10,
                    bytes: 1,
                },
            )
            .await
            .unwrap();
            assert_eq!(split(&p), (vec![r4], vec![], true));
            let got = &friend_requests(c, me, 0, BIG).await.unwrap().outgoing[0];
            assert_eq!(
                (got.from_name.as_str(), got.to_name.as_str(), got.status),
                ("me", "carol", RequestStatus::Pending)
            );
            let p = friend_requests(c, u64::MAX, 0, BIG).await.unwrap();
            assert_eq!(split(&p), (vec![], vec![], false));

            let waiting: Vec<u64> = pending_incoming(c, me, 10)
                .await
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(waiting, vec![r1]);
            assert!(pending_incoming(c, me, 0).await.unwrap().is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn reads_groups_rooms_members_and_join_requests() {
        with_db(
            "reads_groups_rooms_members_and_join_requests",
            |db| async move {
                let c = &*db;
                let owner = user(c, "owner").await;
                let admin = user(c, "admin").await;
                let plain = user(c, "plain").await;
                let out = user(c, "out").await;
                let left = user(c, "left").await;
                let g = conv(c, ConversationKind::Group, 1).await;
                group_row(c, g, "Secret", owner, true, false).await;
                member(c, owner, g, Role::Owner, (0, 0, 0, 0)).await;
                member(c, admin, g, Role::Admin, (0, 0, 0, 0)).await;
                member(c, plain, g, Role::Member, (0, 0, 0, 0)).await;
                member(c, left, g, Role::Member, (0, 2, 0, 0)).await;
                let mut rooms_made = Vec::new();
                for name in [
                    "Chat Room",
                    "chat_fans",
                    "CHATTY",
                    "ärger",
                    "Ärger",
                    "50% off",
                ] {
                    let r = conv(c, ConversationKind::Room, 1).await;
                    group_row(c, r, name, owner, false, false).await;
                    member(c, owner, r, Role::Owner, (0, 0, 0, 0)).await;
                    rooms_made.push(r);
                }
                let [chat, fans, chatty, lower_a, upper_a, sale]: [ConversationId; 6] =
                    rooms_made.try_into().unwrap();
                let old = conv(c, ConversationKind::Room, 1).await;
                group_row(c, old, "chat old", owner, false, true).await;
                member(c, owner, old, Role::Owner, (0, 0, 0, 0)).await;
                let applicants = vec![user(c, "ap1").await, user(c, "ap2").await, out];
                for (i, u) in applicants.iter().enumerate() {
                    c.execute(
                    "INSERT INTO join_requests (conversation_id, user_id, message, created_at_ms)
                     VALUES ($1, $2, 'let me in', $3)",
                    &[&(g as i64), &(*u as i64), &(i as i64)],
                )
                .await
                .unwrap();
                }

                // One group, as each may see it.
                let seen = group(c, g, plain).await.unwrap();
                assert_eq!(
                    (seen.name.as_str(), seen.kind, seen.my_role, seen.owner_id),
                    ("Secret", ConversationKind::Group, Some(Role::Member), owner)
                );
                assert_eq!(group(c, g, owner).await.unwrap().my_role, Some(Role::Owner));
                for viewer in [out, left, u64::MAX] {
                    assert!(matches!(
                        group(c, g, viewer).await,
                        Err(StoreError::NotFound("group"))
                    ));
                }
                assert_eq!(group(c, chat, out).await.unwrap().my_role, None);
                for id in [999, u64::MAX] {
                    assert!(matches!(
                        group(c, id, owner).await,
                        Err(StoreError::NotFound("group"))
                    ));
                }

                // The owner's groups and rooms by id; dismissed ones left out.
                let gids = |v: &[GroupRecord]| v.iter().map(|g| g.id).collect::<Vec<_>>();
                let (p, more) = groups_of(c, owner, 0, items(2)).await.unwrap();
                assert_eq!((gids(&p), more), (vec![g, chat], true));
                let (p, more) = groups_of(c, owner, chat, BIG).await.unwrap();
                assert_eq!(
                    (gids(&p), more),
                    (vec![fans, chatty, lower_a, upper_a, sale], false)
                );
                let (p, _) = groups_of(c, plain, 0, BIG).await.unwrap();
                assert_eq!(gids(&p), vec![g]);
                assert!(groups_of(c, left, 0, BIG).await.unwrap().0.is_empty());
                assert!(groups_of(c, owner, u64::MAX, BIG)
                    .await
                    .unwrap()
                    .0
                    .is_empty());

                // Rooms by prefix: ASCII case folded, `_` and `%` literal.
                let find = |prefix: &'static str, after, p| async move {
                    let (found, more) = rooms(c, out, prefix, after, p).await.unwrap();
                    (gids(&found), more)
                };
                assert_eq!(
                    find("chat", 0, BIG).await,
                    (vec![chat, fans, chatty], false)
                );
                assert_eq!(find("CHAT", 0, items(1)).await, (vec![chat], true));
                assert_eq!(find("chat", chat, items(1)).await, (vec![fans], true));
                assert_eq!(find("chat_", 0, BIG).await, (vec![fans], false));
                assert_eq!(find("chat ", 0, BIG).await, (vec![chat], false));
                assert_eq!(find("50%", 0, BIG).await, (vec![sale], false));
                assert_eq!(find("%", 0, BIG).await, (vec![], false));
                assert_eq!(find("ä", 0, BIG).await, (vec![lower_a], false));
                assert_eq!(find("Ä", 0, BIG).await, (vec![upper_a], false));
                assert_eq!(find("secret", 0, BIG).await, (vec![], false));
                assert_eq!(find("", 0, BIG).await.0.len(), 6);
                assert_eq!(find("chat", u64::MAX, BIG).await, (vec![], false));
                assert_eq!(find("c\0", 0, BIG).await, (vec![], false));

                // Members by id, current ones only.
                let uids = |v: &[MemberRecord]| v.iter().map(|m| m.user_id).collect::<Vec<_>>();
                let (p, more) = members(c, g, plain, 0, items(2)).await.unwrap();
                assert_eq!((uids(&p), more), (vec![owner, admin], true));
                assert_eq!(
                    p[1],
                    MemberRecord {
                        user_id: admin,
                        username: "admin".into(),
                        role: Role::Admin,
                        muted_until_ms: 0,
                        joined_at_ms: 5,
                    }
                );
                let (p, more) = members(c, g, plain, admin, items(2)).await.unwrap();
                assert_eq!((uids(&p), more), (vec![plain], false));
                assert!(members(c, g, plain, u64::MAX, BIG)
                    .await
                    .unwrap()
                    .0
                    .is_empty());
                assert!(matches!(
                    members(c, g, out, 0, BIG).await,
                    Err(StoreError::NotFound("group"))
                ));
                assert_eq!(members(c, chat, out, 0, BIG).await.unwrap().0.len(), 1);

                // Join requests: for the owner and admins only.
                let jids =
                    |v: &[JoinRequestRecord]| v.iter().map(|j| j.user_id).collect::<Vec<_>>();
                let mut want = applicants.clone();
                want.sort_unstable();
                let (p, more) = join_requests_for(c, admin, g, 0, items(2)).await.unwrap();
                assert_eq!((jids(&p), more), (want[..2].to_vec(), true));
                assert_eq!(
                    (p[0].conversation_id, p[0].message.as_str()),
                    (g, "let me in")
                );
                let (p, more) = join_requests_for(c, owner, g, want[1], BIG).await.unwrap();
                assert_eq!((jids(&p), more), (want[2..].to_vec(), false));
                assert!(join_requests_for(c, owner, g, u64::MAX, BIG)
                    .await
                    .unwrap()
                    .0
                    .is_empty());
                assert!(matches!(
                    join_requests_for(c, plain, g, 0, BIG).await,
                    Err(StoreError::Refused(Refusal::JoinRequestsAdminsOnly))
                ));
                for actor in [out, left] {
                    assert!(matches!(
                        join_requests_for(c, actor, g, 0, BIG).await,
                        Err(StoreError::NotMember(id)) if id == g
                    ));
                }
                assert!(matches!(
                    join_requests_for(c, owner, u64::MAX, 0, BIG).await,
                    Err(StoreError::NotMember(u64::MAX))
                ));

                assert_eq!(role_of(c, g, admin).await.unwrap(), Some(Role::Admin));
                assert_eq!(role_of(c, g, left).await.unwrap(), None);
                assert_eq!(role_of(c, g, u64::MAX).await.unwrap(), None);
                assert_eq!(role_of(c, u64::MAX, owner).await.unwrap(), None);
            },
        )
        .await;
    }

    #[tokio::test]
    async fn reads_run_inside_a_transaction() {
        with_db("reads_run_inside_a_transaction", |db| async move {
            let c = &*db;
            let me = user(c, "me").await;
            let bob = user(c, "bob").await;
            let d = direct(c, me, bob, 1).await;
            text(c, d, bob, 2).await;
            friend_request(c, bob, me, RequestStatus::Pending).await;
            // Pipelined statements work on a transaction as on a client.
            let schema: String = c
                .query_one("SELECT current_schema()", &[])
                .await
                .unwrap()
                .get(0);
            let url = std::env::var("NATTER_TEST_POSTGRES_URL").unwrap();
            let (mut own, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            own.batch_execute(&format!("SET search_path TO {schema}"))
                .await
                .unwrap();
            let tx = own.transaction().await.unwrap();
            let p = sync(&tx, me, &HashMap::new(), 0, BIG).await.unwrap();
            assert_eq!(seqs(&p), vec![(d, 1), (d, 2)]);
            assert_eq!(p.pending_friend_requests.len(), 1);
            assert_eq!(p.conversations[0].members.len(), 2);
            let f = friends(&tx, me, "", BIG).await.unwrap();
            assert!(f.friends.is_empty() && f.blocked.is_empty());
            tx.commit().await.unwrap();
        })
        .await;
    }
}
