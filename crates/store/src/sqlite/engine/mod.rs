//! The SQLite engine: how writes become durable and reach the database,
//! apart from the SQL of each topic. One writer thread (`round.rs`) runs
//! queued jobs (`writer.rs`) in rounds; a round's new messages and cursor
//! raises go to the message log (`log.rs`) with one write and one fdatasync
//! before any answer, wait in memory (`pending.rs`) where reads see them,
//! and are copied into the database behind the answers by the copy thread
//! (`copier.rs`), whose commits the checkpoint thread (`checkpoint.rs`)
//! moves into the database file. Seqs are taken ahead of the database
//! (`seqs.rs`) and the writer's cache (`cache.rs`) keeps what every send
//! needs. A job writes through a [`tx::Tx`].

pub(crate) mod cache;
pub(crate) mod checkpoint;
pub(crate) mod copier;
pub(crate) mod faults;
pub(crate) mod log;
pub(crate) mod os;
pub(crate) mod pending;
pub(crate) mod round;
pub(crate) mod seqs;
pub(crate) mod tx;
pub(crate) mod writer;
