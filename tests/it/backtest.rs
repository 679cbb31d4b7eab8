//! `cantilever backtest`: an RPC run against a live devnet (anvil as the archive), its offline
//! re-run from the answer cache, its cassette, the embedded default and its generator.

use std::path::{Path, PathBuf};

use alloy::{
    primitives::{Address, U256},
    providers::{Provider, ext::AnvilApi},
};
use cantilever::{
    backtest::{self, BacktestReport, RpcOptions, Setup},
    bench::ConfigFile,
    cassette::Cassette,
    contracts::{PmmPool, ReserveVault, TestToken},
    devnet::deploy::confirm,
};

use super::engine::{Bot, devnet_bot, e6};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/backtest").join(name)
}

/// A victim left pending (automine off) then mined with the block: base moved into the pool,
/// then its `sellBase`, from the victim key.
async fn victim_block(bot: &Bot, pool: Address, amount: U256) {
    let from = bot.keys[0].address();
    bot.node.anvil_set_auto_mine(false).await.unwrap();
    let nonce = bot.node.get_transaction_count(from).await.unwrap();
    let tip = 2_000_000_000u128;
    let fee = bot.node.get_gas_price().await.unwrap() * 4 + tip;
    let token = TestToken::new(bot.chain.tokens["cUSDT"].address, &bot.deployer);
    let p = PmmPool::new(pool, &bot.deployer);
    let first = token.transfer(pool, amount).nonce(nonce).gas(200_000);
    let _ = first.max_fee_per_gas(fee).max_priority_fee_per_gas(tip).send().await.unwrap();
    let second = p.sellBase(from).nonce(nonce + 1).gas(600_000);
    let _ = second.max_fee_per_gas(fee).max_priority_fee_per_gas(tip).send().await.unwrap();
    bot.node.anvil_mine(Some(1), None).await.unwrap();
    bot.node.anvil_set_auto_mine(true).await.unwrap();
}

/// The cUSDT/USDT mid price (both tokens have 6 decimals).
async fn mid(bot: &Bot, pool: Address) -> f64 {
    let m = PmmPool::new(pool, &bot.node).getMidPrice().call().await.unwrap();
    m.to_string().parse::<f64>().unwrap() / 1e18
}

/// Sells into `pool` until its mid price is within 0.3% of `target`.
async fn move_to(bot: &Bot, pool: Address, target: f64) {
    for _ in 0..8 {
        let now = mid(bot, pool).await;
        if (now - target).abs() < 0.003 {
            return;
        }
        let amount = ((now - target).abs() * 1_500_000.0) as u64 + 1_000;
        bot.dump(pool, now > target, e6(amount)).await;
    }
}

/// Mints the victim's cUSDT and backs the vault with USDT so redemption stays open while it is
/// not paused on purpose.
async fn fund(bot: &Bot) {
    let t = TestToken::new(bot.chain.tokens["cUSDT"].address, &bot.deployer);
    let minted = t.mint(bot.keys[0].address(), e6(5_000_000)).send().await.unwrap();
    confirm(&bot.deployer, minted, "mint").await.unwrap();
    let usdt = TestToken::new(bot.chain.tokens["USDT"].address, &bot.deployer);
    let backed = usdt.mint(vault(bot), e6(20_000_000)).send().await.unwrap();
    confirm(&bot.deployer, backed, "back the vault").await.unwrap();
}

fn vault(bot: &Bot) -> Address {
    bot.chain.vaults.iter().find(|v| v.official == "USDT").unwrap().address
}

async fn head(bot: &Bot) -> u64 {
    bot.node.get_block_number().await.unwrap()
}

fn manifest_file(bot: &Bot, dir: &Path) -> PathBuf {
    let path = dir.join("manifest.json");
    let m = serde_json::json!({ "scenario": "default", "chains": [bot.chain] });
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    path
}

fn same_run(a: &BacktestReport, b: &BacktestReport) {
    assert_eq!(a.decisions, b.decisions, "decisions differ");
    assert_eq!(a.peg, b.peg, "peg readings differ");
    assert_eq!(a.totals, b.totals);
    assert_eq!(a.strategies, b.strategies);
    assert_eq!(a.routes, b.routes);
    assert_eq!((a.from, a.to, a.blocks, a.transactions), (b.from, b.to, b.blocks, b.transactions));
}

