//! What every layer of a natter process shares: one clock that tests can
//! pause, panic capture that keeps the process up, rate limiters keyed by
//! user or address, the overload stage the node is in, /proc samples, and
//! TLS (certificates, reload, the handshake) that every listener shares, and
//! the error a configuration section's `validate` names a bad key with.
//!
//! It knows nothing of SQL or the wire format.
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod limits;
pub mod load;
pub mod panics;
pub mod procstat;
pub mod tls;
