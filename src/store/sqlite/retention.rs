//! Retention: finished events past their source's retention deleted with everything that hangs
//! off them, a small batch per writer job, so intake batches keep flowing between them.
//!
//! SQLite puts the pages a deletion frees on its freelist and takes new pages from there before
//! it grows the file, so under a steady load the file stops growing once retention deletes as
//! much as intake adds (`auto_vacuum` stays off: it would only matter for giving space back to
//! the file system, which a store that keeps receiving does not need).

use rusqlite::{Connection, params};

/// The finished events of `source` received before `received_before`, oldest first, at most
/// `limit`: every delivery `delivered` or `dead`, or none at all.
const SELECT_FINISHED: &str = "SELECT seq FROM events e
     WHERE source = ?1 AND received_at < ?2
       AND NOT EXISTS (SELECT 1 FROM deliveries d
                       WHERE d.event_seq = e.seq AND d.state NOT IN ('delivered', 'dead'))
     ORDER BY received_at, id
     LIMIT ?3";

/// Deletes one batch inside the writer's transaction; returns how many events went.
pub(super) fn delete_finished_events(
    conn: &Connection,
    source: &str,
    received_before: i64,
    limit: i64,
) -> rusqlite::Result<u64> {
    let seqs: Vec<i64> = conn
        .prepare_cached(SELECT_FINISHED)?
        .query_map(params![source, received_before, limit], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if seqs.is_empty() {
        return Ok(0);
    }
    // The batch as a literal list: the values are row ids read just above, never input.
    let list = seqs
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let deliveries = format!("SELECT id FROM deliveries WHERE event_seq IN ({list})");
    conn.execute(
        &format!("DELETE FROM delivery_attempts WHERE delivery_id IN ({deliveries})"),
        [],
    )?;
    conn.execute(
        &format!("DELETE FROM replay_deliveries WHERE delivery_id IN ({deliveries})"),
        [],
    )?;
    conn.execute(
        &format!("DELETE FROM delivery_captures WHERE delivery_id IN ({deliveries})"),
        [],
    )?;
    conn.execute(
        &format!("DELETE FROM deliveries WHERE event_seq IN ({list})"),
        [],
    )?;
    conn.execute(
        &format!("DELETE FROM event_search WHERE event_seq IN ({list})"),
        [],
    )?;
    conn.execute(
        &format!("DELETE FROM event_payloads WHERE event_seq IN ({list})"),
        [],
    )?;
    let events = conn.execute(&format!("DELETE FROM events WHERE seq IN ({list})"), [])?;
    Ok(events as u64)
}

/// Dedupe keys still blocking repeats at `now` (a range of the expiry index).
pub(super) fn live_dedupe_keys(conn: &Connection, now: i64) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT count(*) FROM dedupe_keys WHERE expires_at > ?1")?
        .query_row([now], |row| row.get::<_, i64>(0))
        .map(|count| u64::try_from(count).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use uuid::Uuid;

    use super::super::{SqliteOptions, SqliteStore};
    use crate::domain::fingerprint::Fingerprint;
    use crate::domain::key::DedupeKey;
    use crate::store::{AcceptOutcome, IntakeStore, NewEvent};

    fn event(n: u64, at: i64) -> NewEvent {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&n.to_be_bytes());
        let key = DedupeKey(key);
        NewEvent {
            id: Uuid::now_v7(),
            source: Arc::from("src"),
            received_at: at,
            idempotency_key: format!("key-{n}"),
            dedupe_key: key,
            fingerprint: Fingerprint([1; 32]),
            dedupe_expires_at: at + 1,
            delivery_key: key.delivery_key(),
            near_duplicate: None,
            replay_guard: None,
            content_type: Some("application/json".into()),
            headers_json: "{}".into(),
            body: Bytes::from(vec![b'x'; 2048]),
            deliveries: Vec::new(),
            search: vec![[n as u8; 16]],
        }
    }

    /// The measurement behind "freed pages are reused": rounds of 2,000 events of 2 KiB each,
    /// every round deleting the previous one (and purging its keys). The file grows while the
    /// first rounds fill it, then stays level.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_file_stays_level_when_retention_deletes_what_intake_adds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(SqliteOptions {
            path: path.clone(),
            batch_max: 256,
            queue_max: 8192,
        })
        .expect("open");
        let mut sizes = Vec::new();
        let per_round = 2_000u64;
        for round in 0..6u64 {
            let at = (round as i64 + 1) * 1_000_000;
            let accepts = (0..per_round).map(|i| store.accept(event(round * per_round + i, at)));
            for outcome in futures_util::future::join_all(accepts).await {
                assert_eq!(outcome.expect("accept"), AcceptOutcome::Accepted);
            }
            // Everything received before this round goes (and the keys, long expired).
            while store
                .delete_finished_events("src", at, 500)
                .await
                .expect("retention")
                == 500
            {}
            store.purge_expired(at).await.expect("purge");
            // Let the checkpointer copy the WAL back into the file.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            sizes.push(std::fs::metadata(&path).expect("size").len());
        }
        eprintln!("file size after each round (bytes): {sizes:?}");
        let settled = sizes[2];
        let last = sizes[sizes.len() - 1];
        assert!(
            last <= settled + settled / 10,
            "the file kept growing: {sizes:?}"
        );
    }

    /// Accepts `count` events 64 at a time from `first`, received at `at`; their latencies.
    async fn accept_latencies(
        store: &Arc<SqliteStore>,
        first: u64,
        count: u64,
        at: i64,
    ) -> Vec<std::time::Duration> {
        let mut latencies = Vec::with_capacity(count as usize);
        let mut next = first;
        while next < first + count {
            let wave = (next..(next + 64).min(first + count)).map(|n| {
                let store = Arc::clone(store);
                async move {
                    let started = std::time::Instant::now();
                    store.accept(event(n, at)).await.expect("accept");
                    started.elapsed()
                }
            });
            latencies.extend(futures_util::future::join_all(wave).await);
            next += 64;
        }
        latencies
    }

    fn p99(mut latencies: Vec<std::time::Duration>) -> std::time::Duration {
        latencies.sort();
        latencies[latencies.len() * 99 / 100]
    }

    /// The ack latency of intake with and without retention deleting beside it (a measurement,
    /// run by hand: `cargo nextest run --lib --run-ignored only retention_beside_intake`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check"]
    async fn retention_beside_intake() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(SqliteOptions {
                path: dir.path().join("store.db"),
                batch_max: 1024,
                queue_max: 16384,
            })
            .expect("open"),
        );
        let per_run = 20_000u64;
        // Old events for retention to delete, then intake alone.
        accept_latencies(&store, 0, per_run, 1_000).await;
        let alone = p99(accept_latencies(&store, per_run, per_run, 2_000_000).await);
        // Intake again while retention deletes the old events in batches of 500.
        let deleter = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut deleted = 0;
                loop {
                    let batch = store
                        .delete_finished_events("src", 1_000_000, 500)
                        .await
                        .expect("retention");
                    deleted += batch;
                    if batch < 500 {
                        return deleted;
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let beside = p99(accept_latencies(&store, 2 * per_run, per_run, 3_000_000).await);
        let deleted = deleter.await.expect("join");
        eprintln!(
            "ack p99 alone: {alone:?}; beside retention ({deleted} events deleted): {beside:?}"
        );
    }
}
