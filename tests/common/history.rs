//! A list-append workload over snapkv, its recorded history, and checks that need no external
//! tool. Shared by `tests/history.rs` (which also writes the history out in the Elle
//! list-append format for the `adya` checker) and `tests/history_brute.rs` (brute-force
//! serializability of small histories).
//!
//! Every key holds a list of unique integers (encoded as concatenated big-endian `u64`s). A
//! transaction is a list of micro-operations:
//!
//! * append: read the key's list, write it back with one new, globally unique integer at the
//!   end; recorded as a read of the key (what the transaction saw) followed by the append;
//! * read: the key's whole list;
//! * scan: a key range (by `range`, forwards, backwards or from both ends, or by
//!   `scan_prefix`), recorded as a read of *every* key id in the range, absent keys as `[]`.
//!
//! Nothing the store reports about itself (timestamps, versions) goes into the history: only
//! what clients asked for and what they observed, plus wall-clock times for real-time order.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use snapkv::{Db, Error, Isolation, Transaction};

/// A logical key: stored as `k` followed by ten decimal digits, so that byte order is numeric
/// order and every range of ids is a range of stored keys.
pub type Key = u64;
/// An appended element.
pub type Elem = u64;

pub fn key_bytes(k: Key) -> Vec<u8> {
    format!("k{k:010}").into_bytes()
}

pub fn parse_key(b: &[u8]) -> Key {
    let s = std::str::from_utf8(b).expect("key is not UTF-8");
    assert!(
        s.len() == 11 && s.starts_with('k'),
        "unexpected key {s:?} in the store"
    );
    s[1..].parse().expect("key suffix is not a number")
}

pub fn encode(list: &[Elem]) -> Vec<u8> {
    list.iter().flat_map(|e| e.to_be_bytes()).collect()
}

pub fn decode(v: &[u8]) -> Vec<Elem> {
    assert!(v.len() % 8 == 0, "value of {} bytes is not a list", v.len());
    v.chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

/// One micro-operation as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mop {
    /// The whole list of `key`; `None` while unknown (invocations, failed transactions).
    Read {
        key: Key,
        list: Option<Vec<Elem>>,
    },
    Append {
        key: Key,
        elem: Elem,
    },
}

/// How the scan of a [`Step::Scan`] is issued (they must all observe the same thing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKind {
    Forward,
    Reverse,
    /// Alternately from the front and the back.
    BothEnds,
    /// `scan_prefix` of the ten ids sharing all but the last digit (`lo` is a multiple of 10).
    Prefix,
}

/// What a transaction is asked to do, decided before it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Read(Key),
    Append(Key, Elem),
    /// Every key id in `lo..hi`.
    Scan(Key, Key, ScanKind),
}

impl Step {
    /// The micro-operations of this step with nothing observed yet.
    pub fn planned(&self) -> Vec<Mop> {
        match *self {
            Step::Read(key) => vec![Mop::Read { key, list: None }],
            Step::Append(key, elem) => {
                vec![Mop::Read { key, list: None }, Mop::Append { key, elem }]
            }
            Step::Scan(lo, hi, _) => (lo..hi).map(|key| Mop::Read { key, list: None }).collect(),
        }
    }
}

/// Runs one step in `txn` and returns what it observed, as micro-operations.
pub fn exec_step(txn: &mut Transaction, step: &Step) -> Result<Vec<Mop>, Error> {
    Ok(match *step {
        Step::Read(key) => vec![Mop::Read {
            key,
            list: Some(read(txn, key)?),
        }],
        Step::Append(key, elem) => {
            let seen = read(txn, key)?;
            let mut new = seen.clone();
            new.push(elem);
            txn.put(key_bytes(key), encode(&new))?;
            vec![
                Mop::Read {
                    key,
                    list: Some(seen),
                },
                Mop::Append { key, elem },
            ]
        }
        Step::Scan(lo, hi, kind) => {
            let pairs = scan(txn, lo, hi, kind);
            let mut found: BTreeMap<Key, Vec<Elem>> = BTreeMap::new();
            for (k, v) in pairs {
                let key = parse_key(&k);
                assert!(
                    (lo..hi).contains(&key),
                    "scan of {lo}..{hi} ({kind:?}) returned key {key}"
                );
                let dup = found.insert(key, decode(&v));
                assert!(dup.is_none(), "scan {kind:?} returned key {key} twice");
            }
            (lo..hi)
                .map(|key| Mop::Read {
                    key,
                    list: Some(found.remove(&key).unwrap_or_default()),
                })
                .collect()
        }
    })
}

