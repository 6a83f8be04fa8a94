//! Email over HTTP, when the server has `[email]` settings: asking for a
//! code (to register with a verified address, or to reset a password) and
//! the reset itself. Registration with a code is `POST /v1/register`.

use super::{ApiError, ErrorBody, Json, Peer, RestState};
use axum::extract::State;
use axum::http::StatusCode;
use natter_service::model::CodePurpose;
use serde::Deserialize;
use utoipa::ToSchema;

/// What a code is for.
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// To register with this address (`POST /v1/register`).
    Register,
    /// To set a new password (`POST /v1/password/reset`).
    Reset,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub email: String,
    pub purpose: Purpose,
}

/// Emails a 6-digit code to the address. A `register` code is sent before
/// the answer; a `reset` code after it, so the answer is the same whether
/// or not an account has the address.
#[utoipa::path(post, path = "/v1/email/code", tag = "accounts",
    request_body = CodeRequest,
    responses(
        (status = 202, description = "Sent (for a reset: queued, and sent if an account has the address)"),
        (status = 400, description = "INVALID_ARGUMENT (not an address, or the server sends no email) or MALFORMED", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many codes for this address or from this source", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the mail server failed or did not answer in time (register), or too many resets wait", body = ErrorBody),
    ))]
pub async fn send_code(
    State(s): State<RestState>,
    Peer(from): Peer,
    Json(r): Json<CodeRequest>,
) -> Result<StatusCode, ApiError> {
    let purpose = match r.purpose {
        Purpose::Register => CodePurpose::Register,
        Purpose::Reset => CodePurpose::Reset,
    };
    s.service.send_email_code(&r.email, purpose, from).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
    /// The 6 digits a `reset` code's email gave.
    pub code: String,
    pub new_password: String,
}

/// Sets a new password with an emailed code; every session of the account
/// ends.
#[utoipa::path(post, path = "/v1/password/reset", tag = "accounts",
    request_body = ResetRequest,
    responses(
        (status = 204, description = "Changed; every session has ended"),
        (status = 400, description = "WEAK_PASSWORD, INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 401, description = "BAD_CREDENTIALS: the code is wrong, expired, used or was never sent", body = ErrorBody),
        (status = 403, description = "ACCOUNT_DISABLED", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn reset_password(
    State(s): State<RestState>,
    Peer(from): Peer,
    Json(r): Json<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    s.service
        .reset_password(&r.email, &r.code, &r.new_password, from)
        .await?;
    Ok(super::done())
}
