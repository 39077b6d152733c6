//! Group commit: writer tasks that take every waiting accept, pipeline them on one connection
//! and commit once; a batch the server rejects is redone one accept at a time.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::accept::accept_batch;
use super::notify::{Channel, announce};
use super::pool::run;
use crate::store::{AcceptOutcome, NewEvent, StoreError, StoreErrorKind};

pub(super) struct AcceptJob {
    pub(super) event: NewEvent,
    pub(super) reply: oneshot::Sender<Result<AcceptOutcome, StoreError>>,
}

/// One accept writer: takes every waiting accept (up to `batch_max`) and commits them together.
/// While one writer commits, another gathers the next batch.
pub(super) async fn run_writer(
    pool: Pool,
    queue: Arc<Mutex<mpsc::Receiver<AcceptJob>>>,
    batch_max: usize,
    channel: Channel,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < batch_max {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        commit_batch(&pool, batch, &channel).await;
    }
}

async fn commit_batch(pool: &Pool, batch: Vec<AcceptJob>, channel: &Channel) {
    let (events, replies): (Vec<NewEvent>, Vec<_>) =
        batch.into_iter().map(|job| (job.event, job.reply)).unzip();
    let events: Arc<[NewEvent]> = events.into();
    // Key order: batches on different nodes that share keys then lock them in the same order
    // and cannot deadlock on them. The sort is stable, so among requests with one key the first
    // to arrive is the one accepted.
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| events[i].dedupe_key.0);
    let order: Arc<[usize]> = order.into();

    let batch_events = Arc::clone(&events);
    let result = run(pool, "commit_batch", move |client| {
        Box::pin(accept_batch(
            client,
            Arc::clone(&batch_events),
            Arc::clone(&order),
        ))
    })
    .await;
    match result {
        Ok(outcomes) => {
            let mut replies: Vec<_> = replies.into_iter().map(Some).collect();
            let mut destinations: Vec<String> = outcomes
                .iter()
                .filter(|(_, outcome)| *outcome == AcceptOutcome::Accepted)
                .filter_map(|(index, _)| events.get(*index))
                .flat_map(|event| event.deliveries.iter().map(|d| d.destination.to_string()))
                .collect();
            destinations.sort();
            destinations.dedup();
            announce(pool, channel, destinations);
            for (index, outcome) in outcomes {
                if let Some(reply) = replies.get_mut(index).and_then(Option::take) {
                    // The caller may have gone away; the event is committed regardless.
                    let _ = reply.send(Ok(outcome));
                }
            }
        }
        Err(error) if error.kind() == StoreErrorKind::Internal && events.len() > 1 => {
            // Something in one request made the server reject the whole transaction. Nothing
            // was committed: run each request alone, so one bad request cannot fail its
            // neighbours.
            tracing::warn!(error = %error.message(), jobs = events.len(), "batch rejected; committing its accepts one by one");
            for (index, reply) in replies.into_iter().enumerate() {
                let single: Arc<[usize]> = Arc::from([index]);
                let events = Arc::clone(&events);
                let result = run(pool, "accept", move |client| {
                    Box::pin(accept_batch(
                        client,
                        Arc::clone(&events),
                        Arc::clone(&single),
                    ))
                })
                .await
                .map(|mut outcomes| outcomes.pop().map(|(_, outcome)| outcome));
                let _ = reply.send(match result {
                    Ok(Some(outcome)) => Ok(outcome),
                    Ok(None) => Err(StoreError::internal("accept returned nothing")),
                    Err(e) => Err(e),
                });
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, jobs = events.len(), "store commit failed; the batch was not acknowledged");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
