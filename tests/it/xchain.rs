//! Cross-chain spread trading on the two devnet chains (138 and 651940) joined by the bridge: both
//! engines and the coordinator live, each test on its own private devnet.

use std::{sync::atomic::Ordering, time::Duration};

use alloy::{
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider, ProviderBuilder, ext::AnvilApi},
    signers::local::PrivateKeySigner,
};
use cantilever::{
    config::{Config, CrossChainConfig, InventoryTarget, LegFailurePolicy},
    contracts::{Bridge, PmmPool, TestToken},
    devnet::{Devnet, DevnetOptions, Scenario, deploy::confirm, devnet_config},
    engine::{RunHandle, RunOptions, run_chain, wait_until},
    ledger::{self, Ledger, LedgerHandle, PositionState, Record},
    xchain::{self, XChain, XHandle},
};
use revm::primitives::hardfork::SpecId;

pub(crate) const CHAINS: [u64; 2] = [138, 651_940];
const POOL: &str = "cUSDC/USDC";

pub(crate) struct Rig {
    pub(crate) devnet: Devnet,
    pub(crate) cfg: Config,
    pub(crate) keys: Vec<PrivateKeySigner>,
    /// Owner-signing providers, per chain.
    pub(crate) owner: [DynProvider; 2],
    _dir: tempfile::TempDir,
}

pub(crate) fn e6(n: u64) -> U256 {
    U256::from(n) * U256::from(1_000_000u64)
}

/// A private two-chain devnet with the bridge fee set to `bridge_fee_bps` on both sides and a
/// config trading only the cross-chain strategy.
pub(crate) async fn rig(bridge_fee_bps: u16, min_spread_bps: u32, margin_bps: u32) -> Rig {
    // `CANTILEVER_TEST_LOG=cantilever=info` shows the engines' and the coordinator's logs.
    if let Ok(f) = std::env::var("CANTILEVER_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(f))
            .with_test_writer()
            .try_init();
    }
    let scenario = Scenario::default_scenario().expect("scenario");
    let devnet = Devnet::start(&scenario, &DevnetOptions { any_port: true }).await.expect("devnet");
    let keys = devnet.node(138).expect("node").keys().to_vec();
    let owner = CHAINS.map(|id| {
        let c = devnet.manifest().chain(id).expect("chain");
        ProviderBuilder::new()
            .with_simple_nonce_management()
            .wallet(alloy::network::EthereumWallet::from(keys[0].clone()))
            .connect_http(c.http_url.parse().expect("url"))
            .erased()
    });
    for (i, id) in CHAINS.iter().enumerate() {
        let c = devnet.manifest().chain(*id).expect("chain");
        let b = Bridge::new(c.bridge.expect("bridge"), &owner[i]);
        let pending = b.setFeeBps(bridge_fee_bps).send().await.expect("fee");
        confirm(&owner[i], pending, "fee").await.expect("fee mined");
    }
    let mut cfg = devnet_config(devnet.manifest()).expect("devnet config");
    let dir = tempfile::tempdir().expect("tempdir");
    cfg.engine.dry_run = false;
    cfg.engine.halt_file = dir.path().join("halt");
    cfg.engine.ledger_path = dir.path().join("ledger.db");
    cfg.strategies.depeg.enabled = false;
    cfg.strategies.triangle.enabled = false;
    cfg.strategies.stabilizer.enabled = false;
    cfg.strategies.backrun.enabled = false;
    cfg.risk.max_notional_per_route_usd = 40_000.0;
    cfg.risk.ramp.initial_notional_usd = 40_000.0;
    cfg.risk.per_block_volume_cap_usd = 40_000.0;
    let names: Vec<String> = cfg.chains.iter().map(|c| c.name.clone()).collect();
    cfg.strategies.cross_chain = Some(CrossChainConfig {
        enabled: true,
        chains: names.clone(),
        min_spread_bps,
        inventory: names
            .iter()
            .flat_map(|n| {
                ["cUSDC", "USDC", "cUSDT", "USDT"].map(|t| InventoryTarget {
                    chain: n.clone(),
                    token: t.into(),
                    target_usd: 50_000.0,
                })
            })
            .collect(),
        skew_threshold_pct: 20.0,
        max_in_flight_usd: 100_000.0,
        bridge_latency_secs: 30,
        bridge: None,
        risk_margin_bps: margin_bps,
        on_leg_failure: LegFailurePolicy::Hold,
        unwind_max_loss_bps: 100,
        assets: Default::default(),
    });
    Rig { devnet, cfg, keys, owner, _dir: dir }
}

