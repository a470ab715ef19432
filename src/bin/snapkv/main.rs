//! `snapkv`: the command-line tool. `snapkv bench` runs the YCSB workloads against snapkv (in
//! memory, or durable in a directory with `--path`) and prints a table, writes CSV and renders
//! an SVG plot; `info`, `check` and `backup` work on a database directory.
//!
//! ```text
//! cargo run --release --features cli -- bench                      # A-F, 1 and 2 threads
//! cargo run --release --features cli -- bench -w a,f -t 2 --secs 5 --isolation both
//! cargo run --release --features cli -- bench -w a --path /tmp/kv --sync never
//! cargo run --release --features cli -- info /tmp/kv
//! cargo run --release --features cli -- report   # after cargo bench --features workload --bench peers
//! ```

mod dir;
mod plot;
mod report;

use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use snapkv::workload::{
    self, short_duration, Engine as _, Mix, Op, Report, RunConfig, SnapkvEngine, Stop,
};
use snapkv::{Db, Isolation, SyncPolicy};

#[derive(Parser)]
#[command(
    name = "snapkv",
    version,
    about = "snapkv: an embedded MVCC key-value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run YCSB workloads against snapkv (in memory, or durable with --path) and report
    /// throughput and latency.
    Bench(BenchArgs),
    /// Show what a database directory holds (checkpoint, log, keys, torn tail), changing
    /// nothing on disk. Fails if the database is open.
    Info {
        /// The database directory.
        dir: PathBuf,
    },
    /// Verify every checksum in a database directory (the newest checkpoint, every log
    /// frame), changing nothing. Exits 0 if it is sound (a crash's torn tail, which the next
    /// open drops, is reported but is not damage), 1 naming the file and offset otherwise.
    Check {
        /// The database directory.
        dir: PathBuf,
    },
    /// Write a consistent backup of the database in DIR into DEST (a new or empty
    /// directory), openable as a database of its own.
    Backup {
        /// The database directory.
        dir: PathBuf,
        /// Where the backup goes: must not exist or be empty.
        dest: PathBuf,
    },
    /// Summarize the peer benchmark suite's criterion results (tables, targets, SVG charts).
    Report {
        /// criterion's output directory.
        #[arg(long, default_value = "target/criterion")]
        criterion: PathBuf,
        /// Where to write peers.md and the charts.
        #[arg(long, default_value = "target/snapkv-report")]
        out: PathBuf,
        /// A file of performance targets to check the results against (the project's own:
        /// benches/peers/targets.txt); without it, no targets table.
        #[arg(long)]
        targets: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IsolationArg {
    /// Snapshot isolation (the default level).
    Snapshot,
    /// Serializable.
    Serializable,
    /// Both, one after the other.
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SyncArg {
    /// A commit returns once its log record is fsynced (survives power loss).
    Always,
    /// A background fsync every --sync-interval-ms (survives a process crash; a power
    /// loss may take the commits of the last interval).
    Periodic,
    /// Written to the OS at commit, never fsynced by snapkv (survives a process crash).
    Never,
}

impl SyncArg {
    fn name(self) -> &'static str {
        match self {
            SyncArg::Always => "always",
            SyncArg::Periodic => "periodic",
            SyncArg::Never => "never",
        }
    }
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Workloads to run: comma-separated letters A-F, or "all".
    #[arg(short, long, default_value = "all")]
    workload: String,
    /// Records loaded before each run (16-byte keys, 100-byte values).
    #[arg(short, long, default_value_t = 100_000)]
    records: u64,
    /// Client thread counts to run each workload at, comma-separated.
    #[arg(short, long, default_value = "1,2", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 2.0, conflicts_with = "ops")]
    secs: f64,
    /// Run a fixed number of operations instead of a fixed time.
    #[arg(long)]
    ops: Option<u64>,
    /// Transaction isolation level for read-modify-writes.
    #[arg(short, long, value_enum, default_value_t = IsolationArg::Snapshot)]
    isolation: IsolationArg,
    /// Directory for bench.csv and bench.svg.
    #[arg(short, long, default_value = "target/snapkv-bench")]
    out: PathBuf,
    /// Seed for the request generators.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// No progress bars (for logs).
    #[arg(short, long)]
    quiet: bool,
    /// Run on a durable database in this directory instead of in memory. Each run starts
    /// from an empty database there (the previous run's files are removed); the last run's
    /// database is left, openable. DIR must not exist or be empty, unless --fresh.
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// With --path: first remove the database files (LOCK, *.log, *.ckpt) already in DIR.
    /// Refuses a DIR holding anything else, so it never deletes files it did not write.
    #[arg(long, requires = "path")]
    fresh: bool,
    /// With --path: when the log is fsynced.
    #[arg(long, value_enum, default_value_t = SyncArg::Always, requires = "path")]
    sync: SyncArg,
    /// With --sync periodic: the interval between background fsyncs.
    #[arg(long, default_value_t = 100, value_name = "N", requires = "path")]
    sync_interval_ms: u64,
}

impl BenchArgs {
    fn sync_policy(&self) -> SyncPolicy {
        match self.sync {
            SyncArg::Always => SyncPolicy::Always,
            SyncArg::Periodic => {
                SyncPolicy::Periodic(Duration::from_millis(self.sync_interval_ms.max(1)))
            }
            SyncArg::Never => SyncPolicy::Never,
        }
    }
}

fn parse_mixes(s: &str) -> Result<Vec<Mix>, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Mix::ALL.to_vec());
    }
    let mut mixes: Vec<Mix> = s
        .split(',')
        .map(|m| m.parse::<Mix>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    mixes.sort();
    mixes.dedup();
    Ok(mixes)
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench(&args),
        Command::Report {
            criterion,
            out,
            targets,
        } => report::run(&criterion, &out, targets.as_deref()),
        Command::Info { dir } => dir::info(&dir),
        Command::Check { dir } => dir::check(&dir),
        Command::Backup { dir, dest } => dir::backup(&dir, &dest),
    };
    if let Err(e) = result {
        eprintln!("snapkv: {e}");
        std::process::exit(1);
    }
}

