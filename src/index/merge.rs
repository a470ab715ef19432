//! Walking the index: the run and the deltas merged into one ordered, double-ended sequence of
//! key groups.

use std::ops::ControlFlow;

use crossbeam_epoch::Guard;

use super::delta::{Delta, DeltaIter};
use super::fences::bisect;
use super::order;
use super::run::RunEntry;
use super::run::{Run, RunSlice};
use crate::key::KeyRangeRef;
use crate::raw::{Chain, CopiedHead, CurrentMask, HeadsSlice, Lent};
use crate::sync::StrongArc;

/// A double-ended iterator with one look-ahead slot at each end.
pub(crate) struct Ends<I: DoubleEndedIterator> {
    iter: I,
    pub(crate) front: Option<I::Item>,
    pub(crate) back: Option<I::Item>,
}

impl<I: DoubleEndedIterator> Ends<I> {
    pub(crate) fn new(iter: I) -> Self {
        Self {
            iter,
            front: None,
            back: None,
        }
    }

    pub(crate) fn peek_front(&mut self) -> Option<&I::Item> {
        if self.front.is_none() {
            // When the middle is exhausted, the back look-ahead is the next item from the front.
            self.front = self.iter.next().or_else(|| self.back.take());
        }
        self.front.as_ref()
    }

    pub(crate) fn peek_back(&mut self) -> Option<&I::Item> {
        if self.back.is_none() {
            self.back = self.iter.next_back().or_else(|| self.front.take());
        }
        self.back.as_ref()
    }

    /// The next item from the front (`forward`) or the back, left in place.
    fn peek_from(&mut self, forward: bool) -> Option<I::Item>
    where
        I::Item: Copy,
    {
        if forward {
            self.peek_front().copied()
        } else {
            self.peek_back().copied()
        }
    }

    /// Consumes the item [`peek_from`](Self::peek_from) returned.
    fn consume(&mut self, forward: bool) {
        if forward {
            self.front = None;
        } else {
            self.back = None;
        }
    }
}

/// Every chain the index holds for one key, in the order run, sealed delta, active delta.
///
/// A key has one chain in the key map, but the index may still hold the chains the key had
/// before (removed from the map while empty, so they hold no version: a run is immutable and
/// keeps them until the next rebuild). At most one chain of a group therefore holds versions,
/// and a reader takes the first that has one visible.
#[derive(Clone, Copy)]
pub(crate) struct Group<'g> {
    key: &'g [u8],
    chains: [Option<&'g StrongArc<Chain>>; 3],
    /// The run's copy of the head, for a key whose only chain is in the run.
    copied: Option<CopiedHead<'g>>,
}

/// What the caller of a walk reads of each key: decides which chains the walk prefetches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Reads {
    /// The visible head ([`Group::lend_at`]): the run's head copies serve most keys, so only
    /// the chains of keys changed since the run was built are prefetched (a snapshot older
    /// than the copies reads chains that were not prefetched).
    Heads,
    /// Versions from the chains (validation, maintenance): every chain
    /// is prefetched.
    Versions,
}

impl<'g> Group<'g> {
    /// The key.
    pub(crate) fn key(&self) -> &'g [u8] {
        self.key
    }

    /// The key's chains (usually one).
    pub(crate) fn chains(&self) -> impl Iterator<Item = &'g StrongArc<Chain>> {
        self.chains.into_iter().flatten()
    }

    /// The key's version visible at `at`, lent (see [`Chain::lend_at`]): from the run's copy
    /// of the head when it is that version, else from the chains. `at` must have been taken
    /// before the walk loaded the index state (a snapshot's timestamp always is; see
    /// `raw::run_heads`).
    pub(crate) fn lend_at(&self, at: u64, guard: &'g Guard) -> Option<Lent<'g>> {
        if let Some(v) = self.copied.and_then(|c| c.lend(at, guard)) {
            return Some(v);
        }
        self.chains().find_map(|c| c.lend_at(at, guard))
    }
}

