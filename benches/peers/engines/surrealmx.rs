//! surrealmx 1.1: lock-free MVCC over an adaptive radix tree; SI or SSI per transaction.

use snapkv::workload::{Engine, Outcome, ReadView};
use surrealmx::{Database, Transaction};

/// surrealmx with update transactions at snapshot isolation or serializable snapshot isolation.
pub struct Surrealmx {
    db: Database,
    serializable: bool,
}

impl Surrealmx {
    pub fn new(serializable: bool) -> Self {
        Self {
            db: Database::new(),
            serializable,
        }
    }

    fn write_txn(&self) -> Transaction {
        let tx = self.db.transaction(true);
        if self.serializable {
            tx.with_serializable_snapshot_isolation()
        } else {
            tx.with_snapshot_isolation()
        }
    }
}

/// Keys sort below this, so `start..END` is "from start on" (surrealmx takes `Range`).
const END: [u8; 17] = [0xff; 17];

fn committed<E>(r: Result<(), E>) -> Outcome {
    match r {
        Ok(()) => Outcome::Done,
        Err(_) => Outcome::Conflict,
    }
}

fn found<T, E: std::fmt::Debug>(r: Result<Option<T>, E>) -> Outcome {
    match r {
        Ok(Some(_)) => Outcome::Done,
        Ok(None) => Outcome::NotFound,
        Err(e) => panic!("surrealmx read failed: {e:?}"),
    }
}

/// A surrealmx read-only transaction as a read view.
pub struct SurrealView(Transaction);

impl ReadView for SurrealView {
    fn read(&self, key: &[u8]) -> Outcome {
        found(self.0.get(key))
    }
}

impl Engine for Surrealmx {
    type View<'a> = SurrealView;

    fn name(&self) -> String {
        if self.serializable {
            "surrealmx-ssi".into()
        } else {
            "surrealmx-si".into()
        }
    }
    fn view(&self) -> SurrealView {
        SurrealView(self.db.transaction(false))
    }
    fn read(&self, key: &[u8]) -> Outcome {
        found(self.db.get(key))
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Outcome {
        committed(self.db.set(key, value))
    }
    fn update(&self, key: &[u8], value: &[u8]) -> Outcome {
        committed(self.db.set(key, value))
    }
    fn scan(&self, start: &[u8], len: usize) -> Outcome {
        let mut n = 0;
        let r = self.db.scan_with(start..&END[..], None, Some(len), |_, _| {
            n += 1;
            true
        });
        match r {
            Ok(_) if n > 0 => Outcome::Done,
            Ok(_) => Outcome::NotFound,
            Err(e) => panic!("surrealmx scan failed: {e:?}"),
        }
    }
    fn read_modify_write(&self, key: &[u8], value: &[u8]) -> Outcome {
        let mut tx = self.write_txn();
        if tx.get(key).is_err() || tx.set(key, value).is_err() {
            return Outcome::Conflict;
        }
        committed(tx.commit())
    }
    fn read_many(&self, keys: &[&[u8]]) -> Outcome {
        let tx = self.db.transaction(false);
        let mut all = Outcome::Done;
        for k in keys {
            if found(tx.get(*k)) == Outcome::NotFound {
                all = Outcome::NotFound;
            }
        }
        all
    }
    fn write_many(&self, keys: &[&[u8]], value: &[u8]) -> Outcome {
        let mut tx = self.write_txn();
        for k in keys {
            if tx.set(*k, value).is_err() {
                return Outcome::Conflict;
            }
        }
        committed(tx.commit())
    }
}
