//! Cross-chain backtests: both devnet chains replayed with the coordinator, over RPC (anvil as the
//! archive), offline from the answer caches, and from the cassettes the RPC run recorded; and the
//! generator of the embedded default's cross-chain episode.

use std::path::{Path, PathBuf};

use alloy::providers::{Provider, ext::AnvilApi};
use cantilever::{
    backtest::{
        RpcOptions,
        xchain::{self, XBacktestReport, XSetup},
    },
    cassette::Cassette,
    contracts::{PmmPool, TestToken},
    devnet::deploy::confirm,
};

use super::xchain::{CHAINS, Rig, e6, rig};

/// Bridge fee and risk margin of the episode, bps; the minimum spread it trades.
const BRIDGE_FEE_BPS: u16 = 2;
const MARGIN_BPS: u32 = 2;
const MIN_SPREAD_BPS: u32 = 10;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/backtest").join(name)
}

/// One clock for both chains: every block of the episode gets the next timestamp, so the
/// backtest's timestamp order is the order the episode happened in.
struct Clock(u64);

impl Clock {
    /// Stamps the next block of chain `i`.
    async fn next(&mut self, rig: &Rig, i: usize) {
        self.0 += 2;
        rig.http(i).anvil_set_next_block_timestamp(self.0).await.expect("timestamp");
    }
}

async fn mine(rig: &Rig, i: usize, clock: &mut Clock) {
    clock.next(rig, i).await;
    rig.http(i).anvil_mine(Some(1), None).await.expect("mine");
}

/// `amount` of cUSDC minted into chain `i`'s cUSDC/USDC pool and sold there, both in one block
/// (tokens left in a DODO pool between blocks would be anyone's to take).
async fn dump(rig: &Rig, i: usize, amount: alloy::primitives::U256, clock: &mut Clock) {
    let node = rig.http(i);
    let p = PmmPool::new(rig.pool(i), &rig.owner[i]);
    let token = TestToken::new(p._BASE_TOKEN_().call().await.expect("base"), &rig.owner[i]);
    let owner = rig.keys[0].address();
    let nonce = node.get_transaction_count(owner).await.expect("nonce");
    let fee = node.get_gas_price().await.expect("gas price") * 4;
    node.anvil_set_auto_mine(false).await.expect("automine off");
    let mint = token.mint(rig.pool(i), amount).nonce(nonce).gas(200_000).max_fee_per_gas(fee);
    let minted = mint.max_priority_fee_per_gas(1).send().await.expect("mint");
    let sell = p.sellBase(owner).nonce(nonce + 1).gas(600_000).max_fee_per_gas(fee);
    let sold = sell.max_priority_fee_per_gas(1).send().await.expect("sell");
    mine(rig, i, clock).await;
    node.anvil_set_auto_mine(true).await.expect("automine on");
    for (pending, what) in [(minted, "mint"), (sold, "sell")] {
        confirm(&rig.owner[i], pending, what).await.expect("mined");
    }
}

/// The episode on a fresh two-chain devnet, every block stamped by one clock: parity, then
/// cUSDC dumped into chain 138's cUSDC/USDC pool (cheap there), blocks on both chains, then a
/// larger dump on Alltra (the spread flips), more blocks. Returns the first and last block of
/// each chain.
async fn episode(rig: &Rig) -> ([u64; 2], [u64; 2]) {
    let mut start = 0;
    for i in 0..2 {
        let b = rig.http(i).get_block_by_number(Default::default()).await.expect("head");
        start = start.max(b.expect("latest block").header.timestamp);
    }
    let clock = &mut Clock(start + 10);
    let from = [rig.head(0).await + 1, rig.head(1).await + 1];
    mine(rig, 0, clock).await;
    mine(rig, 1, clock).await;
    dump(rig, 0, e6(25_000), clock).await;
    let first = rig.spread_bps().await;
    for _ in 0..3 {
        mine(rig, 1, clock).await;
        mine(rig, 0, clock).await;
    }
    dump(rig, 1, e6(50_000), clock).await;
    let second = rig.spread_bps().await;
    for _ in 0..3 {
        mine(rig, 0, clock).await;
        mine(rig, 1, clock).await;
    }
    let to = [rig.head(0).await, rig.head(1).await];
    eprintln!(
        "episode: chain 138 blocks {}..={}, Alltra {}..={}; spread {first:.1} bps, then {second:.1} bps the other way",
        from[0], to[0], from[1], to[1]
    );
    (from, to)
}

