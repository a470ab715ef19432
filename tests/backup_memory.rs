//! A backup streams the store into its file: the heap it needs does not grow with the
//! number of keys. Heap bytes are counted by a global allocator that records the peak.

#[path = "common/peak_alloc.rs"]
mod peak_alloc;

use peak_alloc::PeakAlloc;
use snapkv::Db;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc::new();

#[test]
fn a_backup_needs_no_copy_of_the_store() {
    const KEYS: u64 = 200_000;
    let before = HEAP.live();
    let db = Db::new();
    for i in 0..KEYS {
        db.put(format!("user{i:012}"), [i as u8; 100]).unwrap();
    }
    // After a bulk load the new keys are sorted into the index's run: the index's own memory,
    // which any scan pays once, not the backup's.
    let seen = db
        .snapshot()
        .scan_with(.., |_, _| std::ops::ControlFlow::Continue(()));
    assert_eq!(seen as u64, KEYS);
    // That sort runs on the index's builder thread, concurrently: an explicit collection
    // waits for it and finishes it, so that it does not land in the backup's measurement.
    db.collect_garbage();
    let store = HEAP.live() - before;
    let tmp = tempfile::tempdir().unwrap();

    HEAP.reset_peak();
    let start = HEAP.live();
    let report = db.backup(tmp.path().join("backup")).unwrap();
    let extra = HEAP.peak() - start;

    assert_eq!(report.keys, KEYS);
    // The file holds every key and value (116 bytes of them per entry, 16 of framing).
    assert!(report.bytes > KEYS * 116, "{} bytes", report.bytes);
    // A copy of the keys alone would be over 3 MB, of the values 20 MB; the streaming
    // backup holds two checkpoint frames (64 KiB each) and small change.
    assert!(
        extra < 512 << 10,
        "a backup of a {store}-byte store took {extra} bytes of heap at its peak"
    );
    println!("store {store} bytes, backup peak {extra} bytes above it");
}
