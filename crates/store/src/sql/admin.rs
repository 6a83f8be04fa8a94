//! Operating a deployment: administrators and their sessions, the audit
//! log, and accounts as an administrator sees and changes them (search,
//! one account in full, disable, ban, end every session).

use super::lists::{group_row, group_select};
use super::{args, each, has_nul, Db, Row};
use crate::{
    AccountDetail, AccountGroup, AccountSession, AccountSummary, AdminId, AdminRecord, AdminRole,
    AdminSessionRecord, AuditRecord, Bar, ConversationId, GroupRecord, MemberRecord, NewAudit,
    Result, SessionId, StoreError, UserId,
};

fn admin_row(r: &Row) -> Result<AdminRecord> {
    Ok(AdminRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        password_hash: r.get(2)?,
        role: r.stored(3)?,
        created_at_ms: r.get(4)?,
    })
}

/// Makes an administrator; with `replace`, one of that name gets the new
/// password and role and loses its sessions. Whether it was made new.
pub(crate) async fn put_admin(
    db: &impl Db,
    name: &str,
    hash: &str,
    role: AdminRole,
    now_ms: i64,
    replace: bool,
) -> Result<bool> {
    let made = db
        .opt(
            "INSERT INTO admins (name, password_hash, role, created_at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING RETURNING id",
            args![name, hash, role as i64, now_ms],
        )
        .await?;
    if made.is_some() {
        return Ok(true);
    }
    if !replace {
        return Err(StoreError::Conflict("admin name"));
    }
    let row = db
        .one(
            "SELECT id FROM admins WHERE name = $1 FOR UPDATE",
            args![name],
        )
        .await?;
    let id: AdminId = row.get(0)?;
    db.exec(
        "UPDATE admins SET password_hash = $2, role = $3 WHERE id = $1",
        args![id, hash, role as i64],
    )
    .await?;
    db.exec("DELETE FROM admin_sessions WHERE admin_id = $1", args![id])
        .await?;
    Ok(false)
}

pub(crate) async fn admin_by_name(db: &impl Db, name: &str) -> Result<Option<AdminRecord>> {
    if has_nul(name) {
        return Ok(None);
    }
    db.opt(
        "SELECT id, name, password_hash, role, created_at_ms FROM admins WHERE name = $1",
        args![name],
    )
    .await?
    .map(|r| admin_row(&r))
    .transpose()
}

pub(crate) async fn admins(db: &impl Db) -> Result<Vec<AdminRecord>> {
    let rows = db
        .rows(
            "SELECT id, name, password_hash, role, created_at_ms FROM admins ORDER BY id",
            &[],
        )
        .await?;
    each(rows, admin_row)
}

/// A new administrator session; sessions that have ended are swept on
/// the way.
pub(crate) async fn create_admin_session(
    db: &impl Db,
    admin: AdminId,
    token_hash: &[u8; 32],
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<()> {
    db.exec(
        "DELETE FROM admin_sessions WHERE expires_at_ms <= $1",
        args![now_ms],
    )
    .await?;
    db.exec(
        "INSERT INTO admin_sessions (token_hash, admin_id, created_at_ms, expires_at_ms)
         VALUES ($1, $2, $3, $4)",
        args![&token_hash[..], admin, now_ms, expires_at_ms],
    )
    .await?;
    Ok(())
}

pub(crate) async fn admin_session(
    db: &impl Db,
    token_hash: &[u8; 32],
) -> Result<Option<AdminSessionRecord>> {
    db.opt(
        "SELECT a.id, a.name, a.role, s.expires_at_ms
         FROM admin_sessions s JOIN admins a ON a.id = s.admin_id WHERE s.token_hash = $1",
        args![&token_hash[..]],
    )
    .await?
    .map(|r| {
        Ok(AdminSessionRecord {
            admin_id: r.get(0)?,
            name: r.get(1)?,
            role: r.stored(2)?,
            expires_at_ms: r.get(3)?,
        })
    })
    .transpose()
}

pub(crate) async fn end_admin_session(db: &impl Db, token_hash: &[u8; 32]) -> Result<()> {
    db.exec(
        "DELETE FROM admin_sessions WHERE token_hash = $1",
        args![&token_hash[..]],
    )
    .await?;
    Ok(())
}

pub(crate) async fn audit(db: &impl Db, e: &NewAudit) -> Result<()> {
    db.exec(
        "INSERT INTO admin_audit (at_ms, actor, address, action, target, detail, ok)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        args![
            e.at_ms,
            e.actor.as_str(),
            e.address.as_str(),
            e.action.as_str(),
            e.target.as_str(),
            e.detail.as_str(),
            e.ok
        ],
    )
    .await?;
    Ok(())
}

