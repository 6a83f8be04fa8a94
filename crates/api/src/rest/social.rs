//! Friends over HTTP: finding users, friend requests, the friend list,
//! remarks, removing friends, blocking.

use super::{done, ApiError, Authed, ErrorBody, Json, Path, Query, RestState};
use axum::extract::State;
use axum::http::StatusCode;
use natter_service::model::{FriendRequestRecord, RequestStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A user as lists name them.
#[derive(Serialize, ToSchema)]
pub struct UserRef {
    pub user_id: u64,
    pub username: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// 1-32 bytes; names are compared case-insensitively.
    pub prefix: String,
    /// At most this many (0 or absent: 20).
    #[serde(default)]
    pub limit: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Users {
    pub users: Vec<UserRef>,
}

/// Active users whose name starts with `prefix`, by name.
#[utoipa::path(get, path = "/v1/users", tag = "friends",
    security(("bearer" = [])),
    params(SearchQuery),
    responses(
        (status = 200, body = Users),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
    ))]
pub async fn search(
    State(s): State<RestState>,
    Authed(_): Authed,
    Query(q): Query<SearchQuery>,
) -> Result<axum::Json<Users>, ApiError> {
    let found = s.service.search_users(&q.prefix, q.limit).await?;
    Ok(axum::Json(Users {
        users: found
            .into_iter()
            .map(|(user_id, username)| UserRef { user_id, username })
            .collect(),
    }))
}

/// A friend request's state, named as the wire protocol names it.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestState {
    Pending,
    Accepted,
    Rejected,
}

#[derive(Serialize, ToSchema)]
pub struct FriendRequest {
    pub id: u64,
    pub from_user_id: u64,
    pub from_username: String,
    pub to_user_id: u64,
    pub to_username: String,
    pub message: String,
    pub status: RequestState,
    /// The answer's text, once answered.
    pub reply: String,
    pub created_at_ms: i64,
    /// 0 while pending.
    pub decided_at_ms: i64,
}

