//! The read side: records back out of the database, integrity checks.

use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;

use alloy::primitives::{B256, I256};
use rusqlite::{Connection, OpenFlags, Row};

use super::record::{
    Decision, Halt, Inclusion, InclusionStatus, Opportunity, Position, PositionState, Record,
    Simulation, Submission, SubmissionKind, SubmissionOutcome, TokenDelta,
};
use super::{LedgerError, RunId, schema};

/// Opens `path` read-only after checking it exists and its schema is one this build knows.
pub(super) fn open_read_only(path: &Path) -> Result<Connection, LedgerError> {
    if !path.exists() {
        return Err(LedgerError::NotFound { path: path.to_owned() });
    }
    let open_err = |source| LedgerError::Open { path: path.to_owned(), source };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.busy_timeout(super::BUSY_TIMEOUT).map_err(open_err)?;
    let found = schema::current_version(&conn).map_err(open_err)?;
    if found > schema::SCHEMA_VERSION {
        return Err(LedgerError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: schema::SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

/// Runs `PRAGMA integrity_check` on the ledger at `path`; returns the problems found (empty when
/// the file is intact).
///
/// # Errors
/// [`LedgerError::NotFound`], [`LedgerError::Open`] or [`LedgerError::Sql`] when the check
/// cannot run at all.
pub fn integrity_check(path: &Path) -> Result<Vec<String>, LedgerError> {
    let conn = open_read_only(path)?;
    let mut stmt =
        conn.prepare("PRAGMA integrity_check").map_err(LedgerError::sql("integrity check"))?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
        .map_err(LedgerError::sql("integrity check"))?;
    Ok(lines.into_iter().filter(|l| l != "ok").collect())
}

/// Every record of run `run`, by table (opportunities, decisions, simulations, submissions,
/// inclusions, positions last written by the run, halts), each table in insertion order.
///
/// # Errors
/// Opening errors as [`integrity_check`]; [`LedgerError::Corrupt`] for a stored value that does
/// not parse.
pub fn read_records(path: &Path, run: RunId) -> Result<Vec<Record>, LedgerError> {
    let conn = open_read_only(path)?;
    let mut out = Vec::new();
    read_table(
        &conn,
        run,
        "SELECT id, chain_id, block, strategy, route, token, size,
        expected_profit, expected_profit_usd, detected_at_ms FROM opportunities
        WHERE run_id = ?1 ORDER BY rowid",
        &mut out,
        |r| {
            Ok(Record::Opportunity(Opportunity {
                id: r.get(0)?,
                chain_id: r.get(1)?,
                block: r.get(2)?,
                strategy: r.get(3)?,
                route: r.get(4)?,
                token: parse(r, 5, "opportunities", "token")?,
                size: parse(r, 6, "opportunities", "size")?,
                expected_profit: parse_i256(r, 7, "opportunities", "expected_profit")?,
                expected_profit_usd: r.get(8)?,
                detected_at_ms: r.get(9)?,
            }))
        },
    )?;
    read_table(
        &conn,
        run,
        "SELECT opportunity_id, approved, refusal_kind, reason, at_ms
        FROM decisions WHERE run_id = ?1 ORDER BY seq",
        &mut out,
        |r| {
            Ok(Record::Decision(Decision {
                opportunity_id: r.get(0)?,
                approved: r.get(1)?,
                refusal_kind: r.get(2)?,
                reason: r.get(3)?,
                at_ms: r.get(4)?,
            }))
        },
    )?;
    read_table(
        &conn,
        run,
        "SELECT opportunity_id, block, success, profit, profit_usd, gas_used,
        revert_reason, deltas, at_ms FROM simulations WHERE run_id = ?1 ORDER BY seq",
        &mut out,
        |r| {
            let raw: Vec<(String, String)> = json(r, 7, "simulations", "deltas")?;
            let deltas = raw
                .into_iter()
                .map(|(token, delta)| {
                    Ok(TokenDelta {
                        token: parse_str(&token, "simulations", "deltas")?,
                        delta: I256::from_dec_str(&delta)
                            .map_err(|e| corrupt("simulations", "deltas", &delta, e))?,
                    })
                })
                .collect::<Result<_, LedgerError>>()?;
            Ok(Record::Simulation(Simulation {
                opportunity_id: r.get(0)?,
                block: r.get(1)?,
                success: r.get(2)?,
                profit: parse_i256(r, 3, "simulations", "profit")?,
                profit_usd: r.get(4)?,
                gas_used: r.get(5)?,
                revert_reason: r.get(6)?,
                deltas,
                at_ms: r.get(8)?,
            }))
        },
    )?;
    read_table(
        &conn,
        run,
        "SELECT id, opportunity_id, chain_id, kind, tx_hashes, relay,
        target_block, nonce, max_fee_per_gas, outcome, detail, at_ms FROM submissions
        WHERE run_id = ?1 ORDER BY rowid",
        &mut out,
        |r| {
            let hashes: Vec<String> = json(r, 4, "submissions", "tx_hashes")?;
            Ok(Record::Submission(Submission {
                id: r.get(0)?,
                opportunity_id: r.get(1)?,
                chain_id: r.get(2)?,
                kind: parse_tag(r, 3, "submissions", "kind")?,
                tx_hashes: hashes
                    .iter()
                    .map(|h| parse_str::<B256>(h, "submissions", "tx_hashes"))
                    .collect::<Result<_, _>>()?,
                relay: r.get(5)?,
                target_block: r.get(6)?,
                nonce: r.get(7)?,
                max_fee_per_gas: parse(r, 8, "submissions", "max_fee_per_gas")?,
                outcome: parse_tag(r, 9, "submissions", "outcome")?,
                detail: r.get(10)?,
                at_ms: r.get(11)?,
            }))
        },
    )?;
    read_table(
        &conn,
        run,
        "SELECT submission_id, block, status, reason, gas_used, pnl_token,
        realised_pnl, realised_pnl_usd, at_ms FROM inclusions WHERE run_id = ?1 ORDER BY seq",
        &mut out,
        |r| {
            Ok(Record::Inclusion(Inclusion {
                submission_id: r.get(0)?,
                block: r.get(1)?,
                status: parse_tag(r, 2, "inclusions", "status")?,
                reason: r.get(3)?,
                gas_used: r.get(4)?,
                pnl_token: parse(r, 5, "inclusions", "pnl_token")?,
                realised_pnl: parse_i256(r, 6, "inclusions", "realised_pnl")?,
                realised_pnl_usd: r.get(7)?,
                at_ms: r.get(8)?,
            }))
        },
    )?;
    read_table(
        &conn,
        run,
        "SELECT id, chain_id, token, amount, amount_usd, state, opened_at_ms,
        closed_at_ms, notes FROM positions WHERE run_id = ?1 ORDER BY rowid",
        &mut out,
        |r| Ok(Record::Position(position(r)?)),
    )?;
    read_table(
        &conn,
        run,
        "SELECT engaged, reason, at_ms FROM halts WHERE run_id = ?1
        ORDER BY seq",
        &mut out,
        |r| Ok(Record::Halt(Halt { engaged: r.get(0)?, reason: r.get(1)?, at_ms: r.get(2)? })),
    )?;
    Ok(out)
}

/// A `positions` row selected as `id, chain_id, token, amount, amount_usd, state, opened_at_ms,
/// closed_at_ms, notes`.
pub(super) fn position(r: &Row<'_>) -> Result<Position, LedgerError> {
    Ok(Position {
        id: r.get(0)?,
        chain_id: r.get(1)?,
        token: parse(r, 2, "positions", "token")?,
        amount: parse(r, 3, "positions", "amount")?,
        amount_usd: r.get(4)?,
        state: parse_tag(r, 5, "positions", "state")?,
        opened_at_ms: r.get(6)?,
        closed_at_ms: r.get(7)?,
        notes: r.get(8)?,
    })
}

impl From<rusqlite::Error> for LedgerError {
    fn from(source: rusqlite::Error) -> Self {
        Self::Sql { what: "reading a row", source }
    }
}

fn read_table(
    conn: &Connection,
    run: RunId,
    sql: &str,
    out: &mut Vec<Record>,
    map: impl Fn(&Row<'_>) -> Result<Record, LedgerError>,
) -> Result<(), LedgerError> {
    let mut stmt = conn.prepare(sql).map_err(LedgerError::sql("reading records"))?;
    let mut rows = stmt.query([run.0]).map_err(LedgerError::sql("reading records"))?;
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(())
}

pub(super) fn corrupt(
    table: &'static str,
    column: &'static str,
    value: &str,
    reason: impl Display,
) -> LedgerError {
    LedgerError::Corrupt { table, column, value: value.to_owned(), reason: reason.to_string() }
}

pub(super) fn parse_str<T: FromStr>(
    s: &str,
    table: &'static str,
    column: &'static str,
) -> Result<T, LedgerError>
where
    T::Err: Display,
{
    s.parse().map_err(|e| corrupt(table, column, s, e))
}

fn parse<T: FromStr>(
    r: &Row<'_>,
    i: usize,
    table: &'static str,
    column: &'static str,
) -> Result<T, LedgerError>
where
    T::Err: Display,
{
    parse_str(&r.get::<_, String>(i)?, table, column)
}

/// Signed amounts are decimal; `I256::from_str` would also take hex, `from_dec_str` is exact.
pub(super) fn parse_i256(
    r: &Row<'_>,
    i: usize,
    table: &'static str,
    column: &'static str,
) -> Result<I256, LedgerError> {
    let s: String = r.get(i)?;
    I256::from_dec_str(&s).map_err(|e| corrupt(table, column, &s, e))
}

fn json<T: serde::de::DeserializeOwned>(
    r: &Row<'_>,
    i: usize,
    table: &'static str,
    column: &'static str,
) -> Result<T, LedgerError> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|e| corrupt(table, column, &s, e))
}

/// The stored tags of the record enums.
pub(super) trait Tag: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn tag(self) -> &'static str;
}

macro_rules! tags {
    ($($t:ty: [$($v:ident),*];)*) => {$(
        impl Tag for $t {
            const ALL: &'static [Self] = &[$(<$t>::$v),*];
            fn tag(self) -> &'static str {
                self.as_str()
            }
        }
    )*};
}
tags! {
    SubmissionKind: [Raw, Bundle];
    SubmissionOutcome: [Accepted, Rejected, Failed, Cancelled];
    InclusionStatus: [Included, Reverted, Missed, Orphaned];
    PositionState: [Open, Closed];
}

pub(super) fn parse_tag<T: Tag>(
    r: &Row<'_>,
    i: usize,
    table: &'static str,
    column: &'static str,
) -> Result<T, LedgerError> {
    let s: String = r.get(i)?;
    T::ALL
        .iter()
        .copied()
        .find(|t| t.tag() == s)
        .ok_or_else(|| corrupt(table, column, &s, "unknown tag"))
}
