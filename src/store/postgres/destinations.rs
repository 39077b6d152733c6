//! `DestinationControl`: each destination's gate (pause, circuit, pace) in `destination_states`.
//! A claim locks the destination's row (`FOR UPDATE`) for its transaction, so nodes draw tokens
//! and take the probe one at a time; the deliveries themselves are still picked with
//! `SKIP LOCKED`. Locks are taken row, then deliveries, then events, the order every other
//! transaction keeps.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::PostgresStore;
use super::deliveries::claim_due;
use super::pool::{DbError, get, run, text};
use crate::domain::circuit::{Circuit, CircuitPhase};
use crate::domain::gate::{self, Gate, GateRow};
use crate::domain::pace::Bucket;
use crate::store::{
    DestinationControl, DestinationOverview, GateClaim, LaneClaim, PauseChange, StoreError,
    UnixMillis,
};

const GATE_COLUMNS: &str = "name, paused, circuit, circuit_until, tokens, tokens_at";

#[async_trait]
impl DestinationControl for PostgresStore {
    async fn claim_through_gate(&self, request: &GateClaim) -> Result<LaneClaim, StoreError> {
        let request = Arc::new(request.clone());
        run(&self.pool, "claim", move |client| {
            let request = Arc::clone(&request);
            // A fresh token per try: a retried claim must not share one with a lost try.
            let token = rand::random::<i64>() & i64::MAX;
            Box::pin(async move {
                let tx = client.transaction().await?;
                let row = lock_gate(&tx, &request.destination, request.pace.is_some()).await?;
                let plan = gate::plan(&row, request.pace, request.now, request.limit);
                let deliveries = if plan.limit > 0 {
                    claim_due(
                        &tx,
                        &request.destination,
                        request.now,
                        request.lease_until,
                        i64::try_from(plan.limit).unwrap_or(i64::MAX),
                        token,
                        plan.gate != Gate::Probe,
                    )
                    .await?
                } else {
                    Vec::new()
                };
                let row = match plan.after(&row, deliveries.len(), request.lease_until) {
                    Some(next) => {
                        save_gate(&tx, &request.destination, &next).await?;
                        next
                    }
                    None => row,
                };
                tx.commit().await?;
                Ok(LaneClaim {
                    deliveries,
                    gate: plan.gate,
                    row,
                })
            })
        })
        .await
    }

