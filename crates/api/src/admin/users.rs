//! The admin API's sessions, accounts and audit log: log in and out, find
//! and page through accounts, look at one, disable, enable, ban, end its
//! sessions, reset its password, and read what administrators did.

use super::{next_after, Admin, AdminState, COOKIE};
use crate::rest::{ApiError, ErrorBody, Json, Path, Peer, Query};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use natter_service::admin::{admin_csrf, page_limit, AccountView};
use natter_service::model::{AccountSummary, AuditRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

/// Who is logged in, and the token each change must carry as
/// `X-CSRF-Token`.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub name: String,
    /// `admin` or `viewer` (a viewer may only look).
    pub role: String,
    pub csrf: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoggedIn {
    pub name: String,
    pub role: String,
    pub csrf: String,
    pub expires_at_ms: i64,
}

fn cookie(s: &AdminState, value: &str, max_age_secs: i64) -> Option<HeaderValue> {
    let secure = if s.https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

/// Logs an administrator in: sets the session cookie.
#[utoipa::path(post, path = "/admin/api/login", tag = "sessions",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoggedIn, description = "Logged in; `Set-Cookie: natter_admin=...`"),
        (status = 401, description = "BAD_CREDENTIALS", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many wrong passwords for the name or from the address", body = ErrorBody),
    ))]
pub async fn login(
    State(s): State<AdminState>,
    Peer(from): Peer,
    Json(r): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let l = s.service.admin_login(&r.name, &r.password, from).await?;
    let max_age = (l.expires_at_ms - natter_service::now_ms()).max(0) / 1000;
    let mut resp = axum::Json(LoggedIn {
        name: l.actor.name,
        role: l.actor.role.name().into(),
        csrf: l.csrf,
        expires_at_ms: l.expires_at_ms,
    })
    .into_response();
    if let Some(c) = cookie(&s, &l.token, max_age) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// Ends this administrator session and clears its cookie.
#[utoipa::path(post, path = "/admin/api/logout", tag = "sessions",
    responses((status = 204, description = "Logged out")))]
pub async fn logout(State(s): State<AdminState>, a: Admin) -> Result<Response, ApiError> {
    s.service.admin_logout(&a.actor, &a.token).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = cookie(&s, "", 0) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// Who is logged in, with the CSRF token.
#[utoipa::path(get, path = "/admin/api/me", tag = "sessions",
    responses((status = 200, body = Me)))]
