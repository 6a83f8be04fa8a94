//! How a sync page is put together from what a backend read in a few
//! set-based queries: the user's memberships, the due messages of all of
//! them at once, and (on a pass's last page) the waiting friend requests.

use super::visible_upto;
use crate::{
    ConversationId, ConversationKind, ConversationState, FriendRequestRecord, MemberState, Page,
    StoredMessage, SyncPage, SYNC_FRIEND_REQUESTS,
};
use std::collections::HashMap;

/// Memberships one sync page covers at most; a backend reads one more to
/// know whether others follow.
pub const SYNC_CONVERSATIONS: usize = 1000;

/// One of the user's memberships, as a backend read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRow {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub last_seq: u64,
    pub joined_seq: u64,
    pub left_seq: u64,
}

impl SyncRow {
    /// The seqs `(after, upto]` the user has not seen, if any.
    fn due(&self, cursors: &HashMap<ConversationId, u64>) -> Option<(u64, u64)> {
        let after = cursors
            .get(&self.id)
            .copied()
            .unwrap_or(0)
            .max(self.joined_seq);
        let upto = visible_upto(self.left_seq, self.last_seq);
        (upto > after).then_some((after, upto))
    }
}

/// The ranges of messages to read, `(conversation, after, upto)` in
/// conversation order: a backend reads the first `page.items` messages of
/// all of them, in that order, in one query.
pub fn due_ranges(
    rows: &[SyncRow],
    cursors: &HashMap<ConversationId, u64>,
) -> Vec<(ConversationId, u64, u64)> {
    rows.iter()
        .take(SYNC_CONVERSATIONS)
        .filter_map(|r| r.due(cursors).map(|(a, u)| (r.id, a, u)))
        .collect()
}

/// Builds one sync page (see `Store::sync`). `rows` are the memberships
/// after `after` in id order (up to `SYNC_CONVERSATIONS + 1`), `members`
/// the member states of the 1:1s among them, and `messages` the first
/// `limit.items` messages of [`due_ranges`] in order. Everything counts
/// against `limit.bytes`, except that a conversation whose next message
/// alone is larger gets a page of its own holding just that message. A
/// conversation is passed (`next_after`) only once all its due messages are
/// on a page.
///
/// The friend requests are asked for last: `pending` is called only on the
/// last page of a pass that has room, so other pages do not read them.
pub fn assemble_sync<E>(
    mut rows: Vec<SyncRow>,
    cursors: &HashMap<ConversationId, u64>,
    mut members: HashMap<ConversationId, Vec<MemberState>>,
    messages: Vec<StoredMessage>,
    after: ConversationId,
    limit: Page,
    pending: impl FnOnce() -> Result<Vec<FriendRequestRecord>, E>,
) -> Result<SyncPage, E> {
    let truncated = messages.len() >= limit.items;
    let more_rows = rows.len() > SYNC_CONVERSATIONS;
    rows.truncate(SYNC_CONVERSATIONS);
    let mut messages = messages.into_iter().peekable();
    let mut page = SyncPage {
        next_after: after,
        ..SyncPage::default()
    };
    let mut used = 0;
    for row in rows {
        let state = ConversationState {
            id: row.id,
            kind: row.kind,
            last_seq: row.last_seq,
            members: match row.kind {
                ConversationKind::Direct => members.remove(&row.id).unwrap_or_default(),
                _ => Vec::new(),
            },
            joined_seq: row.joined_seq,
            left_seq: row.left_seq,
        };
        let state_bytes = state.size_hint();
        let alone = page.conversations.is_empty();
        if !alone && used + state_bytes > limit.bytes {
            page.has_more = true;
            break;
        }
        let mut msgs = Vec::new();
        let mut msg_bytes = 0;
        let mut complete = true;
        if let Some((_, upto)) = row.due(cursors) {
            if page.messages.len() >= limit.items {
                page.has_more = true;
                break;
            }
            // Messages of conversations before this one were all taken or
            // left behind a break, so the next ones are this one's.
            let mut cut = false;
            while let Some(m) = messages.next_if(|m| m.conversation_id == row.id) {
                let over = used + state_bytes + msg_bytes + m.size_hint() > limit.bytes;
                if over && !(alone && msgs.is_empty()) {
                    cut = true;
                    break;
                }
                msg_bytes += m.size_hint();
                msgs.push(m);
            }
            // All of it was read if its last due seq is here, or a later
            // conversation's messages follow, or the read was not cut short
            // (missing seqs, as after retention, are simply not there).
            let reached = msgs.last().is_some_and(|m| m.seq >= upto);
            let read_all = messages.peek().is_some() || !truncated;
            complete = !cut && (reached || read_all);
        }
        if msgs.is_empty() && !complete && !alone {
            // Nothing of it fits here: the next page starts with it.
            page.has_more = true;
            break;
        }
        used += state_bytes + msg_bytes;
        page.conversations.push(state);
        page.messages.extend(msgs);
        if !complete {
            page.has_more = true;
            break;
        }
        page.next_after = row.id;
    }
    if more_rows && !page.has_more {
        page.has_more = true;
    }
    if !page.has_more && used < limit.bytes {
        // The last page of a pass carries the friend requests waiting for
        // an answer, as many as fit.
        let room = Page {
            items: SYNC_FRIEND_REQUESTS,
            bytes: (limit.bytes - used).min(limit.bytes / 4),
        };
        let (fit, _) = room.cut(pending()?, FriendRequestRecord::size_hint);
        // `cut` keeps one even when it is over the room: not here.
        if fit
            .iter()
            .map(FriendRequestRecord::size_hint)
            .sum::<usize>()
            <= room.bytes
        {
            page.pending_friend_requests = fit;
        }
    }
    Ok(page)
}

