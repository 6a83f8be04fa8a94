//! The REST API under `/v1`: JSON over HTTP on the same service calls as
//! the frame protocol (a handler parses, makes one service call, answers),
//! so TCP, WebSocket and HTTP clients see the same conversations under the
//! same rules and limits.
//!
//! - Authentication: `Authorization: Bearer <token>`, the token a login
//!   returns (the same sessions as the frame protocol's).
//! - Errors: one shape, `{code, message, retry_after_ms?}`, with the wire
//!   protocol's codes; [`status`] is the one place a code meets its HTTP
//!   status.
//! - Live events: `GET /v1/events` streams the session's pushes as
//!   Server-Sent Events (`events.rs`), through a trait the binary
//!   implements on the gateway.
//! - The OpenAPI document is generated from these handlers
//!   ([`openapi::ApiDoc`]) and served at `/v1/openapi.json`.

mod auth;
mod email;
mod events;
mod files;
mod groups;
mod messages;
pub(crate) mod openapi;
mod social;

pub use events::{LiveFeed, LiveSessions};

use crate::ClusterView;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use natter_service::{Service, ServiceError, SessionInfo};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// What the REST handlers read.
#[derive(Clone)]
pub struct RestState {
    pub service: Service,
    /// Where a client that logged in should connect for live traffic.
    pub cluster: Arc<dyn ClusterView>,
    /// Attaches the sessions of `GET /v1/events` here.
    pub live: Arc<dyn LiveSessions>,
}

/// The largest JSON request body: a message at its largest, escaped, with
/// room for the rest of the request.
const MAX_BODY: usize = 256 * 1024;

pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/register", post(auth::register))
        .route("/v1/email/code", post(email::send_code))
        .route("/v1/password/reset", post(email::reset_password))
        .route("/v1/login", post(auth::login))
        .route("/v1/logout", post(auth::logout))
        .route("/v1/me", get(auth::me))
        .route("/v1/me/password", put(auth::change_password))
        .route("/v1/messages", post(messages::send))
        .route("/v1/sync", post(messages::sync))
        .route("/v1/events", get(events::events))
        .route("/v1/conversations", get(messages::conversations))
        .route("/v1/conversations/{id}/messages", get(messages::history))
        .route("/v1/conversations/{id}/read", post(messages::mark_read))
        .route("/v1/conversations/{id}/typing", post(messages::typing))
        .route(
            "/v1/conversations/{id}/messages/{seq}/recall",
            post(messages::recall),
        )
        .route("/v1/users", get(social::search))
        .route(
            "/v1/friends/requests",
            post(social::request).get(social::requests),
        )
        .route("/v1/friends/requests/{id}", post(social::answer))
        .route("/v1/friends", get(social::friends))
        .route("/v1/friends/{user_id}", delete(social::remove))
        .route("/v1/friends/{user_id}/remark", put(social::remark))
        .route(
            "/v1/blocks/{user_id}",
            put(social::block).delete(social::unblock),
        )
        .route("/v1/groups", post(groups::create).get(groups::mine))
        .route(
            "/v1/groups/{id}",
            get(groups::get)
                .patch(groups::update)
                .delete(groups::dismiss),
        )
        .route("/v1/rooms", get(groups::rooms))
        .route(
            "/v1/groups/{id}/members",
            get(groups::members).post(groups::invite),
        )
        .route("/v1/groups/{id}/members/{user_id}", delete(groups::kick))
        .route("/v1/groups/{id}/members/{user_id}/role", put(groups::role))
        .route("/v1/groups/{id}/members/{user_id}/mute", put(groups::mute))
        .route("/v1/groups/{id}/owner", post(groups::transfer))
        .route("/v1/groups/{id}/leave", post(groups::leave))
        .route("/v1/groups/{id}/join", post(groups::join))
        .route("/v1/groups/{id}/join-requests", get(groups::join_requests))
        .route(
            "/v1/groups/{id}/join-requests/{user_id}",
            post(groups::decide),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        // JSON answers are gzipped for clients that accept it.
        .layer(tower_http::compression::CompressionLayer::new())
        // Files stream as they are: never buffered, never re-encoded (a
        // range is of the file's own bytes).
        .merge(
            Router::new()
                .route("/v1/files", post(files::create).options(files::options))
                .route("/v1/files/", post(files::create).options(files::options))
                .route(
                    "/v1/files/{id}",
                    get(files::download)
                        .head(files::offset)
                        .patch(files::append)
                        .delete(files::delete),
                ),
        )
        .with_state(state)
}

