//! `AdminQueries`: one event with its deliveries and attempts, event listings and the
//! dead-letter queue, built from optional criteria, and the checks behind `/readyz`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::ClientWrapper;
use uuid::Uuid;

use super::PostgresStore;
use super::pool::{DbError, get, run, text, unsigned};
use crate::store::{
    AdminQueries, AttemptRecord, CapturedRecord, DeadDelivery, DeadLetterGroup, DeadQuery,
    DeliveryRecord, DuplicateCounts, EventQuery, EventRecord, EventSummary, StoreError, UnixMillis,
};

#[async_trait]
impl AdminQueries for PostgresStore {
    async fn event(&self, id: Uuid) -> Result<Option<EventRecord>, StoreError> {
        run(&self.pool, "event", move |client| {
            Box::pin(load_event(client, id))
        })
        .await
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventSummary>, StoreError> {
        let query = Arc::new(query.clone());
        run(&self.pool, "list_events", move |client| {
            Box::pin(list_events(client, Arc::clone(&query)))
        })
        .await
    }

    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, StoreError> {
        run(&self.pool, "delivery_attempts", move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "SELECT number, started_at, duration_ms, status_code, error, outcome,
                                replay_id
                         FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
                    )
                    .await?;
                let rows = client.query(&statement, &[&delivery_id]).await?;
                rows.iter()
                    .map(|row| {
                        Ok(AttemptRecord {
                            number: unsigned(get(row, 0)?)?,
                            started_at: get(row, 1)?,
                            duration_ms: get(row, 2)?,
                            status_code: get::<Option<i32>>(row, 3)?
                                .map(|code| {
                                    u16::try_from(code).map_err(|_| {
                                        DbError::Invalid(format!("status code {code} out of range"))
                                    })
                                })
                                .transpose()?,
                            error: get(row, 4)?,
                            outcome: get(row, 5)?,
                            replay_id: get(row, 6)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    async fn dead_deliveries(&self, query: &DeadQuery) -> Result<Vec<DeadDelivery>, StoreError> {
        let query = Arc::new(query.clone());
        run(&self.pool, "dead_deliveries", move |client| {
            Box::pin(dead_deliveries(client, Arc::clone(&query)))
        })
        .await
    }

    async fn dead_letter_groups(
        &self,
        since: Option<UnixMillis>,
    ) -> Result<Vec<DeadLetterGroup>, StoreError> {
        let since = since.unwrap_or(i64::MIN);
        run(&self.pool, "dead_letter_groups", move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "SELECT destination, dead_reason, COUNT(*), MAX(updated_at),
                                (array_agg(last_error ORDER BY updated_at DESC, id DESC))[1]
                         FROM deliveries WHERE state = 'dead' AND updated_at >= $1
                         GROUP BY destination, dead_reason
                         ORDER BY COUNT(*) DESC, destination, dead_reason NULLS FIRST",
                    )
                    .await?;
                let rows = client.query(&statement, &[&since]).await?;
                rows.iter()
                    .map(|row| {
                        Ok(DeadLetterGroup {
                            destination: get(row, 0)?,
                            reason: get(row, 1)?,
                            count: get::<i64>(row, 2)?.max(0) as u64,
                            last_at: get(row, 3)?,
                            last_error: get(row, 4)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        run(&self.pool, "ping", |client| {
            Box::pin(async move {
                client.simple_query("SELECT 1").await?;
                Ok(())
            })
        })
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
        let node: Arc<str> = Arc::from(node);
        let (indexes, data): (Vec<i64>, Vec<Vec<u8>>) = slots.into_iter().unzip();
        let (indexes, data) = (Arc::new(indexes), Arc::new(data));
        run(&self.pool, "save_node_stats", move |client| {
            let (node, indexes, data) =
                (Arc::clone(&node), Arc::clone(&indexes), Arc::clone(&data));
            Box::pin(async move {
                let save = client
                    .prepare_cached(
                        "INSERT INTO node_stats (node, slot, data)
                         SELECT $1, s, d FROM unnest($2::bigint[], $3::bytea[]) AS t (s, d)
                         ON CONFLICT (node, slot) DO UPDATE SET data = excluded.data",
                    )
                    .await?;
                client.execute(&save, &[&&*node, &*indexes, &*data]).await?;
                let forget = client
                    .prepare_cached("DELETE FROM node_stats WHERE slot < $1")
                    .await?;
                client.execute(&forget, &[&forget_before]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn node_stats(
        &self,
        first: i64,
        except: &str,
    ) -> Result<Vec<(String, i64, Vec<u8>)>, StoreError> {
        let except: Arc<str> = Arc::from(except);
        run(&self.pool, "node_stats", move |client| {
            let except = Arc::clone(&except);
            Box::pin(async move {
                let statement = client
                    .prepare_cached(
                        "SELECT node, slot, data FROM node_stats WHERE slot >= $1 AND node <> $2",
                    )
                    .await?;
                let rows = client.query(&statement, &[&first, &&*except]).await?;
                rows.iter()
                    .map(|row| Ok((get(row, 0)?, get(row, 1)?, get(row, 2)?)))
                    .collect()
            })
        })
        .await
    }
}

/// A parameter of a query built at run time.
pub(super) type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

/// The WHERE clause of a query built from optional criteria. Clauses are written with `?`;
/// `sql` numbers them `$1`, `$2`, … in order, matching `params`.
#[derive(Default)]
pub(super) struct Filter {
    clauses: Vec<String>,
    pub(super) params: Vec<Param>,
}

impl Filter {
    pub(super) fn push(&mut self, clause: impl Into<String>, params: Vec<Param>) {
        self.clauses.push(clause.into());
        self.params.extend(params);
    }

    /// `head`, the WHERE clause, then `tail`, with every `?` numbered.
    pub(super) fn sql(&self, head: &str, tail: &str) -> String {
        let mut text = String::from(head);
        if !self.clauses.is_empty() {
            text.push_str(" WHERE ");
            text.push_str(&self.clauses.join(" AND "));
        }
        text.push(' ');
        text.push_str(tail);
        let mut numbered = String::with_capacity(text.len() + 16);
        let mut next = 0;
        for c in text.chars() {
            if c == '?' {
                next += 1;
                numbered.push_str(&format!("${next}"));
            } else {
                numbered.push(c);
            }
        }
        numbered
    }

    pub(super) fn refs(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect()
    }
}

fn sql_limit(limit: usize) -> Param {
    Box::new(i64::try_from(limit).unwrap_or(i64::MAX))
}

async fn load_event(client: &mut ClientWrapper, id: Uuid) -> Result<Option<EventRecord>, DbError> {
    let event = client
        .prepare_cached(
            "SELECT seq, source, idempotency_key, received_at, status, content_type, headers, body
             FROM events WHERE id = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&event, &[&id]).await? else {
        return Ok(None);
    };
    let seq: i64 = get(&row, 0)?;
    let mut event = EventRecord {
        id,
        source: get(&row, 1)?,
        idempotency_key: get(&row, 2)?,
        received_at: get(&row, 3)?,
        status: get(&row, 4)?,
        content_type: get(&row, 5)?,
        headers_json: get(&row, 6)?,
        body: Bytes::from(get::<Vec<u8>>(&row, 7)?),
        deliveries: Vec::new(),
        duplicates: DuplicateCounts::default(),
    };
    let deliveries = client
        .prepare_cached(
            "SELECT id, destination, state, attempts, ordering_key, next_attempt_at, last_error,
                    dead_reason, delivered_at
             FROM deliveries WHERE event_seq = $1 ORDER BY id",
        )
        .await?;
    for row in client.query(&deliveries, &[&seq]).await? {
        event.deliveries.push(DeliveryRecord {
            id: get(&row, 0)?,
            destination: get(&row, 1)?,
            state: get(&row, 2)?,
            attempts: unsigned(get(&row, 3)?)?,
            ordering_key: get(&row, 4)?,
            next_attempt_at: get(&row, 5)?,
            last_error: get(&row, 6)?,
            dead_reason: get(&row, 7)?,
            delivered_at: get(&row, 8)?,
            captured: Vec::new(),
        });
    }
    let captured = client
        .prepare_cached(
            "SELECT name, value, captured_at FROM delivery_captures
             WHERE delivery_id = $1 ORDER BY name",
        )
        .await?;
    for delivery in &mut event.deliveries {
        for row in client.query(&captured, &[&delivery.id]).await? {
            delivery.captured.push(CapturedRecord {
                name: get(&row, 0)?,
                value: get(&row, 1)?,
                captured_at: get(&row, 2)?,
            });
        }
    }
    let duplicates = client
        .prepare_cached(
            "SELECT duplicates, last_duplicate_at, conflicts FROM dedupe_keys WHERE event_id = $1",
        )
        .await?;
    if let Some(row) = client.query_opt(&duplicates, &[&id]).await? {
        event.duplicates = DuplicateCounts {
            count: get::<i64>(&row, 0)?.max(0) as u64,
            last_seen_at: get(&row, 1)?,
            conflicts: get::<i64>(&row, 2)?.max(0) as u64,
        };
    }
    Ok(Some(event))
}

async fn list_events(
    client: &mut ClientWrapper,
    query: Arc<EventQuery>,
) -> Result<Vec<EventSummary>, DbError> {
    let mut filter = Filter::default();
    if let Some(source) = &query.source {
        filter.push("e.source = ?", vec![Box::new(text(source).into_owned())]);
    }
    if let Some(status) = &query.status {
        filter.push("e.status = ?", vec![Box::new(*status)]);
    }
    if let Some(key) = &query.idempotency_key {
        filter.push(
            "e.idempotency_key = ?",
            vec![Box::new(text(key).into_owned())],
        );
    }
    for hash in &query.search {
        filter.push(
            "e.seq IN (SELECT event_seq FROM event_search WHERE hash = ?)",
            vec![Box::new(hash.to_vec())],
        );
    }
    if let Some(since) = query.since {
        filter.push("e.received_at >= ?", vec![Box::new(since)]);
    }
    if let Some(until) = query.until {
        filter.push("e.received_at < ?", vec![Box::new(until)]);
    }
    let (beyond, order) = if query.oldest_first {
        (
            "(e.received_at, e.id) > (?, ?)",
            "ORDER BY e.received_at ASC, e.id ASC LIMIT ?",
        )
    } else {
        (
            "(e.received_at, e.id) < (?, ?)",
            "ORDER BY e.received_at DESC, e.id DESC LIMIT ?",
        )
    };
    if let Some(after) = query.after {
        filter.push(beyond, vec![Box::new(after.at), Box::new(after.id)]);
    }
    filter.params.push(sql_limit(query.limit));
    let sql = filter.sql(
        "SELECT e.id, e.source, e.idempotency_key, e.received_at, e.status, e.content_type,
                (SELECT COUNT(*) FROM deliveries d WHERE d.event_seq = e.seq)
         FROM events e",
        order,
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &filter.refs()).await?;
    rows.iter()
        .map(|row| {
            Ok(EventSummary {
                id: get(row, 0)?,
                source: get(row, 1)?,
                idempotency_key: get(row, 2)?,
                received_at: get(row, 3)?,
                status: get(row, 4)?,
                content_type: get(row, 5)?,
                deliveries: u32::try_from(get::<i64>(row, 6)?.max(0)).unwrap_or(u32::MAX),
            })
        })
        .collect()
}

async fn dead_deliveries(
    client: &mut ClientWrapper,
    query: Arc<DeadQuery>,
) -> Result<Vec<DeadDelivery>, DbError> {
    let mut filter = Filter::default();
    filter.push("d.state = 'dead'", Vec::new());
    if let Some(destination) = &query.destination {
        filter.push(
            "d.destination = ?",
            vec![Box::new(text(destination).into_owned())],
        );
    }
    if let Some(source) = &query.source {
        filter.push("e.source = ?", vec![Box::new(text(source).into_owned())]);
    }
    if let Some(since) = query.since {
        filter.push("d.updated_at >= ?", vec![Box::new(since)]);
    }
    if let Some(after) = query.after {
        filter.push(
            "(d.updated_at, d.id) < (?, ?)",
            vec![Box::new(after.at), Box::new(after.id)],
        );
    }
    filter.params.push(sql_limit(query.limit));
    let sql = filter.sql(
        "SELECT d.id, e.id, e.source, d.destination, e.idempotency_key, e.received_at,
                d.updated_at, d.dead_reason, d.last_error, d.attempts, e.body
         FROM deliveries d JOIN events e ON e.seq = d.event_seq",
        "ORDER BY d.updated_at DESC, d.id DESC LIMIT ?",
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &filter.refs()).await?;
    rows.iter()
        .map(|row| {
            Ok(DeadDelivery {
                delivery_id: get(row, 0)?,
                event_id: get(row, 1)?,
                source: get(row, 2)?,
                destination: get(row, 3)?,
                idempotency_key: get(row, 4)?,
                received_at: get(row, 5)?,
                died_at: get(row, 6)?,
                reason: get(row, 7)?,
                last_error: get(row, 8)?,
                attempts: unsigned(get(row, 9)?)?,
                body: Bytes::from(get::<Vec<u8>>(row, 10)?),
            })
        })
        .collect()
}
