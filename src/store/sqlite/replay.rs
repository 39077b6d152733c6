//! `ReplayStore`: the selection of deliveries by filter, their re-queueing and the record of who
//! replayed what, in one transaction of the writer (a dry run only reads); recorded replays,
//! their progress, and an event's replay history.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::deliveries::refresh_event_status;
use super::queries::{Filter, sql_limit};
use super::{SqliteStore, uuid_from_blob};
use crate::domain::delivery_state::DeliveryState;
use crate::store::{
    Cursor, DeliveryReplay, NewReplay, ReplayOutcome, ReplayProgress, ReplayRecord, ReplaySample,
    ReplayStore, StoreError,
};

#[async_trait]
impl ReplayStore for SqliteStore {
    async fn replay(&self, replay: &NewReplay) -> Result<ReplayOutcome, StoreError> {
        let replay = replay.clone();
        if replay.dry_run {
            self.read(move |conn| run_replay(conn, &replay)).await
        } else {
            self.write(move |conn| run_replay(conn, &replay)).await
        }
    }

    async fn replays(
        &self,
        after: Option<Cursor<Uuid>>,
        limit: usize,
    ) -> Result<Vec<ReplayRecord>, StoreError> {
        self.read(move |conn| {
            let mut filter = Filter::default();
            if let Some(after) = after {
                filter.push(
                    "(created_at, id) < (?, ?)",
                    [after.at.into(), after.id.as_bytes().to_vec().into()],
                );
            }
            let sql = format!(
                "SELECT {REPLAY_COLUMNS} FROM replays{} ORDER BY created_at DESC, id DESC LIMIT ?",
                filter.sql()
            );
            filter.params.push(sql_limit(limit));
            let mut statement = conn.prepare_cached(&sql)?;
            let rows =
                statement.query_map(rusqlite::params_from_iter(&filter.params), replay_record)?;
            rows.collect()
        })
        .await
    }

