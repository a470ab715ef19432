//! The snapshot / transaction / retry story in one file.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use snapkv::{Db, Error};

fn main() -> Result<(), Error> {
    let db = Db::builder()
        .max_key_len(1024)
        .max_value_len(1 << 20)
        .build()?;

    // Auto-commit writes return their commit timestamp.
    let ts = db.put(b"greeting", b"hello")?;
    println!("put at ts {ts}");

    // A snapshot is a frozen view: later commits do not show up in it.
    let snap = db.snapshot();
    db.put(b"greeting", b"hello, world")?;
    println!(
        "snapshot at {} sees {:?}; the db now holds {:?}",
        snap.ts(),
        snap.get(b"greeting")?,
        db.get(b"greeting")?
    );
    drop(snap);

    // A transaction sees its own writes and commits them atomically.
    let mut txn = db.begin();
    txn.put(b"order/1", b"pending")?;
    txn.put(b"order/2", b"pending")?;
    println!(
        "inside the txn: {} orders",
        txn.scan_prefix(b"order/").count()
    );
    println!(
        "outside before commit: {} orders",
        db.snapshot().scan_prefix(b"order/").count()
    );
    txn.commit()?;

    // Two transactions writing the same key: the first committer wins.
    let mut a = db.begin();
    let mut b = db.begin();
    a.put(b"order/1", b"shipped")?;
    b.put(b"order/1", b"cancelled")?;
    a.commit()?;
    match b.commit() {
        Err(e) if e.is_retryable() => println!("second writer lost: {e}"),
        other => println!("unexpected: {other:?}"),
    }

    // `update` retries conflicts for you.
    let count = db.update(|txn| {
        let n = txn.scan_prefix(b"order/").count();
        txn.put(b"order/count", n.to_string())?;
        Ok(n)
    })?;
    println!("counted {count} orders");
    Ok(())
}
