//! The first bytes of a log segment, mapped shared and writable, so that appending a frame is a
//! copy into the page cache instead of a `write` system call.
//!
//! A shared mapping of a file *is* the file's page cache: once a copy into it returns, the
//! bytes are the file's content for every reader, and survive the process (a crash of the
//! process loses nothing copied; the kernel writes the pages back, and `fdatasync` on the
//! file writes them back and waits, as for bytes given to `write`).
//!
//! Mapping is `unsafe` because the mapped bytes belong to the file, which others could change
//! or cut under the map: a store into a page past the file's end raises `SIGBUS`, and bytes
//! that change under a Rust reference break its aliasing rules. The type is safe to use
//! because of how the crate uses the files it maps (see [`MappedFile::map`]) and because the
//! map is only ever *written* through [`MappedFile::write`], never read: a change made by
//! someone else could not be observed through it.

use std::fs::File;
use std::io;

use memmap2::{MmapMut, MmapOptions};

/// How far ahead of the writes the map's pages are faulted in, in bytes.
///
/// The first store into a page of a reserved file faults: the kernel allocates and zeroes a
/// page-cache page and maps it, a few microseconds. The log copies frames in under its buffer
/// lock, so a fault there kept every other committer waiting, often long enough to park them
/// (a sleep and a wake each). Faulting a megabyte in at once (`MADV_POPULATE_WRITE`, one
/// system call every few thousand frames) takes the faults off the frames.
const POPULATE_AHEAD: usize = 1 << 20;

/// The first [`len`](Self::len) bytes of a file, mapped shared and writable.
#[derive(Debug)]
pub(crate) struct MappedFile {
    map: MmapMut,
    /// The map's first this many bytes were faulted in for writing ([`POPULATE_AHEAD`]): a
    /// page boundary, or the map's length.
    populated: usize,
    /// The map's first this many bytes were written and unmapped from the page tables
    /// ([`MappedFile::write`]): a page boundary.
    released: usize,
}

impl MappedFile {
    /// Maps the first `len` bytes (at least 1) of `file`, which must be open for reading and
    /// writing, at least `len` bytes long, and have its blocks allocated (`fallocate`), so that
    /// no store into the map can fail for want of disk space (which would be a `SIGBUS`).
    ///
    /// Only for a log segment of a database directory this process holds the lock of
    /// (`durable::dir_lock`): that is what makes the mapping sound, see the `SAFETY` comment.
    pub(crate) fn map(file: &File, len: u64) -> io::Result<Self> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an empty mapping",
            ));
        }
        if file.metadata()?.len() < len as u64 {
            // A store past the file's end would raise SIGBUS: refuse instead.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mapping past the end of the file",
            ));
        }
        // SAFETY: the mapping stays valid, and nothing can be observed through it that the
        // type does not write, for as long as it lives:
        // - the file is at least `len` bytes long (checked above) with its blocks allocated
        //   (the caller's duty, `OsFile::reserve` calls `fallocate` first), and nobody cuts it
        //   while the map lives: the file is a log segment in a directory locked by this
        //   process (a second open, here or in another process, gets `Error::Locked`), created
        //   with mode 0600 (no other user may write it), and this crate truncates a segment
        //   only after unmapping it (`OsFile::finish` and its `Drop`) or before any log maps
        //   it (recovery runs before the log starts). Removing a segment (retirement) unlinks
        //   its name, which leaves the mapped inode intact.
        // - the map is only written (`write` below), never read, so a change made by someone
        //   else despite the above could garble the file but not a value this process reads.
        let map = unsafe { MmapOptions::new().len(len).map_mut(file)? };
        Ok(Self {
            map,
            populated: 0,
            released: 0,
        })
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Copies `data` into the file at `offset`.
    ///
    /// # Panics
    /// If `offset + data.len()` exceeds [`len`](Self::len): the caller splits its write at
    /// the end of the map.
    pub(crate) fn write(&mut self, offset: usize, data: &[u8]) {
        let end = offset + data.len();
        if end > self.populated {
            self.populate_ahead_of(offset, end);
        }
        self.map[offset..end].copy_from_slice(data);
    }

    /// Faults in the pages from `offset` (or the end of the populated part, if further) to
    /// [`POPULATE_AHEAD`] past `end`, and takes the pages wholly below `offset` out of the
    /// page tables. Advice only: if the kernel refuses either, the stores fault as they would
    /// have, and the pages stay mapped.
    ///
    /// Why the pages behind go: writing a dirty page back (the log's flusher, a sync) first
    /// write-protects every mapping of it, one TLB flush each, an interrupt of the committers'
    /// cores per 4 KiB page (~15% of the CPU of a `Never` workload, in a virtual machine). A
    /// page no longer mapped costs none, and one `MADV_DONTNEED` per megabyte flushes once.
    /// The writes only move forward, so the pages behind are never touched again.
    #[cold]
    fn populate_ahead_of(&mut self, offset: usize, end: usize) {
        let page = rustix::param::page_size();
        let behind = offset / page * page;
        if behind > self.released {
            // `MADV_DONTNEED` on a shared file mapping drops only the page-table entries: the
            // pages stay in the file's page cache (a dirty entry marks its page dirty first),
            // and an access afterwards would fault the file's content back in.
            // SAFETY: so nothing the type wrote is lost, and nothing is freed under a
            // reference: the map is never read, and is written only at or past `offset` now.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.released,
                    behind - self.released,
                )
            };
            self.released = behind;
        }
        let from = self.populated.max(offset / page * page);
        let to = (end + POPULATE_AHEAD)
            .next_multiple_of(page)
            .min(self.map.len());
        #[cfg(target_os = "linux")]
        let _ = self
            .map
            .advise_range(memmap2::Advice::PopulateWrite, from, to - from);
        self.populated = to;
    }
}

