//! The fork cache and the simulator against anvil: simulated outcomes equal mined ones to the wei
//! and the gas, reorgs leave no orphaned state, a lagging node never yields a simulation.

use alloy::{
    consensus::{SignableTransaction, TxEnvelope},
    eips::{BlockId, Encodable2718},
    network::TxSignerSync,
    primitives::{Address, B256, I256, U256},
    providers::{DynProvider, Provider, ProviderBuilder, ext::AnvilApi},
    signers::local::PrivateKeySigner,
};
use cantilever::{
    contracts::{Executor, PmmPool, TestToken},
    devnet::{ChainManifest, Devnet, DevnetOptions, Scenario, deploy::confirm},
    sim::{self, NextBlock, SimTx, Simulator},
    state::{
        BlockInfo, CacheLimits, ForkCache, ReadRequest, ReadSet, Refresher, RefresherConfig,
        RpcSource, SourceError, StateKey, StateSource,
    },
};
use revm::primitives::hardfork::SpecId;

const E6: u64 = 1_000_000;

/// A private devnet (these tests mine, warp time and reorg) and the engine's state pieces over it.
struct Rig {
    _devnet: Devnet,
    chain: ChainManifest,
    keys: Vec<PrivateKeySigner>,
    node: DynProvider,
    deployer: DynProvider,
    refresher: Refresher<RpcSource>,
    cache: ForkCache,
    sim: Simulator,
}

async fn rig() -> Rig {
    let scenario = Scenario::default_scenario().expect("default scenario");
    let devnet = Devnet::start(&scenario, &DevnetOptions { any_port: true }).await.expect("devnet");
    let chain = devnet.manifest().chain(138).expect("chain 138").clone();
    let keys = devnet.node(138).expect("node").keys().to_vec();
    let node = ProviderBuilder::new().connect_http(chain.http_url.parse().expect("url")).erased();
    let deployer = ProviderBuilder::new()
        .with_simple_nonce_management()
        .wallet(alloy::network::EthereumWallet::from(keys[0].clone()))
        .connect_http(chain.http_url.parse().expect("url"))
        .erased();
    let cfg = RefresherConfig {
        always: vec![chain.executor, chain.accounts.operator],
        ..RefresherConfig::default()
    };
    let mut refresher = Refresher::new(RpcSource::new(node.clone(), 500), cfg);
    let mut cache = ForkCache::new(CacheLimits::default());
    let base = refresher.start().await.expect("full read");
    cache.apply(&base).expect("base applies");
    let mut sim = Simulator::new(138, SpecId::PRAGUE);
    let next = NextBlock::after(cache.head().expect("head"), 12);
    for t in chain.tokens.values() {
        let ok = sim::register_token(&mut refresher, &mut cache, &mut sim, &next, t.address)
            .await
            .expect("token probe");
        assert!(ok, "token {} has a located balance layout", t.address);
    }
    Rig { _devnet: devnet, chain, keys, node, deployer, refresher, cache, sim }
}

impl Rig {
    fn token(&self, s: &str) -> Address {
        self.chain.tokens[s].address
    }

    fn pool(&self, name: &str) -> Address {
        self.chain.pmm_pools.iter().find(|p| p.name == name).expect("pool").address
    }

    fn pair(&self, a: &str, b: &str) -> Address {
        self.chain
            .v2_pairs
            .iter()
            .find(|p| (p.token0 == a && p.token1 == b) || (p.token0 == b && p.token1 == a))
            .expect("pair")
            .address
    }

    fn vault(&self, official: &str) -> Address {
        self.chain.vaults.iter().find(|v| v.official == official).expect("vault").address
    }

    /// Brings the cache to the node's latest block.
    async fn follow(&mut self) -> B256 {
        let head = self.node.get_block_number().await.expect("block number");
        let block = self.node.get_block_by_number(head.into()).await.expect("block").expect("some");
        let hash = block.header.hash;
        if let Some(u) = self.refresher.on_head(hash).await.expect("update") {
            self.cache.apply(&u).expect("update applies");
        }
        assert!(self.cache.is_fresh_at(hash));
        hash
    }

