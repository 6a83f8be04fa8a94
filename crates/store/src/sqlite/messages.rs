//! Messages: seq assignment, idempotent append, delivery and read cursors,
//! recall, and the system events that record changes in a conversation's
//! own sequence.

use super::engine::cache::ConvCache;
use super::engine::log::CursorKind;
use super::engine::tx::Tx;
use crate::rules::{self, ConversationView, PeerFacts, RecallStep, Recallable, SystemEvent};
use crate::{
    Body, BodyKind, Committed, ConversationId, ConversationKind, Delivered, NewMessage, ReadMoved,
    Result, Role, StoreError, StoredMessage, Target, UserId,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::sync::Arc;

macro_rules! select_messages {
    ($($rest:literal),*) => {
        concat!(
            "SELECT conversation_id, seq, id, sender_id, client_msg_id, created_at_ms, body_kind, body, mentions, mention_all FROM messages ",
            $($rest),*
        )
    };
}

pub(crate) fn message_row(r: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    let mentions: String = r.get(8)?;
    Ok(StoredMessage {
        conversation_id: r.get(0)?,
        seq: r.get(1)?,
        msg_id: r.get(2)?,
        sender_id: r.get(3)?,
        client_msg_id: r.get(4)?,
        server_ts_ms: r.get(5)?,
        body: Body {
            kind: super::stored(r, 6)?,
            content: r.get(7)?,
        },
        mentions: mentions.split(' ').filter_map(|s| s.parse().ok()).collect(),
        mention_all: r.get(9)?,
    })
}

/// The outcome of an append in the writer's round.
pub struct AppendOutcome {
    pub message: Arc<StoredMessage>,
    pub duplicate: bool,
    /// Who hears of a new message; `None` for a duplicate.
    pub members: Option<Arc<[UserId]>>,
}

/// Checks a new message, takes its seq and stages it for the message log;
/// a resend of a client_msg_id its sender used before in the same
/// conversation is answered with the original. The stored message takes
/// `new`'s key and body rather than copies (two allocations, two copies
/// and two frees a message on the writer's thread): once staged, `new` has
/// served.
pub fn append(tx: &mut Tx<'_>, new: &mut NewMessage) -> Result<AppendOutcome> {
    tx.may_stage()?;
    // The conversation the send names, if it exists yet (a 1:1 may not).
    let named = match new.target {
        Target::Conversation(id) => Some(id),
        Target::Peer(peer) => known_direct(tx, new.sender_id, peer)?,
    };
    if let Some(message) = original(tx, named, new)? {
        return Ok(AppendOutcome {
            message,
            duplicate: true,
            members: None,
        });
    }
    let view = match new.target {
        Target::Peer(_) => None,
        Target::Conversation(id) => Some(view_of(tx, id).map_err(|e| match e {
            StoreError::NotFound(_) => StoreError::NotMember(id),
            e => e,
        })?),
    };
    let (convs, conn, from) = (&mut *tx.convs, tx.conn, new.sender_id);
    let verdict = rules::judge_send(new, view.as_deref(), |peer| {
        peer_facts(convs, conn, from, peer)
    })?;
    if let Some((peer, facts)) = verdict.peer {
        convs.remember_peer(from, peer, facts);
    }
    let (conversation_id, members) = match new.target {
        Target::Peer(peer) => {
            let id = match named {
                Some(id) => id,
                None => make_direct(tx, from, peer, new.now_ms),
            };
            let members: Arc<[UserId]> = Arc::new([from.min(peer), from.max(peer)]);
            (id, members)
        }
        Target::Conversation(id) => (
            id,
            view.map(|v| v.members.clone())
                .ok_or(StoreError::NotMember(id))?,
        ),
    };
    let mentions = verdict.mentions;
    let seq = tx.convs.seqs.stage(tx.conn, conversation_id, new.now_ms)?;
    let message = Arc::new(StoredMessage {
        conversation_id,
        seq,
        msg_id: tx.next_msg_id(),
        sender_id: new.sender_id,
        client_msg_id: std::mem::take(&mut new.client_msg_id),
        server_ts_ms: new.now_ms,
        body: Body {
            kind: new.body.kind,
            content: std::mem::take(&mut new.body.content),
        },
        mentions,
        mention_all: new.mention_all,
    });
    tx.stage_message(message.clone());
    Ok(AppendOutcome {
        message,
        duplicate: false,
        members: Some(members),
    })
}

/// Stores a message whose seq the caller has taken, in the writer's
/// transaction; returns it with its id.
fn insert(tx: &mut Tx<'_>, mut m: StoredMessage) -> Result<StoredMessage> {
    m.msg_id = tx.next_msg_id();
    super::engine::chunk::insert_message(tx.conn, &m)?;
    Ok(m)
}

/// What a 1:1 from `from` needs to know of `to` (`None`: no such user),
/// from the writer's cache when a send between them went through before
/// (kept until friends, blocks or accounts change).
fn peer_facts(
    convs: &ConvCache,
    conn: &Connection,
    from: UserId,
    to: UserId,
) -> Result<Option<PeerFacts>> {
    if let Some(facts) = convs.peer(from, to) {
        return Ok(Some(facts));
    }
    Ok(conn
        .prepare_cached(
            "SELECT u.disabled,
                    EXISTS (SELECT 1 FROM friends WHERE user_id = ?1 AND friend_id = ?2),
                    EXISTS (SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = ?2)
             FROM users u WHERE u.id = ?1",
        )?
        .query_row([to, from], |r| {
            Ok(PeerFacts {
                active: !r.get::<_, bool>(0)?,
                friends: r.get(1)?,
                blocked: r.get(2)?,
            })
        })
        .optional()?)
}

/// Appends a system event to a conversation in the caller's transaction
/// and queues it for `to` (see [`rules::Change::audience`]).
pub fn system_event(
    tx: &mut Tx<'_>,
    conversation: ConversationId,
    event: &SystemEvent,
    now_ms: i64,
    to: Arc<[UserId]>,
) -> Result<StoredMessage> {
    let seq = tx.convs.seqs.next(tx.conn, conversation, now_ms)?;
    // Events are rare and the changes that make them read the conversation
    // row afterwards, so the row is brought up to date at once.
    tx.convs.seqs.flush(tx.conn)?;
    let message = insert(tx, event.message(conversation, seq, now_ms))?;
    tx.publish(Committed {
        message: Arc::new(message.clone()),
        members: to,
        origin: None,
    });
    Ok(message)
}

/// What a send or a cursor needs of a conversation: from the writer's cache
/// or the database, or, for a 1:1 made in the log that the database lacks
/// yet, from its record.
fn view_of(tx: &mut Tx<'_>, id: ConversationId) -> Result<Arc<ConversationView>> {
    match tx.pending.made(id) {
        Some(c) => Ok(Arc::new(ConversationView {
            kind: ConversationKind::Direct,
            dismissed: false,
            muted_all: false,
            members: Arc::new([c.lo, c.hi]),
            roles: [c.lo, c.hi]
                .into_iter()
                .map(|u| (u, (Role::Member, 0)))
                .collect(),
        })),
        None => tx.convs.get(tx.conn, id),
    }
}

/// The message a send repeats: one its sender stored before in the
/// conversation it names (`None`: a 1:1 not made yet, so nothing) under the
/// same client_msg_id. Not looked up at all when the writer's filter knows
/// the key was never stored (`engine::keys`); else looked up in the
/// waiting records, then in the database's key, which lives beside the
/// conversation's messages.
fn original(
    tx: &mut Tx<'_>,
    named: Option<ConversationId>,
    new: &NewMessage,
) -> Result<Option<Arc<StoredMessage>>> {
    let Some(conversation) = named else {
        return Ok(None);
    };
    if tx
        .stage
        .keys
        .surely_new(conversation, new.sender_id, &new.client_msg_id)
    {
        return Ok(None);
    }
    if let Some(m) = tx
        .pending
        .original(conversation, new.sender_id, &new.client_msg_id)
    {
        return Ok(Some(m));
    }
    Ok(tx
        .conn
        .prepare_cached(select_messages!(
            "WHERE conversation_id = ?1 AND sender_id = ?2 AND client_msg_id = ?3"
        ))?
        .query_row(
            params![conversation, new.sender_id, new.client_msg_id],
            message_row,
        )
        .optional()?
        .map(Arc::new))
}

/// The 1:1 conversation of two users, if it exists: in the writer's cache,
/// made in the log, or in the database.
fn known_direct(tx: &mut Tx<'_>, a: UserId, b: UserId) -> Result<Option<ConversationId>> {
    let (lo, hi) = (a.min(b), a.max(b));
    if let Some(id) = tx.convs.pair(lo, hi) {
        return Ok(Some(id));
    }
    let existing = match tx.pending.direct(lo, hi) {
        Some(id) => Some(id),
        None => tx
            .conn
            .prepare_cached(
                "SELECT conversation_id FROM direct_pairs WHERE user_lo = ?1 AND user_hi = ?2",
            )?
            .query_row([lo, hi], |r| r.get(0))
            .optional()?,
    };
    if let Some(id) = existing {
        tx.convs.set_pair(lo, hi, id);
    }
    Ok(existing)
}

/// Makes the 1:1 conversation of two users that have none (see
/// [`known_direct`]); the caller has checked that the peer exists and
/// accepts the message. It is made in the message log, not the database
/// (`Tx::stage_direct`): the first message between two users waits for no
/// copy in the database.
fn make_direct(tx: &mut Tx<'_>, a: UserId, b: UserId, now_ms: i64) -> ConversationId {
    let (lo, hi) = (a.min(b), a.max(b));
    let id = tx.stage_direct(lo, hi, now_ms);
    tx.convs.seqs.made(id, now_ms);
    tx.convs.set_pair(lo, hi, id);
    id
}

/// Ids as a JSON array, for `json_each`: one statement for any number.
pub(crate) fn json_list(ids: &[u64]) -> String {
    let mut s = String::with_capacity(ids.len() * 8 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    s
}

/// Raises one of `user`'s cursors to `seq` (clamped to what they may see),
/// staged for the message log. `None` when it was there already.
fn raise_cursor(
    tx: &mut Tx<'_>,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
    kind: CursorKind,
) -> Result<Option<(u64, Vec<UserId>)>> {
    tx.may_stage()?;
    let conn = tx.conn;
    let column = match kind {
        CursorKind::Delivered => "delivered_seq",
        CursorKind::Read => "read_seq",
    };
    let row: Option<(u64, u64)> = match tx.pending.made(conversation) {
        Some(c) => (user == c.lo || user == c.hi).then_some((0, 0)),
        None => conn
            .prepare_cached(&format!(
                "SELECT left_seq, {column} FROM members WHERE user_id = ?1 AND conversation_id = ?2"
            ))?
            .query_row([user, conversation], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
    };
    let Some((left, stored)) = row else {
        return Err(StoreError::NotMember(conversation));
    };
    // The writer's seqs are ahead of the row while messages wait in the log.
    let last = tx.convs.seqs.last(conn, conversation)?;
    let seq = seq.min(rules::visible_upto(left, last));
    let current = tx
        .pending
        .cursor(user, conversation, kind)
        .map_or(stored, |p| p.max(stored));
    if seq <= current {
        return Ok(None);
    }
    let view = view_of(tx, conversation)?;
    tx.stage_cursor(user, conversation, kind, seq);
    Ok(Some((
        seq,
        rules::cursor_audience(
            view.kind,
            matches!(kind, CursorKind::Read),
            user,
            &view.members,
        ),
    )))
}

pub fn mark_delivered(
    tx: &mut Tx<'_>,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
) -> Result<Option<Delivered>> {
    Ok(
        raise_cursor(tx, user, conversation, seq, CursorKind::Delivered)?
            .map(|(seq, members)| Delivered { seq, members }),
    )
}

pub fn mark_read(
    tx: &mut Tx<'_>,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
) -> Result<Option<ReadMoved>> {
    Ok(raise_cursor(tx, user, conversation, seq, CursorKind::Read)?
        .map(|(seq, notify)| ReadMoved { seq, notify }))
}

/// Turns a message into a tombstone and appends a "recalled" event, if
/// [`rules::recall`] allows.
pub fn recall(
    tx: &mut Tx<'_>,
    actor: UserId,
    conversation: ConversationId,
    seq: u64,
    window_ms: i64,
    now_ms: i64,
) -> Result<()> {
    let conn = tx.conn;
    let view = tx.convs.get(conn, conversation).map_err(|e| match e {
        StoreError::NotFound(_) => StoreError::NotMember(conversation),
        e => e,
    })?;
    let message = conn
        .prepare_cached(
            "SELECT sender_id, body_kind, created_at_ms FROM messages
             WHERE conversation_id = ?1 AND seq = ?2",
        )?
        .query_row(params![conversation, seq], |r| {
            Ok(Recallable {
                sender: r.get(0)?,
                kind: super::stored(r, 1)?,
                server_ts_ms: r.get(2)?,
            })
        })
        .optional()?;
    let plan = match rules::recall(&view, conversation, seq, actor, message, window_ms, now_ms)? {
        RecallStep::Done => return Ok(()),
        RecallStep::Recall(plan) => plan,
    };
    conn.prepare_cached(
        "UPDATE messages SET body_kind = ?3, body = '', mentions = '', mention_all = 0
         WHERE conversation_id = ?1 AND seq = ?2",
    )?
    .execute(params![conversation, plan.seq, BodyKind::Recalled as i64])?;
    conn.prepare_cached("DELETE FROM mentions WHERE conversation_id = ?1 AND seq = ?2")?
        .execute(params![conversation, plan.seq])?;
    system_event(tx, conversation, &plan.event, now_ms, plan.audience)?;
    Ok(())
}
