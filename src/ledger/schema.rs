//! The schema and its migrations. Migrations are code: each entry of [`MIGRATIONS`] moves the
//! database from version `i` to `i + 1` and runs in one transaction with the version bump, so a
//! kill during a migration leaves the previous version intact.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::LedgerError;

/// Version 1: every table of the ledger.
const V1: &str = "
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    config_hash   TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    pid           INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER
);
CREATE TABLE opportunities (
    run_id              INTEGER NOT NULL,
    id                  INTEGER NOT NULL,
    chain_id            INTEGER NOT NULL,
    block               INTEGER NOT NULL,
    strategy            TEXT    NOT NULL,
    route               TEXT    NOT NULL,
    token               TEXT    NOT NULL,
    size                TEXT    NOT NULL,
    expected_profit     TEXT    NOT NULL,
    expected_profit_usd REAL,
    detected_at_ms      INTEGER NOT NULL,
    PRIMARY KEY (run_id, id)
);
CREATE INDEX opportunities_by_strategy ON opportunities (run_id, strategy);
CREATE TABLE decisions (
    seq            INTEGER PRIMARY KEY,
    run_id         INTEGER NOT NULL,
    opportunity_id INTEGER NOT NULL,
    approved       INTEGER NOT NULL CHECK (approved IN (0, 1)),
    refusal_kind   TEXT,
    reason         TEXT,
    at_ms          INTEGER NOT NULL
);
CREATE INDEX decisions_by_opportunity ON decisions (run_id, opportunity_id);
CREATE TABLE simulations (
    seq            INTEGER PRIMARY KEY,
    run_id         INTEGER NOT NULL,
    opportunity_id INTEGER NOT NULL,
    block          INTEGER NOT NULL,
    success        INTEGER NOT NULL CHECK (success IN (0, 1)),
    profit         TEXT    NOT NULL,
    profit_usd     REAL,
    gas_used       INTEGER NOT NULL,
    revert_reason  TEXT,
    deltas         TEXT    NOT NULL,
    at_ms          INTEGER NOT NULL
);
CREATE INDEX simulations_by_opportunity ON simulations (run_id, opportunity_id);
CREATE TABLE submissions (
    run_id          INTEGER NOT NULL,
    id              INTEGER NOT NULL,
    opportunity_id  INTEGER NOT NULL,
    chain_id        INTEGER NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('raw', 'bundle')),
    tx_hashes       TEXT    NOT NULL,
    relay           TEXT,
    target_block    INTEGER NOT NULL,
    nonce           INTEGER NOT NULL,
    max_fee_per_gas TEXT    NOT NULL,
    outcome         TEXT    NOT NULL
                    CHECK (outcome IN ('accepted', 'rejected', 'failed', 'cancelled')),
    detail          TEXT,
    at_ms           INTEGER NOT NULL,
    PRIMARY KEY (run_id, id)
);
CREATE TABLE inclusions (
    seq              INTEGER PRIMARY KEY,
    run_id           INTEGER NOT NULL,
    submission_id    INTEGER NOT NULL,
    block            INTEGER NOT NULL,
    status           TEXT    NOT NULL
                     CHECK (status IN ('included', 'reverted', 'missed', 'orphaned')),
    reason           TEXT,
    gas_used         INTEGER NOT NULL,
    pnl_token        TEXT    NOT NULL,
    realised_pnl     TEXT    NOT NULL,
    realised_pnl_usd REAL,
    at_ms            INTEGER NOT NULL
);
CREATE INDEX inclusions_by_submission ON inclusions (run_id, submission_id);
CREATE TABLE positions (
    id           TEXT    PRIMARY KEY,
    run_id       INTEGER NOT NULL,
    chain_id     INTEGER NOT NULL,
    token        TEXT    NOT NULL,
    amount       TEXT    NOT NULL,
    amount_usd   REAL,
    state        TEXT    NOT NULL CHECK (state IN ('open', 'closed')),
    opened_at_ms INTEGER NOT NULL,
    closed_at_ms INTEGER,
    notes        TEXT
);
CREATE TABLE halts (
    seq     INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL,
    engaged INTEGER NOT NULL CHECK (engaged IN (0, 1)),
    reason  TEXT    NOT NULL,
    at_ms   INTEGER NOT NULL
);
";

/// Every migration, in order; `MIGRATIONS[i]` upgrades version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The version recorded in the database (0 for a new file).
pub(super) fn current_version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    Ok(conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Brings the database to [`SCHEMA_VERSION`], one transaction per migration.
pub(super) fn migrate(conn: &mut Connection, path: &std::path::Path) -> Result<(), LedgerError> {
    let found = current_version(conn).map_err(LedgerError::sql("reading the schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(LedgerError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(LedgerError::sql("starting a migration"))?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
             DELETE FROM schema_version;",
        )
        .map_err(LedgerError::sql("creating schema_version"))?;
        tx.execute_batch(sql).map_err(LedgerError::sql("applying a migration"))?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [from as i64 + 1])
            .map_err(LedgerError::sql("recording the schema version"))?;
        tx.commit().map_err(LedgerError::sql("committing a migration"))?;
    }
    Ok(())
}
