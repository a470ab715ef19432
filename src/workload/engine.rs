//! What a store must offer to be driven by the workloads: one trait, implemented for snapkv
//! here and for each peer in the benchmark suite, so that every store runs the same code.

/// How one operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect (a read found its record; a write committed).
    Done,
    /// A read found no record.
    NotFound,
    /// The transaction lost a conflict and installed nothing; the driver retries it.
    Conflict,
}

/// A consistent read view held across operations (a snapshot or read-only transaction).
pub trait ReadView {
    /// Reads `key` in this view.
    fn read(&self, key: &[u8]) -> Outcome;
}

/// A transactional key-value store under test. Each method is one transaction, done the way a
/// careful user of that store would do it: its fastest path that keeps the store's guarantees.
pub trait Engine: Sync {
    /// A read view; dropping it ends it.
    type View<'a>: ReadView
    where
        Self: 'a;

    /// A short name for tables and plots, e.g. `snapkv-si`.
    fn name(&self) -> String;

    /// Opens a read view at the current state.
    fn view(&self) -> Self::View<'_>;

    /// Reads one record (a read-only transaction of one read).
    fn read(&self, key: &[u8]) -> Outcome;

    /// Writes a record that did not exist.
    fn insert(&self, key: &[u8], value: &[u8]) -> Outcome;

    /// Overwrites a record without reading it.
    fn update(&self, key: &[u8], value: &[u8]) -> Outcome;

    /// Reads up to `len` records in key order starting at `start`; `Done` if it read any.
    fn scan(&self, start: &[u8], len: usize) -> Outcome;

    /// Reads `key` and writes `value` to it in one transaction that must not lose an update.
    fn read_modify_write(&self, key: &[u8], value: &[u8]) -> Outcome;

    /// Reads every key in one read-only transaction; `Done` if all were found.
    fn read_many(&self, keys: &[&[u8]]) -> Outcome;

    /// Writes `value` to every key in one transaction.
    fn write_many(&self, keys: &[&[u8]], value: &[u8]) -> Outcome;
}
