//! Unit tests of the application wiring: config hash and overrides, chain selection, the halt
//! commands, the engine-stats → health/metrics copy and URL redaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::engine::EngineStats;
use crate::ledger::LedgerSummary;
use crate::telemetry::{Health, Metrics, Registry};

/// A valid configuration with one chain with an executor and one without.
fn config_text(dir: &Path) -> String {
    format!(
        r#"
[engine]
ledger_path = "{ledger}"
halt_file = "{halt}"
dry_run = true

[[chains]]
name = "chain138"
chain_id = 138
ws_url = "ws://127.0.0.1:8546"
http_url = "http://127.0.0.1:8545/v2/${{APP_TEST_RPC_KEY}}"
block_time_ms = 2000
executor = "0x00000000000000000000000000000000000000e1"

[chains.submission]
mode = "public-rpc"

[[chains]]
name = "alltra"
chain_id = 651940
ws_url = "ws://127.0.0.1:9546"
http_url = "http://127.0.0.1:9545"
block_time_ms = 5000

[chains.submission]
mode = "public-rpc"

[risk]
nav_usd = 1000000
"#,
        ledger = dir.join("ledger.db").display(),
        halt = dir.join("halt").display(),
    )
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("cfg.toml");
    std::fs::write(&path, config_text(dir)).unwrap();
    path
}

fn load(path: &Path) -> Config {
    Config::load_with_env(path, &|v| (v == "APP_TEST_RPC_KEY").then(|| "s3cr3t-key".to_owned()))
        .unwrap()
}

#[test]
fn config_hash_is_keccak_of_the_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path());
    let (bytes, hash) = hash_file(&path).unwrap();
    assert_eq!(hash, keccak256(&bytes));
    assert_eq!(hash, config_hash(config_text(dir.path()).as_bytes()));
    std::fs::write(&path, format!("{}\n# edited\n", config_text(dir.path()))).unwrap();
    assert_ne!(hash_file(&path).unwrap().1, hash, "an edit changes the hash");
    let missing = hash_file(&dir.path().join("nope.toml")).unwrap_err();
    assert!(missing.to_string().contains("nope.toml"), "{missing}");
}

#[test]
fn mode_overrides_apply_and_revalidate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfg.toml");
    // The embedded default has no ${VAR}s; make it live-shadow-free and dry.
    std::fs::write(&path, crate::config::DEFAULT_CONFIG_TOML).unwrap();
    let mut args = RunArgs::new(&path);
    let (cfg, _) = load_for_run(&args).unwrap();
    assert!(cfg.engine.dry_run && !cfg.engine.shadow);
    args.shadow = true;
    let (cfg, _) = load_for_run(&args).unwrap();
    assert!(cfg.engine.dry_run && cfg.engine.shadow, "--shadow implies dry-run");
    // --dry-run turns shadow off even when the file asks for it.
    let text = crate::config::DEFAULT_CONFIG_TOML.replace("shadow = false", "shadow = true");
    std::fs::write(&path, text).unwrap();
    let args = RunArgs { dry_run: true, ..RunArgs::new(&path) };
    let (cfg, _) = load_for_run(&args).unwrap();
    assert!(cfg.engine.dry_run && !cfg.engine.shadow);
    // Errors come back as the config's own list.
    std::fs::write(&path, "[engine]\nbogus = 1\n").unwrap();
    match load_for_run(&RunArgs::new(&path)) {
        Err(AppError::Config { errors, .. }) => assert!(!errors.is_empty()),
        other => panic!("expected config errors, got {other:?}"),
    }
}

#[test]
fn chains_without_an_executor_are_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load(&write_config(dir.path()));
    let all = run::select_chains(&cfg, None).unwrap();
    assert_eq!(all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["chain138"]);
    assert_eq!(run::select_chains(&cfg, Some("chain138")).unwrap().len(), 1);
    let e = run::select_chains(&cfg, Some("alltra")).unwrap_err().to_string();
    assert!(e.contains("alltra") && e.contains("executor"), "{e}");
    let e = run::select_chains(&cfg, Some("mainnet")).unwrap_err().to_string();
    assert!(e.contains("no such chain") && e.contains("chain138, alltra"), "{e}");
}

