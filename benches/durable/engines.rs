//! The durable peers as workload [`Engine`]s: fjall (an LSM tree with a journal; its optimistic
//! transactional keyspace, `ssi_tx`) and redb (a copy-on-write B-tree; one write transaction at
//! a time). Every write transaction is made durable the way each store documents: fjall's
//! journal synced at commit (`PersistMode::SyncAll`) when `sync` is set, redb's default
//! `Durability::Immediate` (redb has no "write but do not sync" mode short of `None`, which is
//! not crash-safe across commits, so it runs synced only).

use std::ops::Bound;
use std::path::Path;

use fjall::{Config, PartitionCreateOptions, PersistMode, TxKeyspace, TxPartitionHandle};
use redb::{ReadableTable, TableDefinition};
use snapkv::workload::{Engine, Outcome, ReadView};

/// fjall's optimistic transactional keyspace over one partition.
pub struct Fjall {
    keyspace: TxKeyspace,
    items: TxPartitionHandle,
    /// Sync the journal at each commit (else it is written to the OS at commit, as snapkv's
    /// `SyncPolicy::Never`).
    sync: bool,
}

impl Fjall {
    pub fn open(dir: &Path, sync: bool) -> Self {
        let keyspace = Config::new(dir).open_transactional().expect("open fjall");
        let items = keyspace
            .open_partition("items", PartitionCreateOptions::default())
            .expect("open fjall partition");
        Self {
            keyspace,
            items,
            sync,
        }
    }

    fn durability(&self) -> Option<PersistMode> {
        Some(if self.sync {
            PersistMode::SyncAll
        } else {
            PersistMode::Buffer
        })
    }

    fn write(&self, f: impl FnOnce(&mut fjall::WriteTransaction) -> Outcome) -> Outcome {
        let mut tx = self
            .keyspace
            .write_tx()
            .expect("fjall write_tx")
            .durability(self.durability());
        let o = f(&mut tx);
        if o != Outcome::Done {
            return o;
        }
        match tx.commit().expect("fjall commit") {
            Ok(()) => Outcome::Done,
            Err(_conflict) => Outcome::Conflict,
        }
    }
}

fn found<T>(r: Option<T>) -> Outcome {
    if r.is_some() {
        Outcome::Done
    } else {
        Outcome::NotFound
    }
}

/// A fjall read transaction as a read view.
pub struct FjallView<'a>(fjall::ReadTransaction, &'a TxPartitionHandle);

impl ReadView for FjallView<'_> {
    fn read(&self, key: &[u8]) -> Outcome {
        found(self.0.get(self.1, key).expect("fjall read"))
    }
}

impl Engine for Fjall {
    type View<'a> = FjallView<'a>;

    fn name(&self) -> String {
        if self.sync {
            "fjall-sync"
        } else {
            "fjall-nosync"
        }
        .into()
    }

    fn view(&self) -> FjallView<'_> {
        FjallView(self.keyspace.read_tx(), &self.items)
    }

    fn read(&self, key: &[u8]) -> Outcome {
        found(self.items.get(key).expect("fjall read"))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.update(key, value)
    }

    fn update(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.write(|tx| {
            tx.insert(&self.items, key, value);
            Outcome::Done
        })
    }

    fn scan(&self, start: &[u8], len: usize) -> Outcome {
        let tx = self.keyspace.read_tx();
        let range = (Bound::Included(start), Bound::Unbounded);
        let mut n = 0;
        for kv in tx.range::<&[u8], _>(&self.items, range).take(len) {
            kv.expect("fjall scan");
            n += 1;
        }
        if n > 0 {
            Outcome::Done
        } else {
            Outcome::NotFound
        }
    }

    fn read_modify_write(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.write(|tx| {
            tx.get(&self.items, key).expect("fjall read");
            tx.insert(&self.items, key, value);
            Outcome::Done
        })
    }

    fn read_many(&self, keys: &[&[u8]]) -> Outcome {
        let tx = self.keyspace.read_tx();
        let mut all = Outcome::Done;
        for k in keys {
            if tx.get(&self.items, k).expect("fjall read").is_none() {
                all = Outcome::NotFound;
            }
        }
        all
    }

    fn write_many(&self, keys: &[&[u8]], value: &[u8]) -> Outcome {
        self.write(|tx| {
            for k in keys {
                tx.insert(&self.items, *k, value);
            }
            Outcome::Done
        })
    }
}

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");

/// redb: one write transaction at a time, each durable at commit.
pub struct Redb {
    db: redb::Database,
}

impl Redb {
    pub fn open(dir: &Path) -> Self {
        let db = redb::Database::create(dir.join("redb")).expect("open redb");
        let tx = db.begin_write().expect("redb begin_write");
        tx.open_table(TABLE).expect("redb table");
        tx.commit().expect("redb commit");
        Self { db }
    }

    fn write(&self, f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>)) -> Outcome {
        let tx = self.db.begin_write().expect("redb begin_write");
        {
            let mut table = tx.open_table(TABLE).expect("redb table");
            f(&mut table);
        }
        tx.commit().expect("redb commit");
        Outcome::Done
    }
}

/// A redb read transaction's table as a read view.
pub struct RedbView(redb::ReadOnlyTable<&'static [u8], &'static [u8]>);

impl ReadView for RedbView {
    fn read(&self, key: &[u8]) -> Outcome {
        found(self.0.get(key).expect("redb read"))
    }
}

impl Engine for Redb {
    type View<'a> = RedbView;

    fn name(&self) -> String {
        "redb".into()
    }

    fn view(&self) -> RedbView {
        let tx = self.db.begin_read().expect("redb begin_read");
        RedbView(tx.open_table(TABLE).expect("redb table"))
    }

    fn read(&self, key: &[u8]) -> Outcome {
        self.view().read(key)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.update(key, value)
    }

    fn update(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.write(|t| {
            t.insert(key, value).expect("redb insert");
        })
    }

    fn scan(&self, start: &[u8], len: usize) -> Outcome {
        let tx = self.db.begin_read().expect("redb begin_read");
        let table = tx.open_table(TABLE).expect("redb table");
        let mut n = 0;
        for kv in table.range(start..).expect("redb range").take(len) {
            kv.expect("redb scan");
            n += 1;
        }
        if n > 0 {
            Outcome::Done
        } else {
            Outcome::NotFound
        }
    }

    fn read_modify_write(&self, key: &[u8], value: &[u8]) -> Outcome {
        self.write(|t| {
            t.get(key).expect("redb read");
            t.insert(key, value).expect("redb insert");
        })
    }

    fn read_many(&self, keys: &[&[u8]]) -> Outcome {
        let view = self.view();
        let mut all = Outcome::Done;
        for k in keys {
            if view.read(k) == Outcome::NotFound {
                all = Outcome::NotFound;
            }
        }
        all
    }

    fn write_many(&self, keys: &[&[u8]], value: &[u8]) -> Outcome {
        self.write(|t| {
            for k in keys {
                t.insert(*k, value).expect("redb insert");
            }
        })
    }
}