    /// Sells `amount` of the pool's base (`sell_base`) or quote into a PMM pool, minted for the
    /// occasion.
    async fn push_pool(&self, pool: Address, sell_base: bool, amount: U256) {
        let p = PmmPool::new(pool, &self.deployer);
        let token =
            if sell_base { p._BASE_TOKEN_().call().await } else { p._QUOTE_TOKEN_().call().await }
                .expect("pool token");
        let t = TestToken::new(token, &self.deployer);
        let pending = t.mint(pool, amount).send().await.expect("mint");
        confirm(&self.deployer, pending, "mint").await.expect("mined");
        let to = self.keys[0].address();
        let pending = if sell_base {
            p.sellBase(to).gas(600_000).send().await
        } else {
            p.sellQuote(to).gas(600_000).send().await
        }
        .expect("sell sent");
        confirm(&self.deployer, pending, "sell").await.expect("sell mined");
    }
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

async fn erc20_at(p: &DynProvider, token: Address, who: Address, block: u64) -> U256 {
    TestToken::new(token, p)
        .balanceOf(who)
        .block(BlockId::number(block))
        .call()
        .await
        .expect("balance")
}

/// ≥ 20 random two- and three-hop routes, with and without flash loans: the simulated outcome on
/// the cache equals the receipt and every balance change of the block that mines the same signed
/// transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_routes_equal_the_mined_block() {
    let mut r = rig().await;
    let operator = r.keys[2].clone();
    assert_eq!(operator.address(), r.chain.accounts.operator);
    let executor = r.chain.executor;
    let lender = r.chain.lenders[0].address;
    let (usdt, cusdt, usdc, cusdc, xau) =
        (r.token("USDT"), r.token("cUSDT"), r.token("USDC"), r.token("cUSDC"), r.token("XAU"));
    let (p_tt, p_cc, p_tc) = (r.pool("cUSDT/USDT"), r.pool("cUSDC/USDC"), r.pool("cUSDT/cUSDC"));
    let (p_xt, p_xc) = (r.pool("XAU/cUSDT"), r.pool("XAU/cUSDC"));
    let (v_t, v_c) = (r.vault("USDT"), r.vault("USDC"));
    let pair_tc = r.pair("USDT", "USDC");
    let disturb = [(p_tt, 200_000u64), (p_cc, 200_000), (p_tc, 150_000), (p_xt, 30), (p_xc, 30)];