/// One source's entry as `(key, chain)`.
pub(super) type Item<'g> = (&'g [u8], &'g StrongArc<Chain>);

/// How many entries ahead of the one it returns a run walk prefetches the chain of.
///
/// A scan's cost per key is one cache miss on the key's chain (the run itself is read
/// sequentially, which the hardware prefetcher covers). The chains' addresses are all in the
/// run, so their misses need not wait for each other, but the processor's out-of-order window
/// holds only a couple of keys' worth of work: prefetching this far ahead keeps about this
/// many misses in flight instead.
const PREFETCH_AHEAD: usize = 16;

/// A run's entries in a range, in order from either end, prefetching the chains ahead of the
/// walk in its direction (those the caller will read, see [`Reads`]).
pub(crate) struct RunIter<'g> {
    rest: &'g [RunEntry],
    /// The copies of `rest`'s heads (or none).
    heads: HeadsSlice<'g>,
    reads: Reads,
    /// Whether the walk started the misses of its first entries' chains (see
    /// [`RunIter::prime`]): a stepping walk does so on its first step from the front; a
    /// lending walk ([`RunIter::lend_front`]) prefetches stretch by stretch instead.
    primed: bool,
    /// How many entries at the front of `rest` a lending walk already started loading (with
    /// their copies): a stretch shorter than the look-ahead leaves part of it for the next.
    fetched: usize,
    /// How many more keys a lending walk's caller expects to take ([`Entries::expecting`]),
    /// or `usize::MAX`, unknown. A hint: a stretch and its look-ahead stop there rather than
    /// load entries, copies and chains the caller will not reach.
    want: usize,
}

