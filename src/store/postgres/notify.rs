//! Cross-node wake-ups: a node that commits new work (accepted events, a replay, a resumed
//! destination, a closed circuit) announces the destinations concerned with `pg_notify`, and
//! every node that runs lanes listens, so a worker on another node starts within milliseconds
//! instead of at its next poll.
//!
//! The channel is scoped by the schema the store works in, so deployments (or test runs)
//! sharing one database in different schemas do not wake each other. Announcements go out after
//! the commit, on a pooled connection, and never hold up the caller: a lost one only means the
//! poll finds the work instead.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::pool::{DbError, connection_config, run};
use super::tls;

/// Announcements waiting for a slow lane before the oldest are dropped (a lagging receiver
/// wakes every lane instead).
pub(super) const BACKLOG: usize = 1024;
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The channel of the store's schema, as `pg_notify` takes it and as `LISTEN` quotes it.
#[derive(Clone)]
pub(super) struct Channel(Arc<str>);

impl Channel {
    pub(super) async fn of(pool: &Pool) -> Result<Channel, crate::store::StoreError> {
        let schema: String = run(pool, "current_schema", |client| {
            Box::pin(async move {
                let row = client.query_one("SELECT current_schema()", &[]).await?;
                super::pool::get(&row, 0)
            })
        })
        .await?;
        Ok(Channel(Arc::from(format!("oncehook_work {schema}"))))
    }

    fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

/// Tells every listening node that `destinations` have new work, after the caller's commit.
/// Runs on its own task: the caller does not wait for it.
pub(super) fn announce(pool: &Pool, channel: &Channel, destinations: Vec<String>) {
    if destinations.is_empty() {
        return;
    }
    let (pool, channel) = (pool.clone(), channel.clone());
    tokio::spawn(async move {
        let destinations = Arc::new(destinations);
        let result = run(&pool, "announce", move |client| {
            let (channel, destinations) = (Arc::clone(&channel.0), Arc::clone(&destinations));
            Box::pin(async move {
                let statement = client
                    .prepare_cached("SELECT pg_notify($1, d) FROM unnest($2::text[]) AS d")
                    .await?;
                client
                    .execute(&statement, &[&&*channel, &*destinations])
                    .await?;
                Ok::<_, DbError>(())
            })
        })
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "cannot announce new work; other nodes find it at their next poll");
        }
    });
}

/// Listens on `channel` over a connection of its own until `stop`, reconnecting after errors,
/// and sends each announced destination to `wake`.
pub(super) async fn listen(
    url: String,
    channel: Channel,
    wake: broadcast::Sender<Arc<str>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            result = listen_once(&url, &channel, &wake) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "lost the work announcements; polling until they are back");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
}

async fn listen_once(
    url: &str,
    channel: &Channel,
    wake: &broadcast::Sender<Arc<str>>,
) -> Result<(), crate::store::StoreError> {
    let (config, settings) = connection_config(url)?;
    let (client, mut connection) = config
        .connect(tls::connector(&settings)?)
        .await
        .map_err(|e| super::pool::classify(e, "listen"))?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {}", channel.quoted());
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    // The connection only makes progress while its messages are polled, the LISTEN included.
    let mut listening = false;
    loop {
        tokio::select! {
            done = &mut listen, if !listening => {
                done.map_err(|e| super::pool::classify(e, "listen"))?;
                listening = true;
                // Work committed before the LISTEN took effect was not announced to this node.
                let _ = wake.send(Arc::from(""));
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    let _ = wake.send(Arc::from(note.payload()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(super::pool::classify(e, "listen")),
                None => return Err(crate::store::StoreError::unavailable("the listening connection closed")),
            }
        }
    }
}
