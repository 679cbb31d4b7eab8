//! Standing one chain's engine up live: state warm-up, then the ingest feed, the feeder, the
//! engine thread and the exec task.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use crossbeam_channel::Sender;
use revm::primitives::hardfork::SpecId;
use tracing::info;

use super::{
    Control, Engine, EngineParams, EngineStats, FeederCmd, Input, Market, exec_task, feeder,
};
use crate::{
    config::{ChainConfig, EngineConfig, RiskConfig, StrategiesConfig},
    exec::{InclusionTracker, Submitter, TxSigner},
    ingest::{self, BlockRef as IngestBlockRef, EventReceiver, IngestHandle, live::LiveConfig},
    ledger::LedgerHandle,
    risk::{Halt, Mode},
    sim::{self, NextBlock, RouteParams, Simulator, build_route},
    state::{
        BlockRef, CacheLimits, ForkCache, Refresher, RefresherConfig, RetryPolicy, RpcSource,
        StateKey, StateSource,
    },
    telemetry::SharedHistograms,
};

/// What a live run of one chain needs.
#[derive(Debug)]
pub struct RunOptions {
    /// The chain (tokens, venues, lenders, executor, endpoints, submission, fees).
    pub chain: ChainConfig,
    /// Strategies.
    pub strategies: StrategiesConfig,
    /// Desk limits.
    pub risk: RiskConfig,
    /// Ledger path, halt file, modes.
    pub engine: EngineConfig,
    /// The executor operator key (overrides `chain.signer`, for tests and tools).
    pub signer: Option<PrivateKeySigner>,
    /// The relay identity key (overrides `submission.identity`).
    pub identity: Option<PrivateKeySigner>,
    /// The ledger.
    pub ledger: Option<LedgerHandle>,
    /// Where to publish stage histograms.
    pub histograms: Option<SharedHistograms>,
    /// revm spec of the chain.
    pub spec: SpecId,
    /// Candidates proven per event.
    pub prove_top: usize,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Configuration is incomplete for a live run.
    #[error("chain `{chain}`: {what}")]
    Config {
        /// Chain.
        chain: String,
        /// What is missing.
        what: String,
    },
    /// A key could not be loaded.
    #[error(transparent)]
    Signer(#[from] crate::exec::SignerError),
    /// The submitter could not be built.
    #[error(transparent)]
    Submit(#[from] crate::exec::SubmitSetupError),
    /// The initial state could not be read.
    #[error("initial state: {0}")]
    State(String),
    /// The event feed could not start.
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    /// A thread could not be spawned.
    #[error("thread: {0}")]
    Thread(#[from] std::io::Error),
    /// Telemetry could not be built.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}

/// A running chain engine.
#[derive(Debug)]
pub struct RunHandle {
    /// Engine counters.
    pub stats: Arc<EngineStats>,
    /// Submissions not yet decided.
    pub inflight: Arc<AtomicU64>,
    /// Submissions handed to an endpoint (answered or failed).
    pub sent: Arc<AtomicU64>,
    /// The exec task's outcome counters (per relay, orphaned, cancelled).
    pub exec_counters: Arc<super::ExecCounters>,
    /// Number of candidate routes.
    pub routes: usize,
    control: Sender<Input>,
    engine: Option<JoinHandle<()>>,
    feeder: Option<JoinHandle<()>>,
    ingest: Option<IngestHandle>,
    exec: Option<super::ExecHandle>,
}

impl RunHandle {
    /// Inputs queued for the engine thread (state updates, control, outcomes; not pending
    /// transactions, which wait on their own channel).
    pub fn queued(&self) -> usize {
        self.control.len()
    }

    /// A probe of [`RunHandle::queued`] that outlives the handle (for a driver on another
    /// thread).
    pub fn queue_probe(&self) -> impl Fn() -> usize + Send + 'static {
        let control = self.control.clone();
        move || control.len()
    }

    /// A clonable sender of operator commands to this engine.
    pub fn controller(&self) -> super::ControlSender {
        super::ControlSender(self.control.clone())
    }

    /// Sends an operator command.
    pub fn control(&self, c: Control) {
        let _ = self.control.send(Input::Control(c));
    }

    /// Waits (blocking) until the engine has fully processed block `number` and no submission is
    /// in flight; false on timeout.
    pub fn wait_settled(&self, number: u64, timeout: Duration) -> bool {
        super::wait_until(timeout, || {
            self.stats.last_head.load(Ordering::Acquire) >= number
                && self.inflight.load(Ordering::Acquire) == 0
        })
    }

    /// Waits (blocking) until the engine has processed block `number` and every submission it
    /// decided on has reached its endpoint (not necessarily been mined); false on timeout.
    pub fn wait_handed(&self, number: u64, timeout: Duration) -> bool {
        super::wait_until(timeout, || {
            self.stats.last_head.load(Ordering::Acquire) >= number
                && self.sent.load(Ordering::Acquire) >= self.stats.submitted.load(Ordering::Acquire)
        })
    }

    /// Stops everything within `deadline`: no new decisions and nothing queued is sent any
    /// more, bundles waiting for their block are cancelled on the relays (by replacement uuid),
    /// the feed and the engine end, raw transactions in flight are tracked to their outcome until
    /// the deadline. The ledger is flushed by the caller.
    pub async fn stop(mut self, deadline: Duration) {
        let t0 = std::time::Instant::now();
        if let Some(x) = &self.exec {
            x.begin_shutdown();
        }
        let _ = self.control.send(Input::Control(Control::Stop));
        if let Some(i) = self.ingest.take() {
            i.stop().await;
        }
        let engine = self.engine.take();
        let feeder = self.feeder.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(e) = engine {
                let _ = e.join();
            }
            if let Some(f) = feeder {
                let _ = f.join();
            }
        })
        .await;
        if let Some(x) = self.exec.take() {
            let _ = x.shutdown(deadline.saturating_sub(t0.elapsed())).await;
        }
    }
}

/// Starts one chain's engine live: warms the cache for every venue, token and route over RPC
/// ([`warm_up`]), then runs ingest → feeder → engine → exec ([`start`] fed by the live feed).
/// Call inside a multi-thread tokio runtime.
///
/// # Errors
/// [`RunError`] naming what could not start.
pub async fn run_chain(o: RunOptions) -> Result<RunHandle, RunError> {
    let chain = o.chain.clone();
    let cfg_err =
        |what: &str| RunError::Config { chain: chain.name.clone(), what: what.to_owned() };
    let mode = Mode::from_engine(&o.engine);
    let key = match (o.signer, &chain.signer) {
        (Some(k), _) => Some(k),
        (None, Some(r)) => Some(crate::exec::load_signer(r, crate::exec::KeyRole::Executor)?),
        (None, None) => None,
    };
    if mode.signs() && key.is_none() {
        return Err(cfg_err("live and shadow modes need a signer"));
    }
    let operator = key.as_ref().map_or(Address::ZERO, PrivateKeySigner::address);
    let url =
        chain.http_url.expose_secret().parse().map_err(|_| cfg_err("http_url is not a URL"))?;
    let provider = ProviderBuilder::new().connect_http(url).erased();
    let start_nonce = provider
        .get_transaction_count(operator)
        .await
        .map_err(|e| RunError::State(e.to_string()))?;
    let warmed = warm_up(rpc_source(provider), &chain, &o.strategies, o.spec, operator).await?;
    let head = warmed.head()?;
    let (ev_tx, ev_rx) = ingest::channels(1_024, 8_192);
    let ingest = ingest::live::spawn(
        LiveConfig::from_chain(&chain),
        ev_tx,
        Some(IngestBlockRef { number: head.number, hash: head.hash }),
    )?;
    let counters = ingest.counters().clone();
    let opts = StartOptions {
        chain,
        strategies: o.strategies,
        risk: o.risk,
        engine: o.engine,
        operator,
        signer: key,
        identity: o.identity,
        start_nonce,
        ledger: o.ledger,
        histograms: o.histograms,
        spec: o.spec,
        prove_top: o.prove_top,
    };
    let mut handle = start(warmed, ev_rx, opts)?;
    let _ = handle.stats.ingest.set(counters);
    handle.ingest = Some(ingest);
    Ok(handle)
}

/// The state source a live engine reads through: `provider` with 500-key batches and a short
/// retry budget (per-head reads must settle within a block or two).
pub fn rpc_source(provider: DynProvider) -> RpcSource {
    let policy = RetryPolicy {
        call_timeout: Duration::from_secs(1),
        deadline: Duration::from_secs(2),
        ..RetryPolicy::default()
    };
    RpcSource::new(provider, 500).with_policy(policy)
}

/// A warmed engine state: the cache holding every venue, token and route's state at the head it
/// was read at, the simulator with the tokens' balance layouts, the market with its routes, and
/// the refresher (over the source it was warmed from) that keeps the cache current.
#[derive(Debug)]
pub struct Warmed<S> {
    /// The refresher that read the state, watching every key the warm-up read.
    pub refresher: Refresher<S>,
    /// The cache.
    pub cache: ForkCache,
    /// The simulator.
    pub sim: Simulator,
    /// The market (venues decoded, routes enumerated).
    pub market: Market,
}

impl<S> Warmed<S> {
    /// The block the state was read at.
    ///
    /// # Errors
    /// [`RunError::State`] if the cache has no head (it always has one after [`warm_up`]).
    pub fn head(&self) -> Result<BlockRef, RunError> {
        self.cache.head().copied().ok_or_else(|| RunError::State("no head".into()))
    }
}

/// Warms an engine's state for `chain` over any state source (RPC live, a recording source, a
/// cassette in a replay): reads the latest block, then every venue, token, lender and route's
/// state as [`warm_market`] does, simulating as `operator`. Off the hot path, before anything
/// trades.
///
/// # Errors
/// [`RunError::Config`] without an executor, [`RunError::State`] when a read fails.
pub async fn warm_up<S: StateSource>(
    source: S,
    chain: &ChainConfig,
    strategies: &StrategiesConfig,
    spec: SpecId,
    operator: Address,
) -> Result<Warmed<S>, RunError> {
    let executor = chain.executor.ok_or_else(|| RunError::Config {
        chain: chain.name.clone(),
        what: "no executor address".to_owned(),
    })?;
    let cfg = RefresherConfig { always: vec![executor, operator], ..RefresherConfig::default() };
    let mut refresher = Refresher::new(source, cfg);
    let mut cache = ForkCache::new(CacheLimits::default());
    let base = refresher.start().await.map_err(|e| RunError::State(e.to_string()))?;
    cache.apply(&base).map_err(|e| RunError::State(e.to_string()))?;
    let mut sim = Simulator::new(chain.chain_id, spec).with_nonce_check(false);
    let mut market = Market::from_config(chain);
    warm_market(
        &mut refresher,
        &mut cache,
        &mut sim,
        &mut market,
        operator,
        executor,
        strategies,
        chain,
    )
    .await?;
    let head = *cache.head().ok_or_else(|| RunError::State("no head".into()))?;
    info!(chain = %chain.name, block = head.number, venues = market.venues.len(), routes = market.routes.len(), slots = cache.stats().slots, "state warmed");
    Ok(Warmed { refresher, cache, sim, market })
}

/// What [`start`] needs besides the warmed state and the events.
#[derive(Debug)]
pub struct StartOptions {
    /// The chain.
    pub chain: ChainConfig,
    /// Strategies.
    pub strategies: StrategiesConfig,
    /// Desk limits.
    pub risk: RiskConfig,
    /// Modes and halt file (the ledger path is not read: see `ledger`).
    pub engine: EngineConfig,
    /// The address transactions are simulated from (the executor's operator).
    pub operator: Address,
    /// The signing key (needed in live and shadow modes; its address need not be `operator`
    /// in shadow mode, where nothing is sent).
    pub signer: Option<PrivateKeySigner>,
    /// The relay identity key (live mode).
    pub identity: Option<PrivateKeySigner>,
    /// The operator's next nonce.
    pub start_nonce: u64,
    /// The ledger.
    pub ledger: Option<LedgerHandle>,
    /// Where to publish stage histograms.
    pub histograms: Option<SharedHistograms>,
    /// revm spec of the chain.
    pub spec: SpecId,
    /// Candidates proven per event.
    pub prove_top: usize,
}

/// Starts the feeder (over the warmed refresher's source), the engine thread and, in live mode,
/// the exec task, fed by `events` (from [`ingest::channels`]: the live feed, a replay, a test).
/// The feeder and the engine end when the heads channel closes or on [`RunHandle::stop`]. Call
/// inside a multi-thread tokio runtime.
///
/// # Errors
/// [`RunError`] naming what could not start.
pub fn start<S: StateSource + 'static>(
    warmed: Warmed<S>,
    events: EventReceiver,
    o: StartOptions,
) -> Result<RunHandle, RunError> {
    let chain = o.chain;
    let executor = chain.executor.ok_or_else(|| RunError::Config {
        chain: chain.name.clone(),
        what: "no executor address".to_owned(),
    })?;
    let mode = Mode::from_engine(&o.engine);
    if mode.signs() && o.signer.is_none() {
        return Err(RunError::Config {
            chain: chain.name.clone(),
            what: "live and shadow modes need a signer".to_owned(),
        });
    }
    let Warmed { refresher, cache, sim, market } = warmed;
    no_huge_pages();
    let routes = market.routes.len();
    let (in_tx, in_rx) = crossbeam_channel::bounded::<Input>(4_096);
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded::<FeederCmd>();
    let stats = Arc::new(EngineStats::default());
    let feeder = feeder::spawn(
        refresher,
        tokio::runtime::Handle::current(),
        events.heads,
        cmd_rx,
        in_tx.clone(),
        chain.name.clone(),
        stats.clone(),
    )?;
    let (exec_tx, exec) = if mode.sends() {
        let submitter =
            Submitter::from_config_with_identity(&chain, o.identity, Duration::from_secs(2))?;
        let tracker = InclusionTracker::new(&chain.name, &chain.http_url, Duration::from_secs(2))?;
        let (jobs, handle) = exec_task::spawn_exec(
            submitter,
            tracker,
            o.ledger.clone(),
            in_tx.clone(),
            exec_task::ExecSettings::default(),
        );
        (Some(jobs), Some(handle))
    } else {
        (None, None)
    };
    let inflight =
        exec.as_ref().map_or_else(|| Arc::new(AtomicU64::new(0)), |e| e.inflight.clone());
    let sent = exec.as_ref().map_or_else(|| Arc::new(AtomicU64::new(0)), |e| e.sent.clone());
    let exec_counters = exec
        .as_ref()
        .map_or_else(|| Arc::new(exec_task::ExecCounters::default()), |e| e.counters.clone());
    let params = EngineParams {
        chain: chain.clone(),
        strategies: o.strategies,
        risk: o.risk,
        mode,
        halt: Halt::load(&o.engine.halt_file),
        executor,
        operator: o.operator,
        signer: o.signer.map(TxSigner::new),
        start_nonce: o.start_nonce,
        spec: o.spec,
        prove_top: o.prove_top,
        ledger: o.ledger,
        histograms: o.histograms,
        busy_poll: o.engine.busy_poll,
    };
    let engine = Engine::new(params, cache, sim, market, cmd_tx, exec_tx, stats.clone())?;
    let pending_rx = events.pending;
    let engine = std::thread::Builder::new()
        .name(format!("engine-{}", chain.name))
        .spawn(move || engine.run(&in_rx, &pending_rx))?;
    Ok(RunHandle {
        stats,
        inflight,
        sent,
        exec_counters,
        routes,
        control: in_tx,
        engine: Some(engine),
        feeder: Some(feeder),
        ingest: None,
        exec,
    })
}

