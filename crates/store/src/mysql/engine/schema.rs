//! The MariaDB/MySQL schema as an ordered list of migrations, applied at
//! start under a named lock (several nodes may start at once) and tracked
//! in `natter_schema`. A database migrated by a newer binary is refused.
//!
//! Every table is InnoDB in utf8mb4 with the `utf8mb4_bin` collation: any
//! Unicode text (emoji and other 4-byte characters) round-trips, and text
//! compares and sorts by code point, as on the other backends. Text a
//! unique key covers is `VARCHAR`; text of free length is `TEXT`, which
//! MySQL lets have no default, so inserts name every such column.
//! Statements here are in MySQL's own dialect (DDL is not shared), each
//! runs on its own (DDL commits by itself), and each can run again after a
//! crash between two of them.

use crate::{Result, StoreError};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// Held while migrating, so concurrent starts take turns.
const MIGRATION_LOCK: &str = "natter_migrate";

/// A table's options.
macro_rules! innodb {
    () => {
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    };
}

const MIGRATIONS: &[&[&str]] = &[
    // 1: the schema of SQLite's migration 6 and PostgreSQL's 3. Messages
    // are keyed by (conversation_id, seq), clustered by conversation;
    // idempotency is the unique (sender_id, client_msg_id) index (scoped
    // to the conversation by migration 2).
    &[
        concat!(
            "CREATE TABLE IF NOT EXISTS users (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                username VARCHAR(255) NOT NULL UNIQUE,
                password_hash VARCHAR(1024) NOT NULL,
                disabled BOOLEAN NOT NULL DEFAULT false,
                created_at_ms BIGINT NOT NULL,
                email VARCHAR(255) NULL UNIQUE,
                banned_until_ms BIGINT NULL,
                ban_reason VARCHAR(2048) NOT NULL DEFAULT '',
                INDEX users_by_ban (banned_until_ms)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS sessions (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                user_id BIGINT NOT NULL,
                device_id VARCHAR(255) NOT NULL,
                token_hash VARBINARY(64) NOT NULL UNIQUE,
                created_at_ms BIGINT NOT NULL,
                expires_at_ms BIGINT NOT NULL,
                revoked BOOLEAN NOT NULL DEFAULT false,
                INDEX sessions_by_user (user_id, revoked),
                FOREIGN KEY (user_id) REFERENCES users(id)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS conversations (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                kind SMALLINT NOT NULL,
                last_seq BIGINT NOT NULL DEFAULT 0,
                created_at_ms BIGINT NOT NULL,
                last_activity_ms BIGINT NOT NULL
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS direct_pairs (
                user_lo BIGINT NOT NULL,
                user_hi BIGINT NOT NULL,
                conversation_id BIGINT NOT NULL,
                PRIMARY KEY (user_lo, user_hi)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS members (
                user_id BIGINT NOT NULL,
                conversation_id BIGINT NOT NULL,
                role SMALLINT NOT NULL DEFAULT 1,
                joined_seq BIGINT NOT NULL DEFAULT 0,
                left_seq BIGINT NOT NULL DEFAULT 0,
                read_seq BIGINT NOT NULL DEFAULT 0,
                delivered_seq BIGINT NOT NULL DEFAULT 0,
                muted_until_ms BIGINT NOT NULL DEFAULT 0,
                joined_at_ms BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (user_id, conversation_id),
                INDEX members_by_conversation
                    (conversation_id, left_seq, user_id, role, muted_until_ms),
                FOREIGN KEY (user_id) REFERENCES users(id),
                FOREIGN KEY (conversation_id) REFERENCES conversations(id)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS messages (
                conversation_id BIGINT NOT NULL,
                seq BIGINT NOT NULL,
                id BIGINT NOT NULL AUTO_INCREMENT,
                sender_id BIGINT NOT NULL,
                client_msg_id VARCHAR(255) NOT NULL,
                created_at_ms BIGINT NOT NULL,
                body_kind SMALLINT NOT NULL,
                body MEDIUMTEXT NOT NULL,
                mentions TEXT NOT NULL,
                mention_all BOOLEAN NOT NULL DEFAULT false,
                PRIMARY KEY (conversation_id, seq),
                UNIQUE INDEX messages_by_client_id (sender_id, client_msg_id),
                INDEX messages_by_id (id)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS mentions (
                user_id BIGINT NOT NULL,
                conversation_id BIGINT NOT NULL,
                seq BIGINT NOT NULL,
                PRIMARY KEY (user_id, conversation_id, seq)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS `groups` (
                conversation_id BIGINT NOT NULL PRIMARY KEY,
                name VARCHAR(255) NOT NULL,
                notice VARCHAR(4096) NOT NULL DEFAULT '',
                owner_id BIGINT NOT NULL,
                join_policy SMALLINT NOT NULL,
                muted_all BOOLEAN NOT NULL DEFAULT false,
                dismissed BOOLEAN NOT NULL DEFAULT false,
                member_count INTEGER NOT NULL DEFAULT 0,
                invite_code VARCHAR(255) NOT NULL DEFAULT '',
                INDEX rooms_by_name (name),
                FOREIGN KEY (conversation_id) REFERENCES conversations(id),
                FOREIGN KEY (owner_id) REFERENCES users(id)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS join_requests (
                conversation_id BIGINT NOT NULL,
                user_id BIGINT NOT NULL,
                message VARCHAR(2048) NOT NULL,
                created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (conversation_id, user_id),
                FOREIGN KEY (conversation_id) REFERENCES conversations(id),
                FOREIGN KEY (user_id) REFERENCES users(id)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS friend_requests (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                from_id BIGINT NOT NULL,
                to_id BIGINT NOT NULL,
                message VARCHAR(2048) NOT NULL,
                status SMALLINT NOT NULL,
                reply VARCHAR(2048) NOT NULL DEFAULT '',
                created_at_ms BIGINT NOT NULL,
                decided_at_ms BIGINT NOT NULL DEFAULT 0,
                INDEX friend_requests_to (to_id, status),
                INDEX friend_requests_from (from_id, status),
                FOREIGN KEY (from_id) REFERENCES users(id),
                FOREIGN KEY (to_id) REFERENCES users(id)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS friends (
                user_id BIGINT NOT NULL,
                friend_id BIGINT NOT NULL,
                remark VARCHAR(2048) NOT NULL DEFAULT '',
                since_ms BIGINT NOT NULL,
                PRIMARY KEY (user_id, friend_id),
                FOREIGN KEY (user_id) REFERENCES users(id),
                FOREIGN KEY (friend_id) REFERENCES users(id)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS blocks (
                user_id BIGINT NOT NULL,
                blocked_id BIGINT NOT NULL,
                PRIMARY KEY (user_id, blocked_id),
                FOREIGN KEY (user_id) REFERENCES users(id),
                FOREIGN KEY (blocked_id) REFERENCES users(id)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS email_codes (
                purpose SMALLINT NOT NULL,
                address VARCHAR(255) NOT NULL,
                code_hash VARBINARY(64) NOT NULL,
                expires_at_ms BIGINT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (purpose, address),
                INDEX email_codes_by_expiry (expires_at_ms)
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS admins (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                name VARCHAR(255) NOT NULL UNIQUE,
                password_hash VARCHAR(1024) NOT NULL,
                role SMALLINT NOT NULL,
                created_at_ms BIGINT NOT NULL
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS admin_sessions (
                token_hash VARBINARY(64) NOT NULL PRIMARY KEY,
                admin_id BIGINT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                expires_at_ms BIGINT NOT NULL,
                INDEX admin_sessions_by_expiry (expires_at_ms),
                FOREIGN KEY (admin_id) REFERENCES admins(id) ON DELETE CASCADE
            )",
            innodb!()
        ),
        concat!(
            "CREATE TABLE IF NOT EXISTS admin_audit (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                at_ms BIGINT NOT NULL,
                actor VARCHAR(255) NOT NULL,
                address VARCHAR(255) NOT NULL,
                action VARCHAR(255) NOT NULL,
                target VARCHAR(1024) NOT NULL,
                detail TEXT NOT NULL,
                ok BOOLEAN NOT NULL
            )",
            innodb!()
        ),
        // A row the readiness check writes after a storage fault, to see
        // whether writes work again.
        concat!(
            "CREATE TABLE IF NOT EXISTS health (
                id BIGINT NOT NULL PRIMARY KEY,
                checked_at_ms BIGINT NOT NULL
            )",
            innodb!()
        ),
    ],
    // 2: a message's idempotency key is its sender's within its
    // conversation (as on SQLite and PostgreSQL), kept beside the
    // conversation's messages. One statement, so that it is done whole or
    // not at all.
    &["ALTER TABLE messages DROP INDEX messages_by_client_id,
        ADD UNIQUE INDEX messages_by_key (conversation_id, sender_id, client_msg_id)"],
];

/// The newest schema this binary knows.
pub fn latest() -> usize {
    MIGRATIONS.len()
}

/// Brings the database up to the newest schema.
pub async fn migrate(conn: &mut Conn) -> Result<()> {
    let locked: Option<i64> = conn
        .exec_first("SELECT GET_LOCK(?, 60)", (MIGRATION_LOCK,))
        .await?;
    if locked != Some(1) {
        return Err(StoreError::bug(
            "another natter held the migration lock for a minute",
        ));
    }
    let out = migrate_locked(conn).await;
    let unlocked = conn
        .exec_drop("SELECT RELEASE_LOCK(?)", (MIGRATION_LOCK,))
        .await;
    out?;
    unlocked?;
    Ok(())
}

async fn migrate_locked(conn: &mut Conn) -> Result<()> {
    conn.query_drop(concat!(
        "CREATE TABLE IF NOT EXISTS natter_schema (version INTEGER NOT NULL)",
        innodb!()
    ))
    .await?;
    conn.query_drop(
        "INSERT INTO natter_schema (version)
         SELECT 0 FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM natter_schema)",
    )
    .await?;
    let current: Option<i64> = conn
        .query_first("SELECT version FROM natter_schema")
        .await?;
    let current = current.unwrap_or(0).max(0) as usize;
    if current > latest() {
        return Err(StoreError::NewerSchema {
            found: current,
            known: latest(),
        });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current) {
        for sql in *step {
            conn.query_drop(*sql).await?;
        }
        conn.exec_drop("UPDATE natter_schema SET version = ?", (i + 1,))
            .await?;
    }
    Ok(())
}
