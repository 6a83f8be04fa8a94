//! The append round's statements on MariaDB/MySQL (the round itself is
//! `sql::round`), set-based like PostgreSQL's: the batch's keys, pairs and
//! rows travel as one JSON array read with `JSON_TABLE`, so a round costs
//! a handful of round trips whatever its size. The (conversation, sender,
//! client_msg_id) key is the messages table's own unique index: a key
//! taken since the round looked fails the insert, and the round runs
//! again, looking.

use super::engine::dialect::{mention_list, Link, My};
use super::engine::faults::duplicate_key;
use crate::rules::PeerFacts;
use crate::sql::changes::Writes;
use crate::sql::messages::{message_columns, message_row};
use crate::sql::round::{set_views, Locked, Members, Round, Rounds};
use crate::sql::{args, each, Db};
use crate::{
    BodyKind, ConversationId, ConversationKind, Result, StoreError, StoredMessage, UserId,
};
use std::collections::HashMap;

/// Bytes of message rows sent in one statement, well under the servers'
/// smallest default `max_allowed_packet` (4 MiB on MySQL 8.0 before 8.0.3,
/// 16 MiB on MariaDB and later MySQL).
const INSERT_BYTES: usize = 2 << 20;

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::backend("a JSON parameter", e))
}

/// Inserts messages and their mention flags, in chunks of at most
/// [`INSERT_BYTES`]; their ids, in order. A taken key is a
/// `StoreError::Conflict("message key")`.
pub(crate) async fn insert<L: Link>(
    db: &My<'_, L>,
    messages: &[&StoredMessage],
) -> Result<Vec<u64>> {
    let mut start = 0;
    while start < messages.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < messages.len()
            && (end == start || bytes + messages[end].body.content.len() < INSERT_BYTES)
        {
            bytes += messages[end].body.content.len() + 128;
            end += 1;
        }
        let rows: Vec<serde_json::Value> = messages[start..end]
            .iter()
            .map(|m| {
                serde_json::json!([
                    m.conversation_id,
                    m.seq,
                    m.sender_id,
                    m.client_msg_id,
                    m.server_ts_ms,
                    m.body.kind as i64,
                    m.body.content,
                    mention_list(&m.mentions),
                    m.mention_all
                ])
            })
            .collect();
        let rows = json(&rows)?;
        let stored = db.exec(
            "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, created_at_ms,
                body_kind, body, mentions, mention_all)
             SELECT j.c, j.s, j.u, j.i, j.t, j.k, j.b, j.m, j.a
             FROM JSON_TABLE($1, '$[*]' COLUMNS (c BIGINT PATH '$[0]', s BIGINT PATH '$[1]',
                 u BIGINT PATH '$[2]', i VARCHAR(255) PATH '$[3]', t BIGINT PATH '$[4]',
                 k SMALLINT PATH '$[5]', b LONGTEXT PATH '$[6]', m TEXT PATH '$[7]',
                 a BOOLEAN PATH '$[8]')) AS j",
            args![rows.as_str()],
        )
        .await;
        match stored {
            Err(e) if duplicate_key(&e) => return Err(StoreError::Conflict("message key")),
            other => other?,
        };
        start = end;
    }
    let flags: Vec<[u64; 3]> = messages
        .iter()
        .flat_map(|m| m.mentions.iter().map(|&u| [u, m.conversation_id, m.seq]))
        .collect();
    if !flags.is_empty() {
        let flags = json(&flags)?;
        db.exec(
            "INSERT INTO mentions (user_id, conversation_id, seq)
             SELECT j.u, j.c, j.s FROM JSON_TABLE($1, '$[*]' COLUMNS (u BIGINT PATH '$[0]',
                 c BIGINT PATH '$[1]', s BIGINT PATH '$[2]')) AS j
             ON CONFLICT DO NOTHING",
            args![flags.as_str()],
        )
        .await?;
    }
    let at: Vec<(u64, u64)> = messages
        .iter()
        .map(|m| (m.conversation_id, m.seq))
        .collect();
    let found = db
        .rows(
            "SELECT m.conversation_id, m.seq, m.id
             FROM JSON_TABLE($1, '$[*]' COLUMNS (c BIGINT PATH '$[0]', s BIGINT PATH '$[1]')) AS k
             JOIN messages m ON m.conversation_id = k.c AND m.seq = k.s",
            args![json(&at)?.as_str()],
        )
        .await?;
    let ids: HashMap<(u64, u64), u64> = each(found, |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?
        .into_iter()
        .collect();
    at.iter()
        .map(|k| {
            ids.get(k).copied().ok_or(StoreError::bug(
                "an inserted message came back without its id",
            ))
        })
        .collect()
}

