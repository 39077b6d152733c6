//! The single writer thread: group commit of every waiting write in one transaction, with a
//! savepoint per job only when one of them fails.

use std::sync::atomic::Ordering;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::connection::classify;
use super::wal::Wal;
use crate::store::StoreError;

/// One request to the writer: work that runs inside the batch transaction, and its reply.
pub(super) trait WriteJob: Send {
    /// Runs the work, replacing any earlier result; returns false when it failed. A job may
    /// run twice: once in a batch that was rolled back, then again in its own savepoint.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn complete(self: Box<Self>, committed: Result<(), &StoreError>);
    /// Whether the job's commit must be on disk before it is answered (see `CommitSync`).
    fn sync(&self) -> CommitSync;
}

/// How durable a job's commit must be when its caller hears of it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum CommitSync {
    /// Fsynced before the answer: what intake acknowledges and what operators change.
    Full,
    /// Written to the WAL (so it survives the process being killed) and fsynced with the next
    /// `Full` commit or checkpoint. Only for what the delivery protocol redoes if a power loss
    /// takes it: claims, gate bookkeeping and outcomes. A lost claim is claimed again when its
    /// lease runs out; a lost outcome sends the delivery again under the same
    /// `Idempotency-Key`, which at-least-once delivery allows. Batches of such jobs alone (a
    /// node draining a backlog) skip the fsync that bounded them.
    Deferred,
}

pub(super) struct Job<T, F> {
    pub(super) work: F,
    pub(super) sync: CommitSync,
    pub(super) result: Option<rusqlite::Result<T>>,
    pub(super) reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: Fn(&Connection) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.work)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn complete(self: Box<Self>, committed: Result<(), &StoreError>) {
        let outcome = match (committed, self.result) {
            (Err(e), _) => Err(e.clone()),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Ok(()), Some(Err(e))) => Err(classify(e)),
            (Ok(()), None) => Err(StoreError::internal("the write was not run")),
        };
        // The caller may have gone away (client disconnected); the write stands regardless.
        let _ = self.reply.send(outcome);
    }

    fn sync(&self) -> CommitSync {
        self.sync
    }
}

pub(super) fn run_writer(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Box<dyn WriteJob>>,
    batch_max: usize,
    wal: &Wal,
) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(batch_max);
    // The connection opens with `synchronous = FULL`.
    let mut synchronous = CommitSync::Full;
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < batch_max {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let needed = if batch.iter().any(|job| job.sync() == CommitSync::Full) {
            CommitSync::Full
        } else {
            CommitSync::Deferred
        };
        let started = std::time::Instant::now();
        let committed = match set_synchronous(&conn, needed, &mut synchronous) {
            Ok(()) => run_batch(&mut conn, &mut batch),
            Err(e) => Err(e),
        };
        crate::metrics::store_op("commit_batch", started.elapsed());
        if let Err(e) = &committed {
            tracing::error!(error = %e, jobs = batch.len(), "store commit failed; the batch was not acknowledged");
        }
        for job in batch.drain(..) {
            job.complete(committed.as_ref().map(|_| ()));
        }
        wal.committed();
        // Only after the batch has been answered: nobody waits for this.
        wal.restart_if_long(&conn);
    }
    wal.stopped.store(true, Ordering::Relaxed);
}

/// Switches `synchronous` to what the batch needs. Only a failure to make commits durable again
/// is an error; failing to relax them leaves them durable.
fn set_synchronous(
    conn: &Connection,
    needed: CommitSync,
    current: &mut CommitSync,
) -> Result<(), StoreError> {
    if needed == *current {
        return Ok(());
    }
    let level = match needed {
        CommitSync::Full => "FULL",
        CommitSync::Deferred => "NORMAL",
    };
    match conn.pragma_update(None, "synchronous", level) {
        Ok(()) => {
            *current = needed;
            Ok(())
        }
        Err(e) if needed == CommitSync::Full => Err(classify(e)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot defer the fsync of delivery bookkeeping");
            Ok(())
        }
    }
}

