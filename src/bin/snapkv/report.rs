//! `snapkv report`: turns the peer suite's criterion results (`cargo bench --features workload
//! --bench peers`) into markdown tables, ratio tables, the performance targets, and SVG charts,
//! so that docs/benchmarks.md is regenerated from one run instead of copied by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::plot;

/// The engine every ratio is relative to.
const OURS: &str = "snapkv-si";

/// One benchmark's median.
struct Estimate {
    ns_per_iter: f64,
    elements: f64,
}

impl Estimate {
    fn ops_per_sec(&self) -> f64 {
        self.elements * 1e9 / self.ns_per_iter
    }
}

/// group -> engine -> estimate.
type Results = BTreeMap<String, BTreeMap<String, Estimate>>;

fn find_benchmarks(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "new") {
                if path.join("benchmark.json").is_file() {
                    out.push(path);
                }
            } else {
                find_benchmarks(&path, out)?;
            }
        }
    }
    Ok(())
}

fn load(dir: &Path) -> Result<Results, Box<dyn std::error::Error>> {
    let mut found = Vec::new();
    find_benchmarks(dir, &mut found)?;
    let mut results = Results::new();
    for new in found {
        let bench: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(new.join("benchmark.json"))?)?;
        let est: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(new.join("estimates.json"))?)?;
        let (Some(group), Some(function), Some(ns)) = (
            bench["group_id"].as_str(),
            bench["function_id"].as_str(),
            est["median"]["point_estimate"].as_f64(),
        ) else {
            continue;
        };
        let elements = bench["throughput"]["Elements"].as_f64().unwrap_or(1.0);
        results.entry(group.to_owned()).or_default().insert(
            function.to_owned(),
            Estimate {
                ns_per_iter: ns,
                elements,
            },
        );
    }
    if results.is_empty() {
        return Err(format!("no criterion results under {}", dir.display()).into());
    }
    Ok(results)
}

fn mops(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else {
        format!("{:.0} K", x / 1e3)
    }
}

/// A markdown table: one row per group, one column per engine; cells show ops/s and, below a
/// second header, snapkv-si's speed-up over each engine.
fn tables(results: &Results, groups: &[&String], engines: &[String], out: &mut String) {
    let _ = writeln!(out, "| workload | {} |", engines.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(engines.len()));
    for g in groups {
        let row: Vec<String> = engines
            .iter()
            .map(|e| {
                results[*g]
                    .get(e)
                    .map_or("–".into(), |x| mops(x.ops_per_sec()))
            })
            .collect();
        let _ = writeln!(out, "| {g} | {} |", row.join(" | "));
    }
    let _ = writeln!(
        out,
        "\n{OURS} speed-up over each engine (time ratio; > 1 means {OURS} is faster):\n"
    );
    let _ = writeln!(out, "| workload | {} |", engines.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(engines.len()));
    for g in groups {
        let ours = results[*g].get(OURS);
        let row: Vec<String> = engines
            .iter()
            .map(|e| match (ours, results[*g].get(e)) {
                (Some(o), Some(x)) => format!("{:.2}x", x.ns_per_iter / o.ns_per_iter),
                _ => "–".into(),
            })
            .collect();
        let _ = writeln!(out, "| {g} | {} |", row.join(" | "));
    }
}

fn engines_of(results: &Results, groups: &[&String]) -> Vec<String> {
    // Fixed order: ours first, then the peers, then the baselines.
    const ORDER: [&str; 9] = [
        "snapkv-si",
        "snapkv-ser",
        "skipdb-opt",
        "skipdb-ser",
        "surrealmx-si",
        "surrealmx-ssi",
        "rwlock-btree",
        "cow-imbl",
        "dashmap-raw",
    ];
    let present: BTreeSet<&String> = groups.iter().flat_map(|g| results[*g].keys()).collect();
    let mut engines: Vec<String> = ORDER
        .iter()
        .filter(|e| present.iter().any(|p| p == e))
        .map(|e| e.to_string())
        .collect();
    engines.extend(
        present
            .into_iter()
            .filter(|p| !ORDER.contains(&p.as_str()))
            .cloned(),
    );
    engines
}

fn chart(
    results: &Results,
    groups: &[&String],
    title: &str,
    label: impl Fn(&str) -> String,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let engines = engines_of(results, groups);
    let bars = plot::Bars {
        title,
        y_label: "million ops/s",
        groups: groups.iter().map(|g| label(g)).collect(),
        series: engines
            .iter()
            .map(|e| {
                let v = groups
                    .iter()
                    .map(|g| results[*g].get(e).map(|x| x.ops_per_sec() / 1e6))
                    .collect();
                (e.clone(), v)
            })
            .collect(),
    };
    plot::render(&bars, path)
}

/// `ours` time ÷ `theirs` time for one group: < 1 means ours is faster.
fn time_ratio(results: &Results, group: &str, ours: &str, theirs: &str) -> Option<f64> {
    let g = results.get(group)?;
    Some(g.get(ours)?.ns_per_iter / g.get(theirs)?.ns_per_iter)
}

