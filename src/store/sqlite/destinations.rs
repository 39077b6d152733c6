//! `DestinationControl`: each destination's gate (pause, circuit, pace) in `destination_states`,
//! read and written in the claim's own write job, so the single writer orders every node's
//! claims, probes and token draws; and what operators see of each destination.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::deliveries::claim_due;
use crate::domain::circuit::{Circuit, CircuitPhase};
use crate::domain::gate::{self, Gate, GateRow};
use crate::domain::pace::Bucket;
use crate::store::{
    DestinationControl, DestinationOverview, GateClaim, LaneClaim, PauseChange, StoreError,
    UnixMillis,
};

#[async_trait]
impl DestinationControl for SqliteStore {
    async fn claim_through_gate(&self, request: &GateClaim) -> Result<LaneClaim, StoreError> {
        let request = request.clone();
        let token: i64 = rand::random::<i64>() & i64::MAX;
        self.write_deferred(move |conn| {
            let row = load_gate(conn, &request.destination)?;
            let plan = gate::plan(&row, request.pace, request.now, request.limit);
            let deliveries = if plan.limit > 0 {
                claim_due(
                    conn,
                    &request.destination,
                    request.now,
                    request.lease_until,
                    plan.limit,
                    token,
                    plan.gate != Gate::Probe,
                )?
            } else {
                Vec::new()
            };
            let row = match plan.after(&row, deliveries.len(), request.lease_until) {
                Some(next) => {
                    save_gate(conn, &request.destination, &next)?;
                    next
                }
                None => row,
            };
            Ok(LaneClaim {
                deliveries,
                gate: plan.gate,
                row,
            })
        })
        .await
    }

    async fn set_circuit(&self, destination: &str, circuit: Circuit) -> Result<(), StoreError> {
        let destination = destination.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO destination_states (name, circuit, circuit_until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE
                 SET circuit = excluded.circuit, circuit_until = excluded.circuit_until",
            )?
            .execute(params![destination, circuit.phase, circuit.until])?;
            Ok(())
        })
        .await
    }

    async fn set_paused(&self, destination: &str, change: &PauseChange) -> Result<(), StoreError> {
        let destination = destination.to_owned();
        let change = change.clone();
        self.write(move |conn| {
            if change.paused {
                conn.prepare_cached(
                    "INSERT INTO destination_states (name, paused, paused_reason, paused_by, paused_at)
                     VALUES (?1, 1, ?2, ?3, ?4)
                     ON CONFLICT (name) DO UPDATE
                     SET paused_at = CASE WHEN paused = 1 THEN paused_at ELSE excluded.paused_at END,
                         paused = 1, paused_reason = excluded.paused_reason,
                         paused_by = excluded.paused_by",
                )?
                .execute(params![
                    destination,
                    change.reason,
                    change.requested_by,
                    change.at
                ])?;
            } else {
                conn.prepare_cached(
                    "UPDATE destination_states
                     SET paused = 0, paused_reason = NULL, paused_by = NULL, paused_at = NULL
                     WHERE name = ?1",
                )?
                .execute([&destination])?;
            }
            conn.prepare_cached(
                "INSERT INTO destination_changes (destination, action, reason, requested_by, at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                destination,
                if change.paused { "pause" } else { "resume" },
                change.reason,
                change.requested_by,
                change.at
            ])?;
            Ok(())
        })
        .await
    }

    async fn destination_overview(
        &self,
        recent_since: UnixMillis,
    ) -> Result<Vec<DestinationOverview>, StoreError> {
        self.read(move |conn| {
            let mut all: BTreeMap<String, DestinationOverview> = BTreeMap::new();
            let mut states = conn.prepare_cached(
                "SELECT name, paused, circuit, circuit_until, tokens, tokens_at,
                        paused_reason, paused_by, paused_at
                 FROM destination_states",
            )?;
            let mut rows = states.query([])?;
            while let Some(row) = rows.next()? {
                let overview = DestinationOverview::entry(&mut all, row.get(0)?);
                overview.row = gate_row(row)?;
                overview.paused_reason = row.get(6)?;
                overview.paused_by = row.get(7)?;
                overview.paused_at = row.get(8)?;
            }
            // Each half walks one partial index of open deliveries (see `QUEUE_DEPTHS`).
            let mut queues = conn.prepare_cached(
                "SELECT destination, SUM(n), MIN(oldest) FROM (
                     SELECT d.destination, COUNT(*) AS n, MIN(e.received_at) AS oldest
                     FROM deliveries d JOIN events e ON e.seq = d.event_seq
                     WHERE d.state IN ('pending', 'retrying') GROUP BY d.destination
                     UNION ALL
                     SELECT d.destination, COUNT(*) AS n, MIN(e.received_at) AS oldest
                     FROM deliveries d JOIN events e ON e.seq = d.event_seq
                     WHERE d.state = 'in_flight' GROUP BY d.destination
                 ) GROUP BY destination",
            )?;
            let mut rows = queues.query([])?;
            while let Some(row) = rows.next()? {
                let overview = DestinationOverview::entry(&mut all, row.get(0)?);
                overview.queue_depth = row.get::<_, i64>(1)?.max(0) as u64;
                overview.oldest_pending_at = row.get(2)?;
            }
            let mut recent = conn.prepare_cached(
                "SELECT d.destination,
                        SUM(a.outcome = 'delivered'), SUM(a.outcome <> 'delivered')
                 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE a.started_at >= ?1
                 GROUP BY d.destination",
            )?;
            let mut rows = recent.query([recent_since])?;
            while let Some(row) = rows.next()? {
                let overview = DestinationOverview::entry(&mut all, row.get(0)?);
                overview.delivered_recent = row.get::<_, i64>(1)?.max(0) as u64;
                overview.failed_recent = row.get::<_, i64>(2)?.max(0) as u64;
            }
            Ok(all.into_values().collect())
        })
        .await
    }
}

/// The destination's gate as stored; the default when it has no row yet.
fn load_gate(conn: &Connection, destination: &str) -> rusqlite::Result<GateRow> {
    let row = conn
        .prepare_cached(
            "SELECT name, paused, circuit, circuit_until, tokens, tokens_at
             FROM destination_states WHERE name = ?1",
        )?
        .query_row([destination], gate_row)
        .optional()?;
    Ok(row.unwrap_or_default())
}

/// Columns 1–5 of a `destination_states` row: paused, circuit, circuit_until, tokens, tokens_at.
fn gate_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<GateRow> {
    let tokens: Option<f64> = row.get(4)?;
    let tokens_at: Option<i64> = row.get(5)?;
    Ok(GateRow {
        paused: row.get(1)?,
        circuit: Circuit {
            phase: row.get::<_, CircuitPhase>(2)?,
            until: row.get(3)?,
        },
        bucket: tokens
            .zip(tokens_at)
            .map(|(tokens, at)| Bucket { tokens, at }),
    })
}

/// Stores what a claim changed: the circuit (a probe went out) and the bucket (tokens taken).
/// The pause is the operators' and stays as it is.
fn save_gate(conn: &Connection, destination: &str, row: &GateRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO destination_states (name, circuit, circuit_until, tokens, tokens_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE
         SET circuit = excluded.circuit, circuit_until = excluded.circuit_until,
             tokens = excluded.tokens, tokens_at = excluded.tokens_at",
    )?
    .execute(params![
        destination,
        row.circuit.phase,
        row.circuit.until,
        row.bucket.map(|b| b.tokens),
        row.bucket.map(|b| b.at),
    ])?;
    Ok(())
}