    async fn replay_progress(
        &self,
        id: Uuid,
    ) -> Result<Option<(ReplayRecord, ReplayProgress)>, StoreError> {
        self.read(move |conn| {
            let id_blob = id.as_bytes().to_vec();
            let record = conn
                .prepare_cached(&format!(
                    "SELECT {REPLAY_COLUMNS} FROM replays WHERE id = ?1"
                ))?
                .query_row([&id_blob], replay_record)
                .optional()?;
            let Some(record) = record else {
                return Ok(None);
            };
            let linked: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM replay_deliveries WHERE replay_id = ?1")?
                .query_row([&id_blob], |row| row.get(0))?;
            let mut statement = conn.prepare_cached(
                "SELECT d.state, d.dead_reason, COUNT(*) FROM replay_deliveries rd
                 JOIN deliveries d ON d.id = rd.delivery_id
                 WHERE rd.replay_id = ?1 AND d.replay_id = ?1
                 GROUP BY d.state, d.dead_reason",
            )?;
            let current = statement
                .query_map([&id_blob], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get::<_, i64>(2)?.max(0) as u64,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let progress = ReplayProgress::count(linked.max(0) as u64, current);
            Ok(Some((record, progress)))
        })
        .await
    }

    async fn event_replays(&self, event_id: Uuid) -> Result<Vec<DeliveryReplay>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT r.id, rd.delivery_id, d.destination, r.created_at, r.requested_by, r.reason
                 FROM events e
                 JOIN deliveries d ON d.event_seq = e.seq
                 JOIN replay_deliveries rd ON rd.delivery_id = d.id
                 JOIN replays r ON r.id = rd.replay_id
                 WHERE e.id = ?1
                 ORDER BY r.created_at DESC, r.id DESC, d.id",
            )?;
            let rows = statement.query_map([&event_id.as_bytes()[..]], |row| {
                Ok(DeliveryReplay {
                    replay_id: uuid_from_blob(&row.get::<_, Vec<u8>>(0)?)?,
                    delivery_id: row.get(1)?,
                    destination: row.get(2)?,
                    created_at: row.get(3)?,
                    requested_by: row.get(4)?,
                    reason: row.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

const REPLAY_COLUMNS: &str =
    "id, created_at, requested_by, reason, filter, matched, skipped_in_flight";

fn replay_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<ReplayRecord> {
    Ok(ReplayRecord {
        id: uuid_from_blob(&row.get::<_, Vec<u8>>(0)?)?,
        created_at: row.get(1)?,
        requested_by: row.get(2)?,
        reason: row.get(3)?,
        filter_json: row.get(4)?,
        matched: row.get::<_, i64>(5)?.max(0) as u64,
        skipped_in_flight: row.get::<_, i64>(6)?.max(0) as u64,
    })
}

/// See `Store::replay`. A dry run only reads; a real one runs inside the writer's transaction,
/// so the selection and the re-queueing see the same deliveries.
fn run_replay(conn: &Connection, replay: &NewReplay) -> rusqlite::Result<ReplayOutcome> {
    let wanted = &replay.filter;
    let mut filter = Filter::default();
    if !wanted.event_ids.is_empty() {
        let mut clause = String::from("e.id IN (");
        for (i, _) in wanted.event_ids.iter().enumerate() {
            clause.push_str(if i == 0 { "?" } else { ", ?" });
        }
        clause.push(')');
        // The clause text depends on the number of ids only; the ids are parameters.
        filter.push(
            clause,
            wanted
                .event_ids
                .iter()
                .map(|id| rusqlite::types::Value::from(id.as_bytes().to_vec())),
        );
    }
    if let Some(source) = &wanted.source {
        filter.push("e.source = ?", [source.clone().into()]);
    }
    if let Some(destination) = &wanted.destination {
        filter.push("d.destination = ?", [destination.clone().into()]);
    }
    if let Some(state) = &wanted.delivery_state {
        filter.push("d.state = ?", [state.as_str().to_owned().into()]);
    }
    if let Some(status) = &wanted.event_status {
        filter.push("e.status = ?", [status.as_str().to_owned().into()]);
    }
    if let Some(since) = wanted.since {
        filter.push("e.received_at >= ?", [since.into()]);
    }
    if let Some(until) = wanted.until {
        filter.push("e.received_at < ?", [until.into()]);
    }
    let sql = format!(
        "SELECT d.id, d.state, d.destination, e.id, e.source, e.received_at, e.seq
         FROM deliveries d JOIN events e ON e.seq = d.event_seq{}
         ORDER BY e.received_at DESC, d.id DESC",
        filter.sql()
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(&filter.params), |row| {
        Ok((
            ReplaySample {
                delivery_id: row.get(0)?,
                state: row.get(1)?,
                destination: row.get(2)?,
                event_id: uuid_from_blob(&row.get::<_, Vec<u8>>(3)?)?,
                source: row.get(4)?,
                received_at: row.get(5)?,
            },
            row.get::<_, i64>(6)?,
        ))
    })?;
    let mut outcome = ReplayOutcome {
        matched: 0,
        skipped_in_flight: 0,
        sample: Vec::new(),
        destinations: Vec::new(),
    };
    let mut chosen = Vec::new();
    for row in rows {
        let (delivery, event_seq) = row?;
        if delivery.state == DeliveryState::InFlight {
            outcome.skipped_in_flight += 1;
            continue;
        }
        outcome.matched += 1;
        if !outcome.destinations.contains(&delivery.destination) {
            outcome.destinations.push(delivery.destination.clone());
        }
        chosen.push((delivery.delivery_id, event_seq));
        if outcome.sample.len() < replay.sample_size {
            outcome.sample.push(delivery);
        }
    }
    if replay.dry_run {
        return Ok(outcome);
    }

    let replay_id = replay.id.as_bytes().to_vec();
    let mut requeue = conn.prepare_cached(
        "UPDATE deliveries
         SET state = 'pending', attempts = 0, next_attempt_at = ?2, replay_id = ?3,
             dead_reason = NULL, delivered_at = NULL, lease_expires_at = NULL,
             lease_token = NULL, updated_at = ?2
         WHERE id = ?1 AND state != 'in_flight'",
    )?;
    let mut link = conn.prepare_cached(
        "INSERT OR IGNORE INTO replay_deliveries (replay_id, delivery_id) VALUES (?1, ?2)",
    )?;
    let mut events = std::collections::BTreeSet::new();
    for (delivery_id, event_seq) in &chosen {
        requeue.execute(params![delivery_id, replay.now, &replay_id])?;
        link.execute(params![&replay_id, delivery_id])?;
        events.insert(*event_seq);
    }
    for event_seq in events {
        refresh_event_status(conn, event_seq)?;
    }
    conn.prepare_cached(
        "INSERT INTO replays (id, created_at, requested_by, reason, filter, matched,
                              skipped_in_flight)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        &replay_id,
        replay.now,
        replay.requested_by,
        replay.reason,
        replay.filter_json,
        i64::try_from(outcome.matched).unwrap_or(i64::MAX),
        i64::try_from(outcome.skipped_in_flight).unwrap_or(i64::MAX),
    ])?;
    Ok(outcome)
}
