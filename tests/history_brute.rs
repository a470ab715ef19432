//! Brute-force serializability, independent of adya: for small histories (at most seven
//! committed transactions), try every order of the committed transactions and check whether
//! one of them, run serially under list-append semantics, explains every read and the final
//! state. Serializable runs must always be explained; a scripted write skew under snapshot
//! isolation must not be, and the same schedule under Serializable must lose one transaction
//! and be explained.
//!
//! `SNAPKV_BRUTE_ROUNDS` sets the number of small random runs per isolation level (default
//! 200).

#[path = "common/history.rs"]
mod common;

use std::collections::BTreeMap;

use common::{
    check_sanity, exec_step, final_state, outcome_of, run, write_skews, Config, Elem, History, Key,
    Mop, Outcome, Recorder, Step, Txn, Workload,
};
use snapkv::{Db, Isolation};

const MAX_COMMITTED: usize = 7;

type State = BTreeMap<Key, Vec<Elem>>;

/// Runs `t` on `state`; `None` if one of its reads disagrees with it.
fn apply(t: &Txn, state: &State) -> Option<State> {
    let mut s = state.clone();
    for m in &t.mops {
        match m {
            Mop::Read { key, list } => {
                let list = list.as_ref().expect("a committed read carries its value");
                if s.get(key).map_or(&[][..], Vec::as_slice) != list.as_slice() {
                    return None;
                }
            }
            Mop::Append { key, elem } => s.entry(*key).or_default().push(*elem),
        }
    }
    Some(s)
}

/// The outcome of the exhaustive search.
struct Search {
    /// A serial order (indices into `History::txns`) explaining everything, if any.
    order: Option<Vec<usize>>,
    /// Transactions placed on top of a valid prefix during the search (search effort).
    steps: usize,
}

/// Tries every permutation of the committed transactions, pruning a prefix as soon as one of
/// its transactions reads what the prefix does not explain; a full order must also end in
/// the final state read after the run.
fn serial_order(h: &History) -> Search {
    let committed: Vec<&Txn> = h.txns.iter().filter(|t| t.is_ok()).collect();
    let index: Vec<usize> = (0..h.txns.len()).filter(|&i| h.txns[i].is_ok()).collect();
    assert!(
        committed.len() <= MAX_COMMITTED,
        "{} committed transactions: too many to brute-force",
        committed.len()
    );
    fn dfs(
        committed: &[&Txn],
        final_state: &State,
        used: &mut Vec<bool>,
        order: &mut Vec<usize>,
        state: &State,
        steps: &mut usize,
    ) -> bool {
        if order.len() == committed.len() {
            return state == final_state;
        }
        for x in 0..committed.len() {
            if used[x] {
                continue;
            }
            *steps += 1;
            if let Some(next) = apply(committed[x], state) {
                used[x] = true;
                order.push(x);
                if dfs(committed, final_state, used, order, &next, steps) {
                    return true;
                }
                order.pop();
                used[x] = false;
            }
        }
        false
    }
    let mut used = vec![false; committed.len()];
    let mut order = Vec::new();
    let mut steps = 0;
    let found = dfs(
        &committed,
        &h.final_state,
        &mut used,
        &mut order,
        &State::new(),
        &mut steps,
    );
    Search {
        order: found.then(|| order.into_iter().map(|x| index[x]).collect()),
        steps,
    }
}

fn describe(h: &History) -> String {
    let mut s = String::new();
    for (i, t) in h.txns.iter().enumerate() {
        s.push_str(&format!(
            "  T{i} p{} {:?}: {:?}\n",
            t.process, t.outcome, t.mops
        ));
    }
    s.push_str(&format!("  final: {:?}\n", h.final_state));
    s
}

// --- the checker on hand-written histories -------------------------------------------------

fn txn(mops: Vec<Mop>) -> Txn {
    Txn {
        process: 0,
        planned: mops.clone(),
        mops,
        outcome: Outcome::Ok,
        invoked_ns: 0,
        completed_ns: 0,
    }
}

fn r(key: Key, list: &[Elem]) -> Mop {
    Mop::Read {
        key,
        list: Some(list.to_vec()),
    }
}

