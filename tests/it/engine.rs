//! The live hot loop on a private devnet: ingest → feeder → engine → exec, end to end.

use std::{path::PathBuf, sync::atomic::Ordering, time::Duration};

use alloy::{
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use cantilever::{
    config::Config,
    contracts::{PmmPool, TestToken},
    devnet::{ChainManifest, Devnet, DevnetOptions, Scenario, deploy::confirm, devnet_config},
    engine::{Control, RunHandle, RunOptions, run_chain},
    ledger::{self, Ledger, LedgerHandle, Record},
};
use revm::primitives::hardfork::SpecId;

pub struct Bot {
    pub _devnet: Devnet,
    pub chain: ChainManifest,
    pub keys: Vec<PrivateKeySigner>,
    pub node: DynProvider,
    pub deployer: DynProvider,
    pub cfg: Config,
    pub identity: Option<PrivateKeySigner>,
    pub _dir: tempfile::TempDir,
}

/// A private devnet whose cUSDT/USDT pool has a depeg-prone curvature (k = 0.05: the default
/// 0.0005 keeps that pool within 5 bps of peg whatever is sold into it).
pub async fn devnet_bot(k_cusdt: &str) -> Bot {
    let mut scenario = Scenario::default_scenario().expect("scenario");
    for p in &mut scenario.pmm_pools {
        if p.name == "cUSDT/USDT" && p.chain == "chain138" {
            p.k = k_cusdt.into();
        }
    }
    let devnet = Devnet::start(&scenario, &DevnetOptions { any_port: true }).await.expect("devnet");
    let chain = devnet.manifest().chain(138).expect("138").clone();
    let keys = devnet.node(138).expect("node").keys().to_vec();
    let node = ProviderBuilder::new().connect_http(chain.http_url.parse().expect("url")).erased();
    let deployer = ProviderBuilder::new()
        .with_simple_nonce_management()
        .wallet(alloy::network::EthereumWallet::from(keys[0].clone()))
        .connect_http(chain.http_url.parse().expect("url"))
        .erased();
    let mut cfg = devnet_config(devnet.manifest()).expect("devnet config");
    let dir = tempfile::tempdir().expect("tempdir");
    cfg.engine.dry_run = false;
    cfg.engine.halt_file = dir.path().join("halt");
    cfg.engine.ledger_path = dir.path().join("ledger.db");
    Bot { _devnet: devnet, chain, keys, node, deployer, cfg, identity: None, _dir: dir }
}

impl Bot {
    pub fn ledger(&self) -> LedgerHandle {
        Ledger::open(&self.cfg.engine.ledger_path, B256::repeat_byte(7), "test")
            .expect("ledger")
            .spawn()
            .expect("writer")
    }

    pub async fn start(&self, ledger: &LedgerHandle) -> RunHandle {
        let chain = self.cfg.chains.iter().find(|c| c.chain_id == 138).expect("138").clone();
        run_chain(RunOptions {
            chain,
            strategies: self.cfg.strategies.clone(),
            risk: self.cfg.risk.clone(),
            engine: self.cfg.engine.clone(),
            signer: Some(self.keys[2].clone()),
            identity: self.identity.clone(),
            ledger: Some(ledger.clone()),
            histograms: None,
            spec: SpecId::PRAGUE,
            prove_top: 4,
        })
        .await
        .expect("engine starts")
    }

    pub fn pool(&self, name: &str) -> Address {
        self.chain.pmm_pools.iter().find(|p| p.name == name).expect("pool").address
    }

    /// Sells `amount` raw of the pool's base (or quote) into it (minted for the occasion);
    /// returns the block it was mined in.
    pub async fn dump(&self, pool: Address, sell_base: bool, amount: U256) -> u64 {
        let p = PmmPool::new(pool, &self.deployer);
        let token =
            if sell_base { p._BASE_TOKEN_().call().await } else { p._QUOTE_TOKEN_().call().await }
                .expect("token");
        let t = TestToken::new(token, &self.deployer);
        let pending = t.mint(pool, amount).send().await.expect("mint");
        confirm(&self.deployer, pending, "mint").await.expect("mined");
        let to = self.keys[0].address();
        let pending = if sell_base {
            p.sellBase(to).gas(600_000).send().await
        } else {
            p.sellQuote(to).gas(600_000).send().await
        }
        .expect("sell");
        let r = confirm(&self.deployer, pending, "sell").await.expect("sell mined");
        r.block_number.expect("block")
    }

    pub fn db(&self) -> PathBuf {
        self.cfg.engine.ledger_path.clone()
    }
}

pub fn records(ledger: &LedgerHandle, db: &std::path::Path) -> Vec<Record> {
    ledger.flush().expect("flush");
    ledger::read_records(db, ledger.run_id()).expect("read")
}

/// The first record `f` picks (the test fails with the ledger printed when none does).
pub fn first<T>(recs: &[Record], f: impl Fn(&Record) -> Option<T>) -> T {
    recs.iter().find_map(f).unwrap_or_else(|| panic!("no such record in the ledger: {recs:#?}"))
}

/// The submission with this id and the opportunity it executed.
pub fn submission_and_opportunity(
    recs: &[Record],
    submission: u64,
) -> (ledger::Submission, ledger::Opportunity) {
    let sub = first(recs, |r| match r {
        Record::Submission(s) if s.id == submission => Some(s.clone()),
        _ => None,
    });
    let opp = first(recs, |r| match r {
        Record::Opportunity(o) if o.id == sub.opportunity_id => Some(o.clone()),
        _ => None,
    });
    (sub, opp)
}

pub fn e6(n: u64) -> U256 {
    U256::from(n) * U256::from(1_000_000u64)
}

/// A large dump pushes cUSDT below peg on the PMM pool: within 2 blocks the bot lands the atomic
/// route (flash loan → buy cUSDT on the pool → redeem 1:1 at the vault → repay) with realised
/// profit > 0 and within 1% of the simulated profit after gas; the ledger has the whole story.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_depeg_is_closed_by_an_atomic_flash_route_within_two_blocks() {
    let bot = devnet_bot("0.05").await;
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    assert!(run.routes > 0, "routes enumerated");
    let head = bot.node.get_block_number().await.expect("n");
    assert!(run.wait_settled(head, Duration::from_secs(20)), "engine follows the chain");

    let dumped = bot.dump(bot.pool("cUSDT/USDT"), true, e6(200_000)).await;
    // The bot's route lands in one of the next two blocks.
    let landed = cantilever::engine::wait_until(Duration::from_secs(30), || {
        records(&ledger, &bot.db()).iter().any(
            |r| matches!(r, Record::Inclusion(i) if i.status == ledger::InclusionStatus::Included),
        )
    });
    let recs = records(&ledger, &bot.db());
    assert!(landed, "an inclusion was recorded: {recs:#?}");
    let inc = first(&recs, |r| match r {
        Record::Inclusion(i) if i.status == ledger::InclusionStatus::Included => Some(i.clone()),
        _ => None,
    });
    assert!(inc.block <= dumped + 2, "landed in block {} after the dump in {dumped}", inc.block);
    let (_sub, opp) = submission_and_opportunity(&recs, inc.submission_id);
    assert_eq!(opp.strategy, "depeg");
    assert!(opp.route.contains("vault"), "route through the vault: {}", opp.route);
    let sim = first(&recs, |r| match r {
        Record::Simulation(s) if s.opportunity_id == opp.id => Some(s.clone()),
        _ => None,
    });
    let decision = first(&recs, |r| match r {
        Record::Decision(d) if d.opportunity_id == opp.id => Some(d.clone()),
        _ => None,
    });
    assert!(decision.approved);
    let realised = inc.realised_pnl_usd.expect("pnl usd");
    let simulated = sim.profit_usd.expect("sim usd");
    assert!(realised > 0.0, "realised {realised}");
    assert!(
        (realised - simulated).abs() <= simulated.abs() * 0.01,
        "realised {realised} vs simulated {simulated}"
    );
    eprintln!(
        "depeg: dump in block {dumped}, route `{}` landed in {} with realised ${realised:.4} (simulated ${simulated:.4})",
        opp.route, inc.block
    );
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
    drop(bot);
}