    let mut rng = fastrand::Rng::with_seed(0x51a7e);
    let (mut successes, mut reverts) = (0, 0);
    for round in 0..24 {
        // Move a pool, then let the cache follow the chain.
        let (pool, scale) = disturb[rng.usize(..disturb.len())];
        let decimals_18 = pool == p_xt || pool == p_xc;
        let sell_base = rng.bool();
        let units = U256::from(rng.u64(scale / 10..=scale));
        let amount = if decimals_18 && sell_base {
            units * U256::from(10u64).pow(U256::from(18))
        } else if decimals_18 {
            units * U256::from(2_650 * E6)
        } else {
            units * U256::from(E6)
        };
        r.push_pool(pool, sell_base, amount).await;
        let head_hash = r.follow().await;
        let head = *r.cache.head().expect("head");

        // A random route and funding.
        let amt = U256::from(rng.u64(500..20_000) * E6);
        let (token, hops, flashes): (Address, Vec<Executor::Hop>, Vec<(u8, Address)>) =
            match rng.usize(..5) {
                0 => (
                    usdt,
                    vec![hop(1, p_tt, usdt, cusdt, amt), hop(4, v_t, cusdt, usdt, U256::ZERO)],
                    vec![(0, Address::ZERO), (1, lender), (3, pair_tc)],
                ),
                1 => (
                    usdt,
                    vec![hop(3, v_t, usdt, cusdt, amt), hop(0, p_tt, cusdt, usdt, U256::ZERO)],
                    vec![(0, Address::ZERO), (1, lender), (3, pair_tc)],
                ),
                2 => (
                    cusdt,
                    vec![
                        hop(1, p_xt, cusdt, xau, amt),
                        hop(0, p_xc, xau, cusdc, U256::ZERO),
                        hop(1, p_tc, cusdc, cusdt, U256::ZERO),
                    ],
                    vec![(0, Address::ZERO), (1, lender), (2, p_tt)],
                ),
                3 => (
                    cusdt,
                    vec![
                        hop(0, p_tc, cusdt, cusdc, amt),
                        hop(1, p_xc, cusdc, xau, U256::ZERO),
                        hop(0, p_xt, xau, cusdt, U256::ZERO),
                    ],
                    vec![(0, Address::ZERO), (1, lender), (2, p_tt)],
                ),
                _ => (
                    usdc,
                    vec![hop(1, p_cc, usdc, cusdc, amt), hop(4, v_c, cusdc, usdc, U256::ZERO)],
                    vec![(0, Address::ZERO), (1, lender), (3, pair_tc)],
                ),
            };
        let (fkind, fsource) = flashes[rng.usize(..flashes.len())];
        let route = Executor::Route {
            flash: Executor::Flash {
                kind: fkind,
                source: fsource,
                token: if fkind == 0 { Address::ZERO } else { token },
                amount: if fkind == 0 { U256::ZERO } else { amt },
            },
            hops: hops.clone(),
            profitToken: token,
            minProfit: U256::ZERO,
            deadlineBlock: U256::ZERO,
            coinbaseTip: U256::ZERO,
        };
        let plan = sim::plan_of(executor, &route);
        let next = NextBlock::after(&head, 12);
        let nonce = r.cache.account(&operator.address()).expect("operator cached").nonce;
        let prio = 1_000_000_000u128;
        let mut tx = sim::route_tx(
            138,
            nonce,
            executor,
            route,
            2_000_000,
            2 * u128::from(next.base_fee) + prio,
            prio,
        );
        let env = sim::tx_env(&tx, operator.address()).expect("tx env");
        sim::warm(&mut r.refresher, &mut r.cache, &r.sim, &next, std::slice::from_ref(&env), 32)
            .await
            .expect("warm");

        let mut tokens = vec![usdt, cusdt, usdc, cusdc, xau];
        tokens.dedup();
        let mut holders = vec![executor, lender, pair_tc, p_tt, p_cc, p_tc, p_xt, p_xc, v_t, v_c];
        holders.push(operator.address());
        r.refresher.watch(holders.iter().map(|h| StateKey::Account(*h)));
        if let Some(u) = r.refresher.prefetch().await.expect("prefetch") {
            r.cache.apply(&u).expect("applies");
        }
        let sim_tx = SimTx {
            tx: env,
            tokens: tokens.clone(),
            holders: holders.clone(),
            watch_calls_to: executor,
        };
        let outcome = {
            let mut bs = r.sim.block(&r.cache, head_hash, &next).expect("fresh cache");
            bs.simulate(&sim_tx).expect("simulated")
        };

        // Mine the same signed transaction in the next block, at the simulated timestamp.
        r.node.anvil_set_next_block_timestamp(next.timestamp).await.expect("set timestamp");
        let sig = operator.sign_transaction_sync(&mut tx).expect("sign");
        let raw = TxEnvelope::from(tx.into_signed(sig)).encoded_2718();
        let receipt = r
            .node
            .send_raw_transaction(&raw)
            .await
            .expect("sent")
            .get_receipt()
            .await
            .expect("receipt");
        let mined = receipt.block_number.expect("mined");
        assert_eq!(mined, next.number, "round {round}: mined in the next block");
        assert_eq!(
            receipt.gas_used, outcome.gas_used,
            "round {round}: gas used ({:?})",
            outcome.status
        );
        assert_eq!(
            receipt.status(),
            outcome.success(),
            "round {round}: status {:?}",
            outcome.status
        );
        assert_eq!(receipt.effective_gas_price, outcome.gas_price, "round {round}: gas price");
        for t in &tokens {
            for h in &holders {
                let before = erc20_at(&r.node, *t, *h, mined - 1).await;
                let after = erc20_at(&r.node, *t, *h, mined).await;
                let chain_delta = I256::from_raw(after).wrapping_sub(I256::from_raw(before));
                assert_eq!(
                    outcome.delta(*h, *t),
                    Some(chain_delta),
                    "round {round}: token {t} holder {h} ({:?})",
                    outcome.status
                );
            }
        }
        for h in holders.iter().chain([&next.coinbase]) {
            let before =
                r.node.get_balance(*h).block_id(BlockId::number(mined - 1)).await.expect("bal");
            let after = r.node.get_balance(*h).block_id(BlockId::number(mined)).await.expect("bal");
            let chain_delta = I256::from_raw(after).wrapping_sub(I256::from_raw(before));
            assert_eq!(
                outcome.delta(*h, Address::ZERO),
                Some(chain_delta),
                "round {round}: native of {h}"
            );
        }
        // Containment agrees with the chain: a mined success is contained and its profit is the
        // executor's measured delta; a revert is refused with the reason.
        match sim::check_containment(&plan, &outcome) {
            Ok(profit) => {
                assert!(outcome.success());
                assert_eq!(Some(profit), outcome.delta(executor, token));
                assert!(
                    outcome
                        .callers
                        .iter()
                        .all(|c| Some(*c) == plan.flash_source || plan.venues.contains(c))
                );
            }
            Err(why) => {
                assert!(!outcome.success(), "round {round}: refused a clean success: {why:?}");
                assert!(matches!(why[0], sim::ContainmentError::Reverted(_)), "{why:?}");
            }
        }
        if fkind != 0 && outcome.success() {
            assert!(
                outcome.callers.contains(&fsource),
                "round {round}: the flash callback was seen"
            );
        }
        if outcome.success() {
            successes += 1;
        } else {
            reverts += 1;
        }
    }
    eprintln!("routes: {successes} succeeded, {reverts} reverted; all equal to the chain");
    assert!(successes >= 4, "enough profitable routes to cover success paths ({successes})");
}

