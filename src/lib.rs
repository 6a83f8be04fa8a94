//! The `natter` binary's library half: configuration, server assembly and the
//! command-line client, so tests can start a real server in-process.
// Unsafe code is refused everywhere but in `memory`, the one place with a
// measured need for it.
#![deny(unsafe_code)]

pub mod cli_auth;
pub mod cli_client;
pub mod cli_social;
pub mod config;
mod descriptors;
pub mod logging;
mod memory;
mod metrics;
pub mod server;

pub use config::Config;
pub use server::{run, Listeners};
