use alloy::primitives::{Address, B256, I256, U256, address, b256};

use super::*;

const USDC: Address = address!("0x00000000000000000000000000000000000000c1");
const USDT: Address = address!("0x00000000000000000000000000000000000000c2");
const HASH: B256 = b256!("0x1111111111111111111111111111111111111111111111111111111111111111");

fn i(v: i64) -> I256 {
    I256::try_from(v).unwrap()
}

pub(crate) fn opportunity(id: u64, strategy: &str) -> Opportunity {
    Opportunity {
        id,
        chain_id: 138,
        block: 100 + id,
        strategy: strategy.to_owned(),
        route: "USDC -> pmm:USDC/USDT -> USDT -> v2:USDT/USDC -> USDC".to_owned(),
        token: USDC,
        size: U256::from(10u64).pow(U256::from(30u64)) + U256::from(id),
        expected_profit: i(1_500_000),
        expected_profit_usd: Some(1.5),
        detected_at_ms: 1_700_000_000_000 + id,
    }
}

fn decision(opportunity_id: u64, refusal: Option<(&str, &str)>) -> Decision {
    Decision {
        opportunity_id,
        approved: refusal.is_none(),
        refusal_kind: refusal.map(|r| r.0.to_owned()),
        reason: refusal.map(|r| r.1.to_owned()),
        at_ms: 1_700_000_000_100,
    }
}

fn submission(id: u64, opportunity_id: u64) -> Submission {
    Submission {
        id,
        opportunity_id,
        chain_id: 138,
        kind: SubmissionKind::Bundle,
        tx_hashes: vec![HASH, B256::ZERO],
        relay: Some("flashbots".to_owned()),
        target_block: 101,
        nonce: 7,
        max_fee_per_gas: u128::MAX,
        outcome: SubmissionOutcome::Accepted,
        detail: None,
        at_ms: 1_700_000_000_200,
    }
}

fn inclusion(submission_id: u64, status: InclusionStatus, pnl: i64, usd: f64) -> Inclusion {
    Inclusion {
        submission_id,
        block: 101,
        status,
        reason: (status != InclusionStatus::Included).then(|| "outbid".to_owned()),
        gas_used: 180_000,
        pnl_token: USDC,
        realised_pnl: i(pnl),
        realised_pnl_usd: Some(usd),
        at_ms: 1_700_000_000_300,
    }
}

fn every_kind() -> Vec<Record> {
    vec![
        opportunity(1, "depeg").into(),
        decision(1, Some(("exposure", "USDC exposure 26% > 25% of NAV"))).into(),
        Simulation {
            opportunity_id: 1,
            block: 101,
            success: false,
            profit: I256::MIN,
            profit_usd: None,
            gas_used: 21_000,
            revert_reason: Some("profit below minimum".to_owned()),
            deltas: vec![
                TokenDelta { token: USDC, delta: i(-5) },
                TokenDelta { token: USDT, delta: I256::MAX },
            ],
            at_ms: 3,
        }
        .into(),
        submission(9, 1).into(),
        inclusion(9, InclusionStatus::Reverted, -42, -0.01).into(),
        Position {
            id: "bridge:0x11".to_owned(),
            chain_id: 651_940,
            token: USDT,
            amount: U256::MAX,
            amount_usd: None,
            state: PositionState::Open,
            opened_at_ms: 5,
            closed_at_ms: None,
            notes: Some("cross-chain leg".to_owned()),
        }
        .into(),
        Halt { engaged: true, reason: "3 consecutive reverts".to_owned(), at_ms: 6 }.into(),
    ]
}

#[test]
fn every_record_kind_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path, HASH, "0.1.0").unwrap();
    let run = ledger.run_id();
    let records = every_kind();
    assert_eq!(ledger.write(&records).unwrap(), 0);
    assert_eq!(read_records(&path, run).unwrap(), records);
    ledger.close().unwrap();
    assert!(integrity_check(&path).unwrap().is_empty());
}

