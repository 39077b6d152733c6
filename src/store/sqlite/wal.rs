//! The WAL policy: a checkpointer thread beside the writer, and a rewind by the writer between
//! batches once the WAL grows long.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use rusqlite::Connection;

/// Checkpoints: copying committed WAL frames back into the database file, then fsyncing it.
/// SQLite's automatic checkpoint runs inside the commit that passes 1,000 frames, so every
/// request of that batch waits for it (12–65 ms on a virtio disk). Here a checkpointer thread
/// does it beside the writer. It cannot make the WAL start over, though: only a writer that
/// finds every frame copied rewinds it, and by the time the checkpointer has finished the writer
/// has appended more. So once the WAL is longer than `WAL_RESTART_FRAMES`, the writer runs one
/// checkpoint itself between batches; the checkpointer has copied nearly everything by then,
/// so it is short, and the next commit starts the WAL from its beginning again.
#[derive(Default)]
pub(super) struct Wal {
    commits: AtomicU64,
    /// Frames in the WAL at the checkpointer's last pass.
    frames: AtomicU64,
    pub(super) stopped: AtomicBool,
}

const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);
const WAL_RESTART_FRAMES: u64 = 4_096;

impl Wal {
    pub(super) fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn restart_if_long(&self, conn: &Connection) {
        if self.frames.load(Ordering::Relaxed) < WAL_RESTART_FRAMES {
            return;
        }
        match checkpoint(conn) {
            // Busy: the checkpointer is running; it reports the length again when done.
            Ok((busy, _)) if !busy => self.frames.store(0, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

/// A passive checkpoint (never waits for readers or the writer): (busy, frames in the WAL).
fn checkpoint(conn: &Connection) -> rusqlite::Result<(bool, u64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((
            row.get::<_, i64>(0)? != 0,
            row.get::<_, i64>(1)?.max(0) as u64,
        ))
    })
}

pub(super) fn run_checkpointer(conn: Connection, wal: &Wal) {
    let mut seen = 0;
    while !wal.stopped.load(Ordering::Relaxed) {
        thread::sleep(CHECKPOINT_INTERVAL);
        let commits = wal.commits.load(Ordering::Relaxed);
        if commits == seen {
            continue;
        }
        seen = commits;
        match checkpoint(&conn) {
            Ok((_, frames)) => wal.frames.store(frames, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}
