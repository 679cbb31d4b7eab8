//! The writer thread and the handle the engine records through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, TransactionBehavior};
use std::sync::Mutex;

use super::{LedgerError, Record, RunId, error::is_busy, mark_ended, write::insert};

/// Most records committed in one transaction; a longer backlog commits in several.
const MAX_BATCH: usize = 4096;
/// How long a busy database is retried before the batch counts as failed.
const BUSY_DEADLINE: Duration = Duration::from_secs(60);

enum Msg {
    Record(Box<Record>),
    Flush(Sender<Result<(), LedgerError>>),
    Close(Sender<Result<(), LedgerError>>),
}

/// Counters of the writer, readable at any time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LedgerStats {
    /// Records committed.
    pub written: u64,
    /// Records that failed to commit (each was logged).
    pub failed: u64,
    /// Records sent after the writer stopped (lost; each was logged).
    pub lost: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Records waiting in the channel.
    pub queue_depth: u64,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
    commits: AtomicU64,
}

struct Shared {
    tx: Sender<Msg>,
    counters: Arc<Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
    run: RunId,
}

/// The engine's side of the ledger: cheap to clone, every method callable from any thread.
/// Dropping the last clone without [`close`](Self::close) still commits what was queued (the
/// writer drains the channel when it disconnects) but does not wait for it.
#[derive(Clone)]
pub struct LedgerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LedgerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerHandle").field("run", &self.shared.run).finish_non_exhaustive()
    }
}

pub(super) fn spawn(conn: Connection, run: RunId) -> Result<LedgerHandle, LedgerError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let counters = Arc::new(Counters::default());
    let writer_counters = Arc::clone(&counters);
    let thread = std::thread::Builder::new()
        .name("cantilever-ledger".into())
        .spawn(move || writer(conn, run, &rx, &writer_counters))
        .map_err(LedgerError::Spawn)?;
    let shared = Shared { tx, counters, thread: Mutex::new(Some(thread)), run };
    Ok(LedgerHandle { shared: Arc::new(shared) })
}

impl LedgerHandle {
    /// This process's run.
    pub fn run_id(&self) -> RunId {
        self.shared.run
    }

    /// Queues `record` for the writer. Never blocks. If the writer has stopped the record is
    /// lost: logged and counted in [`LedgerStats::lost`].
    pub fn record(&self, record: impl Into<Record>) {
        if self.shared.tx.send(Msg::Record(Box::new(record.into()))).is_err() {
            self.shared.counters.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "cantilever::ledger", "writer stopped: record lost");
        }
    }

    /// Blocks until every record sent (from any clone) before this call is committed.
    ///
    /// # Errors
    /// [`LedgerError::WriteFailed`] when records failed since the last flush,
    /// [`LedgerError::WriterGone`] when the writer has stopped.
    pub fn flush(&self) -> Result<(), LedgerError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.shared.tx.send(Msg::Flush(tx)).map_err(|_| LedgerError::WriterGone)?;
        rx.recv().map_err(|_| LedgerError::WriterGone)?
    }

    /// Flushes, marks the run ended and stops the writer thread. Later records are lost (and
    /// counted); later calls of `close` or `flush` return [`LedgerError::WriterGone`].
    ///
    /// # Errors
    /// As [`flush`](Self::flush), or [`LedgerError::Sql`] when the run could not be marked ended.
    pub fn close(&self) -> Result<(), LedgerError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.shared.tx.send(Msg::Close(tx)).map_err(|_| LedgerError::WriterGone)?;
        let result = rx.recv().map_err(|_| LedgerError::WriterGone)?;
        let thread = self.shared.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!(target: "cantilever::ledger", "writer thread panicked");
        }
        result
    }

    /// Records waiting in the channel (the `cantilever_ledger_queue_depth` gauge).
    pub fn queue_depth(&self) -> u64 {
        self.shared.tx.len() as u64
    }

    /// The writer's counters.
    pub fn stats(&self) -> LedgerStats {
        let c = &self.shared.counters;
        LedgerStats {
            written: c.written.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            queue_depth: self.queue_depth(),
        }
    }
}

/// The writer loop: block for one message, take whatever else is queued, commit it in one
/// transaction, then answer the flushes that were queued behind it.
fn writer(mut conn: Connection, run: RunId, rx: &Receiver<Msg>, counters: &Counters) {
    let mut batch: Vec<Record> = Vec::with_capacity(256);
    let mut waiters = Vec::new();
    let mut closing = None;
    let mut failed_since_flush = 0u64;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(r) => batch.push(*r),
                Msg::Flush(reply) => waiters.push(reply),
                Msg::Close(reply) => {
                    closing = Some(reply);
                    break;
                }
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            match commit_with_retry(&mut conn, run, &batch) {
                Ok(failed) => {
                    counters.written.fetch_add(n - failed, Ordering::Relaxed);
                    counters.failed.fetch_add(failed, Ordering::Relaxed);
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                    failed_since_flush += failed;
                }
                Err(e) => {
                    tracing::error!(target: "cantilever::ledger", error = %e, records = n,
                        "commit failed; records lost");
                    counters.failed.fetch_add(n, Ordering::Relaxed);
                    failed_since_flush += n;
                }
            }
            batch.clear();
        }
        for reply in waiters.drain(..) {
            let result = match failed_since_flush {
                0 => Ok(()),
                failed => Err(LedgerError::WriteFailed { failed }),
            };
            let _ = reply.send(result);
            failed_since_flush = 0;
        }
        if let Some(reply) = closing.take() {
            let result = match failed_since_flush {
                0 => mark_ended(&conn, run),
                failed => Err(LedgerError::WriteFailed { failed }),
            };
            let _ = reply.send(result);
            return;
        }
    }
}

/// Commits `records` in one IMMEDIATE transaction, retrying the whole batch while the database
/// is busy (up to [`BUSY_DEADLINE`]). Returns how many records failed on their own.
pub(super) fn commit_with_retry(
    conn: &mut Connection,
    run: RunId,
    records: &[Record],
) -> Result<u64, LedgerError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match commit(conn, run, records) {
            Ok(failed) => return Ok(failed),
            Err(e) if is_busy(&e) && started.elapsed() < BUSY_DEADLINE => {
                tracing::warn!(target: "cantilever::ledger", error = %e, "database busy; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(source) => return Err(LedgerError::Sql { what: "committing records", source }),
        }
    }
}

fn commit(conn: &mut Connection, run: RunId, records: &[Record]) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut failed = 0;
    for record in records {
        if let Err(e) = insert(&tx, run.0, record) {
            if is_busy(&e) {
                return Err(e);
            }
            failed += 1;
            tracing::error!(target: "cantilever::ledger", error = %e, record = record.describe(),
                "record not written");
        }
    }
    tx.commit()?;
    Ok(failed)
}
