//! Errors of the ledger.

use std::path::PathBuf;

/// What went wrong in the ledger, and where.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Opening or creating the database file failed.
    #[error("ledger {path}: opening the database: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The summary was asked of a file that does not exist.
    #[error("ledger {path}: no such file")]
    NotFound {
        /// The database file.
        path: PathBuf,
    },
    /// The database was written by a newer cantilever whose schema this build does not know.
    #[error("ledger {path}: schema version {found} is newer than this build's {supported}")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A statement failed; `what` names the operation (`insert opportunity`, `migration 1`, ...).
    #[error("ledger: {what}: {source}")]
    Sql {
        /// The operation that failed.
        what: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored value could not be read back (a malformed amount, an unknown status).
    #[error("ledger: {table}.{column}: stored value {value:?} is not valid: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The stored text (amounts and enum tags only, never secrets).
        value: String,
        /// Why it is not valid.
        reason: String,
    },
    /// The writer thread could not be started.
    #[error("ledger: starting the writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The writer thread is gone (it panicked or was closed); records sent now are lost.
    #[error("ledger: the writer thread has stopped")]
    WriterGone,
    /// Some records sent before a flush were not committed (each failure was logged when it
    /// happened).
    #[error("ledger: {failed} record(s) failed to commit since the last flush")]
    WriteFailed {
        /// How many records failed.
        failed: u64,
    },
}

impl LedgerError {
    pub(crate) fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Self {
        move |source| Self::Sql { what, source }
    }

    /// True when SQLite reported the database busy or locked (another connection holds a lock);
    /// retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Sql { source, .. } | Self::Open { source, .. } => is_busy(source),
            _ => false,
        }
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
