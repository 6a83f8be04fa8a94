//! The append round's statements on PostgreSQL (the round itself is
//! `sql::round`): set-based over `unnest` of arrays, prepared once on the
//! writer's connection, so a round costs a handful of round trips
//! whatever its size.

use super::super::rows::{self, key, keys};
use crate::rules::PeerFacts;
use crate::sql::round::{set_views, Locked, Members, Round, Rounds};
use crate::{ConversationId, ConversationKind, Result, StoreError, StoredMessage, UserId};
use std::collections::HashMap;
use tokio_postgres::Transaction;

/// Statements prepared on the writer's connection, by their text: a round
/// then costs one round trip per statement and no planning after the first
/// few (PostgreSQL switches to a generic plan).
#[derive(Default)]
pub struct Statements(HashMap<&'static str, tokio_postgres::Statement>);

impl Statements {
    pub async fn get(
        &mut self,
        tx: &Transaction<'_>,
        sql: &'static str,
    ) -> Result<tokio_postgres::Statement> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = tx.prepare(sql).await?;
        self.0.insert(sql, s.clone());
        Ok(s)
    }
}

impl From<tokio_postgres::Error> for Round {
    fn from(e: tokio_postgres::Error) -> Self {
        Round::Failed(e.into())
    }
}

/// A round's transaction on the writer's connection, with the statements
/// prepared on it.
pub struct PgRound<'a, 'c> {
    pub tx: &'a Transaction<'c>,
    pub st: &'a mut Statements,
}

impl Rounds for PgRound<'_, '_> {
    async fn duplicates(
        &mut self,
        keys: &[(ConversationId, UserId, &str)],
    ) -> Result<Vec<StoredMessage>> {
        let convs: Vec<i64> = keys.iter().map(|k| key(k.0)).collect();
        let senders: Vec<i64> = keys.iter().map(|k| key(k.1)).collect();
        let cmids: Vec<&str> = keys.iter().map(|k| k.2).collect();
        // The columns of `rows::MESSAGE_COLUMNS`, spelled out for a constant.
        let find = self
            .st
            .get(
                self.tx,
                "SELECT m.conversation_id, m.seq, m.id, m.sender_id, m.client_msg_id,
                        m.created_at_ms, m.body_kind, m.body, m.mentions, m.mention_all
                 FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS k(v, s, c)
                 JOIN message_ids i
                   ON i.conversation_id = k.v AND i.sender_id = k.s AND i.client_msg_id = k.c
                 JOIN messages m ON m.conversation_id = i.conversation_id AND m.seq = i.seq",
            )
            .await?;
        self.tx
            .query(&find, &[&convs, &senders, &cmids])
            .await?
            .iter()
            .map(rows::message)
            .collect()
    }

    async fn find_pairs(
        &mut self,
        wanted: &[(UserId, UserId)],
    ) -> Result<Vec<((UserId, UserId), ConversationId)>> {
        let (lo, hi): (Vec<u64>, Vec<u64>) = wanted.iter().copied().unzip();
        let find = self
            .st
            .get(
                self.tx,
                "SELECT p.user_lo, p.user_hi, p.conversation_id
                 FROM unnest($1::bigint[], $2::bigint[]) AS k(lo, hi)
                 JOIN direct_pairs p ON p.user_lo = k.lo AND p.user_hi = k.hi",
            )
            .await?;
        Ok(self
            .tx
            .query(&find, &[&keys(&lo), &keys(&hi)])
            .await?
            .iter()
            .map(|r| ((rows::id(r, 0), rows::id(r, 1)), rows::id(r, 2)))
            .collect())
    }

