//! One round of appends in one transaction, set-based: a handful of
//! statements for the whole batch, whatever its size. Seqs come from the
//! conversation rows, locked in id order so that concurrent rounds (on this
//! node or another) never deadlock on them; idempotency comes from the
//! unique (sender, client_msg_id) key, so a resend returns the original
//! also when two nodes race on it.

use super::super::rows::{self, key, keys};
use crate::rules::{self, ConversationView, PeerFacts, SendTo};
use crate::{
    Appended, Committed, ConversationId, ConversationKind, NewMessage, Result, Role, StoreError,
    StoredMessage, Target, UserId,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::Transaction;

/// The 1:1 conversation of each (lower, higher) user pair seen; a pair's
/// conversation never changes once created, so every node may cache it.
pub type Pairs = HashMap<(UserId, UserId), ConversationId>;

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

/// Why a round must run again from the start.
pub enum Round {
    /// A (sender, client_msg_id) this round meant to store was taken:
    /// run again, looking first, and it is found as a duplicate.
    Raced,
    Failed(StoreError),
}

impl From<StoreError> for Round {
    fn from(e: StoreError) -> Self {
        Round::Failed(e)
    }
}

impl From<tokio_postgres::Error> for Round {
    fn from(e: tokio_postgres::Error) -> Self {
        Round::Failed(e.into())
    }
}

/// Each append's answer, and what to publish once the commit is done.
pub type Outcome = (Vec<Result<Appended>>, Vec<Committed>);

/// A conversation locked for this round.
struct Locked {
    kind: ConversationKind,
    last_seq: u64,
    activity_ms: i64,
    view: Option<Arc<ConversationView>>,
    touched: bool,
}

/// Runs one round in `tx`; the caller commits.
/// With `look_first` false the round does not look for stored duplicates
/// up front: claiming the keys finds any (the round then runs again,
/// looking), which saves a lookup per message when nobody resends.
pub async fn round(
    tx: &Transaction<'_>,
    st: &mut Statements,
    jobs: &[NewMessage],
    pairs: &mut Pairs,
    look_first: bool,
) -> Result<Outcome, Round> {
    let dups = if look_first {
        committed_duplicates(tx, st, jobs).await?
    } else {
        HashMap::new()
    };
    // The pairs whose conversation is known; the others are created below,
    // only for sends the rules let through.
    let wanted: Vec<(UserId, UserId)> = jobs
        .iter()
        .filter_map(|j| match j.target {
            Target::Peer(p) if p != j.sender_id => Some((j.sender_id.min(p), j.sender_id.max(p))),
            _ => None,
        })
        .filter(|p| !pairs.contains_key(p))
        .collect();
    if !wanted.is_empty() {
        let (lo, hi): (Vec<u64>, Vec<u64>) = wanted.iter().copied().unzip();
        let find = st
            .get(
                tx,
                "SELECT p.user_lo, p.user_hi, p.conversation_id
                 FROM unnest($1::bigint[], $2::bigint[]) AS k(lo, hi)
                 JOIN direct_pairs p ON p.user_lo = k.lo AND p.user_hi = k.hi",
            )
            .await?;
        for r in tx.query(&find, &[&keys(&lo), &keys(&hi)]).await? {
            pairs.insert((rows::id(&r, 0), rows::id(&r, 1)), rows::id(&r, 2));
        }
    }
    let mut ids: Vec<ConversationId> = jobs
        .iter()
        .filter_map(|j| match j.target {
            Target::Conversation(id) => Some(id),
            Target::Peer(p) => pairs
                .get(&(j.sender_id.min(p), j.sender_id.max(p)))
                .copied(),
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut locked = lock(tx, st, &ids).await?;
    load_views(tx, st, &mut locked).await?;
    let facts = peer_facts(tx, st, jobs, &locked).await?;

    let mut answers: Vec<Result<Appended>> = Vec::with_capacity(jobs.len());
    let mut accepted: Vec<(usize, StoredMessage, Arc<[UserId]>)> = Vec::new();
    // (sender, client_msg_id) accepted earlier in this round.
    let mut in_round: HashMap<(UserId, &str), usize> = HashMap::new();
    // (job, index in `accepted`) of sends repeating one accepted earlier.
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        if let Some(m) = dups.get(&(j.sender_id, j.client_msg_id.as_str())) {
            answers.push(Ok(Appended {
                message: Arc::new(m.clone()),
                duplicate: true,
            }));
            continue;
        }
        if let Some(&first) = in_round.get(&(j.sender_id, j.client_msg_id.as_str())) {
            // Answered from the first one's row once it is stored.
            repeats.push((i, first));
            answers.push(Err(StoreError::bug("pending duplicate")));
            continue;
        }
        let judged = judge(tx, st, j, pairs, &mut locked, &facts).await;
        match judged {
            Ok((conversation, members, mentions)) => {
                let Some(c) = locked.get_mut(&conversation) else {
                    answers.push(Err(StoreError::bug(
                        "a judged send without its conversation",
                    )));
                    continue;
                };
                c.last_seq += 1;
                c.activity_ms = c.activity_ms.max(j.now_ms);
                c.touched = true;
                let message = StoredMessage {
                    conversation_id: conversation,
                    seq: c.last_seq,
                    msg_id: 0,
                    sender_id: j.sender_id,
                    client_msg_id: j.client_msg_id.clone(),
                    server_ts_ms: j.now_ms,
                    body: j.body.clone(),
                    mentions,
                    mention_all: j.mention_all,
                };
                in_round.insert((j.sender_id, j.client_msg_id.as_str()), accepted.len());
                accepted.push((i, message, members));
                answers.push(Err(StoreError::bug("pending append")));
            }
            // A storage error fails the round; a refusal is this send's.
            Err(e @ (StoreError::Fault { .. } | StoreError::Backend { .. })) => {
                return Err(Round::Failed(e))
            }
            Err(e) => answers.push(Err(e)),
        }
    }
    if accepted.is_empty() {
        return Ok((answers, Vec::new()));
    }
    let messages: Vec<&StoredMessage> = accepted.iter().map(|(_, m, _)| m).collect();
    claim_ids(tx, st, &messages).await?;
    let msg_ids = insert(tx, st, &messages).await?;
    let touched: Vec<(&ConversationId, &Locked)> =
        locked.iter().filter(|(_, c)| c.touched).collect();
    let update = st
        .get(
            tx,
            "UPDATE conversations c SET last_seq = v.seq, last_activity_ms = GREATEST(c.last_activity_ms, v.ts)
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, seq, ts) WHERE c.id = v.id",
        )
        .await?;
    tx.execute(
        &update,
        &[
            &touched.iter().map(|(id, _)| key(**id)).collect::<Vec<_>>(),
            &touched
                .iter()
                .map(|(_, c)| key(c.last_seq))
                .collect::<Vec<_>>(),
            &touched
                .iter()
                .map(|(_, c)| c.activity_ms)
                .collect::<Vec<_>>(),
        ],
    )
    .await?;
    let mut publish = Vec::with_capacity(accepted.len());
    let mut stored: Vec<Arc<StoredMessage>> = Vec::with_capacity(accepted.len());
    for ((i, mut m, members), msg_id) in accepted.into_iter().zip(msg_ids) {
        m.msg_id = msg_id;
        let m = Arc::new(m);
        answers[i] = Ok(Appended {
            message: m.clone(),
            duplicate: false,
        });
        publish.push(Committed {
            message: m.clone(),
            members,
            origin: jobs[i].origin,
        });
        stored.push(m);
    }
    for (i, first) in repeats {
        answers[i] = Ok(Appended {
            message: stored[first].clone(),
            duplicate: true,
        });
    }
    Ok((answers, publish))
}

/// Messages stored before under the round's (sender, client_msg_id) keys.
async fn committed_duplicates<'j>(
    tx: &Transaction<'_>,
    st: &mut Statements,
    jobs: &'j [NewMessage],
) -> Result<HashMap<(UserId, &'j str), StoredMessage>> {
    let senders: Vec<i64> = jobs.iter().map(|j| key(j.sender_id)).collect();
    let cmids: Vec<&str> = jobs.iter().map(|j| j.client_msg_id.as_str()).collect();
    // The columns of `rows::MESSAGE_COLUMNS`, spelled out for a constant.
    let find = st
        .get(
            tx,
            "SELECT m.conversation_id, m.seq, m.id, m.sender_id, m.client_msg_id,
                    m.created_at_ms, m.body_kind, m.body, m.mentions, m.mention_all
             FROM unnest($1::bigint[], $2::text[]) AS k(s, c)
             JOIN message_ids i ON i.sender_id = k.s AND i.client_msg_id = k.c
             JOIN messages m ON m.conversation_id = i.conversation_id AND m.seq = i.seq",
        )
        .await?;
    let mut out = HashMap::new();
    for r in tx.query(&find, &[&senders, &cmids]).await? {
        let m = rows::message(&r)?;
        if let Some(j) = jobs
            .iter()
            .find(|j| j.sender_id == m.sender_id && j.client_msg_id == m.client_msg_id)
        {
            out.insert((j.sender_id, j.client_msg_id.as_str()), m);
        }
    }
    Ok(out)
}