/// Walks a slice of a run.
pub(super) fn run_iter(slice: RunSlice<'_>, reads: Reads) -> RunIter<'_> {
    RunIter {
        rest: slice.entries,
        heads: slice.heads,
        reads,
        primed: false,
        fetched: 0,
        want: usize::MAX,
    }
}

/// How many entries ahead of the one it returns a forward run walk prefetches the entry and
/// its head copy: the walk reads them [`PREFETCH_AHEAD`] entries ahead (to decide on the
/// chain's prefetch), and a refill compares a key [`CLEAR_WINDOW`] ahead. The run is read in
/// order, but a scan's walk is too short and too slow for the hardware's stream prefetcher.
const RUN_AHEAD: usize = CLEAR_WINDOW;

impl<'g> RunIter<'g> {
    /// The first chains of a short scan: starts their misses together (and the loads of the
    /// entries and copies the first steps prefetch from).
    fn prime(&mut self) {
        self.primed = true;
        for i in 0..PREFETCH_AHEAD {
            self.prefetch(i);
        }
        for i in PREFETCH_AHEAD..RUN_AHEAD {
            self.prefetch_entry(i);
        }
    }

    /// Prefetches the chain of `rest[i]` if the caller will read it (not when it will read
    /// the entry's current copy instead).
    #[inline]
    fn prefetch(&self, i: usize) {
        let Some((_, chain)) = self.rest.get(i) else {
            return;
        };
        let copied =
            self.reads == Reads::Heads && self.heads.get(i).is_some_and(|c| c.is_current());
        if !copied {
            chain.prefetch();
        }
    }

    /// Starts loading `rest[i]` and its copy.
    #[inline]
    fn prefetch_entry(&self, i: usize) {
        if let Some(entry) = self.rest.get(i) {
            crate::raw::prefetch_line(std::ptr::from_ref(entry).cast());
            self.heads.prefetch(i);
        }
    }

    /// The next entry from the front, with its copied head.
    #[inline]
    fn next_copied(&mut self) -> Option<(Item<'g>, Option<CopiedHead<'g>>)> {
        if !self.primed {
            self.prime();
        }
        let (first, rest) = self.rest.split_first()?;
        let copied = self.heads.get(0);
        self.prefetch(PREFETCH_AHEAD);
        self.prefetch_entry(RUN_AHEAD);
        self.fetched = self.fetched.saturating_sub(1);
        self.rest = rest;
        self.heads = self.heads.skip(1);
        Some(((&first.0[..], &first.1), copied))
    }

    /// Lends the first `n` entries (`0 < n <= CLEAR_WINDOW`, at most those left) in order:
    /// calls `f` with each key and its version visible at `at`, until `f` breaks, and leaves
    /// the walk after the last entry lent.
    ///
    /// A lending scan's cost is mostly this loop, so it works a stretch at a time: one pass
    /// over the stretch's copies finds those no committer marked changed (a bit each, in a
    /// register), starts the misses on the other entries' chains and the loads of the next
    /// stretch's entries and copies; a second pass lends, from the copy or, when there is no
    /// usable copy, the chain. `at` must have been taken before the walk loaded the index
    /// state (see [`CurrentMask::lend`]).
    #[inline]
    fn lend_front<F>(&mut self, n: usize, at: u64, guard: &'g Guard, f: &mut F) -> ControlFlow<()>
    where
        F: FnMut(&'g [u8], Option<Lent<'g>>) -> ControlFlow<()>,
    {
        // A hard check: the mask holds a bit per entry of the stretch, and a wider stretch would
        // lend some entries on another entry's bit (once per stretch, so nearly free).
        assert!(0 < n && n <= CLEAR_WINDOW.min(self.rest.len()));
        let (entries, heads) = (&self.rest[..n], self.heads);
        // Read under `guard`, after the walk loaded the index state (`Index::range`).
        let current = if self.reads == Reads::Heads {
            heads.current_mask(n)
        } else {
            CurrentMask::none()
        };
        let mut stale = !current.bits() & (u32::MAX >> (u32::BITS as usize - n));
        while stale != 0 {
            entries[stale.trailing_zeros() as usize].1.prefetch();
            stale &= stale - 1;
        }
        let ahead = n.max(self.fetched)..(n + RUN_AHEAD).min(self.rest.len()).min(self.want);
        if !ahead.is_empty() {
            self.fetched = ahead.end;
            crate::raw::prefetch_lines(&self.rest[ahead.clone()]);
            heads.prefetch_range(ahead);
        }
        for (i, (key, chain)) in entries.iter().enumerate() {
            let lent = match current.lend(i, at, guard) {
                Some(v) => Some(v),
                None => chain.lend_at(at, guard),
            };
            if f(key, lent).is_break() {
                self.skip_front(i + 1);
                return ControlFlow::Break(());
            }
        }
        self.skip_front(n);
        ControlFlow::Continue(())
    }

    /// Leaves out the first `n` entries.
    #[inline]
    fn skip_front(&mut self, n: usize) {
        self.fetched = self.fetched.saturating_sub(n);
        self.rest = &self.rest[n..];
        self.heads = self.heads.skip(n);
    }

    /// The next entry from the back, with its copied head.
    #[inline]
    fn next_back_copied(&mut self) -> Option<(Item<'g>, Option<CopiedHead<'g>>)> {
        let (last, rest) = self.rest.split_last()?;
        let copied = self.heads.get(rest.len());
        if let Some(i) = rest.len().checked_sub(PREFETCH_AHEAD) {
            self.prefetch(i);
        }
        self.rest = rest;
        self.heads = self.heads.take(rest.len());
        Some(((&last.0[..], &last.1), copied))
    }
}

impl<'g> Iterator for RunIter<'g> {
    type Item = Item<'g>;

    #[inline]
    fn next(&mut self) -> Option<Item<'g>> {
        self.next_copied().map(|(item, _)| item)
    }
}

impl<'g> DoubleEndedIterator for RunIter<'g> {
    #[inline]
    fn next_back(&mut self) -> Option<Item<'g>> {
        self.next_back_copied().map(|(item, _)| item)
    }
}

