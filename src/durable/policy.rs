//! When the log makes committed data durable: the choice between a commit's latency and what
//! a crash can take away.

use std::time::Duration;

/// When the write-ahead log syncs (`docs/durability.md` §5.2 says what each survives).
///
/// Under every policy a commit's record is handed to the operating system before the commit
/// becomes visible, so a crash of the process alone loses nothing that was acknowledged. The
/// policies differ in what a power loss (or an operating-system crash) can take away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// A commit returns only once its record is synced to the disk: an acknowledged commit
    /// survives a power loss. Concurrent commits share syncs (group commit).
    #[default]
    Always,
    /// Records are written at commit and synced by a background thread every interval: a
    /// power loss can lose the commits of about the last interval.
    Periodic(Duration),
    /// Records are written at commit and never synced by the log (the operating system
    /// flushes them when it chooses): a power loss can lose any commit not yet flushed.
    Never,
}

impl SyncPolicy {
    /// Whether a commit waits for its record to be synced (not only written).
    pub(crate) fn syncs_at_commit(self) -> bool {
        matches!(self, SyncPolicy::Always)
    }

    /// Whether a commit's wait may include a sync the policy asks for: the commit's own under
    /// `Always`. Under `Periodic` and `Never` a wait is the write of the batch (the periodic
    /// sync runs outside the log's writer lock), plus a sync only when the batch starts a new
    /// segment (under `Periodic`, after a periodic sync in progress then).
    pub(crate) fn waits_for_sync(self) -> bool {
        matches!(self, SyncPolicy::Always)
    }
}
