//! Durability: the write-ahead log's on-disk formats and the file layer under them.
//!
//! - [`storage`]: the narrow file interface the log uses ([`storage::Storage`]), on the real
//!   file system ([`storage::FileStorage`]) and in memory with power-loss simulation and fault
//!   injection ([`storage::SimStorage`]).
//! - [`file_header`]: the 48-byte header segments and checkpoints start with.
//! - [`frame`]: one checksummed, length-prefixed unit of the log, carrying how far the log was
//!   known synced when it was written.
//! - [`record`]: a commit's payload (its timestamp and writes).
//! - [`segment`]: a log file: a header, then frames; the reader that tells a crash's torn
//!   tail from damage to synced data.
//! - [`log`]: the write-ahead log that committers share: appends into a buffer, group commit
//!   (one leader writes and syncs a batch for every waiter), sync policies ([`policy`]),
//!   poisoning after a failed write or sync, segment rollover.
//! - [`checkpoint`]: a sorted image of the store at one timestamp, installed atomically and
//!   verified whole when read.
//! - [`recovery`]: rebuilding the state a directory holds on open: the newest checkpoint and
//!   the log after it, a torn tail cut off, damage to synced data refused or repaired.
//! - [`engine`]: what the engine sees: the log its commits write through, opening and
//!   closing a directory; [`dir_lock`]: one owner per directory; [`report`]: the public
//!   account of a recovery.
//! - [`image`]: a checkpoint written from a snapshot while writers carry on.
//! - [`inspect`]: reading a directory through recovery's read-only mode, changing nothing.
//!
//! The byte layouts are specified in `docs/durability.md`.

pub(crate) mod checkpoint;
pub(crate) mod checkpointer;
pub(crate) mod dir_lock;
pub(crate) mod engine;
pub(crate) mod file_header;
pub(crate) mod frame;
pub(crate) mod image;
pub mod inspect;
pub(crate) mod log;
pub mod policy;
pub(crate) mod record;
pub(crate) mod recovery;
pub mod report;
pub(crate) mod segment;
pub(crate) mod storage;

#[cfg(any(test, fuzzing))]
pub mod fuzz;
