//! Whether the store can take writes now (`/readyz`): a probe in the writer's queue, and after a
//! commit failed for want of space, a check that the volume has room again.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::SqliteStore;
use crate::store::StoreError;

impl SqliteStore {
    /// A job in the writer's queue that rewrites the database header's `application_id` with
    /// its own value: the commit appends a page to the WAL and syncs it, like an accept. It joins
    /// the batch of whatever intake writes are waiting (no commit of its own under load; one
    /// small one every few seconds when idle). The value is rewritten, not changed, and nothing
    /// else reads it.
    ///
    /// One page can still fit where a batch of accepts does not (a failed commit leaves room in
    /// the WAL file behind it). So after a commit failed for want of space, the volume must first
    /// take `VOLUME_HEADROOM` bytes in a file of its own, synced and removed, before the probe
    /// runs; the probe's commit then clears the failure.
    pub(super) async fn probe_writable(&self) -> Result<(), StoreError> {
        if self.commit_failed.load(Ordering::Relaxed) {
            let probe = probe_path(&self.path);
            tokio::task::spawn_blocking(move || volume_has_headroom(&probe))
                .await
                .map_err(|e| {
                    StoreError::internal(format!("volume probe failed: {e}")).caused_by(e)
                })??;
        }
        self.write(|conn| {
            let id: i64 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
            conn.pragma_update(None, "application_id", id)
        })
        .await
    }
}

/// Room the store's volume must have, after a failed commit, before the store is called
/// writable again: a batch of a few hundred accepts (2.4 KB each), with their WAL frames.
const VOLUME_HEADROOM: usize = 1 << 20;

/// `<database>.probe`, beside the database.
fn probe_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".probe");
    PathBuf::from(name)
}

/// Writes `VOLUME_HEADROOM` bytes to `probe`, syncs and removes it.
fn volume_has_headroom(probe: &Path) -> Result<(), StoreError> {
    use std::io::Write;
    let written = std::fs::File::create(probe).and_then(|mut file| {
        file.write_all(&vec![0u8; VOLUME_HEADROOM])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(probe);
    written.map_err(|e| {
        StoreError::unavailable(format!(
            "the store's volume cannot take {VOLUME_HEADROOM} bytes: {e}"
        ))
        .caused_by(e)
    })
}
