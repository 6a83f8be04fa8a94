//! A natter client over TCP or WebSocket: request/response by request id,
//! server pushes on a channel, heartbeats in the background, and an
//! [`Inbox`] that keeps per-conversation cursors, dedupes by seq and fills
//! gaps from the server.
// Unsafe code only in `sys`, one socket option the standard library lacks.
#![deny(unsafe_code)]

mod assign;
mod conn;
mod inbox;
mod social;
mod sys;

pub use assign::{assign, resolve, Assigned};
pub use conn::{Client, ClientError, ConnectOptions};
pub use inbox::{Accepted, Inbox};
pub use natter_proto::{pb, ServerFrame};