/// Every cached key equals the node's value at the cache's head.
async fn assert_cache_matches_node(r: &Rig) {
    let head = r.cache.head().expect("head").hash;
    let id = BlockId::hash(head);
    for key in r.cache.keys() {
        match key {
            StateKey::Account(a) => {
                let bal = r.node.get_balance(a).block_id(id).await.expect("balance");
                let nonce = r.node.get_transaction_count(a).block_id(id).await.expect("nonce");
                let info = r.cache.account(&a).expect("held");
                assert_eq!((info.balance, info.nonce), (bal, nonce), "account {a}");
            }
            StateKey::Slot(a, s) => {
                let v = r.node.get_storage_at(a, s).block_id(id).await.expect("slot");
                assert_eq!(r.cache.storage(&a, &s), Some(v), "slot {a} {s}");
            }
        }
    }
}

async fn mint(r: &Rig, token: Address, to: Address, amount: u64) {
    let t = TestToken::new(token, &r.deployer);
    let pending = t.mint(to, U256::from(amount)).send().await.expect("mint");
    confirm(&r.deployer, pending, "mint").await.expect("mined");
}

/// `anvil_rollback` and `anvil_reorg` replace blocks the cache applied: afterwards no value of an
/// orphaned block is left, and every cached key equals the node at the new head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_leave_no_orphaned_state() {
    let mut r = rig().await;
    let usdt = r.token("USDT");
    let layout = *r.sim.layouts().get(&usdt).expect("layout");
    let (x, y) = (Address::repeat_byte(0x11), Address::repeat_byte(0x22));
    r.refresher.watch([
        StateKey::Slot(usdt, layout.balance_slot(x)),
        StateKey::Slot(usdt, layout.balance_slot(y)),
        StateKey::Account(x),
    ]);
    let u = r.refresher.prefetch().await.expect("prefetch").expect("new keys");
    r.cache.apply(&u).expect("applies");
    let base = *r.cache.head().expect("head");

    mint(&r, usdt, x, 100).await;
    r.follow().await;
    mint(&r, usdt, y, 50).await;
    r.follow().await;
    assert_eq!(r.cache.storage(&usdt, &layout.balance_slot(x)), Some(U256::from(100)));
    assert_eq!(r.cache.storage(&usdt, &layout.balance_slot(y)), Some(U256::from(50)));

    // Roll both blocks back and build a different branch of the same length plus one.
    r.node.anvil_rollback(Some(2)).await.expect("rollback");
    assert_eq!(r.node.get_block_number().await.expect("n"), base.number);
    mint(&r, usdt, x, 7).await;
    r.node.evm_mine(None).await.expect("mine");
    r.node.evm_mine(None).await.expect("mine");
    r.follow().await;
    let stats = r.cache.stats();
    assert_eq!((stats.reorgs, stats.blocks_rolled_back), (1, 2));
    assert_eq!(r.cache.storage(&usdt, &layout.balance_slot(x)), Some(U256::from(7)));
    assert_eq!(r.cache.storage(&usdt, &layout.balance_slot(y)), Some(U256::ZERO));
    assert_cache_matches_node(&r).await;

    // anvil_reorg: replace the last block with one carrying a different transfer.
    mint(&r, usdt, y, 9).await;
    r.follow().await;
    assert_eq!(r.cache.storage(&usdt, &layout.balance_slot(y)), Some(U256::from(9)));
    let tx = alloy::rpc::types::TransactionRequest::default()
        .from(r.keys[0].address())
        .to(usdt)
        .input(
            alloy::sol_types::SolCall::abi_encode(&TestToken::mintCall {
                to: x,
                amount: U256::from(5),
            })
            .into(),
        )
        .gas_limit(200_000);
    r.node
        .anvil_reorg(alloy::rpc::types::anvil::ReorgOptions {
            depth: 1,
            tx_block_pairs: vec![(alloy::rpc::types::anvil::TransactionData::JSON(tx), 0)],
        })
        .await
        .expect("reorg");
    r.follow().await;
    assert_eq!(r.cache.stats().reorgs, 2);
    assert_eq!(
        r.cache.storage(&usdt, &layout.balance_slot(y)),
        Some(U256::ZERO),
        "orphaned mint gone"
    );
    assert_eq!(r.cache.storage(&usdt, &layout.balance_slot(x)), Some(U256::from(12)));
    assert_cache_matches_node(&r).await;
}

