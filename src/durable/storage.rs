//! The file layer under the log and checkpoints: a narrow interface ([`Storage`]), the real
//! file system ([`FileStorage`]), and an in-memory backend that simulates power loss and
//! injects faults ([`SimStorage`]).
//!
//! Everything durable goes through these few calls, so that a test can stand in for the disk
//! and decide, at a simulated crash, which written bytes and which file names survive.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// The file operations the log and checkpoints need, and no more.
///
/// Durability rules every implementation follows (and [`SimStorage`] enforces):
/// - bytes appended to a file are durable only after [`StorageFile::sync`] returned `Ok`;
/// - a file's *name* (after [`create`](Storage::create) or [`rename`](Storage::rename), and
///   its absence after [`remove`](Storage::remove)) is durable only after
///   [`sync_dir`](Storage::sync_dir) of its directory returned `Ok`.
pub(crate) trait Storage: Send + Sync {
    /// A file open for appending.
    type File: StorageFile;

    /// Creates a new, empty file for appending; fails if `path` exists. Readable and writable
    /// by the owner only.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Self::File>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// `len` bytes of a file from `offset`; `UnexpectedEof` (before allocating) if the file
    /// is shorter than `offset + len`.
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// A file's length in bytes.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// Cuts a file to `len` bytes and syncs it (the cut is durable when this returns `Ok`).
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// The names of the files in a directory, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (created, renamed and removed names) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates an empty directory (its parent must exist), readable and writable by the owner
    /// only; `AlreadyExists` if anything exists under that name. Its name is durable after
    /// [`sync_dir`](Self::sync_dir) of its parent.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
}

/// A file open for appending.
pub(crate) trait StorageFile: Send {
    /// Syncs the file from another thread: see [`sync_handle`](Self::sync_handle).
    type SyncHandle: SyncHandle;

    /// Appends all of `data`. On an error an unknown prefix of `data` may have been written.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes every byte appended so far durable, with the file's length (not its name).
    fn sync(&mut self) -> io::Result<()>;
    /// A handle that syncs this file without borrowing it, so that one thread can sync while
    /// another appends (the log syncs outside its writer lock). A sync through it makes
    /// durable at least every byte appended before the sync began, as
    /// [`sync`](Self::sync) does.
    fn sync_handle(&self) -> io::Result<Self::SyncHandle>;
    /// Reserves room for the file to grow to `len` bytes, for a file about to take many
    /// appends (a log segment). Until [`finish`](Self::finish), the file may be longer than
    /// what was appended, and reads see zeros after the appended bytes (a crash can leave it
    /// so). Fails if the room cannot be had (a full disk): then, and not at a later append.
    /// Appends past the reservation still work. By default (and in [`SimStorage`]) nothing.
    fn reserve(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Ok(())
    }
    /// Gives the unused part of a [`reserve`](Self::reserve) back: the file's length becomes
    /// the bytes appended, durably, when this returns `Ok`. By default nothing.
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Syncs a file from any thread ([`StorageFile::sync_handle`]).
pub(crate) trait SyncHandle: Send + Sync {
    /// Makes every byte appended to the file before this call durable, with the file's
    /// length. The same rules as [`StorageFile::sync`], failures included: after a failed
    /// sync the unsynced bytes may never reach the disk.
    fn sync(&self) -> io::Result<()>;
    /// Starts writing the bytes at `offset..offset + len` to the disk without waiting for
    /// them: advice, which makes nothing durable and reports no failure, so that a later
    /// [`sync`](Self::sync) finds less to write. By default (and in [`SimStorage`]) nothing.
    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
}

// ---------------------------------------------------------------------------------------
// The real file system.

/// [`Storage`] on `std::fs`. New files get mode `0o600` on unix.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FileStorage;

/// A [`FileStorage`] file: appends go at `end`, through a shared memory map of the reserved
/// part of the file (Linux, after [`StorageFile::reserve`]), or with `pwrite`.
///
/// Why a map: under [`SyncPolicy::Never`](crate::SyncPolicy) and `Periodic` a commit waits
/// only for its frame to be *written*, and a `write` system call per batch cost more than the
/// rest of the commit; a copy into the map puts the bytes in the page cache just the same (a
/// crash of the process keeps them). The room is reserved with `fallocate` first, so that a
/// full disk is an error there, never a `SIGBUS` at a store into the map.
#[derive(Debug)]
pub(crate) struct OsFile {
    file: std::fs::File,
    /// Where the next append goes: the bytes appended (the file is longer while reserved).
    end: u64,
    /// The reserved bytes at the start of the file, mapped; `None` when nothing is reserved
    /// (or the file system cannot reserve: then every append is a `pwrite`).
    #[cfg(target_os = "linux")]
    map: Option<crate::raw::MappedFile>,
}

impl OsFile {
    fn new(file: std::fs::File, end: u64) -> Self {
        Self {
            file,
            end,
            #[cfg(target_os = "linux")]
            map: None,
        }
    }
}

/// Writes all of `data` at `offset` (not at the file's end: a reserved file is longer).
fn write_all_at(file: &std::fs::File, data: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.write_all_at(data, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)
    }
}