fn read(txn: &Transaction, key: Key) -> Result<Vec<Elem>, Error> {
    Ok(txn
        .get(key_bytes(key))?
        .map_or_else(Vec::new, |v| decode(&v)))
}

/// The raw pairs a scan yields, checked to come in strictly monotonic key order.
fn scan(txn: &Transaction, lo: Key, hi: Key, kind: ScanKind) -> Vec<(bytes::Bytes, bytes::Bytes)> {
    let (a, b) = (key_bytes(lo), key_bytes(hi));
    let ascending = |v: &[(bytes::Bytes, bytes::Bytes)], what: &str| {
        assert!(
            v.windows(2).all(|w| w[0].0 < w[1].0),
            "{what} scan of {lo}..{hi} is out of order"
        );
    };
    match kind {
        ScanKind::Forward => {
            let v: Vec<_> = txn.range(a.as_slice()..b.as_slice()).collect();
            ascending(&v, "forward");
            v
        }
        ScanKind::Reverse => {
            let mut v: Vec<_> = txn.range(a.as_slice()..b.as_slice()).rev().collect();
            v.reverse();
            ascending(&v, "reverse");
            v
        }
        ScanKind::BothEnds => {
            let mut it = txn.range(a.as_slice()..b.as_slice());
            let (mut front, mut back) = (Vec::new(), Vec::new());
            loop {
                let Some(x) = it.next() else { break };
                front.push(x);
                let Some(y) = it.next_back() else { break };
                back.push(y);
            }
            back.reverse();
            front.extend(back);
            ascending(&front, "two-ended");
            front
        }
        ScanKind::Prefix => {
            assert!(lo % 10 == 0 && hi == lo + 10);
            let prefix = format!("k{:09}", lo / 10);
            let v: Vec<_> = txn.scan_prefix(prefix.as_bytes()).collect();
            ascending(&v, "prefix");
            v
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed.
    Ok,
    /// Certainly not committed (a conflict at commit).
    Fail(String),
    /// Unknown: any other error. The workload never expects one.
    Info(String),
}

/// One transaction attempt.
#[derive(Clone, Debug)]
pub struct Txn {
    pub process: u64,
    /// As invoked: reads carry `None`.
    pub planned: Vec<Mop>,
    /// As completed: for `Ok`, every read carries what it saw; otherwise `planned`.
    pub mops: Vec<Mop>,
    pub outcome: Outcome,
    /// Nanoseconds since the run started.
    pub invoked_ns: u64,
    pub completed_ns: u64,
}

impl Txn {
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

/// An entry of the history: the invocation or the completion of `txns[i]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Invoke(usize),
    Complete(usize),
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub txns: Vec<Txn>,
    /// Invocations and completions in the real-time order they were recorded in: an
    /// invocation is recorded before its transaction begins, a completion after its commit
    /// returned.
    pub events: Vec<Event>,
    /// Every key's list, read after all threads finished.
    pub final_state: BTreeMap<Key, Vec<Elem>>,
}

/// Records invocations and completions from many threads in one real-time order.
pub struct Recorder {
    inner: Mutex<History>,
    start: Instant,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(History::default()),
            start: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn invoke(&self, process: u64, planned: Vec<Mop>) -> usize {
        let mut h = self.inner.lock().unwrap();
        let i = h.txns.len();
        let t = self.now();
        h.txns.push(Txn {
            process,
            mops: planned.clone(),
            planned,
            outcome: Outcome::Info("pending".into()),
            invoked_ns: t,
            completed_ns: t,
        });
        h.events.push(Event::Invoke(i));
        i
    }

    pub fn complete(&self, i: usize, outcome: Outcome, observed: Option<Vec<Mop>>) {
        let mut h = self.inner.lock().unwrap();
        let t = self.now();
        let txn = &mut h.txns[i];
        txn.completed_ns = t;
        if outcome == Outcome::Ok {
            txn.mops = observed.expect("an ok completion carries its observations");
        }
        txn.outcome = outcome;
        h.events.push(Event::Complete(i));
    }

    pub fn into_history(self) -> History {
        self.inner.into_inner().unwrap()
    }
}

/// What the transactions of a run look like.
#[derive(Clone, Copy, Debug)]
pub enum Workload {
    /// 1–4 random steps: appends and reads half and half, and `scan_pct` percent scans.
    Random { scan_pct: u32 },
    /// Write skew bait: read both keys of a random pair (slots `2p`, `2p + 1`), then append
    /// to one of the two.
    Skew { pairs: usize },
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub isolation: Isolation,
    pub threads: usize,
    /// Transaction attempts in total (committed or not).
    pub txns: usize,
    /// Hot keys in play at once.
    pub slots: usize,
    /// Appends after which a hot key is retired for a fresh one (keeps lists, and so the
    /// history, small); `u32::MAX` never retires.
    pub max_appends_per_key: u32,
    pub workload: Workload,
    /// Percent chance of yielding the CPU between two steps and before commit (widens the
    /// windows in which transactions overlap).
    pub yield_pct: u32,
    /// Per-mille chance of sleeping `pause` between two steps (long-lived snapshots).
    pub pause_permille: u32,
    pub pause: Duration,
    pub seed: u64,
}

impl Config {
    pub fn new(isolation: Isolation, workload: Workload) -> Self {
        Self {
            isolation,
            threads: 8,
            txns: 2000,
            slots: 6,
            max_appends_per_key: 64,
            workload,
            yield_pct: 30,
            pause_permille: 5,
            pause: Duration::from_micros(300),
            seed: 0,
        }
    }
}

/// The hot keys: slot `s` currently holds key `current[s]`; retired keys are never written
/// again, fresh ids come from `next`.
struct KeyPool {
    current: Vec<Key>,
    appends: Vec<u32>,
    next: Key,
    max: u32,
}

impl KeyPool {
    fn new(slots: usize, max: u32) -> Self {
        Self {
            current: (0..slots as Key).collect(),
            appends: vec![0; slots],
            next: slots as Key,
            max,
        }
    }

    fn key(&self, slot: usize) -> Key {
        self.current[slot]
    }

    /// Picks `slot`'s key for an append, retiring it if it has had its share.
    fn append_to(&mut self, slot: usize) -> Key {
        let k = self.current[slot];
        self.appends[slot] += 1;
        if self.appends[slot] >= self.max {
            self.current[slot] = self.next;
            self.next += 1;
            self.appends[slot] = 0;
        }
        k
    }
}

fn plan(
    cfg: &Config,
    rng: &mut fastrand::Rng,
    pool: &Mutex<KeyPool>,
    elems: &AtomicU64,
) -> Vec<Step> {
    let mut pool = pool.lock().unwrap();
    let elem = || elems.fetch_add(1, Ordering::Relaxed);
    match cfg.workload {
        Workload::Random { scan_pct } => (0..rng.usize(1..=4))
            .map(|_| {
                let slot = rng.usize(0..cfg.slots);
                let roll = rng.u32(0..100);
                if roll < scan_pct {
                    let base = pool.key(slot);
                    let kind = match rng.u32(0..4) {
                        0 => ScanKind::Forward,
                        1 => ScanKind::Reverse,
                        2 => ScanKind::BothEnds,
                        _ => ScanKind::Prefix,
                    };
                    if kind == ScanKind::Prefix {
                        let lo = base / 10 * 10;
                        Step::Scan(lo, lo + 10, kind)
                    } else {
                        // Around a hot key: retired neighbours, other hot keys, and ids not
                        // created yet (phantoms to be).
                        let lo = base.saturating_sub(rng.u64(0..3));
                        Step::Scan(lo, base + rng.u64(1..5), kind)
                    }
                } else if roll < scan_pct + (100 - scan_pct) / 2 {
                    Step::Append(pool.append_to(slot), elem())
                } else {
                    Step::Read(pool.key(slot))
                }
            })
            .collect(),
        Workload::Skew { pairs } => {
            let p = rng.usize(0..pairs);
            let (a, b) = (pool.key(2 * p), pool.key(2 * p + 1));
            let target = 2 * p + rng.usize(0..2);
            vec![
                Step::Read(a),
                Step::Read(b),
                Step::Append(pool.append_to(target), elem()),
            ]
        }
    }
}

fn pause(cfg: &Config, rng: &mut fastrand::Rng) {
    if rng.u32(0..1000) < cfg.pause_permille {
        std::thread::sleep(cfg.pause);
    } else if rng.u32(0..100) < cfg.yield_pct {
        std::thread::yield_now();
    }
}

/// Runs `cfg.txns` transaction attempts from `cfg.threads` threads against a fresh database
/// and returns the recorded history. Process ids are thread indices (a thread that ever saw an
/// indeterminate outcome would continue as a new process, as in Jepsen).
pub fn run(cfg: &Config) -> History {
    run_on(&Db::new(), cfg)
}

pub fn run_on(db: &Db, cfg: &Config) -> History {
    let recorder = Recorder::new();
    let pool = Mutex::new(KeyPool::new(cfg.slots, cfg.max_appends_per_key));
    let elems = AtomicU64::new(1);
    let tickets = AtomicUsize::new(0);
    let barrier = Barrier::new(cfg.threads);
    std::thread::scope(|s| {
        for thread in 0..cfg.threads {
            let (recorder, pool, elems, tickets, barrier) =
                (&recorder, &pool, &elems, &tickets, &barrier);
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(
                    cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ thread as u64,
                );
                let mut process = thread as u64;
                barrier.wait();
                while tickets.fetch_add(1, Ordering::Relaxed) < cfg.txns {
                    let steps = plan(cfg, &mut rng, pool, elems);
                    let planned: Vec<Mop> = steps.iter().flat_map(Step::planned).collect();
                    let id = recorder.invoke(process, planned);
                    let mut txn = db.begin_with(cfg.isolation);
                    let mut observed = Vec::new();
                    let mut result = Ok(());
                    for step in &steps {
                        pause(cfg, &mut rng);
                        match exec_step(&mut txn, step) {
                            Ok(mops) => observed.extend(mops),
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    pause(cfg, &mut rng);
                    let result = result.and_then(|()| txn.commit().map(drop));
                    let outcome = outcome_of(result);
                    let info = matches!(outcome, Outcome::Info(_));
                    recorder.complete(id, outcome, Some(observed));
                    if info {
                        process += cfg.threads as u64;
                    }
                }
            });
        }
    });
    let mut h = recorder.into_history();
    h.final_state = final_state(db, &h);
    h
}

pub fn outcome_of(result: Result<(), Error>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok,
        Err(Error::Conflict { kind, .. }) => Outcome::Fail(format!("{kind} conflict")),
        Err(e) => Outcome::Info(e.to_string()),
    }
}

/// Every key the history mentions (and nothing else in the store), read after the run.
pub fn final_state(db: &Db, h: &History) -> BTreeMap<Key, Vec<Elem>> {
    let snap = db.snapshot();
    let mut out = BTreeMap::new();
    for (k, v) in snap.iter() {
        out.insert(parse_key(&k), decode(&v));
    }
    let mentioned: HashSet<Key> = h
        .txns
        .iter()
        .flat_map(|t| &t.planned)
        .map(|m| match m {
            Mop::Read { key, .. } | Mop::Append { key, .. } => *key,
        })
        .collect();
    for k in out.keys() {
        assert!(
            mentioned.contains(k),
            "key {k} is in the store but no transaction used it"
        );
    }
    out
}

/// Counts from [`check_sanity`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub txns: usize,
    pub ok: usize,
    pub fail: usize,
    pub ok_read_only: usize,
    pub ok_appends: usize,
    pub ok_reads: usize,
    pub keys: usize,
}