/// Heads from an up-to-date node, state from a node that lags: every read is pinned to the head's
/// hash, so the lagging node's answers (for an older block) are refused, the cache stays at its
/// old head, and no simulation runs on mixed state.
struct SplitSource {
    heads: RpcSource,
    state: RpcSource,
}

impl StateSource for SplitSource {
    async fn block(&self, hash: B256) -> Result<BlockInfo, SourceError> {
        self.heads.block(hash).await
    }
    async fn latest(&self) -> Result<BlockInfo, SourceError> {
        self.heads.latest().await
    }
    async fn read(&self, at: B256, req: &ReadRequest) -> Result<ReadSet, SourceError> {
        self.state.read(at, req).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_never_yields_a_simulation_on_mixed_state() {
    let r = rig().await;
    let usdt = r.token("USDT");
    let old = *r.cache.head().expect("head");
    // A node that stays at the current block: anvil forked from ours at `old`.
    let lagging = cantilever::devnet::AnvilNode::spawn(&cantilever::devnet::AnvilOptions {
        chain_id: 138,
        fork: Some((r.chain.http_url.clone(), old.number)),
        ..Default::default()
    })
    .expect("lagging node");
    let lag =
        ProviderBuilder::new().connect_http(lagging.http_url().parse().expect("url")).erased();
    // It answers for `old` ...
    assert_eq!(lag.get_block_number().await.expect("n"), old.number);

    mint(&r, usdt, Address::repeat_byte(0x33), 1).await;
    let head = r.node.get_block_by_number(Default::default()).await.expect("b").expect("b");
    let mut split = Refresher::new(
        SplitSource { heads: RpcSource::new(r.node.clone(), 500), state: RpcSource::new(lag, 500) },
        RefresherConfig::default(),
    );
    split.watch(r.cache.keys());
    let base = split.on_head(old.hash).await.expect("full read at the old head").expect("update");
    assert!(base.full);
    // ... but not for the new head, so no update exists for it.
    let err = split.on_head(head.header.hash).await.expect_err("lagging node refused");
    assert!(
        matches!(err, cantilever::state::RefreshError::Source(SourceError::UnknownBlock { .. })),
        "{err}"
    );
    // The cache (still at `old`) refuses to simulate for the new head.
    let next = NextBlock::after(&old, 12);
    let stale = r.sim.block(&r.cache, head.header.hash, &next).expect_err("stale");
    assert!(matches!(stale, sim::SimError::Stale { .. }));
    // And the refresher did not move: a later head from a good source still applies cleanly.
    assert_eq!(split.head().expect("head").hash, old.hash);
}

/// A slot changed behind the cache's back (no log, no transaction: `anvil_setStorageAt`) is
/// caught by the divergence sample: the cache turns stale, simulations are refused, and a full
/// re-read makes it fresh again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn divergence_pauses_trading_until_a_full_read() {
    let r = rig().await;
    let usdt = r.token("USDT");
    let layout = *r.sim.layouts().get(&usdt).expect("layout");
    let x = Address::repeat_byte(0x44);
    let slot = layout.balance_slot(x);
    // Sample every watched slot each block, so the changed one is certainly compared.
    let cfg = RefresherConfig { samples_per_block: 100_000, ..RefresherConfig::default() };
    let mut refresher = Refresher::new(RpcSource::new(r.node.clone(), 500), cfg);
    refresher.watch(r.cache.keys());
    refresher.watch([StateKey::Slot(usdt, slot)]);
    let mut cache = ForkCache::new(CacheLimits::default());
    cache.apply(&refresher.start().await.expect("full")).expect("applies");

    r.node.anvil_set_storage_at(usdt, slot, B256::from(U256::from(777))).await.expect("poke");
    r.node.evm_mine(None).await.expect("mine");
    let head = r.node.get_block_by_number(Default::default()).await.expect("b").expect("b");
    let u = refresher.on_head(head.header.hash).await.expect("update").expect("some");
    let out = cache.apply(&u).expect("applies");
    assert!(out.divergences >= 1, "the poked slot differs");
    assert!(!cache.is_fresh());
    let next = NextBlock::after(cache.head().expect("head"), 12);
    assert!(matches!(
        r.sim.block(&cache, head.header.hash, &next),
        Err(sim::SimError::Stale { .. })
    ));
    assert_eq!(cache.stats().divergences, out.divergences);

    refresher.request_full();
    r.node.evm_mine(None).await.expect("mine");
    let head = r.node.get_block_by_number(Default::default()).await.expect("b").expect("b");
    let u = refresher.on_head(head.header.hash).await.expect("update").expect("some");
    assert!(u.full);
    cache.apply(&u).expect("applies");
    assert!(cache.is_fresh_at(head.header.hash));
    assert_eq!(cache.storage(&usdt, &slot), Some(U256::from(777)));
}