/// Starts writing back the dirty pages of `file` in `offset..offset + len`, without waiting
/// for them (`sync_file_range` with `SYNC_FILE_RANGE_WRITE` only): a later `fdatasync` then
/// finds them written or in flight. Advice only, like RocksDB's `bytes_per_sync`: a failure
/// is ignored (the sync that counts reports its own), and nothing becomes durable by it.
///
/// Why: a log segment left for the next is synced to its end while committers wait. Without
/// this (the log's flusher thread calls it), most of its 64 MiB are still dirty then (the
/// kernel's own writeback starts after seconds), and that sync took ~40 ms. It can block for
/// milliseconds itself (a full device queue): never on a committer's path.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a system call on a descriptor that `file` keeps open for the call's duration,
    // passing no memory; it cannot affect this process's memory.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::io::Read;

    use super::*;

    /// A new file of `len` zero bytes, open for reading and writing, in `dir`.
    fn file_of(dir: &std::path::Path, len: u64) -> File {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("f"))
            .unwrap();
        file.set_len(len).unwrap();
        file
    }

    // Miri cannot run `mmap` (a foreign call): these run natively and under AddressSanitizer
    // through the durable tests only.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn writes_through_the_map_are_the_files_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = file_of(dir.path(), 4096);
        let mut map = MappedFile::map(&file, 4096).unwrap();
        assert_eq!(map.len(), 4096);
        map.write(10, b"hello");
        map.write(4091, b"world");
        // Visible to a reader of the file at once, without a sync or an unmap.
        let mut bytes = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(&bytes[10..15], b"hello");
        assert_eq!(&bytes[4091..], b"world");
        assert!(bytes[..10].iter().chain(&bytes[15..4091]).all(|&b| b == 0));
    }

    /// Frames written one after another across several populated stretches (and into an
    /// odd-sized end) land where they were written, and nothing else changes: populating
    /// ahead faults pages in without storing into them, and the pages released behind the
    /// writes keep what was written to them.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn writes_past_the_populated_stretches_keep_the_files_content() {
        let len = 3 * POPULATE_AHEAD + 1000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = file_of(dir.path(), len as u64);
        let mut map = MappedFile::map(&file, len as u64).unwrap();
        let frame: Vec<u8> = (1..=250u8).collect();
        let mut offset = 0;
        while offset + frame.len() <= 2 * POPULATE_AHEAD + 10 {
            map.write(offset, &frame);
            offset += frame.len();
        }
        map.write(len - 3, b"end");
        assert_eq!(map.populated, len, "populated up to the map's end");
        assert!(
            map.released >= 2 * POPULATE_AHEAD,
            "the pages behind the writes left the page tables"
        );
        let mut bytes = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len(), len);
        for (i, chunk) in bytes[..offset].chunks(frame.len()).enumerate() {
            assert_eq!(chunk, &frame[..], "frame {i}");
        }
        assert!(bytes[offset..len - 3].iter().all(|&b| b == 0));
        assert_eq!(&bytes[len - 3..], b"end");
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn refuses_to_map_past_the_end_of_the_file_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_of(dir.path(), 100);
        assert!(MappedFile::map(&file, 101).is_err());
        assert!(MappedFile::map(&file, 0).is_err());
        assert!(MappedFile::map(&file, 100).is_ok());
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    #[should_panic]
    fn a_write_past_the_map_panics_instead_of_storing_out_of_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_of(dir.path(), 16);
        let mut map = MappedFile::map(&file, 16).unwrap();
        map.write(12, b"12345");
    }
}