/// How a lending walk ([`Entries::lend_forward`]) ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Lending<'g> {
    /// The caller's function broke.
    Broken,
    /// The range holds no more keys.
    Exhausted,
    /// The walk examined as many keys as it was allowed; this one is the next, not examined.
    Paused(&'g [u8]),
}

/// The index's keys in a range, in order from either end, as [`Group`]s: a merge of the
/// run's slice with the deltas' ranges. Valid while the guard `'g` is pinned.
pub(crate) struct Entries<'g, 'r> {
    run: RunIter<'g>,
    /// How many of the run's remaining entries at the front (`[0]`) and at the back (`[1]`)
    /// are known to come before every remaining delta key in that direction: they are
    /// returned without comparing keys. Recomputed by [`clear_ahead`] from the walk's position
    /// when it reaches zero; it can only stay valid, since the deltas' walks only lose keys.
    clear: [usize; 2],
    deltas: [Option<Ends<DeltaIter<'g, 'r>>>; 2],
    /// The deltas' walks borrow the range's bounds (not under loom, whose delta is an array).
    _bounds: std::marker::PhantomData<KeyRangeRef<'r>>,
}

impl<'g, 'r> Entries<'g, 'r> {
    pub(super) fn new(
        run: &'g Run,
        deltas: [Option<&'g Delta>; 2],
        range: KeyRangeRef<'r>,
        reads: Reads,
        guard: &'g Guard,
    ) -> Self {
        let seek = |delta: Option<&'g Delta>| delta.map(|d| Ends::new(d.range(range, guard)));
        // Fields in this order: creating a delta's walk starts loading where its seek begins,
        // which then overlaps the run's seek. Built in place (not with `array::map`, nor
        // aside and moved in): the deltas' walks make this a few hundred bytes to copy.
        let mut walk = Self {
            deltas: [seek(deltas[0]), seek(deltas[1])],
            run: run_iter(run.slice(range), reads),
            clear: [0; 2],
            _bounds: std::marker::PhantomData,
        };
        // Leave out a delta with no key in the range (the common case): the walk then skips
        // the merge. (Not on `len() == 0`: crossbeam documents its count as approximate.)
        for slot in &mut walk.deltas {
            if slot.as_mut().is_some_and(|w| w.peek_front().is_none()) {
                *slot = None;
            }
        }
        walk
    }

    /// Makes `clear` for the front (`forward`) or the back count the run entries that come
    /// before every remaining delta key (at most a window's worth), when it is zero. Returns
    /// the group of the next key instead when that is a delta's (then `clear` stays zero).
    fn refill(&mut self, forward: bool) -> Option<Group<'g>> {
        let end = usize::from(!forward);
        if self.clear[end].min(self.run.rest.len()) > 0 {
            return None;
        }
        let [d0, d1] = &mut self.deltas;
        let a = d0.as_mut().and_then(|e| e.peek_from(forward));
        let b = d1.as_mut().and_then(|e| e.peek_from(forward));
        let next = match (a, b) {
            (Some((x, _)), Some((y, _))) => Some(if forward { x.min(y) } else { x.max(y) }),
            (Some((k, _)), None) | (None, Some((k, _))) => Some(k),
            (None, None) => None,
        };
        let clear = match next {
            // The deltas hold nothing more in the range (from either end: a walk that is
            // empty at one end is empty at the other): the rest is a plain run walk.
            None => {
                self.deltas = [None, None];
                self.run.rest.len()
            }
            Some(next) => {
                let rest = self.run.rest;
                let n = rest.len();
                let clear = if forward {
                    clear_ahead(n, |i| order::lt(&rest[i].0, next))
                } else {
                    clear_ahead(n, |i| order::lt(next, &rest[n - 1 - i].0))
                };
                if clear == 0 {
                    // The next key is a delta's (possibly the run's too): merge it.
                    return Some(self.take_group(next, a, b, forward));
                }
                if clear < CLEAR_WINDOW {
                    // The delta key follows this stretch: start the miss on its chain (a
                    // delta's chains are never prefetched by the run walk).
                    for (_, chain) in [a, b].into_iter().flatten() {
                        chain.prefetch();
                    }
                }
                clear
            }
        };
        self.clear[end] = clear;
        None
    }

