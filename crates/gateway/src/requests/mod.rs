//! Request handlers, one file per topic. Each parses its payload, makes one
//! service call and maps the result to the answer; none sees the connection,
//! so another edge can call the same service methods the same way.

pub(crate) mod auth;
pub(crate) mod conversations;
pub(crate) mod friends;
pub(crate) mod groups;
pub(crate) mod messages;

use natter_proto::{pb, ServerFrame};
use natter_service::ServiceError;

/// A handler's answer: the frame, or the error the client is told.
pub(crate) type Reply = Result<ServerFrame, ServiceError>;

/// The answer to a request that only succeeds or fails.
fn done(r: Result<(), ServiceError>) -> Reply {
    r.map(|_| ServerFrame::Done(pb::Done {}))
}

/// Users given as `(id, name)` pairs, as the client sees them.
fn users(list: Vec<(u64, String)>) -> Vec<pb::User> {
    list.into_iter()
        .map(|(user_id, username)| pb::User { user_id, username })
        .collect()
}

/// A page size where 0 asks for everything (sync and history; the service
/// pages within the frame limit).
fn all_if_zero(limit: u32) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        limit as usize
    }
}
