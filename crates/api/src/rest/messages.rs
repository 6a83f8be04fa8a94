//! Messaging over HTTP: send (idempotent by `client_msg_id`), sync,
//! history, the conversation list, read cursors and recall.

use super::social::FriendRequest;
use super::{done, ApiError, Authed, ErrorBody, Json, Path, Query, RestState};
use axum::extract::State;
use axum::http::StatusCode;
use natter_service::model::{
    Before, Body, BodyKind, ConversationKind, ConversationSummary, StoredMessage, Target,
};
use natter_service::{SendInput, ServiceError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

/// A body's kind, named as the wire protocol names it.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    Text,
    /// JSON the clients agree on.
    Custom,
    /// A reference to an uploaded file: JSON with `file_id`, `name`, `size`.
    File,
    /// Written by the server: a membership change or other event, as JSON.
    System,
    /// A recalled message's tombstone; its content is empty.
    Recalled,
}

impl From<BodyKind> for Kind {
    fn from(k: BodyKind) -> Self {
        match k {
            BodyKind::Text => Kind::Text,
            BodyKind::Custom => Kind::Custom,
            BodyKind::File => Kind::File,
            BodyKind::System => Kind::System,
            BodyKind::Recalled => Kind::Recalled,
        }
    }
}

impl From<Kind> for BodyKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Text => BodyKind::Text,
            Kind::Custom => BodyKind::Custom,
            Kind::File => BodyKind::File,
            Kind::System => BodyKind::System,
            Kind::Recalled => BodyKind::Recalled,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    pub kind: Kind,
    pub content: String,
}

#[derive(Serialize, ToSchema)]
pub struct Message {
    pub conversation_id: u64,
    pub seq: u64,
    pub msg_id: u64,
    pub sender_id: u64,
    pub client_msg_id: String,
    pub server_ts_ms: i64,
    pub body: MessageBody,
    pub mention_user_ids: Vec<u64>,
    pub mention_all: bool,
}

