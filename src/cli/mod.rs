//! `natter client ...`: the command-line client (and `admin.rs`, `natter
//! admin ...` for operators). `client` parses the
//! commands and runs them, `auth` signs them in, `social` carries the
//! friend and group commands, `show` words messages and events for a person. What more than one of them needs lives here,
//! so none of them imports another's internals.

pub mod admin;
pub mod auth;
pub mod client;
pub mod files;
pub mod show;
pub mod social;

/// A client message id unique enough for one user: time plus process id.
pub(crate) fn new_client_msg_id() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ms = natter_runtime::clock::now_ms();
    format!("cli-{ms:x}-{:x}-{n:x}", std::process::id())
}
