//! The admin API under `/admin/api` (docs/ADMIN.md), served on its own
//! listener (`listen.admin`, loopback by default), never on the public one.
//!
//! - Sessions: `POST /admin/api/login` sets the cookie `natter_admin`
//!   (HttpOnly, SameSite=Strict, Path=/admin, Secure over HTTPS) and
//!   returns a CSRF token; every request but a GET, HEAD or the login must
//!   carry it as `X-CSRF-Token`, checked here once for all routes.
//! - Roles: the service refuses a viewer's changes (and logs them).
//! - Every answer says `Cache-Control: no-store` and forbids framing and
//!   sniffing; the console's pages get a strict Content-Security-Policy.
//! - Errors are the REST API's `{code, message, retry_after_ms?}`.

mod config;
mod console;
pub mod dashboard;
mod groups;
pub mod logs;
pub(crate) mod openapi;
mod users;

pub use config::ConfigKey;

use crate::rest::{ApiError, Peer};
use crate::ClusterView;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use natter_service::admin::{admin_csrf, Actor};
use natter_service::Service;
use std::sync::Arc;

/// The session cookie's name.
pub const COOKIE: &str = "natter_admin";
/// The header a change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub service: Service,
    /// Whether the listener is HTTPS (the cookie is then `Secure`).
    pub https: bool,
    /// The metrics `/metrics` renders, which the dashboard reads.
    pub metrics: Option<PrometheusHandle>,
    /// The nodes of the cluster, for the dashboard.
    pub cluster: Option<Arc<dyn ClusterView>>,
    /// The server's log, when it keeps one in memory.
    pub logs: Option<Arc<dyn logs::LogView>>,
    /// The dashboard's one sampler, shared by every listener's router.
    pub sampler: Arc<dashboard::Sampler>,
    /// The effective configuration, composed once at start-up.
    pub config: std::sync::Arc<[ConfigKey]>,
}

/// The largest JSON body an admin request takes.
const MAX_BODY: usize = 16 * 1024;

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/api/openapi.json", get(openapi::document))
        .route("/admin/api/login", post(users::login))
        .route("/admin/api/logout", post(users::logout))
        .route("/admin/api/me", get(users::me))
        .route("/admin/api/users", get(users::list))
        .route(
            "/admin/api/users/{id}",
            get(users::one).delete(users::delete),
        )
        .route("/admin/api/users/{id}/disable", post(users::disable))
        .route("/admin/api/users/{id}/enable", post(users::enable))
        .route("/admin/api/users/{id}/ban", post(users::ban))
        .route("/admin/api/users/{id}/logout", post(users::logout_user))
        .route(
            "/admin/api/users/{id}/password",
            post(users::reset_password),
        )
        .route("/admin/api/audit", get(users::audit))
        .route("/admin/api/dashboard", get(dashboard::dashboard))
        .route("/admin/api/logs", get(logs::lines))
        .route("/admin/api/logs/export", get(logs::export))
        .route("/admin/api/logs/stream", get(logs::stream))
        .route(
            "/admin/api/logs/level",
            get(logs::level).put(logs::set_level),
        )
        .route(
            "/admin/api/traces",
            get(logs::traces).post(logs::start_trace),
        )
        .route("/admin/api/traces/{user_id}", get(logs::trace))
        .route("/admin", get(console::page))
        .route("/admin/", get(console::page))
        .route("/admin/assets/{file}", get(console::file))
        .route("/admin/api/config", get(config::config))
        .route("/admin/api/groups", get(groups::list))
        .route("/admin/api/groups/{id}", get(groups::one))
        .route("/admin/api/groups/{id}/dismiss", post(groups::dismiss))
        .route(
            "/admin/api/groups/{id}/members/{user_id}/remove",
            post(groups::remove_member),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(csrf))
        .layer(axum::middleware::from_fn(headers))
        .with_state(state)
}

/// The `after` of the next page of a page read with `limit`
/// (`natter_service::admin::page_limit`): its last id when it is full.
pub(crate) fn next_after<T>(found: &[T], limit: usize, id: impl Fn(&T) -> u64) -> Option<u64> {
    (found.len() >= limit)
        .then(|| found.last().map(id))
        .flatten()
}

/// The session token the request's cookie holds.
fn cookie_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses a change whose `X-CSRF-Token` is not its session's: a page on
/// another site cannot read the token, so it cannot forge the request.
async fn csrf(req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || req.uri().path() == "/admin/api/login" {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let token = cookie_token(&parts).unwrap_or_default();
    let sent = parts
        .headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if token.is_empty() || !same(sent, admin_csrf(&token).as_bytes()) {
        return ApiError::new(
            "FORBIDDEN",
            "a change needs the session's X-CSRF-Token header (from login or GET /admin/api/me)",
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The headers every admin answer carries.
async fn headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(
            h,
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        );
    }
    r
}

/// The administrator whose session cookie came with the request.
pub struct Admin {
    pub actor: Actor,
    pub token: String,
}

impl FromRequestParts<AdminState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let Peer(from) = Peer::from_request_parts(parts, state).await?;
        let token = cookie_token(parts).ok_or_else(|| {
            ApiError::new(
                "NOT_AUTHENTICATED",
                "log in first: POST /admin/api/login sets the session cookie",
            )
        })?;
        let actor = state.service.admin_session(&token, from).await?;
        Ok(Admin { actor, token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let req = axum::http::Request::builder()
            .header(header::COOKIE, "a=1; natter_admin=tok; b=2")
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        assert_eq!(cookie_token(&parts).as_deref(), Some("tok"));
        let (parts, _) = axum::http::Request::builder()
            .header(header::COOKIE, "natter_admin_x=1")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(cookie_token(&parts), None);
    }

    #[test]
    fn same_compares_whole_values() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }
}