#[test]
fn the_writer_thread_commits_everything_before_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let handle = Ledger::open(&path, HASH, "0.1.0").unwrap().spawn().unwrap();
    let run = handle.run_id();
    let other = handle.clone();
    for id in 0..1000 {
        other.record(opportunity(id, "triangle"));
    }
    handle.flush().unwrap();
    assert_eq!(read_records(&path, run).unwrap().len(), 1000);
    let stats = handle.stats();
    assert_eq!((stats.written, stats.failed, stats.lost, stats.queue_depth), (1000, 0, 0, 0));
    assert!(stats.commits >= 1);

    // A duplicate id fails on its own, is counted and reported by the next flush; the rest commit.
    handle.record(opportunity(5, "triangle"));
    handle.record(opportunity(1000, "triangle"));
    assert!(matches!(handle.flush(), Err(LedgerError::WriteFailed { failed: 1 })));
    handle.flush().unwrap();
    assert_eq!(read_records(&path, run).unwrap().len(), 1001);

    handle.close().unwrap();
    handle.record(opportunity(2000, "triangle"));
    assert_eq!(handle.stats().lost, 1);
    assert!(matches!(handle.flush(), Err(LedgerError::WriterGone)));
    let summary = LedgerSummary::load(&path).unwrap();
    assert!(summary.runs[0].ended_at_ms.is_some(), "close marks the run ended");
}

