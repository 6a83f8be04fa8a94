//! Users and sessions, as plain functions over a connection; the caller
//! decides which connection (writer transaction or reader) they run on.

use crate::rules;
use crate::{
    NewSession, Result, SessionGrant, SessionId, SessionRecord, StoreError, UserId, UserRecord,
};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};

const USER_COLUMNS: &str = "id, username, password_hash, disabled";

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        disabled: r.get(3)?,
    })
}

pub fn create_user(conn: &Connection, username: &str, hash: &str, now_ms: i64) -> Result<UserId> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO users (username, password_hash, created_at_ms) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![username, hash, now_ms]);
    match inserted {
        Ok(_) => Ok(conn.last_insert_rowid() as UserId),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(StoreError::Conflict("username"))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn user_by_name(conn: &Connection, username: &str) -> Result<Option<UserRecord>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([username], user_row)
        .optional()?)
}

pub fn user_by_id(conn: &Connection, id: UserId) -> Result<Option<UserRecord>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], user_row)
        .optional()?)
}

pub fn set_password(conn: &Connection, id: UserId, hash: &str) -> Result<()> {
    let n = conn
        .prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
        .execute(params![id, hash])?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

pub fn create_session(conn: &Connection, new: &NewSession) -> Result<SessionGrant> {
    // The same device never holds two sessions: its old one goes first.
    let mut revoked: Vec<SessionId> = conn
        .prepare_cached(
            "UPDATE sessions SET revoked = 1
             WHERE user_id = ?1 AND device_id = ?2 AND revoked = 0 RETURNING id",
        )?
        .query_map(params![new.user_id, new.device_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let live: Vec<SessionId> = conn
        .prepare_cached(
            "SELECT id FROM sessions WHERE user_id = ?1 AND revoked = 0 AND expires_at_ms > ?2
             ORDER BY created_at_ms, id",
        )?
        .query_map(params![new.user_id, new.now_ms], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut revoke = conn.prepare_cached("UPDATE sessions SET revoked = 1 WHERE id = ?1")?;
    for id in rules::sessions_to_revoke(&live, new.policy, new.max_sessions)? {
        revoke.execute([id])?;
        revoked.push(id);
    }
    conn.prepare_cached(
        "INSERT INTO sessions (user_id, device_id, token_hash, created_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        new.user_id,
        new.device_id,
        &new.token_hash[..],
        new.now_ms,
        new.expires_at_ms
    ])?;
    Ok(SessionGrant {
        session_id: conn.last_insert_rowid() as SessionId,
        revoked,
    })
}

pub fn session_by_token(conn: &Connection, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>> {
    Ok(conn
        .prepare_cached(
            "SELECT s.id, s.user_id, u.username, s.device_id, s.expires_at_ms, s.revoked, u.disabled
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1",
        )?
        .query_row([&token_hash[..]], |r| {
            Ok(SessionRecord {
                id: r.get(0)?,
                user_id: r.get(1)?,
                username: r.get(2)?,
                device_id: r.get(3)?,
                expires_at_ms: r.get(4)?,
                revoked: r.get(5)?,
                user_disabled: r.get(6)?,
            })
        })
        .optional()?)
}

pub fn revoke_session(conn: &Connection, id: SessionId) -> Result<()> {
    conn.prepare_cached("UPDATE sessions SET revoked = 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

pub fn revoke_other_sessions(
    conn: &Connection,
    user: UserId,
    keep: SessionId,
) -> Result<Vec<SessionId>> {
    Ok(conn
        .prepare_cached(
            "UPDATE sessions SET revoked = 1
             WHERE user_id = ?1 AND id != ?2 AND revoked = 0 RETURNING id",
        )?
        .query_map(params![user, keep], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Users named by id or by name, each once, by id: one statement.
pub fn users(conn: &Connection, ids: &[UserId], names: &[String]) -> Result<Vec<UserRecord>> {
    let names = serde_json::to_string(names).map_err(|e| StoreError::backend("names", e))?;
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users
         WHERE id IN (SELECT value FROM json_each(?1))
            OR username IN (SELECT value FROM json_each(?2))
         ORDER BY id"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map(params![super::messages::json_list(ids), names], user_row)?
        .collect::<rusqlite::Result<_>>()?)
}
