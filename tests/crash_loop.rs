//! The crash loop: a child process commits bank transfers to a durable database under
//! [`SyncPolicy::Always`] and is killed with SIGKILL at a random moment, over and over; after
//! every kill the parent reopens the directory and checks that nothing acknowledged was lost
//! and nothing partial survived.
//!
//! The child runs [`TRANSFER_THREADS`] threads of transfers between [`ACCOUNTS`] accounts.
//! Every transfer also increments one counter key, in the same transaction, and reports the
//! counter value it wrote on its stdout (`ack N`) once its commit returned. A reader thread
//! reports the highest counter it saw in a snapshot (`obs N`) and checks the bank total in
//! that snapshot. After each kill the parent checks the reopened database:
//!
//! * the bank total holds (no transaction survived in part);
//! * the counter is at least the highest acknowledged value and the highest observed value
//!   (visibility never ran ahead of durability);
//! * the counter is at most the highest acknowledged value plus the number of transfer
//!   threads: each thread has at most one commit that became durable but was not reported
//!   before the kill.
//!
//! The child is this test binary itself, run again with [`CHILD_DIR_ENV`] set. 50 kills by
//! default; `SNAPKV_CRASH_KILLS` sets the count (CI's long mode: 1,000).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use snapkv::{Db, SyncPolicy};

const ACCOUNTS: u32 = 16;
const INITIAL_BALANCE: u64 = 1_000;
const TRANSFER_THREADS: u64 = 4;
const COUNTER: &[u8] = b"counter";
/// Set to the database directory in the child process.
const CHILD_DIR_ENV: &str = "SNAPKV_CRASH_CHILD_DIR";

fn account(i: u32) -> Vec<u8> {
    format!("acct/{i:02}").into_bytes()
}

fn decode(v: &[u8]) -> u64 {
    u64::from_be_bytes(v.try_into().expect("8-byte number"))
}

/// The child's side: runs transfers and a reader until it is killed.
#[test]
#[ignore = "the crash loop's child process; run by `crash_loop_keeps_every_acknowledged_commit`"]
fn crash_loop_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let db = Db::builder()
        .path(&dir)
        .sync(SyncPolicy::Always)
        .build()
        .expect("open in the child");
    // The first run creates the accounts and the counter, atomically.
    db.update(|t| {
        if t.get(COUNTER)?.is_none() {
            for i in 0..ACCOUNTS {
                t.put(account(i), INITIAL_BALANCE.to_be_bytes())?;
            }
            t.put(COUNTER, 0u64.to_be_bytes())?;
        }
        Ok(())
    })
    .expect("initialize");
    let report = |line: String| {
        let mut out = std::io::stdout().lock();
        // One write per line, flushed: a kill cuts at most the last line short.
        out.write_all(line.as_bytes()).expect("report");
        out.flush().expect("report");
    };
    std::thread::scope(|s| {
        for seed in 0..TRANSFER_THREADS {
            let db = &db;
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed ^ std::process::id() as u64);
                loop {
                    let from = rng.u32(0..ACCOUNTS);
                    let to = (from + rng.u32(1..ACCOUNTS)) % ACCOUNTS;
                    let amount = rng.u64(1..50);
                    let counter = db
                        .update(|t| {
                            let a = decode(&t.get(account(from))?.expect("account"));
                            let b = decode(&t.get(account(to))?.expect("account"));
                            if a >= amount {
                                t.put(account(from), (a - amount).to_be_bytes())?;
                                t.put(account(to), (b + amount).to_be_bytes())?;
                            }
                            let c = decode(&t.get(COUNTER)?.expect("counter")) + 1;
                            t.put(COUNTER, c.to_be_bytes())?;
                            Ok(c)
                        })
                        .expect("transfer");
                    report(format!("ack {counter}\n"));
                }
            });
        }
        s.spawn(|| loop {
            let snap = db.snapshot();
            let total: u64 = (0..ACCOUNTS)
                .map(|i| decode(&snap.get(account(i)).expect("read").expect("account")))
                .sum();
            assert_eq!(total, u64::from(ACCOUNTS) * INITIAL_BALANCE, "bank total");
            let counter = decode(&snap.get(COUNTER).expect("read").expect("counter"));
            report(format!("obs {counter}\n"));
            std::thread::sleep(Duration::from_millis(1));
        });
    });
}