impl<L: Link> Rounds for My<'_, L> {
    async fn duplicates(
        &mut self,
        keys: &[(ConversationId, UserId, &str)],
    ) -> Result<Vec<StoredMessage>> {
        let found = self
            .rows(
                concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM JSON_TABLE($1, '$[*]' COLUMNS (v BIGINT PATH '$[0]',
                         s BIGINT PATH '$[1]', c VARCHAR(255) PATH '$[2]')) AS k
                     JOIN messages m
                       ON m.conversation_id = k.v AND m.sender_id = k.s AND m.client_msg_id = k.c"
                ),
                args![json(&keys)?.as_str()],
            )
            .await?;
        each(found, message_row)
    }

    async fn find_pairs(
        &mut self,
        wanted: &[(UserId, UserId)],
    ) -> Result<Vec<((UserId, UserId), ConversationId)>> {
        let found = self
            .rows(
                "SELECT p.user_lo, p.user_hi, p.conversation_id
                 FROM JSON_TABLE($1, '$[*]' COLUMNS (lo BIGINT PATH '$[0]', hi BIGINT PATH '$[1]')) AS k
                 JOIN direct_pairs p ON p.user_lo = k.lo AND p.user_hi = k.hi",
                args![json(&wanted)?.as_str()],
            )
            .await?;
        each(found, |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
    }

    async fn lock(&mut self, ids: &[ConversationId]) -> Result<HashMap<ConversationId, Locked>> {
        let found = self
            .rows(
                "SELECT id, kind, last_seq, last_activity_ms FROM conversations
                 WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                args![ids],
            )
            .await?;
        Ok(each(found, |r| {
            Ok((
                r.get::<u64>(0)?,
                Locked::new(r.stored::<ConversationKind>(1)?, r.get(2)?, r.get(3)?),
            ))
        })?
        .into_iter()
        .collect())
    }

    async fn load_views(&mut self, locked: &mut HashMap<ConversationId, Locked>) -> Result<()> {
        let ids: Vec<u64> = locked.keys().copied().collect();
        let mut views: HashMap<ConversationId, Members> = HashMap::new();
        let found = self
            .rows(
                "SELECT conversation_id, user_id, role, muted_until_ms FROM members
                 WHERE conversation_id = ANY($1) AND left_seq = 0 ORDER BY conversation_id, user_id",
                args![ids.as_slice()],
            )
            .await?;
        for r in &found {
            let v = views.entry(r.get(0)?).or_default();
            let user: UserId = r.get(1)?;
            v.0.push(user);
            v.1.insert(user, (r.stored(2)?, r.get(3)?));
        }
        let found = self
            .rows(
                "SELECT conversation_id, dismissed, muted_all FROM groups WHERE conversation_id = ANY($1)",
                args![ids.as_slice()],
            )
            .await?;
        let flags: HashMap<ConversationId, (bool, bool)> =
            each(found, |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
                .into_iter()
                .collect();
        set_views(locked, views, flags);
        Ok(())
    }

    async fn peer_facts(
        &mut self,
        asks: &[(UserId, UserId)],
    ) -> Result<HashMap<(UserId, UserId), PeerFacts>> {
        let found = self
            .rows(
                "SELECT k.f, k.t, u.disabled,
                        EXISTS (SELECT 1 FROM friends WHERE user_id = k.t AND friend_id = k.f),
                        EXISTS (SELECT 1 FROM blocks WHERE user_id = k.t AND blocked_id = k.f)
                 FROM JSON_TABLE($1, '$[*]' COLUMNS (f BIGINT PATH '$[0]', t BIGINT PATH '$[1]')) AS k
                 JOIN users u ON u.id = k.t",
                args![json(&asks)?.as_str()],
            )
            .await?;
        Ok(each(found, |r| {
            Ok((
                (r.get(0)?, r.get(1)?),
                PeerFacts {
                    active: !r.get::<bool>(2)?,
                    friends: r.get(3)?,
                    blocked: r.get(4)?,
                },
            ))
        })?
        .into_iter()
        .collect())
    }

    async fn direct(&mut self, lo: UserId, hi: UserId, now_ms: i64) -> Result<ConversationId> {
        // The conversation first (the pair names it); if another
        // transaction made the pair meanwhile, this one's row goes again
        // and the pair's conversation is the one.
        let id: ConversationId = self
            .one(
                "INSERT INTO conversations (kind, created_at_ms, last_activity_ms)
                 VALUES ($1, $2, $2) RETURNING id",
                args![ConversationKind::Direct as i64, now_ms],
            )
            .await?
            .get(0)?;
        let made = self
            .exec(
                "INSERT INTO direct_pairs (user_lo, user_hi, conversation_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                args![lo, hi, id],
            )
            .await?;
        if made == 0 {
            self.exec("DELETE FROM conversations WHERE id = $1", args![id])
                .await?;
            return self
                .one(
                    "SELECT conversation_id FROM direct_pairs WHERE user_lo = $1 AND user_hi = $2",
                    args![lo, hi],
                )
                .await?
                .get(0);
        }
        self.exec(
            "INSERT INTO members (user_id, conversation_id, joined_at_ms)
             VALUES ($1, $3, $4), ($2, $3, $4)",
            args![lo, hi, id, now_ms],
        )
        .await?;
        Ok(id)
    }

    async fn claim_keys(&mut self, _messages: &[&StoredMessage]) -> Result<bool> {
        // The messages table's unique index takes them, at insert.
        Ok(true)
    }

    async fn insert(&mut self, messages: &[&StoredMessage]) -> Result<Vec<u64>, Round> {
        match insert(self, messages).await {
            Err(StoreError::Conflict("message key")) => Err(Round::Raced),
            out => Ok(out?),
        }
    }

    async fn bump(&mut self, touched: &[(ConversationId, u64, i64)]) -> Result<()> {
        self.exec(
            "UPDATE conversations c
             JOIN JSON_TABLE($1, '$[*]' COLUMNS (id BIGINT PATH '$[0]', seq BIGINT PATH '$[1]',
                 ts BIGINT PATH '$[2]')) AS v ON c.id = v.id
             SET c.last_seq = v.seq, c.last_activity_ms = greatest(c.last_activity_ms, v.ts)",
            args![json(&touched)?.as_str()],
        )
        .await?;
        Ok(())
    }
}

/// The rows of a change's system events and recall's blanking, in this
/// backend's form.
impl<L: Link> Writes for My<'_, L> {
    async fn insert_messages(&self, messages: &[&StoredMessage]) -> Result<Vec<u64>> {
        insert(self, messages).await
    }

    async fn blank_message(&self, conversation: ConversationId, seq: u64) -> Result<()> {
        self.exec(
            "UPDATE messages SET body_kind = $3, body = '', mentions = '', mention_all = false
             WHERE conversation_id = $1 AND seq = $2",
            args![conversation, seq, BodyKind::Recalled as i64],
        )
        .await?;
        Ok(())
    }
}