fn bench(args: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.records == 0 {
        return Err("--records must be at least 1".into());
    }
    if !(args.secs.is_finite() && args.secs > 0.0) {
        return Err("--secs must be a positive number".into());
    }
    let mixes = parse_mixes(&args.workload)?;
    if let Some(path) = &args.path {
        dir::prepare_bench_dir(path, args.fresh)?;
    }
    let threads: Vec<usize> = args.threads.iter().map(|&t| t.max(1)).collect();
    let levels: &[Isolation] = match args.isolation {
        IsolationArg::Snapshot => &[Isolation::Snapshot],
        IsolationArg::Serializable => &[Isolation::Serializable],
        IsolationArg::Both => &[Isolation::Snapshot, Isolation::Serializable],
    };
    let stop = match args.ops {
        Some(n) => Stop::Ops(n.max(1)),
        None => Stop::After(Duration::from_secs_f64(args.secs)),
    };
    println!(
        "snapkv bench: YCSB {} | {} records | threads {:?} | {} per run | {} cores",
        mixes
            .iter()
            .map(Mix::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.records,
        threads,
        match stop {
            Stop::Ops(n) => format!("{n} ops"),
            Stop::After(d) => format!("{:.1}s", d.as_secs_f64()),
        },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    if let Some(path) = &args.path {
        println!(
            "durable database in {} | sync {}{} | loaded in write transactions of {} keys",
            path.display(),
            args.sync.name(),
            match args.sync {
                SyncArg::Periodic => format!(" every {} ms", args.sync_interval_ms.max(1)),
                _ => String::new(),
            },
            LOAD_BATCH,
        );
    }
    println!();
    println!(
        "{:<w$} {:>4} {:>7} {:>13} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "engine",
        "mix",
        "threads",
        "ops/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "aborts",
        "notfound",
        w = engine_width(args),
    );

    let mut reports = Vec::new();
    for &isolation in levels {
        for &mix in &mixes {
            for &t in &threads {
                let (report, log) = run_one(args, mix, t, isolation, stop)?;
                println!("{}", row(&report, engine_width(args)));
                for line in per_op_rows(&report) {
                    println!("{line}");
                }
                if let Some(log) = log {
                    println!("{}", log_row(&report, &log));
                }
                reports.push(report);
            }
        }
    }

    fs::create_dir_all(&args.out)?;
    let csv = args.out.join("bench.csv");
    let mut f = fs::File::create(&csv)?;
    writeln!(f, "{}", Report::CSV_HEADER)?;
    for r in &reports {
        writeln!(f, "{}", r.csv_row())?;
    }
    let svg = args.out.join("bench.svg");
    plot::render(&throughput_bars(&reports), &svg)?;
    println!();
    println!("wrote {} and {}", csv.display(), svg.display());
    Ok(())
}

/// Records per write transaction when loading a durable database: a commit per record
/// would time one fsync per record, not the store.
const LOAD_BATCH: u64 = 1_000;

/// The width of the engine column: durable runs name their sync policy.
fn engine_width(args: &BenchArgs) -> usize {
    if args.path.is_some() {
        20
    } else {
        11
    }
}

/// What the log did during a durable run's measured phase (`db.stats().log` after minus
/// before).
struct LogDelta {
    bytes_written: u64,
    syncs: u64,
}

fn run_one(
    args: &BenchArgs,
    mix: Mix,
    threads: usize,
    isolation: Isolation,
    stop: Stop,
) -> Result<(Report, Option<LogDelta>), Box<dyn std::error::Error>> {
    let Some(path) = &args.path else {
        let engine = SnapkvEngine::new(Db::builder().isolation(isolation).build()?, isolation);
        return Ok((run_engine(args, &engine, mix, threads, stop, None).0, None));
    };
    dir::clear_bench_dir(path)?;
    let db = Db::builder()
        .isolation(isolation)
        .path(path)
        .sync(args.sync_policy())
        .build()?;
    let engine = SnapkvEngine::new(db.clone(), isolation);
    // The log's traffic is counted from the end of the loading: the run's own.
    let (mut report, loaded) = run_engine(args, &engine, mix, threads, stop, Some(&db));
    let no_log = "a database opened with --path has a log";
    let during = loaded.ok_or(no_log)?;
    let after = db.stats().log.ok_or(no_log)?;
    drop(engine);
    db.close()?;
    report.engine = format!("{}/{}", report.engine, args.sync.name());
    Ok((
        report,
        Some(LogDelta {
            bytes_written: after.bytes_written - during.bytes_written,
            syncs: after.syncs - during.syncs,
        }),
    ))
}

/// Loads `records` records into the durable `db` with `threads` threads, in write
/// transactions of [`LOAD_BATCH`] records (each thread takes every `threads`-th batch).
fn load_in_batches(db: &Db, records: u64, threads: usize, progress: &(dyn Fn(u64) + Sync)) {
    let threads = threads.max(1) as u64;
    let batches = records.div_ceil(LOAD_BATCH);
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(0x10AD + t);
                let mut batch = t;
                while batch < batches {
                    let range = batch * LOAD_BATCH..((batch + 1) * LOAD_BATCH).min(records);
                    let n = range.end - range.start;
                    let values: Vec<_> = range
                        .clone()
                        .map(|_| workload::value(rng.u64(..)))
                        .collect();
                    db.update(|txn| {
                        for (i, v) in range.clone().zip(&values) {
                            txn.put(workload::key(i), v)?;
                        }
                        Ok(())
                    })
                    .unwrap_or_else(|e| panic!("loading a durable database failed: {e}"));
                    progress(n);
                    batch += threads;
                }
            });
        }
    });
}

