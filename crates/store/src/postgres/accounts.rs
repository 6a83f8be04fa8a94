//! Accounts and sessions: users, passwords, and the sessions a login makes
//! and revokes under the device policy.

use super::rows::{self, has_nul, id, key, keys, USER_COLUMNS};
use crate::rules;
use crate::{
    NewSession, Result, SessionGrant, SessionId, SessionRecord, StoreError, UserId, UserRecord,
};
use tokio_postgres::{GenericClient, Transaction};

pub async fn user_by_name(c: &impl GenericClient, username: &str) -> Result<Option<UserRecord>> {
    if has_nul(username) {
        return Ok(None);
    }
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
    Ok(c.query_opt(&sql, &[&username])
        .await?
        .map(|r| rows::user(&r)))
}

pub async fn user_by_id(c: &impl GenericClient, id: UserId) -> Result<Option<UserRecord>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(c.query_opt(&sql, &[&key(id)])
        .await?
        .map(|r| rows::user(&r)))
}

/// Users named by id or by name, each once, by id: one statement.
pub async fn users(
    c: &impl GenericClient,
    ids: &[UserId],
    names: &[String],
) -> Result<Vec<UserRecord>> {
    let names: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !has_nul(n))
        .collect();
    if ids.is_empty() && names.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1) OR username = ANY($2) ORDER BY id"
    );
    Ok(c.query(&sql, &[&keys(ids), &names])
        .await?
        .iter()
        .map(rows::user)
        .collect())
}

pub async fn session_by_token(
    c: &impl GenericClient,
    token_hash: &[u8; 32],
) -> Result<Option<SessionRecord>> {
    let row = c
        .query_opt(
            "SELECT s.id, s.user_id, u.username, s.device_id, s.expires_at_ms, s.revoked, u.disabled
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
            &[&token_hash.as_slice()],
        )
        .await?;
    Ok(row.map(|r| SessionRecord {
        id: id(&r, 0),
        user_id: id(&r, 1),
        username: r.get(2),
        device_id: r.get(3),
        expires_at_ms: r.get(4),
        revoked: r.get(5),
        user_disabled: r.get(6),
    }))
}

pub async fn create_user(
    c: &impl GenericClient,
    username: &str,
    hash: &str,
    now_ms: i64,
) -> Result<UserId> {
    match c
        .query_opt(
            "INSERT INTO users (username, password_hash, created_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (username) DO NOTHING RETURNING id",
            &[&username, &hash, &now_ms],
        )
        .await?
    {
        Some(r) => Ok(rows::id(&r, 0)),
        None => Err(StoreError::Conflict("username")),
    }
}

pub async fn set_password(
    tx: &Transaction<'_>,
    id: UserId,
    hash: &str,
    keep: Option<SessionId>,
) -> Result<Vec<SessionId>> {
    let n = tx
        .execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            &[&key(id), &hash],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(tx
        .query(
            "UPDATE sessions SET revoked = true
             WHERE user_id = $1 AND id != $2 AND NOT revoked RETURNING id",
            &[&key(id), &key(keep.unwrap_or(0))],
        )
        .await?
        .iter()
        .map(|r| rows::id(r, 0))
        .collect())
}

pub async fn create_session(tx: &Transaction<'_>, new: &NewSession) -> Result<SessionGrant> {
    // The user's row is the lock that keeps two nodes from both letting a
    // login past the limit.
    let found = tx
        .query_opt(
            "SELECT 1 FROM users WHERE id = $1 FOR UPDATE",
            &[&key(new.user_id)],
        )
        .await?;
    if found.is_none() {
        return Err(StoreError::NotFound("user"));
    }
    let mut revoked: Vec<SessionId> = tx
        .query(
            "UPDATE sessions SET revoked = true
             WHERE user_id = $1 AND device_id = $2 AND NOT revoked RETURNING id",
            &[&key(new.user_id), &new.device_id],
        )
        .await?
        .iter()
        .map(|r| rows::id(r, 0))
        .collect();
    let live: Vec<SessionId> = tx
        .query(
            "SELECT id FROM sessions WHERE user_id = $1 AND NOT revoked AND expires_at_ms > $2
             ORDER BY created_at_ms, id",
            &[&key(new.user_id), &new.now_ms],
        )
        .await?
        .iter()
        .map(|r| rows::id(r, 0))
        .collect();
    let revoke = rules::sessions_to_revoke(&live, new.policy, new.max_sessions)?;
    if !revoke.is_empty() {
        tx.execute(
            "UPDATE sessions SET revoked = true WHERE id = ANY($1)",
            &[&keys(&revoke)],
        )
        .await?;
        revoked.extend(revoke);
    }
    let row = tx
        .query_one(
            "INSERT INTO sessions (user_id, device_id, token_hash, created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &key(new.user_id),
                &new.device_id,
                &&new.token_hash[..],
                &new.now_ms,
                &new.expires_at_ms,
            ],
        )
        .await?;
    Ok(SessionGrant {
        session_id: rows::id(&row, 0),
        revoked,
    })
}

pub async fn revoke_session(c: &impl GenericClient, id: SessionId) -> Result<()> {
    c.execute(
        "UPDATE sessions SET revoked = true WHERE id = $1",
        &[&key(id)],
    )
    .await?;
    Ok(())
}
