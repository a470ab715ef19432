//! A chain together with its one head mirror: the map entry of a key.
//!
//! A mirror is a second [`HeadCache`] of a chain kept beside the chain's handle, so that a
//! point read whose answer is the head touches the map's bucket and not the chain. It holds
//! value pointers into the chain's head, so it must be rewritten by every install before the
//! superseded head can be pruned and freed. A mirror of another chain, or a mirror left out,
//! would go on describing a head that is then freed: a dangling pointer for its readers.
//! That is why the pairing lives here, where safe code cannot break it: the only way to get a
//! mirror is [`MirroredChain::new`], which creates its chain with it and marks the chain as
//! mirrored, and a [`ChainWriter`](super::ChainWriter) checks, on every write of a head,
//! that it was handed exactly its own chain's entry (or none, for a chain without a mirror).

use super::chain::Chain;
use super::head_cache::HeadCache;
use crate::sync::StrongArc;

/// A key's chain and the mirror of its head cache (see the module docs).
///
/// The map moves entries only under a shard's write lock (when it grows), and a mirror is
/// read or written only under a read lock of its shard, so nobody holds a reference to one
/// across a move; the chain itself stays put (behind its `Arc`).
pub(crate) struct MirroredChain {
    mirror: HeadCache,
    chain: StrongArc<Chain>,
}

impl MirroredChain {
    /// A new empty chain with its mirror. The chain is marked mirrored: from now on every
    /// write of its head must be handed this entry.
    pub(crate) fn new() -> Self {
        Self {
            mirror: HeadCache::new(),
            chain: StrongArc::new(Chain::new_mirrored()),
        }
    }

    /// The chain.
    #[inline]
    pub(crate) fn chain(&self) -> &StrongArc<Chain> {
        &self.chain
    }

    /// The mirror, for readers (reading any head cache is sound; only writing one is
    /// guarded).
    #[inline]
    pub(crate) fn mirror(&self) -> &HeadCache {
        &self.mirror
    }

    /// The mirror, for a writer of `chain`'s head: only if this entry is `chain`'s.
    #[inline]
    pub(super) fn mirror_of(&self, chain: &Chain) -> &HeadCache {
        // One compare on the install path: the entry's line is about to be written anyway.
        assert!(
            std::ptr::eq(&*self.chain, chain),
            "a head mirror handed to the writer of another chain"
        );
        &self.mirror
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The pairing cannot be broken from safe code: these writes would leave a mirror
    //! describing a head that is then freed.

    use super::*;
    use crate::raw::Unlinked;

    #[test]
    #[should_panic(expected = "another chain")]
    fn a_writer_rejects_another_chains_mirror() {
        let (a, b) = (MirroredChain::new(), MirroredChain::new());
        let guard = &crossbeam_epoch::pin();
        a.chain()
            .lock()
            .install_node(1, Unlinked::new(Some(b"v")), Some(&b), guard);
    }

    #[test]
    #[should_panic(expected = "without its mirror")]
    fn a_writer_of_a_mirrored_chain_needs_its_mirror() {
        let a = MirroredChain::new();
        let guard = &crossbeam_epoch::pin();
        let _pending = a
            .chain()
            .lock()
            .link_pending(Unlinked::new(Some(b"v")), None, guard);
    }

    #[test]
    fn a_writer_rewrites_its_own_mirror_and_a_plain_chain_needs_none() {
        let a = MirroredChain::new();
        let guard = &crossbeam_epoch::pin();
        a.chain()
            .lock()
            .install_node(3, Unlinked::new(Some(b"v")), Some(&a), guard);
        let lent = a
            .mirror()
            .get(guard)
            .expect("the mirror describes the head");
        assert_eq!((lent.ts, lent.value), (3, Some(&b"v"[..])));
        let plain = Chain::new();
        plain
            .lock()
            .install_node(4, Unlinked::new(None), None, guard);
        assert_eq!(plain.newest_ts(guard), Some(4));
    }
}