impl From<&FriendRequestRecord> for FriendRequest {
    fn from(r: &FriendRequestRecord) -> Self {
        FriendRequest {
            id: r.id,
            from_user_id: r.from,
            from_username: r.from_name.clone(),
            to_user_id: r.to,
            to_username: r.to_name.clone(),
            message: r.message.clone(),
            status: match r.status {
                RequestStatus::Pending => RequestState::Pending,
                RequestStatus::Accepted => RequestState::Accepted,
                RequestStatus::Rejected => RequestState::Rejected,
            },
            reply: r.reply.clone(),
            created_at_ms: r.created_at_ms,
            decided_at_ms: r.decided_at_ms,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFriendRequest {
    pub to_user_id: u64,
    /// At most 256 bytes.
    #[serde(default)]
    pub message: String,
}

/// Asks a user to be friends (a request they already sent you is accepted
/// instead; a pending one of yours is renewed).
#[utoipa::path(post, path = "/v1/friends/requests", tag = "friends",
    security(("bearer" = [])),
    request_body = NewFriendRequest,
    responses(
        (status = 200, body = FriendRequest),
        (status = 400, description = "INVALID_ARGUMENT (yourself, already friends) or MALFORMED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn request(
    State(s): State<RestState>,
    Authed(me): Authed,
    Json(r): Json<NewFriendRequest>,
) -> Result<axum::Json<FriendRequest>, ApiError> {
    let record = s
        .service
        .send_friend_request(&me, r.to_user_id, &r.message)
        .await?;
    Ok(axum::Json(FriendRequest::from(&record)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub accept: bool,
    /// At most 256 bytes.
    #[serde(default)]
    pub reply: String,
}

/// Accepts or rejects a friend request made to you.
#[utoipa::path(post, path = "/v1/friends/requests/{id}", tag = "friends",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The request")),
    request_body = Answer,
    responses(
        (status = 200, body = FriendRequest),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: not yours to answer, or answered", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn answer(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<u64>,
    Json(r): Json<Answer>,
) -> Result<axum::Json<FriendRequest>, ApiError> {
    let record = s
        .service
        .respond_friend_request(&me, id, r.accept, &r.reply)
        .await?;
    Ok(axum::Json(FriendRequest::from(&record)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RequestsQuery {
    /// Requests with a lower id (0 or absent: from the newest).
    #[serde(default)]
    pub before_id: u64,
    /// At most this many (0 or absent: 100; at most 200).
    #[serde(default)]
    pub limit: usize,
}

#[derive(Serialize, ToSchema)]
pub struct FriendRequests {
    /// To you, newest first (not those from users you blocked).
    pub incoming: Vec<FriendRequest>,
    /// From you, newest first.
    pub outgoing: Vec<FriendRequest>,
    pub has_more: bool,
}

/// Friend requests to and from you, newest first.
#[utoipa::path(get, path = "/v1/friends/requests", tag = "friends",
    security(("bearer" = [])),
    params(RequestsQuery),
    responses(
        (status = 200, body = FriendRequests),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
    ))]
pub async fn requests(
    State(s): State<RestState>,
    Authed(me): Authed,
    Query(q): Query<RequestsQuery>,
) -> Result<axum::Json<FriendRequests>, ApiError> {
    let page = s.service.friend_requests(&me, q.before_id, q.limit).await?;
    Ok(axum::Json(FriendRequests {
        incoming: page.incoming.iter().map(FriendRequest::from).collect(),
        outgoing: page.outgoing.iter().map(FriendRequest::from).collect(),
        has_more: page.has_more,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FriendsQuery {
    /// Friends whose username sorts after this (absent: from the first).
    #[serde(default)]
    pub after: String,
    /// At most this many (0 or absent: 200; at most 500).
    #[serde(default)]
    pub limit: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Friend {
    pub user_id: u64,
    pub username: String,
    /// Your note on them.
    pub remark: String,
    pub since_ms: i64,
    /// You blocked them (they stay friends).
    pub blocked: bool,
    pub online: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Friends {
    /// By username.
    pub friends: Vec<Friend>,
    /// The users you blocked, on the first page only.
    pub blocked: Vec<UserRef>,
    pub has_more: bool,
}

/// Your friends by username, with who is online, and whom you blocked.
#[utoipa::path(get, path = "/v1/friends", tag = "friends",
    security(("bearer" = [])),
    params(FriendsQuery),
    responses(
        (status = 200, body = Friends),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
    ))]
pub async fn friends(
    State(s): State<RestState>,
    Authed(me): Authed,
    Query(q): Query<FriendsQuery>,
) -> Result<axum::Json<Friends>, ApiError> {
    let (friends, blocked, has_more) = s.service.friends(&me, &q.after, q.limit).await?;
    Ok(axum::Json(Friends {
        friends: friends
            .into_iter()
            .map(|f| Friend {
                user_id: f.friend.user_id,
                username: f.friend.username,
                remark: f.friend.remark,
                since_ms: f.friend.since_ms,
                blocked: f.friend.blocked,
                online: f.online,
            })
            .collect(),
        blocked: blocked
            .into_iter()
            .map(|(user_id, username)| UserRef { user_id, username })
            .collect(),
        has_more,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Remark {
    /// At most 256 bytes; empty clears it.
    pub remark: String,
}

/// Sets your note on a friend.
#[utoipa::path(put, path = "/v1/friends/{user_id}/remark", tag = "friends",
    security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "The friend")),
    request_body = Remark,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: not a friend", body = ErrorBody),
    ))]
pub async fn remark(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(user): Path<u64>,
    Json(r): Json<Remark>,
) -> Result<StatusCode, ApiError> {
    s.service.set_remark(&me, user, &r.remark).await?;
    Ok(done())
}

/// Ends a friendship, both ways.
#[utoipa::path(delete, path = "/v1/friends/{user_id}", tag = "friends",
    security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "The friend")),
    responses(
        (status = 204, description = "No longer friends"),
        (status = 404, description = "NOT_FOUND: not a friend", body = ErrorBody),
    ))]
pub async fn remove(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(user): Path<u64>,
) -> Result<StatusCode, ApiError> {
    s.service.remove_friend(&me, user).await?;
    Ok(done())
}

/// Blocks a user: they can no longer message you or ask to be friends.
#[utoipa::path(put, path = "/v1/blocks/{user_id}", tag = "friends",
    security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "The user")),
    responses(
        (status = 204, description = "Blocked (also when they already were)"),
        (status = 400, description = "INVALID_ARGUMENT: yourself, or as many blocked as `social.max_blocked` allows", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn block(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(user): Path<u64>,
) -> Result<StatusCode, ApiError> {
    s.service.set_blocked(&me, user, true).await?;
    Ok(done())
}

/// Unblocks a user.
#[utoipa::path(delete, path = "/v1/blocks/{user_id}", tag = "friends",
    security(("bearer" = [])),
    params(("user_id" = u64, Path, description = "The user")),
    responses(
        (status = 204, description = "Not blocked"),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn unblock(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(user): Path<u64>,
) -> Result<StatusCode, ApiError> {
    s.service.set_blocked(&me, user, false).await?;
    Ok(done())
}
