//! One round of appends in one transaction, written once for the backends
//! with a writer task per node (PostgreSQL, MySQL): the jobs' duplicates
//! found, their conversations locked in id order (so concurrent rounds, on
//! this node or another, never deadlock on them), every send judged by the
//! rules against the members as they are, seqs taken from the locked rows,
//! the messages stored and the rows bumped. Idempotency comes from the
//! unique (conversation, sender, client_msg_id) key, so a resend returns
//! the original also when two nodes race on it.
//!
//! The statements are each backend's own ([`Rounds`]), set-based: a
//! handful for the whole batch, whatever its size.

use crate::rules::{self, ConversationView, PeerFacts, SendTo};
use crate::{
    Appended, Committed, ConversationId, ConversationKind, NewMessage, Result, Role, StoreError,
    StoredMessage, Target, UserId,
};
use std::collections::HashMap;
use std::sync::Arc;

/// The 1:1 conversation of each (lower, higher) user pair seen; a pair's
/// conversation never changes once created, so every node may cache it.
pub(crate) type Pairs = HashMap<(UserId, UserId), ConversationId>;

/// Each append's answer, and what to publish once the commit is done.
pub(crate) type Outcome = (Vec<Result<Appended>>, Vec<Committed>);

/// Why a round must run again from the start.
pub(crate) enum Round {
    /// A (conversation, sender, client_msg_id) this round meant to store
    /// was taken: run again, looking first, and it is found as a duplicate.
    Raced,
    Failed(StoreError),
}

impl From<StoreError> for Round {
    fn from(e: StoreError) -> Self {
        Round::Failed(e)
    }
}

/// A conversation locked for this round.
pub(crate) struct Locked {
    pub kind: ConversationKind,
    pub last_seq: u64,
    pub activity_ms: i64,
    pub view: Option<Arc<ConversationView>>,
    pub touched: bool,
}

impl Locked {
    pub(crate) fn new(kind: ConversationKind, last_seq: u64, activity_ms: i64) -> Locked {
        Locked {
            kind,
            last_seq,
            activity_ms,
            view: None,
            touched: false,
        }
    }
}

/// A conversation's current members in id order, with each one's role and
/// mute, as a backend reads them for [`Rounds::load_views`].
pub(crate) type Members = (Vec<UserId>, HashMap<UserId, (Role, i64)>);

/// Gives each locked conversation its view: its members (`views`) and its
/// group flags (`flags`: dismissed, muted_all; a 1:1 has none).
pub(crate) fn set_views(
    locked: &mut HashMap<ConversationId, Locked>,
    mut views: HashMap<ConversationId, Members>,
    flags: HashMap<ConversationId, (bool, bool)>,
) {
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
}

/// A backend's statements for a round, on its transaction.
pub(crate) trait Rounds {
    /// Messages stored before under these (conversation, sender,
    /// client_msg_id) keys.
    async fn duplicates(
        &mut self,
        keys: &[(ConversationId, UserId, &str)],
    ) -> Result<Vec<StoredMessage>>;

    /// The 1:1 conversations of these (lower, higher) pairs that exist.
    async fn find_pairs(
        &mut self,
        wanted: &[(UserId, UserId)],
    ) -> Result<Vec<((UserId, UserId), ConversationId)>>;

    /// Locks the conversations, in id order: their kind, last seq and
    /// last activity (no view yet).
    async fn lock(&mut self, ids: &[ConversationId]) -> Result<HashMap<ConversationId, Locked>>;

    /// The members (and group flags) of the locked conversations, read
    /// under their locks: what every send of the round is checked against.
    async fn load_views(&mut self, locked: &mut HashMap<ConversationId, Locked>) -> Result<()>;

    /// Whether each recipient (second) of a 1:1 send accepts its sender
    /// (first): active, friends, not blocking.
    async fn peer_facts(
        &mut self,
        asks: &[(UserId, UserId)],
    ) -> Result<HashMap<(UserId, UserId), PeerFacts>>;

    /// Creates the 1:1 conversation of a pair with its two members, or
    /// finds the one another transaction created first.
    async fn direct(&mut self, lo: UserId, hi: UserId, now_ms: i64) -> Result<ConversationId>;

    /// Takes the messages' (conversation, sender, client_msg_id) keys where
    /// they are kept apart from the messages; `false` when one is taken
    /// (the round then runs again, looking first). A backend whose message
    /// table holds the key takes it with [`Rounds::insert`].
    async fn claim_keys(&mut self, messages: &[&StoredMessage]) -> Result<bool>;

    /// Inserts the messages and their mention flags; their ids, in order.
    /// A key taken since the round looked is [`Round::Raced`].
    async fn insert(&mut self, messages: &[&StoredMessage]) -> Result<Vec<u64>, Round>;

    /// Sets each touched conversation's last seq and raises its activity.
    async fn bump(&mut self, touched: &[(ConversationId, u64, i64)]) -> Result<()>;
}