/// Every error's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The wire protocol's error code, e.g. `RATE_LIMITED` (PROTOCOL.md §7).
    pub code: &'static str,
    /// For a person; never parse it.
    pub message: String,
    /// When to retry, for `RATE_LIMITED` and `UNAVAILABLE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// For `MUTED`: when the sender's mute ends, ms since the epoch; 0
    /// while the whole group is muted (until an admin lifts it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muted_until_ms: Option<i64>,
}

/// An error answer: a service error, or one the HTTP edge found itself.
#[derive(Debug)]
pub struct ApiError {
    code: &'static str,
    message: String,
    retry_after_ms: Option<u64>,
    muted_until_ms: Option<i64>,
}

impl ApiError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after_ms: None,
            muted_until_ms: None,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError {
            code: e.code(),
            message: e.to_string(),
            retry_after_ms: e.retry_after().map(|d| d.as_millis() as u64),
            muted_until_ms: e.muted_until_ms(),
        }
    }
}

/// The HTTP status of each wire error code: the one place they meet.
pub fn status(code: &str) -> StatusCode {
    match code {
        "MALFORMED" | "INVALID_ARGUMENT" | "WEAK_PASSWORD" => StatusCode::BAD_REQUEST,
        "NOT_AUTHENTICATED" | "BAD_CREDENTIALS" | "TOKEN_INVALID" | "TOKEN_EXPIRED" => {
            StatusCode::UNAUTHORIZED
        }
        "ACCOUNT_DISABLED" | "FORBIDDEN" | "MUTED" => StatusCode::FORBIDDEN,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "USERNAME_TAKEN" | "TOO_MANY_SESSIONS" | "GROUP_FULL" => StatusCode::CONFLICT,
        "MESSAGE_TOO_LARGE" | "FRAME_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
        "UNSUPPORTED_MEDIA_TYPE" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
        "UNAVAILABLE" | "SERVER_FULL" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status(self.code);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(code = self.code, message = %self.message, "HTTP request failed");
        }
        let retry = self.retry_after_ms;
        let mut r = (
            status,
            axum::Json(ErrorBody {
                code: self.code,
                message: self.message,
                retry_after_ms: retry,
                muted_until_ms: self.muted_until_ms,
            }),
        )
            .into_response();
        if let Some(ms) = retry {
            // Whole seconds, rounded up, as RFC 9110 wants them.
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        match e {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                "UNSUPPORTED_MEDIA_TYPE",
                "the body must be JSON (content-type: application/json)",
            ),
            JsonRejection::BytesRejection(_) => ApiError::new(
                "FRAME_TOO_LARGE",
                format!("the body is over {MAX_BODY} bytes"),
            ),
            e => ApiError::new("MALFORMED", e.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new("INVALID_ARGUMENT", e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::new("INVALID_ARGUMENT", e.body_text())
    }
}

/// A JSON body whose rejection is an [`ApiError`].
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(v))
    }
}

/// Query parameters whose rejection is an [`ApiError`].
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(v))
    }
}

/// Path parameters whose rejection is an [`ApiError`].
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(v) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(v))
    }
}

/// The session a request's bearer token names.
pub struct Authed(pub SessionInfo);

impl FromRequestParts<RestState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &RestState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::new(
                    "NOT_AUTHENTICATED",
                    "send the token a login returned as `Authorization: Bearer <token>`",
                )
            })?;
        Ok(Authed(state.service.bearer(token).await?))
    }
}

/// The address a request came from (the listener puts it in every
/// request); the loopback address when a test calls the router directly.
pub struct Peer(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
        ))
    }
}

/// An answer with no body.
pub(crate) fn done() -> StatusCode {
    StatusCode::NO_CONTENT
}