/// The halt file stops every submission at once and survives a restart until re-armed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_halt_file_stops_submissions_and_survives_a_restart() {
    let bot = devnet_bot("0.05").await;
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    run.control(Control::Halt("desk test".into()));
    assert!(cantilever::engine::wait_until(Duration::from_secs(5), || run
        .stats
        .halted
        .load(Ordering::Relaxed)));
    assert!(bot.cfg.engine.halt_file.exists(), "halt persisted to its file");
    let dumped = bot.dump(bot.pool("cUSDT/USDT"), true, e6(200_000)).await;
    assert!(run.wait_settled(dumped, Duration::from_secs(20)));
    assert_eq!(run.stats.submitted.load(Ordering::Relaxed), 0, "nothing submitted while halted");
    run.stop(Duration::from_secs(5)).await;

    // Restart: still halted (the file), still nothing sent.
    let run = bot.start(&ledger).await;
    assert!(
        run.stats.halted.load(Ordering::Relaxed)
            || cantilever::engine::wait_until(Duration::from_secs(2), || run
                .stats
                .halted
                .load(Ordering::Relaxed))
    );
    let d2 = bot.dump(bot.pool("cUSDT/USDT"), true, e6(50_000)).await;
    assert!(run.wait_settled(d2, Duration::from_secs(20)));
    assert_eq!(run.stats.submitted.load(Ordering::Relaxed), 0, "still halted after the restart");
    // Re-armed: the standing opportunity is taken.
    run.control(Control::Rearm);
    let d3 = bot.dump(bot.pool("cUSDT/USDT"), true, e6(10_000)).await;
    assert!(
        cantilever::engine::wait_until(Duration::from_secs(20), || run
            .stats
            .submitted
            .load(Ordering::Relaxed)
            > 0),
        "trades after re-arm (block {d3})"
    );
    assert!(!bot.cfg.engine.halt_file.exists());
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