/// An RPC backtest over a live devnet with depeg dumps and pending victims: it decides, signs
/// and judges; a second run from the same cache pointed at a dead port gives the same report
/// (it makes no network request); the cassette it recorded replays to the same decisions and
/// PnL with no network at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_backtest_reruns_offline_and_matches_its_cassette() {
    let bot = devnet_bot("0.05").await;
    fund(&bot).await;
    let pool = bot.pool("cUSDT/USDT");
    let from = head(&bot).await + 1;
    for i in 0..3u64 {
        bot.dump(pool, i % 2 == 0, e6(300_000 + 100_000 * i)).await;
        victim_block(&bot, pool, e6(200_000 + 50_000 * i)).await;
    }
    bot.node.anvil_mine(Some(1), None).await.unwrap();
    let to = head(&bot).await;
    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("run.cas");
    let mut o = RpcOptions {
        url: bot.chain.http_url.clone(),
        from,
        to,
        cache_dir: dir.path().join("cache"),
        requests_per_s: 0,
        record: Some(cassette.clone()),
        config: Some(ConfigFile::Manifest(manifest_file(&bot, dir.path()))),
        chain: None,
        operator: None,
        progress: false,
    };
    let first = backtest::run_rpc(&o).await.unwrap();
    eprintln!("{first}");
    assert_eq!(first.blocks, to - from + 1);
    assert!(first.transactions >= 12, "{first}");
    assert!(first.totals.opportunities > 0, "{first}");
    assert!(first.totals.signed > 0, "the bot would have sent something: {first}");
    assert!(
        first.decisions.iter().any(|d| d.signed && d.strategy == "backrun"),
        "a backrun judged after its victim: {first}"
    );
    assert!(!first.peg.is_empty(), "peg readings: {first}");
    assert!(first.peg.iter().any(|p| p.without_bps.abs() > 10.0), "the dumps moved the peg");

    // Offline: the same cache, a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    o.url = format!("http://127.0.0.1:{port}");
    o.record = None;
    let second = backtest::run_rpc(&o).await.unwrap();
    same_run(&first, &second);
    let cache = backtest::RpcCache::open(&o.cache_dir, 0).unwrap();
    let provider = backtest::cached_provider(&o.url, &cache).unwrap();
    let _ = provider.get_block_by_number(from.into()).full().await.unwrap();
    assert_eq!(cache.counters().network(), 0, "answered from the cache");
    assert_eq!(cache.counters().hits(), 1);

    // The cassette, no network at all.
    let c = Cassette::load(&cassette).unwrap();
    let operator = backtest::cassette_operator(&c);
    assert_eq!(operator, Some(bot.chain.accounts.operator));
    let setup = Setup::load(o.config.as_ref(), None, c.meta.chain_id, operator).unwrap();
    let third = backtest::run_cassette(&c, &setup, "cassette", false).await.unwrap();
    same_run(&first, &third);
}

/// The embedded default: the report summary is the golden snapshot
/// (`tests/it/snapshots/it__backtest__default_report.snap`). After regenerating the cassette on
/// purpose, review the new summary with `cargo insta review` (or accept it with
/// `INSTA_UPDATE=always cargo test --test it backtest::default_report`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_report() {
    let report = backtest::default::run_default(false).await.unwrap();
    let depeg = &report.depeg;
    assert!(depeg.totals.opportunities > 0, "{report}");
    assert!(depeg.peg.iter().any(|p| p.without_bps < -1_000.0), "the depeg is in it: {report}");
    let x = &report.xchain;
    assert!(x.cross.settled >= 2 && x.cross.one_leg == 0, "the cross-chain episode: {report}");
    assert!(x.spread_summary().0 > 30.0, "its spread is in it: {report}");
    insta::assert_snapshot!(report.to_string());
}

/// `cantilever` with no arguments prints the default report, from another directory.
#[test]
fn no_arguments_runs_the_default_backtest() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("backtest usdc-2023 (embedded)"), "{stdout}");
    assert!(stdout.contains("per strategy:") && stdout.contains("peg deviation"), "{stdout}");
    assert!(stdout.contains("backtest xchain-spread (embedded): cross-chain"), "{stdout}");
    assert!(stdout.contains("cross-chain spread on the recorded chains"), "{stdout}");
}