/// Reads everything the market needs into the cache: the venues' views (discovered by running
/// them), the tokens' balance layouts, and every route's executor call at a nominal size.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn warm_market<S: StateSource>(
    refresher: &mut Refresher<S>,
    cache: &mut ForkCache,
    sim: &mut Simulator,
    market: &mut Market,
    operator: Address,
    executor: Address,
    strategies: &StrategiesConfig,
    chain: &ChainConfig,
) -> Result<(), RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::State(e.to_string());
    for v in &market.venues {
        cache.pin(v.address);
    }
    for t in &market.tokens {
        cache.pin(t.address);
    }
    for l in &market.lenders {
        cache.pin(l.address);
    }
    cache.pin(executor);
    refresher.watch(
        market
            .venues
            .iter()
            .map(|v| v.address)
            .chain(market.tokens.iter().map(|t| t.address))
            .chain(market.lenders.iter().map(|l| l.address))
            .map(StateKey::Account),
    );
    if let Some(u) = refresher.prefetch().await.map_err(|e| err(&e))? {
        cache.apply(&u).map_err(|e| err(&e))?;
    }
    // Venue views, discovered in rounds.
    for _ in 0..16 {
        let next = next_of(cache, chain)?;
        let missing = {
            let mut bs = sim.block_unchecked(cache, &next);
            bs.view().set_discovery(true);
            for i in 0..market.venues.len() {
                let _ = market.decode(&mut bs, i, operator);
                bs.clear_pending();
            }
            bs.view().take_misses()
        };
        if missing.is_empty() {
            break;
        }
        refresher.watch(missing);
        if let Some(u) = refresher.prefetch().await.map_err(|e| err(&e))? {
            cache.apply(&u).map_err(|e| err(&e))?;
        }
    }
    let next = next_of(cache, chain)?;
    for _ in 0..8 {
        let mut bs = sim.block_unchecked(cache, &next);
        match market.read_lender_fees(&mut bs) {
            Err(crate::sim::SimError::Cold(keys)) => {
                drop(bs);
                refresher.watch(keys);
                if let Some(u) = refresher.prefetch().await.map_err(|e| err(&e))? {
                    cache.apply(&u).map_err(|e| err(&e))?;
                }
            }
            _ => break,
        }
    }
    {
        let mut bs = sim.block_unchecked(cache, &next);
        for i in 0..market.venues.len() {
            match market.decode(&mut bs, i, operator) {
                Ok(p) => {
                    market.pools[i] = p;
                    market.decoded[i] = true;
                }
                Err(e) => {
                    tracing::warn!(venue = %market.venues[i].name, error = %e, "venue not decodable; not traded")
                }
            }
        }
    }
    for t in market.tokens.clone() {
        let ok = sim::register_token(refresher, cache, sim, &next, t.address)
            .await
            .map_err(|e| err(&e))?;
        if !ok {
            tracing::warn!(token = %t.symbol, "balance layout not located: routes through it are refused");
        }
    }
    // The executor's balance of every token (its inventory, read natively when sizing).
    let inventory: Vec<StateKey> = market
        .tokens
        .iter()
        .filter_map(|t| {
            sim.layouts()
                .get(&t.address)
                .map(|l| StateKey::Slot(t.address, l.balance_slot(executor)))
        })
        .collect();
    refresher.watch(inventory);
    if let Some(u) = refresher.prefetch().await.map_err(|e| err(&e))? {
        cache.apply(&u).map_err(|e| err(&e))?;
    }
    // Tokens that log every balance change: a head re-reads the balances of the venues that
    // trade them, the lenders, the executor and the operator only where its logs name them.
    for t in &chain.tokens {
        let (true, Some(layout)) = (t.balances_in_logs, sim.layouts().get(&t.address)) else {
            continue;
        };
        let holders = chain
            .venues
            .iter()
            .filter(|v| v.base == t.symbol || v.quote == t.symbol)
            .map(|v| v.address)
            .chain(market.lenders.iter().map(|l| l.address))
            .chain([executor, operator]);
        refresher.map_balances(t.address, holders, |h| layout.balance_slot(h));
    }
    let anchor = strategies
        .triangle
        .enabled
        .then(|| market.token_by_symbol(&strategies.triangle.anchor).map(|t| t.address))
        .flatten();
    market.enumerate_routes(anchor);
    // Every route's call at a nominal size, so the state it reads is cached. In chunks: the
    // calls of 160,000 routes held at once would double the process's peak memory.
    let ctx = crate::venues::QuoteCtx { timestamp: next.timestamp };
    let addresses: Vec<Address> = market.venues.iter().map(|v| v.address).collect();
    let mut envs = Vec::new();
    for (k, r) in market.routes.iter().enumerate() {
        if k > 0 && k % WARM_CHUNK == 0 {
            sim::warm(refresher, cache, sim, &next, &envs, 32).await.map_err(|e| err(&e))?;
            envs.clear();
        }
        let Some(t) = market.token(&r.route.token()) else { continue };
        let params = RouteParams {
            amount_in: t.raw_for_usd(1.0).max(U256::from(1)),
            flash: r.flash,
            min_profit: U256::ZERO,
            max_slippage_bps: 10_000,
            deadline_block: 0,
            coinbase_tip: U256::ZERO,
        };
        let Ok(route) = build_route(&market.pools, &addresses, &r.route, &params, &ctx) else {
            continue;
        };
        let tx = sim::route_tx(
            chain.chain_id,
            0,
            executor,
            route,
            3_000_000,
            u128::from(next.base_fee) * 2 + 1,
            1,
        );
        if let Ok(env) = sim::tx_env(&tx, operator) {
            envs.push(env);
        }
    }
    // With cross-chain trading configured, every PMM and V2 pool's one-way leg in both
    // directions, so the first leg the coordinator orders is not refused for cold state.
    if strategies.cross_chain.as_ref().is_some_and(|x| x.enabled) {
        for (i, pool) in market.pools.iter().enumerate() {
            if !market.decoded[i] {
                continue;
            }
            for side in [crate::venues::Side::SellBase, crate::venues::Side::SellQuote] {
                let (b, q) = crate::venues::Venue::tokens(pool);
                let token_in = if side == crate::venues::Side::SellBase { b } else { q };
                let Some(t) = market.token(&token_in) else { continue };
                let amount = t.raw_for_usd(1.0).max(U256::from(1));
                let venue = market.venues[i].address;
                let hop = match pool {
                    crate::venues::Pool::Pmm(p) => p.hop(venue, side, amount, U256::ZERO),
                    crate::venues::Pool::V2(p) => p.hop(venue, side, amount, U256::ZERO),
                    _ => continue,
                };
                let tx = sim::leg_tx(
                    chain.chain_id,
                    0,
                    executor,
                    vec![hop],
                    0,
                    1_500_000,
                    u128::from(next.base_fee) * 2 + 1,
                    1,
                );
                if let Ok(env) = sim::tx_env(&tx, operator) {
                    envs.push(env);
                }
            }
        }
    }
    sim::warm(refresher, cache, sim, &next, &envs, 32).await.map_err(|e| err(&e))?;
    Ok(())
}

/// Opts the process out of transparent huge pages: the first touch of a huge page zeroes 2 MB
/// at once, which stalled the engine thread for 5–7 ms per fault on a VM whose memory the host
/// backs lazily (the bench's multi-millisecond state-apply outliers); with 4 KB pages the same
/// memory is faulted in small steps. Linux only; a failure is logged and ignored.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "transparent huge pages left on");
    }
}

/// Routes whose warm-up calls are built and run at a time.
const WARM_CHUNK: usize = 2_048;

fn next_of(cache: &ForkCache, chain: &ChainConfig) -> Result<NextBlock, RunError> {
    let head = cache.head().ok_or_else(|| RunError::State("no head".into()))?;
    Ok(NextBlock::after(head, (chain.block_time_ms / 1000).max(1)))
}