/// The audit log newest first, before the line `before` (0: from the
/// newest).
pub(crate) async fn audit_log(db: &impl Db, before: u64, limit: usize) -> Result<Vec<AuditRecord>> {
    let before = if before == 0 { i64::MAX as u64 } else { before };
    let rows = db
        .rows(
            "SELECT id, at_ms, actor, address, action, target, detail, ok FROM admin_audit
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
            args![before, limit],
        )
        .await?;
    each(rows, |r| {
        Ok(AuditRecord {
            id: r.get(0)?,
            entry: NewAudit {
                at_ms: r.get(1)?,
                actor: r.get(2)?,
                address: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                detail: r.get(6)?,
                ok: r.get(7)?,
            },
        })
    })
}

macro_rules! account_columns {
    () => {
        "id, username, email, created_at_ms, disabled, banned_until_ms, ban_reason"
    };
}

fn account_row(r: &Row) -> Result<AccountSummary> {
    Ok(AccountSummary {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get(2)?,
        created_at_ms: r.get(3)?,
        bar: Bar {
            disabled: r.get(4)?,
            until_ms: r.get(5)?,
            reason: r.get(6)?,
        },
    })
}

/// Accounts whose name or address contains `text` (any case, for ASCII),
/// by id after `after`.
pub(crate) async fn accounts(
    db: &impl Db,
    text: &str,
    after: UserId,
    limit: usize,
) -> Result<Vec<AccountSummary>> {
    if has_nul(text) {
        return Ok(Vec::new());
    }
    let pattern = contains(text);
    let rows = db
        .rows(
            concat!(
                "SELECT ",
                account_columns!(),
                " FROM users WHERE id > $1
                   AND (username COLLATE \"C\" ILIKE $2 ESCAPE '\\'
                        OR email COLLATE \"C\" ILIKE $2 ESCAPE '\\')
                 ORDER BY id LIMIT $3"
            ),
            args![after, pattern.as_str(), limit],
        )
        .await?;
    each(rows, account_row)
}

/// One account in full: its sessions still valid at `now_ms` (at most
/// 100), its groups (at most 200), its last login and its friends.
pub(crate) async fn account(
    db: &impl Db,
    id: UserId,
    now_ms: i64,
) -> Result<Option<AccountDetail>> {
    let Some(row) = db
        .opt(
            concat!("SELECT ", account_columns!(), " FROM users WHERE id = $1"),
            args![id],
        )
        .await?
    else {
        return Ok(None);
    };
    let summary = account_row(&row)?;
    let sessions = db
        .rows(
            "SELECT id, device_id, created_at_ms, expires_at_ms FROM sessions
             WHERE user_id = $1 AND NOT revoked AND expires_at_ms > $2 ORDER BY id LIMIT 100",
            args![id, now_ms],
        )
        .await?;
    let sessions = each(sessions, |r| {
        Ok(AccountSession {
            id: r.get(0)?,
            device_id: r.get(1)?,
            created_at_ms: r.get(2)?,
            expires_at_ms: r.get(3)?,
        })
    })?;
    let last_login_ms = db
        .one(
            "SELECT max(created_at_ms) FROM sessions WHERE user_id = $1",
            args![id],
        )
        .await?
        .get(0)?;
    let groups = db
        .rows(
            "SELECT g.conversation_id, g.name, m.role FROM members m
             JOIN groups g ON g.conversation_id = m.conversation_id
             WHERE m.user_id = $1 AND m.left_seq = 0 ORDER BY g.conversation_id LIMIT 200",
            args![id],
        )
        .await?;
    let groups = each(groups, |r| {
        Ok(AccountGroup {
            id: r.get(0)?,
            name: r.get(1)?,
            role: r.stored::<crate::Role>(2)?.name(),
        })
    })?;
    let friends = db
        .one("SELECT count(*) FROM friends WHERE user_id = $1", args![id])
        .await?
        .get(0)?;
    Ok(Some(AccountDetail {
        summary,
        sessions,
        groups,
        last_login_ms,
        friends,
    }))
}

/// Sets whether the account is barred; barring it ends its sessions. The
/// sessions ended.
pub(crate) async fn set_bar(db: &impl Db, id: UserId, bar: &Bar) -> Result<Vec<SessionId>> {
    let n = match bar.until_ms {
        Some(until) => {
            db.exec(
                "UPDATE users SET disabled = $2, banned_until_ms = $3, ban_reason = $4
                 WHERE id = $1",
                args![id, bar.disabled, until, bar.reason.as_str()],
            )
            .await?
        }
        None => {
            db.exec(
                "UPDATE users SET disabled = $2, banned_until_ms = NULL, ban_reason = $3
                 WHERE id = $1",
                args![id, bar.disabled, bar.reason.as_str()],
            )
            .await?
        }
    };
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    if bar.disabled {
        end_sessions(db, id).await
    } else {
        Ok(Vec::new())
    }
}

/// Ends every session of the account; those ended.
pub(crate) async fn end_sessions(db: &impl Db, id: UserId) -> Result<Vec<SessionId>> {
    super::accounts::revoke_sessions(
        db,
        "SELECT id FROM sessions WHERE user_id = $1 AND NOT revoked FOR UPDATE",
        args![id],
    )
    .await
}

/// Lifts the bans that ended by `now_ms`; the accounts let back in.
pub(crate) async fn lift_ended_bans(db: &impl Db, now_ms: i64) -> Result<Vec<UserId>> {
    let rows = db
        .rows(
            "SELECT id FROM users WHERE banned_until_ms IS NOT NULL AND banned_until_ms <= $1
             FOR UPDATE",
            args![now_ms],
        )
        .await?;
    let ids: Vec<UserId> = each(rows, |r| r.get(0))?;
    if !ids.is_empty() {
        db.exec(
            "UPDATE users SET disabled = false, banned_until_ms = NULL, ban_reason = ''
             WHERE id = ANY($1)",
            args![ids.as_slice()],
        )
        .await?;
    }
    Ok(ids)
}

/// Deletes an account's data: its sessions (those still valid are
/// returned), friends, friend requests, blocks, requests to join and
/// mentions; its name, password and address are erased and it stays barred
/// for good, as `~deleted-<id>` (a name no one can register), so the messages it sent keep a sender in
/// others' history and its name is free again.
pub(crate) async fn delete_account(db: &impl Db, id: UserId) -> Result<Vec<SessionId>> {
    db.lock_users(&[id]).await?;
    if !db
        .exists("SELECT 1 FROM users WHERE id = $1", args![id])
        .await?
    {
        return Err(StoreError::NotFound("user"));
    }
    let ended = end_sessions(db, id).await?;
    db.exec("DELETE FROM sessions WHERE user_id = $1", args![id])
        .await?;
    db.exec(
        "DELETE FROM friends WHERE user_id = $1 OR friend_id = $1",
        args![id],
    )
    .await?;
    db.exec(
        "DELETE FROM friend_requests WHERE from_id = $1 OR to_id = $1",
        args![id],
    )
    .await?;
    db.exec(
        "DELETE FROM blocks WHERE user_id = $1 OR blocked_id = $1",
        args![id],
    )
    .await?;
    db.exec("DELETE FROM join_requests WHERE user_id = $1", args![id])
        .await?;
    db.exec("DELETE FROM mentions WHERE user_id = $1", args![id])
        .await?;
    let name = format!("~deleted-{id}");
    db.exec(
        "UPDATE users SET username = $2, password_hash = '', email = NULL, disabled = true,
             banned_until_ms = NULL, ban_reason = 'deleted'
         WHERE id = $1",
        args![id, name.as_str()],
    )
    .await?;
    Ok(ended)
}

/// A `LIKE` pattern matching what contains `text`, literally (`%`, `_`
/// and `\` escaped).
fn contains(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Groups and rooms, dismissed ones too, whose name contains `text` (any
/// case, for ASCII), by id after `after`. Read as nobody (viewer 0), so
/// `my_role` is `None`.
pub(crate) async fn groups(
    db: &impl Db,
    text: &str,
    after: ConversationId,
    limit: usize,
) -> Result<Vec<GroupRecord>> {
    if has_nul(text) {
        return Ok(Vec::new());
    }
    let pattern = contains(text);
    let rows = db
        .rows(
            concat!(
                group_select!(),
                " WHERE g.conversation_id > $2 AND g.name COLLATE \"C\" ILIKE $3 ESCAPE '\\'
                 ORDER BY g.conversation_id LIMIT $4"
            ),
            args![0i64, after, pattern.as_str(), limit],
        )
        .await?;
    each(rows, group_row)
}

/// A group or room, dismissed or not, with up to `limit` of its current
/// members by user id after `after`.
pub(crate) async fn group(
    db: &impl Db,
    id: ConversationId,
    after: UserId,
    limit: usize,
) -> Result<Option<(GroupRecord, Vec<MemberRecord>)>> {
    let Some(row) = db
        .opt(
            concat!(group_select!(), " WHERE g.conversation_id = $2"),
            args![0i64, id],
        )
        .await?
    else {
        return Ok(None);
    };
    let group = group_row(&row)?;
    let members = super::lists::member_rows(db, id, after, limit).await?;
    Ok(Some((group, members)))
}