#[test]
fn halt_and_rearm_write_the_file_and_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path());
    let halt_file = dir.path().join("halt");
    let db = dir.path().join("ledger.db");

    let o = halt(&path, "  desk: oracle looks wrong ").unwrap();
    assert_eq!(o.change, HaltChange::Changed);
    assert_eq!(o.reason.as_deref(), Some("desk: oracle looks wrong"));
    assert!(halt_file.exists());
    assert!(crate::risk::Halt::load(&halt_file).is_halted());
    let s = LedgerSummary::load(&db).unwrap();
    let last = s.last_halt.clone().unwrap();
    assert!(last.halt.engaged && last.halt.reason == "desk: oracle looks wrong");
    assert_eq!(s.runs.len(), 1);
    assert!(s.runs[0].ended_at_ms.is_some(), "the command's run is closed");
    assert!(s.runs[0].version.contains("halt command"));
    assert_eq!(s.runs[0].config_hash, hash_file(&path).unwrap().1.to_string());

    // A second halt keeps the first reason and records nothing.
    let o = halt(&path, "another").unwrap();
    assert_eq!(o.change, HaltChange::Unchanged);
    assert_eq!(o.reason.as_deref(), Some("desk: oracle looks wrong"));
    assert_eq!(LedgerSummary::load(&db).unwrap().runs.len(), 1);

    let o = rearm(&path).unwrap();
    assert_eq!(o.change, HaltChange::Changed);
    assert_eq!(o.reason.as_deref(), Some("desk: oracle looks wrong"));
    assert!(!halt_file.exists());
    let s = LedgerSummary::load(&db).unwrap();
    assert!(!s.last_halt.unwrap().halt.engaged);
    assert_eq!(s.runs.len(), 2);

    assert_eq!(rearm(&path).unwrap().change, HaltChange::Unchanged);
    assert!(matches!(halt(&path, "  "), Err(AppError::Setup(_))));
}

#[test]
fn halt_needs_only_the_engine_table_and_never_echoes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfg.toml");
    // Unset ${VAR}s and an unknown chain key do not stop a halt.
    let text = format!(
        "{}\n[strategies.nonsense]\nx = 1\n",
        config_text(dir.path()).replace("APP_TEST_RPC_KEY", "APP_TEST_UNSET_VAR")
    );
    std::fs::write(&path, text).unwrap();
    assert_eq!(halt(&path, "x").unwrap().change, HaltChange::Changed);

    // A broken file: the error points at check-config and quotes nothing from the file.
    let secret = "c0ffee15deadbeef".repeat(4);
    std::fs::write(&path, format!("[engine]\ndry_run = \"{secret}\"\nkey = {secret}\n")).unwrap();
    let e = halt(&path, "x").unwrap_err().to_string();
    assert!(e.contains("check-config") && !e.contains(&secret), "{e}");
}

#[test]
fn chain_telemetry_copies_increases_and_sets_health() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load(&write_config(dir.path()));
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    let health = Health::new([("chain138", 2)]);
    let stats = Arc::new(EngineStats::default());
    let inflight = Arc::new(AtomicU64::new(0));
    let mut t = ChainTelemetry::new(
        &metrics,
        &health,
        cfg.chain("chain138").unwrap(),
        stats.clone(),
        inflight.clone(),
    )
    .unwrap();
    assert!(
        ChainTelemetry::new(
            &metrics,
            &health,
            cfg.chain("alltra").unwrap(),
            stats.clone(),
            inflight.clone()
        )
        .is_err(),
        "a chain not registered in the health is refused"
    );

    t.sync(None);
    assert!(!health.report().ready, "not connected before the node answers");

    stats.candidates.store(5, Ordering::Relaxed);
    stats.refused.store(3, Ordering::Relaxed);
    stats.approved.store(2, Ordering::Relaxed);
    stats.submitted.store(2, Ordering::Relaxed);
    stats.stabilizer_trades.store(1, Ordering::Relaxed);
    stats.last_head.store(100, Ordering::Relaxed);
    stats.fresh.store(true, Ordering::Relaxed);
    inflight.store(1, Ordering::Relaxed);
    t.sync(Some(101));
    t.sync(Some(101)); // no double counting
    let report = health.report();
    assert!(report.ready, "{report:?}");
    assert_eq!(report.chains[0].head_lag_blocks, 1);
    stats.candidates.store(7, Ordering::Relaxed);
    t.sync(Some(110));
    assert!(!health.report().ready, "10 blocks behind is over budget");
    assert_eq!(metrics.candidates.get(), 7);

    let mut text = String::new();
    registry.render(&mut text);
    for line in [
        "cantilever_candidates_total 7",
        "cantilever_refusals_total{reason=\"all\"} 3",
        "cantilever_approvals_total{chain=\"chain138\"} 2",
        "cantilever_submissions_total{chain=\"chain138\",kind=\"raw\"} 2",
        "cantilever_stabilizer_trades_total{chain=\"chain138\"} 1",
        "cantilever_engine_head{chain=\"chain138\"} 100",
        "cantilever_inflight_submissions{chain=\"chain138\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    stats.halted.store(true, Ordering::Relaxed);
    assert!(t.is_halted());
    t.set_stopping();
    assert!(!health.report().ready);
}