    /// Takes the next group from the front (`forward`) or the back.
    fn step(&mut self, forward: bool) -> Option<Group<'g>> {
        if let Some(group) = self.refill(forward) {
            return Some(group);
        }
        let end = usize::from(!forward);
        // Zero only when the run is exhausted too.
        self.clear[end] = self.clear[end].min(self.run.rest.len()).checked_sub(1)?;
        let ((key, chain), copied) = if forward {
            self.run.next_copied()
        } else {
            self.run.next_back_copied()
        }?;
        Some(Group {
            key,
            chains: [Some(chain), None, None],
            copied,
        })
    }

    /// Tells a lending walk ([`lend_forward`](Self::lend_forward)) that its caller expects to
    /// take about `keys` keys (at least one): its stretches and their look-ahead stop there.
    /// A hint only; past it, the walk goes on as without one.
    pub(crate) fn expecting(mut self, keys: usize) -> Self {
        self.run.want = keys.max(1);
        self
    }

    /// Walks forward, calling `f` with each key and its version visible at `at`, lent (as
    /// [`Group::lend_at`] gives it), until `f` breaks or `limit` keys were examined. The same
    /// sequence as `self.map(|g| (g.key(), g.lend_at(at, guard)))`, but a stretch of run
    /// entries known to come before the next delta key is walked in one tight loop
    /// ([`RunIter::lend_front`]), without building a [`Group`] per key: a lending scan's cost
    /// is mostly that loop. The limit is exact, but checked once per stretch, not per key; the
    /// walk is consumed, since pausing takes the next key if it is a delta's. `at` must
    /// have been taken before the walk loaded the index state (see [`Group::lend_at`]).
    pub(crate) fn lend_forward(
        mut self,
        at: u64,
        guard: &'g Guard,
        limit: usize,
        mut f: impl FnMut(&'g [u8], Option<Lent<'g>>) -> ControlFlow<()>,
    ) -> Lending<'g> {
        // The stretches prefetch for themselves.
        self.run.primed = true;
        let mut left = limit;
        // Once the caller took more keys than it expected to (some keys had no visible
        // value, or the hint was wrong), the walk goes on without a hint.
        let took = |want: &mut usize, n: usize| {
            *want = match want.checked_sub(n) {
                Some(w) if w > 0 => w,
                _ => usize::MAX,
            }
        };
        loop {
            if left == 0 {
                return match self.next_key_front() {
                    Some(key) => Lending::Paused(key),
                    None => Lending::Exhausted,
                };
            }
            // Finds the next stretch, or merges a delta's key.
            if let Some(g) = self.refill(true) {
                left -= 1;
                took(&mut self.run.want, 1);
                if f(g.key(), g.lend_at(at, guard)).is_break() {
                    return Lending::Broken;
                }
                continue;
            }
            let n = self.clear[0]
                .min(self.run.rest.len())
                .min(CLEAR_WINDOW)
                .min(left)
                .min(self.run.want);
            if n == 0 {
                return Lending::Exhausted;
            }
            let before = self.run.rest.len();
            let flow = self.run.lend_front(n, at, guard, &mut f);
            let lent = before - self.run.rest.len();
            self.clear[0] -= lent;
            left -= lent;
            took(&mut self.run.want, lent);
            if flow.is_break() {
                return Lending::Broken;
            }
        }
    }

    /// The key the next step from the front would return (taking it if it is a delta's:
    /// for a walk about to end).
    fn next_key_front(&mut self) -> Option<&'g [u8]> {
        if let Some(g) = self.refill(true) {
            return Some(g.key());
        }
        // `refill` left the run's next entry clear, unless the run is exhausted.
        self.run.rest.first().map(|(k, _)| &k[..])
    }

    /// Takes `key`'s entries from the run and from the deltas whose next items (`a`, `b`)
    /// hold it, as one group.
    fn take_group(
        &mut self,
        key: &'g [u8],
        a: Option<Item<'g>>,
        b: Option<Item<'g>>,
        forward: bool,
    ) -> Group<'g> {
        let mut chains = [None; 3];
        let r = if forward {
            self.run.rest.first()
        } else {
            self.run.rest.last()
        };
        if r.is_some_and(|(k, _)| &k[..] == key) {
            let taken = if forward {
                self.run.next()
            } else {
                self.run.next_back()
            };
            chains[0] = taken.map(|(_, c)| c);
        }
        for (i, (slot, item)) in self.deltas.iter_mut().zip([a, b]).enumerate() {
            if let (Some(e), Some((_, c))) = (slot.as_mut(), item.filter(|(k, _)| *k == key)) {
                chains[i + 1] = Some(c);
                e.consume(forward);
            }
        }
        // Compact: the first chain slot is always filled.
        let mut filled = chains.into_iter().flatten();
        let chains = [filled.next(), filled.next(), filled.next()];
        // Several chains (a re-created key) or a delta's: read the chains.
        Group {
            key,
            chains,
            copied: None,
        }
    }
}