/// Sends the victim — a transfer of `amount` cUSDT into the pool and its `sellBase`, two pending
/// transactions with a 2 gwei tip — without waiting (automine is off).
async fn send_victim(
    bot: &Bot,
    pool: Address,
    amount: U256,
) -> (alloy::primitives::B256, alloy::primitives::B256) {
    use alloy::network::TransactionBuilder;
    let cusdt = bot.chain.tokens["cUSDT"].address;
    let from = bot.keys[0].address();
    let nonce = bot.node.get_transaction_count(from).await.expect("nonce");
    let base = bot.node.get_gas_price().await.expect("gas price");
    let tip = 2_000_000_000u128;
    let transfer = alloy::rpc::types::TransactionRequest::default()
        .with_from(from)
        .with_to(cusdt)
        .with_input(alloy::sol_types::SolCall::abi_encode(&TestToken::transferCall {
            to: pool,
            amount,
        }))
        .with_nonce(nonce)
        .with_gas_limit(200_000)
        .with_max_fee_per_gas(base * 4 + tip)
        .with_max_priority_fee_per_gas(tip);
    let sell = alloy::rpc::types::TransactionRequest::default()
        .with_from(from)
        .with_to(pool)
        .with_input(alloy::sol_types::SolCall::abi_encode(&PmmPool::sellBaseCall { to: from }))
        .with_nonce(nonce + 1)
        .with_gas_limit(600_000)
        .with_max_fee_per_gas(base * 4 + tip)
        .with_max_priority_fee_per_gas(tip);
    let a = *bot.deployer.send_transaction(transfer).await.expect("transfer sent").tx_hash();
    let b = *bot.deployer.send_transaction(sell).await.expect("sell sent").tx_hash();
    (a, b)
}

async fn backrun_case(relay: bool) {
    use alloy::providers::ext::AnvilApi;
    let mut bot = devnet_bot("0.05").await;
    bot.cfg.strategies.backrun.enabled = true;
    bot.cfg.strategies.backrun.bundle_only = false;
    let pool = bot.pool("cUSDT/USDT");
    // The victim's cUSDT, minted while blocks still mine on their own.
    let t = TestToken::new(bot.chain.tokens["cUSDT"].address, &bot.deployer);
    let pending = t.mint(bot.keys[0].address(), e6(200_000)).send().await.expect("mint");
    confirm(&bot.deployer, pending, "mint").await.expect("mined");
    let relay_srv = if relay {
        let r = super::exec::start_relay(&bot.chain.http_url, super::exec::RelayMode::Honest).await;
        let chain = bot.cfg.chains.iter_mut().find(|c| c.chain_id == 138).expect("138");
        chain.submission.mode = cantilever::config::SubmissionMode::FlashbotsRelay;
        chain.submission.relays = vec![cantilever::config::RelayConfig {
            name: "loopback".into(),
            url: cantilever::config::EndpointUrl::new(r.url.clone()).expect("url"),
            builders: vec![],
        }];
        bot.identity = Some(PrivateKeySigner::random());
        Some(r)
    } else {
        None
    };
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    let head = bot.node.get_block_number().await.expect("n");
    assert!(run.wait_settled(head, Duration::from_secs(20)));
    bot.node.anvil_set_auto_mine(false).await.expect("automine off");

    let (transfer, sell) = send_victim(&bot, pool, e6(200_000)).await;
    // The engine sees the pending victim and submits its backrun.
    assert!(
        cantilever::engine::wait_until(Duration::from_secs(20), || run
            .stats
            .submitted
            .load(Ordering::Relaxed)
            > 0),
        "a backrun was submitted: {:?}",
        run.stats
    );
    if !relay {
        // Raw path: once the exec task has handed the backrun to the node (the engine counts a
        // submission when it queues it, before it is sent), it waits in the pool after the
        // victim; mine them.
        assert!(
            cantilever::engine::wait_until(Duration::from_secs(20), || run
                .sent
                .load(Ordering::Acquire)
                > 0),
            "the backrun reached the node"
        );
        bot.node.anvil_mine(Some(1), None).await.expect("mine");
    }
    let landed = cantilever::engine::wait_until(Duration::from_secs(20), || {
        records(&ledger, &bot.db()).iter().any(|r| matches!(r, Record::Inclusion(_)))
    });
    assert!(landed, "the backrun's inclusion was tracked");
    let recs = records(&ledger, &bot.db());
    let inc = first(&recs, |r| match r {
        Record::Inclusion(i) => Some(i.clone()),
        _ => None,
    });
    assert_eq!(inc.status, ledger::InclusionStatus::Included, "{recs:#?}");
    assert!(inc.realised_pnl_usd.expect("pnl") > 0.0);
    let (sub, opp) = submission_and_opportunity(&recs, inc.submission_id);
    assert_eq!(opp.strategy, "backrun");
    // Order in the block: victim transfer, victim sell, then our backrun.
    let block =
        bot.node.get_block_by_number(inc.block.into()).await.expect("block").expect("block");
    let hashes: Vec<_> = block.transactions.hashes().collect();
    let pos = |h| hashes.iter().position(|x| *x == h).expect("in the block");
    assert!(
        pos(transfer) < pos(sell) && pos(sell) < pos(sub.tx_hashes[0]),
        "victim then backrun: {hashes:?}"
    );
    if let Some(r) = relay_srv {
        let log = r.log.lock().expect("log");
        // (The size ramp caps each route at $1,000, so later heads may trade the rest of the
        // deviation in further bundles; the first one is the backrun.)
        assert!(!log.bundles.is_empty(), "the bundle reached the relay");
        assert_eq!(log.bundles[0].len(), 3, "[transfer, sell, backrun]");
        assert_eq!(alloy::primitives::keccak256(&log.bundles[0][0]), transfer);
        assert_eq!(alloy::primitives::keccak256(&log.bundles[0][1]), sell);
        assert_eq!(alloy::primitives::keccak256(&log.bundles[0][2]), sub.tx_hashes[0]);
        let identity = bot.identity.as_ref().expect("identity").address();
        assert!(log.signers.iter().all(|s| *s == identity), "signed by the identity key");
        assert!(log.rejected.is_empty(), "the relay accepted every signature: {:?}", log.rejected);
        assert_eq!(sub.kind, ledger::SubmissionKind::Bundle);
    } else {
        assert_eq!(sub.kind, ledger::SubmissionKind::Raw);
    }
    eprintln!(
        "backrun ({}): victim {sell} then backrun {} in block {}, realised ${:.4}",
        if relay { "relay" } else { "raw" },
        sub.tx_hashes[0],
        inc.block,
        inc.realised_pnl_usd.unwrap_or_default()
    );
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

/// A pending transaction that moves a pool is backrun: on the relay path the bundle
/// [victim, backrun] reaches a loopback relay that checks the signature header (DOMAIN §4.3) and
/// mines both in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_victim_is_backrun_through_a_signed_bundle() {
    backrun_case(true).await;
}

