//! The synchronisation facade.
//!
//! Every atomic, lock, `Arc` and spin-wait on a path the loom models exercise is imported from
//! here, never from `std`, `parking_lot` or `crossbeam_utils` directly. Under `cfg(loom)` the
//! names resolve to loom's instrumented types, so the code the models check is the code that
//! runs in production (the pattern of tokio's `loom` module and crossbeam's `primitive`).
//!
//! The two worlds live in two files with one API, chosen here once: `native.rs` (std,
//! `parking_lot`, `crossbeam_utils`) and `model.rs` (loom). Code outside this module needs no
//! `cfg(loom)` to use them; the protocol faults the negative controls inject
//! ([`faults`]) are compiled in every build and are constant `false` outside loom.
//!
//! crossbeam-epoch swaps itself to loom only with `--cfg crossbeam_loom` *and* its `loom`
//! feature (enabled in `Cargo.toml` under `[target.'cfg(loom)'.dependencies]`), so the model
//! runner sets `RUSTFLAGS="--cfg loom --cfg crossbeam_loom"`.

#[cfg_attr(not(loom), path = "native.rs")]
#[cfg_attr(loom, path = "model.rs")]
mod world;

pub(crate) mod faults;

pub(crate) use world::{
    fence, order_seq_cst_accesses_for_loom, Arc, AtomicBool, AtomicPtr, AtomicU32, AtomicU64,
    AtomicUsize, Backoff, FairMutex, FairMutexGuard, Mutex, Ordering, RwLock, StrongArc, WaitQueue,
};
