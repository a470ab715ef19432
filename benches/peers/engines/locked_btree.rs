//! The global-lock baseline: `parking_lot::RwLock<BTreeMap>`. A "snapshot" is a read guard
//! (version-less: consistent because writers wait for it), so readers and writers exclude
//! each other.

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::{RwLock, RwLockReadGuard};
use snapkv::workload::{Engine, Outcome, ReadView};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
pub struct LockedBTree(RwLock<Map>);

fn found(b: bool) -> Outcome {
    if b {
        Outcome::Done
    } else {
        Outcome::NotFound
    }
}

/// A held read lock.
pub struct Guard<'a>(RwLockReadGuard<'a, Map>);

impl ReadView for Guard<'_> {
    fn read(&self, key: &[u8]) -> Outcome {
        found(self.0.contains_key(key))
    }
}

impl Engine for LockedBTree {
    type View<'a> = Guard<'a>;

    fn name(&self) -> String {
        "rwlock-btree".into()
    }
    fn view(&self) -> Guard<'_> {
        Guard(self.0.read())
    }
    fn read(&self, key: &[u8]) -> Outcome {
        found(self.0.read().get(key).is_some())
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.update(key, value)
    }
    fn update(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.0.write().insert(key.to_vec(), value.to_vec());
        Outcome::Done
    }
    fn scan(&self, start: &[u8], len: usize) -> Outcome {
        let map = self.0.read();
        found(
            map.range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
                .take(len)
                .count()
                > 0,
        )
    }
    fn read_modify_write(&self, key: &[u8], value: &[u8]) -> Outcome {
        let mut map = self.0.write();
        let _old = map.get(key);
        map.insert(key.to_vec(), value.to_vec());
        Outcome::Done
    }
    fn read_many(&self, keys: &[&[u8]]) -> Outcome {
        let map = self.0.read();
        found(keys.iter().all(|k| map.contains_key(*k)))
    }
    fn write_many(&self, keys: &[&[u8]], value: &[u8]) -> Outcome {
        let mut map = self.0.write();
        for k in keys {
            map.insert(k.to_vec(), value.to_vec());
        }
        Outcome::Done
    }
}