struct Running {
    engines: Vec<RunHandle>,
    x: XHandle,
    ledger: LedgerHandle,
}

impl Rig {
    pub(crate) fn http(&self, i: usize) -> DynProvider {
        let c = self.devnet.manifest().chain(CHAINS[i]).expect("chain");
        ProviderBuilder::new().connect_http(c.http_url.parse().expect("url")).erased()
    }

    pub(crate) fn pool(&self, i: usize) -> Address {
        let c = self.devnet.manifest().chain(CHAINS[i]).expect("chain");
        c.pmm_pools.iter().find(|p| p.name == POOL).expect("pool").address
    }

    async fn start(&self) -> Running {
        let ledger = Ledger::open(&self.cfg.engine.ledger_path, B256::repeat_byte(9), "test")
            .expect("ledger")
            .spawn()
            .expect("writer");
        let mut engines = Vec::new();
        let mut xs = Vec::new();
        for (i, id) in CHAINS.iter().enumerate() {
            let chain = self.cfg.chains.iter().find(|c| c.chain_id == *id).expect("chain").clone();
            let m = self.devnet.manifest().chain(*id).expect("chain");
            let h = run_chain(RunOptions {
                chain: chain.clone(),
                strategies: self.cfg.strategies.clone(),
                risk: self.cfg.risk.clone(),
                engine: self.cfg.engine.clone(),
                signer: Some(self.keys[2].clone()),
                identity: None,
                ledger: Some(ledger.clone()),
                histograms: None,
                spec: SpecId::PRAGUE,
                prove_top: 4,
            })
            .await
            .expect("engine starts");
            xs.push(XChain {
                chain_id: *id,
                name: chain.name.clone(),
                control: h.controller(),
                provider: Some(self.http(i)),
                executor: m.executor,
                bridge: m.bridge,
            });
            engines.push(h);
        }
        let chains: [XChain; 2] = xs.try_into().expect("two chains");
        let x = xchain::start(
            self.cfg.strategies.cross_chain.clone().expect("xchain"),
            &self.cfg.risk,
            chains,
            Some(ledger.clone()),
        )
        .expect("coordinator");
        Running { engines, x, ledger }
    }

    /// Sells `amount` of the pool's base into chain `i`'s cUSDC/USDC pool (minted for it).
    pub(crate) async fn sell_base(&self, i: usize, amount: U256, tip: Option<u128>) -> B256 {
        let p = PmmPool::new(self.pool(i), &self.owner[i]);
        let token = p._BASE_TOKEN_().call().await.expect("base");
        let t = TestToken::new(token, &self.owner[i]);
        let mut mint = t.mint(self.pool(i), amount);
        if let Some(tip) = tip {
            mint = mint.max_priority_fee_per_gas(tip).max_fee_per_gas(tip * 4);
        }
        let pending = mint.send().await.expect("mint");
        if tip.is_none() {
            confirm(&self.owner[i], pending, "mint").await.expect("mined");
        }
        let mut call = p.sellBase(self.keys[0].address()).gas(600_000);
        if let Some(tip) = tip {
            call = call.max_priority_fee_per_gas(tip).max_fee_per_gas(tip * 4);
        }
        let pending = call.send().await.expect("sell");
        let hash = *pending.tx_hash();
        if tip.is_none() {
            confirm(&self.owner[i], pending, "sell").await.expect("sell mined");
        }
        hash
    }

