//! What a run measured: throughput, conflicts, latency percentiles; as a table row or CSV.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::workload::driver::{new_histogram, RunConfig, Tally};
use crate::workload::mix::{Mix, Op};

/// The result of one [`run`](crate::workload::run).
#[derive(Clone)]
pub struct Report {
    /// The engine's name.
    pub engine: String,
    /// The workload.
    pub mix: Mix,
    /// Client threads.
    pub threads: usize,
    /// Records in the key space at the end of the run.
    pub records: u64,
    /// Wall-clock time of the measured phase.
    pub elapsed: Duration,
    ops: [u64; 5],
    conflicts: [u64; 5],
    not_found: [u64; 5],
    latency: Option<[Histogram<u64>; 5]>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("engine", &self.engine)
            .field("mix", &self.mix)
            .field("threads", &self.threads)
            .field("records", &self.records)
            .field("elapsed", &self.elapsed)
            .field("ops", &self.ops)
            .field("conflicts", &self.conflicts)
            .field("not_found", &self.not_found)
            .finish_non_exhaustive()
    }
}

impl Report {
    pub(crate) fn merge(
        engine: String,
        cfg: &RunConfig,
        records: u64,
        tallies: Vec<Tally>,
        elapsed: Duration,
    ) -> Self {
        let mut r = Report {
            engine,
            mix: cfg.mix,
            threads: cfg.threads.max(1),
            records,
            elapsed,
            ops: [0; 5],
            conflicts: [0; 5],
            not_found: [0; 5],
            latency: cfg
                .latency
                .then(|| std::array::from_fn(|_| new_histogram())),
        };
        for t in tallies {
            for i in 0..5 {
                r.ops[i] += t.ops[i];
                r.conflicts[i] += t.conflicts[i];
                r.not_found[i] += t.not_found[i];
            }
            if let (Some(mine), Some(theirs)) = (&mut r.latency, &t.latency) {
                for (m, t) in mine.iter_mut().zip(theirs) {
                    // Same bounds on both sides, so adding cannot fail; saturate if it did.
                    if m.add(t).is_err() {
                        m.saturating_record(m.high());
                    }
                }
            }
        }
        r
    }

    /// Completed operations.
    pub fn ops(&self) -> u64 {
        self.ops.iter().sum()
    }

    /// Completed operations of one kind.
    pub fn ops_of(&self, op: Op) -> u64 {
        self.ops[op.index()]
    }

    /// Conflicts (aborted attempts that were retried).
    pub fn conflicts(&self) -> u64 {
        self.conflicts.iter().sum()
    }

    /// Reads and scans that found nothing (0 unless records go missing: requests only pick
    /// records whose insert has finished).
    pub fn not_found(&self) -> u64 {
        self.not_found.iter().sum()
    }

    /// Operations per second.
    pub fn throughput(&self) -> f64 {
        self.ops() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Aborted attempts per attempt, in `[0, 1]`.
    pub fn abort_rate(&self) -> f64 {
        let attempts = self.ops() + self.conflicts();
        if attempts == 0 {
            0.0
        } else {
            self.conflicts() as f64 / attempts as f64
        }
    }

    /// The latency quantile `q` (e.g. 0.99) of one operation kind, or of all operations when
    /// `op` is `None`; `None` if latencies were not recorded or nothing ran.
    pub fn latency_quantile(&self, op: Option<Op>, q: f64) -> Option<Duration> {
        let hists = self.latency.as_ref()?;
        let ns = match op {
            Some(op) => {
                let h = &hists[op.index()];
                (!h.is_empty()).then(|| h.value_at_quantile(q))?
            }
            None => {
                let mut all = new_histogram();
                for h in hists {
                    all.add(h).ok()?;
                }
                (!all.is_empty()).then(|| all.value_at_quantile(q))?
            }
        };
        Some(Duration::from_nanos(ns))
    }

    /// The CSV header matching [`csv_row`](Self::csv_row).
    pub const CSV_HEADER: &'static str =
        "engine,workload,threads,records,ops,seconds,ops_per_sec,p50_ns,p99_ns,abort_rate,not_found";

    /// This report as one CSV line (no newline).
    pub fn csv_row(&self) -> String {
        let ns = |q| {
            self.latency_quantile(None, q)
                .map_or(String::new(), |d| d.as_nanos().to_string())
        };
        format!(
            "{},{},{},{},{},{:.3},{:.0},{},{},{:.6},{}",
            self.engine,
            self.mix,
            self.threads,
            self.records,
            self.ops(),
            self.elapsed.as_secs_f64(),
            self.throughput(),
            ns(0.5),
            ns(0.99),
            self.abort_rate(),
            self.not_found(),
        )
    }
}

/// Formats a duration compactly: `850ns`, `12.3µs`, `4.1ms`.
pub fn short_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", ns as f64 / 1e3)
    } else {
        format!("{:.1}ms", ns as f64 / 1e6)
    }
}
