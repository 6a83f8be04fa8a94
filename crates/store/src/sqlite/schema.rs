//! The SQLite schema as an ordered list of migrations, applied at open and
//! tracked in `PRAGMA user_version`.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: accounts, sessions, direct conversations and messages.
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        device_id TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_by_user ON sessions(user_id, revoked);
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL,
        last_activity_ms INTEGER NOT NULL
    );
    CREATE TABLE direct_pairs (
        user_lo INTEGER NOT NULL,
        user_hi INTEGER NOT NULL,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        PRIMARY KEY (user_lo, user_hi)
    ) WITHOUT ROWID;
    CREATE TABLE members (
        user_id INTEGER NOT NULL REFERENCES users(id),
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        delivered_seq INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, conversation_id)
    ) WITHOUT ROWID;
    CREATE INDEX members_by_conversation ON members(conversation_id);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        seq INTEGER NOT NULL,
        sender_id INTEGER NOT NULL REFERENCES users(id),
        client_msg_id TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        body_kind INTEGER NOT NULL,
        body TEXT NOT NULL,
        UNIQUE (conversation_id, seq)
    );
    CREATE UNIQUE INDEX messages_by_client_id ON messages(sender_id, client_msg_id);",
    // 2: friends, blocks, groups and rooms, read cursors, mentions.
    "ALTER TABLE members ADD COLUMN role INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE members ADD COLUMN joined_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN left_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN muted_until_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN joined_at_ms INTEGER NOT NULL DEFAULT 0;
    DROP INDEX members_by_conversation;
    -- Covers fan-out and member lists without touching the table.
    CREATE INDEX members_by_conversation
        ON members(conversation_id, left_seq, user_id, role, muted_until_ms);
    ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN mention_all INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE groups (
        conversation_id INTEGER PRIMARY KEY REFERENCES conversations(id),
        name TEXT NOT NULL,
        notice TEXT NOT NULL DEFAULT '',
        owner_id INTEGER NOT NULL REFERENCES users(id),
        join_policy INTEGER NOT NULL,
        muted_all INTEGER NOT NULL DEFAULT 0,
        dismissed INTEGER NOT NULL DEFAULT 0,
        member_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX rooms_by_name ON groups(name COLLATE NOCASE);
    CREATE TABLE join_requests (
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        user_id INTEGER NOT NULL REFERENCES users(id),
        message TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, user_id)
    ) WITHOUT ROWID;
    CREATE TABLE mentions (
        user_id INTEGER NOT NULL,
        conversation_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (user_id, conversation_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE friend_requests (
        id INTEGER PRIMARY KEY,
        from_id INTEGER NOT NULL REFERENCES users(id),
        to_id INTEGER NOT NULL REFERENCES users(id),
        message TEXT NOT NULL,
        status INTEGER NOT NULL,
        reply TEXT NOT NULL DEFAULT '',
        created_at_ms INTEGER NOT NULL,
        decided_at_ms INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX friend_requests_to ON friend_requests(to_id, status);
    CREATE INDEX friend_requests_from ON friend_requests(from_id, status);
    CREATE TABLE friends (
        user_id INTEGER NOT NULL REFERENCES users(id),
        friend_id INTEGER NOT NULL REFERENCES users(id),
        remark TEXT NOT NULL DEFAULT '',
        since_ms INTEGER NOT NULL,
        PRIMARY KEY (user_id, friend_id)
    ) WITHOUT ROWID;
    CREATE TABLE blocks (
        user_id INTEGER NOT NULL REFERENCES users(id),
        blocked_id INTEGER NOT NULL REFERENCES users(id),
        PRIMARY KEY (user_id, blocked_id)
    ) WITHOUT ROWID;",
    // 3: a row the readiness check writes after a storage fault, to see
    // whether writes work again.
    // Groups get invite codes, so open groups cannot be joined by guessing
    // sequential ids.
    "CREATE TABLE health (
        id INTEGER PRIMARY KEY,
        checked_at_ms INTEGER NOT NULL,
        probe BLOB
    );
    ALTER TABLE groups ADD COLUMN invite_code TEXT NOT NULL DEFAULT '';
    UPDATE groups SET invite_code = lower(hex(randomblob(16)));",
    // 4: messages clustered by (conversation_id, seq). Keyed by the global
    // id, a conversation's messages were spread among everyone else's, so
    // copying one conversation's backlog rewrote nearly every recent page
    // of the table (~4.4 KB written per message at 10,000 msg/s); keyed by
    // the conversation, it appends to that conversation's own pages.
    // (Nothing references messages; ids stay unique because one writer
    // hands them out in order.)
    "CREATE TABLE messages_by_conversation (
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        seq INTEGER NOT NULL,
        id INTEGER NOT NULL,
        sender_id INTEGER NOT NULL REFERENCES users(id),
        client_msg_id TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        body_kind INTEGER NOT NULL,
        body TEXT NOT NULL,
        mentions TEXT NOT NULL DEFAULT '',
        mention_all INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (conversation_id, seq)
    ) WITHOUT ROWID;
    INSERT INTO messages_by_conversation (conversation_id, seq, id, sender_id, client_msg_id,
            created_at_ms, body_kind, body, mentions, mention_all)
        SELECT conversation_id, seq, id, sender_id, client_msg_id,
            created_at_ms, body_kind, body, mentions, mention_all
        FROM messages ORDER BY conversation_id, seq;
    DROP TABLE messages;
    ALTER TABLE messages_by_conversation RENAME TO messages;
    CREATE UNIQUE INDEX messages_by_client_id ON messages(sender_id, client_msg_id);",
    // 5: verified email addresses (optional, each on one account at most)
    // and the codes emailed to prove them, kept as hashes, one per purpose
    // and address.
    "ALTER TABLE users ADD COLUMN email TEXT;
    CREATE UNIQUE INDEX users_by_email ON users(email);
    CREATE TABLE email_codes (
        purpose INTEGER NOT NULL,
        address TEXT NOT NULL,
        code_hash BLOB NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (purpose, address)
    ) WITHOUT ROWID;
    CREATE INDEX email_codes_by_expiry ON email_codes(expires_at_ms);",
    // 6: administrators (apart from chat users), their sessions, the audit
    // log of what they did, and bans (an account disabled until a time).
    "ALTER TABLE users ADD COLUMN banned_until_ms INTEGER;
    ALTER TABLE users ADD COLUMN ban_reason TEXT NOT NULL DEFAULT '';
    CREATE TABLE admins (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE admin_sessions (
        token_hash BLOB PRIMARY KEY,
        admin_id INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX admin_sessions_by_expiry ON admin_sessions(expires_at_ms);
    CREATE TABLE admin_audit (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        address TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL,
        ok INTEGER NOT NULL
    );
    CREATE INDEX users_by_ban ON users(banned_until_ms) WHERE banned_until_ms IS NOT NULL;",
    // 7: a message's idempotency key is its sender's within its
    // conversation, and kept beside the conversation's messages. Keyed by
    // sender, the keys of one copy's messages were spread over every
    // sender's part of the index (a client's keys are not in key order:
    // UUIDs, or counters in decimal), so nearly every copied message
    // dirtied a leaf of its own; keyed by conversation, a copy writes the
    // key's leaf beside the messages' own.
    "DROP INDEX messages_by_client_id;
    CREATE UNIQUE INDEX messages_by_key ON messages(conversation_id, sender_id, client_msg_id);",
];

/// The next message id, from what the database holds: each conversation's
/// last message carries its highest id (ids and seqs are handed out
/// together, in order, by one writer), so this reads one row per
/// conversation instead of every message.
pub(crate) fn next_message_id(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT coalesce(max((SELECT m.id FROM messages m WHERE m.conversation_id = c.id
                              ORDER BY m.seq DESC LIMIT 1)), 0) + 1
         FROM conversations c",
        [],
        |r| r.get(0),
    )
}

/// The id after the highest conversation's: where the writer's ids for
/// conversations made in the message log start.
pub(crate) fn next_conversation_id(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM conversations")?
        .query_row([], |r| r.get(0))
}

/// Brings the database up to the newest schema, one transaction per step;
/// refuses a database a newer natter has migrated.
pub fn migrate(conn: &mut Connection) -> crate::Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(crate::StoreError::NewerSchema {
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
