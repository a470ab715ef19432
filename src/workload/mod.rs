//! The benchmark workloads: YCSB core workloads A–F and the drivers that run them, shared by
//! the criterion suite (`benches/`) and the `snapkv bench` command so that the figures in the
//! docs and on the command line come from the same code. Enabled by the `workload` feature.
//!
//! - Records: 16-byte keys ([`key`]: `user` + 12 hex digits of a bijective scramble of the
//!   record number, so that key order is not insertion order), 100-byte values.
//! - Request distributions: YCSB's *scrambled* zipfian with constant 0.99 for A, B, C, E, F and
//!   YCSB's skewed-latest for D ([`zipf`]).
//! - A store is driven through the [`Engine`] trait; [`SnapkvEngine`] implements it for snapkv.
//!
//! ```
//! use snapkv::workload::{load, run, Mix, RunConfig, SnapkvEngine, Stop};
//! use snapkv::{Db, Isolation};
//!
//! let engine = SnapkvEngine::new(Db::new(), Isolation::Snapshot);
//! let keys = load(&engine, 10_000, 2, &|_| {});
//! let cfg = RunConfig { mix: Mix::A, threads: 2, stop: Stop::Ops(20_000), latency: true, seed: 1 };
//! let report = run(&engine, &keys, &cfg, &|_| {});
//! assert_eq!(report.ops(), 20_000);
//! println!("{:.0} ops/s, p99 {:?}", report.throughput(), report.latency_quantile(None, 0.99));
//! ```

mod driver;
mod engine;
mod keys;
mod mix;
mod report;
mod snapkv_engine;
pub mod zipf;

pub use driver::{load, run, Keyspace, RunConfig, Stop, MAX_SCAN_LEN};
pub use engine::{Engine, Outcome, ReadView};
pub use keys::{key, value, KEY_LEN, VALUE_LEN};
pub use mix::{Distribution, Mix, Op, UnknownMix};
pub use report::{short_duration, Report};
pub use snapkv_engine::SnapkvEngine;
