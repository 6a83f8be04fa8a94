//! Accounts over HTTP: register (with an emailed code when asked), login (a token, its expiry and the node
//! to connect to for live traffic), logout, who I am, password change.

use super::{done, ApiError, Authed, ErrorBody, Json, Peer, RestState};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3 to 32 of a-z, 0-9, `_`, `.`, `-`, starting with a letter;
    /// compared case-insensitively.
    pub username: String,
    pub password: String,
    /// An address to verify, with `code`: required when the server
    /// requires verified addresses (`email.require_verified`).
    #[serde(default)]
    pub email: Option<String>,
    /// The 6 digits a `register` code's email gave (`POST /v1/email/code`).
    #[serde(default)]
    pub code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    pub user_id: u64,
    /// The name as stored (lower-case).
    pub username: String,
}

/// Creates an account.
#[utoipa::path(post, path = "/v1/register", tag = "accounts",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = Registered),
        (status = 400, description = "INVALID_ARGUMENT (also: an address is required, or is in use), WEAK_PASSWORD or MALFORMED", body = ErrorBody),
        (status = 401, description = "BAD_CREDENTIALS: the email code is wrong, expired, used or was never sent", body = ErrorBody),
        (status = 409, description = "USERNAME_TAKEN", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn register(
    State(s): State<RestState>,
    Peer(from): Peer,
    Json(r): Json<RegisterRequest>,
) -> Result<(StatusCode, axum::Json<Registered>), ApiError> {
    let email = match (&r.email, &r.code) {
        (Some(e), Some(c)) => Some((e.as_str(), c.as_str())),
        (None, None) => None,
        _ => {
            return Err(ApiError::new(
                "INVALID_ARGUMENT",
                "`email` and `code` come together",
            ))
        }
    };
    let user_id = s
        .service
        .register_with_email(&r.username, &r.password, email, from)
        .await?;
    // The name as stored: the service's rule, read back rather than copied.
    let username = s
        .service
        .users(&[user_id], &[])
        .await?
        .into_iter()
        .next()
        .map(|(_, name)| name)
        .unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        axum::Json(Registered { user_id, username }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The device this session is for (1-64 bytes); a login on a device
    /// ends that device's previous session. Default `http`.
    #[serde(default)]
    pub device_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginAnswer {
    /// The bearer token for `Authorization: Bearer …` here, and for a
    /// frame-protocol `Resume` from the same device.
    pub token: String,
    pub expires_at_ms: i64,
    pub user_id: u64,
    pub username: String,
    pub device_id: String,
    /// Where to connect for live traffic, as `/v1/cluster/assign` answers
    /// (`node_id`, `tcp`, `ws`, `http`); absent when no node takes clients
    /// now.
    #[schema(value_type = Object)]
    pub node: Option<serde_json::Value>,
}

/// Checks the password and opens a session.
#[utoipa::path(post, path = "/v1/login", tag = "accounts",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginAnswer),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 401, description = "BAD_CREDENTIALS", body = ErrorBody),
        (status = 403, description = "ACCOUNT_DISABLED", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn login(
    State(s): State<RestState>,
    Peer(from): Peer,
    Json(r): Json<LoginRequest>,
) -> Result<axum::Json<LoginAnswer>, ApiError> {
    let device = r.device_id.unwrap_or_else(|| "http".to_owned());
    let session = s
        .service
        .login(&r.username, &r.password, &device, from)
        .await?;
    let node = s.cluster.assign(Some(&session.user_id.to_string()), &[]);
    Ok(axum::Json(LoginAnswer {
        token: session.token,
        expires_at_ms: session.expires_at_ms,
        user_id: session.user_id,
        username: session.username,
        device_id: session.device_id,
        node,
    }))
}

/// Ends the session whose token this request carries (its event stream and
/// any connection holding it end as `LOGGED_OUT`).
#[utoipa::path(post, path = "/v1/logout", tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session is over"),
    ))]
pub async fn logout(
    State(s): State<RestState>,
    Authed(me): Authed,
) -> Result<StatusCode, ApiError> {
    // The session's event stream, wherever it is, ends with it.
    s.service.logout_elsewhere(&me, &[]).await?;
    Ok(done())
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user_id: u64,
    pub username: String,
    pub session_id: u64,
    pub device_id: String,
    pub expires_at_ms: i64,
}

/// The session this request's token names.
#[utoipa::path(get, path = "/v1/me", tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Me),
        (status = 403, description = "ACCOUNT_DISABLED", body = ErrorBody),
    ))]
pub async fn me(Authed(me): Authed) -> axum::Json<Me> {
    axum::Json(Me {
        user_id: me.user_id,
        username: me.username,
        session_id: me.session_id,
        device_id: me.device_id,
        expires_at_ms: me.expires_at_ms,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub old_password: String,
    pub new_password: String,
}

/// Changes the password; every other session of the user ends.
#[utoipa::path(put, path = "/v1/me/password", tag = "accounts",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "WEAK_PASSWORD or MALFORMED", body = ErrorBody),
        (status = 401, description = "BAD_CREDENTIALS (the old password), NOT_AUTHENTICATED, TOKEN_INVALID or TOKEN_EXPIRED", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody),
    ))]
pub async fn change_password(
    State(s): State<RestState>,
    Authed(me): Authed,
    Json(r): Json<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    s.service
        .change_password(&me, &r.old_password, &r.new_password)
        .await?;
    Ok(done())
}
