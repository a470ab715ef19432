//! `snapkv`: the command-line tool. `snapkv bench` runs the YCSB workloads against snapkv on
//! the in-memory default and prints a table, writes CSV and renders an SVG plot.
//!
//! ```text
//! cargo run --release --features cli -- bench                      # A-F, 1 and 2 threads
//! cargo run --release --features cli -- bench -w a,f -t 2 --secs 5 --isolation both
//! cargo run --release --features cli -- report   # after cargo bench --features workload --bench peers
//! ```

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
use snapkv::{Db, Isolation};

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
    /// Run YCSB workloads against snapkv (in memory) and report throughput and latency.
    Bench(BenchArgs),
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
    println!();
    println!(
        "{:<11} {:>4} {:>7} {:>13} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "engine", "mix", "threads", "ops/s", "p50", "p99", "p99.9", "max", "aborts", "notfound"
    );

    let mut reports = Vec::new();
    for &isolation in levels {
        for &mix in &mixes {
            for &t in &threads {
                let report = run_one(args, mix, t, isolation, stop)?;
                println!("{}", row(&report));
                for line in per_op_rows(&report) {
                    println!("{line}");
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

fn run_one(
    args: &BenchArgs,
    mix: Mix,
    threads: usize,
    isolation: Isolation,
    stop: Stop,
) -> Result<Report, Box<dyn std::error::Error>> {
    let engine = SnapkvEngine::new(Db::builder().isolation(isolation).build()?, isolation);
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
    let keys = workload::load(&engine, args.records, threads, &|n| loading.inc(n));
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
    let report = workload::run(&engine, &keys, &cfg, &|n| running.inc(n));
    running.finish_and_clear();
    Ok(report)
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

fn row(r: &Report) -> String {
    let q = |p| {
        r.latency_quantile(None, p)
            .map_or("-".into(), short_duration)
    };
    format!(
        "{:<11} {:>4} {:>7} {:>13} {:>9} {:>9} {:>9} {:>9} {:>7.3}% {:>9}",
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
