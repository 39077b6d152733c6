//! `ReplayStore`: the selection of deliveries by filter, their re-queueing under row locks and
//! the record of who replayed what, in one transaction (a dry run only reads); recorded
//! replays, their progress, and an event's replay history.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::ClientWrapper;
use tokio_postgres::Row;
use uuid::Uuid;

use super::PostgresStore;
use super::pool::{DbError, get, run, text};
use super::queries::Filter;
use crate::domain::delivery_state::DeliveryState;
use crate::domain::event_status::EventStatus;
use crate::store::{
    Cursor, DeliveryReplay, NewReplay, ReplayOutcome, ReplayProgress, ReplayRecord, ReplaySample,
    ReplayStore, StoreError,
};

#[async_trait]
impl ReplayStore for PostgresStore {
    async fn replay(&self, replay: &NewReplay) -> Result<ReplayOutcome, StoreError> {
        let dry_run = replay.dry_run;
        let replay = Arc::new(replay.clone());
        let outcome = run(&self.pool, "replay", move |client| {
            Box::pin(run_replay(client, Arc::clone(&replay)))
        })
        .await?;
        if !dry_run {
            super::notify::announce(&self.pool, &self.channel, outcome.destinations.clone());
        }
        Ok(outcome)
    }

    async fn replays(
        &self,
        after: Option<Cursor<Uuid>>,
        limit: usize,
    ) -> Result<Vec<ReplayRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        run(&self.pool, "replays", move |client| {
            Box::pin(async move {
                let rows = match after {
                    Some(after) => {
                        let statement = client
                            .prepare_cached(&format!(
                                "SELECT {REPLAY_COLUMNS} FROM replays
                                 WHERE (created_at, id) < ($1, $2)
                                 ORDER BY created_at DESC, id DESC LIMIT $3"
                            ))
                            .await?;
                        client
                            .query(&statement, &[&after.at, &after.id, &limit])
                            .await?
                    }
                    None => {
                        let statement = client
                            .prepare_cached(&format!(
                                "SELECT {REPLAY_COLUMNS} FROM replays
                                 ORDER BY created_at DESC, id DESC LIMIT $1"
                            ))
                            .await?;
                        client.query(&statement, &[&limit]).await?
                    }
                };
                rows.iter().map(replay_record).collect()
            })
        })
        .await
    }

    async fn replay_progress(
        &self,
        id: Uuid,
    ) -> Result<Option<(ReplayRecord, ReplayProgress)>, StoreError> {
        run(&self.pool, "replay_progress", move |client| {
            Box::pin(async move {
                let record = client
                    .prepare_cached(&format!(
                        "SELECT {REPLAY_COLUMNS} FROM replays WHERE id = $1"
                    ))
                    .await?;
                let Some(row) = client.query_opt(&record, &[&id]).await? else {
                    return Ok(None);
                };
                let record = replay_record(&row)?;
                let linked = client
                    .prepare_cached("SELECT COUNT(*) FROM replay_deliveries WHERE replay_id = $1")
                    .await?;
                let linked: i64 = get(&client.query_one(&linked, &[&id]).await?, 0)?;
                let states = client
                    .prepare_cached(
                        "SELECT d.state, d.dead_reason, COUNT(*) FROM replay_deliveries rd
                         JOIN deliveries d ON d.id = rd.delivery_id
                         WHERE rd.replay_id = $1 AND d.replay_id = $1
                         GROUP BY d.state, d.dead_reason",
                    )
                    .await?;
                let current = client
                    .query(&states, &[&id])
                    .await?
                    .iter()
                    .map(|row| {
                        Ok((
                            get(row, 0)?,
                            get(row, 1)?,
                            get::<i64>(row, 2)?.max(0) as u64,
                        ))
                    })
                    .collect::<Result<Vec<_>, DbError>>()?;
                let progress = ReplayProgress::count(linked.max(0) as u64, current);
                Ok(Some((record, progress)))
            })
        })
        .await
    }

    async fn event_replays(&self, event_id: Uuid) -> Result<Vec<DeliveryReplay>, StoreError> {
        run(&self.pool, "event_replays", move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "SELECT r.id, rd.delivery_id, d.destination, r.created_at, r.requested_by,
                                r.reason
                         FROM events e
                         JOIN deliveries d ON d.event_seq = e.seq
                         JOIN replay_deliveries rd ON rd.delivery_id = d.id
                         JOIN replays r ON r.id = rd.replay_id
                         WHERE e.id = $1
                         ORDER BY r.created_at DESC, r.id DESC, d.id",
                    )
                    .await?;
                let rows = client.query(&statement, &[&event_id]).await?;
                rows.iter()
                    .map(|row| {
                        Ok(DeliveryReplay {
                            replay_id: get(row, 0)?,
                            delivery_id: get(row, 1)?,
                            destination: get(row, 2)?,
                            created_at: get(row, 3)?,
                            requested_by: get(row, 4)?,
                            reason: get(row, 5)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }
}

const REPLAY_COLUMNS: &str =
    "id, created_at, requested_by, reason, filter, matched, skipped_in_flight";

fn replay_record(row: &Row) -> Result<ReplayRecord, DbError> {
    Ok(ReplayRecord {
        id: get(row, 0)?,
        created_at: get(row, 1)?,
        requested_by: get(row, 2)?,
        reason: get(row, 3)?,
        filter_json: get(row, 4)?,
        matched: get::<i64>(row, 5)?.max(0) as u64,
        skipped_in_flight: get::<i64>(row, 6)?.max(0) as u64,
    })
}

/// See `Store::replay`. A real replay locks the matched deliveries (claims on any node skip
/// locked rows), re-queues those not in flight, then locks their events in `seq` order (as
/// claims and outcomes do) to settle their statuses, all in one transaction.
async fn run_replay(
    client: &mut ClientWrapper,
    replay: Arc<NewReplay>,
) -> Result<ReplayOutcome, DbError> {
    let wanted = &replay.filter;
    let mut filter = Filter::default();
    if !wanted.event_ids.is_empty() {
        filter.push("e.id = ANY(?)", vec![Box::new(wanted.event_ids.clone())]);
    }
    if let Some(source) = &wanted.source {
        filter.push("e.source = ?", vec![Box::new(text(source).into_owned())]);
    }
    if let Some(destination) = &wanted.destination {
        filter.push(
            "d.destination = ?",
            vec![Box::new(text(destination).into_owned())],
        );
    }
    if let Some(state) = &wanted.delivery_state {
        filter.push("d.state = ?", vec![Box::new(*state)]);
    }
    if let Some(status) = &wanted.event_status {
        filter.push("e.status = ?", vec![Box::new(*status)]);
    }
    if let Some(since) = wanted.since {
        filter.push("e.received_at >= ?", vec![Box::new(since)]);
    }
    if let Some(until) = wanted.until {
        filter.push("e.received_at < ?", vec![Box::new(until)]);
    }
    let lock = if replay.dry_run {
        ""
    } else {
        " FOR UPDATE OF d"
    };
    let sql = filter.sql(
        "SELECT d.id, d.state, d.destination, e.id, e.source, e.received_at, e.seq
         FROM deliveries d JOIN events e ON e.seq = d.event_seq",
        &format!("ORDER BY e.received_at DESC, d.id DESC{lock}"),
    );
    let tx = client.transaction().await?;
    let rows = tx.query(&sql, &filter.refs()).await?;
    let mut outcome = ReplayOutcome {
        matched: 0,
        skipped_in_flight: 0,
        sample: Vec::new(),
        destinations: Vec::new(),
    };
    let mut chosen: Vec<i64> = Vec::new();
    let mut events: Vec<i64> = Vec::new();
    for row in &rows {
        let delivery = ReplaySample {
            delivery_id: get(row, 0)?,
            state: get(row, 1)?,
            destination: get(row, 2)?,
            event_id: get(row, 3)?,
            source: get(row, 4)?,
            received_at: get(row, 5)?,
        };
        if delivery.state == DeliveryState::InFlight {
            outcome.skipped_in_flight += 1;
            continue;
        }
        outcome.matched += 1;
        if !outcome.destinations.contains(&delivery.destination) {
            outcome.destinations.push(delivery.destination.clone());
        }
        chosen.push(delivery.delivery_id);
        events.push(get(row, 6)?);
        if outcome.sample.len() < replay.sample_size {
            outcome.sample.push(delivery);
        }
    }
    if replay.dry_run {
        tx.commit().await?;
        return Ok(outcome);
    }
    events.sort_unstable();
    events.dedup();

    let requeue = tx
        .prepare_cached(
            "UPDATE deliveries
             SET state = 'pending', attempts = 0, next_attempt_at = $2, replay_id = $3,
                 dead_reason = NULL, delivered_at = NULL, lease_expires_at = NULL,
                 lease_token = NULL, updated_at = $2
             WHERE id = ANY($1) AND state <> 'in_flight'",
        )
        .await?;
    tx.execute(&requeue, &[&chosen, &replay.now, &replay.id])
        .await?;
    let link = tx
        .prepare_cached(
            "INSERT INTO replay_deliveries (replay_id, delivery_id)
             SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&link, &[&replay.id, &chosen]).await?;

    let lock_events = tx
        .prepare_cached("SELECT seq FROM events WHERE seq = ANY($1) ORDER BY seq FOR UPDATE")
        .await?;
    tx.execute(&lock_events, &[&events]).await?;
    let counts = tx
        .prepare_cached(
            "SELECT event_seq, state, COUNT(*) FROM deliveries
             WHERE event_seq = ANY($1) GROUP BY event_seq, state ORDER BY event_seq",
        )
        .await?;
    let mut states: std::collections::BTreeMap<i64, Vec<(DeliveryState, u64)>> = Default::default();
    for row in tx.query(&counts, &[&events]).await? {
        states
            .entry(get(&row, 0)?)
            .or_default()
            .push((get(&row, 1)?, get::<i64>(&row, 2)?.max(0) as u64));
    }
    let (seqs, statuses): (Vec<i64>, Vec<EventStatus>) = states
        .into_iter()
        .map(|(seq, states)| (seq, EventStatus::from_deliveries(states)))
        .unzip();
    let settle = tx
        .prepare_cached(
            "UPDATE events e SET status = v.status
             FROM unnest($1::bigint[], $2::text[]) AS v (seq, status)
             WHERE e.seq = v.seq",
        )
        .await?;
    tx.execute(&settle, &[&seqs, &statuses]).await?;

    let record = tx
        .prepare_cached(
            "INSERT INTO replays (id, created_at, requested_by, reason, filter, matched,
                                  skipped_in_flight)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    tx.execute(
        &record,
        &[
            &replay.id,
            &replay.now,
            &text(&replay.requested_by),
            &text(&replay.reason),
            &text(&replay.filter_json),
            &i64::try_from(outcome.matched).unwrap_or(i64::MAX),
            &i64::try_from(outcome.skipped_in_flight).unwrap_or(i64::MAX),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(outcome)
}