/// On the raw path (no builders) the backrun is sent after the victim is seen and lands after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_victim_is_backrun_with_a_raw_transaction() {
    backrun_case(false).await;
}

/// An opportunity smaller than its costs (gas, fees, the minimum profit) is proven and refused
/// with its reason, never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opportunity_smaller_than_its_costs_is_never_sent() {
    let bot = devnet_bot("0.05").await;
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    let dumped = bot.dump(bot.pool("cUSDT/USDT"), true, e6(30_000)).await;
    assert!(run.wait_settled(dumped, Duration::from_secs(20)));
    let recs = records(&ledger, &bot.db());
    assert_eq!(run.stats.submitted.load(Ordering::Relaxed), 0, "nothing sent: {recs:#?}");
    let refusals: Vec<_> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Decision(d) if !d.approved => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert!(!refusals.is_empty(), "the small opportunity was proven and refused: {recs:#?}");
    assert!(
        refusals
            .iter()
            .all(|d| d.refusal_kind.as_deref().is_some_and(|k| k.starts_with("min_profit"))),
        "refused for its size: {refusals:#?} {recs:#?}"
    );
    eprintln!("refused: {:?}", refusals.iter().map(|d| d.reason.clone()).collect::<Vec<_>>());
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

/// The stabilizer (with the atomic depeg arbitrage off) ignores a manipulation pushed and
/// restored inside one block and a one-block outlier, and trades a deviation sustained over the
/// window, sized k × deviation and capped per block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stabilizer_ignores_single_block_spikes_and_trades_sustained_deviation() {
    use alloy::providers::ext::AnvilApi;
    let mut bot = devnet_bot("0.0005").await;
    bot.cfg.strategies.depeg.enabled = false;
    bot.cfg.strategies.stabilizer.enabled = true;
    bot.cfg.strategies.stabilizer.pools =
        vec![cantilever::config::VenueRef { chain: "chain138".into(), venue: "cUSDC/USDC".into() }];
    bot.cfg.risk.min_profit_usd = 0.05;
    for c in &mut bot.cfg.chains {
        c.fees.priority_fee_gwei = 0.05;
    }
    let pool = bot.pool("cUSDC/USDC");
    let (base, quote) = (bot.chain.tokens["cUSDC"].address, bot.chain.tokens["USDC"].address);
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    bot.node.anvil_set_auto_mine(false).await.expect("automine off");
    let p = PmmPool::new(pool, bot.node.clone());
    let mine = || async {
        bot.node.anvil_mine(Some(1), None).await.expect("mine");
        let n = bot.node.get_block_number().await.expect("n");
        assert!(run.wait_handed(n, Duration::from_secs(20)), "engine at {n}");
        n
    };
    let push = e6(100_000);
    let back = |p: PmmPool::PmmPoolInstance<DynProvider>| async move {
        p.querySellBase(Address::ZERO, push).call().await.expect("quote").receiveQuoteAmount
    };

    // (a) Pushed and restored inside one block.
    let restore = back(p.clone()).await;
    super::peg::send_trade(&bot, pool, true, push, base, quote).await;
    super::peg::send_trade(&bot, pool, false, restore, base, quote).await;
    mine().await;
    // (b) A one-block outlier: pushed in one block, restored in the next.
    let restore = back(p.clone()).await;
    super::peg::send_trade(&bot, pool, true, push, base, quote).await;
    mine().await;
    super::peg::send_trade(&bot, pool, false, restore, base, quote).await;
    for _ in 0..4 {
        mine().await;
    }
    assert_eq!(
        run.stats.stabilizer_trades.load(Ordering::Relaxed),
        0,
        "no trade on single-block spikes"
    );
    assert_eq!(run.stats.submitted.load(Ordering::Relaxed), 0);

    // (c) Sustained: a 20,000 push left in place.
    super::peg::send_trade(&bot, pool, true, e6(20_000), base, quote).await;
    let pushed = mine().await;
    let mut traded_at = None;
    for _ in 0..8 {
        let n = mine().await;
        if run.stats.stabilizer_trades.load(Ordering::Relaxed) > 0 {
            traded_at = Some(n);
            break;
        }
    }
    let traded_at = traded_at.unwrap_or_else(|| {
        panic!(
            "the stabilizer traded the sustained deviation: {:?} {:#?}",
            run.stats,
            records(&ledger, &bot.db())
        )
    });
    assert!(
        traded_at >= pushed + 2,
        "not before the deviation was sustained (pushed {pushed}, traded {traded_at})"
    );
    mine().await;
    let recs = records(&ledger, &bot.db());
    let opp = recs
        .iter()
        .find_map(|r| match r {
            Record::Opportunity(o) if o.strategy == "stabilizer" => Some(o.clone()),
            _ => None,
        })
        .expect("a stabilizer opportunity");
    let cap = bot.cfg.strategies.stabilizer.per_block_cap_usd;
    assert!(opp.size <= e6(cap as u64), "sized within the per-block cap: {}", opp.size);
    eprintln!(
        "stabilizer: pushed in block {pushed}, traded after {} blocks, size {} raw",
        traded_at - pushed,
        opp.size
    );
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    CallbackIntruderContract,
    "fixtures/artifacts/CallbackIntruder.json"
);

