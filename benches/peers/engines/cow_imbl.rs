//! The copy-on-write baseline: an `imbl::OrdMap` behind an `ArcSwap`. A snapshot is a clone of
//! the root (O(1)); writers serialize on a mutex, path-copy, and publish the new root.

use std::sync::Arc;

use arc_swap::ArcSwap;
use imbl::OrdMap;
use parking_lot::Mutex;
use snapkv::workload::{Engine, Outcome, ReadView};

type Map = OrdMap<Vec<u8>, Vec<u8>>;

pub struct CowImbl {
    root: ArcSwap<Map>,
    writer: Mutex<()>,
}

impl CowImbl {
    pub fn new() -> Self {
        Self {
            root: ArcSwap::from_pointee(OrdMap::new()),
            writer: Mutex::new(()),
        }
    }

    fn write(&self, f: impl FnOnce(&mut Map)) -> Outcome {
        let _w = self.writer.lock();
        let mut next = Map::clone(&self.root.load());
        f(&mut next);
        self.root.store(Arc::new(next));
        Outcome::Done
    }
}

fn found(b: bool) -> Outcome {
    if b {
        Outcome::Done
    } else {
        Outcome::NotFound
    }
}

/// A snapshot: the root at the time it was taken.
pub struct Root(Arc<Map>);

impl ReadView for Root {
    fn read(&self, key: &[u8]) -> Outcome {
        found(self.0.contains_key(key))
    }
}

impl Engine for CowImbl {
    type View<'a> = Root;

    fn name(&self) -> String {
        "cow-imbl".into()
    }
    fn view(&self) -> Root {
        Root(self.root.load_full())
    }
    fn read(&self, key: &[u8]) -> Outcome {
        found(self.root.load().contains_key(key))
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.update(key, value)
    }
    fn update(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.write(|m| {
            m.insert(key.to_vec(), value.to_vec());
        })
    }
    fn scan(&self, start: &[u8], len: usize) -> Outcome {
        let root = self.root.load();
        found(root.range(start.to_vec()..).take(len).count() > 0)
    }
    fn read_modify_write(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.write(|m| {
            let _old = m.get(key);
            m.insert(key.to_vec(), value.to_vec());
        })
    }
    fn read_many(&self, keys: &[&[u8]]) -> Outcome {
        let root = self.root.load();
        found(keys.iter().all(|k| root.contains_key(*k)))
    }
    fn write_many(&self, keys: &[&[u8]], value: &[u8]) -> Outcome {
        self.write(|m| {
            for k in keys {
                m.insert(k.to_vec(), value.to_vec());
            }
        })
    }
}
