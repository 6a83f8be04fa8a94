//! A natter client over TCP or WebSocket: request/response by request id,
//! server pushes on a channel, heartbeats in the background, and an
//! [`Inbox`] that keeps per-conversation cursors, dedupes by seq and fills
//! gaps from the server.
#![forbid(unsafe_code)]

mod conn;
mod inbox;
mod social;

pub use conn::{Client, ClientError, ConnectOptions};
pub use inbox::{Accepted, Inbox};
pub use natter_proto::{pb, ServerFrame};