    async fn set_circuit(&self, destination: &str, circuit: Circuit) -> Result<(), StoreError> {
        let destination: Arc<str> = Arc::from(destination);
        run(&self.pool, "set_circuit", move |client| {
            let destination = Arc::clone(&destination);
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "INSERT INTO destination_states (name, circuit, circuit_until)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (name) DO UPDATE
                         SET circuit = excluded.circuit, circuit_until = excluded.circuit_until",
                    )
                    .await?;
                client
                    .execute(
                        &statement,
                        &[&&*destination, &circuit.phase, &circuit.until],
                    )
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn set_paused(&self, destination: &str, change: &PauseChange) -> Result<(), StoreError> {
        let destination: Arc<str> = Arc::from(destination);
        let change = Arc::new(change.clone());
        run(&self.pool, "set_paused", move |client| {
            let destination = Arc::clone(&destination);
            let change = Arc::clone(&change);
            Box::pin(async move {
                let tx = client.transaction().await?;
                let reason = change.reason.as_deref().map(text);
                let requested_by = text(&change.requested_by);
                if change.paused {
                    let statement = tx
                        .prepare_cached(
                            "INSERT INTO destination_states
                                 (name, paused, paused_reason, paused_by, paused_at)
                             VALUES ($1, TRUE, $2, $3, $4)
                             ON CONFLICT (name) DO UPDATE
                             SET paused_at = CASE WHEN destination_states.paused
                                                  THEN destination_states.paused_at
                                                  ELSE excluded.paused_at END,
                                 paused = TRUE, paused_reason = excluded.paused_reason,
                                 paused_by = excluded.paused_by",
                        )
                        .await?;
                    tx.execute(
                        &statement,
                        &[&&*destination, &reason, &requested_by, &change.at],
                    )
                    .await?;
                } else {
                    let statement = tx
                        .prepare_cached(
                            "UPDATE destination_states
                             SET paused = FALSE, paused_reason = NULL, paused_by = NULL,
                                 paused_at = NULL
                             WHERE name = $1",
                        )
                        .await?;
                    tx.execute(&statement, &[&&*destination]).await?;
                }
                let log = tx
                    .prepare_cached(
                        "INSERT INTO destination_changes
                             (destination, action, reason, requested_by, at)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .await?;
                let action = if change.paused { "pause" } else { "resume" };
                tx.execute(
                    &log,
                    &[&&*destination, &action, &reason, &requested_by, &change.at],
                )
                .await?;
                tx.commit().await?;
                Ok(())
            })
        })
        .await
    }

    async fn destination_overview(
        &self,
        recent_since: UnixMillis,
    ) -> Result<Vec<DestinationOverview>, StoreError> {
        run(&self.pool, "destination_overview", move |client| {
            Box::pin(async move {
                let mut all: BTreeMap<String, DestinationOverview> = BTreeMap::new();
                let states = client
                    .prepare_cached(&format!(
                        "SELECT {GATE_COLUMNS}, paused_reason, paused_by, paused_at
                         FROM destination_states"
                    ))
                    .await?;
                for row in client.query(&states, &[]).await? {
                    let overview = DestinationOverview::entry(&mut all, get(&row, 0)?);
                    overview.row = gate_row(&row)?;
                    overview.paused_reason = get(&row, 6)?;
                    overview.paused_by = get(&row, 7)?;
                    overview.paused_at = get(&row, 8)?;
                }
                let queues = client
                    .prepare_cached(
                        "SELECT d.destination, COUNT(*), MIN(e.received_at)
                         FROM deliveries d JOIN events e ON e.seq = d.event_seq
                         WHERE d.state IN ('pending', 'retrying', 'in_flight')
                         GROUP BY d.destination",
                    )
                    .await?;
                for row in client.query(&queues, &[]).await? {
                    let overview = DestinationOverview::entry(&mut all, get(&row, 0)?);
                    overview.queue_depth = get::<i64>(&row, 1)?.max(0) as u64;
                    overview.oldest_pending_at = get(&row, 2)?;
                }
                let recent = client
                    .prepare_cached(
                        "SELECT d.destination,
                                COUNT(*) FILTER (WHERE a.outcome = 'delivered'),
                                COUNT(*) FILTER (WHERE a.outcome <> 'delivered')
                         FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
                         WHERE a.started_at >= $1
                         GROUP BY d.destination",
                    )
                    .await?;
                for row in client.query(&recent, &[&recent_since]).await? {
                    let overview = DestinationOverview::entry(&mut all, get(&row, 0)?);
                    overview.delivered_recent = get::<i64>(&row, 1)?.max(0) as u64;
                    overview.failed_recent = get::<i64>(&row, 2)?.max(0) as u64;
                }
                Ok(all.into_values().collect())
            })
        })
        .await
    }
}

/// The destination's gate, locked for the transaction. Without a row there is nothing to lock,
/// which only matters with a pace (two nodes would both find a full bucket): then the row is
/// made first.
async fn lock_gate(
    tx: &Transaction<'_>,
    destination: &str,
    paced: bool,
) -> Result<GateRow, DbError> {
    let select = tx
        .prepare_cached(&format!(
            "SELECT {GATE_COLUMNS} FROM destination_states WHERE name = $1 FOR UPDATE"
        ))
        .await?;
    if let Some(row) = tx.query_opt(&select, &[&destination]).await? {
        return gate_row(&row);
    }
    if !paced {
        return Ok(GateRow::default());
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO destination_states (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        )
        .await?;
    tx.execute(&insert, &[&destination]).await?;
    match tx.query_opt(&select, &[&destination]).await? {
        Some(row) => gate_row(&row),
        None => Ok(GateRow::default()),
    }
}

/// Columns 1–5 of a `destination_states` row: paused, circuit, circuit_until, tokens, tokens_at.
fn gate_row(row: &Row) -> Result<GateRow, DbError> {
    let tokens: Option<f64> = get(row, 4)?;
    let tokens_at: Option<i64> = get(row, 5)?;
    Ok(GateRow {
        paused: get(row, 1)?,
        circuit: Circuit {
            phase: get::<CircuitPhase>(row, 2)?,
            until: get(row, 3)?,
        },
        bucket: tokens
            .zip(tokens_at)
            .map(|(tokens, at)| Bucket { tokens, at }),
    })
}

/// Stores what a claim changed: the circuit (a probe went out) and the bucket (tokens taken).
async fn save_gate(tx: &Transaction<'_>, destination: &str, row: &GateRow) -> Result<(), DbError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO destination_states (name, circuit, circuit_until, tokens, tokens_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE
             SET circuit = excluded.circuit, circuit_until = excluded.circuit_until,
                 tokens = excluded.tokens, tokens_at = excluded.tokens_at",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &destination,
            &row.circuit.phase,
            &row.circuit.until,
            &row.bucket.map(|b| b.tokens),
            &row.bucket.map(|b| b.at),
        ],
    )
    .await?;
    Ok(())
}
