//! The SQLite engine: how writes become durable and reach the database,
//! apart from the SQL of each topic. One writer thread (`round.rs`) runs
//! queued jobs (`writer.rs`) in rounds; a round's new messages and cursor
//! raises go to the message log (`log.rs`) with one write and one fdatasync
//! before any answer, wait in memory (`pending.rs`) where reads see them,
//! and are copied into the database behind the answers by the copy thread
//! (`copier.rs`), whose commits the checkpoint thread (`checkpoint.rs`)
//! moves into the database file. Seqs are taken ahead of the database
//! (`seqs.rs`) and the writer's cache (`cache.rs`) keeps what every send
//! needs. A job writes through a [`tx::Tx`].
//!
//! # Invariants
//!
//! - **The SQLite message log.** A write round stages its new messages,
//!   cursor raises and the 1:1 conversations first messages make as records,
//!   appends them to the log with one `write` and one `fdatasync`, and
//!   answers (once the log is busy, into a segment written ahead with
//!   zeros, `log/spare.rs`, so the sync writes no new file size); writing
//!   every B-tree page a message touches
//!   (and syncing them) was most of a message's cost. The copy thread
//!   (`copier.rs`, at a lower CPU priority) copies records into the database
//!   behind, a conversation at a time, once they have waited `COPY_AGE`
//!   (30 s) or more than `COPY_HIGH` (300,000) or `COPY_HIGH_BYTES` (96 MiB)
//!   wait, so a conversation's messages share one page write; a cursor
//!   raised many times is copied once. The message table is
//!   clustered by `(conversation_id, seq)` (`WITHOUT ROWID`), so those
//!   messages land on their conversation's own last pages; keyed by the global
//!   id, each conversation's copy rewrote pages shared with everyone else's.
//!   The message id stays unique without an index of its own: one writer
//!   hands ids out in order, and at open the next one follows the highest of
//!   each conversation's last message. In a conversation made in this run,
//!   the idempotency lookup is skipped for a key never staged there
//!   (`keys.rs`: every message of such a conversation was staged by this
//!   writer, and a Bloom filter of their keys forgets none while it is kept). A round's
//!   reads (the idempotency lookup, a conversation not in the cache) share
//!   one read transaction,
//!   taken under the waiting records' lock, so anything the copy thread
//!   commits after its snapshot is still among the waiting records, where the
//!   writer looks first. **A new 1:1 conversation** is a record too, staged
//!   before its first message, so no send waits for the database (it waited
//!   for the copy in hand, 3-13 ms): the writer hands out its id (past every
//!   id in the database at open; a new group takes the next one from the
//!   writer too), keeps its seqs from 0, and answers its pair, members
//!   and cursors from the waiting record; the first copy that takes any of
//!   its records writes its row, pair and members ahead of them in the same
//!   transaction, and a read of a user's conversations takes the user's
//!   made ones too. Every write that is not
//!   a message or a cursor runs in the round's database transaction, under
//!   the copy gate (so no copy is half done), after the round has copied in
//!   the waiting records it may read or follow, and only those
//!   (`writer::Sees`), since every send waits for that copy: a change to
//!   one group or a recall (`SqliteStore::write_in`) copies its
//!   conversation's records, so it sees and follows every message before
//!   it there; one that touches no conversation that exists (accounts,
//!   sessions, codes, the audit, friend requests, friends, remarks and
//!   blocks, bans and the minute's lifting of ended ones, a group's
//!   creation: `SqliteStore::write_apart`) copies nothing; one that may
//!   touch any of a user's conversations (deleting an account) copies
//!   everything. A new group takes its id from the writer, like a 1:1 made
//!   in the log, so neither takes the other's. The transaction commits
//!   after the log append and the WAL is then synced.
//!   A read of messages, seqs or cursors (`SqliteStore::fresh`: sync,
//!   history, the conversation list, group info) first copies in the waiting
//!   records of its own conversations (a user's, or one), on its reader's
//!   thread with the copy connection under the gate, so it sees every write
//!   answered before it there without holding up the writer's rounds; what
//!   is being copied is settled only by the gate's holder. **Recovery:** on open, every record of every
//!   segment is replayed into the database (a made conversation's rows
//!   first, `INSERT OR IGNORE`; messages `INSERT OR IGNORE` by
//!   `(conversation, seq)`; cursors only rise; records of a conversation
//!   neither the database nor the log has were never acknowledged and are
//!   skipped), the database
//!   is synced, and the segments are deleted. A round whose append or sync
//!   failed is cut off: the next segment's header names where the last one's
//!   good records end, so bytes a failed round left behind are never replayed
//!   (and its seqs, taken back, are handed out again). A segment is deleted
//!   only when none of its records waits and the database's WAL has been
//!   synced. A clean stop copies everything in, checkpoints and deletes the
//!   log. Tested by `tests/durability.rs` (SIGKILL under load, repeatedly, with
//!   cursors) and the log's own unit tests (torn and damaged tails, a cut-off
//!   round, a half-made segment).
//!
//! - **One process per SQLite database.** `SqliteStore::open` takes an
//!   exclusive OS lock on `<db>.lock` (`natter.db.lock`, `File::try_lock`)
//!   before it touches the database, and the store (and its writer thread) hold
//!   it until it is closed or dropped, so a second server or store on the same
//!   file fails at start-up with `StoreError::Locked` rather than writing
//!   beside the first with a seq cache of its own. The close lets it go as
//!   soon as the writer has stopped, not when the last handle on the store
//!   is dropped: a server restarted in the same process must not find it
//!   held by a task still finishing.
//!
//! - **Checkpoints never hold up the writer.** A thread of its own copies WAL
//!   frames into the database file (passive, at most five times a second, nudged
//!   after commits, at a lower CPU priority; one a reader's older snapshot cut
//!   short is tried again after its pause, nudged or not); SQLite's automatic checkpoint
//!   stays as a backstop at 8,192 pages, on the writer's connection and the
//!   copy thread's (at SQLite's default of 1,000 it checkpointed, with an
//!   fsync, inside the copy's commits, under the copy gate). On close the
//!   writer stops it and truncates the WAL.
//!
//! - **The writer's cache holds only committed state, plus seqs it has taken.**
//!   `convs.rs` keeps, per conversation, its kind, flags and members with roles
//!   (so a group send does its permission checks and gets its fan-out list
//!   without reading member rows), the conversation of each 1:1 pair, which
//!   pairs may talk 1:1 (emptied by every friend or block change, and it must
//!   be by any future write that disables an account), and busy
//!   conversations' last seq (see above). Only the writer thread touches it;
//!   every membership change drops the entry at the end of the change, and a
//!   failed commit clears the cache, so it never holds state that did not
//!   commit.

/// Maps and sets keyed by ids the server hands out (conversations, users),
/// never by what a client chose: hashed with foldhash, seeded per process,
/// rather than SipHash, on the writer's and copy thread's every message.
/// Keys a client chooses (`client_msg_id`) keep SipHash (`keys.rs`,
/// `pending.rs`).
pub(crate) type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type IdSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub(crate) mod cache;
pub(crate) mod checkpoint;
pub(crate) mod chunk;
pub(crate) mod copier;
pub(crate) mod dialect;
pub(crate) mod faults;
pub(crate) mod keys;
pub(crate) mod log;
pub(crate) mod os;
pub(crate) mod pending;
pub(crate) mod round;
pub(crate) mod seqs;
pub(crate) mod tx;
pub(crate) mod writer;
