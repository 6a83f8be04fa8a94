//! natter's domain, with no I/O: the types every layer speaks (users,
//! conversations, messages, groups, requests), the rules that decide who may
//! do what and what a change writes and tells whom (`rules`), and the
//! backend-neutral ways a rule says no ([`DomainError`]). Store backends
//! load facts and write what a rule returns; the service and every edge use
//! these types. Nothing here knows SQL, sockets or a runtime.
#![forbid(unsafe_code)]

pub mod admin;
mod email;
mod error;
pub mod model;
pub mod rules;

pub use error::DomainError;
pub use model::*;

pub type Result<T, E = DomainError> = std::result::Result<T, E>;