/// Commits the batch in one transaction. Jobs almost never fail inside the store, so the batch
/// first runs without savepoints (each costs a sub-journal copy of every page it touches: about
/// a sixth of the writer's time). If a job fails, that attempt is rolled back and the batch is
/// run again with a savepoint per job, so the failing job takes none of the others with it.
pub(super) fn run_batch(
    conn: &mut Connection,
    batch: &mut [Box<dyn WriteJob>],
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    if batch.iter_mut().all(|job| job.run(&tx)) {
        return tx.commit().map_err(classify);
    }
    // Some errors (a full disk, I/O) have already ended the transaction; then there is nothing
    // to roll back, and the next attempt reports the error again.
    let _ = tx.rollback();
    run_batch_isolated(conn, batch)
}

fn run_batch_isolated(
    conn: &mut Connection,
    batch: &mut [Box<dyn WriteJob>],
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    for job in batch.iter_mut() {
        tx.prepare_cached("SAVEPOINT job")
            .and_then(|mut s| s.execute([]))
            .map_err(classify)?;
        if job.run(&tx) {
            tx.prepare_cached("RELEASE job")
                .and_then(|mut s| s.execute([]))
                .map_err(classify)?;
        } else {
            tx.prepare_cached("ROLLBACK TO job")
                .and_then(|mut s| s.execute([]))
                .map_err(classify)?;
            tx.prepare_cached("RELEASE job")
                .and_then(|mut s| s.execute([]))
                .map_err(classify)?;
        }
    }
    tx.commit().map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::connection::open_connection;

    fn job<T: Send + 'static>(
        work: impl Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> (Box<dyn WriteJob>, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            work,
            sync: CommitSync::Full,
            result: None,
            reply,
        });
        (job, answer)
    }

    fn insert(value: i64) -> impl Fn(&Connection) -> rusqlite::Result<usize> + Send + 'static {
        move |conn| conn.execute("INSERT INTO t (v) VALUES (?1)", [value])
    }

    #[test]
    fn a_failing_job_takes_none_of_its_batch_with_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = open_connection(&dir.path().join("batch.db")).expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .expect("create");
        // The second job writes, then fails: the fast path's transaction is rolled back and
        // every job runs again in its own savepoint, so job 2's partial write is undone too.
        let (first, first_answer) = job(insert(1));
        let (failing, failing_answer) = job(|conn| {
            conn.execute("INSERT INTO t (v) VALUES (2)", [])?;
            conn.execute("INSERT INTO t (v) VALUES (1)", [])
        });
        let (third, third_answer) = job(insert(3));
        let mut batch = vec![first, failing, third];
        run_batch(&mut conn, &mut batch).expect("the batch commits");
        for job in batch {
            job.complete(Ok(()));
        }
        assert!(first_answer.blocking_recv().expect("answer").is_ok());
        assert!(failing_answer.blocking_recv().expect("answer").is_err());
        assert!(third_answer.blocking_recv().expect("answer").is_ok());
        let stored: Vec<i64> = conn
            .prepare("SELECT v FROM t ORDER BY v")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(stored, vec![1, 3]);
    }

    #[test]
    fn a_batch_without_failures_commits_every_job_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = open_connection(&dir.path().join("batch.db")).expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .expect("create");
        let mut answers = Vec::new();
        let mut batch = Vec::new();
        for value in 0..100 {
            let (job, answer) = job(insert(value));
            batch.push(job);
            answers.push(answer);
        }
        run_batch(&mut conn, &mut batch).expect("the batch commits");
        for job in batch {
            job.complete(Ok(()));
        }
        for answer in answers {
            assert_eq!(answer.blocking_recv().expect("answer").expect("ok"), 1);
        }
        let count: i64 = conn
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .expect("count");
        assert_eq!(count, 100);
    }
}