/// Checks a history on its own terms, trusting nothing but the observations; panics with an
/// explanation on the first violation:
///
/// * no indeterminate outcomes (the store never returns a non-conflict error here);
/// * no duplicates in any list;
/// * every element an ok transaction read was appended to that key by a committed
///   transaction (no aborted or invented reads);
/// * the final list of each key holds exactly the committed appends to it, and every ok read
///   of the key is a prefix of it (all reads of a key are prefix-consistent);
/// * internal consistency: within a transaction, repeated reads agree and reads see its own
///   appends;
/// * no lost update: what each committed append wrote (what it read, plus its element) is a
///   prefix of the final list;
/// * sessions: a process's committed transaction sees, for every key, at least what its
///   earlier committed transactions observed or wrote.
pub fn check_sanity(h: &History) -> Summary {
    let mut s = Summary {
        txns: h.txns.len(),
        keys: h.final_state.len(),
        ..Summary::default()
    };
    // (key, element) -> appending transaction.
    let mut writer: HashMap<(Key, Elem), usize> = HashMap::new();
    for (i, t) in h.txns.iter().enumerate() {
        match &t.outcome {
            Outcome::Ok => s.ok += 1,
            Outcome::Fail(_) => s.fail += 1,
            Outcome::Info(why) => panic!("transaction {i} ended indeterminately: {why}"),
        }
        for m in &t.planned {
            if let Mop::Append { key, elem } = *m {
                assert!(
                    writer.insert((key, elem), i).is_none(),
                    "element {elem} planned twice for key {key}"
                );
            }
        }
    }
    let show = |i: usize| format!("T{i} {:?} {:?}", h.txns[i].outcome, h.txns[i].mops);

    let mut committed: BTreeMap<Key, HashSet<Elem>> = BTreeMap::new();
    for (&(k, e), &i) in &writer {
        if h.txns[i].is_ok() {
            committed.entry(k).or_default().insert(e);
        }
    }
    for (k, list) in &h.final_state {
        let set: HashSet<Elem> = list.iter().copied().collect();
        assert_eq!(
            set.len(),
            list.len(),
            "final list of key {k} has duplicates: {list:?}"
        );
        let expected = committed.remove(k).unwrap_or_default();
        if set != expected {
            let lost: Vec<_> = expected.difference(&set).collect();
            let extra: Vec<_> = set.difference(&expected).collect();
            panic!(
                "final list of key {k} is {list:?}: committed appends missing: {lost:?}; \
                 elements that no committed transaction appended: {extra:?}"
            );
        }
    }
    if let Some((k, elems)) = committed.into_iter().next() {
        panic!("committed appends {elems:?} to key {k}, which is absent at the end");
    }

    let empty = Vec::new();
    let final_of = |k: Key| h.final_state.get(&k).unwrap_or(&empty);
    // process -> key -> the longest list its committed transactions saw or wrote.
    let mut session: HashMap<u64, HashMap<Key, Vec<Elem>>> = HashMap::new();
    for ev in &h.events {
        let Event::Complete(i) = *ev else { continue };
        let t = &h.txns[i];
        if !t.is_ok() {
            continue;
        }
        let mut appended = false;
        let mut state: HashMap<Key, Vec<Elem>> = HashMap::new();
        let seen = session.entry(t.process).or_default();
        for m in &t.mops {
            match m {
                Mop::Read { key, list } => {
                    s.ok_reads += 1;
                    let list = list
                        .as_ref()
                        .unwrap_or_else(|| panic!("ok read without a value: {}", show(i)));
                    let uniq: HashSet<_> = list.iter().collect();
                    assert_eq!(
                        uniq.len(),
                        list.len(),
                        "read of key {key} has duplicates: {}",
                        show(i)
                    );
                    for e in list {
                        match writer.get(&(*key, *e)) {
                            None => panic!(
                                "read of key {key} contains {e}, which nobody appended to it: {}",
                                show(i)
                            ),
                            Some(&w) if !h.txns[w].is_ok() => panic!(
                                "G1a: read of key {key} contains {e}, appended by an aborted \
                                 transaction: {} / writer {}",
                                show(i),
                                show(w)
                            ),
                            Some(_) => {}
                        }
                    }
                    let fin = final_of(*key);
                    assert!(
                        fin.starts_with(list),
                        "read of key {key} = {list:?} is not a prefix of its final list {fin:?}: {}",
                        show(i)
                    );
                    if let Some(before) = state.get(key) {
                        assert_eq!(
                            before,
                            list,
                            "internal: key {key} read as {list:?}, but the transaction's own \
                             earlier reads and appends say {before:?}: {}",
                            show(i)
                        );
                    } else if let Some(before) = seen.get(key) {
                        assert!(
                            list.starts_with(before),
                            "session: process {} read key {key} as {list:?}, missing what its \
                             earlier transactions saw or wrote ({before:?}): {}",
                            t.process,
                            show(i)
                        );
                    }
                    state.insert(*key, list.clone());
                }
                Mop::Append { key, elem } => {
                    appended = true;
                    s.ok_appends += 1;
                    let cur = state.get_mut(key).unwrap_or_else(|| {
                        panic!("append to key {key} without a read before it: {}", show(i))
                    });
                    cur.push(*elem);
                    let fin = final_of(*key);
                    assert!(
                        fin.starts_with(cur),
                        "lost update: a committed transaction wrote key {key} = {cur:?}, not a \
                         prefix of its final list {fin:?}: {}",
                        show(i)
                    );
                }
            }
        }
        if !appended {
            s.ok_read_only += 1;
        }
        for (k, v) in state {
            let e = seen.entry(k).or_default();
            if v.len() >= e.len() {
                *e = v;
            }
        }
    }
    s
}

