//! The ledger as the process uses it: `cantilever ledger`, and surviving `kill -9`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use alloy::primitives::U256;
use cantilever::ledger::{
    Ledger, LedgerSummary, Opportunity, Record, RunId, integrity_check, read_records,
};

/// A writer killed with SIGKILL mid-run loses nothing it acknowledged and leaves a sound file.
#[test]
fn every_acknowledged_record_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    for (round, kill_after) in [(0, 137), (1, 1_003)].into_iter() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cantilever"))
            .args(["ledger-crash-writer", "--db"])
            .arg(&db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let run = RunId(first.strip_prefix("run ").unwrap().parse().unwrap());
        let mut acknowledged = BTreeSet::new();
        for line in lines.by_ref() {
            acknowledged.insert(line.unwrap().parse::<u64>().unwrap());
            if acknowledged.len() == kill_after {
                child.kill().unwrap(); // SIGKILL on Unix
                break;
            }
        }
        // Lines already in the pipe were acknowledged before the kill.
        for line in lines.map_while(Result::ok) {
            if let Ok(id) = line.parse::<u64>() {
                acknowledged.insert(id);
            }
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: the writer must have been killed");

        assert_eq!(integrity_check(&db).unwrap(), Vec::<String>::new(), "round {round}");
        let stored: Vec<Opportunity> = read_records(&db, run)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Record::Opportunity(o) => Some(o),
                _ => None,
            })
            .collect();
        let ids: BTreeSet<u64> = stored.iter().map(|o| o.id).collect();
        let missing: Vec<_> = acknowledged.difference(&ids).collect();
        assert!(missing.is_empty(), "round {round}: acknowledged but lost: {missing:?}");
        assert!(ids.len() >= kill_after);
        for o in &stored {
            assert_eq!(o.route, format!("crash test {}", o.id));
            assert_eq!(o.size, U256::from(o.id) * U256::from(10u64).pow(U256::from(18u64)));
        }
        let summary = LedgerSummary::load(&db).unwrap();
        let killed = summary.runs.iter().find(|r| r.run == run).unwrap();
        assert_eq!(killed.ended_at_ms, None, "a killed run has no clean end");
        assert_eq!(killed.total.opportunities, ids.len() as u64);
    }
    // The file stays writable after the crashes.
    let ledger = Ledger::open(&db, Default::default(), "test").unwrap();
    assert_eq!(ledger.run_id(), RunId(3));
}

/// `cantilever ledger --db FILE` prints the desk's summary; `--json` the same as JSON; a missing
/// file is an error that names it.
#[test]
fn ledger_command_prints_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("desk.db");
    let mut ledger = Ledger::open(&db, Default::default(), "test").unwrap();
    let opp = Opportunity {
        id: 1,
        chain_id: 138,
        block: 10,
        strategy: "depeg".into(),
        route: "r".into(),
        token: Default::default(),
        size: U256::from(5u64),
        expected_profit: Default::default(),
        expected_profit_usd: None,
        detected_at_ms: 0,
    };
    ledger.write(&[opp.into()]).unwrap();
    ledger.close().unwrap();

    let bin = env!("CARGO_BIN_EXE_cantilever");
    let out = Command::new(bin).args(["ledger", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("1 run(s)") && text.contains("depeg"), "{text}");

    let out = Command::new(bin).args(["ledger", "--json", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["runs"][0]["strategies"][0]["opportunities"], 1);

    let missing = dir.path().join("nope.db");
    let out = Command::new(bin).args(["ledger", "--db"]).arg(&missing).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.db: no such file"));

    let help = Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("ledger") && !help.contains("crash-writer"), "{help}");
}