/// How many run entries ahead of a walk [`clear_ahead`] looks for the next delta key.
///
/// A walk is usually short (a scan stops after a few dozen keys) while the next delta key may
/// be thousands of entries away: finding it exactly would take a cache miss per probe, on
/// entries the walk never reaches. Looking only this far reads entries of the run's
/// contiguous array the walk reads soon anyway (twice its chain prefetch distance: a typical
/// scan's length), at the cost of one key comparison per this many entries while no delta
/// key is near.
const CLEAR_WINDOW: usize = 2 * PREFETCH_AHEAD;
// A lending stretch (at most this long) keeps a bit per entry in a `u32`.
const _: () = assert!(CLEAR_WINDOW <= u32::BITS as usize);

/// How many of the indices `0..n` satisfy `holds` (true for a prefix of them), counting no
/// further than [`CLEAR_WINDOW`]: a lower bound on the run entries that come before the next
/// delta key, which is all [`Entries::clear`] needs.
///
/// One comparison when the whole window holds (the delta key is further: the common case).
/// Otherwise the walk meets the delta key within the window, and does so twice: first from
/// anywhere in the window (a binary search), then right in front of it, after the stretch
/// before it (one more comparison, at `0`).
fn clear_ahead(n: usize, holds: impl Fn(usize) -> bool) -> usize {
    let window = n.min(CLEAR_WINDOW);
    if window == 0 || holds(window - 1) {
        return window;
    }
    if !holds(0) {
        return 0;
    }
    // `holds(0)` and `!holds(window - 1)`.
    bisect(1, window - 1, holds)
}

impl<'g> Iterator for Entries<'g, '_> {
    type Item = Group<'g>;

    fn next(&mut self) -> Option<Group<'g>> {
        self.step(true)
    }
}

impl<'g> DoubleEndedIterator for Entries<'g, '_> {
    fn next_back(&mut self) -> Option<Group<'g>> {
        self.step(false)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    #[cfg_attr(miri, ignore = "safe code only, outside raw: nothing for Miri to find")]
    fn clear_ahead_counts_the_prefix_within_the_window() {
        for n in 0..70 {
            for cut in 0..=n {
                let want = cut.min(super::CLEAR_WINDOW);
                assert_eq!(super::clear_ahead(n, |i| i < cut), want, "n {n} cut {cut}");
            }
        }
    }
}