/// A route whose containment fails is refused with its reason: the only flash source for USDT
/// and cUSDT is a hostile lender whose `flashLoan` has an accomplice call the executor's callback
/// (the 0xbadc0de pattern). The simulation shows the executor refusing it and the foreign caller;
/// the engine refuses the route, says why, and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_failing_containment_is_refused_with_its_reason() {
    let mut bot = devnet_bot("0.05").await;
    let (usdt, cusdt) = (bot.chain.tokens["USDT"].address, bot.chain.tokens["cUSDT"].address);
    let exec = bot.chain.executor;
    // No inventory: every route needs the flash source.
    let ex = cantilever::contracts::Executor::new(exec, &bot.deployer);
    for t in [usdt, cusdt] {
        let bal = TestToken::new(t, &bot.node).balanceOf(exec).call().await.expect("balance");
        let pending = ex.sweep(t, bal).send().await.expect("sweep");
        confirm(&bot.deployer, pending, "sweep").await.expect("swept");
    }
    let deploy = |accomplice: Address| {
        let p = bot.deployer.clone();
        async move {
            let pending = CallbackIntruderContract::deploy_builder(
                p.clone(),
                exec,
                usdt,
                cusdt,
                0,
                accomplice,
            )
            .send()
            .await
            .expect("deploy sent");
            confirm(&p, pending, "deploy")
                .await
                .expect("deployed")
                .contract_address
                .expect("address")
        }
    };
    let accomplice = deploy(Address::ZERO).await;
    let lender = deploy(accomplice).await;
    for c in &mut bot.cfg.chains {
        if c.chain_id == 138 {
            c.flash_lenders = vec![cantilever::config::FlashLenderConfig {
                kind: cantilever::config::FlashLenderKind::Erc3156,
                address: lender,
                tokens: vec!["USDT".into(), "cUSDT".into()],
            }];
        }
    }
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    let dumped = bot.dump(bot.pool("cUSDT/USDT"), true, e6(200_000)).await;
    assert!(run.wait_settled(dumped, Duration::from_secs(20)));
    let recs = records(&ledger, &bot.db());
    assert_eq!(run.stats.submitted.load(Ordering::Relaxed), 0, "nothing sent: {recs:#?}");
    let refused: Vec<_> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Decision(d) if !d.approved => Some(d.clone()),
            _ => None,
        })
        .collect();
    let contained = refused
        .iter()
        .find(|d| d.refusal_kind.as_deref().is_some_and(|k| k.starts_with("containment:")))
        .unwrap_or_else(|| panic!("a containment refusal: {recs:#?}"));
    let reason = contained.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!("unexpected call into the executor from {accomplice}")),
        "{reason}"
    );
    eprintln!("containment: {} — {reason}", contained.refusal_kind.clone().unwrap_or_default());
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

