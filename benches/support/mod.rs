//! Shared set-up of the simulator benches (`sim`, `state_memory`): a private devnet, a profitable
//! two-hop flash route on it, and the engine's state pieces (RpcSource + Refresher + ForkCache,
//! registered tokens, the route warmed), exactly as `tests/it/state.rs` stands them up.
//!
//! The route: borrow USDT from the ERC-3156 lender → sell it into the PMM cUSDT/USDT pool
//! (`sellQuote`, USDT → cUSDT) → redeem the cUSDT 1:1 at the USDT reserve vault → repay. It is made
//! profitable by first pushing cUSDT down on that pool with a large `sellBase`.
//!
//! Benches only run under `cargo bench` (cargo passes `--bench`); `cargo test --benches` runs the
//! binaries without it, and they then return at once without starting anvil ([`bench_requested`]).

#![allow(dead_code, reason = "each bench binary uses a different part of the shared set-up")]

use std::time::{Duration, Instant};

use alloy::{
    primitives::{Address, I256, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
};
use cantilever::{
    contracts::{Executor, PmmPool, TestToken},
    devnet::{ChainManifest, Devnet, DevnetOptions, Scenario, deploy::confirm},
    sim::{self, NextBlock, RoutePlan, SimOutcome, SimTx, Simulator},
    state::{
        AccountRead, BlockRef, CacheLimits, ForkCache, Refresher, RefresherConfig, RpcSource,
        StateKey,
    },
};
use hdrhistogram::Histogram;
use revm::{context::TxEnv, primitives::hardfork::SpecId};

/// Chain 138 of the default scenario.
pub(crate) const CHAIN_ID: u64 = 138;
/// Raw units of a 6-decimal token.
pub(crate) const E6: u64 = 1_000_000;
/// cUSDT sold into the cUSDT/USDT pool before the route (pushes cUSDT well below the vault's 1:1).
pub(crate) const PUSH_CUSDT: u64 = 800_000;
/// Flash-loan sizes tried; the most profitable one is benched.
pub(crate) const SIZES: [u64; 6] = [10_000, 25_000, 50_000, 100_000, 200_000, 300_000];

/// Whether the binary was started by `cargo bench` (`--bench`). `cargo test --benches` and
/// `cargo test --all-targets` run bench binaries without it: the benches then do nothing, so tests
/// never start anvil for them.
pub(crate) fn bench_requested() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Whether criterion runs in test mode (`cargo bench -- --test`: every bench once), so summaries
/// shrink their iteration counts too.
pub(crate) fn quick_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// The devnet, the route and the engine's state pieces over it.
pub(crate) struct Rig {
    /// The private devnet (dropped last: stops the anvil nodes).
    pub(crate) devnet: Devnet,
    /// A current-thread runtime: the devnet's relayer only runs inside `block_on`, so it never
    /// competes with the in-process benches for the CPU.
    pub(crate) rt: tokio::runtime::Runtime,
    /// Chain 138's endpoints and addresses.
    pub(crate) chain: ChainManifest,
    /// A plain HTTP provider to chain 138 (for `eth_call`).
    pub(crate) node: DynProvider,
    /// The fork cache at `head`, holding everything the route reads.
    pub(crate) cache: ForkCache,
    /// The simulator with USDT and cUSDT registered.
    pub(crate) sim: Simulator,
    /// The block the cache is pinned to.
    pub(crate) head: BlockRef,
    /// The block the route is simulated into.
    pub(crate) next: NextBlock,
    /// The route transaction and what to measure around it.
    pub(crate) sim_tx: SimTx,
    /// What containment checks the route against.
    pub(crate) plan: RoutePlan,
    /// The flash-loan size chosen.
    pub(crate) amount: U256,
    /// The profit containment measured at that size (raw USDT).
    pub(crate) profit: I256,
    /// The PMM cUSDT/USDT pool.
    pub(crate) pool: Address,
    /// USDT.
    pub(crate) usdt: Address,
    /// cUSDT.
    pub(crate) cusdt: Address,
}

fn hop(kind: u8, venue: Address, t_in: Address, t_out: Address, amount: U256) -> Executor::Hop {
    Executor::Hop {
        kind,
        venue,
        tokenIn: t_in,
        tokenOut: t_out,
        amountIn: amount,
        minOut: U256::ZERO,
    }
}

impl Rig {
    /// Starts a private devnet, pushes the pool, builds and warms the cache, and sizes the route.
    pub(crate) fn start() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let scenario = Scenario::default_scenario().unwrap();
        let devnet =
            rt.block_on(Devnet::start(&scenario, &DevnetOptions { any_port: true })).unwrap();
        let chain = devnet.manifest().chain(CHAIN_ID).unwrap().clone();
        let keys = devnet.node(CHAIN_ID).unwrap().keys().to_vec();
        let url: alloy::transports::http::reqwest::Url = chain.http_url.parse().unwrap();
        let node = ProviderBuilder::new().connect_http(url.clone()).erased();
        let deployer = ProviderBuilder::new()
            .with_simple_nonce_management()
            .wallet(alloy::network::EthereumWallet::from(keys[0].clone()))
            .connect_http(url)
            .erased();
        let token = |s: &str| chain.tokens[s].address;
        let (usdt, cusdt) = (token("USDT"), token("cUSDT"));
        let pool = chain.pmm_pools.iter().find(|p| p.name == "cUSDT/USDT").unwrap().address;
        let vault = chain.vaults.iter().find(|v| v.official == "USDT").unwrap().address;
        let lender = chain.lenders[0].address;
        let (executor, operator) = (chain.executor, chain.accounts.operator);
        assert_eq!(keys[2].address(), operator);

        rt.block_on(async {
            // cUSDT minted outside the vault would lower its backing ratio (it pauses below 95%):
            // back it with the same amount of USDT, then sell it into the pool.
            let push = U256::from(PUSH_CUSDT * E6);
            for (t, to) in [(usdt, vault), (cusdt, pool)] {
                let pending = TestToken::new(t, &deployer).mint(to, push).send().await.unwrap();
                confirm(&deployer, pending, "mint").await.unwrap();
            }
            let p = PmmPool::new(pool, &deployer);
            let pending = p.sellBase(keys[0].address()).gas(600_000).send().await.unwrap();
            confirm(&deployer, pending, "sellBase").await.unwrap();
        });

        let cfg = RefresherConfig { always: vec![executor, operator], ..Default::default() };
        let mut refresher = Refresher::new(RpcSource::new(node.clone(), 500), cfg);
        let mut cache = ForkCache::new(CacheLimits::default());
        let mut sim = Simulator::new(CHAIN_ID, SpecId::PRAGUE);
        let base = rt.block_on(refresher.start()).unwrap();
        cache.apply(&base).unwrap();
        let head = *cache.head().unwrap();
        let next = NextBlock::after(&head, 12);
        for t in [usdt, cusdt] {
            let ok = rt
                .block_on(sim::register_token(&mut refresher, &mut cache, &mut sim, &next, t))
                .unwrap();
            assert!(ok, "token {t} has a located balance layout");
        }
        let holders = vec![executor, lender, pool, vault];
        refresher.watch(holders.iter().chain([&operator]).map(|h| StateKey::Account(*h)));
        if let Some(u) = rt.block_on(refresher.prefetch()).unwrap() {
            cache.apply(&u).unwrap();
        }
        let nonce = cache.account(&operator).unwrap().nonce;

        // Size the route: the most profitable of a few flash-loan sizes, each warmed and simulated.
        let mut best: Option<(I256, U256, SimTx, RoutePlan)> = None;
        for size in SIZES {
            let amount = U256::from(size * E6);
            let route = Executor::Route {
                flash: Executor::Flash { kind: 1, source: lender, token: usdt, amount },
                hops: vec![
                    hop(1, pool, usdt, cusdt, amount),
                    hop(4, vault, cusdt, usdt, U256::ZERO),
                ],
                profitToken: usdt,
                minProfit: U256::ZERO,
                deadlineBlock: U256::ZERO,
                coinbaseTip: U256::ZERO,
            };
            let plan = sim::plan_of(executor, &route);
            let prio = 1_000_000_000u128;
            let fee = 2 * u128::from(next.base_fee) + prio;
            let tx = sim::route_tx(CHAIN_ID, nonce, executor, route, 2_000_000, fee, prio);
            let env = sim::tx_env(&tx, operator).unwrap();
            rt.block_on(sim::warm(
                &mut refresher,
                &mut cache,
                &sim,
                &next,
                std::slice::from_ref(&env),
                32,
            ))
            .unwrap();
            let sim_tx = SimTx {
                tx: env,
                tokens: vec![usdt, cusdt],
                holders: holders.clone(),
                watch_calls_to: executor,
            };
            let outcome = sim.block(&cache, head.hash, &next).unwrap().simulate(&sim_tx).unwrap();
            if let Ok(profit) = sim::check_containment(&plan, &outcome)
                && best.as_ref().is_none_or(|b| profit > b.0)
            {
                best = Some((profit, amount, sim_tx, plan));
            }
        }
        let (profit, amount, sim_tx, plan) = best.expect("a profitable size");
        assert!(profit > I256::ZERO);
        Self {
            devnet,
            rt,
            chain,
            node,
            cache,
            sim,
            head,
            next,
            sim_tx,
            plan,
            amount,
            profit,
            pool,
            usdt,
            cusdt,
        }
    }

    /// The per-candidate path of the engine: simulate on a block simulation built once, then
    /// containment. Returns the outcome and the measured profit.
    pub(crate) fn prove(
        bs: &mut sim::BlockSim<'_>,
        sim_tx: &SimTx,
        plan: &RoutePlan,
    ) -> (SimOutcome, I256) {
        let outcome = bs.simulate(sim_tx).unwrap();
        let profit = sim::check_containment(plan, &outcome).unwrap();
        (outcome, profit)
    }

    /// The route transaction.
    pub(crate) fn tx(&self) -> &TxEnv {
        &self.sim_tx.tx
    }
}

