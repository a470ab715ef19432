use snapkv::Db;
fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}
fn main() {
    let hold = std::env::args().nth(1).as_deref() == Some("hold");
    let db = Db::new();
    for i in 0..100_000u64 {
        db.put(key(i), [7u8; 100]).unwrap();
    }
    let old = hold.then(|| db.snapshot());
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..200_000 {
        db.put(key(rng.u64(0..100_000)), [1u8; 100]).unwrap();
    }
    let t = std::time::Instant::now();
    for _ in 0..300_000 {
        db.put(key(rng.u64(0..100_000)), [1u8; 100]).unwrap();
    }
    eprintln!("{:?} {:?}", t.elapsed(), db.stats());
    drop(old);
}