#[test]
fn a_second_open_migrates_nothing_and_starts_a_new_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let first = Ledger::open(&path, HASH, "0.1.0").unwrap();
    let second = Ledger::open(&path, B256::ZERO, "0.1.1").unwrap();
    assert_eq!(second.run_id().0, first.run_id().0 + 1);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(schema::current_version(&conn).unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_newer_schema_and_a_non_database_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(Ledger::open(&path, HASH, "0.1.0").unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    let e = Ledger::open(&path, HASH, "0.1.0").unwrap_err();
    assert!(matches!(e, LedgerError::NewerSchema { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("ledger.db"), "{e}");
    assert!(matches!(LedgerSummary::load(&path), Err(LedgerError::NewerSchema { .. })));

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
    let e = Ledger::open(&junk, HASH, "0.1.0").unwrap_err();
    assert!(matches!(e, LedgerError::Open { .. }) && e.to_string().contains("junk.db"), "{e}");
    let missing = dir.path().join("missing.db");
    assert!(matches!(LedgerSummary::load(&missing), Err(LedgerError::NotFound { .. })));
}

#[test]
fn a_corrupt_amount_is_named_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path, HASH, "0.1.0").unwrap();
    ledger.write(&[opportunity(1, "depeg").into()]).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE opportunities SET size = '12x'", [])
        .unwrap();
    let e = read_records(&path, ledger.run_id()).unwrap_err();
    assert!(
        matches!(e, LedgerError::Corrupt { table: "opportunities", column: "size", .. }),
        "{e}"
    );
}

/// A known data set: two runs, two strategies, every outcome, a reorg, positions and halts.
fn known_data_set(path: &std::path::Path) {
    let mut first = Ledger::open(path, HASH, "0.1.0").unwrap();
    let mut records: Vec<Record> = Vec::new();
    for id in 1..=6 {
        records.push(opportunity(id, "depeg").into());
    }
    for id in 7..=9 {
        records.push(opportunity(id, "triangle").into());
    }
    // depeg: 1-3 approved; 4, 5 exposure; 6 flash_spike. triangle: 7 approved; 8, 9 min_profit.
    for id in [1, 2, 3, 7] {
        records.push(decision(id, None).into());
    }
    records.push(decision(4, Some(("exposure", "USDC 26% of NAV"))).into());
    records.push(decision(5, Some(("exposure", "USDC 27% of NAV"))).into());
    records.push(decision(6, Some(("flash_spike", "deviation held 1 of 3 blocks"))).into());
    records.push(decision(8, Some(("min_profit", "0.2 < 1.0 USD"))).into());
    records.push(decision(9, Some(("min_profit", "0.1 < 1.0 USD"))).into());
    for (sub, opp) in [(1, 1), (2, 2), (3, 3), (4, 7)] {
        records.push(submission(sub, opp).into());
    }
    records.push(inclusion(1, InclusionStatus::Included, 2_000_000, 2.0).into());
    records.push(inclusion(2, InclusionStatus::Reverted, -300_000, -0.3).into());
    // Submission 3 was included, reorged out, then missed: its outcome is the miss.
    records.push(inclusion(3, InclusionStatus::Included, 9_000_000, 9.0).into());
    records.push(inclusion(3, InclusionStatus::Orphaned, 0, 0.0).into());
    records.push(inclusion(3, InclusionStatus::Missed, 0, 0.0).into());
    records.push(inclusion(4, InclusionStatus::Included, 500_000, 0.5).into());
    let pos = |id: &str, state| Position {
        id: id.to_owned(),
        chain_id: 651_940,
        token: USDT,
        amount: U256::from(1_000_000u64),
        amount_usd: Some(1.0),
        state,
        opened_at_ms: 10,
        closed_at_ms: None,
        notes: None,
    };
    records.push(pos("a", PositionState::Open).into());
    records.push(pos("b", PositionState::Open).into());
    records.push(Halt { engaged: true, reason: "daily loss cap".into(), at_ms: 20 }.into());
    assert_eq!(first.write(&records).unwrap(), 0);
    first.close().unwrap();

    // The second run closes position b, re-arms, and finds one opportunity; it is killed (no close).
    let mut second = Ledger::open(path, B256::ZERO, "0.1.1").unwrap();
    let closed = Position { closed_at_ms: Some(30), ..pos("b", PositionState::Closed) };
    let halt = Halt { engaged: false, reason: "operator re-armed".into(), at_ms: 31 };
    second.write(&[closed.into(), halt.into(), opportunity(1, "depeg").into()]).unwrap();
}

#[test]
fn the_summary_counts_a_known_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    known_data_set(&path);
    let s = LedgerSummary::load(&path).unwrap();
    assert_eq!(s.schema_version, SCHEMA_VERSION);
    assert_eq!(s.runs.len(), 2);
    let run = &s.runs[0];
    assert!(run.ended_at_ms.is_some() && s.runs[1].ended_at_ms.is_none());
    assert_eq!(run.config_hash, HASH.to_string());
    let names: Vec<_> = run.strategies.iter().map(|s| s.strategy.as_str()).collect();
    assert_eq!(names, ["depeg", "triangle"]);

    let depeg = &run.strategies[0];
    assert_eq!(
        (depeg.opportunities, depeg.approved, depeg.refused, depeg.submissions),
        (6, 3, 3, 3)
    );
    assert_eq!((depeg.included, depeg.reverted, depeg.missed, depeg.orphaned), (1, 1, 1, 0));
    assert_eq!(depeg.inclusion_rate, Some(1.0 / 3.0));
    assert!((depeg.realised_pnl_usd - 1.7).abs() < 1e-9);
    assert_eq!(depeg.realised_pnl, vec![TokenPnl { token: USDC, pnl: i(1_700_000) }]);
    let kinds: Vec<_> = depeg.top_refusals.iter().map(|r| (r.kind.as_str(), r.count)).collect();
    assert_eq!(kinds, [("exposure", 2), ("flash_spike", 1)]);
    assert_eq!(depeg.top_refusals[0].example.as_deref(), Some("USDC 27% of NAV"));

    let triangle = &run.strategies[1];
    assert_eq!((triangle.opportunities, triangle.approved, triangle.refused), (3, 1, 2));
    assert_eq!((triangle.included, triangle.inclusion_rate), (1, Some(1.0)));

    let total = &run.total;
    assert_eq!(
        (total.opportunities, total.approved, total.refused, total.submissions),
        (9, 4, 5, 4)
    );
    assert_eq!((total.included, total.reverted, total.missed), (2, 1, 1));
    assert_eq!(total.inclusion_rate, Some(0.5));
    assert_eq!(total.realised_pnl, vec![TokenPnl { token: USDC, pnl: i(2_200_000) }]);
    let kinds: Vec<_> = total.top_refusals.iter().map(|r| (r.kind.as_str(), r.count)).collect();
    assert_eq!(kinds, [("exposure", 2), ("min_profit", 2), ("flash_spike", 1)]);

    assert_eq!(s.runs[1].total.opportunities, 1);
    let open: Vec<_> = s.open_positions.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(open, ["a"]);
    let last = s.last_halt.as_ref().unwrap();
    assert_eq!((last.run, last.halt.engaged), (s.runs[1].run, false));

    let text = s.to_string();
    for needle in [
        "2 run(s)",
        "depeg",
        "33.3%",
        "top refusals, depeg: exposure x2 (e.g. USDC 27% of NAV); flash_spike x1",
        "realised pnl, depeg: 1700000 raw of",
        "no clean end",
        "open positions: 1",
        "last halt: re-armed",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let json: serde_json::Value = serde_json::to_value(&s).unwrap();
    assert_eq!(json["runs"][0]["total"]["realised_pnl"][0]["pnl"], "2200000");
    assert_eq!(json["open_positions"][0]["amount"], "1000000");
    assert_eq!(json["last_halt"]["engaged"], false);
    assert_eq!(json["last_halt"]["run"], 2);
}

#[test]
fn an_empty_ledger_summarises_to_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    Ledger::open(&path, HASH, "0.1.0").unwrap().close().unwrap();
    let s = LedgerSummary::load(&path).unwrap();
    assert_eq!(s.runs.len(), 1);
    assert_eq!(s.runs[0].total.opportunities, 0);
    assert!(s.to_string().contains("open positions: none"));
}
