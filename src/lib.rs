//! The `natter` binary's library half: configuration, server assembly and the
//! command-line client, so tests can start a real server in-process.
// Unsafe code is refused everywhere but in `server::memory`, the one place
// with a measured need for it.
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod server;

pub use config::Config;
pub use server::{run, Listeners};
