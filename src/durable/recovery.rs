//! Recovery of a database directory on open: the state the log's surviving records describe.
//!
//! This version replays log segments only (no checkpoints yet): every `*.log` segment in
//! number order, each parsed with [`segment::parse`] (a segment followed by another was
//! synced to its end, so damage anywhere in it is corruption), every frame's record decoded
//! and applied. The newest segment may end in a crash's torn tail: it is cut off (truncated,
//! or the file removed if not even its header survived) and reported.
//!
//! Records are applied per key by timestamp, not by log order: log order is not timestamp
//! order across keys (`docs/durability.md` §5.2), though it is per key (same-key commits
//! append under the key's chain lock), so keeping each key's write with the highest
//! timestamp is the same as applying the records in log order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::record;
use super::segment::{self, SegmentEnd};
use super::storage::Storage;
use crate::error::{Error, Result};

/// What the directory holds.
pub(crate) struct Recovered {
    pub(crate) checkpoint_ts: Option<u64>,
    /// Live keys with their newest value and the timestamp that wrote it, sorted by key.
    pub(crate) entries: Vec<(Bytes, Bytes, u64)>,
    /// The highest timestamp in the checkpoint or any replayed record (0 if none).
    pub(crate) max_ts: u64,
    /// The number the next new segment must get (above every segment file present).
    pub(crate) next_segment: u64,
    pub(crate) records_replayed: u64,
    pub(crate) torn_tail: Option<TornTail>,
}

/// The cut-off end of the newest segment that recovery dropped.
pub(crate) struct TornTail {
    pub(crate) file: PathBuf,
    pub(crate) offset: u64,
    pub(crate) dropped: u64,
}

/// How to recover.
#[derive(Default)]
pub(crate) struct RecoveryOptions {
    /// Truncate at corruption instead of failing (not supported by this version: corruption
    /// is always an error).
    pub(crate) repair: bool,
}

/// Reads every segment in `dir`, drops the newest one's torn tail, and returns the state.
pub(crate) fn recover<S: Storage>(
    storage: &S,
    dir: &Path,
    opts: RecoveryOptions,
) -> Result<Recovered> {
    // This version never repairs: corruption is always an error.
    let _ = opts.repair;
    let mut segments: Vec<(u64, String)> = storage
        .list(dir)
        .map_err(Error::io)?
        .into_iter()
        .filter_map(|name| segment::parse_file_name(&name).map(|n| (n, name)))
        .collect();
    segments.sort_unstable();
    let next_segment = segments.last().map_or(1, |(n, _)| n + 1);
    // Per key: the write with the highest timestamp (`None`: a delete).
    let mut state: BTreeMap<Bytes, (Option<Bytes>, u64)> = BTreeMap::new();
    let (mut max_ts, mut records_replayed, mut torn_tail) = (0, 0, None);
    for (i, (_, name)) in segments.iter().enumerate() {
        let path = dir.join(name);
        let bytes = storage.read(&path).map_err(Error::io)?;
        let newest = i + 1 == segments.len();
        let known_synced = if newest { 0 } else { u64::MAX };
        let read = segment::parse(&path, &bytes, known_synced)?;
        for f in &read.frames {
            let rec = record::decode(f.frame.payload).map_err(|e| Error::Corruption {
                file: path.clone(),
                offset: f.offset,
                what: e.to_string(),
            })?;
            max_ts = max_ts.max(rec.ts);
            records_replayed += 1;
            for w in rec.writes {
                match state.get(&w.key) {
                    Some((_, ts)) if *ts > rec.ts => {}
                    _ => {
                        state.insert(w.key, (w.value, rec.ts));
                    }
                }
            }
        }
        if let SegmentEnd::TornTail {
            offset, dropped, ..
        } = read.end
        {
            // Only the newest segment can end torn (`parse` calls it corruption otherwise).
            if read.header.is_none() {
                // Cut while being created: nothing in it was ever appended. Removed, not
                // emptied: an empty file followed by the next segment would read as damage.
                storage.remove(&path).map_err(Error::io)?;
                storage.sync_dir(dir).map_err(Error::io)?;
            } else {
                storage.truncate(&path, offset).map_err(Error::io)?;
            }
            torn_tail = Some(TornTail {
                file: path,
                offset,
                dropped,
            });
        }
    }
    let entries = state
        .into_iter()
        .filter_map(|(key, (value, ts))| value.map(|v| (key, v, ts)))
        .collect();
    Ok(Recovered {
        checkpoint_ts: None,
        entries,
        max_ts,
        next_segment,
        records_replayed,
        torn_tail,
    })
}
