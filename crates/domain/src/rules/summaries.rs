//! What a conversation-list entry shows: its title (the peer's name in a
//! 1:1, the group's name otherwise), where the user's reading starts (never
//! before they joined), and whether a mention still waits (only while
//! something is unread).

use crate::{ConversationId, ConversationKind, ConversationSummary, StoredMessage, UserId};

/// One of the user's memberships, as a backend's list query reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRow {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub last_seq: u64,
    pub last_activity_ms: i64,
    pub read_seq: u64,
    pub joined_seq: u64,
    /// The group's or room's name.
    pub name: Option<String>,
    /// A 1:1's other member.
    pub peer: Option<(UserId, String)>,
    pub unread: u32,
    /// A mention of the user (or of everyone) after the read cursor.
    pub mentioned: bool,
}

/// The list entry for a row and its last message, with the preview cut.
pub fn summarize(r: ListRow, last: Option<StoredMessage>) -> ConversationSummary {
    let (title, peer) = match (r.kind, r.peer) {
        (ConversationKind::Direct, Some((p, name))) => (name, Some(p)),
        (ConversationKind::Direct, None) => (String::new(), None),
        (_, _) => (r.name.unwrap_or_default(), None),
    };
    let mut summary = ConversationSummary {
        id: r.id,
        kind: r.kind,
        title,
        peer,
        last_seq: r.last_seq,
        read_seq: r.read_seq.max(r.joined_seq),
        unread: r.unread,
        mentioned: r.unread > 0 && r.mentioned,
        last_message: last,
        preview_truncated: false,
        last_activity_ms: r.last_activity_ms,
    };
    summary.truncate_preview();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: ConversationKind) -> ListRow {
        ListRow {
            id: 1,
            kind,
            last_seq: 9,
            last_activity_ms: 5,
            read_seq: 2,
            joined_seq: 4,
            name: Some("team".into()),
            peer: Some((7, "bob".into())),
            unread: 0,
            mentioned: true,
        }
    }

    #[test]
    fn titles_read_points_and_mentions() {
        let d = summarize(row(ConversationKind::Direct), None);
        assert_eq!((d.title.as_str(), d.peer, d.read_seq), ("bob", Some(7), 4));
        assert!(!d.mentioned, "nothing unread: no mention waits");
        let g = summarize(
            ListRow {
                unread: 3,
                ..row(ConversationKind::Group)
            },
            None,
        );
        assert_eq!(
            (g.title.as_str(), g.peer, g.mentioned),
            ("team", None, true)
        );
        let lone = summarize(
            ListRow {
                peer: None,
                ..row(ConversationKind::Direct)
            },
            None,
        );
        assert_eq!(lone.title, "");
    }
}