/// Locks the conversations, in id order.
async fn lock(
    tx: &Transaction<'_>,
    st: &mut Statements,
    ids: &[ConversationId],
) -> Result<HashMap<ConversationId, Locked>> {
    let mut out = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(out);
    }
    let lock = st
        .get(
            tx,
            "SELECT id, kind, last_seq, last_activity_ms FROM conversations
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .await?;
    for r in tx.query(&lock, &[&keys(ids)]).await? {
        out.insert(
            rows::id(&r, 0),
            Locked {
                kind: rows::kind(r.get(1))?,
                last_seq: rows::id(&r, 2),
                activity_ms: r.get(3),
                view: None,
                touched: false,
            },
        );
    }
    Ok(out)
}

/// The members (and group flags) of the locked conversations, read under
/// their locks: what every send of the round is checked against.
async fn load_views(
    tx: &Transaction<'_>,
    st: &mut Statements,
    locked: &mut HashMap<ConversationId, Locked>,
) -> Result<()> {
    if locked.is_empty() {
        return Ok(());
    }
    let ids: Vec<u64> = locked.keys().copied().collect();
    type Members = (Vec<UserId>, HashMap<UserId, (Role, i64)>);
    let mut views: HashMap<ConversationId, Members> = HashMap::new();
    let members = st
        .get(
            tx,
            "SELECT conversation_id, user_id, role, muted_until_ms FROM members
             WHERE conversation_id = ANY($1) AND left_seq = 0 ORDER BY conversation_id, user_id",
        )
        .await?;
    for r in tx.query(&members, &[&keys(&ids)]).await? {
        let v = views.entry(rows::id(&r, 0)).or_default();
        let user = rows::id(&r, 1);
        v.0.push(user);
        v.1.insert(user, (rows::stored(&r, 2)?, r.get(3)));
    }
    let mut flags: HashMap<ConversationId, (bool, bool)> = HashMap::new();
    let groups = st
        .get(
            tx,
            "SELECT conversation_id, dismissed, muted_all FROM groups WHERE conversation_id = ANY($1)",
        )
        .await?;
    for r in tx.query(&groups, &[&keys(&ids)]).await? {
        flags.insert(rows::id(&r, 0), (r.get(1), r.get(2)));
    }
    for (id, c) in locked.iter_mut() {
        let (members, roles) = views.remove(id).unwrap_or_default();
        let (dismissed, muted_all) = flags.get(id).copied().unwrap_or((false, false));
        c.view = Some(Arc::new(ConversationView {
            kind: c.kind,
            dismissed,
            muted_all,
            members: members.into(),
            roles,
        }));
    }
    Ok(())
}

