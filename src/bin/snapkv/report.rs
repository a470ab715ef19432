//! `snapkv report`: turns the peer suite's criterion results (`cargo bench --features workload
//! --bench peers`) into markdown tables, ratio tables, a table of performance targets (read
//! from a file: `--targets benches/peers/targets.txt` for the project's own), and SVG charts,
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
    const ORDER: [&str; 10] = [
        "snapkv-si",
        "snapkv-si-owned",
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

/// One performance target, read from a targets file (see [`parse_targets`]).
struct Target {
    /// The measured side: a group (or a group prefix, ending in `*`) and an engine.
    group: String,
    engine: String,
    check: Check,
    description: String,
}

/// What a target requires of its measured side.
enum Check {
    /// `time(measured) / time(reference)` at most (`at_most`) or at least `bound`; the
    /// reference group `None` is the measured one.
    Ratio {
        at_most: bool,
        bound: f64,
        group: Option<String>,
        engine: String,
    },
    /// Throughput of at least `bound` operations per second.
    OpsPerSec(f64),
}

/// Parses a targets file: one target a line, blank lines and `#` comments ignored. Fields,
/// separated by whitespace:
///
/// ```text
/// <group> <engine> <= <bound> <reference group | => <reference engine> <description...>
/// <group> <engine> >= <bound> <reference group | => <reference engine> <description...>
/// <group> <engine> ops/s>= <bound> - - <description...>
/// ```
///
/// A ratio target compares the medians' times, `time(engine) / time(reference)`; a group
/// ending in `*` stands for every group with that prefix (one line of the table each), and the
/// reference group `=` for the measured one.
fn parse_targets(text: &str) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = |why: &str| format!("targets line {}: {why}: {line}", n + 1);
        if fields.len() < 7 {
            return Err(bad("expected 6 fields and a description"));
        }
        let bound: f64 = fields[3]
            .parse()
            .map_err(|_| bad("the bound is not a number"))?;
        let check = match fields[2] {
            "<=" | ">=" => Check::Ratio {
                at_most: fields[2] == "<=",
                bound,
                group: (fields[4] != "=").then(|| fields[4].to_owned()),
                engine: fields[5].to_owned(),
            },
            "ops/s>=" => Check::OpsPerSec(bound),
            _ => return Err(bad("the comparison is one of <=, >=, ops/s>=")),
        };
        targets.push(Target {
            group: fields[0].to_owned(),
            engine: fields[1].to_owned(),
            check,
            description: fields[6..].join(" "),
        });
    }
    Ok(targets)
}

/// The groups `pattern` names: itself, or every group with its prefix if it ends in `*`.
fn groups_matching<'r>(results: &'r Results, pattern: &str) -> Vec<&'r String> {
    match pattern.strip_suffix('*') {
        Some(prefix) => results.keys().filter(|g| g.starts_with(prefix)).collect(),
        None => results.keys().filter(|g| *g == pattern).collect(),
    }
}

/// The targets table: one line per target and matching group with results for both sides.
fn targets(results: &Results, targets: &[Target], out: &mut String) {
    let _ = writeln!(out, "| target | measured | met |\n|---|---|---|");
    for t in targets {
        for g in groups_matching(results, &t.group) {
            let Some(ours) = results[g].get(&t.engine) else {
                continue;
            };
            let (measured, met) = match &t.check {
                Check::Ratio {
                    at_most,
                    bound,
                    group,
                    engine,
                } => {
                    let reference = group
                        .as_deref()
                        .map_or(Some(g), |r| results.get_key_value(r).map(|(k, _)| k));
                    let Some(theirs) = reference.and_then(|r| results[r].get(engine)) else {
                        continue;
                    };
                    let r = ours.ns_per_iter / theirs.ns_per_iter;
                    let met = if *at_most { r <= *bound } else { r >= *bound };
                    (
                        format!(
                            "{r:.2}x ({:.0} ns vs {:.0} ns)",
                            ours.ns_per_iter, theirs.ns_per_iter
                        ),
                        met,
                    )
                }
                Check::OpsPerSec(bound) => (
                    format!("{}/s", mops(ours.ops_per_sec())),
                    ours.ops_per_sec() >= *bound,
                ),
            };
            let _ = writeln!(
                out,
                "| {} ({g}) | {measured} | {} |",
                t.description,
                if met { "yes" } else { "**no**" }
            );
        }
    }
}

/// Writes `peers.md` (tables, ratios, and the targets of `targets_file` if given) and the
/// charts into `out`.
pub fn run(
    criterion: &Path,
    out: &Path,
    targets_file: Option<&Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    let results = load(criterion)?;
    let wanted = match targets_file {
        Some(path) => parse_targets(&fs::read_to_string(path)?)?,
        None => Vec::new(),
    };
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
    if !wanted.is_empty() {
        let _ = writeln!(md, "### Targets\n");
        targets(&results, &wanted, &mut md);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn results(cells: &[(&str, &str, f64)]) -> Results {
        let mut r = Results::new();
        for (group, engine, ns) in cells {
            r.entry(group.to_string()).or_default().insert(
                engine.to_string(),
                Estimate {
                    ns_per_iter: *ns,
                    elements: 1.0,
                },
            );
        }
        r
    }

    #[test]
    fn targets_come_from_the_file_and_are_checked_per_matching_group() {
        let file = "# comment\n\n\
            micro/read/* ours <= 1.5 = floor read within 1.5x of the floor\n\
            micro/read/* peer >= 2 = ours 2x the peer\n\
            micro/write/1k ours ops/s>= 1e6 - - a million writes\n\
            micro/snap/big ours <= 1.2 micro/snap/small ours flat snapshots\n";
        let wanted = parse_targets(file).unwrap();
        assert_eq!(wanted.len(), 4);
        let r = results(&[
            ("micro/read/100k", "ours", 100.0),
            ("micro/read/100k", "floor", 80.0),
            ("micro/read/100k", "peer", 150.0),
            ("micro/read/1000k", "ours", 300.0),
            ("micro/read/1000k", "floor", 100.0),
            ("micro/write/1k", "ours", 500.0),
            ("micro/snap/big", "ours", 110.0),
            ("micro/snap/small", "ours", 100.0),
        ]);
        let mut out = String::new();
        targets(&r, &wanted, &mut out);
        let lines: Vec<&str> = out.lines().skip(2).collect();
        let met = |what: &str| -> Vec<bool> {
            lines
                .iter()
                .filter(|l| l.starts_with(&format!("| {what}")))
                .map(|l| l.ends_with("| yes |"))
                .collect()
        };
        // One line per matching group with both sides measured (the peer only in 100k), in
        // the groups' order (1000k sorts first).
        assert_eq!(met("read within 1.5x of the floor"), [false, true]);
        assert_eq!(met("2x the peer"), [false]);
        assert_eq!(met("a million writes"), [true]);
        assert_eq!(met("flat snapshots"), [true]);
        assert_eq!(lines.len(), 5, "{out}");
    }

    #[test]
    fn malformed_target_lines_are_rejected_with_their_line_number() {
        for bad in [
            "micro/x ours <= 1.5 = floor",
            "micro/x ours <= fast = floor description",
            "micro/x ours < 1.5 = floor description",
        ] {
            let e = parse_targets(&format!("# ok\n{bad}\n")).err().unwrap();
            assert!(e.starts_with("targets line 2:"), "{e}");
        }
    }
}