impl Storage for FileStorage {
    type File = OsFile;

    fn create(&self, path: &Path) -> io::Result<OsFile> {
        // Read and write (not append): a mapping needs both, and appends go at `end`.
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        Ok(OsFile::new(options.open(path)?, 0))
    }

    fn open_append(&self, path: &Path) -> io::Result<OsFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let end = file.metadata()?.len();
        Ok(OsFile::new(file, end))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(path)?;
        let file_len = file.metadata()?.len();
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > file_len)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "range past the end of the file",
            ));
        }
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0; len];
        file.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            // Our files have ASCII names; anything else is not ours to read.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // Windows has no directory handles to sync; its renames are durable through the
        // file system's own journal.
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(path)
    }
}

/// An [`OsFile`]'s [`SyncHandle`]: a second descriptor of the same open file.
#[derive(Debug)]
pub(crate) struct OsSyncHandle(std::fs::File);

impl SyncHandle for OsSyncHandle {
    fn sync(&self) -> io::Result<()> {
        // As `OsFile::sync`: a descriptor of the same file writes back the same pages.
        self.0.sync_data()
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        #[cfg(target_os = "linux")]
        crate::raw::start_writeback(&self.0, offset, len);
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
    }
}

impl StorageFile for OsFile {
    type SyncHandle = OsSyncHandle;

    fn sync_handle(&self) -> io::Result<OsSyncHandle> {
        Ok(OsSyncHandle(self.file.try_clone()?))
    }

    fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(map) = &mut self.map {
            // The part that fits in the map is copied; the rest (a last frame that takes the
            // segment past its reserved size) is written past it.
            if let Some(room) = map.len().checked_sub(self.end).filter(|&r| r > 0) {
                let n = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
                map.write(self.end as usize, &data[..n]);
                self.end += n as u64;
                data = &data[n..];
            }
        }
        if !data.is_empty() {
            write_all_at(&self.file, data, self.end)?;
            self.end += data.len() as u64;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        // fdatasync: the data and the length (needed to read the data back), not the times.
        // It also covers bytes copied into the map: on Linux a shared mapping's stores dirty
        // the file's page-cache pages (write faults mark them), and fdatasync writes back
        // every dirty page of the file, then what reading them needs (the conversion of the
        // reserved, "unwritten" extents). `msync(MS_SYNC)` would do the same for a page-
        // aligned range only, and is no cheaper.
        self.file.sync_data()
    }