fn run_engine(
    args: &BenchArgs,
    engine: &SnapkvEngine,
    mix: Mix,
    threads: usize,
    stop: Stop,
    durable: Option<&Db>,
) -> (Report, Option<snapkv::LogStats>) {
    let bar = |len: u64, what: String| {
        let pb = if args.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(len)
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>22} [{bar:30}] {human_pos}/{human_len} {per_sec} {msg}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_prefix(what);
        pb
    };
    let loading = bar(args.records, format!("{} load {mix}", engine.name()));
    let mut loaded = None;
    let keys = match durable {
        None => workload::load(engine, args.records, threads, &|n| loading.inc(n)),
        Some(db) => {
            load_in_batches(db, args.records, threads, &|n| loading.inc(n));
            loaded = db.stats().log;
            workload::Keyspace::loaded(args.records)
        }
    };
    loading.finish_and_clear();

    let cfg = RunConfig {
        mix,
        threads,
        stop,
        latency: true,
        seed: args.seed,
    };
    let running = match stop {
        Stop::Ops(n) => bar(n, format!("{} {mix} x{threads}", engine.name())),
        Stop::After(_) => {
            let pb = bar(0, format!("{} {mix} x{threads}", engine.name()));
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:>22} {spinner} {human_pos} ops {per_sec} {elapsed}",
            ) {
                pb.set_style(style);
            }
            pb
        }
    };
    let report = workload::run(engine, &keys, &cfg, &|n| running.inc(n));
    running.finish_and_clear();
    (report, loaded)
}