/// A committed transaction's reads of keys before it appended to them itself, and its appends.
struct Footprint {
    reads: HashMap<Key, Vec<Elem>>,
    appends: HashMap<Key, Elem>,
}

fn footprint(t: &Txn) -> Footprint {
    let mut f = Footprint {
        reads: HashMap::new(),
        appends: HashMap::new(),
    };
    for m in &t.mops {
        match m {
            Mop::Read { key, list: Some(l) } if !f.appends.contains_key(key) => {
                f.reads.entry(*key).or_insert_with(|| l.clone());
            }
            Mop::Read { .. } => {}
            Mop::Append { key, elem } => {
                f.appends.entry(*key).or_insert(*elem);
            }
        }
    }
    f
}

/// Write skew (a G2-item cycle of two anti-dependencies) between committed transactions:
/// pairs `(a, b)` where `a` appended to `x` and read `y` without `b`'s append, and `b`
/// appended to `y` and read `x` without `a`'s append (and neither wrote the other's key).
pub fn write_skews(h: &History) -> Vec<(usize, usize)> {
    let ok: Vec<(usize, Footprint)> = h
        .txns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_ok())
        .map(|(i, t)| (i, footprint(t)))
        .collect();
    // Position of each element in its key's final list (reads are prefixes of it).
    let pos: HashMap<(Key, Elem), usize> = h
        .final_state
        .iter()
        .flat_map(|(k, l)| l.iter().enumerate().map(move |(p, e)| ((*k, *e), p)))
        .collect();
    // key -> (position, index into `ok`) of the committed appends to it, by position.
    let mut appenders: HashMap<Key, Vec<(usize, usize)>> = HashMap::new();
    for (x, (_, f)) in ok.iter().enumerate() {
        for (k, e) in &f.appends {
            let p = pos.get(&(*k, *e)).copied().unwrap_or(usize::MAX);
            appenders.entry(*k).or_default().push((p, x));
        }
    }
    for v in appenders.values_mut() {
        v.sort_unstable();
    }
    // `r` read a key `w` appended to, without `w`'s element (and did not append to it).
    let misses = |r: &Footprint, w: &Footprint| {
        w.appends.iter().any(|(k, e)| {
            !r.appends.contains_key(k) && r.reads.get(k).is_some_and(|l| !l.contains(e))
        })
    };
    let mut out = HashSet::new();
    for (x, (_, a)) in ok.iter().enumerate() {
        for (k, l) in &a.reads {
            if a.appends.contains_key(k) {
                continue;
            }
            let Some(later) = appenders.get(k) else {
                continue;
            };
            let from = later.partition_point(|&(p, _)| p < l.len());
            for &(_, y) in &later[from..] {
                let b = &ok[y].1;
                if y != x && misses(a, b) && misses(b, a) {
                    out.insert((ok[x.min(y)].0, ok[x.max(y)].0));
                }
            }
        }
    }
    let mut out: Vec<_> = out.into_iter().collect();
    out.sort_unstable();
    out
}