#[test]
fn endpoint_urls_are_redacted_from_error_texts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load(&write_config(dir.path()));
    let raw = cfg.chain("chain138").unwrap().http_url.expose_secret().to_owned();
    assert!(raw.contains("s3cr3t-key"));
    let text = format!("error sending request for url ({raw}): connection refused");
    let red = redact_urls(&text, &cfg);
    assert!(!red.contains("s3cr3t-key"), "{red}");
    assert!(red.contains("http://127.0.0.1:8545/…") && red.contains("connection refused"), "{red}");
}

/// Every alerting-worthy series is on the `/metrics` body: head lag, reconnects, gaps
/// backfilled, feed lag, reorgs, inclusion outcomes per relay, orphaned and cancelled
/// submissions, PnL, the halt flag, RSS and open files.
#[test]
fn alerting_metrics_are_on_the_metrics_page() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load(&write_config(dir.path()));
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    let health = Health::new([("chain138", 2)]);
    let stats = Arc::new(EngineStats::default());
    let feed = Arc::new(crate::ingest::IngestCounters::default());
    stats.ingest.set(feed.clone()).unwrap();
    let exec = Arc::new(crate::engine::ExecCounters::default());
    let mut t = ChainTelemetry::new(
        &metrics,
        &health,
        cfg.chain("chain138").unwrap(),
        stats.clone(),
        Arc::new(AtomicU64::new(0)),
    )
    .unwrap()
    .with_exec(exec.clone())
    .unwrap();
    feed.connected.store(true, Ordering::Relaxed);
    feed.reconnects.store(2, Ordering::Relaxed);
    feed.backfilled.store(5, Ordering::Relaxed);
    feed.lagged_heads.store(3, Ordering::Relaxed);
    feed.reorgs.store(1, Ordering::Relaxed);
    exec.orphaned.store(1, Ordering::Relaxed);
    exec.cancelled.store(4, Ordering::Relaxed);
    exec.count(&["flashbots".to_owned(), "titan".to_owned()], "included");
    exec.count(&["flashbots".to_owned()], "missed");
    stats.realised_pnl_micro_usd.store(-2_500_000, Ordering::Relaxed);
    stats.last_head.store(90, Ordering::Relaxed);
    t.sync(Some(95));
    t.sync(Some(95)); // no double counting
    metrics.realised_pnl_usd.set(t.realised_pnl_usd());
    health.set_halted(true);

    let exporter = crate::telemetry::Exporter {
        registry: registry.clone(),
        health: health.clone(),
        histograms: Vec::new(),
    };
    let body = exporter.render_metrics();
    let value = |series: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{series}` in\n{body}"))
    };
    let c = "{chain=\"chain138\"}";
    assert_eq!(value(&format!("cantilever_head_lag_blocks{c}")), 5.0);
    assert_eq!(value(&format!("cantilever_reconnects_total{c}")), 2.0);
    assert_eq!(value(&format!("cantilever_gaps_backfilled_total{c}")), 5.0);
    assert_eq!(value(&format!("cantilever_feed_lagged_total{c}")), 3.0);
    assert_eq!(value(&format!("cantilever_reorgs_total{c}")), 1.0);
    assert_eq!(value(&format!("cantilever_orphaned_total{c}")), 1.0);
    assert_eq!(value(&format!("cantilever_bundles_cancelled_total{c}")), 4.0);
    let inc = |relay: &str, outcome: &str| {
        value(&format!("cantilever_inclusions_total{{relay=\"{relay}\",outcome=\"{outcome}\"}}"))
    };
    assert_eq!((inc("flashbots", "included"), inc("flashbots", "missed")), (1.0, 1.0));
    assert_eq!(inc("titan", "included"), 1.0);
    assert_eq!(value(&format!("cantilever_chain_realised_pnl_usd{c}")), -2.5);
    assert_eq!(value("cantilever_realised_pnl_usd"), -2.5);
    assert_eq!(value("cantilever_halted"), 1.0);
    assert!(value("cantilever_rss_bytes") > 1e6);
    assert!(value("cantilever_open_files") >= 3.0);
}