pub async fn me(a: Admin) -> axum::Json<Me> {
    axum::Json(Me {
        name: a.actor.name,
        role: a.actor.role.name().into(),
        csrf: admin_csrf(&a.token),
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Text the name or email address contains (any case); empty: all.
    #[serde(default)]
    pub q: String,
    /// The last id of the page before (0: from the start).
    #[serde(default)]
    pub after: u64,
    /// At most this many (default 50, at most 500).
    #[serde(default)]
    pub limit: usize,
}

/// An account as an administrator sees it.
#[derive(Serialize, ToSchema)]
pub struct Account {
    pub id: u64,
    pub username: String,
    pub email: Option<String>,
    pub created_at_ms: i64,
    /// Disabled until enabled, or banned (with `banned_until_ms`).
    pub disabled: bool,
    /// When a ban ends by itself.
    pub banned_until_ms: Option<i64>,
    /// Why it was disabled or banned.
    pub reason: String,
}

impl From<AccountSummary> for Account {
    fn from(a: AccountSummary) -> Self {
        Account {
            id: a.id,
            username: a.username,
            email: a.email,
            created_at_ms: a.created_at_ms,
            disabled: a.bar.disabled,
            banned_until_ms: a.bar.until_ms,
            reason: a.bar.reason,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AccountPage {
    pub users: Vec<Account>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<u64>,
}

/// Finds and pages through accounts, by id.
#[utoipa::path(get, path = "/admin/api/users", tag = "users", params(ListQuery),
    responses((status = 200, body = AccountPage)))]
pub async fn list(
    State(s): State<AdminState>,
    _a: Admin,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<AccountPage>, ApiError> {
    let limit = page_limit(q.limit);
    let found = s.service.admin_accounts(&q.q, q.after, limit).await?;
    let next_after = next_after(&found, limit, |a| a.id);
    Ok(axum::Json(AccountPage {
        users: found.into_iter().map(Account::from).collect(),
        next_after,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Session {
    pub id: u64,
    pub device_id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Group {
    pub id: u64,
    pub name: String,
    /// `member`, `admin` or `owner`.
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccountInFull {
    #[serde(flatten)]
    pub account: Account,
    /// Sessions still valid (at most 100).
    pub sessions: Vec<Session>,
    /// Groups and rooms it is in (at most 200).
    pub groups: Vec<Group>,
    pub last_login_ms: Option<i64>,
    pub friends: u64,
    /// Connected anywhere now; absent when the directory cannot be asked.
    pub online: Option<bool>,
}

impl From<AccountView> for AccountInFull {
    fn from(v: AccountView) -> Self {
        let d = v.detail;
        AccountInFull {
            account: d.summary.into(),
            sessions: d
                .sessions
                .into_iter()
                .map(|s| Session {
                    id: s.id,
                    device_id: s.device_id,
                    created_at_ms: s.created_at_ms,
                    expires_at_ms: s.expires_at_ms,
                })
                .collect(),
            groups: d
                .groups
                .into_iter()
                .map(|g| Group {
                    id: g.id,
                    name: g.name,
                    role: g.role.into(),
                })
                .collect(),
            last_login_ms: d.last_login_ms,
            friends: d.friends,
            online: v.online,
        }
    }
}

/// One account in full.
#[utoipa::path(get, path = "/admin/api/users/{id}", tag = "users",
    params(("id" = u64, Path)),
    responses((status = 200, body = AccountInFull), (status = 404, description = "NOT_FOUND", body = ErrorBody)))]
pub async fn one(
    State(s): State<AdminState>,
    _a: Admin,
    Path(id): Path<u64>,
) -> Result<axum::Json<AccountInFull>, ApiError> {
    Ok(axum::Json(s.service.admin_account(id).await?.into()))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why (kept in the account and the audit log; at most 500 bytes).
    #[serde(default)]
    pub reason: String,
}

/// Disables an account until enabled: its sessions end at once (its
/// connections and event streams close, on every node) and it cannot log in.
#[utoipa::path(post, path = "/admin/api/users/{id}/disable", tag = "users",
    params(("id" = u64, Path)), request_body = Reason,
    responses((status = 204, description = "Disabled"), (status = 403, description = "FORBIDDEN: a viewer, or no X-CSRF-Token", body = ErrorBody), (status = 404, description = "NOT_FOUND", body = ErrorBody)))]
pub async fn disable(
    State(s): State<AdminState>,
    a: Admin,
    Path(id): Path<u64>,
    Json(r): Json<Reason>,
) -> Result<StatusCode, ApiError> {
    s.service
        .admin_set_disabled(&a.actor, id, true, &r.reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables an account (ending a ban too).
#[utoipa::path(post, path = "/admin/api/users/{id}/enable", tag = "users",
    params(("id" = u64, Path)),
    responses((status = 204, description = "Enabled"), (status = 403, description = "FORBIDDEN", body = ErrorBody), (status = 404, description = "NOT_FOUND", body = ErrorBody)))]
pub async fn enable(
    State(s): State<AdminState>,
    a: Admin,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    s.service
        .admin_set_disabled(&a.actor, id, false, "")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// How long, in seconds (at most 100 years).
    pub seconds: u64,
    #[serde(default)]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct Banned {
    pub banned_until_ms: i64,
}

/// Bans an account for a time, with a reason: as disabled, until the ban ends.
#[utoipa::path(post, path = "/admin/api/users/{id}/ban", tag = "users",
    params(("id" = u64, Path)), request_body = BanRequest,
    responses((status = 200, body = Banned), (status = 403, description = "FORBIDDEN", body = ErrorBody), (status = 404, description = "NOT_FOUND", body = ErrorBody)))]
pub async fn ban(
    State(s): State<AdminState>,
    a: Admin,
    Path(id): Path<u64>,
    Json(r): Json<BanRequest>,
) -> Result<axum::Json<Banned>, ApiError> {
    let ms = i64::try_from(r.seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let until = s.service.admin_ban(&a.actor, id, ms, &r.reason).await?;
    Ok(axum::Json(Banned {
        banned_until_ms: until,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Ended {
    /// How many sessions were ended.
    pub sessions: usize,
}

/// Ends every session of an account at once, on every node.
#[utoipa::path(post, path = "/admin/api/users/{id}/logout", tag = "users",
    params(("id" = u64, Path)),
    responses((status = 200, body = Ended), (status = 403, description = "FORBIDDEN", body = ErrorBody), (status = 404, description = "NOT_FOUND", body = ErrorBody)))]
pub async fn logout_user(
    State(s): State<AdminState>,
    a: Admin,
    Path(id): Path<u64>,
) -> Result<axum::Json<Ended>, ApiError> {
    let sessions = s.service.admin_logout_user(&a.actor, id).await?;
    Ok(axum::Json(Ended { sessions }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// The new password; absent: a random one, returned.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PasswordSet {
    /// The password now set (to hand to the user).
    pub password: String,
}

/// Sets a new password and ends every session of the account.
#[utoipa::path(post, path = "/admin/api/users/{id}/password", tag = "users",
    params(("id" = u64, Path)), request_body = PasswordRequest,
    responses((status = 200, body = PasswordSet), (status = 400, description = "WEAK_PASSWORD", body = ErrorBody), (status = 403, description = "FORBIDDEN", body = ErrorBody), (status = 404, description = "NOT_FOUND", body = ErrorBody)))]
pub async fn reset_password(
    State(s): State<AdminState>,
    a: Admin,
    Path(id): Path<u64>,
    Json(r): Json<PasswordRequest>,
) -> Result<axum::Json<PasswordSet>, ApiError> {
    let password = s
        .service
        .admin_reset_password(&a.actor, id, r.password.as_deref())
        .await?;
    Ok(axum::Json(PasswordSet { password }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Lines before this id (0: from the newest).
    #[serde(default)]
    pub before: u64,
    /// At most this many (default 100, at most 500).
    #[serde(default)]
    pub limit: usize,
}

/// One thing an administrator did, or was refused.
#[derive(Serialize, ToSchema)]
pub struct AuditLine {
    pub id: u64,
    pub at_ms: i64,
    /// The administrator, or `cli:<user>` for the command line.
    pub actor: String,
    pub address: String,
    /// E.g. `user.disable`, `admin.login`, `log.level`.
    pub action: String,
    /// E.g. `user:42`.
    pub target: String,
    pub detail: String,
    pub ok: bool,
}

impl From<AuditRecord> for AuditLine {
    fn from(r: AuditRecord) -> Self {
        let e = r.entry;
        AuditLine {
            id: r.id,
            at_ms: e.at_ms,
            actor: e.actor,
            address: e.address,
            action: e.action,
            target: e.target,
            detail: e.detail,
            ok: e.ok,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub lines: Vec<AuditLine>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/admin/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage)))]
pub async fn audit(
    State(s): State<AdminState>,
    _a: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let lines = s.service.admin_audit_log(q.before, q.limit).await?;
    Ok(axum::Json(AuditPage {
        lines: lines.into_iter().map(AuditLine::from).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    /// Sessions that were still valid (closed at once).
    pub sessions: usize,
    /// Uploads deleted.
    pub uploads: usize,
}

/// Deletes an account and its data: sessions (closed at once, on every
/// node), friends, friend requests, blocks, mentions and uploads; its name,
/// password and address are erased. It stays as `~deleted-<id>`, barred for
/// good, as the sender of the messages it wrote; its name is free again.
#[utoipa::path(delete, path = "/admin/api/users/{id}", tag = "users",
    params(("id" = u64, Path)),
    responses((status = 200, body = Deleted), (status = 403, description = "FORBIDDEN", body = ErrorBody), (status = 404, description = "NOT_FOUND (or deleted already)", body = ErrorBody)))]
pub async fn delete(
    State(s): State<AdminState>,
    a: Admin,
    Path(id): Path<u64>,
) -> Result<axum::Json<Deleted>, ApiError> {
    let (sessions, uploads) = s.service.admin_delete_user(&a.actor, id).await?;
    Ok(axum::Json(Deleted { sessions, uploads }))
}