    fn reserve(&mut self, len: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if self.map.is_none() && len > self.end {
            use rustix::fs::{fallocate, FallocateFlags};
            use rustix::io::Errno;
            match fallocate(&self.file, FallocateFlags::empty(), 0, len) {
                Ok(()) => {}
                // The file system cannot reserve (and so nothing guards stores into a map
                // from a full disk): plain writes, which report ENOSPC as an error.
                Err(e) if e == Errno::OPNOTSUPP || e == Errno::NOSYS => return Ok(()),
                Err(e) => {
                    // A failed reservation may have grown the file part of the way: cut it
                    // back, so that it never ends in zeros once another segment follows.
                    self.file.set_len(self.end)?;
                    return Err(e.into());
                }
            }
            match crate::raw::MappedFile::map(&self.file, len) {
                Ok(map) => self.map = Some(map),
                // No map (out of address space, a file system without shared writable
                // maps): the room stays reserved for nothing; plain writes after the cut.
                Err(_) => self.file.set_len(self.end)?,
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = len;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if self.map.take().is_some() {
            // Unmapped first: a map past the file's end would fault.
            self.file.set_len(self.end)?;
            // The length too (not only the data): fsync.
            self.file.sync_all()?;
        }
        Ok(())
    }
}

impl Drop for OsFile {
    /// A reserved file not [`finish`](StorageFile::finish)ed (a log dropped without being
    /// closed): the reservation is given back, best effort and not synced. A crash before
    /// then leaves the zeros, which recovery reads as the end of the segment.
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if self.map.take().is_some() {
            let _ = self.file.set_len(self.end);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The in-memory crash backend.

/// What survives a simulated power loss ([`SimStorage::crash`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Crash {
    /// Exactly what was synced: synced bytes, names made durable by a directory sync.
    SyncedOnly,
    /// Also an arbitrary prefix (chosen by `seed`) of each file's unsynced bytes, as if the
    /// disk wrote them in order.
    UnsyncedPrefix {
        /// Chooses the prefixes.
        seed: u64,
    },
    /// Also an arbitrary subset (chosen by `seed`) of each file's unsynced pages of `page`
    /// bytes: the disk writes pages in any order, so a later page can survive while an earlier
    /// one is lost (it reads back as zeros, a hole in front of the kept page).
    UnsyncedPages {
        /// Chooses the pages.
        seed: u64,
        /// The page size, in bytes (at least 1).
        page: usize,
    },
}

/// A file's content in [`SimStorage`].
#[derive(Clone, Debug, Default)]
struct Inode {
    /// What reads return: every append (the page cache).
    written: Vec<u8>,
    /// What a power loss keeps for sure: the content as of the last successful sync.
    synced: Vec<u8>,
    /// Ranges of `written` the simulated OS dropped after a failed sync (the fsyncgate
    /// behaviour): they never reach the disk, even when a later sync succeeds.
    dropped: Vec<Range<usize>>,
}

impl Inode {
    /// `written` as the disk would get it: the dropped ranges are zeros.
    fn as_flushed(&self) -> Vec<u8> {
        let mut bytes = self.written.clone();
        for r in &self.dropped {
            let r = r.start.min(bytes.len())..r.end.min(bytes.len());
            bytes[r].fill(0);
        }
        bytes
    }

    /// The content a crash in `mode` leaves, with `rng` choosing among the unsynced bytes.
    fn after_crash(&self, mode: Crash, rng: &mut fastrand::Rng) -> Vec<u8> {
        let flushed = self.as_flushed();
        let synced_len = self.synced.len();
        // Unsynced bytes can only survive where they extend the synced content (after a cut
        // that was not synced, the synced content is what the disk holds).
        if flushed.len() <= synced_len || flushed[..synced_len] != self.synced[..] {
            return self.synced.clone();
        }
        match mode {
            Crash::SyncedOnly => self.synced.clone(),
            Crash::UnsyncedPrefix { .. } => {
                let keep = rng.usize(synced_len..=flushed.len());
                flushed[..keep].to_vec()
            }
            Crash::UnsyncedPages { page, .. } => {
                let page = page.max(1);
                let mut out = self.synced.clone();
                let mut start = synced_len - synced_len % page;
                while start < flushed.len() {
                    let end = (start + page).min(flushed.len());
                    if rng.bool() {
                        if out.len() < end {
                            out.resize(end, 0);
                        }
                        // The part of the page below the synced length is synced already.
                        let from = start.max(synced_len);
                        out[from..end].copy_from_slice(&flushed[from..end]);
                    }
                    start = end;
                }
                out
            }
        }
    }
}

/// What the next operations of a [`SimStorage`] do wrong.
#[derive(Debug, Default)]
struct Faults {
    /// The next [`StorageFile::sync`] fails with EIO, and the file's unsynced bytes are
    /// dropped (they never reach the disk).
    fail_next_sync: bool,
    /// The next [`StorageFile::append`] writes this many bytes of its data, then fails with
    /// ENOSPC (0: nothing written).
    fail_next_write: Option<usize>,
    /// Operations that still succeed; every one after them fails with EIO.
    ops_left: Option<u64>,
}

#[derive(Debug, Default)]
struct SimState {
    inodes: Vec<Inode>,
    /// Names as a running program sees them.
    live: BTreeMap<PathBuf, usize>,
    /// Names a power loss keeps: updated per directory by `sync_dir`.
    durable: BTreeMap<PathBuf, usize>,
    faults: Faults,
    /// Operations performed (every trait call counts one).
    ops: u64,
    /// File syncs that succeeded.
    syncs: u64,
    /// How long a file sync takes (spent before the state is locked), standing in for a
    /// disk's flush latency so that concurrent writers can be seen to share syncs.
    sync_delay: std::time::Duration,
    /// While set, file syncs wait before they start ([`SimStorage::hold_syncs`]).
    syncs_held: bool,
    /// File syncs called and not yet started (sleeping their delay, or held).
    syncs_waiting: usize,
    /// Every [`SyncHandle::start_writeback`] call's offset and length, for tests.
    writebacks: Vec<(u64, u64)>,
}

impl SimState {
    /// Counts one operation; fails it if the fault plan says operations have run out.
    fn op(&mut self) -> io::Result<()> {
        self.ops += 1;
        match &mut self.faults.ops_left {
            Some(0) => Err(injected_eio("operation after the injected failure point")),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn inode(&self, path: &Path) -> io::Result<usize> {
        self.live.get(path).copied().ok_or_else(|| not_found(path))
    }
}

/// A [`SimStorage`]'s state, and the step loom sees for each of its calls.
#[derive(Default)]
struct Shared {
    state: Mutex<SimState>,
    /// Incremented by every call before it takes `state`'s lock. loom does not see the plain
    /// lock, so without an access it can see, its partial-order reduction would take any two
    /// storage calls for independent and never run, say, a reader's `crash` between a
    /// writer's append and its sync. In native builds, an uncontended increment in a test
    /// backend.
    steps: crate::sync::AtomicU64,
}

impl Shared {
    fn new(state: SimState) -> Self {
        Self {
            state: Mutex::new(state),
            steps: crate::sync::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, SimState> {
        self.steps.fetch_add(1, crate::sync::Ordering::SeqCst);
        self.state.lock()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.state.lock().fmt(f)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

fn injected_eio(what: &str) -> io::Error {
    io::Error::other(format!("injected EIO: {what}"))
}

/// An in-memory [`Storage`] that keeps, per file, the bytes written apart from the bytes
/// synced, and per name whether a directory sync made it durable; [`crash`](Self::crash)
/// gives the state a power loss leaves. Faults can be injected: a failed sync, a failed or
/// short write, a failure of every operation after the N-th.
///
/// Directories are implicit: a directory holds the paths whose parent it is.
#[derive(Clone, Debug, Default)]
pub(crate) struct SimStorage(Arc<Shared>);

/// A [`SimStorage`] file.
#[derive(Debug)]
pub(crate) struct SimFile {
    state: Arc<Shared>,
    inode: usize,
}

impl SimStorage {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The next file sync fails with EIO, and the simulated OS drops that file's unsynced
    /// bytes: a later sync succeeds without writing them (as Linux does after a failed
    /// fsync), though reads still return them.
    pub(crate) fn fail_next_sync(&self) {
        self.0.lock().faults.fail_next_sync = true;
    }

    /// The next append writes the first `written` bytes of its data (0: none; fewer than
    /// asked: a short write), then fails with ENOSPC.
    pub(crate) fn fail_next_write(&self, written: usize) {
        self.0.lock().faults.fail_next_write = Some(written);
    }

    /// The next `ops` operations succeed; every operation after them fails with EIO.
    pub(crate) fn fail_after(&self, ops: u64) {
        self.0.lock().faults.ops_left = Some(ops);
    }

    /// File syncs that succeeded so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.0.lock().syncs
    }

    /// Every later file sync first sleeps `delay` (without holding the storage's lock), as a
    /// disk's flush takes time: without it a sync is as fast as a write and concurrent
    /// committers rarely find one in progress to share.
    pub(crate) fn set_sync_delay(&self, delay: std::time::Duration) {
        self.0.lock().sync_delay = delay;
    }

    /// Holds every file sync, from now until [`release_syncs`](Self::release_syncs), at its
    /// start: a disk that takes as long as a test needs to show what goes on during a sync.
    pub(crate) fn hold_syncs(&self) {
        self.0.lock().syncs_held = true;
    }

    /// Lets the held syncs go on ([`hold_syncs`](Self::hold_syncs)).
    pub(crate) fn release_syncs(&self) {
        self.0.lock().syncs_held = false;
    }

    /// The ranges writeback was started for, in call order: `(offset, len)` in the file.
    pub(crate) fn writebacks(&self) -> Vec<(u64, u64)> {
        self.0.lock().writebacks.clone()
    }

    /// File syncs called and not yet started: sleeping their delay, or held.
    pub(crate) fn syncs_waiting(&self) -> usize {
        self.0.lock().syncs_waiting
    }

    /// Operations performed so far (each [`Storage`] and [`StorageFile`] call counts one).
    pub(crate) fn ops(&self) -> u64 {
        self.0.lock().ops
    }

    /// The state a power loss at this moment leaves, as a fresh storage without faults.
    /// Files opened before keep writing to the old state, which nothing reads any more.
    pub(crate) fn crash(&self, mode: Crash) -> SimStorage {
        let state = self.0.lock();
        let seed = match mode {
            Crash::SyncedOnly => 0,
            Crash::UnsyncedPrefix { seed } | Crash::UnsyncedPages { seed, .. } => seed,
        };
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut after = SimState::default();
        for (path, &inode) in &state.durable {
            let content = state.inodes[inode].after_crash(mode, &mut rng);
            after.inodes.push(Inode {
                written: content.clone(),
                synced: content,
                dropped: Vec::new(),
            });
            let id = after.inodes.len() - 1;
            after.live.insert(path.clone(), id);
            after.durable.insert(path.clone(), id);
        }
        SimStorage(Arc::new(Shared::new(after)))
    }
}

impl Storage for SimStorage {
    type File = SimFile;

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut state = self.0.lock();
        state.op()?;
        if state.live.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", path.display()),
            ));
        }
        state.inodes.push(Inode::default());
        let inode = state.inodes.len() - 1;
        state.live.insert(path.to_path_buf(), inode);
        Ok(SimFile {
            state: Arc::clone(&self.0),
            inode,
        })
    }

    fn open_append(&self, path: &Path) -> io::Result<SimFile> {
        let mut state = self.0.lock();
        state.op()?;
        let inode = state.inode(path)?;
        Ok(SimFile {
            state: Arc::clone(&self.0),
            inode,
        })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.0.lock();
        state.op()?;
        let id = state.inode(path)?;
        Ok(state.inodes[id].written.clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut state = self.0.lock();
        state.op()?;
        let id = state.inode(path)?;
        let written = &state.inodes[id].written;
        let start = usize::try_from(offset).ok();
        match start.and_then(|s| Some(s..s.checked_add(len)?)) {
            Some(r) if r.end <= written.len() => Ok(written[r].to_vec()),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "range past the end of the file",
            )),
        }
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let mut state = self.0.lock();
        state.op()?;
        let id = state.inode(path)?;
        Ok(state.inodes[id].written.len() as u64)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.0.lock();
        state.op()?;
        let id = state.inode(path)?;
        let inode = &mut state.inodes[id];
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        // Like `set_len`: cuts, or extends with zeros.
        inode.written.resize(len, 0);
        inode.dropped.retain(|r| r.start < len);
        inode.synced = inode.as_flushed();
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut state = self.0.lock();
        state.op()?;
        // BTreeMap order: sorted by path, so by name within one directory.
        Ok(state
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.0.lock();
        state.op()?;
        let id = state.inode(from)?;
        state.live.remove(from);
        state.live.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.0.lock();
        state.op()?;
        state.inode(path)?;
        state.live.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.0.lock();
        state.op()?;
        let in_dir = |p: &Path| p.parent() == Some(dir);
        state.durable.retain(|p, _| !in_dir(p));
        let entries: Vec<_> = state
            .live
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, &id)| (p.clone(), id))
            .collect();
        state.durable.extend(entries);
        Ok(())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.0.lock();
        state.op()?;
        // Directories are implicit: one exists while it holds a file.
        if state
            .live
            .keys()
            .any(|p| p == path || p.parent() == Some(path))
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", path.display()),
            ));
        }
        Ok(())
    }
}

