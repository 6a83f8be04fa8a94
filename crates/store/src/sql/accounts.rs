//! Users and sessions: the accounts a registration makes, the sessions a
//! login makes and revokes under the device policy.

use super::{args, each, has_nul, Db, Row};
use crate::rules;
use crate::{
    NewSession, NewVerifiedUser, Result, SessionGrant, SessionId, SessionRecord, StoreError,
    UserId, UserRecord,
};

macro_rules! user_columns {
    () => {
        "id, username, password_hash, disabled, banned_until_ms"
    };
}
pub(crate) use user_columns;

pub(crate) fn user_row(r: &Row) -> Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        disabled: r.get(3)?,
        banned_until_ms: r.get(4)?,
    })
}

/// Fails with [`StoreError::Conflict`] when the name is taken.
pub(crate) async fn create_user(
    db: &impl Db,
    username: &str,
    hash: &str,
    now_ms: i64,
) -> Result<UserId> {
    let row = db
        .opt(
            "INSERT INTO users (username, password_hash, created_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (username) DO NOTHING RETURNING id",
            args![username, hash, now_ms],
        )
        .await?;
    match row {
        Some(r) => r.get(0),
        None => Err(StoreError::Conflict("username")),
    }
}

pub(crate) async fn user_by_name(db: &impl Db, username: &str) -> Result<Option<UserRecord>> {
    if has_nul(username) {
        return Ok(None);
    }
    db.opt(
        concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        ),
        args![username],
    )
    .await?
    .map(|r| user_row(&r))
    .transpose()
}

pub(crate) async fn user_by_id(db: &impl Db, id: UserId) -> Result<Option<UserRecord>> {
    db.opt(
        concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"),
        args![id],
    )
    .await?
    .map(|r| user_row(&r))
    .transpose()
}

/// Users named by id or by name, each once, by id: one statement.
pub(crate) async fn users(
    db: &impl Db,
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
    let found = db
        .rows(
            concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE id = ANY($1) OR username = ANY($2) ORDER BY id"
            ),
            &[ids.into(), super::Arg::Texts(names)],
        )
        .await?;
    each(found, user_row)
}

/// Sets the password and revokes every live session of the user but
/// `keep`; the revoked sessions.
pub(crate) async fn set_password(
    db: &impl Db,
    id: UserId,
    hash: &str,
    keep: Option<SessionId>,
) -> Result<Vec<SessionId>> {
    let n = db
        .exec(
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            args![id, hash],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    revoke_sessions(
        db,
        "SELECT id FROM sessions WHERE user_id = $1 AND id != $2 AND NOT revoked FOR UPDATE",
        args![id, keep.unwrap_or(0)],
    )
    .await
}

/// Revokes the live sessions `select` finds (their ids, `FOR UPDATE`);
/// those revoked. (No `UPDATE ... RETURNING`: MySQL has none.)
pub(crate) async fn revoke_sessions(
    db: &impl Db,
    select: &'static str,
    args: &[super::Arg<'_>],
) -> Result<Vec<SessionId>> {
    let ids: Vec<SessionId> = each(db.rows(select, args).await?, |r| r.get(0))?;
    if !ids.is_empty() {
        db.exec(
            "UPDATE sessions SET revoked = true WHERE id = ANY($1)",
            args![ids.as_slice()],
        )
        .await?;
    }
    Ok(ids)
}

/// A session under the device policy: the same device never holds two
/// sessions (its old one goes first), and the oldest go past the limit.
pub(crate) async fn create_session(db: &impl Db, new: &NewSession) -> Result<SessionGrant> {
    // The user's row is the lock that keeps two writers from both letting
    // a login past the limit.
    db.lock_users(&[new.user_id]).await?;
    if user_by_id(db, new.user_id).await?.is_none() {
        return Err(StoreError::NotFound("user"));
    }
    let mut revoked = revoke_sessions(
        db,
        "SELECT id FROM sessions WHERE user_id = $1 AND device_id = $2 AND NOT revoked
         FOR UPDATE",
        args![new.user_id, new.device_id.as_str()],
    )
    .await?;
    let live = db
        .rows(
            "SELECT id FROM sessions WHERE user_id = $1 AND NOT revoked AND expires_at_ms > $2
             ORDER BY created_at_ms, id",
            args![new.user_id, new.now_ms],
        )
        .await?;
    let live: Vec<SessionId> = each(live, |r| r.get(0))?;
    let revoke = rules::sessions_to_revoke(&live, new.policy, new.max_sessions)?;
    if !revoke.is_empty() {
        db.exec(
            "UPDATE sessions SET revoked = true WHERE id = ANY($1)",
            args![revoke.as_slice()],
        )
        .await?;
        revoked.extend(revoke);
    }
    let row = db
        .one(
            "INSERT INTO sessions (user_id, device_id, token_hash, created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            args![
                new.user_id,
                new.device_id.as_str(),
                &new.token_hash[..],
                new.now_ms,
                new.expires_at_ms
            ],
        )
        .await?;
    Ok(SessionGrant {
        session_id: row.get(0)?,
        revoked,
    })
}

pub(crate) async fn session_by_token(
    db: &impl Db,
    token_hash: &[u8; 32],
) -> Result<Option<SessionRecord>> {
    let row = db
        .opt(
            "SELECT s.id, s.user_id, u.username, s.device_id, s.expires_at_ms, s.revoked, u.disabled,
                u.banned_until_ms
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
            args![&token_hash[..]],
        )
        .await?;
    row.map(|r| {
        Ok(SessionRecord {
            id: r.get(0)?,
            user_id: r.get(1)?,
            username: r.get(2)?,
            device_id: r.get(3)?,
            expires_at_ms: r.get(4)?,
            revoked: r.get(5)?,
            user_disabled: r.get(6)?,
            user_banned_until_ms: r.get(7)?,
        })
    })
    .transpose()
}

pub(crate) async fn revoke_session(db: &impl Db, id: SessionId) -> Result<()> {
    db.exec(
        "UPDATE sessions SET revoked = true WHERE id = $1",
        args![id],
    )
    .await?;
    Ok(())
}

/// A user with a verified email address. Fails with
/// [`StoreError::Conflict`] naming `username` or `email`, whichever is
/// taken.
pub(crate) async fn create_user_with_email(db: &impl Db, new: &NewVerifiedUser) -> Result<UserId> {
    let row = db
        .opt(
            "INSERT INTO users (username, password_hash, created_at_ms, email)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
            args![
                new.username.as_str(),
                new.password_hash.as_str(),
                new.now_ms,
                new.email.as_str()
            ],
        )
        .await?;
    match row {
        Some(r) => r.get(0),
        None if user_by_name(db, &new.username).await?.is_some() => {
            Err(StoreError::Conflict("username"))
        }
        None => Err(StoreError::Conflict("email")),
    }
}

pub(crate) async fn user_by_email(db: &impl Db, email: &str) -> Result<Option<UserRecord>> {
    if has_nul(email) {
        return Ok(None);
    }
    db.opt(
        concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1"),
        args![email],
    )
    .await?
    .map(|r| user_row(&r))
    .transpose()
}
