//! The `snapkv` command line on database directories: `info` and `check` read without
//! changing anything (a torn tail is reported and left in place), `check` fails naming the
//! damaged file, `backup` writes an openable copy, and `bench --path` leaves an openable
//! database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use snapkv::Db;

fn snapkv(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapkv"))
        .args(args)
        .output()
        .expect("the snapkv binary runs")
}

fn run(args: &[&str], dirs: &[&Path]) -> Output {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    all.extend(dirs.iter().map(|d| d.as_os_str()));
    snapkv(&all)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A closed database in `dir` holding keys `k000..k{n}`, one commit each (so each frame
/// after the first carries a synced mark past the frames before it).
fn database(dir: &Path, n: u32) {
    let db = Db::open(dir).unwrap();
    for i in 0..n {
        db.put(format!("k{i:03}"), format!("value {i}")).unwrap();
    }
    db.close().unwrap();
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    out.sort();
    out
}

/// Every file in `dir` with its bytes.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn info_and_check_on_a_clean_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    database(&dir, 30);
    let before = contents(&dir);

    let info = run(&["info"], &[&dir]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = stdout(&info);
    assert!(text.contains("keys               30"), "{text}");
    assert!(text.contains("visible ts         30"), "{text}");
    assert!(text.contains("torn tail          none"), "{text}");
    assert!(text.contains("checkpoint         none"), "{text}");

    let check = run(&["check"], &[&dir]);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains(": ok"), "{}", stdout(&check));
    assert_eq!(contents(&dir), before, "info and check change nothing");

    // After a checkpoint, info shows it.
    let db = Db::open(&dir).unwrap();
    let ts = db.checkpoint().unwrap().ts;
    db.close().unwrap();
    let info = run(&["info"], &[&dir]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = stdout(&info);
    assert!(
        text.contains(&format!("checkpoint         ts {ts},")),
        "{text}"
    );
    assert!(text.contains("keys               30"), "{text}");
}

#[test]
fn a_torn_tail_is_reported_and_left_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    database(&dir, 10);
    let last = segments(&dir).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    // The first bytes of a frame that a crash cut short.
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[7, 0, 0]);
    std::fs::write(&last, &bytes).unwrap();
    let before = contents(&dir);

    let info = run(&["info"], &[&dir]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = stdout(&info);
    assert!(
        text.contains(&format!("torn tail          3 bytes at byte {len} of")),
        "{text}"
    );
    assert!(text.contains("keys               10"), "{text}");

    let check = run(&["check"], &[&dir]);
    assert!(
        check.status.success(),
        "a torn tail is not damage: {}",
        stderr(&check)
    );
    assert!(stdout(&check).contains("torn tail"), "{}", stdout(&check));
    assert_eq!(contents(&dir), before, "the torn tail is left in place");

    // The next open drops it.
    let db = Db::open(&dir).unwrap();
    assert_eq!(db.recovery().unwrap().torn_tail.as_ref().unwrap().bytes, 3);
    db.close().unwrap();
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len);
}

#[test]
fn check_fails_on_a_corrupted_segment_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    database(&dir, 30);
    let first = segments(&dir).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    // Inside the first record (after the 48-byte segment header), which 29 later commits
    // each synced past: damage, not a torn tail.
    bytes[70] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();

    let check = run(&["check"], &[&dir]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    let err = stderr(&check);
    assert!(err.contains("corruption in"), "{err}");
    let name = first.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "the error names the file: {err}");
    let info = run(&["info"], &[&dir]);
    assert_eq!(info.status.code(), Some(1));
    assert_eq!(
        std::fs::read(&first).unwrap(),
        bytes,
        "nothing was repaired"
    );
}

#[test]
fn info_refuses_an_open_database_and_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::open(&dir).unwrap();
    db.put("k", "v").unwrap();
    let info = run(&["info"], &[&dir]);
    assert_eq!(info.status.code(), Some(1));
    assert!(stderr(&info).contains("open already"), "{}", stderr(&info));
    db.close().unwrap();

    let missing = tmp.path().join("missing");
    let info = run(&["info"], &[&missing]);
    assert_eq!(info.status.code(), Some(1));
    assert!(!missing.exists(), "info creates no directory");
}

#[test]
fn backup_then_info_on_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let dest = tmp.path().join("backup");
    database(&dir, 25);

    let backup = run(&["backup"], &[&dir, &dest]);
    assert!(backup.status.success(), "{}", stderr(&backup));
    assert!(stdout(&backup).contains("25 keys"), "{}", stdout(&backup));

    let text = stdout(&run(&["info"], &[&dest]));
    assert!(text.contains("checkpoint         ts 25,"), "{text}");
    assert!(text.contains("keys               25"), "{text}");
    assert!(run(&["check"], &[&dest]).status.success());
    let db = Db::open(&dest).unwrap();
    assert_eq!(db.get("k007").unwrap().unwrap(), "value 7");
    db.close().unwrap();

    // A second backup into the same, now non-empty, destination is refused.
    assert_eq!(run(&["backup"], &[&dir, &dest]).status.code(), Some(1));
}

#[test]
fn bench_with_a_path_leaves_an_openable_database() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bench-db");
    let out = tmp.path().join("out");
    let args = [
        "bench", "-w", "a", "-t", "1", "-r", "1500", "--ops", "200", "-q", "--sync", "never",
        "--out",
    ];
    let bench = run(&args, &[&out, Path::new("--path"), &dir]);
    assert!(bench.status.success(), "{}", stderr(&bench));
    let text = stdout(&bench);
    assert!(text.contains("durable database in"), "{text}");
    assert!(text.contains("snapkv-si/never"), "{text}");
    assert!(text.contains(" commits, "), "the log line: {text}");
    let csv = std::fs::read_to_string(out.join("bench.csv")).unwrap();
    assert!(csv.contains("\nsnapkv-si/never,A,1,1500,200,"), "{csv}");

    let db = Db::open(&dir).unwrap();
    assert_eq!(db.stats().keys, 1500);
    assert!(db.get(snapkv::workload::key(1499)).unwrap().is_some());
    db.close().unwrap();

    // A non-empty directory is refused without --fresh, reused with it.
    let again = run(&args, &[&out, Path::new("--path"), &dir]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--fresh"), "{}", stderr(&again));
    let mut fresh = args.to_vec();
    fresh.insert(1, "--fresh");
    assert!(run(&fresh, &[&out, Path::new("--path"), &dir])
        .status
        .success());

    // --fresh never removes what is not a database file.
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    assert_eq!(
        run(&fresh, &[&out, Path::new("--path"), &dir])
            .status
            .code(),
        Some(1)
    );
    assert!(dir.join("notes.txt").exists());
}
