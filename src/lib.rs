//! # snapkv
//!
//! An embedded, in-process MVCC key-value store: consistent snapshots that never block,
//! snapshot-isolation transactions that commit concurrently, ordered scans, and garbage
//! collection of old versions that never stops readers or writers.
//!
//! ## Snapshots
//!
//! Every committed write gets a commit timestamp. A [`Snapshot`] reads at one timestamp and
//! sees, for every key, the newest version committed at or before it, however many commits
//! happen meanwhile. Taking one is O(1). Reads return owned copies of values
//! ([`Snapshot::get`]) or lend them to a closure without copying them ([`Snapshot::get_with`],
//! [`Db::get_with`]). Scans return owned pairs through an iterator ([`Snapshot::range`],
//! [`Snapshot::scan_prefix`]), or lend them to a callback without a copy per pair
//! ([`Snapshot::scan_with`], the fastest way to read many keys; [`Snapshot::scan_with_limit`]
//! for the first `n`).
//!
//! ```
//! use snapkv::Db;
//!
//! let db = Db::new();
//! db.put(b"balance/alice", b"100")?;
//! db.put(b"balance/bob", b"50")?;
//!
//! let snap = db.snapshot();
//! db.put(b"balance/alice", b"70")?;          // later commits...
//! assert_eq!(snap.get(b"balance/alice")?.as_deref(), Some(&b"100"[..])); // ...are invisible
//! assert_eq!(snap.scan_prefix(b"balance/").count(), 2);
//! # Ok::<(), snapkv::Error>(())
//! ```
//!
//! ## Transactions
//!
//! A [`Transaction`] reads from its snapshot plus its own writes, buffers writes, and commits
//! them atomically: all of them become visible at once, under one timestamp, or none does.
//! Under snapshot isolation the first committer wins: if another transaction committed a key
//! this one writes after this one's snapshot, [`Transaction::commit`] fails with
//! [`Error::Conflict`] and installs nothing.
//!
//! ```
//! use snapkv::{Db, Error};
//!
//! let db = Db::new();
//! db.put(b"x", b"0")?;
//! let mut t1 = db.begin();
//! let mut t2 = db.begin();
//! t1.put(b"x", b"1")?;
//! t2.put(b"x", b"2")?;
//! t1.commit()?;
//! match t2.commit() {
//!     Err(e @ Error::Conflict { .. }) => assert!(e.is_retryable()),
//!     other => panic!("expected a conflict, got {other:?}"),
//! }
//! assert_eq!(db.get(b"x")?.as_deref(), Some(&b"1"[..]));
//! # Ok::<(), snapkv::Error>(())
//! ```
//!
//! ## Retrying
//!
//! Conflicts are normal under contention. [`Db::update`] runs a closure in a fresh
//! transaction, commits, and on a conflict runs it again, up to a bounded number of attempts;
//! a call that keeps losing on a hot key waits its turn on it, first come, first served. The
//! closure must be free of outside side effects.
//!
//! ```
//! use snapkv::Db;
//!
//! fn transfer(db: &Db, from: &str, to: &str, amount: i64) -> snapkv::Result<()> {
//!     db.update(|txn| {
//!         let read = |k: &str| -> snapkv::Result<i64> {
//!             Ok(txn.get(k)?.map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap()))
//!         };
//!         let (a, b) = (read(from)?, read(to)?);
//!         txn.put(from, (a - amount).to_string())?;
//!         txn.put(to, (b + amount).to_string())?;
//!         Ok(())
//!     })
//! }
//!
//! let db = Db::new();
//! db.put("alice", "100")?;
//! std::thread::scope(|s| {
//!     for _ in 0..4 {
//!         s.spawn(|| transfer(&db, "alice", "bob", 10).unwrap());
//!     }
//! });
//! assert_eq!(db.get("alice")?.as_deref(), Some(&b"60"[..]));
//! assert_eq!(db.get("bob")?.as_deref(), Some(&b"40"[..]));
//! # Ok::<(), snapkv::Error>(())
//! ```
//!
//! ## What snapshot isolation does not prevent
//!
//! Two transactions that read overlapping data and write *different* keys can both commit
//! (write skew). The design and the guarantees are written down in `docs/design.md` and
//! `docs/isolation.md` in the repository.

// Unsafe code lives in `raw` only (its module documentation gives the memory-safety argument);
// everywhere else it is a compile error, so safe code cannot break what `raw` relies on
// without going through `raw`'s `unsafe fn`s and their `# Safety` contracts.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn, missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]

mod backup;
mod bounds;
mod clock;
mod commit;
mod contention;
mod db;
// Parts of the durable layer serve only tests (the simulated storage, its fault injection).
#[cfg_attr(any(not(test), loom), allow(dead_code))]
mod durable;
mod error;
mod gc;
mod horizon;
mod index;
mod isolation;

mod iter;
mod key;
mod options;
#[allow(unsafe_code)]
mod raw;
mod registry;
mod retry;
mod snapshot;
mod store;
mod sync;
mod txn;
#[cfg(feature = "workload")]
#[cfg_attr(docsrs, doc(cfg(feature = "workload")))]
pub mod workload;
mod write_set;

/// Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing` by cargo-fuzz).
#[cfg(fuzzing)]
#[doc(hidden)]
pub use durable::fuzz as __fuzz;

/// The loom models' own two `unsafe` blocks read and write loom's `UnsafeCell`, which is how
/// a model asks loom to check that the protocol orders a plain write before a read.
#[cfg(all(test, loom))]
#[allow(unsafe_code)]
mod loom_models;

/// The README's example is compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use backup::BackupReport;
pub use bounds::KeyBounds;
pub use bytes::Bytes;
pub use db::{Db, Stats, Ts};
pub use durable::inspect::{inspect, DirInfo};
pub use durable::policy::SyncPolicy;
pub use durable::report::{CheckpointReport, DroppedTail, LogStats, RecoveryReport, RepairReport};
pub use error::{ConflictKind, Error, Result};
pub use gc::GcReport;
pub use isolation::Isolation;
pub use iter::{Iter, TxnIter};
pub use options::{
    DbBuilder, DEFAULT_CHECKPOINT_LOG_BYTES, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_KEY_LEN,
    DEFAULT_MAX_VALUE_LEN, DEFAULT_MAX_WRITE_SET_BYTES,
};
pub use snapshot::Snapshot;
pub use txn::Transaction;