/// Runs one round; the caller commits. With `look_first` false the round
/// does not look for stored duplicates up front: claiming the keys finds
/// any (the round then runs again, looking), which saves a lookup per
/// message when nobody resends.
pub(crate) async fn round(
    db: &mut impl Rounds,
    jobs: &[NewMessage],
    pairs: &mut Pairs,
    look_first: bool,
) -> Result<Outcome, Round> {
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
        pairs.extend(db.find_pairs(&wanted).await?);
    }
    let scopes: Vec<KeyScope> = jobs.iter().map(|j| KeyScope::of(j, pairs)).collect();
    let mut dups: HashMap<(KeyScope, UserId, &str), StoredMessage> = HashMap::new();
    if look_first {
        let keys: Vec<(ConversationId, UserId, &str)> = jobs
            .iter()
            .zip(&scopes)
            .filter_map(|(j, scope)| match scope {
                KeyScope::Conversation(id) => Some((*id, j.sender_id, j.client_msg_id.as_str())),
                KeyScope::Pair(..) => None,
            })
            .collect();
        if !keys.is_empty() {
            for m in db.duplicates(&keys).await? {
                let at = KeyScope::Conversation(m.conversation_id);
                if let Some(j) = jobs.iter().zip(&scopes).find_map(|(j, scope)| {
                    (*scope == at
                        && j.sender_id == m.sender_id
                        && j.client_msg_id == m.client_msg_id)
                        .then_some(j)
                }) {
                    dups.insert((at, j.sender_id, j.client_msg_id.as_str()), m);
                }
            }
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
    let mut locked = if ids.is_empty() {
        HashMap::new()
    } else {
        db.lock(&ids).await?
    };
    if !locked.is_empty() {
        db.load_views(&mut locked).await?;
    }
    let asks = peer_asks(jobs, &locked);
    let facts = if asks.is_empty() {
        HashMap::new()
    } else {
        db.peer_facts(&asks).await?
    };

    let mut answers: Vec<Result<Appended>> = Vec::with_capacity(jobs.len());
    let mut accepted: Vec<(usize, StoredMessage, Arc<[UserId]>)> = Vec::new();
    // (scope, sender, client_msg_id) accepted earlier in this round.
    let mut in_round: HashMap<(KeyScope, UserId, &str), usize> = HashMap::new();
    // (job, index in `accepted`) of sends repeating one accepted earlier.
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        let key = (scopes[i], j.sender_id, j.client_msg_id.as_str());
        if let Some(m) = dups.get(&key) {
            answers.push(Ok(Appended {
                message: Arc::new(m.clone()),
                duplicate: true,
            }));
            continue;
        }
        if let Some(&first) = in_round.get(&key) {
            // Answered from the first one's row once it is stored.
            repeats.push((i, first));
            answers.push(Err(StoreError::bug("pending duplicate")));
            continue;
        }
        match judge(db, j, pairs, &mut locked, &facts).await {
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
                in_round.insert(key, accepted.len());
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
    if !db.claim_keys(&messages).await? {
        return Err(Round::Raced);
    }
    let msg_ids = db.insert(&messages).await?;
    let touched: Vec<(ConversationId, u64, i64)> = locked
        .iter()
        .filter(|(_, c)| c.touched)
        .map(|(&id, c)| (id, c.last_seq, c.activity_ms))
        .collect();
    db.bump(&touched).await?;
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

/// Where a send's idempotency key lives: its conversation, or, for a send
/// to a peer with no 1:1 yet, the pair whose conversation it makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum KeyScope {
    Conversation(ConversationId),
    Pair(UserId, UserId),
}

impl KeyScope {
    fn of(j: &NewMessage, pairs: &Pairs) -> KeyScope {
        match j.target {
            Target::Conversation(id) => KeyScope::Conversation(id),
            Target::Peer(p) => {
                let pair = (j.sender_id.min(p), j.sender_id.max(p));
                match pairs.get(&pair) {
                    Some(&id) => KeyScope::Conversation(id),
                    None => KeyScope::Pair(pair.0, pair.1),
                }
            }
        }
    }
}

/// The (sender, recipient) of every 1:1 send of the round, by a peer or
/// into a 1:1 conversation it names.
fn peer_asks(
    jobs: &[NewMessage],
    locked: &HashMap<ConversationId, Locked>,
) -> Vec<(UserId, UserId)> {
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
    asks
}

/// The rules' verdict on one send: its conversation, who hears of it and
/// the mentions to flag. A 1:1 that may go through and has no
/// conversation yet gets one here, locked.
async fn judge(
    db: &mut impl Rounds,
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
                _ => {
                    let id = db.direct(lo, hi, j.now_ms).await?;
                    if !locked.contains_key(&id) {
                        let mut more = db.lock(&[id]).await?;
                        db.load_views(&mut more).await?;
                        locked.extend(more);
                    }
                    id
                }
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