impl From<&StoredMessage> for Message {
    fn from(m: &StoredMessage) -> Self {
        Message {
            conversation_id: m.conversation_id,
            seq: m.seq,
            msg_id: m.msg_id,
            sender_id: m.sender_id,
            client_msg_id: m.client_msg_id.clone(),
            server_ts_ms: m.server_ts_ms,
            body: MessageBody {
                kind: m.body.kind.into(),
                content: m.body.content.clone(),
            },
            mention_user_ids: m.mentions.clone(),
            mention_all: m.mention_all,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// 1-64 bytes, the sender's key within the conversation: a repeated id
    /// to the same conversation stores nothing new and answers with the
    /// original message (`duplicate: true`).
    pub client_msg_id: String,
    /// The 1:1 conversation with this user (created on first use); give
    /// this or `conversation_id`.
    #[serde(default)]
    pub to_user_id: Option<u64>,
    /// A conversation the sender belongs to.
    #[serde(default)]
    pub conversation_id: Option<u64>,
    pub body: MessageBody,
    #[serde(default)]
    pub mention_user_ids: Vec<u64>,
    #[serde(default)]
    pub mention_all: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SendAck {
    pub conversation_id: u64,
    pub seq: u64,
    pub msg_id: u64,
    pub server_ts_ms: i64,
    /// The `client_msg_id` was stored before; these are the original's.
    pub duplicate: bool,
}

fn send_input(r: SendRequest) -> Result<SendInput, ServiceError> {
    let target = match (r.to_user_id, r.conversation_id) {
        (Some(u), None) => Target::Peer(u),
        (None, Some(c)) => Target::Conversation(c),
        _ => {
            return Err(ServiceError::InvalidArgument(
                "give exactly one of to_user_id and conversation_id".into(),
            ))
        }
    };
    Ok(SendInput {
        client_msg_id: r.client_msg_id,
        target,
        body: Body {
            kind: r.body.kind.into(),
            content: r.body.content,
        },
        mentions: r.mention_user_ids,
        mention_all: r.mention_all,
    })
}

/// Stores a message; answers once it is durable.
#[utoipa::path(post, path = "/v1/messages", tag = "messages",
    security(("bearer" = [])),
    request_body = SendRequest,
    responses(
        (status = 200, body = SendAck),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN or MUTED", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 413, description = "MESSAGE_TOO_LARGE", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (the same allowance as the frame protocol's)", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: nothing was stored; send again with the same client_msg_id", body = ErrorBody),
    ))]
pub async fn send(
    State(s): State<RestState>,
    Authed(me): Authed,
    Json(r): Json<SendRequest>,
) -> Result<axum::Json<SendAck>, ApiError> {
    // A malformed send costs the allowance a good one does, as on the
    // frame protocol.
    let appended = s.service.queue_send(&me, send_input(r)).await?.await?;
    let m = &appended.message;
    Ok(axum::Json(SendAck {
        conversation_id: m.conversation_id,
        seq: m.seq,
        msg_id: m.msg_id,
        server_ts_ms: m.server_ts_ms,
        duplicate: appended.duplicate,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub conversation_id: u64,
    /// The highest seq the client has of that conversation.
    pub seq: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// What the client has; a conversation not listed starts from 0.
    #[serde(default)]
    pub cursors: Vec<Cursor>,
    /// Messages at most (0 or absent: as many as a page holds,
    /// `service.max_sync_page`).
    #[serde(default)]
    pub limit: usize,
    /// Only conversations with a higher id: the previous page's
    /// `next_after_conversation_id` while it had `has_more`, else 0.
    #[serde(default)]
    pub after_conversation_id: u64,
}

#[derive(Serialize, ToSchema)]
pub struct MemberCursor {
    pub user_id: u64,
    pub delivered_seq: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationState {
    pub conversation_id: u64,
    pub kind: ConversationType,
    pub last_seq: u64,
    /// 1:1 only: both members and their delivered cursors.
    pub members: Vec<MemberCursor>,
    /// The user sees messages after this seq only.
    pub joined_seq: u64,
    /// Non-zero once the user left: nothing after it is theirs.
    pub left_seq: u64,
}

/// A conversation's kind, named as the wire protocol names it.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConversationType {
    Direct,
    Group,
    Room,
}

impl From<ConversationKind> for ConversationType {
    fn from(k: ConversationKind) -> Self {
        match k {
            ConversationKind::Direct => ConversationType::Direct,
            ConversationKind::Group => ConversationType::Group,
            ConversationKind::Room => ConversationType::Room,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SyncPage {
    pub conversations: Vec<ConversationState>,
    /// By conversation id, then seq.
    pub messages: Vec<Message>,
    /// More is waiting: raise the cursors and sync again with
    /// `after_conversation_id` = `next_after_conversation_id`.
    pub has_more: bool,
    /// Every conversation up to this id is complete (0 without
    /// `has_more`).
    pub next_after_conversation_id: u64,
    /// On the last page of a pass: friend requests waiting for an answer.
    pub pending_friend_requests: Vec<FriendRequest>,
}

/// Messages after the client's cursors, conversation by conversation.
#[utoipa::path(post, path = "/v1/sync", tag = "messages",
    security(("bearer" = [])),
    request_body = SyncRequest,
    responses(
        (status = 200, body = SyncPage),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn sync(
    State(s): State<RestState>,
    Authed(me): Authed,
    Json(r): Json<SyncRequest>,
) -> Result<axum::Json<SyncPage>, ApiError> {
    if r.cursors.len() > 10_000 {
        return Err(ApiError::new(
            "INVALID_ARGUMENT",
            "at most 10000 cursors per sync",
        ));
    }
    let cursors: HashMap<u64, u64> = r
        .cursors
        .iter()
        .map(|c| (c.conversation_id, c.seq))
        .collect();
    let page = s
        .service
        .sync(&me, cursors, r.after_conversation_id, most(r.limit))
        .await?;
    Ok(axum::Json(SyncPage {
        conversations: page
            .conversations
            .iter()
            .map(|c| ConversationState {
                conversation_id: c.id,
                kind: c.kind.into(),
                last_seq: c.last_seq,
                members: c
                    .members
                    .iter()
                    .map(|m| MemberCursor {
                        user_id: m.user_id,
                        delivered_seq: m.delivered_seq,
                    })
                    .collect(),
                joined_seq: c.joined_seq,
                left_seq: c.left_seq,
            })
            .collect(),
        messages: page.messages.iter().map(Message::from).collect(),
        has_more: page.has_more,
        next_after_conversation_id: page.resume_after(),
        pending_friend_requests: page
            .pending_friend_requests
            .iter()
            .map(FriendRequest::from)
            .collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Messages below this seq (0 or absent: from the newest).
    #[serde(default)]
    pub before_seq: u64,
    /// At most this many (0 or absent: as many as a page holds,
    /// `service.max_history_page`).
    #[serde(default)]
    pub limit: usize,
}

/// A page size where 0 means "as many as the server allows" (the service
/// clamps it to its maximum).
fn most(limit: usize) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        limit
    }
}

#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    /// Newest first.
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// A page of a conversation's messages, newest first.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "messages",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The conversation"), HistoryQuery),
    responses(
        (status = 200, body = HistoryPage),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: not a member", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn history(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<u64>,
    Query(q): Query<HistoryQuery>,
) -> Result<axum::Json<HistoryPage>, ApiError> {
    let page = s
        .service
        .history(&me, id, q.before_seq, most(q.limit))
        .await?;
    Ok(axum::Json(HistoryPage {
        messages: page.messages.iter().map(Message::from).collect(),
        has_more: page.has_more,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The previous page's last `last_activity_ms` and `conversation_id`:
    /// give both to continue after it.
    #[serde(default)]
    pub before_activity_ms: Option<i64>,
    #[serde(default)]
    pub before_id: Option<u64>,
    /// At most this many (0 or absent: 100; at most 500).
    #[serde(default)]
    pub limit: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationEntry {
    pub conversation_id: u64,
    pub kind: ConversationType,
    /// The group's or room's name, or the other member's username.
    pub title: String,
    /// A 1:1's other member.
    pub peer_user_id: Option<u64>,
    pub last_seq: u64,
    pub read_seq: u64,
    /// Messages from others after the read cursor (at most 9999).
    pub unread: u32,
    /// A mention of the user (or of everyone) after the read cursor.
    pub mentioned: bool,
    /// Its content may be a preview cut short (`preview_truncated`).
    pub last_message: Option<Message>,
    pub preview_truncated: bool,
    pub last_activity_ms: i64,
}

impl From<&ConversationSummary> for ConversationEntry {
    fn from(c: &ConversationSummary) -> Self {
        ConversationEntry {
            conversation_id: c.id,
            kind: c.kind.into(),
            title: c.title.clone(),
            peer_user_id: c.peer,
            last_seq: c.last_seq,
            read_seq: c.read_seq,
            unread: c.unread,
            mentioned: c.mentioned,
            last_message: c.last_message.as_ref().map(Message::from),
            preview_truncated: c.preview_truncated,
            last_activity_ms: c.last_activity_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    /// Most recently active first.
    pub conversations: Vec<ConversationEntry>,
    pub has_more: bool,
}

/// The user's conversations, most recently active first.
#[utoipa::path(get, path = "/v1/conversations", tag = "messages",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, body = ConversationList),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn conversations(
    State(s): State<RestState>,
    Authed(me): Authed,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<ConversationList>, ApiError> {
    let before = match (q.before_activity_ms, q.before_id) {
        (Some(activity_ms), Some(id)) => Some(Before { activity_ms, id }),
        (None, None) => None,
        _ => {
            return Err(ApiError::new(
                "INVALID_ARGUMENT",
                "give both before_activity_ms and before_id, or neither",
            ))
        }
    };
    let (list, has_more) = s.service.conversations(&me, before, q.limit).await?;
    Ok(axum::Json(ConversationList {
        conversations: list.iter().map(ConversationEntry::from).collect(),
        has_more,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// Everything up to this seq is read.
    pub seq: u64,
}

/// Moves the read cursor up (never down); the other members hear of it.
#[utoipa::path(post, path = "/v1/conversations/{id}/read", tag = "messages",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The conversation")),
    request_body = ReadRequest,
    responses(
        (status = 204, description = "Done (also when the cursor was already there)"),
        (status = 403, description = "FORBIDDEN: not a member", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such conversation", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn mark_read(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<u64>,
    Json(r): Json<ReadRequest>,
) -> Result<StatusCode, ApiError> {
    s.service.mark_read(&me, id, r.seq).await?;
    Ok(done())
}

/// Says the user is typing in a conversation: its other members hear a
/// `typing` event. Best effort, like the frame protocol's Typing: past the
/// typing limit, in a very large group or when the node sheds extras it is
/// dropped, and still answered `204`.
#[utoipa::path(post, path = "/v1/conversations/{id}/typing", tag = "messages",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The conversation")),
    responses(
        (status = 204, description = "Heard (or dropped)"),
        (status = 403, description = "FORBIDDEN: not a member", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such conversation", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn typing(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    s.service.typing(&me, id).await?;
    Ok(done())
}

/// Recalls one's own message within the recall window (admins: any
/// message of their group); it becomes a tombstone for everyone.
#[utoipa::path(post, path = "/v1/conversations/{id}/messages/{seq}/recall", tag = "messages",
    security(("bearer" = [])),
    params(
        ("id" = u64, Path, description = "The conversation"),
        ("seq" = u64, Path, description = "The message's seq"),
    ),
    responses(
        (status = 204, description = "Recalled"),
        (status = 403, description = "FORBIDDEN: not yours, past the window, or not a member", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn recall(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path((id, seq)): Path<(u64, u64)>,
) -> Result<StatusCode, ApiError> {
    s.service.recall(&me, id, seq).await?;
    Ok(done())
}