/// The user ids a sync page's 1:1 states need, for a backend that reads
/// them in one query.
pub fn direct_ids(rows: &[SyncRow]) -> Vec<ConversationId> {
    rows.iter()
        .take(SYNC_CONVERSATIONS)
        .filter(|r| r.kind == ConversationKind::Direct)
        .map(|r| r.id)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Body, BodyKind};

    fn row(id: u64, last: u64) -> SyncRow {
        SyncRow {
            id,
            kind: ConversationKind::Group,
            last_seq: last,
            joined_seq: 0,
            left_seq: 0,
        }
    }

    fn msg(conv: u64, seq: u64, bytes: usize) -> StoredMessage {
        StoredMessage {
            conversation_id: conv,
            seq,
            msg_id: conv * 100 + seq,
            sender_id: 1,
            client_msg_id: String::new(),
            server_ts_ms: 0,
            body: Body {
                kind: BodyKind::Text,
                content: "x".repeat(bytes),
            },
            mentions: vec![],
            mention_all: false,
        }
    }

    /// Reads like a backend would: the first `items` due messages.
    fn read(
        rows: &[SyncRow],
        have: &[StoredMessage],
        cursors: &HashMap<u64, u64>,
        items: usize,
    ) -> Vec<StoredMessage> {
        let ranges = due_ranges(rows, cursors);
        have.iter()
            .filter(|m| {
                ranges
                    .iter()
                    .any(|&(c, a, u)| m.conversation_id == c && m.seq > a && m.seq <= u)
            })
            .take(items)
            .cloned()
            .collect()
    }

    fn sync(
        rows: Vec<SyncRow>,
        have: &[StoredMessage],
        cursors: &HashMap<u64, u64>,
        after: u64,
        limit: Page,
    ) -> SyncPage {
        let msgs = read(&rows, have, cursors, limit.items);
        assemble_sync::<()>(rows, cursors, HashMap::new(), msgs, after, limit, || {
            Ok(vec![])
        })
        .unwrap()
    }

    /// (seqs per conversation on the page, has_more, next_after)
    fn shape(p: &SyncPage) -> (Vec<(u64, Vec<u64>)>, bool, u64) {
        let convs = p
            .conversations
            .iter()
            .map(|c| {
                (
                    c.id,
                    p.messages
                        .iter()
                        .filter(|m| m.conversation_id == c.id)
                        .map(|m| m.seq)
                        .collect(),
                )
            })
            .collect();
        (convs, p.has_more, p.next_after)
    }

    #[test]
    fn pages_follow_items_and_bytes() {
        let have: Vec<StoredMessage> = (1..=3)
            .map(|s| msg(1, s, 10))
            .chain((1..=2).map(|s| msg(2, s, 10)))
            .collect();
        let rows = || vec![row(1, 3), row(2, 2), row(3, 0)];
        let none = HashMap::new();
        let big = Page {
            items: 100,
            bytes: 100_000,
        };
        // Everything fits.
        assert_eq!(
            shape(&sync(rows(), &have, &none, 0, big)),
            (
                vec![(1, vec![1, 2, 3]), (2, vec![1, 2]), (3, vec![])],
                false,
                3
            )
        );
        // Cut by items inside conversation 2.
        let p = Page {
            items: 4,
            bytes: 100_000,
        };
        assert_eq!(
            shape(&sync(rows(), &have, &none, 0, p)),
            (vec![(1, vec![1, 2, 3]), (2, vec![1])], true, 1)
        );
        // Cut by items exactly at the end of conversation 1.
        let p = Page {
            items: 3,
            bytes: 100_000,
        };
        assert_eq!(
            shape(&sync(rows(), &have, &none, 0, p)),
            (vec![(1, vec![1, 2, 3])], true, 1)
        );
        // Cursors: conversation 1 is seen up to 2.
        let c = HashMap::from([(1, 2)]);
        assert_eq!(shape(&sync(rows(), &have, &c, 0, big)).0[0], (1, vec![3]));
        // A message bigger than the budget gets a page of its own.
        let huge = vec![msg(1, 1, 5_000), msg(1, 2, 10)];
        let p = Page {
            items: 100,
            bytes: 1_000,
        };
        assert_eq!(
            shape(&sync(vec![row(1, 2)], &huge, &none, 0, p)),
            (vec![(1, vec![1])], true, 0)
        );
        // Missing seqs (retention) do not stall the pass.
        let gap = vec![msg(1, 3, 10)];
        assert!(!shape(&sync(rows(), &gap, &none, 0, big)).1);
    }

    #[test]
    fn friend_requests_are_read_only_for_a_last_page() {
        let rows = vec![row(1, 1), row(2, 1)];
        let have = vec![msg(1, 1, 10), msg(2, 1, 10)];
        let none = HashMap::new();
        let p = Page {
            items: 1,
            bytes: 100_000,
        };
        let msgs = read(&rows, &have, &none, 1);
        let page = assemble_sync::<()>(rows, &none, HashMap::new(), msgs, 0, p, || {
            panic!("not the last page")
        })
        .unwrap();
        assert!(page.has_more);
    }

    #[test]
    fn memberships_past_the_cap_make_another_page() {
        let rows: Vec<SyncRow> = (1..=SYNC_CONVERSATIONS as u64 + 1)
            .map(|i| row(i, 0))
            .collect();
        let p = sync(
            rows,
            &[],
            &HashMap::new(),
            0,
            Page {
                items: 10,
                bytes: 1 << 30,
            },
        );
        assert_eq!(p.conversations.len(), SYNC_CONVERSATIONS);
        assert!(p.has_more);
        assert_eq!(p.next_after, SYNC_CONVERSATIONS as u64);
    }
}