/// Throughput per workload, one series per engine and thread count.
fn throughput_bars(reports: &[Report]) -> plot::Bars<'static> {
    let mut mixes: Vec<Mix> = reports.iter().map(|r| r.mix).collect();
    mixes.sort();
    mixes.dedup();
    let mut series: Vec<(String, usize)> = reports
        .iter()
        .map(|r| (r.engine.clone(), r.threads))
        .collect();
    series.sort();
    series.dedup();
    plot::Bars {
        title: "snapkv bench: YCSB throughput (higher is better)",
        y_label: "million ops/s",
        groups: mixes.iter().map(|m| format!("workload {m}")).collect(),
        series: series
            .iter()
            .map(|(engine, threads)| {
                let values = mixes
                    .iter()
                    .map(|&m| {
                        reports
                            .iter()
                            .find(|r| r.mix == m && &r.engine == engine && r.threads == *threads)
                            .map(|r| r.throughput() / 1e6)
                    })
                    .collect();
                let plural = if *threads == 1 { "" } else { "s" };
                (format!("{engine}, {threads} thread{plural}"), values)
            })
            .collect(),
    }
}

/// A durable run's log traffic per commit: the run's writes (inserts, updates and
/// read-modify-writes) each committed once.
fn log_row(r: &Report, log: &LogDelta) -> String {
    let commits = r.ops_of(Op::Insert) + r.ops_of(Op::Update) + r.ops_of(Op::ReadModifyWrite);
    let per = |n: u64| {
        if commits == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", n as f64 / commits as f64)
        }
    };
    format!(
        "{:>24} {commits} commits, {} bytes written ({} per commit), {} syncs ({} per commit)",
        "log",
        log.bytes_written,
        per(log.bytes_written),
        log.syncs,
        per(log.syncs),
    )
}

fn row(r: &Report, engine_width: usize) -> String {
    let q = |p| {
        r.latency_quantile(None, p)
            .map_or("-".into(), short_duration)
    };
    format!(
        "{:<w$} {:>4} {:>7} {:>13} {:>9} {:>9} {:>9} {:>9} {:>7.3}% {:>9}",
        r.engine,
        r.mix.to_string(),
        r.threads,
        format_rate(r.throughput()),
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0),
        r.abort_rate() * 100.0,
        r.not_found(),
        w = engine_width,
    )
}

/// One line per operation kind the run did, under its row (when it did more than one kind):
/// the latency tails of each kind, which the row's figures over all operations blur.
fn per_op_rows(r: &Report) -> Vec<String> {
    let kinds: Vec<Op> = Op::ALL.into_iter().filter(|&op| r.ops_of(op) > 0).collect();
    if kinds.len() < 2 {
        return Vec::new();
    }
    kinds
        .into_iter()
        .filter_map(|op| {
            let q = |p| r.latency_quantile(Some(op), p).map(short_duration);
            Some(format!(
                "{:>24} {:>13} {:>9} {:>9} {:>9} {:>9}",
                op.name(),
                format_rate(r.ops_of(op) as f64 / r.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)),
                q(0.5)?,
                q(0.99)?,
                q(0.999)?,
                q(1.0)?,
            ))
        })
        .collect()
}

/// `1234567.8` -> `1,234,568`.
fn format_rate(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
