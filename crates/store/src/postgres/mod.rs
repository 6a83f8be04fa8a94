//! The PostgreSQL backend: the production store, for one node or several on
//! one database. Appends from every session are group-committed by one
//! writer task per node, with seqs taken from the locked conversation rows
//! in the same transaction, so several nodes can append to one
//! conversation; other writes and all reads use a bounded pool.

mod faults;
pub mod reads;
pub mod rows;
pub mod schema;

pub use faults::{is_retryable, pool_error};
