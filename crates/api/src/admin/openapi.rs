//! The admin API's OpenAPI 3.1 document, generated from the handlers'
//! annotations and served at `/admin/api/openapi.json`.

use super::{config, dashboard, groups, logs, users};
use crate::rest::ErrorBody;
use axum::response::IntoResponse;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "natter admin",
        description = "Operating a natter deployment: administrator sessions (cookie `natter_admin`; every change carries the session's `X-CSRF-Token`), accounts, groups and rooms, the audit log, the effective configuration. Served on the admin listener (`listen.admin`) only. Errors are `{code, message, retry_after_ms?}`.",
    ),
    paths(
        users::login,
        users::logout,
        users::me,
        users::list,
        users::one,
        users::disable,
        users::enable,
        users::ban,
        users::logout_user,
        users::reset_password,
        users::delete,
        users::audit,
        dashboard::dashboard,
        logs::lines,
        logs::export,
        logs::stream,
        logs::level,
        logs::set_level,
        logs::start_trace,
        logs::traces,
        logs::trace,
        config::config,
        groups::list,
        groups::one,
        groups::dismiss,
        groups::remove_member,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "sessions", description = "Administrators logging in and out"),
        (name = "users", description = "Accounts: find, look, disable, ban, end sessions, reset passwords"),
        (name = "audit", description = "What administrators did"),
        (name = "dashboard", description = "Live figures from the server's own metrics"),
        (name = "logs", description = "The server's recent log, its live tail, its level, per-user traces"),
        (name = "groups", description = "Groups and rooms: find, look, dismiss, remove a member"),
        (name = "config", description = "The effective configuration, with where each key came from"),
    )
)]
pub struct AdminDoc;

/// `GET /admin/api/openapi.json`.
pub async fn document() -> impl IntoResponse {
    axum::Json(AdminDoc::openapi())
}