/// An XAU-anchor triangle (seed 000): XAU sold cheap on XAU/cUSDT is bought there, sold on
/// XAU/cUSDC and the cUSDC swapped back to cUSDT, in one atomic route that lands with a profit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_triangle_is_traded_through_xau() {
    let mut bot = devnet_bot("0.0005").await;
    bot.cfg.strategies.depeg.enabled = false;
    bot.cfg.strategies.triangle.enabled = true;
    bot.cfg.strategies.triangle.chain = Some("chain138".into());
    bot.cfg.strategies.triangle.tokens = vec!["cUSDT".into(), "cUSDC".into()];
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    let xau = U256::from(10u64).pow(U256::from(18));
    let dumped = bot.dump(bot.pool("XAU/cUSDT"), true, xau * U256::from(40)).await;
    let landed = cantilever::engine::wait_until(Duration::from_secs(30), || {
        records(&ledger, &bot.db()).iter().any(
            |r| matches!(r, Record::Inclusion(i) if i.status == ledger::InclusionStatus::Included),
        )
    });
    let recs = records(&ledger, &bot.db());
    assert!(landed, "a triangle landed: {recs:#?}");
    let inc = first(&recs, |r| match r {
        Record::Inclusion(i) => Some(i.clone()),
        _ => None,
    });
    let (_sub, opp) = submission_and_opportunity(&recs, inc.submission_id);
    assert_eq!(opp.strategy, "triangle", "{}", opp.route);
    assert!(opp.route.contains("XAU/cUSDT") && opp.route.contains("XAU/cUSDC"), "{}", opp.route);
    assert!(inc.realised_pnl_usd.expect("pnl") > 0.0);
    eprintln!(
        "triangle: dump in {dumped}, `{}` landed in {} with ${:.2}",
        opp.route,
        inc.block,
        inc.realised_pnl_usd.unwrap_or_default()
    );
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

/// Gas spike: with the next base fee far above the chain's fee cap the bot stands down (refused
/// `gas_price`, nothing sent) and trades again once the base fee is back under the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gas_spike_stands_the_bot_down_until_fees_return() {
    use alloy::providers::ext::AnvilApi;
    let bot = devnet_bot("0.05").await;
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    // A block whose base fee is 100× the chain's fee cap (50 gwei), then a dump under it.
    bot.node.anvil_set_auto_mine(false).await.expect("automine off");
    bot.node.anvil_set_next_block_base_fee_per_gas(5_000_000_000_000).await.expect("spike");
    bot.node.evm_mine(None).await.expect("mine");
    let (cusdt, usdt) = (bot.chain.tokens["cUSDT"].address, bot.chain.tokens["USDT"].address);
    super::peg::send_trade(&bot, bot.pool("cUSDT/USDT"), true, e6(200_000), cusdt, usdt).await;
    bot.node.evm_mine(None).await.expect("mine");
    let dumped = bot.node.get_block_number().await.expect("n");
    assert!(run.wait_handed(dumped, Duration::from_secs(20)));
    assert_eq!(run.stats.submitted.load(Ordering::Relaxed), 0, "nothing sent during the spike");
    let recs = records(&ledger, &bot.db());
    assert!(
        recs.iter().any(
            |r| matches!(r, Record::Decision(d) if d.refusal_kind.as_deref() == Some("gas_price"))
        ),
        "refused for the gas price: {recs:#?}"
    );
    // Empty blocks let the base fee fall 12.5% a block; the bot trades once it is under the cap.
    let mut mined = 0;
    while run.stats.submitted.load(Ordering::Relaxed) == 0 && mined < 80 {
        bot.node.evm_mine(None).await.expect("mine");
        mined += 1;
        let n = bot.node.get_block_number().await.expect("n");
        assert!(run.wait_handed(n, Duration::from_secs(20)));
    }
    assert!(run.stats.submitted.load(Ordering::Relaxed) > 0, "trades after the spike");
    let head = bot.node.get_block_by_number(Default::default()).await.expect("b").expect("b");
    let cap = (bot.cfg.chains[0].fees.max_fee_gwei * 1e9) as u64;
    assert!(head.header.base_fee_per_gas.unwrap_or(0) < cap, "traded only under the cap");
    bot.node.evm_mine(None).await.expect("mine");
    eprintln!("gas spike: stood down, traded again after {mined} blocks");
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