/// The history in Elle's list-append format, as JSON lines (`{"index":0,"type":"invoke",...}`),
/// the format `adya check -m list-append` reads. Keys and elements are integers; reads in
/// invocations and in failed transactions are `null`, and `[]` in ok completions means the key
/// was absent.
pub fn to_jsonl(h: &History) -> String {
    let mut out = String::new();
    for (index, ev) in h.events.iter().enumerate() {
        let (i, invoke) = match *ev {
            Event::Invoke(i) => (i, true),
            Event::Complete(i) => (i, false),
        };
        let t = &h.txns[i];
        let (kind, error, time, mops) = match (&t.outcome, invoke) {
            (_, true) => ("invoke", None, t.invoked_ns, &t.planned),
            (Outcome::Ok, false) => ("ok", None, t.completed_ns, &t.mops),
            (Outcome::Fail(e), false) => ("fail", Some(e), t.completed_ns, &t.planned),
            (Outcome::Info(e), false) => ("info", Some(e), t.completed_ns, &t.planned),
        };
        let _ = write!(
            out,
            r#"{{"index":{index},"type":"{kind}","f":"txn","process":{},"time":{time},"value":["#,
            t.process
        );
        for (n, m) in mops.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            match m {
                Mop::Append { key, elem } => {
                    let _ = write!(out, r#"["append",{key},{elem}]"#);
                }
                Mop::Read { key, list: None } => {
                    let _ = write!(out, r#"["r",{key},null]"#);
                }
                Mop::Read { key, list: Some(l) } => {
                    let _ = write!(out, r#"["r",{key},["#);
                    for (n, e) in l.iter().enumerate() {
                        if n > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{e}");
                    }
                    out.push_str("]]");
                }
            }
        }
        out.push(']');
        if let Some(e) = error {
            let _ = write!(out, r#","error":"{}""#, json_escape(e));
        }
        out.push_str("}\n");
    }
    out
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `target/histories` under the package root, created if needed.
pub fn histories_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/histories");
    std::fs::create_dir_all(&dir).expect("create target/histories");
    dir
}
