//! The subcommands on a database directory (`info`, `check`, `backup`) and the directory a
//! durable `bench` runs in.

use std::fs;
use std::path::Path;

use snapkv::{Db, DirInfo};

type CliResult = Result<(), Box<dyn std::error::Error>>;

/// `snapkv info DIR`: what the directory holds, read without changing it.
pub(crate) fn info(dir: &Path) -> CliResult {
    let info = snapkv::inspect(dir)?;
    println!("{}", describe(dir, &info));
    Ok(())
}

/// `snapkv check DIR`: every checksum verified; an error (exit status 1) names the damage.
pub(crate) fn check(dir: &Path) -> CliResult {
    let info = snapkv::inspect(dir)?;
    match &info.torn_tail {
        None => println!("{}: ok", dir.display()),
        Some(tail) => println!(
            "{}: ok; torn tail (not damage: the end of a write a crash cut short, dropped \
             on the next open): {} bytes at byte {} of {}",
            dir.display(),
            tail.bytes,
            tail.offset,
            tail.file.display()
        ),
    }
    println!(
        "verified: {}, {} log segment(s), {} bytes",
        info.checkpoint_ts
            .map_or("no checkpoint".to_string(), |ts| format!(
                "the checkpoint at ts {ts}"
            )),
        info.log_segments,
        info.log_bytes
    );
    Ok(())
}

/// `snapkv backup DIR DEST`: opens DIR, writes the backup, closes.
pub(crate) fn backup(dir: &Path, dest: &Path) -> CliResult {
    if !dir.is_dir() {
        return Err(format!("{} is not a database directory", dir.display()).into());
    }
    let db = Db::open(dir)?;
    let report = db.backup(dest);
    db.close()?;
    let report = report?;
    println!(
        "backup of {} at ts {}: {} keys, {} bytes in {}",
        dir.display(),
        report.ts,
        report.keys,
        report.bytes,
        report.file.display()
    );
    Ok(())
}

fn describe(dir: &Path, info: &DirInfo) -> String {
    let mut out = format!("database directory {}\n", dir.display());
    let line = |out: &mut String, name: &str, value: String| {
        out.push_str(&format!("  {name:<18} {value}\n"));
    };
    line(
        &mut out,
        "checkpoint",
        match info.checkpoint_ts {
            Some(ts) => format!("ts {ts}, {} bytes", info.checkpoint_bytes),
            None => "none".into(),
        },
    );
    line(
        &mut out,
        "log",
        format!(
            "{} segment(s), {} bytes, {} record(s) to replay",
            info.log_segments, info.log_bytes, info.records_to_replay
        ),
    );
    line(&mut out, "keys", info.keys.to_string());
    line(&mut out, "visible ts", info.visible_ts.to_string());
    line(
        &mut out,
        "torn tail",
        match &info.torn_tail {
            Some(tail) => format!(
                "{} bytes at byte {} of {} (left on disk; the next open drops it)",
                tail.bytes,
                tail.offset,
                tail.file.display()
            ),
            None => "none".into(),
        },
    );
    out.pop();
    out
}

/// Whether `name` is a file a snapkv database directory holds: the lock, log segments,
/// checkpoints and checkpoints not yet installed.
fn is_database_file(name: &str) -> bool {
    if name == "LOCK" {
        return true;
    }
    let stem = name
        .strip_suffix(".log")
        .or_else(|| name.strip_suffix(".ckpt"))
        .or_else(|| name.strip_suffix(".ckpt.tmp"));
    stem.is_some_and(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Readies `dir` for a durable bench: it must not exist or be empty; with `fresh`, the
/// database files in it are removed first, and anything else in it is refused.
pub(crate) fn prepare_bench_dir(dir: &Path, fresh: bool) -> CliResult {
    if !dir.exists() {
        return Ok(());
    }
    let names = names(dir)?;
    if names.is_empty() {
        return Ok(());
    }
    if !fresh {
        return Err(format!(
            "{} is not empty: pass --fresh to remove the database in it, or choose a new \
             directory",
            dir.display()
        )
        .into());
    }
    clear_bench_dir(dir)
}

/// Removes the database files in `dir` (refusing if it holds anything else), so that the
/// next run opens an empty database there.
pub(crate) fn clear_bench_dir(dir: &Path) -> CliResult {
    if !dir.exists() {
        return Ok(());
    }
    let names = names(dir)?;
    if let Some(other) = names.iter().find(|n| !is_database_file(n)) {
        return Err(format!(
            "{} holds {other:?}, which is not a snapkv database file: not removing anything",
            dir.display()
        )
        .into());
    }
    for name in names {
        fs::remove_file(dir.join(name))?;
    }
    Ok(())
}

fn names(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        names.push(
            name.into_string()
                .map_err(|n| format!("{}: unexpected file {n:?}", dir.display()))?,
        );
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::is_database_file;

    #[test]
    fn database_files_are_told_from_others() {
        assert!(is_database_file("LOCK"));
        assert!(is_database_file("00000000000000000001.log"));
        assert!(is_database_file("00000000000000000042.ckpt"));
        assert!(is_database_file("00000000000000000042.ckpt.tmp"));
        assert!(!is_database_file("1.log"));
        assert!(!is_database_file("notes.txt"));
        assert!(!is_database_file("0000000000000000004x.ckpt"));
    }
}