/// A transaction sent from the bot's key out of band moves the nonce; the bot resyncs from the
/// chain at the next head and its next trade lands, with no rejected submission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_band_transaction_is_absorbed_by_a_nonce_resync() {
    let bot = devnet_bot("0.05").await;
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    let operator = super::harness::provider(&bot.chain.http_url, &bot.keys[2]);
    let tx = alloy::rpc::types::TransactionRequest::default()
        .to(Address::repeat_byte(0x99))
        .value(U256::from(1));
    operator.send_transaction(tx).await.expect("sent").get_receipt().await.expect("mined");
    let dumped = bot.dump(bot.pool("cUSDT/USDT"), true, e6(200_000)).await;
    let landed = cantilever::engine::wait_until(Duration::from_secs(30), || {
        records(&ledger, &bot.db()).iter().any(
            |r| matches!(r, Record::Inclusion(i) if i.status == ledger::InclusionStatus::Included),
        )
    });
    let recs = records(&ledger, &bot.db());
    assert!(landed, "traded after the out-of-band tx (dump in {dumped}): {recs:#?}");
    assert!(
        !recs.iter().any(|r| matches!(r, Record::Submission(s) if s.outcome != ledger::SubmissionOutcome::Accepted)),
        "no rejected submission: {recs:#?}"
    );
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

/// The kill switch: the bot's trades are front-run three times in a row (a restoring trade with a
/// higher tip lands first, so each of the bot's transactions reverts on chain); the third revert
/// engages the persistent halt and nothing more is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_reverts_trip_the_kill_switch() {
    use alloy::{network::TransactionBuilder, providers::ext::AnvilApi};
    let mut bot = devnet_bot("0.05").await;
    bot.cfg.risk.pause_after_consecutive_failures = 3;
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    bot.node.anvil_set_auto_mine(false).await.expect("automine off");
    let pool = bot.pool("cUSDT/USDT");
    let (cusdt, usdt) = (bot.chain.tokens["cUSDT"].address, bot.chain.tokens["USDT"].address);
    let p = PmmPool::new(pool, bot.node.clone());
    for round in 0..3 {
        // Push cUSDT down, let the bot react.
        let restore =
            p.querySellBase(Address::ZERO, e6(100_000)).call().await.expect("q").receiveQuoteAmount;
        super::peg::send_trade(&bot, pool, true, e6(100_000), cusdt, usdt).await;
        bot.node.anvil_mine(Some(1), None).await.expect("mine");
        let n = bot.node.get_block_number().await.expect("n");
        let before = run.stats.submitted.load(Ordering::Relaxed);
        assert!(
            cantilever::engine::wait_until(Duration::from_secs(20), || run
                .stats
                .submitted
                .load(Ordering::Relaxed)
                > before
                && run.sent.load(Ordering::Relaxed) >= run.stats.submitted.load(Ordering::Relaxed)),
            "round {round}: the bot submitted after block {n}"
        );
        // A restoring trade with a 50 gwei tip goes first in the next block.
        let from = bot.keys[0].address();
        let nonce = bot
            .node
            .get_transaction_count(from)
            .block_id(alloy::eips::BlockId::pending())
            .await
            .expect("nonce");
        let fee = bot.node.get_gas_price().await.expect("gas") * 4 + 50_000_000_000;
        let mint = alloy::rpc::types::TransactionRequest::default()
            .with_from(from)
            .with_to(usdt)
            .with_input(alloy::sol_types::SolCall::abi_encode(&TestToken::mintCall {
                to: pool,
                amount: restore,
            }))
            .with_nonce(nonce)
            .with_gas_limit(150_000)
            .with_max_fee_per_gas(fee)
            .with_max_priority_fee_per_gas(50_000_000_000);
        let sell = alloy::rpc::types::TransactionRequest::default()
            .with_from(from)
            .with_to(pool)
            .with_input(alloy::sol_types::SolCall::abi_encode(&PmmPool::sellQuoteCall { to: from }))
            .with_nonce(nonce + 1)
            .with_gas_limit(600_000)
            .with_max_fee_per_gas(fee)
            .with_max_priority_fee_per_gas(50_000_000_000);
        let _a = bot.deployer.send_transaction(mint).await.expect("mint");
        let _b = bot.deployer.send_transaction(sell).await.expect("sell");
        bot.node.anvil_mine(Some(1), None).await.expect("mine");
        let n = bot.node.get_block_number().await.expect("n");
        assert!(run.wait_settled(n, Duration::from_secs(20)), "round {round}: outcome tracked");
    }
    let recs = records(&ledger, &bot.db());
    let reverted = recs
        .iter()
        .filter(
            |r| matches!(r, Record::Inclusion(i) if i.status == ledger::InclusionStatus::Reverted),
        )
        .count();
    assert_eq!(reverted, 3, "three reverts: {recs:#?}");
    assert!(
        cantilever::engine::wait_until(Duration::from_secs(5), || run
            .stats
            .halted
            .load(Ordering::Relaxed)),
        "halted"
    );
    assert!(bot.cfg.engine.halt_file.exists(), "the halt is persisted");
    let sent = run.stats.submitted.load(Ordering::Relaxed);
    super::peg::send_trade(&bot, pool, true, e6(100_000), cusdt, usdt).await;
    bot.node.anvil_mine(Some(1), None).await.expect("mine");
    let n = bot.node.get_block_number().await.expect("n");
    assert!(run.wait_handed(n, Duration::from_secs(20)));
    assert_eq!(run.stats.submitted.load(Ordering::Relaxed), sent, "nothing sent once halted");
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

