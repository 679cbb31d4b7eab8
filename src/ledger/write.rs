//! One INSERT per record kind, on a prepared (cached) statement.

use rusqlite::{Connection, params};

use super::record::{
    Decision, Halt, Inclusion, Opportunity, Position, Record, Simulation, Submission,
};

/// Writes `record` for run `run` inside the caller's transaction.
pub(super) fn insert(conn: &Connection, run: i64, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::Opportunity(r) => opportunity(conn, run, r),
        Record::Decision(r) => decision(conn, run, r),
        Record::Simulation(r) => simulation(conn, run, r),
        Record::Submission(r) => submission(conn, run, r),
        Record::Inclusion(r) => inclusion(conn, run, r),
        Record::Position(r) => position(conn, run, r),
        Record::Halt(r) => halt(conn, run, r),
    }
}

fn opportunity(conn: &Connection, run: i64, r: &Opportunity) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO opportunities (run_id, id, chain_id, block, strategy, route, token, size,
             expected_profit, expected_profit_usd, detected_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        run,
        r.id,
        r.chain_id,
        r.block,
        r.strategy,
        r.route,
        r.token.to_string(),
        r.size.to_string(),
        r.expected_profit.to_string(),
        r.expected_profit_usd,
        r.detected_at_ms,
    ])?;
    Ok(())
}

fn decision(conn: &Connection, run: i64, r: &Decision) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO decisions (run_id, opportunity_id, approved, refusal_kind, reason, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![run, r.opportunity_id, r.approved, r.refusal_kind, r.reason, r.at_ms])?;
    Ok(())
}

fn simulation(conn: &Connection, run: i64, r: &Simulation) -> rusqlite::Result<()> {
    let deltas: Vec<(String, String)> =
        r.deltas.iter().map(|d| (d.token.to_string(), d.delta.to_string())).collect();
    let deltas = serde_json::to_string(&deltas)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(
        "INSERT INTO simulations (run_id, opportunity_id, block, success, profit, profit_usd,
             gas_used, revert_reason, deltas, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        run,
        r.opportunity_id,
        r.block,
        r.success,
        r.profit.to_string(),
        r.profit_usd,
        r.gas_used,
        r.revert_reason,
        deltas,
        r.at_ms,
    ])?;
    Ok(())
}

/// A second record with the same id updates the outcome (a cancel after a reorg, say).
fn submission(conn: &Connection, run: i64, r: &Submission) -> rusqlite::Result<()> {
    let hashes: Vec<String> = r.tx_hashes.iter().map(ToString::to_string).collect();
    let hashes = serde_json::to_string(&hashes)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(
        "INSERT INTO submissions (run_id, id, opportunity_id, chain_id, kind, tx_hashes, relay,
             target_block, nonce, max_fee_per_gas, outcome, detail, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (run_id, id) DO UPDATE SET
             outcome = excluded.outcome, detail = excluded.detail, at_ms = excluded.at_ms",
    )?
    .execute(params![
        run,
        r.id,
        r.opportunity_id,
        r.chain_id,
        r.kind.as_str(),
        hashes,
        r.relay,
        r.target_block,
        r.nonce,
        r.max_fee_per_gas.to_string(),
        r.outcome.as_str(),
        r.detail,
        r.at_ms,
    ])?;
    Ok(())
}

fn inclusion(conn: &Connection, run: i64, r: &Inclusion) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO inclusions (run_id, submission_id, block, status, reason, gas_used, pnl_token,
             realised_pnl, realised_pnl_usd, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        run,
        r.submission_id,
        r.block,
        r.status.as_str(),
        r.reason,
        r.gas_used,
        r.pnl_token.to_string(),
        r.realised_pnl.to_string(),
        r.realised_pnl_usd,
        r.at_ms,
    ])?;
    Ok(())
}

/// Upsert: a position is written again to change its amount or close it.
fn position(conn: &Connection, run: i64, r: &Position) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO positions (id, run_id, chain_id, token, amount, amount_usd, state,
             opened_at_ms, closed_at_ms, notes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET
             run_id = excluded.run_id, chain_id = excluded.chain_id, token = excluded.token,
             amount = excluded.amount, amount_usd = excluded.amount_usd, state = excluded.state,
             opened_at_ms = excluded.opened_at_ms, closed_at_ms = excluded.closed_at_ms,
             notes = excluded.notes",
    )?
    .execute(params![
        r.id,
        run,
        r.chain_id,
        r.token.to_string(),
        r.amount.to_string(),
        r.amount_usd,
        r.state.as_str(),
        r.opened_at_ms,
        r.closed_at_ms,
        r.notes,
    ])?;
    Ok(())
}

fn halt(conn: &Connection, run: i64, r: &Halt) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO halts (run_id, engaged, reason, at_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![run, r.engaged, r.reason, r.at_ms])?;
    Ok(())
}
