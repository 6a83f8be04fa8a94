//! The PostgreSQL engine, apart from the SQL of each topic: the node's
//! writer task that group-commits appends and runs system-event changes in
//! commit order (`writer.rs`), the circuit breaker in front of the database
//! (`breaker.rs`), which failures are faults (`faults.rs`), the schema and
//! its migrations (`schema.rs`) and the message table's partitions
//! (`partitions.rs`).

pub(crate) mod breaker;
pub(crate) mod dialect;
pub(crate) mod faults;
pub(crate) mod partitions;
pub(crate) mod schema;
pub(crate) mod writer;