/// Regenerates `fixtures/backtest/usdc-2023.{cas,manifest.json}`: a private devnet plays a
/// depeg modelled on USDC in March 2023 (DOMAIN §6) — cUSDT falls from 1.00 to about 0.877 and
/// comes back, the vault's redemption paused from the fall until the recovery starts (the
/// weekend the banks were closed) — and an RPC backtest over those blocks records the cassette.
/// `cargo test --test it backtest::regenerate_default_cassette -- --ignored`, then review the
/// golden summary (`cargo insta review`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the committed fixture; run by hand"]
async fn regenerate_default_cassette() {
    let bot = devnet_bot("0.3").await;
    fund(&bot).await;
    let pool = bot.pool("cUSDT/USDT");
    let v = ReserveVault::new(vault(&bot), &bot.deployer);
    let from = head(&bot).await + 1;
    // Friday: at peg, ordinary flow (a victim both ways).
    victim_block(&bot, pool, e6(50_000)).await;
    bot.dump(pool, false, e6(40_000)).await;
    // The news: redemption closes for the weekend; the fall.
    let paused = v.pause().send().await.unwrap();
    confirm(&bot.deployer, paused, "pause").await.unwrap();
    let path = [0.985, 0.96, 0.93, 0.90, 0.877];
    for p in path {
        move_to(&bot, pool, p).await;
        victim_block(&bot, pool, e6(20_000)).await;
    }
    // The trough, redemption still closed.
    bot.node.anvil_mine(Some(2), None).await.unwrap();
    // Sunday night: the backstop; redemption reopens, the climb back.
    let unpaused = v.unpause().send().await.unwrap();
    confirm(&bot.deployer, unpaused, "unpause").await.unwrap();
    for p in [0.91, 0.95, 0.97, 0.99, 1.0] {
        move_to(&bot, pool, p).await;
        victim_block(&bot, pool, e6(20_000)).await;
    }
    bot.node.anvil_mine(Some(1), None).await.unwrap();
    let to = head(&bot).await;
    eprintln!("episode blocks {from}..={to}, final mid {}", mid(&bot, pool).await);

    let dir = tempfile::tempdir().unwrap();
    let out = fixture("usdc-2023.cas");
    let manifest = serde_json::json!({
        "scenario": "default (cUSDT/USDT k = 0.3)",
        "chains": [bot.chain],
        "episodes": [{
            "name": "usdc-2023",
            "cassette": "usdc-2023.cas",
            "chain_id": 138,
            "description": "cUSDT/USDT falls 1.00 -> 0.877 and recovers (USDC, March 2023, compressed); vault redemption paused through the fall and the trough; pending victims both ways",
        }],
    });
    std::fs::write(
        fixture("usdc-2023.manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap();
    let o = RpcOptions {
        url: bot.chain.http_url.clone(),
        from,
        to,
        cache_dir: dir.path().join("cache"),
        requests_per_s: 0,
        record: Some(out.clone()),
        config: Some(ConfigFile::Manifest(fixture("usdc-2023.manifest.json"))),
        chain: None,
        operator: None,
        progress: false,
    };
    let report = backtest::run_rpc(&o).await.unwrap();
    eprintln!("{report}");
    assert!(std::fs::metadata(&out).unwrap().len() < 2_000_000, "fixture under 2 MB");
}

/// `cantilever backtest --manifest M --cassette C… --json --html` on shipped fixtures: stdout,
/// the JSON report and the HTML page (no script, no external resource).
fn backtest_cli(manifest: &str, cassettes: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (dir.path().join("r.json"), dir.path().join("r.html"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cantilever"));
    cmd.args(["backtest", "--manifest"]).arg(fixture(manifest));
    for c in cassettes {
        cmd.arg("--cassette").arg(fixture(c));
    }
    let out = cmd.arg("--json").arg(&json).arg("--html").arg(&html).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && !page.contains("<script"));
    assert!(!page.contains("src=") && !page.contains("href="), "no external resource");
    (stdout, report)
}

/// `backtest --cassette` on the shipped fixture with its manifest: the same report as the
/// embedded default, written as JSON and as a self-contained HTML page.
#[test]
fn cassette_command_writes_json_and_html() {
    let (_, report) = backtest_cli("usdc-2023.manifest.json", &["usdc-2023.cas"]);
    let strategies: Vec<_> =
        report["strategies"].as_array().unwrap().iter().map(|s| s["name"].clone()).collect();
    assert!(strategies.contains(&"depeg".into()) && strategies.contains(&"backrun".into()));
    assert!(report["totals"]["signed"].as_u64().unwrap() > 0);
    assert!(report["decisions"].as_array().unwrap().iter().any(|d| d["refusal"].is_string()));
    // The same numbers as the embedded default.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let default = rt.block_on(backtest::default::run_default(false)).unwrap();
    // (PnL compared to the cent: a float read back from JSON may differ in its last bit.)
    let mut ours = report["totals"].clone();
    let mut theirs = serde_json::to_value(&default.depeg.totals).unwrap();
    let pnl = |v: &mut serde_json::Value| v["pnl_usd"].take().as_f64().unwrap();
    assert!((pnl(&mut ours) - pnl(&mut theirs)).abs() < 0.005);
    assert_eq!(ours, theirs);
}

/// `backtest --manifest M --cassette A --cassette B` on the shipped cross-chain episode: the same
/// report as the embedded default's cross-chain part, as JSON and a self-contained HTML page.
#[test]
fn two_cassettes_run_the_cross_chain_backtest() {
    let (stdout, report) = backtest_cli(
        "xchain-spread.manifest.json",
        &["xchain-spread.138.cas", "xchain-spread.651940.cas"],
    );
    assert!(stdout.contains(": cross-chain, chain138 (138)"), "{stdout}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let default = rt.block_on(backtest::default::run_default(false)).unwrap();
    assert_eq!(report["cross"]["settled"].as_u64(), Some(default.xchain.cross.settled));
    assert_eq!(report["cross"]["trades"].as_u64(), Some(default.xchain.cross.trades));
    let judged = report["cross"]["realised_usd"].as_f64().unwrap();
    assert!((judged - default.xchain.cross.realised_usd).abs() < 0.005, "{judged}");
    assert_eq!(report["trades"].as_array().unwrap().len() as u64, default.xchain.cross.settled);
    // The cassettes in the wrong order are refused by name, not replayed.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .args(["backtest", "--manifest"])
        .arg(fixture("xchain-spread.manifest.json"))
        .arg("--cassette")
        .arg(fixture("xchain-spread.651940.cas"))
        .arg("--cassette")
        .arg(fixture("xchain-spread.138.cas"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(stderr.contains("cassette of chain 651940 given for chain chain138"), "{stderr}");
}
