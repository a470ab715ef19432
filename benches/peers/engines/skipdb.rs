//! skipdb 0.2: `OptimisticDb` (optimistic concurrency, hashed conflict keys) and
//! `SerializableDb::serializable_write` (SSI).

use std::hash::RandomState;

use skipdb::optimistic::OptimisticDb;
use skipdb::serializable::SerializableDb;
use skipdb::ReadTransaction;
use snapkv::workload::{Engine, Outcome, ReadView};

/// Workload keys are always 16 bytes; a fixed array is skipdb's cheapest key (and
/// `SerializableDb` requires `CheapClone` keys, which `Vec` is not).
type Key = [u8; 16];
type Val = Vec<u8>;

fn k(key: &[u8]) -> Key {
    key.try_into().expect("workload keys are 16 bytes")
}

fn found(b: bool) -> Outcome {
    if b {
        Outcome::Done
    } else {
        Outcome::NotFound
    }
}

fn committed<E>(r: Result<(), E>) -> Outcome {
    match r {
        Ok(()) => Outcome::Done,
        Err(_) => Outcome::Conflict,
    }
}

/// skipdb's `OptimisticDb`.
pub struct SkipdbOptimistic(pub OptimisticDb<Key, Val>);

impl SkipdbOptimistic {
    pub fn new() -> Self {
        Self(OptimisticDb::new())
    }
}

type OptimisticRead =
    ReadTransaction<Key, Val, OptimisticDb<Key, Val>, txn::HashCm<Key, RandomState>>;
type SerializableRead = ReadTransaction<Key, Val, SerializableDb<Key, Val>, txn::BTreeCm<Key>>;

/// A skipdb read transaction as a read view.
pub struct SkipView<R>(R);

/// The two skipdb databases share their read and write transaction APIs but not a trait, so
/// one macro implements both adapters: `$write` is how the engine opens a write transaction.
macro_rules! skipdb_engine {
    ($engine:ty, $read:ty, $name:literal, $write:ident) => {
        impl ReadView for SkipView<$read> {
            fn read(&self, key: &[u8]) -> Outcome {
                found(self.0.get(&k(key)).is_some())
            }
        }

        impl Engine for $engine {
            type View<'a> = SkipView<$read>;

            fn name(&self) -> String {
                $name.into()
            }
            fn view(&self) -> Self::View<'_> {
                SkipView(self.0.read())
            }
            fn read(&self, key: &[u8]) -> Outcome {
                found(self.0.read().get(&k(key)).is_some())
            }
            fn insert(&self, key: &[u8], value: &[u8]) -> Outcome {
                self.update(key, value)
            }
            fn update(&self, key: &[u8], value: &[u8]) -> Outcome {
                self.write_many(&[key], value)
            }
            fn scan(&self, start: &[u8], len: usize) -> Outcome {
                let r = self.0.read();
                found(r.range(k(start)..).take(len).count() > 0)
            }
            fn read_modify_write(&self, key: &[u8], value: &[u8]) -> Outcome {
                let mut w = self.0.$write();
                let key = k(key);
                if w.get(&key).is_err() || w.insert(key, value.to_vec()).is_err() {
                    return Outcome::Conflict;
                }
                committed(w.commit())
            }
            fn read_many(&self, keys: &[&[u8]]) -> Outcome {
                let r = self.0.read();
                found(keys.iter().all(|key| r.get(&k(key)).is_some()))
            }
            fn write_many(&self, keys: &[&[u8]], value: &[u8]) -> Outcome {
                let mut w = self.0.$write();
                for key in keys {
                    if w.insert(k(key), value.to_vec()).is_err() {
                        return Outcome::Conflict;
                    }
                }
                committed(w.commit())
            }
        }
    };
}

skipdb_engine!(SkipdbOptimistic, OptimisticRead, "skipdb-opt", write);

/// skipdb's `SerializableDb`, writing with `serializable_write` (SSI).
pub struct SkipdbSerializable(pub SerializableDb<Key, Val>);

impl SkipdbSerializable {
    pub fn new() -> Self {
        Self(SerializableDb::new())
    }
}

skipdb_engine!(
    SkipdbSerializable,
    SerializableRead,
    "skipdb-ser",
    serializable_write
);