/// What one child reported before it died.
#[derive(Default, Debug)]
struct Reports {
    max_ack: Option<u64>,
    max_obs: Option<u64>,
    acks: u64,
}

/// Counts one complete line of a child's report.
fn take(line: &str, reports: &mut Reports) {
    let mut parts = line.split(' ');
    let (Some(kind), Some(n)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(n) = n.parse::<u64>() else { return };
    match kind {
        "ack" => {
            reports.acks += 1;
            reports.max_ack = reports.max_ack.max(Some(n));
        }
        "obs" => reports.max_obs = reports.max_obs.max(Some(n)),
        _ => {}
    }
}

/// Runs one child over `dir` and kills it at a random moment after its first acknowledged
/// commit; returns what it reported.
fn run_and_kill(dir: &Path, rng: &mut fastrand::Rng) -> Reports {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "crash_loop_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("piped");
    let (lines_tx, lines) = mpsc::channel::<String>();
    // Only complete lines are passed on: the kill may cut the last one ("ack 1234" read as
    // "ack 12"), and a cut line has no newline.
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdout.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.ends_with(b"\n") => {
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    if lines_tx.send(text).is_err() {
                        break;
                    }
                }
                Ok(_) => break,
            }
        }
    });
    let mut reports = Reports::default();
    // Wait for the first acknowledged commit, then let it run for a random while.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        else {
            let _ = child.kill();
            let out = child.wait_with_output().expect("child output");
            panic!(
                "the child acknowledged nothing: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        };
        take(&line, &mut reports);
        if reports.max_ack.is_some() {
            break;
        }
    }
    std::thread::sleep(Duration::from_micros(rng.u64(0..100_000)));
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    reader.join().expect("stdout reader");
    for line in lines.try_iter() {
        take(&line, &mut reports);
    }
    if !status.success() {
        // Killed: expected. A child that died on its own (a failed assertion) is a failure.
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the child died on its own: {status:?}; stderr: {}",
            child
                .stderr
                .take()
                .map(|mut e| {
                    let mut s = String::new();
                    let _ = std::io::Read::read_to_string(&mut e, &mut s);
                    s
                })
                .unwrap_or_default()
        );
    }
    reports
}

#[test]
fn crash_loop_keeps_every_acknowledged_commit() {
    let kills: u64 = std::env::var("SNAPKV_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut last_counter = 0;
    let (mut acks, mut torn_tails, mut unreported) = (0, 0, 0);
    for kill in 0..kills {
        let reports = run_and_kill(dir.path(), &mut rng);
        acks += reports.acks;
        let db = Db::builder()
            .path(dir.path())
            .sync(SyncPolicy::Always)
            .build()
            .unwrap_or_else(|e| panic!("reopen after kill {kill}: {e}"));
        if db.recovery().is_some_and(|r| r.torn_tail.is_some()) {
            torn_tails += 1;
        }
        let snap = db.snapshot();
        let total: u64 = (0..ACCOUNTS)
            .map(|i| decode(&snap.get(account(i)).unwrap().expect("account")))
            .sum();
        assert_eq!(
            total,
            u64::from(ACCOUNTS) * INITIAL_BALANCE,
            "bank total after kill {kill}"
        );
        let counter = decode(&snap.get(COUNTER).unwrap().expect("counter"));
        let max_ack = reports.max_ack.expect("at least one acknowledged commit");
        assert!(
            counter >= max_ack,
            "kill {kill}: counter {counter} lost acknowledged commit {max_ack}"
        );
        if let Some(obs) = reports.max_obs {
            assert!(
                counter >= obs,
                "kill {kill}: counter {counter} below the observed value {obs}"
            );
        }
        assert!(
            counter <= max_ack + TRANSFER_THREADS,
            "kill {kill}: counter {counter} is more than {TRANSFER_THREADS} above the last \
             acknowledged {max_ack}"
        );
        assert!(
            counter >= last_counter,
            "kill {kill}: the counter went back"
        );
        unreported += counter - max_ack;
        last_counter = counter;
        drop(snap);
        db.close().expect("close");
    }
    eprintln!(
        "crash loop: {kills} kills, {acks} acknowledged commits, final counter {last_counter}, \
         {torn_tails} torn tails truncated, {unreported} durable commits unreported at a kill"
    );
    assert!(last_counter >= kills, "every run acknowledged a commit");
}
