//! `AdminQueries`: one event with its deliveries and attempts, event listings and the
//! dead-letter queue, built from optional criteria, and the checks behind `/readyz`.

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension};
use uuid::Uuid;

use super::{SqliteStore, uuid_from_blob};
use crate::store::{
    AdminQueries, AttemptRecord, CapturedRecord, DeadDelivery, DeadLetterGroup, DeadQuery,
    DeliveryRecord, DuplicateCounts, EventQuery, EventRecord, EventSummary, StoreError, UnixMillis,
};

#[async_trait]
impl AdminQueries for SqliteStore {
    async fn event(&self, id: Uuid) -> Result<Option<EventRecord>, StoreError> {
        self.read(move |conn| load_event(conn, id)).await
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventSummary>, StoreError> {
        let query = query.clone();
        self.read(move |conn| list_events(conn, &query)).await
    }

    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT number, started_at, duration_ms, status_code, error, outcome, replay_id
                 FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
            )?;
            let rows = statement.query_map([delivery_id], |row| {
                let replay: Option<Vec<u8>> = row.get(6)?;
                Ok(AttemptRecord {
                    number: row.get(0)?,
                    started_at: row.get(1)?,
                    duration_ms: row.get(2)?,
                    status_code: row.get(3)?,
                    error: row.get(4)?,
                    outcome: row.get(5)?,
                    replay_id: replay.as_deref().map(uuid_from_blob).transpose()?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn dead_deliveries(&self, query: &DeadQuery) -> Result<Vec<DeadDelivery>, StoreError> {
        let query = query.clone();
        self.read(move |conn| {
            let mut filter = Filter::default();
            filter.push("d.state = 'dead'", []);
            if let Some(destination) = &query.destination {
                filter.push("d.destination = ?", [destination.clone().into()]);
            }
            if let Some(source) = &query.source {
                filter.push("e.source = ?", [source.clone().into()]);
            }
            if let Some(since) = query.since {
                filter.push("d.updated_at >= ?", [since.into()]);
            }
            if let Some(after) = query.after {
                filter.push(
                    "(d.updated_at, d.id) < (?, ?)",
                    [after.at.into(), after.id.into()],
                );
            }
            let sql = format!(
                "SELECT d.id, e.id, e.source, d.destination, e.idempotency_key, e.received_at,
                        d.updated_at, d.dead_reason, d.last_error, d.attempts, p.body
                 FROM deliveries d JOIN events e ON e.seq = d.event_seq
                      JOIN event_payloads p ON p.event_seq = e.seq{}
                 ORDER BY d.updated_at DESC, d.id DESC LIMIT ?",
                filter.sql()
            );
            filter.params.push(sql_limit(query.limit));
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(&filter.params), |row| {
                Ok(DeadDelivery {
                    delivery_id: row.get(0)?,
                    event_id: uuid_from_blob(&row.get::<_, Vec<u8>>(1)?)?,
                    source: row.get(2)?,
                    destination: row.get(3)?,
                    idempotency_key: row.get(4)?,
                    received_at: row.get(5)?,
                    died_at: row.get(6)?,
                    reason: row.get(7)?,
                    last_error: row.get(8)?,
                    attempts: row.get(9)?,
                    body: Bytes::from(row.get::<_, Vec<u8>>(10)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn dead_letter_groups(
        &self,
        since: Option<UnixMillis>,
    ) -> Result<Vec<DeadLetterGroup>, StoreError> {
        self.read(move |conn| {
            // With a single MAX() aggregate, SQLite takes the bare `last_error` from the row
            // that holds the maximum: the group's most recent death.
            let mut statement = conn.prepare_cached(
                "SELECT destination, dead_reason, COUNT(*), MAX(updated_at), last_error
                 FROM deliveries WHERE state = 'dead' AND updated_at >= ?1
                 GROUP BY destination, dead_reason
                 ORDER BY COUNT(*) DESC, destination, dead_reason",
            )?;
            let rows = statement.query_map([since.unwrap_or(i64::MIN)], |row| {
                Ok(DeadLetterGroup {
                    destination: row.get(0)?,
                    reason: row.get(1)?,
                    count: row.get::<_, i64>(2)?.max(0) as u64,
                    last_at: row.get(3)?,
                    last_error: row.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn writable(&self) -> Result<(), StoreError> {
        self.probe_writable().await
    }

    async fn save_node_stats(
        &self,
        node: &str,
        slots: Vec<(i64, Vec<u8>)>,
        forget_before: i64,
    ) -> Result<(), StoreError> {
        let node = node.to_owned();
        self.write(move |conn| {
            let mut save = conn.prepare_cached(
                "INSERT INTO node_stats (node, slot, data) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node, slot) DO UPDATE SET data = excluded.data",
            )?;
            for (slot, data) in &slots {
                save.execute(rusqlite::params![node, slot, data])?;
            }
            conn.prepare_cached("DELETE FROM node_stats WHERE slot < ?1")?
                .execute([forget_before])?;
            Ok(())
        })
        .await
    }

    async fn node_stats(
        &self,
        first: i64,
        except: &str,
    ) -> Result<Vec<(String, i64, Vec<u8>)>, StoreError> {
        let except = except.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT node, slot, data FROM node_stats WHERE slot >= ?1 AND node <> ?2",
            )?
            .query_map(rusqlite::params![first, except], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect()
        })
        .await
    }
}

/// The WHERE clause of a query built from optional criteria, with its positional parameters.
#[derive(Default)]
pub(super) struct Filter {
    clauses: Vec<String>,
    pub(super) params: Vec<rusqlite::types::Value>,
}

impl Filter {
    pub(super) fn push(
        &mut self,
        clause: impl Into<String>,
        params: impl IntoIterator<Item = rusqlite::types::Value>,
    ) {
        self.clauses.push(clause.into());
        self.params.extend(params);
    }

    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

pub(super) fn sql_limit(limit: usize) -> rusqlite::types::Value {
    i64::try_from(limit).unwrap_or(i64::MAX).into()
}

fn list_events(conn: &Connection, query: &EventQuery) -> rusqlite::Result<Vec<EventSummary>> {
    let mut filter = Filter::default();
    if let Some(source) = &query.source {
        filter.push("e.source = ?", [source.clone().into()]);
    }
    if let Some(status) = &query.status {
        filter.push("e.status = ?", [status.as_str().to_owned().into()]);
    }
    if let Some(key) = &query.idempotency_key {
        filter.push("e.idempotency_key = ?", [key.clone().into()]);
    }
    for hash in &query.search {
        filter.push(
            "e.seq IN (SELECT event_seq FROM event_search WHERE hash = ?)",
            [hash.to_vec().into()],
        );
    }
    if let Some(since) = query.since {
        filter.push("e.received_at >= ?", [since.into()]);
    }
    if let Some(until) = query.until {
        filter.push("e.received_at < ?", [until.into()]);
    }
    let (beyond, order) = if query.oldest_first {
        ("(e.received_at, e.id) > (?, ?)", "ASC")
    } else {
        ("(e.received_at, e.id) < (?, ?)", "DESC")
    };
    if let Some(after) = query.after {
        filter.push(
            beyond,
            [after.at.into(), after.id.as_bytes().to_vec().into()],
        );
    }
    let sql = format!(
        "SELECT e.id, e.source, e.idempotency_key, e.received_at, e.status, e.content_type,
                (SELECT COUNT(*) FROM deliveries d WHERE d.event_seq = e.seq)
         FROM events e{}
         ORDER BY e.received_at {order}, e.id {order} LIMIT ?",
        filter.sql()
    );
    filter.params.push(sql_limit(query.limit));
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(&filter.params), |row| {
        Ok(EventSummary {
            id: uuid_from_blob(&row.get::<_, Vec<u8>>(0)?)?,
            source: row.get(1)?,
            idempotency_key: row.get(2)?,
            received_at: row.get(3)?,
            status: row.get(4)?,
            content_type: row.get(5)?,
            deliveries: row.get(6)?,
        })
    })?;
    rows.collect()
}

fn load_event(conn: &Connection, id: Uuid) -> rusqlite::Result<Option<EventRecord>> {
    let row = conn
        .prepare_cached(
            "SELECT e.seq, e.source, e.idempotency_key, e.received_at, e.status, e.content_type,
                    p.headers, p.body
             FROM events e JOIN event_payloads p ON p.event_seq = e.seq WHERE e.id = ?1",
        )?
        .query_row([&id.as_bytes()[..]], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                EventRecord {
                    id,
                    source: row.get(1)?,
                    idempotency_key: row.get(2)?,
                    received_at: row.get(3)?,
                    status: row.get(4)?,
                    content_type: row.get(5)?,
                    headers_json: row.get(6)?,
                    body: Bytes::from(row.get::<_, Vec<u8>>(7)?),
                    deliveries: Vec::new(),
                    duplicates: DuplicateCounts::default(),
                },
            ))
        })
        .optional()?;
    let Some((seq, mut event)) = row else {
        return Ok(None);
    };
    let mut statement = conn.prepare_cached(
        "SELECT id, destination, state, attempts, ordering_key, next_attempt_at, last_error,
                dead_reason, delivered_at
         FROM deliveries WHERE event_seq = ?1 ORDER BY id",
    )?;
    let deliveries = statement.query_map([seq], |row| {
        Ok(DeliveryRecord {
            id: row.get(0)?,
            destination: row.get(1)?,
            state: row.get(2)?,
            attempts: row.get(3)?,
            ordering_key: row.get(4)?,
            next_attempt_at: row.get(5)?,
            last_error: row.get(6)?,
            dead_reason: row.get(7)?,
            delivered_at: row.get(8)?,
            captured: Vec::new(),
        })
    })?;
    event.deliveries = deliveries.collect::<rusqlite::Result<_>>()?;
    let mut captured = conn.prepare_cached(
        "SELECT name, value, captured_at FROM delivery_captures
         WHERE delivery_id = ?1 ORDER BY name",
    )?;
    for delivery in &mut event.deliveries {
        let rows = captured.query_map([delivery.id], |row| {
            Ok(CapturedRecord {
                name: row.get(0)?,
                value: row.get(1)?,
                captured_at: row.get(2)?,
            })
        })?;
        delivery.captured = rows.collect::<rusqlite::Result<_>>()?;
    }
    if let Some(duplicates) = conn
        .prepare_cached(
            "SELECT duplicates, last_duplicate_at, conflicts FROM dedupe_keys WHERE event_id = ?1",
        )?
        .query_row([&id.as_bytes()[..]], |row| {
            Ok(DuplicateCounts {
                count: row.get::<_, i64>(0)?.max(0) as u64,
                last_seen_at: row.get(1)?,
                conflicts: row.get::<_, i64>(2)?.max(0) as u64,
            })
        })
        .optional()?
    {
        event.duplicates = duplicates;
    }
    Ok(Some(event))
}