impl StorageFile for SimFile {
    type SyncHandle = SimFile;

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        state.op()?;
        if let Some(written) = state.faults.fail_next_write.take() {
            let written = written.min(data.len());
            state.inodes[self.inode]
                .written
                .extend_from_slice(&data[..written]);
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("injected ENOSPC after {written} of {} bytes", data.len()),
            ));
        }
        state.inodes[self.inode].written.extend_from_slice(data);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        SyncHandle::sync(&*self)
    }

    fn sync_handle(&self) -> io::Result<SimFile> {
        Ok(SimFile {
            state: Arc::clone(&self.state),
            inode: self.inode,
        })
    }
}

impl SyncHandle for SimFile {
    fn start_writeback(&self, offset: u64, len: u64) {
        self.state.lock().writebacks.push((offset, len));
    }

    fn sync(&self) -> io::Result<()> {
        let delay = {
            let mut state = self.state.lock();
            state.syncs_waiting += 1;
            state.sync_delay
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        while self.state.lock().syncs_held {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut state = self.state.lock();
        state.syncs_waiting -= 1;
        state.op()?;
        let fail = std::mem::take(&mut state.faults.fail_next_sync);
        let inode = &mut state.inodes[self.inode];
        if fail {
            // fsyncgate: the kernel marks the failed pages clean; they never reach the disk.
            let unsynced = inode.synced.len().min(inode.written.len())..inode.written.len();
            if !unsynced.is_empty() {
                inode.dropped.push(unsynced);
            }
            return Err(injected_eio("sync"));
        }
        inode.synced = inode.as_flushed();
        state.syncs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A file in a synced directory with `synced` synced, then `unsynced` appended.
    fn file_with(storage: &SimStorage, path: &Path, synced: &[u8], unsynced: &[u8]) {
        let mut f = storage.create(path).unwrap();
        storage.sync_dir(path.parent().unwrap()).unwrap();
        f.append(synced).unwrap();
        f.sync().unwrap();
        f.append(unsynced).unwrap();
    }

    #[test]
    fn crash_keeps_exactly_the_synced_bytes() {
        let s = SimStorage::new();
        file_with(&s, &p("/d/a"), b"synced", b" and not");
        assert_eq!(s.read(&p("/d/a")).unwrap(), b"synced and not");
        let after = s.crash(Crash::SyncedOnly);
        assert_eq!(after.read(&p("/d/a")).unwrap(), b"synced");
        // Bytes synced after the crash state was taken do not leak into it.
        assert_eq!(after.len(&p("/d/a")).unwrap(), 6);
    }

    #[test]
    fn crash_drops_names_not_made_durable_by_a_directory_sync() {
        let s = SimStorage::new();
        file_with(&s, &p("/d/kept"), b"k", b"");
        file_with(&s, &p("/d/old"), b"o", b"");
        file_with(&s, &p("/d/gone"), b"g", b"");
        // Created and synced, but its directory entry never was.
        let mut f = s.create(&p("/d/new")).unwrap();
        f.append(b"data").unwrap();
        f.sync().unwrap();
        // Renamed without a directory sync: the old name survives.
        s.rename(&p("/d/old"), &p("/d/renamed")).unwrap();
        // Removed without a directory sync: it comes back.
        s.remove(&p("/d/gone")).unwrap();
        // Another directory's sync does not make /d's entries durable.
        file_with(&s, &p("/e/x"), b"x", b"");

        assert_eq!(
            s.list(&p("/d")).unwrap(),
            ["kept", "new", "renamed"].map(String::from)
        );
        let after = s.crash(Crash::SyncedOnly);
        assert_eq!(
            after.list(&p("/d")).unwrap(),
            ["gone", "kept", "old"].map(String::from)
        );
        assert_eq!(after.read(&p("/d/old")).unwrap(), b"o");
        assert_eq!(after.read(&p("/e/x")).unwrap(), b"x");

        // After a directory sync all of the live names are durable.
        s.sync_dir(&p("/d")).unwrap();
        let after = s.crash(Crash::SyncedOnly);
        assert_eq!(
            after.list(&p("/d")).unwrap(),
            ["kept", "new", "renamed"].map(String::from)
        );
        assert_eq!(after.read(&p("/d/new")).unwrap(), b"data");
    }

    #[test]
    fn crash_with_unsynced_prefix_keeps_the_synced_bytes_and_a_prefix_of_the_rest() {
        let s = SimStorage::new();
        let unsynced: Vec<u8> = (1..=200).collect();
        file_with(&s, &p("/d/a"), b"synced", &unsynced);
        let mut lengths = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let got = s
                .crash(Crash::UnsyncedPrefix { seed })
                .read(&p("/d/a"))
                .unwrap();
            assert!(got.starts_with(b"synced"));
            assert_eq!(got[6..], unsynced[..got.len() - 6]);
            lengths.insert(got.len());
        }
        // The seeds choose different prefixes (not always all or nothing).
        assert!(lengths.len() > 10, "{lengths:?}");
    }

    #[test]
    fn crash_with_unsynced_pages_can_keep_a_later_page_and_lose_an_earlier_one() {
        let s = SimStorage::new();
        let unsynced: Vec<u8> = (1..=100).collect();
        file_with(&s, &p("/d/a"), b"0123456789", &unsynced);
        let written = s.read(&p("/d/a")).unwrap();
        let mut saw_hole = false;
        for seed in 0..64 {
            let got = s
                .crash(Crash::UnsyncedPages { seed, page: 16 })
                .read(&p("/d/a"))
                .unwrap();
            assert!(got.starts_with(b"0123456789"));
            assert!(got.len() <= written.len());
            for (page, chunk) in got.chunks(16).enumerate() {
                let start = page * 16;
                let original = &written[start..start + chunk.len()];
                // Every page is either as written or (beyond the synced bytes) lost: zeros.
                assert!(
                    chunk == original
                        || chunk[10usize.saturating_sub(start)..]
                            .iter()
                            .all(|&b| b == 0),
                    "seed {seed} page {page}"
                );
                if chunk != original && got.len() > start + 16 {
                    saw_hole = true;
                }
            }
        }
        assert!(saw_hole, "no seed lost a page in front of a kept one");
    }

    #[test]
    fn a_failed_sync_is_reported_and_the_dropped_bytes_never_reach_the_disk() {
        let s = SimStorage::new();
        let mut f = s.create(&p("/d/a")).unwrap();
        s.sync_dir(&p("/d")).unwrap();
        f.append(b"first").unwrap();
        f.sync().unwrap();
        f.append(b"second").unwrap();
        s.fail_next_sync();
        assert!(f.sync().is_err());
        // The page cache still serves them...
        assert_eq!(s.read(&p("/d/a")).unwrap(), b"firstsecond");
        // ...and a retried sync "succeeds" (fsyncgate), yet they are not on the disk: a
        // writer that retries and carries on loses acknowledged data.
        f.sync().unwrap();
        let after = s.crash(Crash::SyncedOnly);
        assert_eq!(after.read(&p("/d/a")).unwrap(), b"first\0\0\0\0\0\0");
    }

    #[test]
    fn write_faults_fail_with_enospc_after_the_bytes_they_keep() {
        let s = SimStorage::new();
        let mut f = s.create(&p("/d/a")).unwrap();
        s.fail_next_write(0);
        let err = f.append(b"abc").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(s.read(&p("/d/a")).unwrap(), b"");
        s.fail_next_write(2);
        assert!(f.append(b"xyz").is_err());
        assert_eq!(s.read(&p("/d/a")).unwrap(), b"xy");
        // One-shot faults: the next write succeeds.
        f.append(b"!").unwrap();
        assert_eq!(s.read(&p("/d/a")).unwrap(), b"xy!");
    }

    #[test]
    fn fail_after_fails_every_operation_after_the_nth() {
        let s = SimStorage::new();
        let mut f = s.create(&p("/d/a")).unwrap();
        s.fail_after(2);
        f.append(b"a").unwrap();
        f.sync().unwrap();
        assert!(f.append(b"b").is_err());
        assert!(s.read(&p("/d/a")).is_err());
        assert!(s.sync_dir(&p("/d")).is_err());
        assert_eq!(s.ops(), 6);
    }

    #[test]
    fn read_range_and_truncate() {
        let s = SimStorage::new();
        file_with(&s, &p("/d/a"), b"0123456789", b"");
        assert_eq!(s.read_range(&p("/d/a"), 3, 4).unwrap(), b"3456");
        let eof = s.read_range(&p("/d/a"), 8, 3).unwrap_err();
        assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
        assert!(s.read_range(&p("/d/a"), u64::MAX, 2).is_err());
        s.truncate(&p("/d/a"), 4).unwrap();
        assert_eq!(
            s.crash(Crash::SyncedOnly).read(&p("/d/a")).unwrap(),
            b"0123"
        );
        assert_eq!(
            s.read(&p("/d/missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn file_storage_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage;
        let a = dir.path().join("a");
        let mut f = s.create(&a).unwrap();
        assert_eq!(
            s.create(&a).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        f.append(b"hello ").unwrap();
        f.sync().unwrap();
        drop(f);
        let mut f = s.open_append(&a).unwrap();
        f.append(b"world").unwrap();
        f.sync().unwrap();
        s.sync_dir(dir.path()).unwrap();
        assert_eq!(s.read(&a).unwrap(), b"hello world");
        assert_eq!(s.len(&a).unwrap(), 11);
        assert_eq!(s.read_range(&a, 6, 5).unwrap(), b"world");
        assert_eq!(
            s.read_range(&a, 6, 6).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        s.truncate(&a, 5).unwrap();
        assert_eq!(s.read(&a).unwrap(), b"hello");
        let b = dir.path().join("b");
        s.rename(&a, &b).unwrap();
        assert_eq!(s.list(dir.path()).unwrap(), ["b"]);
        s.remove(&b).unwrap();
        assert!(s.list(dir.path()).unwrap().is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn file_storage_creates_files_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        FileStorage.create(&a).unwrap();
        let mode = std::fs::metadata(&a).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
