//! snapkv as a workload [`Engine`].

use std::ops::ControlFlow;

use crate::workload::engine::{Engine, Outcome, ReadView};
use crate::{Db, Error, Isolation, Snapshot};

/// snapkv driven at one isolation level.
///
/// Reads use [`Db::get_with`] (or [`Snapshot::get_with`] in a view) and scans
/// [`Snapshot::scan_with_limit`] on a fresh snapshot: read-only work needs no transaction and never
/// conflicts, and like the peers' borrowed reads these lend the value instead of copying it; inserts and updates are auto-commit [`Db::put`]s (blind
/// writes); read-modify-writes and multi-key writes are [`Transaction`](crate::Transaction)s at
/// the engine's isolation level.
#[derive(Clone, Debug)]
pub struct SnapkvEngine {
    db: Db,
    isolation: Isolation,
}

impl SnapkvEngine {
    /// Drives `db` with transactions at `isolation`.
    pub fn new(db: Db, isolation: Isolation) -> Self {
        Self { db, isolation }
    }

    /// The database under test.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

fn outcome<T>(r: Result<T, Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Done,
        Err(e) if e.is_retryable() => Outcome::Conflict,
        // The workload only produces valid keys and values: anything else is a bug in the
        // store or the driver, and a benchmark must not quietly count it.
        Err(e) => panic!("snapkv failed a workload operation: {e}"),
    }
}

fn found<T>(r: Result<Option<T>, Error>) -> Outcome {
    match r {
        Ok(Some(_)) => Outcome::Done,
        Ok(None) => Outcome::NotFound,
        Err(e) => panic!("snapkv failed a read: {e}"),
    }
}

impl ReadView for Snapshot {
    fn read(&self, key: &[u8]) -> Outcome {
        found(self.get_with(key, |_| ()))
    }
}

impl Engine for SnapkvEngine {
    type View<'a> = Snapshot;

    fn name(&self) -> String {
        match self.isolation {
            Isolation::Serializable => "snapkv-ser".into(),
            _ => "snapkv-si".into(),
        }
    }

    fn view(&self) -> Snapshot {
        self.db.snapshot()
    }

    fn read(&self, key: &[u8]) -> Outcome {
        found(self.db.get_with(key, |_| ()))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Outcome {
        outcome(self.db.put(key, value))
    }

    fn update(&self, key: &[u8], value: &[u8]) -> Outcome {
        outcome(self.db.put(key, value))
    }

    fn scan(&self, start: &[u8], len: usize) -> Outcome {
        if len == 0 {
            return Outcome::NotFound;
        }
        // The lending scan with a limit: like the peers' borrowed iterators and callbacks, no
        // copy per record (and like surrealmx's `scan_with`, told the count).
        let n = self
            .db
            .snapshot()
            .scan_with_limit(start.., len, |_, _| ControlFlow::Continue(()));
        if n > 0 {
            Outcome::Done
        } else {
            Outcome::NotFound
        }
    }

    fn read_modify_write(&self, key: &[u8], value: &[u8]) -> Outcome {
        let mut txn = self.db.begin_with(self.isolation);
        let step = txn.get_with(key, |_| ()).and_then(|_| txn.put(key, value));
        outcome(step.and_then(|()| txn.commit()))
    }

    fn read_many(&self, keys: &[&[u8]]) -> Outcome {
        let snap = self.db.snapshot();
        let mut all = Outcome::Done;
        for k in keys {
            if found(snap.get_with(k, |_| ())) == Outcome::NotFound {
                all = Outcome::NotFound;
            }
        }
        all
    }

    fn write_many(&self, keys: &[&[u8]], value: &[u8]) -> Outcome {
        let mut txn = self.db.begin_with(self.isolation);
        for k in keys {
            if let Err(e) = txn.put(k, value) {
                return outcome::<()>(Err(e));
            }
        }
        outcome(txn.commit())
    }
}