/// The episode's manifest: the devnet's chains, the cross-chain configuration (the chains'
/// one-chain strategies off, so the figures are the spread trade's) and the episodes.
fn manifest(rig: &Rig, cassettes: [&str; 2]) -> serde_json::Value {
    let names: Vec<&str> = rig.cfg.chains.iter().map(|c| c.name.as_str()).collect();
    serde_json::json!({
        "scenario": format!("default (bridge fee {BRIDGE_FEE_BPS} bps)"),
        "chains": rig.devnet.manifest().chains,
        "only_cross_chain": true,
        "notional_cap_usd": 40_000.0,
        "cross_chain": {
            "enabled": true,
            "chains": names,
            "min_spread_bps": MIN_SPREAD_BPS,
            "risk_margin_bps": MARGIN_BPS,
            "on_leg_failure": "hold",
        },
        "episodes": [
            {
                "name": "xchain-spread",
                "cassette": cassettes[0],
                "chain_id": CHAINS[0],
                "description": "cUSDC dumped on chain 138 (about 50 bps under Alltra), then harder on Alltra (the spread flips); both chains replayed with the coordinator",
            },
            {
                "name": "xchain-spread",
                "cassette": cassettes[1],
                "chain_id": CHAINS[1],
                "description": "the Alltra side of the same episode",
            },
        ],
    })
}

fn options(
    rig: &Rig,
    i: usize,
    from: u64,
    to: u64,
    dir: &Path,
    record: Option<PathBuf>,
) -> RpcOptions {
    let c = rig.devnet.manifest().chain(CHAINS[i]).expect("chain");
    RpcOptions {
        url: c.http_url.clone(),
        from,
        to,
        // One cache per chain: both chains have blocks of the same numbers.
        cache_dir: dir.join(format!("cache-{}", CHAINS[i])),
        requests_per_s: 0,
        record,
        config: None,
        chain: None,
        operator: None,
        progress: false,
    }
}

fn check_episode(r: &XBacktestReport) {
    let x = &r.cross;
    assert!(x.trades >= 2, "trades both ways: {r}");
    assert!(x.settled >= 2, "both legs landed: {r}");
    assert_eq!(x.one_leg, 0, "{r}");
    assert_eq!(x.bridge_fee_bps, [u32::from(BRIDGE_FEE_BPS); 2], "read on the recorded chains");
    assert!(x.realised_usd > 0.0, "{r}");
    assert!(
        (x.realised_usd - x.simulated_usd).abs() <= x.simulated_usd.abs() * 0.01,
        "judged {} vs simulated {}",
        x.realised_usd,
        x.simulated_usd
    );
    for c in &r.chains {
        assert!(
            c.decisions.iter().any(|d| d.strategy == "cross_chain" && d.signed && d.landed),
            "a landed cross-chain leg on {}: {r}",
            c.chain
        );
        assert!(c.decisions.iter().all(|d| d.strategy == "cross_chain"), "{r}");
    }
    let (max_without, _) = r.spread_summary();
    assert!(max_without > 30.0, "the episode's spread is in the report: {r}");
    assert_eq!(r.trades.len() as u64, x.settled, "every settled trade has its row: {r}");
    for t in &r.trades {
        assert!(t.after_bps.abs() < t.before_bps.abs(), "each trade narrows the spread: {t:?}");
    }
    assert!(r.spread.iter().any(|s| s.without_bps > 30.0), "138 cheap: {r}");
    assert!(r.spread.iter().any(|s| s.without_bps < -30.0), "then Alltra cheap: {r}");
}