/// A copy of `cache`: every account, code and slot it holds, pinned to the same head.
pub(crate) fn copy_cache(cache: &ForkCache) -> ForkCache {
    let mut out = ForkCache::new(CacheLimits::default());
    let (accounts, slots) = contents(cache);
    out.insert_raw(&accounts, &slots);
    if let Some(head) = cache.head() {
        out.set_head_raw(*head);
    }
    out
}

/// Every account (with code) and slot `cache` holds, as raw reads.
pub(crate) fn contents(cache: &ForkCache) -> (Vec<AccountRead>, Vec<(Address, U256, U256)>) {
    let mut accounts = Vec::new();
    let mut slots = Vec::new();
    for key in cache.keys() {
        match key {
            StateKey::Account(a) => {
                let info = cache.account(&a).unwrap();
                let code = info.code.as_ref().map(|c| c.original_bytes()).unwrap_or_default();
                accounts.push(AccountRead {
                    address: a,
                    balance: info.balance,
                    nonce: info.nonce,
                    code: Some(code),
                });
            }
            StateKey::Slot(a, s) => slots.push((a, s, cache.storage(&a, &s).unwrap())),
        }
    }
    (accounts, slots)
}

/// A histogram of nanoseconds (1 ns .. 10 s, 3 significant figures).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).unwrap()
}

/// Records the duration of `f` in `h` and returns its result.
pub(crate) fn timed<T>(h: &mut Histogram<u64>, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns);
    out
}

/// Mean and median of `h`, as durations.
pub(crate) fn mean_p50(h: &Histogram<u64>) -> (Duration, Duration) {
    (Duration::from_nanos(h.mean() as u64), Duration::from_nanos(h.value_at_quantile(0.5)))
}

/// A hash-distributed address for synthetic entries (`i` → the last 20 bytes of keccak(i)).
pub(crate) fn synthetic_address(i: u64) -> Address {
    Address::from_word(alloy::primitives::keccak256(i.to_be_bytes()))
}