    /// The pool's mid price on chain `i`, 1e18-scaled.
    async fn mid(&self, i: usize) -> f64 {
        let p = PmmPool::new(self.pool(i), self.http(i));
        let m: U256 = p.getMidPrice().call().await.expect("mid");
        cantilever::engine::market::u256_f64(m) / 1e18
    }

    pub(crate) async fn spread_bps(&self) -> f64 {
        let (a, b) = (self.mid(0).await, self.mid(1).await);
        (a - b).abs() / a.min(b) * 10_000.0
    }

    pub(crate) async fn head(&self, i: usize) -> u64 {
        self.http(i).get_block_number().await.expect("head")
    }
}

impl Running {
    fn records(&self, db: &std::path::Path) -> Vec<Record> {
        self.ledger.flush().expect("flush");
        ledger::read_records(db, self.ledger.run_id()).expect("read")
    }

    async fn stop(self) {
        for e in self.engines {
            e.stop(Duration::from_secs(5)).await;
        }
        self.x.join();
        self.ledger.close().expect("close");
    }
}

fn wait(timeout_s: u64, f: impl FnMut() -> bool) -> bool {
    wait_until(Duration::from_secs(timeout_s), f)
}

/// Declares chain `i`'s `from` token as `to` (its venues, lenders and inventory targets follow)
/// and tells the coordinator they are the same asset (`[strategies.cross_chain.assets]`).
fn rename_token(cfg: &mut Config, i: usize, from: &str, to: &str) {
    let c = cfg.chains.iter_mut().find(|c| c.chain_id == CHAINS[i]).expect("chain");
    let name = c.name.clone();
    let rename = |s: &mut String| {
        if s == from {
            *s = to.to_owned();
        }
    };
    for t in &mut c.tokens {
        rename(&mut t.symbol);
    }
    for v in &mut c.venues {
        rename(&mut v.base);
        rename(&mut v.quote);
    }
    for l in &mut c.flash_lenders {
        l.tokens.iter_mut().for_each(rename);
    }
    let x = cfg.strategies.cross_chain.as_mut().expect("xchain");
    for t in x.inventory.iter_mut().filter(|t| t.chain == name) {
        rename(&mut t.token);
    }
    x.assets.insert(to.to_owned(), from.to_owned());
    // (The rig passes its signers directly: only the renames are checked here.)
    if let Err(e) = cfg.validate() {
        let e = e.to_string();
        assert!(
            !e.contains("cross_chain") && !e.contains("venues") && !e.contains("lenders"),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_is_closed_by_two_legs_that_both_land() {
    // Bridge fee 2 bps and margin 2 bps: the cost band (two 3 bps LP fees + 4 bps) sits under 15.
    let mut rig = rig(2, 10, 2).await;
    // Alltra calls its cUSDC `AUSDC` (as the live chain does): matched through the assets table.
    rename_token(&mut rig.cfg, 1, "cUSDC", "AUSDC");
    assert!(rig.spread_bps().await < 1.0, "the chains start at parity");
    // cUSDC sold on chain 138 only: it is cheaper there than on Alltra.
    rig.sell_base(0, e6(25_000), None).await;
    let induced_at = rig.head(0).await;
    let induced = rig.spread_bps().await;
    assert!(induced > 30.0, "spread induced: {induced} bps");
    let run = rig.start().await;
    let s = run.x.stats.clone();
    if !wait(60, || s.settled.load(Ordering::Relaxed) >= 1) {
        let recs = run.records(&rig.cfg.engine.ledger_path);
        let d: Vec<_> = recs
            .iter()
            .filter(|r| matches!(r, Record::Decision(_) | Record::Simulation(_)))
            .collect();
        panic!("both legs land: {s:?}\n{d:#?}");
    }
    // Every trade sent has finished (the first may be followed by a smaller one).
    assert!(wait(30, || {
        let sent = s.sent.load(Ordering::Relaxed);
        s.settled.load(Ordering::Relaxed) + s.one_leg.load(Ordering::Relaxed) == sent
    }));
    assert_eq!(s.one_leg.load(Ordering::Relaxed), 0, "both legs land every time");
    let after = rig.spread_bps().await;
    assert!(after < 15.0, "spread closed below 0.15%: {induced:.1} → {after:.1} bps");
    // Realised PnL (from the legs' balance changes and gas) matches the simulation within 1%.
    let (real, sim) = (
        s.realised_micro_usd.load(Ordering::Relaxed) as f64,
        s.simulated_micro_usd.load(Ordering::Relaxed) as f64,
    );
    assert!(real > 0.0 && sim > 0.0, "profitable: realised {real} µ$, simulated {sim} µ$");
    assert!((real - sim).abs() <= sim * 0.01, "realised {real} vs simulated {sim} µ$");
    println!(
        "spread {induced:.1} → {after:.1} bps; trades {}; realised ${:.4} vs simulated ${:.4}",
        s.trades.load(Ordering::Relaxed),
        real / 1e6,
        sim / 1e6
    );
    assert_eq!(
        s.legs_ordered.load(Ordering::Relaxed),
        2 * s.trades.load(Ordering::Relaxed),
        "two legs per trade"
    );
    // The ledger: one cross-chain opportunity per chain, each approved, submitted and included,
    // the buy leg on 138 within 5 blocks of the spread.
    let recs = run.records(&rig.cfg.engine.ledger_path);
    for id in CHAINS {
        let opp = recs
            .iter()
            .find_map(|r| match r {
                Record::Opportunity(o) if o.chain_id == id && o.strategy == "cross_chain" => {
                    Some(o.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("a cross-chain opportunity on {id}: {recs:#?}"));
        let sub = recs
            .iter()
            .find_map(|r| match r {
                Record::Submission(x) if x.opportunity_id == opp.id => Some(x.clone()),
                _ => None,
            })
            .expect("submitted");
        let inc = recs
            .iter()
            .find_map(|r| match r {
                Record::Inclusion(x) if x.submission_id == sub.id => Some(x.clone()),
                _ => None,
            })
            .expect("included");
        assert_eq!(inc.status, ledger::InclusionStatus::Included, "{inc:?}");
        if id == 138 {
            assert!(
                inc.block <= induced_at + 5,
                "closed within 5 blocks: {} vs {induced_at}",
                inc.block
            );
        }
    }
    let booked: f64 = recs
        .iter()
        .filter_map(|r| match r {
            Record::Inclusion(x) => x.realised_pnl_usd,
            _ => None,
        })
        .sum();
    assert!(
        (booked * 1e6 - real).abs() <= real.abs() * 0.01 + 1.0,
        "ledger {booked} $ vs {real} µ$"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_smaller_than_all_costs_is_never_traded() {
    // Default costs: bridge fee 10 bps + margin 5 bps + two 3 bps LP fees ≈ 21 bps.
    let rig = rig(10, 1, 5).await;
    rig.sell_base(0, e6(7_000), None).await;
    let induced = rig.spread_bps().await;
    assert!(induced > 8.0 && induced < 20.0, "a spread under the cost band: {induced} bps");
    let run = rig.start().await;
    let s = run.x.stats.clone();
    assert!(wait(30, || s.refused_costs.load(Ordering::Relaxed) >= 1), "screened and refused");
    // More heads on both chains: still nothing ordered.
    for i in 0..2 {
        rig.http(i).anvil_mine(Some(3), None).await.expect("mine");
    }
    assert!(wait(10, || s.snapshots.load(Ordering::Relaxed) >= 4));
    assert_eq!(s.legs_ordered.load(Ordering::Relaxed), 0, "never traded");
    assert!(rig.spread_bps().await > 8.0, "the spread is still there");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_drift_is_restored_through_the_bridge() {
    let mut rig = rig(10, 10, 5).await;
    // No spread to trade; only rebalancing acts.
    if let Some(x) = rig.cfg.strategies.cross_chain.as_mut() {
        x.min_spread_bps = 10_000;
    }
    let run = rig.start().await;
    let s = run.x.stats.clone();
    assert!(wait(30, || s.snapshots.load(Ordering::Relaxed) >= 2));
    assert_eq!(s.transfers.load(Ordering::Relaxed), 0, "balanced at start");
    // 40,000 cUSDT land in the executor on 138: 90k vs 50k, 28.6% over its share.
    let m = rig.devnet.manifest().chain(138).expect("138");
    let cusdt = m.tokens.get("cUSDT").expect("cUSDT").address;
    let t = TestToken::new(cusdt, &rig.owner[0]);
    let pending = t.mint(m.executor, e6(40_000)).send().await.expect("mint");
    confirm(&rig.owner[0], pending, "mint").await.expect("mined");
    assert!(wait(30, || s.transfers.load(Ordering::Relaxed) == 1), "a transfer is sent");
    // Let the bridge delay pass on the destination; the relayer then releases.
    assert!(
        wait(30, || { s.in_flight_micro_usd.load(Ordering::Relaxed) > 0 }),
        "the lock is seen: in flight"
    );
    let dst = rig.http(1);
    dst.anvil_increase_time(60).await.expect("time");
    dst.anvil_mine(Some(1), None).await.expect("mine");
    assert!(wait(60, || s.arrived.load(Ordering::Relaxed) == 1), "released on Alltra: {s:?}");
    // One more head on each chain so the last snapshot is after the release.
    let n = s.snapshots.load(Ordering::Relaxed);
    for i in 0..2 {
        rig.http(i).anvil_mine(Some(1), None).await.expect("mine");
    }
    assert!(wait(10, || s.snapshots.load(Ordering::Relaxed) >= n + 2));
    assert_eq!(s.transfers.load(Ordering::Relaxed), 1, "one transfer restored it");
    if s.bridge_refused.load(Ordering::Relaxed) != 0 {
        let recs = run.records(&rig.cfg.engine.ledger_path);
        let d: Vec<_> = recs.iter().filter(|r| matches!(r, Record::Decision(_))).collect();
        panic!("read ahead: never refused cold: {d:#?}");
    }
    // Accounting at every snapshot: before the mint 100k; from the mint 140k; from the lock on,
    // 140k less exactly the bridge fee, whether in flight or arrived. Never more.
    let points: Vec<_> = run.x.points().into_iter().filter(|p| p.symbol == "cUSDT").collect();
    let scale = U256::from(10u64).pow(U256::from(12u64));
    let (before, after) = (e6(100_000) * scale, e6(140_000) * scale);
    let fee = e6(20_000) * scale / U256::from(1_000u64); // 10 bps of 20,000
    let mut saw_in_flight = false;
    let mut seen_fee = false;
    for p in &points {
        if p.in_flight > U256::ZERO {
            saw_in_flight = true;
        }
        if p.total == after - fee {
            seen_fee = true;
        } else {
            assert!(!seen_fee, "once the fee is paid the total never changes: {p:?}");
            assert!(p.total == before || p.total == after, "counted once: {p:?}");
        }
    }
    assert!(saw_in_flight, "in flight at some block: {points:#?}");
    println!(
        "{} inventory points; {} with the transfer in flight; fee {} (18 dp)",
        points.len(),
        points.iter().filter(|p| p.in_flight > U256::ZERO).count(),
        fee
    );
    let last = points.last().expect("points");
    assert_eq!(last.total, after - fee);
    assert_eq!(last.in_flight, U256::ZERO);
    // 20,000 moved: 70k left on 138, 70k less the fee arrived on Alltra.
    assert_eq!(last.balances[0], e6(70_000) * scale);
    assert_eq!(last.balances[1], e6(70_000) * scale - fee);
    let recs = run.records(&rig.cfg.engine.ledger_path);
    let closed = recs.iter().any(|r| {
        matches!(r, Record::Position(p) if p.id.starts_with("bridge:138:") && p.state == PositionState::Closed)
    });
    assert!(closed, "the transfer is in the ledger, closed on arrival: {recs:#?}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_leg_is_held_and_never_chased() {
    one_failed_leg(LegFailurePolicy::Hold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_leg_is_unwound_on_its_own_chain() {
    one_failed_leg(LegFailurePolicy::Unwind).await;
}

/// Makes the Alltra leg revert after the 138 leg landed; checks `policy` is applied and the
/// failed leg never chased.
async fn one_failed_leg(policy: LegFailurePolicy) {
    let mut rig = rig(2, 10, 2).await;
    if let Some(x) = rig.cfg.strategies.cross_chain.as_mut() {
        x.on_leg_failure = policy;
    }
    rig.sell_base(0, e6(25_000), None).await;
    // Alltra stops mining on its own: its leg will wait in the mempool.
    let alltra = rig.http(1);
    alltra.anvil_set_auto_mine(false).await.expect("automine off");
    let operator = rig.keys[2].address();
    let latest = alltra.get_transaction_count(operator).await.expect("nonce");
    let run = rig.start().await;
    let s = run.x.stats.clone();
    assert!(
        wait(30, || {
            let p = alltra.clone();
            futures::executor::block_on(async move {
                p.get_transaction_count(operator).pending().await.unwrap_or(0)
            }) > latest
        }),
        "the Alltra leg is pending"
    );
    // Someone sells cUSDC on Alltra first (higher tip), moving the pool past the leg's limit.
    rig.sell_base(1, e6(200_000), Some(50_000_000_000)).await;
    alltra.anvil_mine(Some(1), None).await.expect("mine");
    alltra.anvil_set_auto_mine(true).await.expect("automine on");
    assert!(wait(60, || s.one_leg.load(Ordering::Relaxed) == 1), "one leg landed: {s:?}");
    if policy == LegFailurePolicy::Unwind {
        // The landed leg is traded back at once, the position closed and the pair released.
        assert!(wait(30, || !s.frozen.load(Ordering::Relaxed)), "unwound: {s:?}");
        // Two legs and one unwind; once the pair is released the 200,000 cUSDC sale on Alltra
        // may open a new trade (two more legs), so the unwind is counted in the ledger.
        assert!(s.legs_ordered.load(Ordering::Relaxed) >= 3, "two legs and an unwind: {s:?}");
        let recs = run.records(&rig.cfg.engine.ledger_path);
        let unwinds = recs
            .iter()
            .filter(|r| {
                matches!(r, Record::Opportunity(o) if o.route.contains("unwind the landed leg"))
            })
            .count();
        assert_eq!(unwinds, 1, "one unwind of the landed leg: {recs:#?}");
        let rows: Vec<_> = recs
            .iter()
            .filter_map(|r| match r {
                Record::Position(p) if p.id.starts_with("xchain:138:") => Some(p.clone()),
                _ => None,
            })
            .collect();
        assert!(
            rows.iter().any(|p| p.state == PositionState::Closed),
            "the position is closed by the unwind: {rows:#?}"
        );
        run.stop().await;
        return;
    }
    assert!(s.frozen.load(Ordering::Relaxed), "the pair is held");
    // More heads on both chains: no leg chases it and no new trade opens on the pair.
    let n = s.snapshots.load(Ordering::Relaxed);
    for i in 0..2 {
        rig.http(i).anvil_mine(Some(3), None).await.expect("mine");
    }
    assert!(wait(10, || s.snapshots.load(Ordering::Relaxed) >= n + 2));
    assert_eq!(s.legs_ordered.load(Ordering::Relaxed), 2, "never chased");
    assert_eq!(s.settled.load(Ordering::Relaxed), 0);
    let recs = run.records(&rig.cfg.engine.ledger_path);
    let held = recs.iter().find_map(|r| match r {
        Record::Position(p) if p.id.starts_with("xchain:138:") => Some(p.clone()),
        _ => None,
    });
    let held = held.unwrap_or_else(|| panic!("the landed leg is a position: {recs:#?}"));
    assert_eq!(held.state, PositionState::Open);
    assert!(held.amount > U256::ZERO);
    let reverted = recs.iter().any(
        |r| matches!(r, Record::Inclusion(i) if i.status == ledger::InclusionStatus::Reverted),
    );
    assert!(reverted, "the Alltra leg reverted on its limit: {recs:#?}");
    run.stop().await;
}

/// Both legs land, then a reorg on Alltra replaces the block of the Alltra leg with one that
/// spends the operator's nonce otherwise: the trade is reopened (realised PnL reversed, pair
/// frozen), and when the orphaned leg ends missed the trade is booked one-legged under `hold`
/// (the 138 leg an open position); nothing is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorged_leg_reopens_its_trade() {
    use alloy::rpc::types::anvil::{ReorgOptions, TransactionData};
    use cantilever::exec::{TxParams, TxSigner};
    let rig = rig(2, 10, 2).await;
    rig.sell_base(0, e6(25_000), None).await;
    let run = rig.start().await;
    let s = run.x.stats.clone();
    assert!(wait(60, || s.settled.load(Ordering::Relaxed) >= 1), "settled: {s:?}");
    assert!(wait(30, || s.settled.load(Ordering::Relaxed) == s.sent.load(Ordering::Relaxed)));
    let settled = s.settled.load(Ordering::Relaxed);
    let realised = s.realised_micro_usd.load(Ordering::Relaxed);
    // The Alltra leg's submission and the block it landed in.
    let recs = run.records(&rig.cfg.engine.ledger_path);
    let (sub, block) = recs
        .iter()
        .filter_map(|r| match r {
            Record::Submission(x) if x.chain_id == CHAINS[1] => Some(x.clone()),
            _ => None,
        })
        .find_map(|sub| {
            recs.iter().find_map(|r| match r {
                Record::Inclusion(i) if i.submission_id == sub.id => Some((sub.clone(), i.block)),
                _ => None,
            })
        })
        .expect("the Alltra leg landed");
    let node = rig.http(1);
    let head = rig.head(1).await;
    // The replacement block carries another use of the leg's nonce by the same key.
    let fee = node.get_gas_price().await.expect("gas price") * 4;
    let other = TxSigner::new(rig.keys[2].clone())
        .sign_eip1559(&TxParams {
            chain_id: CHAINS[1],
            nonce: sub.nonce,
            to: Address::repeat_byte(0x77),
            input: Default::default(),
            gas_limit: 21_000,
            max_fee_per_gas: fee,
            max_priority_fee_per_gas: 1,
            value: U256::ZERO,
        })
        .expect("sign");
    node.anvil_reorg(ReorgOptions {
        depth: head - block + 1,
        tx_block_pairs: vec![(TransactionData::Raw(other.raw.clone()), 0)],
    })
    .await
    .expect("reorg");
    assert!(
        wait(30, || s.frozen.load(Ordering::Relaxed)
            && s.settled.load(Ordering::Relaxed) < settled),
        "reopened: the pair frozen, the trade no longer settled: {s:?}"
    );
    assert!(s.realised_micro_usd.load(Ordering::Relaxed) < realised, "its PnL reversed: {s:?}");
    // The window after the reorg passes without the leg: it ends missed, the trade one-legged.
    for _ in 0..8 {
        node.anvil_mine(Some(1), None).await.expect("mine");
        if s.one_leg.load(Ordering::Relaxed) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(wait(30, || s.one_leg.load(Ordering::Relaxed) >= 1), "one-legged: {s:?}");
    assert!(s.frozen.load(Ordering::Relaxed), "held: the pair stays frozen");
    let recs = run.records(&rig.cfg.engine.ledger_path);
    let open: Vec<_> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Position(p) if p.id.starts_with("xchain:138:") => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert!(
        open.iter().any(|p| p.state == PositionState::Open),
        "the 138 leg is an open position: {open:?}"
    );
    let alltra_subs = recs
        .iter()
        .filter(|r| matches!(r, Record::Submission(x) if x.chain_id == CHAINS[1]))
        .count() as u64;
    assert_eq!(alltra_subs, s.sent.load(Ordering::Relaxed), "nothing re-sent on Alltra");
    run.stop().await;
}