/// A cross-chain RPC backtest over the live two-chain devnet trades the spread both ways with
/// both legs landing; re-run from its caches against dead ports it gives the same report (no
/// network), and so do the two cassettes it recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xchain_rpc_backtest_matches_its_cassettes() {
    let rig = rig(BRIDGE_FEE_BPS, MIN_SPREAD_BPS, MARGIN_BPS).await;
    let (from, to) = episode(&rig).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cas = [dir.path().join("a.cas"), dir.path().join("b.cas")];
    let m = manifest(&rig, ["a.cas", "b.cas"]);
    let setup = XSetup::from_manifest_json(&m.to_string(), "test manifest").expect("setup");
    let mut o = [0, 1].map(|i| options(&rig, i, from[i], to[i], dir.path(), Some(cas[i].clone())));
    let first = xchain::run_rpc([&o[0], &o[1]], &setup, false).await.expect("rpc run");
    eprintln!("{first}");
    check_episode(&first);

    // The command line: two --rpc, each with its range, and the manifest.
    let manifest_file = dir.path().join("manifest.json");
    std::fs::write(&manifest_file, m.to_string()).expect("manifest");
    let json = dir.path().join("cli.json");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cantilever"));
    cmd.args(["backtest", "--manifest"]).arg(&manifest_file);
    for oi in &o {
        cmd.args(["--rpc", &oi.url, "--from", &oi.from.to_string(), "--to", &oi.to.to_string()]);
    }
    // (Throttled at 1,000 requests/s: the default 50 would make this run last half a minute.)
    cmd.args(["--requests-per-s", "1000"]);
    let out = cmd.arg("--cache").arg(dir.path().join("cli-cache")).arg("--json").arg(&json);
    let out = out.output().expect("cli");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(&o[0].url) && !stderr.contains(&o[1].url), "URLs never printed");
    let cli: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(cli["cross"]["settled"].as_u64(), Some(first.cross.settled));
    assert_eq!(cli["trades"].as_array().map(Vec::len), Some(first.trades.len()));

    // Offline: the same caches, ports nothing listens on.
    for oi in &mut o {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        oi.url = format!("http://127.0.0.1:{}", dead.local_addr().expect("addr").port());
        oi.record = None;
    }
    let second = xchain::run_rpc([&o[0], &o[1]], &setup, false).await.expect("offline run");
    assert_eq!(first, second, "the offline re-run equals the RPC run");

    let c = cas.each_ref().map(|p| Cassette::load(p).expect("cassette"));
    let third = xchain::run_cassettes([&c[0], &c[1]], &setup, &first.source, false)
        .await
        .expect("cassette run");
    assert_eq!(first, third, "the cassettes replay the RPC run");
}

/// Regenerates the embedded default's cross-chain episode
/// (`fixtures/backtest/xchain-spread.{manifest.json,138.cas,651940.cas}`):
/// `cargo test --test it xbacktest::regenerate_xchain_episode -- --ignored`, then review the
/// golden summary (`cargo insta review`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the committed fixture; run by hand"]
async fn regenerate_xchain_episode() {
    let rig = rig(BRIDGE_FEE_BPS, MIN_SPREAD_BPS, MARGIN_BPS).await;
    let (from, to) = episode(&rig).await;
    let names = ["xchain-spread.138.cas", "xchain-spread.651940.cas"];
    let m = manifest(&rig, names);
    std::fs::write(
        fixture("xchain-spread.manifest.json"),
        serde_json::to_string_pretty(&m).expect("json") + "\n",
    )
    .expect("write manifest");
    let setup = XSetup::from_manifest_json(&m.to_string(), "manifest").expect("setup");
    let dir = tempfile::tempdir().expect("tempdir");
    let o = [0, 1].map(|i| options(&rig, i, from[i], to[i], dir.path(), Some(fixture(names[i]))));
    let report = xchain::run_rpc([&o[0], &o[1]], &setup, false).await.expect("rpc run");
    eprintln!("{report}");
    check_episode(&report);
    for n in names {
        assert!(std::fs::metadata(fixture(n)).expect("fixture").len() < 2_000_000, "under 2 MB");
    }
}
