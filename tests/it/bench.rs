//! `cantilever bench` on the committed devnet cassette, and the generator of that cassette.

use std::{path::PathBuf, time::Duration};

use alloy::{
    primitives::{Address, U256},
    providers::{Provider, ext::AnvilApi},
};
use cantilever::{
    bench::record::{EngineRecordOptions, record_engine},
    contracts::{PmmPool, TestToken},
};

use super::engine::{Bot, devnet_bot, e6};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cassettes").join(name)
}

/// A victim left pending (automine off): cUSDT moved into the pool, then its `sellBase`.
async fn pending_victim(bot: &Bot, pool: Address, amount: U256) {
    let from = bot.keys[0].address();
    let nonce = bot.node.get_transaction_count(from).await.unwrap();
    let tip = 2_000_000_000u128;
    let fee = bot.node.get_gas_price().await.unwrap() * 4 + tip;
    let token = TestToken::new(bot.chain.tokens["cUSDT"].address, &bot.deployer);
    let p = PmmPool::new(pool, &bot.deployer);
    let first = token.transfer(pool, amount).nonce(nonce).gas(200_000);
    let first = first.max_fee_per_gas(fee).max_priority_fee_per_gas(tip);
    let _ = first.send().await.unwrap();
    let second = p.sellBase(from).nonce(nonce + 1).gas(600_000);
    let _ = second.max_fee_per_gas(fee).max_priority_fee_per_gas(tip).send().await.unwrap();
}