/// Desk limits reloaded at runtime: an opportunity refused under a $5 minimum profit is taken
/// once the minimum is lowered, without a restart; the book (halt, ramps) is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_limits_reload_at_runtime() {
    let bot = devnet_bot("0.05").await;
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    let dumped = bot.dump(bot.pool("cUSDT/USDT"), true, e6(30_000)).await;
    assert!(run.wait_settled(dumped, Duration::from_secs(20)));
    assert_eq!(run.stats.submitted.load(Ordering::Relaxed), 0, "below the $5 minimum: refused");
    let mut risk = bot.cfg.risk.clone();
    risk.min_profit_usd = 0.5;
    run.control(Control::Reconfigure(Box::new((risk, bot.cfg.strategies.stabilizer.clone()))));
    // The standing opportunity is screened again at the next head.
    use alloy::providers::ext::AnvilApi;
    bot.node.evm_mine(None).await.expect("mine");
    assert!(
        cantilever::engine::wait_until(Duration::from_secs(20), || run
            .stats
            .submitted
            .load(Ordering::Relaxed)
            > 0),
        "taken under the new limit"
    );
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

/// Depeg with redemption closed: the vault is paused when cUSDT is dumped, so no atomic route
/// exists; the bot buys cUSDT below peg from its USDT inventory and holds it (a position with its
/// exit plan in the ledger); when the vault reopens it redeems 1:1 and closes the position with a
/// profit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_depeg_with_redemption_closed_is_held_and_exited_at_the_vault() {
    use alloy::providers::ext::AnvilApi;
    let bot = devnet_bot("0.05").await;
    let vault = bot.chain.vaults.iter().find(|v| v.official == "USDT").expect("vault").address;
    let rv = cantilever::contracts::ReserveVault::new(vault, &bot.deployer);
    let pending = rv.pause().send().await.expect("pause");
    confirm(&bot.deployer, pending, "pause").await.expect("paused");
    let (usdt, cusdt, exec) =
        (bot.chain.tokens["USDT"].address, bot.chain.tokens["cUSDT"].address, bot.chain.executor);
    let bal = |t: Address| {
        let p = bot.node.clone();
        async move { TestToken::new(t, &p).balanceOf(exec).call().await.expect("balance") }
    };
    let usdt_before = bal(usdt).await;
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    bot.dump(bot.pool("cUSDT/USDT"), true, e6(200_000)).await;
    let opened = cantilever::engine::wait_until(Duration::from_secs(30), || {
        records(&ledger, &bot.db())
            .iter()
            .any(|r| matches!(r, Record::Position(p) if p.state == ledger::PositionState::Open))
    });
    let recs = records(&ledger, &bot.db());
    assert!(opened, "a position was opened: {recs:#?}");
    assert!(bal(cusdt).await > e6(50_000), "holding more cUSDT than the inventory");
    assert!(bal(usdt).await < usdt_before, "paid in USDT");

    let pending = rv.unpause().send().await.expect("unpause");
    confirm(&bot.deployer, pending, "unpause").await.expect("unpaused");
    bot.node.evm_mine(None).await.expect("mine");
    let closed = cantilever::engine::wait_until(Duration::from_secs(30), || {
        records(&ledger, &bot.db())
            .iter()
            .any(|r| matches!(r, Record::Position(p) if p.state == ledger::PositionState::Closed))
    });
    let recs = records(&ledger, &bot.db());
    assert!(closed, "the position was closed at the vault: {recs:#?}");
    let pos = first(&recs, |r| match r {
        Record::Position(p) if p.state == ledger::PositionState::Closed => Some(p.clone()),
        _ => None,
    });
    eprintln!("held position: {pos:?}");
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}
