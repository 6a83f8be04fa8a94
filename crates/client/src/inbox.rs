//! Client-side delivery bookkeeping: the highest seq seen per conversation.
//! Pushes are at-least-once and may arrive after a gap; the inbox accepts
//! each message once, in seq order, and pulls gaps from the server.

use crate::{Client, ClientError};
use natter_proto::pb;
use std::collections::HashMap;

#[derive(Clone, Debug, Default)]
pub struct Inbox {
    cursors: HashMap<u64, u64>,
    /// Conversations as last described by the server.
    pub conversations: HashMap<u64, pb::Conversation>,
}

#[derive(Debug, PartialEq)]
pub enum Accepted {
    /// The next message of its conversation.
    New(pb::Message),
    /// Already seen; drop it.
    Duplicate,
    /// Messages are missing before this one: sync to fill the gap.
    Gap,
}

impl Inbox {
    pub fn cursors(&self) -> Vec<pb::Cursor> {
        self.cursors
            .iter()
            .map(|(&conversation_id, &seq)| pb::Cursor {
                conversation_id,
                seq,
            })
            .collect()
    }

    /// Counts a conversation's messages up to `seq` as seen (a client that
    /// starts from the newest, not from the first message).
    pub fn start_at(&mut self, conversation_id: u64, seq: u64) {
        let cur = self.cursors.entry(conversation_id).or_insert(0);
        *cur = (*cur).max(seq);
    }

    /// Classifies a pushed message.
    pub fn accept(&mut self, m: pb::Message) -> Accepted {
        let cur = self.cursors.entry(m.conversation_id).or_insert(0);
        if m.seq <= *cur {
            Accepted::Duplicate
        } else if m.seq == *cur + 1 {
            *cur = m.seq;
            Accepted::New(m)
        } else {
            Accepted::Gap
        }
    }

    /// Pulls everything newer than the cursors, page by page, and returns
    /// the new messages in order (per conversation).
    pub async fn sync(
        &mut self,
        client: &Client,
        page: u32,
    ) -> Result<Vec<pb::Message>, ClientError> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let p = client.sync_page(self.cursors(), after, page).await?;
            after = p.next_after_conversation_id;
            for c in p.conversations {
                // A member of a group sees nothing before their join point.
                let cur = self.cursors.entry(c.conversation_id).or_insert(0);
                *cur = (*cur).max(c.joined_seq);
                self.conversations.insert(c.conversation_id, c);
            }
            for m in p.messages {
                if let Accepted::New(m) = self.accept(m) {
                    out.push(m);
                }
            }
            if !p.has_more {
                return Ok(out);
            }
        }
    }
}
