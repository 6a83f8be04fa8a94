//! A natter client over TCP or WebSocket, plain or TLS: request/response by request id,
//! server pushes on a channel, heartbeats in the background, an [`Inbox`]
//! that keeps per-conversation cursors, dedupes by seq and fills gaps from
//! the server, and a [`Session`] that reconnects (through a cluster's
//! assignment) and resumes, with a [`Feed`] of its messages across
//! connections.
// Unsafe code only in `sys`, one socket option the standard library lacks.
#![deny(unsafe_code)]

mod assign;
mod conn;
mod inbox;
mod session;
mod social;
mod sys;
mod tls;

pub use assign::{assign, assign_with, resolve, resolve_with, Assigned};
pub use conn::{text_message, Client, ClientError, ConnectOptions};
pub use inbox::{Accepted, Inbox};
pub use natter_proto::{pb, ServerFrame};
pub use rustls::ClientConfig as TlsConfig;
pub use session::{Delivery, Feed, Outage, Route, Session, SessionOptions};
pub use tls::client_config;