/// Whether each recipient of a 1:1 send in the round accepts its sender.
async fn peer_facts(
    tx: &Transaction<'_>,
    st: &mut Statements,
    jobs: &[NewMessage],
    locked: &HashMap<ConversationId, Locked>,
) -> Result<HashMap<(UserId, UserId), PeerFacts>> {
    let mut asks: Vec<(UserId, UserId)> = Vec::new();
    for j in jobs {
        match j.target {
            Target::Peer(p) => asks.push((j.sender_id, p)),
            Target::Conversation(id) => {
                if let Some(view) = locked.get(&id).and_then(|c| c.view.as_ref()) {
                    if let Ok(SendTo::Direct { peer }) = rules::may_send(view, id, j) {
                        asks.push((j.sender_id, peer));
                    }
                }
            }
        }
    }
    asks.sort_unstable();
    asks.dedup();
    let mut out = HashMap::new();
    if asks.is_empty() {
        return Ok(out);
    }
    let (from, to): (Vec<u64>, Vec<u64>) = asks.iter().copied().unzip();
    let facts = st
        .get(
            tx,
            "SELECT k.f, k.t, u.disabled,
                    EXISTS (SELECT 1 FROM friends WHERE user_id = k.t AND friend_id = k.f),
                    EXISTS (SELECT 1 FROM blocks WHERE user_id = k.t AND blocked_id = k.f)
             FROM unnest($1::bigint[], $2::bigint[]) AS k(f, t) JOIN users u ON u.id = k.t",
        )
        .await?;
    for r in tx.query(&facts, &[&keys(&from), &keys(&to)]).await? {
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

/// The rules' verdict on one send: its conversation, who hears of it and
/// the mentions to flag. A 1:1 that may go through and has no
/// conversation yet gets one here.
async fn judge(
    tx: &Transaction<'_>,
    st: &mut Statements,
    j: &NewMessage,
    pairs: &mut Pairs,
    locked: &mut HashMap<ConversationId, Locked>,
    facts: &HashMap<(UserId, UserId), PeerFacts>,
) -> Result<(ConversationId, Arc<[UserId]>, Vec<UserId>)> {
    let view = match j.target {
        Target::Peer(_) => None,
        Target::Conversation(id) => locked.get(&id).and_then(|c| c.view.clone()),
    };
    let verdict = rules::judge_send(j, view.as_deref(), |peer| {
        Ok::<_, StoreError>(facts.get(&(j.sender_id, peer)).copied())
    })?;
    match j.target {
        Target::Peer(peer) => {
            let (lo, hi) = (j.sender_id.min(peer), j.sender_id.max(peer));
            let id = match pairs.get(&(lo, hi)) {
                Some(&id) if locked.contains_key(&id) => id,
                _ => direct_conversation(tx, st, lo, hi, j.now_ms, locked).await?,
            };
            pairs.insert((lo, hi), id);
            Ok((id, Arc::new([lo, hi]), Vec::new()))
        }
        Target::Conversation(id) => {
            let view = view.ok_or(StoreError::NotMember(id))?;
            Ok((id, view.members.clone(), verdict.mentions))
        }
    }
}

/// Creates the 1:1 conversation of a pair, or finds the one another
/// transaction created first, and locks it.
async fn direct_conversation(
    tx: &Transaction<'_>,
    st: &mut Statements,
    lo: UserId,
    hi: UserId,
    now_ms: i64,
    locked: &mut HashMap<ConversationId, Locked>,
) -> Result<ConversationId> {
    let claimed = tx
        .query_opt(
            "INSERT INTO direct_pairs (user_lo, user_hi, conversation_id)
             VALUES ($1, $2, nextval(pg_get_serial_sequence('conversations', 'id')))
             ON CONFLICT DO NOTHING RETURNING conversation_id",
            &[&key(lo), &key(hi)],
        )
        .await?;
    let id = match claimed {
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
    };
    if !locked.contains_key(&id) {
        let mut more = lock(tx, st, &[id]).await?;
        load_views(tx, st, &mut more).await?;
        locked.extend(more);
    }
    Ok(id)
}

/// Takes the round's (sender, client_msg_id) keys. If one is taken (stored
/// before, or by another transaction since the round looked), the round
/// runs again, looking for duplicates first.
async fn claim_ids(
    tx: &Transaction<'_>,
    st: &mut Statements,
    messages: &[&StoredMessage],
) -> Result<(), Round> {
    let claim = st
        .get(
            tx,
            "INSERT INTO message_ids (sender_id, client_msg_id, conversation_id, seq, created_at_ms)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let claimed = tx
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
    if claimed as usize != messages.len() {
        return Err(Round::Raced);
    }
    Ok(())
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