    async fn lock(&mut self, ids: &[ConversationId]) -> Result<HashMap<ConversationId, Locked>> {
        let lock = self
            .st
            .get(
                self.tx,
                "SELECT id, kind, last_seq, last_activity_ms FROM conversations
                 WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .await?;
        let mut out = HashMap::with_capacity(ids.len());
        for r in self.tx.query(&lock, &[&keys(ids)]).await? {
            out.insert(
                rows::id(&r, 0),
                Locked::new(rows::kind(r.get(1))?, rows::id(&r, 2), r.get(3)),
            );
        }
        Ok(out)
    }

    async fn load_views(&mut self, locked: &mut HashMap<ConversationId, Locked>) -> Result<()> {
        let ids: Vec<u64> = locked.keys().copied().collect();
        let mut views: HashMap<ConversationId, Members> = HashMap::new();
        let members = self
            .st
            .get(
                self.tx,
                "SELECT conversation_id, user_id, role, muted_until_ms FROM members
                 WHERE conversation_id = ANY($1) AND left_seq = 0 ORDER BY conversation_id, user_id",
            )
            .await?;
        for r in self.tx.query(&members, &[&keys(&ids)]).await? {
            let v = views.entry(rows::id(&r, 0)).or_default();
            let user = rows::id(&r, 1);
            v.0.push(user);
            v.1.insert(user, (rows::stored(&r, 2)?, r.get(3)));
        }
        let mut flags: HashMap<ConversationId, (bool, bool)> = HashMap::new();
        let groups = self
            .st
            .get(
                self.tx,
                "SELECT conversation_id, dismissed, muted_all FROM groups WHERE conversation_id = ANY($1)",
            )
            .await?;
        for r in self.tx.query(&groups, &[&keys(&ids)]).await? {
            flags.insert(rows::id(&r, 0), (r.get(1), r.get(2)));
        }
        set_views(locked, views, flags);
        Ok(())
    }

    async fn peer_facts(
        &mut self,
        asks: &[(UserId, UserId)],
    ) -> Result<HashMap<(UserId, UserId), PeerFacts>> {
        let (from, to): (Vec<u64>, Vec<u64>) = asks.iter().copied().unzip();
        let facts = self
            .st
            .get(
                self.tx,
                "SELECT k.f, k.t, u.disabled,
                        EXISTS (SELECT 1 FROM friends WHERE user_id = k.t AND friend_id = k.f),
                        EXISTS (SELECT 1 FROM blocks WHERE user_id = k.t AND blocked_id = k.f)
                 FROM unnest($1::bigint[], $2::bigint[]) AS k(f, t) JOIN users u ON u.id = k.t",
            )
            .await?;
        let mut out = HashMap::new();
        for r in self.tx.query(&facts, &[&keys(&from), &keys(&to)]).await? {
            out.insert(
                (rows::id(&r, 0), rows::id(&r, 1)),
                PeerFacts {
                    active: !r.get::<_, bool>(2),
                    friends: r.get(3),
                    blocked: r.get(4),
                },
            );
        }
        Ok(out)
    }

    async fn direct(&mut self, lo: UserId, hi: UserId, now_ms: i64) -> Result<ConversationId> {
        let tx = self.tx;
        let claimed = tx
            .query_opt(
                "INSERT INTO direct_pairs (user_lo, user_hi, conversation_id)
                 VALUES ($1, $2, nextval(pg_get_serial_sequence('conversations', 'id')))
                 ON CONFLICT DO NOTHING RETURNING conversation_id",
                &[&key(lo), &key(hi)],
            )
            .await?;
        Ok(match claimed {
            Some(r) => {
                let id: i64 = r.get(0);
                tx.execute(
                    "INSERT INTO conversations (id, kind, created_at_ms, last_activity_ms)
                     VALUES ($1, $2, $3, $3)",
                    &[&id, &(ConversationKind::Direct as i16), &now_ms],
                )
                .await?;
                tx.execute(
                    "INSERT INTO members (user_id, conversation_id, joined_at_ms)
                     VALUES ($1, $3, $4), ($2, $3, $4)",
                    &[&key(lo), &key(hi), &id, &now_ms],
                )
                .await?;
                id as u64
            }
            None => rows::id(
                &tx.query_one(
                    "SELECT conversation_id FROM direct_pairs WHERE user_lo = $1 AND user_hi = $2",
                    &[&key(lo), &key(hi)],
                )
                .await?,
                0,
            ),
        })
    }

    async fn claim_keys(&mut self, messages: &[&StoredMessage]) -> Result<bool> {
        let claim = self
            .st
            .get(
                self.tx,
                "INSERT INTO message_ids (sender_id, client_msg_id, conversation_id, seq, created_at_ms)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let claimed = self
            .tx
            .execute(
                &claim,
                &[
                    &messages
                        .iter()
                        .map(|m| key(m.sender_id))
                        .collect::<Vec<_>>(),
                    &messages
                        .iter()
                        .map(|m| m.client_msg_id.as_str())
                        .collect::<Vec<_>>(),
                    &messages
                        .iter()
                        .map(|m| key(m.conversation_id))
                        .collect::<Vec<_>>(),
                    &messages.iter().map(|m| key(m.seq)).collect::<Vec<_>>(),
                    &messages.iter().map(|m| m.server_ts_ms).collect::<Vec<_>>(),
                ],
            )
            .await?;
        Ok(claimed as usize == messages.len())
    }

    async fn insert(&mut self, messages: &[&StoredMessage]) -> Result<Vec<u64>, Round> {
        Ok(insert(self.tx, self.st, messages).await?)
    }

    async fn bump(&mut self, touched: &[(ConversationId, u64, i64)]) -> Result<()> {
        let update = self
            .st
            .get(
                self.tx,
                "UPDATE conversations c SET last_seq = v.seq, last_activity_ms = GREATEST(c.last_activity_ms, v.ts)
                 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, seq, ts) WHERE c.id = v.id",
            )
            .await?;
        self.tx
            .execute(
                &update,
                &[
                    &touched.iter().map(|t| key(t.0)).collect::<Vec<_>>(),
                    &touched.iter().map(|t| key(t.1)).collect::<Vec<_>>(),
                    &touched.iter().map(|t| t.2).collect::<Vec<_>>(),
                ],
            )
            .await?;
        Ok(())
    }
}

/// Inserts the messages and their mention flags; returns their ids.
pub async fn insert(
    tx: &Transaction<'_>,
    st: &mut Statements,
    messages: &[&StoredMessage],
) -> Result<Vec<u64>> {
    let mentions: Vec<String> = messages
        .iter()
        .map(|m| {
            let list: Vec<String> = m.mentions.iter().map(|u| u.to_string()).collect();
            format!("{{{}}}", list.join(","))
        })
        .collect();
    let insert = st
        .get(
            tx,
            "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, created_at_ms,
                body_kind, body, mentions, mention_all)
             SELECT k.c, k.s, k.u, k.i, k.t, k.k, k.b, k.m::bigint[], k.a
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[],
                         $6::smallint[], $7::text[], $8::text[], $9::bool[])
                  WITH ORDINALITY AS k(c, s, u, i, t, k, b, m, a, n)
             ORDER BY k.n
             RETURNING conversation_id, seq, id",
        )
        .await?;
    let rows = tx
        .query(
            &insert,
            &[
                &messages
                    .iter()
                    .map(|m| key(m.conversation_id))
                    .collect::<Vec<_>>(),
                &messages.iter().map(|m| key(m.seq)).collect::<Vec<_>>(),
                &messages
                    .iter()
                    .map(|m| key(m.sender_id))
                    .collect::<Vec<_>>(),
                &messages
                    .iter()
                    .map(|m| m.client_msg_id.as_str())
                    .collect::<Vec<_>>(),
                &messages.iter().map(|m| m.server_ts_ms).collect::<Vec<_>>(),
                &messages
                    .iter()
                    .map(|m| m.body.kind as i16)
                    .collect::<Vec<_>>(),
                &messages
                    .iter()
                    .map(|m| m.body.content.as_str())
                    .collect::<Vec<_>>(),
                &mentions,
                &messages.iter().map(|m| m.mention_all).collect::<Vec<_>>(),
            ],
        )
        .await?;
    let ids: HashMap<(u64, u64), u64> = rows
        .iter()
        .map(|r| ((rows::id(r, 0), rows::id(r, 1)), rows::id(r, 2)))
        .collect();
    let (mut mu, mut mc, mut ms) = (Vec::new(), Vec::new(), Vec::new());
    for m in messages {
        for u in &m.mentions {
            mu.push(key(*u));
            mc.push(key(m.conversation_id));
            ms.push(key(m.seq));
        }
    }
    if !mu.is_empty() {
        let flag = st
            .get(
                tx,
                "INSERT INTO mentions (user_id, conversation_id, seq)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&flag, &[&mu, &mc, &ms]).await?;
    }
    messages
        .iter()
        .map(|m| {
            ids.get(&(m.conversation_id, m.seq))
                .copied()
                .ok_or(StoreError::bug(
                    "an inserted message came back without its id",
                ))
        })
        .collect()
}