/// Regenerates `fixtures/cassettes/devnet-138.{cas,manifest.json}`: a private devnet recorded
/// through the engine for 30 blocks with depeg dumps both ways and pending backrun victims.
/// `cargo test --test it bench::regenerate_devnet_cassette -- --ignored`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the committed fixture; run by hand"]
async fn regenerate_devnet_cassette() {
    let bot = devnet_bot("0.05").await;
    std::fs::create_dir_all(fixture("")).unwrap();
    let manifest = serde_json::json!({ "scenario": "default", "chains": [bot.chain] });
    std::fs::write(
        fixture("devnet-138.manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap();
    // The victims' cUSDT, minted before recording.
    let t = TestToken::new(bot.chain.tokens["cUSDT"].address, &bot.deployer);
    let minted = t.mint(bot.keys[0].address(), e6(2_000_000)).send().await.unwrap();
    cantilever::devnet::deploy::confirm(&bot.deployer, minted, "mint").await.unwrap();
    // Every cUSDT minted outside the vault (the victims' and the dumps') is matched by USDT in the
    // vault, so its backing stays above 95% and redemption stays open.
    let vault = bot.chain.vaults.iter().find(|v| v.official == "USDT").unwrap().address;
    let usdt = TestToken::new(bot.chain.tokens["USDT"].address, &bot.deployer);
    let backed = usdt.mint(vault, e6(5_000_000)).send().await.unwrap();
    cantilever::devnet::deploy::confirm(&bot.deployer, backed, "back the vault").await.unwrap();
    let chain = bot.cfg.chain("chain138").unwrap().clone();
    let out = fixture("devnet-138.cas");
    let opts = EngineRecordOptions {
        chain,
        strategies: bot.cfg.strategies.clone(),
        risk: bot.cfg.risk.clone(),
        out: out.clone(),
        blocks: Some(30),
        duration: Some(Duration::from_secs(300)),
        operator: bot.chain.accounts.operator,
    };
    // (The warm-up future is not Send: the recorder runs on this task, the chain is driven
    // beside it.)
    let done = std::sync::atomic::AtomicBool::new(false);
    let recording = async {
        let r = record_engine(opts, std::future::pending()).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    };
    let driving = async {
        tokio::time::sleep(Duration::from_secs(8)).await;
        let pool = bot.pool("cUSDT/USDT");
        for i in 0..4u64 {
            bot.dump(pool, i % 2 == 0, e6(200_000 + 100_000 * i)).await;
            bot.node.anvil_set_auto_mine(false).await.unwrap();
            pending_victim(&bot, pool, e6(200_000 + 100_000 * i)).await;
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            bot.node.anvil_mine(Some(1), None).await.unwrap();
            bot.node.anvil_set_auto_mine(true).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            bot.node.anvil_mine(Some(1), None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let (summary, ()) = tokio::join!(recording, driving);
    let summary = summary.unwrap();
    eprintln!("{summary}");
    assert!(summary.pending >= 8, "victims recorded: {summary}");
    assert!(std::fs::metadata(&out).unwrap().len() < 1_000_000, "fixture under 1 MB");
}

fn bench_cli(extra: &[&str], dir: &std::path::Path) -> (serde_json::Value, String, String) {
    let json = dir.join("bench.json");
    let html = dir.join("bench.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .args(["bench", "--events"])
        .arg(fixture("devnet-138.cas"))
        .arg("--manifest")
        .arg(fixture("devnet-138.manifest.json"))
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (report, std::fs::read_to_string(&html).unwrap(), stdout)
}

/// Every stage, end to end included, timed for both event kinds; the engine processed every
/// head and signed.
fn assert_every_stage(report: &serde_json::Value, stdout: &str) {
    assert_eq!(report["unsettled"], 0, "{stdout}");
    for kind in ["head", "pending"] {
        let stages = report[kind]["stages"].as_array().unwrap();
        let names: Vec<_> = stages.iter().map(|s| s["stage"].as_str().unwrap()).collect();
        let fetch: &[&str] = if kind == "head" { &["fetch"] } else { &[] };
        let expected: Vec<&str> = ["decode"]
            .into_iter()
            .chain(fetch.iter().copied())
            .chain([
                "handoff",
                "state_apply",
                "screen",
                "size",
                "sim",
                "risk",
                "sign",
                "end_to_end",
            ])
            .collect();
        assert_eq!(names, expected);
        // The cassette holds depeg dumps and pending victims the replayed engine proves and
        // signs: every stage is timed, and its histogram holds every value.
        for s in stages {
            let count = s["count"].as_u64().unwrap();
            assert!(count > 0, "{kind} {} never timed:\n{stdout}", s["stage"]);
            assert!(s["max"].as_u64().unwrap() >= s["p50"].as_u64().unwrap());
            let in_buckets: u64 =
                s["histogram"].as_array().unwrap().iter().map(|b| b[1].as_u64().unwrap()).sum();
            assert_eq!(in_buckets, count, "{kind} {} histogram", s["stage"]);
        }
    }
    assert_eq!(report["counts"]["heads"], report["head"]["events"], "every head processed");
    assert!(
        report["counts"]["approved"].as_u64().unwrap() > 0,
        "candidates approved and signed: {stdout}"
    );
}

/// A busy-polling engine (`--busy-poll`) handles every event of the replay, times every stage
/// and stops when the bench is done (its loop never parks); and the replay is deterministic:
/// busy-polling or parked, the engine makes the same decisions on every event (the lockstep
/// waits for each head itself and for every state read a cold-skipped transaction asked for).
#[test]
fn a_busy_polling_engine_replays_every_event_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _, stdout) = bench_cli(&["--no-baseline", "--busy-poll"], dir.path());
    assert_every_stage(&report, &stdout);
    assert_eq!(report["busy_poll"], true, "{stdout}");
    assert!(stdout.contains("engine busy-polling"), "{stdout}");
    let (parked, _, parked_out) = bench_cli(&["--no-baseline"], dir.path());
    assert_eq!(parked["busy_poll"], false, "{parked_out}");
    assert_eq!(
        report["counts"], parked["counts"],
        "busy-polling:\n{stdout}\nparked:\n{parked_out}"
    );
    assert!(
        report["counts"]["cold_skips"].as_u64().unwrap() > 0,
        "a cold skip is replayed: {stdout}"
    );
}

/// The committed cassette replayed through the engine, with the eth_call baseline in the same
/// run: every candidate the engine proved is evaluated again over RPC on anvil forked at the same
/// block from the cassette, and both agree on status and gas for every one the engine
/// simulated; nothing the fork asked was missing from the cassette (timings are not asserted).
#[test]
fn bench_reports_every_stage_and_the_eth_call_baseline_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let (report, page, stdout) = bench_cli(&[], dir.path());
    assert_every_stage(&report, &stdout);
    let b = &report["baseline"];
    let candidates = b["candidates"].as_u64().unwrap();
    assert!(candidates > 0, "candidates evaluated over RPC:\n{stdout}");
    assert_eq!(b["server_misses"], 0, "the fork found all its state in the cassette:\n{stdout}");
    assert_eq!(b["errors"], 0, "{stdout}");
    assert_eq!(b["disagree"], 0, "{stdout}");
    assert_eq!(
        b["agree"].as_u64().unwrap() + b["not_simulated"].as_u64().unwrap(),
        candidates,
        "{stdout}"
    );
    assert!(b["agree"].as_u64().unwrap() > 0, "{stdout}");
    for call in b["calls"].as_array().unwrap() {
        if !call["ours"].is_null() {
            assert_eq!(call["ours"], call["theirs"], "status and gas: {call}");
            assert!(call["ours"][1].as_u64().unwrap() > 21_000, "gas used: {call}");
        }
    }
    // Both event kinds were evaluated, and the ratio is computed from both sides.
    for kind in ["head", "pending"] {
        let k = &b[kind];
        assert!(k["events"].as_u64().unwrap() > 0, "{kind} events with candidates:\n{stdout}");
        assert!(k["per_event"]["p50"].as_u64().unwrap() > 0);
        assert!(k["speedup_p50"].as_f64().unwrap() > 0.0);
    }
    // The typical bot's baseline: every screened route called once, the profitable ones among
    // them, none missing from the cassette; at least as many calls as proven candidates, and the
    // unprofitable routes too.
    let screened = b["screened_routes"].as_u64().unwrap();
    assert!(screened >= candidates, "{screened} screened, {candidates} proven:\n{stdout}");
    assert!(b["screened_profitable"].as_u64().unwrap() < screened, "{stdout}");
    assert_eq!(b["screened_misses"], 0, "{stdout}");
    assert_eq!(b["screened_errors"], 0, "{stdout}");
    assert_eq!(b["screened_calls"].as_array().unwrap().len() as u64, screened);
    for kind in ["screened_head", "screened_pending"] {
        let k = &b[kind];
        assert!(k["events"].as_u64().unwrap() > 0, "{kind}:\n{stdout}");
        assert!(k["calls"].as_u64().unwrap() >= k["events"].as_u64().unwrap(), "{kind}");
        assert!(k["speedup_p50"].as_f64().unwrap() > 0.0, "{kind}");
    }
    assert!(stdout.contains("baseline per screened route (a typical bot)"), "{stdout}");
    assert!(stdout.contains("baseline per proven candidate"), "{stdout}");
    assert!(page.contains("Per screened route (a typical bot)"), "both baselines on the page");
    assert!(page.contains("<svg") && !page.contains("<script"), "self-contained SVG page");
    assert!(page.contains("Baseline: eth_call"), "baseline section");
    assert!(page.contains("head end_to_end") && page.contains("pending sim"), "stage histograms");
    eprintln!("{stdout}");
}

/// `--sweep` with small pool counts and short paced runs: every pool count and rate ran, the
/// market grew with the pools, each rate sent what it was asked to and the engine examined and
/// signed backruns; the page has the scaling curves.
#[test]
fn bench_sweep_scales_pools_and_pending_rates() {
    let dir = tempfile::tempdir().unwrap();
    let (report, page, stdout) = bench_cli(
        &[
            "--no-baseline",
            "--sweep",
            "--sweep-pools",
            "2,6",
            "--sweep-rates",
            "50,500",
            "--rate-seconds",
            "0.2",
        ],
        dir.path(),
    );
    assert_every_stage(&report["base"], &stdout);
    assert!(report["base"]["baseline"].is_null(), "--no-baseline");
    assert_eq!(report["failures"].as_array().unwrap().len(), 0, "{stdout}");
    let runs = report["runs"].as_array().unwrap();
    let pools: Vec<_> = runs.iter().map(|r| r["synthetic_pools"].as_u64().unwrap()).collect();
    assert_eq!(pools, [2, 6]);
    let venues = |r: &serde_json::Value| r["venues"].as_u64().unwrap();
    assert_eq!(venues(&runs[0]), venues(&report["base"]) + 2, "{stdout}");
    assert_eq!(venues(&runs[1]), venues(&runs[0]) + 4);
    assert!(runs[1]["routes"].as_u64().unwrap() > runs[0]["routes"].as_u64().unwrap());
    for r in runs {
        assert_eq!(r["unsettled"], 0, "{stdout}");
        assert_eq!(r["cut_short"], false, "{stdout}");
        assert_eq!(r["head"]["events"], report["base"]["head"]["events"], "every head sent");
        assert!(r["counts"]["approved"].as_u64().unwrap() > 0, "{stdout}");
    }
    let rates = report["rates"].as_array().unwrap();
    assert_eq!(rates.len(), 2);
    let recorded = report["base"]["pending"]["events"].as_u64().unwrap();
    for (r, rate) in rates.iter().zip([50.0, 500.0]) {
        let p = &r["pacing"];
        assert_eq!(p["rate"].as_f64().unwrap(), rate);
        let repeat = p["repeat"].as_u64().unwrap();
        assert_eq!(repeat, ((rate * 0.2) / recorded as f64).ceil().max(1.0) as u64);
        assert_eq!(p["sent"].as_u64().unwrap(), repeat * recorded, "{stdout}");
        assert_eq!(r["pending"]["events"].as_u64().unwrap(), repeat * recorded);
        assert!(p["examined"].as_u64().unwrap() > 0, "{stdout}");
        assert!(p["achieved_rate"].as_f64().unwrap() > 0.0);
        let e2e = r["pending"]["stages"].as_array().unwrap().last().unwrap();
        assert!(e2e["count"].as_u64().unwrap() > 0, "paced backruns signed:\n{stdout}");
    }
    assert!(page.contains("Pools → latency and memory"), "pools curve");
    assert!(page.contains("Pending rate → latency and queueing"), "rate curve");
    assert!(page.contains("<polyline") && !page.contains("<script"));
    eprintln!("{stdout}");
}
