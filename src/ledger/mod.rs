//! The ledger: a durable SQLite record of everything the engine found, decided, simulated,
//! submitted and realised, tagged with the run and its config hash.
//!
//! **Input**: [`Record`]s from the engine and exec, through a non-blocking [`LedgerHandle`].
//! **Output**: the database file (`[engine] ledger_path`) and [`LedgerSummary`], the desk's view
//! (`cantilever ledger --db FILE [--json]`).
//!
//! # Threading
//! [`Ledger::open`] creates or migrates the schema and starts a run row (config hash, start time,
//! pid, version). [`Ledger::spawn`] moves the connection to one writer thread fed by an unbounded
//! crossbeam channel: [`LedgerHandle::record`] never blocks the engine (losing a record is worse
//! than the memory a backlog takes; [`LedgerHandle::queue_depth`] is the gauge to watch). The
//! writer group-commits whatever is queued in one transaction, retries `SQLITE_BUSY`, logs and
//! counts failures and never panics. [`LedgerHandle::flush`] returns once everything sent before
//! it is committed; [`LedgerHandle::close`] flushes, marks the run ended and joins the writer.
//!
//! # Durability
//! The database runs in WAL mode with `synchronous = NORMAL`. A commit appends its pages to the
//! `-wal` file with `write(2)` before it returns, so once [`LedgerHandle::flush`] has returned the
//! data is in the operating system's page cache and survives the process dying in any way,
//! `kill -9` included; the next open replays the WAL. What NORMAL gives up, against `FULL`, is an
//! fsync per commit: a power loss or kernel crash may lose the last commits, but never corrupts
//! the file (the WAL is checksummed and a torn tail is discarded). A run row whose `ended_at_ms`
//! is empty is a run that did not shut down cleanly.
//!
//! # Storage
//! Amounts are exact decimal TEXT (`U256`, `I256`), with a USD REAL beside them where the engine
//! gives one; addresses and hashes are hex TEXT; times are unix milliseconds. Opportunity and
//! submission ids are the engine's, scoped to the run; positions are keyed by a stable string id
//! and outlive runs. Relay *names* are stored, never URLs (they may embed API keys).

mod error;
mod handle;
mod read;
mod record;
mod schema;
mod summary;
mod write;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::B256;
use rusqlite::Connection;

pub use error::LedgerError;
pub use handle::{LedgerHandle, LedgerStats};
pub use read::{integrity_check, read_records};
pub use record::{
    Decision, Halt, Inclusion, InclusionStatus, Opportunity, Position, PositionState, Record,
    Simulation, Submission, SubmissionKind, SubmissionOutcome, TokenDelta, now_unix_ms,
};
pub use schema::SCHEMA_VERSION;
pub use summary::{LastHalt, LedgerSummary, RefusalCount, RunSummary, StrategySummary, TokenPnl};

/// How long one statement waits on a lock held by another connection before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The id of one process run in the ledger (`runs.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An open ledger with a run started. Write synchronously with [`write`](Self::write), or move it
/// to its writer thread with [`spawn`](Self::spawn).
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    run: RunId,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`, brings its schema to
    /// [`SCHEMA_VERSION`], sets WAL and `synchronous = NORMAL` (see the module docs for why that
    /// survives a process kill) and starts a run row with `config_hash`, `version`, the pid and
    /// the current time.
    ///
    /// # Errors
    /// [`LedgerError::Open`] when the file cannot be opened or is not a database,
    /// [`LedgerError::NewerSchema`] for a file from a newer build, [`LedgerError::Sql`] when a
    /// migration or the run row fails.
    pub fn open(path: &Path, config_hash: B256, version: &str) -> Result<Self, LedgerError> {
        let open_err = |source| LedgerError::Open { path: path.to_owned(), source };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // journal_mode answers with the mode in effect; a file that is not a database fails here.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(target: "cantilever::ledger", %mode, "wal mode unavailable");
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        schema::migrate(&mut conn, path)?;
        conn.execute(
            "INSERT INTO runs (config_hash, version, pid, started_at_ms) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![config_hash.to_string(), version, std::process::id(), now_unix_ms()],
        )
        .map_err(LedgerError::sql("starting a run"))?;
        let run = RunId(conn.last_insert_rowid());
        tracing::info!(target: "cantilever::ledger", path = %path.display(), %run, "ledger open");
        Ok(Self { conn, path: path.to_owned(), run })
    }

    /// This process's run.
    pub fn run_id(&self) -> RunId {
        self.run
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `records` in one transaction, retrying while the database is busy. A record that
    /// fails on its own (a duplicate id, say) is logged and skipped; the others commit.
    /// Returns how many records failed.
    ///
    /// # Errors
    /// [`LedgerError::Sql`] when the transaction itself cannot commit (after retries).
    pub fn write(&mut self, records: &[Record]) -> Result<u64, LedgerError> {
        handle::commit_with_retry(&mut self.conn, self.run, records)
    }

    /// Marks the run ended (a clean shutdown) and closes the database.
    ///
    /// # Errors
    /// [`LedgerError::Sql`] when the update fails.
    pub fn close(self) -> Result<(), LedgerError> {
        mark_ended(&self.conn, self.run)
    }

    /// Moves the ledger to its writer thread and returns the handle the engine records through.
    ///
    /// # Errors
    /// [`LedgerError::Spawn`] when the thread cannot be started.
    pub fn spawn(self) -> Result<LedgerHandle, LedgerError> {
        handle::spawn(self.conn, self.run)
    }
}

fn mark_ended(conn: &Connection, run: RunId) -> Result<(), LedgerError> {
    conn.execute("UPDATE runs SET ended_at_ms = ?1 WHERE id = ?2", (now_unix_ms(), run.0))
        .map_err(LedgerError::sql("marking the run ended"))?;
    Ok(())
}
