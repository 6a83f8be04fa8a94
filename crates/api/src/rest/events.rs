//! Live events over HTTP: `GET /v1/events`, a Server-Sent Events stream of
//! the pushes a frame connection of the same session receives, for clients
//! that cannot hold a WebSocket. While it is open the session is attached
//! here like a connection (the [`LiveSessions`] the binary gives, so this
//! crate needs no gateway types); every stream starts with `sync`, so a
//! client that syncs then misses nothing, whatever it missed while away.

use super::groups::JoinRequest;
use super::messages::Message;
use super::social::FriendRequest;
use super::{ApiError, Authed, ErrorBody, RestState};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use natter_service::{Push, ServiceError, SessionInfo};
use serde::Serialize;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A session's pushes, in order; the last is `Push::Disconnect`.
pub type LiveFeed = Pin<Box<dyn Stream<Item = Push> + Send>>;

/// Attaches a session here as a connection is attached, for an event
/// stream; dropping the feed detaches it.
pub trait LiveSessions: Send + Sync + 'static {
    fn open(
        &self,
        session: SessionInfo,
    ) -> Pin<Box<dyn Future<Output = Result<LiveFeed, ServiceError>> + Send + '_>>;
}

/// A comment this often keeps proxies (and the listener's idle timeout)
/// from closing a quiet stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Serialize)]
struct SyncNow {
    /// `connected` (a new stream), `resumed` (a stream opened with
    /// `Last-Event-ID`) or `hint` (pushes may have been lost).
    reason: &'static str,
    /// The `Last-Event-ID` the client sent, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_event_id: Option<String>,
}

#[derive(Serialize)]
struct Cursor {
    conversation_id: u64,
    user_id: u64,
    seq: u64,
}

#[derive(Serialize)]
struct Typing {
    conversation_id: u64,
    user_id: u64,
}

#[derive(Serialize)]
struct Presence {
    user_id: u64,
    online: bool,
}

#[derive(Serialize)]
struct JoinAsked {
    conversation_id: u64,
    #[serde(flatten)]
    request: JoinRequest,
}

#[derive(Serialize)]
struct Disconnect {
    reason: &'static str,
    message: String,
    reconnect_after_ms: u32,
}

/// The session's live events (`text/event-stream`): `sync` first, then
/// `message`, `delivered`, `read`, `typing`, `presence`, `friend_request`,
/// `join_request` and `sync` as they happen, and last `disconnect` with why
/// the stream ends. docs/HTTP.md, "Live events", says what a client does.
#[utoipa::path(get, path = "/v1/events", tag = "messages",
    security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header,
        description = "The last `id` seen (`<conversation_id>.<seq>`); echoed in the first `sync`")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "Server-Sent Events; a comment every 15 s keeps the stream open"),
        (status = 403, description = "ACCOUNT_DISABLED", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the node holds its maximum of connections, or is shutting down", body = ErrorBody),
    ))]
pub async fn events(
    State(s): State<RestState>,
    Authed(me): Authed,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect::<String>());
    // Attached before `sync` is sent: whatever is committed after the
    // client's sync began is pushed on this stream.
    let feed = s.live.open(me).await?;
    let first = SyncNow {
        reason: if last_event_id.is_some() {
            "resumed"
        } else {
            "connected"
        },
        last_event_id,
    };
    let first = futures_util::stream::once(std::future::ready(json("sync", &first)));
    let stream = first.chain(feed.map(event)).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn json<T: Serialize>(name: &str, data: &T) -> Event {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event(name).data(data)
}

fn event(push: Push) -> Event {
    match push {
        Push::Message(m) => {
            json("message", &Message::from(&m)).id(format!("{}.{}", m.conversation_id, m.seq))
        }
        Push::Delivered {
            conversation_id,
            user_id,
            seq,
        } => json(
            "delivered",
            &Cursor {
                conversation_id,
                user_id,
                seq,
            },
        ),
        Push::Read {
            conversation_id,
            user_id,
            seq,
        } => json(
            "read",
            &Cursor {
                conversation_id,
                user_id,
                seq,
            },
        ),
        Push::Typing {
            conversation_id,
            user_id,
        } => json(
            "typing",
            &Typing {
                conversation_id,
                user_id,
            },
        ),
        Push::Presence { user_id, online } => json("presence", &Presence { user_id, online }),
        Push::FriendRequest(r) => json("friend_request", &FriendRequest::from(&r)),
        Push::JoinRequest(r) => json(
            "join_request",
            &JoinAsked {
                conversation_id: r.conversation_id,
                request: JoinRequest::from(&r),
            },
        ),
        Push::Sync => json(
            "sync",
            &SyncNow {
                reason: "hint",
                last_event_id: None,
            },
        ),
        Push::Disconnect {
            reason,
            message,
            reconnect_after_ms,
        } => json(
            "disconnect",
            &Disconnect {
                reason,
                message,
                reconnect_after_ms,
            },
        ),
    }
}
