//! What the MariaDB/MySQL backend is made of: connecting (`connect.rs`),
//! the schema (`schema.rs`), the shared dialect rendered for it
//! (`dialect.rs`), and its errors (`faults.rs`).

pub(crate) mod connect;
pub(crate) mod dialect;
pub(crate) mod faults;
pub(crate) mod schema;
