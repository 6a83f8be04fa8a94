//! What waits for the copy is bounded by its age, its count and its bytes.

use super::*;
use crate::{Body, BodyKind};

fn message(conversation: ConversationId, seq: u64, body: usize) -> Arc<StoredMessage> {
    Arc::new(StoredMessage {
        conversation_id: conversation,
        seq,
        msg_id: seq,
        sender_id: 1,
        client_msg_id: format!("c{conversation}-{seq}"),
        server_ts_ms: 0,
        body: Body {
            kind: BodyKind::Text,
            content: "x".repeat(body),
        },
        mentions: Vec::new(),
        mention_all: false,
    })
}

#[test]
fn large_messages_are_copied_early_so_what_waits_is_bounded_in_bytes() {
    let mut p = Pending::new(Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    // Small messages wait their time.
    for seq in 1..=100 {
        p.push_message(message(1, seq, 100), 1);
    }
    p.round_done();
    assert!(!p.due(start));
    assert!(p.due(Instant::now() + COPY_AGE));

    // Large ones are due once they hold COPY_HIGH_BYTES, long before
    // COPY_AGE or COPY_HIGH records.
    let big = 1 << 20;
    let mut n = 0;
    while !p.due(start) {
        n += 1;
        p.push_message(message(2, n, big), 1);
        assert!(n < 1_000, "{} bytes waiting and not due", p.bytes());
    }
    p.round_done();
    assert!(p.bytes() > COPY_HIGH_BYTES, "{}", p.bytes());
    assert!(p.bytes() <= COPY_HIGH_BYTES + 2 * big, "{}", p.bytes());
    assert!(n as usize <= COPY_HIGH_BYTES / big + 1, "{n}");

    // Copied, they are the database's: nothing is held, nothing is due.
    let chunk = p.take_oldest(usize::MAX);
    assert_eq!(chunk.messages.len(), 100 + n as usize);
    p.copied_committed();
    assert_eq!(p.bytes(), 0);
    assert!(!p.due(start));

    // A copy that failed keeps them waiting, and a round that failed takes
    // its messages' bytes back.
    p.push_message(message(3, 1, big), 1);
    p.round_done();
    let _ = p.take_oldest(usize::MAX);
    p.copied_rolled_back();
    assert!(p.bytes() > big);
    p.push_message(message(3, 2, big), 1);
    p.round_failed();
    let one = p.bytes();
    assert!(one > big && one < 2 * big, "{one}");
    let _ = p.take_oldest(usize::MAX);
    p.copied_committed();
    assert_eq!(p.bytes(), 0);
}