fn a(key: Key, elem: Elem) -> Mop {
    Mop::Append { key, elem }
}

fn history(txns: Vec<Txn>, final_state: &[(Key, &[Elem])]) -> History {
    History {
        txns,
        events: Vec::new(),
        final_state: final_state.iter().map(|(k, l)| (*k, l.to_vec())).collect(),
    }
}

#[test]
fn checker_accepts_a_serial_history_given_out_of_order() {
    let h = history(
        vec![
            txn(vec![r(0, &[1, 2]), a(1, 3)]),
            txn(vec![r(0, &[]), a(0, 1)]),
            txn(vec![r(1, &[3]), r(0, &[1, 2])]),
            txn(vec![r(0, &[1]), a(0, 2), r(0, &[1, 2])]),
        ],
        &[(0, &[1, 2]), (1, &[3])],
    );
    assert_eq!(serial_order(&h).order, Some(vec![1, 3, 0, 2]));
}

#[test]
fn checker_rejects_write_skew_lost_updates_and_aborted_reads() {
    // Write skew: each read both keys empty and appended to a different one.
    let skew = history(
        vec![
            txn(vec![r(0, &[]), r(1, &[]), a(0, 1)]),
            txn(vec![r(0, &[]), r(1, &[]), a(1, 2)]),
        ],
        &[(0, &[1]), (1, &[2])],
    );
    assert_eq!(serial_order(&skew).order, None);
    // A lost update: both read [] and appended; the final state keeps one.
    let lost = history(
        vec![txn(vec![r(0, &[]), a(0, 1)]), txn(vec![r(0, &[]), a(0, 2)])],
        &[(0, &[2])],
    );
    assert_eq!(serial_order(&lost).order, None);
    // A committed read of an element no committed transaction appended.
    let mut aborted = txn(vec![r(0, &[]), a(0, 1)]);
    aborted.outcome = Outcome::Fail("conflict".into());
    let g1a = history(vec![aborted, txn(vec![r(0, &[1])])], &[]);
    assert_eq!(serial_order(&g1a).order, None);
    // A final state that misses a committed append.
    let vanished = history(vec![txn(vec![r(0, &[]), a(0, 1)])], &[]);
    assert_eq!(serial_order(&vanished).order, None);
}

// --- scripted write skew -------------------------------------------------------------------

/// T0 appends 1 to x and 2 to y and commits. Then T1 and T2 begin, both read x and y, T1
/// appends 3 to x, T2 appends 4 to y, T1 commits, T2 commits.
fn scripted_write_skew(isolation: Isolation) -> History {
    const X: Key = 0;
    const Y: Key = 1;
    let db = Db::new();
    let rec = Recorder::new();
    let planned = |steps: &[Step]| steps.iter().flat_map(Step::planned).collect::<Vec<_>>();

    let seed = [Step::Append(X, 1), Step::Append(Y, 2)];
    let t0 = rec.invoke(0, planned(&seed));
    let mut txn = db.begin_with(isolation);
    let mops: Vec<Mop> = seed
        .iter()
        .flat_map(|s| exec_step(&mut txn, s).unwrap())
        .collect();
    rec.complete(t0, outcome_of(txn.commit().map(drop)), Some(mops));

    let s1 = [Step::Read(X), Step::Read(Y), Step::Append(X, 3)];
    let s2 = [Step::Read(X), Step::Read(Y), Step::Append(Y, 4)];
    let i1 = rec.invoke(1, planned(&s1));
    let i2 = rec.invoke(2, planned(&s2));
    let mut t1 = db.begin_with(isolation);
    let mut t2 = db.begin_with(isolation);
    let (mut m1, mut m2) = (Vec::new(), Vec::new());
    for (a, b) in s1.iter().zip(&s2) {
        m1.extend(exec_step(&mut t1, a).unwrap());
        m2.extend(exec_step(&mut t2, b).unwrap());
    }
    rec.complete(i1, outcome_of(t1.commit().map(drop)), Some(m1));
    rec.complete(i2, outcome_of(t2.commit().map(drop)), Some(m2));

    let mut h = rec.into_history();
    h.final_state = final_state(&db, &h);
    h
}

