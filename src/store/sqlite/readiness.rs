//! Whether the store can take writes now (`/readyz`): room on its volume for a batch of writes,
//! and a probe through the writer's queue.

use std::path::{Path, PathBuf};

use super::SqliteStore;
use crate::store::StoreError;

/// Room the store's volume must have to be called writable: a batch of a few hundred accepts
/// (2.4 KB each) with their WAL frames.
const VOLUME_HEADROOM: usize = 1 << 20;

impl SqliteStore {
    /// First, the volume must take `VOLUME_HEADROOM` bytes in a file beside the database: a
    /// commit needs room for its WAL frames, and one small write can still fit where a batch of
    /// accepts does not (a failed commit leaves room in the WAL file behind it), so a probe
    /// through SQLite alone would call a full volume ready. The file is removed unsynced: the
    /// filesystem reserves the blocks when they are written (and refuses them when it cannot),
    /// so the check costs a memory copy, not a disk write.
    ///
    /// Then a job in the writer's queue rewrites the database header's `application_id` with
    /// its own value, so the writer, its connection and the commit are checked too. It joins the
    /// batch of whatever intake writes are waiting (no commit of its own under load; one small
    /// one per check when idle). The value is rewritten, not changed, and nothing reads it.
    pub(super) async fn probe_writable(&self) -> Result<(), StoreError> {
        let probe = probe_path(&self.path);
        tokio::task::spawn_blocking(move || volume_has_headroom(&probe))
            .await
            .map_err(|e| {
                StoreError::internal(format!("volume probe failed: {e}")).caused_by(e)
            })??;
        self.write(|conn| {
            let id: i64 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
            conn.pragma_update(None, "application_id", id)
        })
        .await
    }
}

/// `<database>.probe`, beside the database.
fn probe_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".probe");
    PathBuf::from(name)
}

/// Writes `VOLUME_HEADROOM` bytes to `probe` and removes it. The bytes are not all zeros, so a
/// compressing filesystem must find room for them too.
fn volume_has_headroom(probe: &Path) -> Result<(), StoreError> {
    use std::io::Write;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let bytes: Vec<u8> = (0..VOLUME_HEADROOM / 8)
        .flat_map(|_| {
            // xorshift64: cheap bytes that do not compress.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let written = std::fs::File::create(probe).and_then(|mut file| file.write_all(&bytes));
    let _ = std::fs::remove_file(probe);
    written.map_err(|e| {
        StoreError::unavailable(format!(
            "the store's volume has no room for {VOLUME_HEADROOM} more bytes: {e}"
        ))
        .caused_by(e)
    })
}
