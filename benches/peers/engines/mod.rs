//! The peers and baselines, each behind the same `snapkv::workload::Engine` trait.

mod cow_imbl;
mod locked_btree;
mod skipdb;
mod surrealmx;

pub use self::cow_imbl::CowImbl;
pub use self::locked_btree::LockedBTree;
pub use self::skipdb::{SkipdbOptimistic, SkipdbSerializable};
pub use self::surrealmx::Surrealmx;