#[test]
fn scripted_write_skew_under_si_is_not_serializable() {
    let h = scripted_write_skew(Isolation::Snapshot);
    assert!(
        h.txns.iter().all(Txn::is_ok),
        "snapshot isolation should commit both:\n{}",
        describe(&h)
    );
    check_sanity(&h);
    assert_eq!(write_skews(&h), [(1, 2)], "{}", describe(&h));
    let search = serial_order(&h);
    assert_eq!(
        search.order,
        None,
        "write skew explained serially:\n{}",
        describe(&h)
    );
}

#[test]
fn scripted_write_skew_under_serializable_aborts_one_and_is_serializable() {
    let h = scripted_write_skew(Isolation::Serializable);
    let outcomes: Vec<&Outcome> = h.txns.iter().map(|t| &t.outcome).collect();
    assert_eq!(
        outcomes,
        [
            &Outcome::Ok,
            &Outcome::Ok,
            &Outcome::Fail("read-write conflict".into())
        ],
        "{}",
        describe(&h)
    );
    check_sanity(&h);
    assert!(write_skews(&h).is_empty());
    let search = serial_order(&h);
    assert_eq!(search.order, Some(vec![0, 1]), "{}", describe(&h));
}

// --- small random runs ---------------------------------------------------------------------

fn rounds() -> u64 {
    std::env::var("SNAPKV_BRUTE_ROUNDS").map_or(200, |v| {
        v.parse().expect("SNAPKV_BRUTE_ROUNDS must be a number")
    })
}

/// Seven transaction attempts from four threads over two or three keys, all started together
/// and yielding often, so that they overlap.
fn small_run(isolation: Isolation, round: u64) -> History {
    let mut cfg = Config::new(isolation, Workload::Random { scan_pct: 20 });
    cfg.threads = 4;
    cfg.txns = MAX_COMMITTED;
    cfg.slots = 2 + (round % 2) as usize;
    cfg.max_appends_per_key = u32::MAX;
    cfg.yield_pct = 60;
    cfg.pause_permille = 50;
    cfg.pause = std::time::Duration::from_micros(50);
    cfg.seed = round ^ fastrand::u64(..);
    run(&cfg)
}

#[test]
fn small_serializable_runs_are_serializable() {
    let (mut committed, mut failed, mut steps) = (0, 0, 0);
    let rounds = rounds();
    for round in 0..rounds {
        let h = small_run(Isolation::Serializable, round);
        let s = check_sanity(&h);
        committed += s.ok;
        failed += s.fail;
        let search = serial_order(&h);
        steps += search.steps;
        assert!(
            search.order.is_some(),
            "round {round}: a Serializable history no serial order explains:\n{}",
            describe(&h)
        );
    }
    eprintln!(
        "serializable: {rounds} rounds, {committed} committed and {failed} failed transactions, \
         {steps} search steps; all explained"
    );
    assert!(
        failed > 0,
        "no conflicts in {rounds} rounds: the runs did not overlap"
    );
}

/// The same small runs under snapshot isolation: not asserted serializable (write skew is
/// allowed), but the two independent checks must agree: a history with write skew has no
/// serial order.
#[test]
fn small_si_runs_cross_check() {
    let (mut unexplained, mut skewed, mut failed, mut steps) = (0, 0, 0, 0);
    let rounds = rounds();
    for round in 0..rounds {
        let h = small_run(Isolation::Snapshot, round);
        failed += check_sanity(&h).fail;
        let search = serial_order(&h);
        steps += search.steps;
        let skew = !write_skews(&h).is_empty();
        unexplained += usize::from(search.order.is_none());
        skewed += usize::from(skew);
        assert!(
            !(skew && search.order.is_some()),
            "round {round}: write skew found, yet a serial order explains it:\n{}",
            describe(&h)
        );
    }
    eprintln!(
        "snapshot isolation: {rounds} rounds, {failed} failed transactions, {unexplained} \
         histories not serializable ({skewed} with write skew); {steps} search steps"
    );
}