fn targets(results: &Results, out: &mut String) {
    let _ = writeln!(out, "| target | measured | met |\n|---|---|---|");
    let mut line = |what: String, measured: String, met: bool| {
        let _ = writeln!(
            out,
            "| {what} | {measured} | {} |",
            if met { "yes" } else { "**no**" }
        );
    };
    for g in results
        .keys()
        .filter(|g| g.starts_with("micro/point_read_snapshot/"))
    {
        if let Some(r) = time_ratio(results, g, OURS, "dashmap-raw") {
            line(
                format!("point read at a snapshot within 1.5x of a raw dashmap get ({g})"),
                format!("{r:.2}x the dashmap time"),
                r <= 1.5,
            );
        }
    }
    for g in results
        .keys()
        .filter(|g| g.starts_with("micro/write_txn_1/"))
    {
        if let Some(x) = results[g].get(OURS) {
            line(
                format!("single-key write transactions >= 3 M/s on one thread ({g})"),
                format!("{}/s", mops(x.ops_per_sec())),
                x.ops_per_sec() >= 3e6,
            );
        }
        for peer in ["skipdb-opt", "skipdb-ser"] {
            if let Some(r) = time_ratio(results, g, peer, OURS) {
                line(
                    format!("single-key write transaction >= 3x {peer}"),
                    format!("{r:.1}x"),
                    r >= 3.0,
                );
            }
        }
    }
    for g in results.keys().filter(|g| g.starts_with("ycsb/")) {
        let mut parts = Vec::new();
        let mut met = true;
        for (peer, need) in [
            ("skipdb-opt", 3.0),
            ("skipdb-ser", 3.0),
            ("surrealmx-si", 1.5),
            ("surrealmx-ssi", 1.5),
            ("rwlock-btree", 1.0),
        ] {
            if let Some(r) = time_ratio(results, g, peer, OURS) {
                parts.push(format!("{r:.2}x {peer}"));
                met &= r >= need;
            }
        }
        line(
            format!("{g}: >= 3x skipdb, >= 1.5x surrealmx, >= 1x rwlock-btree"),
            parts.join(", "),
            met,
        );
    }
    if let (Some(small), Some(large)) = (
        results
            .get("micro/snapshot_create/1k")
            .and_then(|g| g.get(OURS)),
        results
            .get("micro/snapshot_create/1000k")
            .and_then(|g| g.get(OURS)),
    ) {
        let r = large.ns_per_iter / small.ns_per_iter;
        line(
            "snapshot creation at 1M keys within 1.2x of 1K keys".into(),
            format!(
                "{r:.2}x ({:.0} ns vs {:.0} ns)",
                large.ns_per_iter, small.ns_per_iter
            ),
            r <= 1.2,
        );
    }
}

/// Writes `peers.md` (tables, ratios, targets) and the charts into `out`.
pub fn run(criterion: &Path, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let results = load(criterion)?;
    fs::create_dir_all(out)?;
    let mut md = String::new();
    let families: [(&str, &str); 2] = [("micro/", "Micro workloads"), ("ycsb/", "YCSB")];
    for (prefix, title) in families {
        let groups: Vec<&String> = results.keys().filter(|g| g.starts_with(prefix)).collect();
        if groups.is_empty() {
            continue;
        }
        let engines = engines_of(&results, &groups);
        let _ = writeln!(md, "### {title} (median throughput, ops/s)\n");
        tables(&results, &groups, &engines, &mut md);
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "### Targets\n");
    targets(&results, &mut md);
    fs::write(out.join("peers.md"), &md)?;

    for threads in ["t1", "t2"] {
        let groups: Vec<&String> = results
            .keys()
            .filter(|g| g.starts_with("ycsb/") && g.ends_with(threads))
            .collect();
        if !groups.is_empty() {
            let title = format!(
                "YCSB throughput, {} thread{} (higher is better)",
                &threads[1..],
                if threads == "t1" { "" } else { "s" }
            );
            let label = |g: &str| {
                g.split('/')
                    .nth(1)
                    .map_or(g.to_owned(), |m| format!("workload {m}"))
            };
            chart(
                &results,
                &groups,
                &title,
                label,
                &out.join(format!("ycsb_{threads}.svg")),
            )?;
        }
    }
    let micro: Vec<&String> = results
        .keys()
        .filter(|g| {
            g.starts_with("micro/") && !g.contains("snapshot_create") && !g.contains("scan_100")
        })
        .collect();
    if !micro.is_empty() {
        let label = |g: &str| g.split('/').nth(1).unwrap_or(g).to_owned();
        chart(
            &results,
            &micro,
            "Micro workloads, 1 thread (higher is better)",
            label,
            &out.join("micro.svg"),
        )?;
    }
    print!("{md}");
    println!("\nwrote {}", out.display());
    Ok(())
}
