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
];

/// Brings the database up to the newest schema, one transaction per step.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
