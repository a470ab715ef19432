//! Isolation levels.

/// How much a transaction is protected from concurrent ones.
///
/// | anomaly | `Snapshot` | `Serializable` |
/// |---|---|---|
/// | dirty write / read, lost update, read skew, phantom reads within a transaction | prevented | prevented |
/// | write skew (G2-item), predicate write skew (G2), read-only anomaly | allowed | prevented |
///
/// See `docs/isolation.md` for the full matrix and when to choose which.
///
/// ```
/// use snapkv::{Db, Error, Isolation};
///
/// let db = Db::new();
/// // Two "book the slot if it is free" transactions: under Serializable only one commits.
/// let mut a = db.begin_with(Isolation::Serializable);
/// let mut b = db.begin_with(Isolation::Serializable);
/// assert_eq!(a.scan_prefix(b"slot/").count(), 0);
/// assert_eq!(b.scan_prefix(b"slot/").count(), 0);
/// a.put(b"slot/alice", b"booked")?;
/// b.put(b"slot/bob", b"booked")?;
/// a.commit()?;
/// assert!(matches!(b.commit(), Err(Error::Conflict { .. })));
/// # Ok::<(), snapkv::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isolation {
    /// Snapshot isolation: reads from one snapshot; at commit, first committer wins on the
    /// written keys. Allows write skew. The default.
    #[default]
    Snapshot,
    /// Serializable: snapshot isolation plus commit-time validation of every key read
    /// (present or absent) and every range scanned (the requested bounds, even when the scan
    /// returned nothing). Committed transactions are equivalent to running one at a time in
    /// commit-timestamp order. Read-only transactions never abort.
    Serializable,
}
