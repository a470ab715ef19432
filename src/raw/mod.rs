//! The unsafe core: version nodes, chain links, epoch-deferred frees, and the epoch-protected
//! cell that publishes the scan index's state.
//!
//! Log segments are written through a shared memory map (`mapped_file`), whose `unsafe`
//! calls (the mapping, and starting writeback behind the appends) are here too.
//!
//! Every `unsafe` block of the library lives in this module (the only other two are in the
//! loom models' test code, which accesses loom's `UnsafeCell` so that loom checks the
//! causality the publication protocol promises). Its functions take an epoch
//! [`Guard`](crossbeam_epoch::Guard) wherever they hand out references into a chain, and the
//! rest of the crate sees only the safe facade of [`Chain`] and [`ChainWriter`] (and the
//! `VersionRef` views they hand out):
//! the split crossbeam-skiplist makes between `base.rs` and `map.rs`.
//!
//! A version node is one allocation, its value stored inline behind a header (`version`);
//! freed nodes' memory is reused through a small per-thread pool (`node_pool`).
//! The memory-safety argument in one paragraph: a version node is reachable from a chain's
//! `head` through `next` links. Nodes are only ever *unlinked* by a [`ChainWriter`] (the holder
//! of the chain's write lock) and only freed through the epoch after being unlinked (a
//! [`Retired`] batch becomes one deferred call), so a reader that loaded a pointer while pinned
//! can dereference it until it unpins: it was pinned when the batch was deferred.
//! `Drop for Chain` frees its remaining list through the epoch as well: a `VersionRef`
//! borrows from the reader's guard, not from the chain, so it stays valid while the guard is
//! pinned even if the chain it came from is dropped meanwhile (a point read finds the version
//! under the map's shard lock and lends the value after releasing the lock).
//!
//! Value pointers are also *copied* out of the chains: into each chain's head cache and the
//! map's head mirror ([`HeadCache`], valid because a head is retired only after every cache
//! describing it was rewritten; a chain's one mirror lives beside it in a [`MirroredChain`],
//! which its writer checks it is handed), and into the scan index's runs ([`RunHeads`], valid because
//! a commit marks a key changed in every run a reader could consult before it retires the
//! head it superseded; see `run_heads`).

mod chain;
mod epoch_cell;
mod head_cache;
#[cfg(target_os = "linux")]
mod mapped_file;
mod mirrored_chain;
mod node_pool;
mod pending;
mod retired;
mod run_heads;
mod version;
#[cfg(not(loom))]
mod wait_queue;

#[cfg(all(test, loom))]
pub(crate) use chain::walk_reads;
pub(crate) use chain::{prefetch_line, prefetch_lines, Chain, ChainWriter};
pub(crate) use epoch_cell::EpochCell;
pub(crate) use head_cache::{HeadCache, Lent};
#[cfg(target_os = "linux")]
pub(crate) use mapped_file::{start_writeback, MappedFile};
pub(crate) use mirrored_chain::MirroredChain;
#[cfg(not(loom))] // for the index's builder thread, which loom builds do not have
pub(crate) use node_pool::bypass as bypass_node_pool;
pub(crate) use node_pool::trim as trim_node_pool;
pub(crate) use pending::Pending;
/// Values that count their drops, and waits for the epoch to free them: for tests of code
/// that frees values outside `raw` too.
#[cfg(all(test, not(loom)))]
pub(crate) use retired::tests as test_values;
pub(crate) use retired::Retired;
pub(crate) use run_heads::{Changes, CopiedHead, CurrentMask, HeadCopier, HeadsSlice, RunHeads};
pub(crate) use version::Unlinked;
#[cfg(not(loom))]
pub(crate) use wait_queue::WaitQueue;
#[cfg(all(test, loom))]
pub(crate) use {run_heads::loom_lends, version::loom_watch};
