//! The engine: one named OS thread that owns every piece of mutable trading state and decides.
//!
//! ```text
//!  feeder (state refresh per head) ──Block──▶ ┌──────────── engine thread ────────────┐
//!  ingest pending txs ─────────────Pending──▶ │ 1. apply the state update to the cache │
//!  exec task (submission outcomes) ──Exec───▶ │ 2. re-decode the venues it touched     │
//!                                             │ 3. screen + size the affected routes   │
//!                                             │ 4. prove the best few in revm          │──▶ exec task
//!                                             │ 5. containment + desk limits, sign     │    (tokio)
//!                                             └────────────────────────────────────────┘
//! ```
//!
//! The loop never awaits, never blocks on RPC and takes no lock: heads are drained before pending
//! transactions, state it lacks is asked of the feeder and the candidate is skipped. Every stage
//! is timed into per-stage histograms; every opportunity gets an id that tags its log lines and
//! its ledger rows.
//!
//! Strategies (DESIGN §4): every route is a cycle the executor runs atomically.
//! - **Depeg** routes go through the reserve vault (1:1 peg reference) or compare two venues of
//!   the same pair; the deviation's severity (minor / moderate / severe / extreme, seed 004) is
//!   logged and recorded. They trade at the optimal size as soon as they pay: atomic, so no
//!   waiting for a sustained deviation.
//! - **Triangle** routes pass the anchor token (XAU, seed 000).
//! - **Stabilizer** trades on configured pools only after the deviation has been sustained
//!   (time-weighted over N blocks, never a single-block spike), sized `k × deviation`, capped per
//!   block, at most once per MIN_BLOCKS, and only when the route pays.
//! - **Backrun**: a pending transaction to a tracked venue is simulated first; the routes it
//!   moved are sized on the state after it and proven on top of it; on relay chains the victim and
//!   the backrun go in one bundle.

mod control;
mod exec_task;
mod feeder;
pub mod market;
mod position;
mod run;
pub mod tap;
mod xleg;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::{
    consensus::Transaction as _,
    eips::Encodable2718,
    primitives::{Address, Bytes, I256, U256},
};
use crossbeam_channel::{Receiver, Sender};
use revm::primitives::hardfork::SpecId;
use smallvec::SmallVec;
use tracing::{debug, info, warn};

use crate::{
    config::{ChainConfig, RiskConfig, StrategiesConfig, SubmissionMode},
    exec::{FeeParams, GasMargin, NonceManager, SignedTx, TxParams, TxSigner},
    ingest::PendingTx,
    ledger::{self, LedgerHandle},
    risk::{
        BookState, Bucket, Candidate, ChainAddress, DeviationTracker, Halt, Mode, Refusal,
        RiskGate, StrategyKind,
    },
    routes::{SizingLimits, size},
    sim::{
        self, BlockSim, NextBlock, RouteParams, SimError, SimOutcome, SimTx, Simulator,
        build_route, check_containment, plan_of,
    },
    state::{BlockRef, ForkCache, StateKey, StateUpdate},
    telemetry::{EventKind, SharedHistograms, Stage, StageHistograms},
    venues::{Pool, QuoteCtx, Venue},
};

pub use control::ControlSender;
pub use exec_task::{
    ExecCounters, ExecHandle, ExecJob, ExecReport, ExecResult, ExecSettings, spawn_exec,
};
pub use feeder::FeederCmd;
pub use market::{Market, RouteEntry, TokenMeta};
pub use run::{
    RunError, RunHandle, RunOptions, StartOptions, Warmed, rpc_source, run_chain, start, warm_up,
};

/// A head with the state update that brings the cache to it (from the feeder).
#[derive(Debug)]
pub struct BlockMsg {
    /// The update (its `head` is the block).
    pub update: StateUpdate,
    /// When the head's notification arrived (end-to-end latency starts here).
    pub received_at: Instant,
    /// When the update was handed to the engine (the feeder's read ends here).
    pub sent_at: Instant,
    /// The update answers a [`FeederCmd::Watch`] (counted in [`EngineStats::watches`] until
    /// the engine has handled it).
    pub watch: bool,
}

impl BlockMsg {
    /// An update handed over now, for a head whose notification arrived at `received_at`.
    pub fn new(update: StateUpdate, received_at: Instant) -> Self {
        Self { update, received_at, sent_at: Instant::now(), watch: false }
    }

    /// The same update, marked as the answer to a [`FeederCmd::Watch`].
    #[must_use]
    pub const fn answering_watch(mut self) -> Self {
        self.watch = true;
        self
    }
}

/// What the engine thread consumes.
#[derive(Debug)]
pub enum Input {
    /// A new head with its state, or a supplement at the current head.
    Block(Box<BlockMsg>),
    /// The feeder could not produce state for a head: the cache is stale until it can.
    Stale {
        /// Why.
        reason: String,
    },
    /// A pending transaction.
    Pending(Box<PendingTx>),
    /// A submission's outcome.
    Exec(ExecReport),
    /// Operator control.
    Control(Control),
}

/// Operator control of a running engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Engage the persistent halt with this reason.
    Halt(String),
    /// Re-arm after a halt.
    Rearm,
    /// New desk limits and stabilizer settings (validated by the caller); the book is kept.
    Reconfigure(Box<(RiskConfig, crate::config::StabilizerConfig)>),
    /// Stop the loop (graceful shutdown).
    Stop,
    /// A cross-chain coordinator's command.
    Xchain(crate::xchain::XControl),
}

/// Counters the engine publishes (atomics, read by tests, health and metrics).
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Heads processed (the last block number fully processed is `last_head`).
    pub heads: AtomicU64,
    /// The number of the last head fully processed (all submissions handed over).
    pub last_head: AtomicU64,
    /// Pending transactions examined.
    pub pending: AtomicU64,
    /// Candidates screened profitable natively.
    pub candidates: AtomicU64,
    /// Candidates proven in revm.
    pub simulated: AtomicU64,
    /// Candidates refused (containment, risk, fees).
    pub refused: AtomicU64,
    /// Candidates approved.
    pub approved: AtomicU64,
    /// Submissions handed to the exec task.
    pub submitted: AtomicU64,
    /// Candidates skipped for cold state.
    pub cold_skips: AtomicU64,
    /// Stabilizer trades approved.
    pub stabilizer_trades: AtomicU64,
    /// Whether the cache is fresh at the last head.
    pub fresh: AtomicBool,
    /// Whether the engine is halted.
    pub halted: AtomicBool,
    /// Realised PnL after gas of every decided submission, micro-USD.
    pub realised_pnl_micro_usd: std::sync::atomic::AtomicI64,
    /// Refusals by kind (cumulative), for per-reason metrics.
    pub refusals_by_kind: dashmap::DashMap<String, u64>,
    /// The chain feed's counters (connected, reconnects, gaps backfilled), once it runs.
    pub ingest: std::sync::OnceLock<Arc<crate::ingest::IngestCounters>>,
    /// Inputs the loop has finished handling (every kind; a replay paces itself on it).
    pub handled: AtomicU64,
    /// [`FeederCmd::Watch`] commands sent whose answer the engine has not handled yet (the
    /// feeder's read, its update in the queue, the engine's handling of it). A replay waits for
    /// zero so a cold-skipped transaction is retried before the next event, as it is live when
    /// the node answers in time.
    pub watches: AtomicU64,
    /// Full state re-reads applied (divergence, refused update, deep reorg).
    pub full_reads: AtomicU64,
    /// Set once the engine thread has primed its hot path and takes events.
    pub ready: AtomicBool,
    /// Where every proven candidate is copied when set (the bench's eth_call baseline).
    pub tap: std::sync::OnceLock<Sender<tap::ProvedCandidate>>,
    /// Where every event's screened routes are copied when set (the bench's per-route
    /// baseline: what a typical bot evaluates by `eth_call`).
    pub screen_tap: std::sync::OnceLock<Sender<tap::ScreenedEvent>>,
}

/// Everything the engine needs for one chain.
#[derive(Debug)]
pub struct EngineParams {
    /// The chain.
    pub chain: ChainConfig,
    /// Strategies.
    pub strategies: StrategiesConfig,
    /// Desk limits.
    pub risk: RiskConfig,
    /// Run mode.
    pub mode: Mode,
    /// The persistent halt.
    pub halt: Halt,
    /// The executor contract.
    pub executor: Address,
    /// The EOA that calls the executor (its nonce and gas).
    pub operator: Address,
    /// The signer of `operator` (required to sign: live and shadow modes).
    pub signer: Option<TxSigner>,
    /// The operator's nonce at start.
    pub start_nonce: u64,
    /// revm spec matching the chain.
    pub spec: SpecId,
    /// Candidates proven per event (the best by native profit).
    pub prove_top: usize,
    /// Ledger, when recording.
    pub ledger: Option<LedgerHandle>,
    /// Where stage histograms are published for the metrics server.
    pub histograms: Option<SharedHistograms>,
    /// Poll the inputs between events instead of parking the thread
    /// ([`EngineConfig::busy_poll`](crate::config::EngineConfig::busy_poll)).
    pub busy_poll: bool,
}

/// The engine's state. Built on its thread by [`run_chain`] (or directly by tests and benches)
/// and driven by [`Engine::handle`].
pub struct Engine {
    p: EngineParams,
    cache: ForkCache,
    sim: Simulator,
    market: Market,
    gate: RiskGate,
    deviation: DeviationTracker,
    nonce: NonceManager,
    fees: FeeParams,
    margin: GasMargin,
    hist: StageHistograms,
    last_publish: Instant,
    feeder: Sender<FeederCmd>,
    exec: Option<tokio::sync::mpsc::UnboundedSender<ExecJob>>,
    stats: Arc<EngineStats>,
    next_id: u64,
    stabilizer_pools: Vec<usize>,
    anchor: Option<Address>,
    halted_logged: bool,
    /// Pending transactions seen since the last head (a victim's earlier transactions, e.g. the
    /// transfer before a DODO `sellBase`, must run before it).
    pending_seen: Vec<(alloy::rpc::types::Transaction, Bytes)>,
    /// Pending transactions waiting for state the cache lacked (retried when it arrives).
    deferred: Vec<(Box<PendingTx>, u8)>,
    /// Submissions handed to the exec task whose outcome has not come back.
    outstanding: usize,
    /// Set while sizing for a backrun (every route the victim moved is eligible).
    backrun_context: bool,
    /// Routes profitable at the last head, screened again at the next one.
    standing: Vec<usize>,
    /// Depeg positions held while redemption is closed.
    positions: Vec<position::HeldPosition>,
    /// Cross-chain legs and the coordinator link.
    x: xleg::XState,
    /// The routes sized for the current event, while the screen tap is set.
    screened: ScreenBuf,
    /// Transactions signed for the current event and the time spent signing them, ns.
    event_sign: (u32, u64),
    /// Workers that size the routes of a large event in parallel (`None` on one core).
    sizer: Option<rayon::ThreadPool>,
}

/// A route sized for an event (for the screen tap): route, amount, funding, profitable, and
/// where its evaluated inputs lie in [`ScreenBuf::amounts`].
type Screened = (usize, U256, sim::FlashPlan, bool, std::ops::Range<usize>);

/// The routes sized for an event and every input their sizing evaluated (one buffer for the
/// event, reused: tapping allocates nothing per route).
#[derive(Debug, Default)]
struct ScreenBuf {
    routes: Vec<Screened>,
    amounts: Vec<U256>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("chain", &self.p.chain.name).finish_non_exhaustive()
    }
}

/// One candidate on its way through the pipeline.
#[derive(Clone, Debug)]
struct Pick {
    route: usize,
    amount_in: U256,
    native_profit: U256,
    strategy: StrategyKind,
    /// The funding chosen: the executor's inventory when it holds enough (no flash fee), else
    /// the route's flash source.
    flash: sim::FlashPlan,
}

fn now_ms() -> u64 {
    ledger::now_unix_ms()
}

impl Engine {
    /// An engine over a cache already holding the market's state (see [`run_chain`] for the
    /// warm-up), whose feeder listens on `feeder` and whose submissions go to `exec`.
    ///
    /// # Errors
    /// When the stage histograms cannot be built.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: EngineParams,
        cache: ForkCache,
        sim: Simulator,
        market: Market,
        feeder: Sender<FeederCmd>,
        exec: Option<tokio::sync::mpsc::UnboundedSender<ExecJob>>,
        stats: Arc<EngineStats>,
    ) -> Result<Self, crate::telemetry::TelemetryError> {
        let gate = RiskGate::new(
            &p.risk,
            &p.strategies.stabilizer,
            std::slice::from_ref(&p.chain),
            p.halt.clone(),
        );
        let deviation = DeviationTracker::from_config(&p.risk);
        let nonce = NonceManager::new(p.chain.chain_id, p.operator, p.start_nonce);
        let fees = FeeParams::from_policy(&p.chain.fees);
        let stabilizer_pools = if p.strategies.stabilizer.enabled {
            market
                .venues
                .iter()
                .enumerate()
                .filter(|(_, v)| {
                    v.kind.is_dodo()
                        && (p.strategies.stabilizer.pools.is_empty()
                            || p.strategies
                                .stabilizer
                                .pools
                                .iter()
                                .any(|r| r.chain == p.chain.name && r.venue == v.name))
                })
                .map(|(i, _)| i)
                .collect()
        } else {
            Vec::new()
        };
        let anchor = p
            .strategies
            .triangle
            .enabled
            .then(|| market.token_by_symbol(&p.strategies.triangle.anchor).map(|t| t.address))
            .flatten();
        stats.halted.store(gate.is_halted(), Ordering::Relaxed);
        if let Some(h) = cache.head() {
            stats.last_head.store(h.number, Ordering::Release);
            stats.fresh.store(cache.is_fresh(), Ordering::Relaxed);
        }
        Ok(Self {
            cache,
            sim,
            market,
            gate,
            deviation,
            nonce,
            fees,
            margin: GasMargin::default(),
            hist: StageHistograms::new()?,
            last_publish: Instant::now(),
            feeder,
            exec,
            stats,
            // Opportunity ids are unique across the chains sharing a ledger.
            next_id: p.chain.chain_id.saturating_mul(1_000_000_000).min(1 << 62) + 1,
            stabilizer_pools,
            anchor,
            halted_logged: false,
            pending_seen: Vec::new(),
            deferred: Vec::new(),
            outstanding: 0,
            backrun_context: false,
            standing: Vec::new(),
            positions: Vec::new(),
            x: xleg::XState::default(),
            screened: ScreenBuf::default(),
            event_sign: (0, 0),
            sizer: sizing_pool(&p.chain.name),
            p,
        })
    }

    /// The cache.
    pub const fn cache(&self) -> &ForkCache {
        &self.cache
    }

    /// The market.
    pub const fn market(&self) -> &Market {
        &self.market
    }

    /// The stage histograms recorded since the last publish (all of them when the engine does
    /// not publish).
    pub const fn histograms(&self) -> &StageHistograms {
        &self.hist
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// Runs the loop on the current thread until [`Control::Stop`] or every input closes. Heads
    /// and control are drained before pending transactions.
    pub fn run(mut self, blocks: &Receiver<Input>, pending: &Receiver<crate::ingest::Event>) {
        let primed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.prime()));
        if primed.is_err() {
            warn!(chain = %self.p.chain.name, "engine: priming the hot path panicked; skipped");
        }
        self.stats.ready.store(true, Ordering::Release);
        let mut pending_open = true;
        let mut idle_since = Instant::now();
        loop {
            let input = match blocks.try_recv() {
                Ok(i) => i,
                Err(crossbeam_channel::TryRecvError::Disconnected) if self.p.busy_poll => break,
                Err(_) if self.p.busy_poll => {
                    // Heads first, then pending transactions; between them the core stays on.
                    if pending_open {
                        match pending.try_recv() {
                            Ok(crate::ingest::Event::Pending(p)) => Input::Pending(p),
                            Ok(_) => continue,
                            Err(crossbeam_channel::TryRecvError::Empty) => {
                                self.spin(&mut idle_since);
                                continue;
                            }
                            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                                pending_open = false;
                                continue;
                            }
                        }
                    } else {
                        self.spin(&mut idle_since);
                        continue;
                    }
                }
                Err(_) if pending_open => crossbeam_channel::select_biased! {
                    recv(blocks) -> m => match m { Ok(i) => i, Err(_) => break },
                    recv(pending) -> m => match m {
                        Ok(crate::ingest::Event::Pending(p)) => Input::Pending(p),
                        Ok(_) => continue,
                        Err(_) => { pending_open = false; continue }
                    },
                    default(Duration::from_millis(200)) => { self.tick(); continue }
                },
                Err(_) => crossbeam_channel::select_biased! {
                    recv(blocks) -> m => match m { Ok(i) => i, Err(_) => break },
                    default(Duration::from_millis(200)) => { self.tick(); continue }
                },
            };
            if matches!(input, Input::Control(Control::Stop)) {
                info!(chain = %self.p.chain.name, "engine stopping");
                break;
            }
            let caught =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(input)));
            if caught.is_err() {
                // A bug in one event's evaluation must not take the process down mid-run.
                warn!(chain = %self.p.chain.name, "engine: an event's evaluation panicked; skipped");
            }
            self.stats.handled.fetch_add(1, Ordering::Release);
        }
        self.hist_publish(true);
        if let Some(l) = &self.p.ledger {
            let _ = l.flush();
        }
    }

    fn tick(&mut self) {
        self.hist_publish(false);
    }

    /// Asks the feeder to read `keys` at the current head and watch them from then on.
    fn watch(&self, keys: Vec<StateKey>) {
        self.stats.watches.fetch_add(1, Ordering::AcqRel);
        if self.feeder.send(FeederCmd::Watch(keys)).is_err() {
            self.stats.watches.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// One idle turn of a busy-polling engine: a pause instruction, and the idle tick every
    /// 200 ms as the parked loop has it.
    fn spin(&mut self, idle_since: &mut Instant) {
        std::hint::spin_loop();
        if idle_since.elapsed() >= Duration::from_millis(200) {
            self.tick();
            *idle_since = Instant::now();
        }
    }

    /// Runs the hot path once on this thread before the first event, with no effect on the
    /// book: a few venues decoded, routes sized, candidates simulated and signed, all discarded.
    /// The first event then finds the code paths, this thread's allocator pages and the caches
    /// warm instead of paying for them (several milliseconds on a VM whose memory the host
    /// backs lazily). Bounded: [`PRIME_VENUES`] venues, [`PRIME_ROUTES`] routes, at most
    /// `prove_top` simulations.
    fn prime(&mut self) {
        let Some(next) = self.next_block() else { return };
        let fee = self.fees.quote_for_base_fee(u128::from(next.base_fee), None).ok();
        let candidates = self.stats.candidates.load(Ordering::Relaxed);
        let mut bs = self.sim.block_unchecked(&self.cache, &next);
        let venues = (0..self.market.venues.len()).filter(|i| self.market.decoded[*i]);
        for i in venues.take(PRIME_VENUES) {
            let _ = self.market.decode(&mut bs, i, self.p.operator);
        }
        let routes: Vec<usize> = (0..self.market.routes.len().min(PRIME_ROUTES)).collect();
        let picks =
            self.size_routes(&routes, &next, &self.market.pools, &self.cache, &self.sim, None);
        self.stats.candidates.store(candidates, Ordering::Relaxed);
        let Some(fee) = fee else { return };
        for pick in picks {
            let entry = &self.market.routes[pick.route];
            let Some(call) = self.route_call(entry, pick.amount_in, pick.flash, &next) else {
                continue;
            };
            let plan = plan_of(self.p.executor, &call);
            let Some((tx, sim_tx)) = self.probe(call, &plan, &fee) else { continue };
            if let Ok(outcome) = bs.simulate(&sim_tx) {
                let _ = check_containment(&plan, &outcome);
            }
            if let Some(signer) = &self.p.signer {
                // Signed, never sent (nor kept).
                let _ = signer.sign_eip1559(&TxParams {
                    chain_id: tx.chain_id,
                    nonce: tx.nonce,
                    to: self.p.executor,
                    input: tx.input.clone(),
                    gas_limit: tx.gas_limit,
                    max_fee_per_gas: tx.max_fee_per_gas,
                    max_priority_fee_per_gas: tx.max_priority_fee_per_gas,
                    value: U256::ZERO,
                });
            }
        }
    }

    fn hist_publish(&mut self, force: bool) {
        if force || self.last_publish.elapsed() > Duration::from_millis(250) {
            if let Some(h) = &self.p.histograms {
                h.publish(&mut self.hist, force);
            }
            self.last_publish = Instant::now();
        }
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input) {
        match input {
            Input::Block(b) => {
                let watch = b.watch;
                self.on_block(*b);
                if watch {
                    self.stats.watches.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Input::Stale { reason } => {
                warn!(chain = %self.p.chain.name, %reason, "state refresh failed: trading paused");
                self.stats.fresh.store(false, Ordering::Relaxed);
            }
            Input::Pending(p) => self.on_pending(&p),
            Input::Exec(r) => self.on_exec(r),
            Input::Control(Control::Halt(reason)) => {
                if let Err(e) = self.gate.halt(&reason, now_ms() / 1000) {
                    warn!(error = %e, "halt file could not be written; halted in memory");
                }
                self.record_halt(true, &reason);
            }
            Input::Control(Control::Rearm) => {
                if let Err(e) = self.gate.rearm() {
                    warn!(error = %e, "re-arm failed");
                } else {
                    self.record_halt(false, "re-armed by the operator");
                }
            }
            Input::Control(Control::Reconfigure(new)) => {
                let (risk, stabilizer) = *new;
                let change =
                    self.gate.reconfigure(&risk, &stabilizer, std::slice::from_ref(&self.p.chain));
                info!(chain = %self.p.chain.name, %change, "risk limits reloaded");
                self.p.risk = risk;
                self.p.strategies.stabilizer = stabilizer;
            }
            Input::Control(Control::Stop) => {}
            Input::Control(Control::Xchain(c)) => self.on_xcontrol(c),
        }
        self.stats.halted.store(self.gate.is_halted(), Ordering::Relaxed);
    }

    fn record_halt(&mut self, engaged: bool, reason: &str) {
        self.stats.halted.store(engaged, Ordering::Relaxed);
        if let Some(l) = &self.p.ledger {
            l.record(ledger::Halt { engaged, reason: reason.to_owned(), at_ms: now_ms() });
        }
    }

    fn next_block(&self) -> Option<NextBlock> {
        let head = self.cache.head()?;
        let secs = (self.p.chain.block_time_ms / 1000).max(1);
        Some(NextBlock::after(head, secs))
    }

    // ---------------------------------------------------------------------------------------
    // Heads
    // ---------------------------------------------------------------------------------------

    fn on_block(&mut self, msg: BlockMsg) {
        let t0 = msg.received_at;
        let ts = Instant::now();
        // Frame received → here: the feeder's state read and the hand-offs between threads.
        let fed_ns = ts.saturating_duration_since(t0).as_nanos() as u64;
        let update = msg.update;
        let supplement = self.cache.head().is_some_and(|h| h.hash == update.head.hash);
        if !supplement {
            let fetch = msg.sent_at.saturating_duration_since(t0);
            self.hist.record(EventKind::Head, Stage::Fetch, fetch.as_nanos() as u64);
            let handoff = ts.saturating_duration_since(msg.sent_at);
            self.hist.record(EventKind::Head, Stage::Handoff, handoff.as_nanos() as u64);
        }
        let applied = match self.cache.apply(&update) {
            Ok(a) => a,
            Err(e) => {
                warn!(chain = %self.p.chain.name, error = %e, "state update refused: trading paused");
                self.stats.fresh.store(false, Ordering::Relaxed);
                let _ = self.feeder.send(FeederCmd::Full);
                return;
            }
        };
        if update.full {
            self.stats.full_reads.fetch_add(1, Ordering::Relaxed);
        }
        if !self.cache.is_fresh() {
            // Divergence: ask for a full read; nothing trades until it lands.
            let _ = self.feeder.send(FeederCmd::Full);
        }
        self.stats.fresh.store(self.cache.is_fresh(), Ordering::Relaxed);
        // With nothing in flight the chain's nonce is the truth (an out-of-band transaction from
        // our key, a dropped one): resync to it before anything is signed at this head.
        if !supplement
            && self.outstanding == 0
            && let Some(n) = self.cache.account(&self.p.operator).map(|a| a.nonce)
            && n != self.nonce.peek_next()
        {
            let report = self.nonce.resync(n);
            debug!(?report, "nonces resynced from the chain");
        }
        let head = update.head;
        let Some(next) = self.next_block() else { return };
        // Venues whose state the covered blocks touched (found from the touched addresses, not
        // by scanning every venue), and any not decoded yet. A full read names the addresses
        // whose values it changed: only their venues are decoded and screened again (with
        // thousands of venues, re-decoding them all would cost as much as the whole market,
        // every time the cache is re-read).
        let touched = if update.full { &applied.changed } else { &update.touched };
        let mut changed = self.market.venues_touched(touched);
        if self.market.decoded.contains(&false) {
            changed.extend((0..self.market.venues.len()).filter(|i| !self.market.decoded[*i]));
            changed.sort_unstable();
            changed.dedup();
        }
        let moved = self.decode(&changed, &next);
        let changed = if update.full { moved } else { changed };
        if !supplement && update.blocks > 0 {
            self.track_deviation(&head);
        }
        let apply_ns = ts.elapsed().as_nanos() as u64;
        self.hist.record(EventKind::Head, Stage::StateApply, apply_ns);
        debug!(
            block = head.number,
            full = update.full,
            supplement,
            accounts = update.accounts.len(),
            slots = update.slots.len(),
            written = applied.written,
            venues = changed.len(),
            fed_ns,
            apply_ns,
            "state applied"
        );
        if self.cache.is_fresh() && !supplement {
            self.trade_head(&head, &next, &changed, t0);
            self.manage_positions(&head, &next);
        }
        if supplement && self.cache.is_fresh() {
            // State a position leg lacked may just have landed.
            self.manage_positions(&head, &next);
        }
        if supplement && !self.deferred.is_empty() {
            for (p, tries) in std::mem::take(&mut self.deferred) {
                self.evaluate_pending(&p, tries + 1);
            }
        }
        // Eviction keeps memory bounded over a long run.
        if head.number.is_multiple_of(64) {
            let gone = self.cache.evict();
            if !gone.is_empty() {
                let _ = self.feeder.send(FeederCmd::Unwatch(gone));
            }
        }
        // Published on supplements too: state a refused leg lacked may just have landed.
        self.x_publish(&head);
        if !supplement {
            self.pending_seen.clear();
            self.deferred.clear();
            self.stats.heads.fetch_add(1, Ordering::Relaxed);
            self.stats.last_head.store(head.number, Ordering::Release);
        }
        self.hist_publish(false);
    }

    /// Re-decodes venues `which` from the cache; cold keys are asked of the feeder. Returns the
    /// venues whose decoded state changed (or that were decoded for the first time).
    fn decode(&mut self, which: &[usize], next: &NextBlock) -> Vec<usize> {
        if which.is_empty() {
            return Vec::new();
        }
        let operator = self.p.operator;
        let mut missing = Vec::new();
        let mut decoded = Vec::with_capacity(which.len());
        {
            let mut bs = self.sim.block_unchecked(&self.cache, next);
            for &i in which {
                match self.market.decode(&mut bs, i, operator) {
                    Ok(pool) => decoded.push((i, pool)),
                    Err(market::DecodeError::Sim(SimError::Cold(keys))) => {
                        debug!(venue = %self.market.venues[i].name, ?keys, "venue state cold");
                        missing.extend(keys);
                    }
                    Err(e) => {
                        debug!(venue = %self.market.venues[i].name, error = %e, "venue not decodable")
                    }
                }
            }
            let touched = bs.view().take_touched();
            let number = next.number;
            drop(bs);
            self.cache.touch(&touched, number);
        }
        let first = self.market.routes.is_empty();
        let mut moved = Vec::with_capacity(decoded.len());
        for (i, pool) in decoded {
            if !self.market.decoded[i] || self.market.pools[i] != pool {
                moved.push(i);
            }
            self.market.pools[i] = pool;
            self.market.decoded[i] = true;
        }
        if first && self.market.decoded.iter().any(|d| *d) {
            self.market.enumerate_routes(self.anchor);
            info!(chain = %self.p.chain.name, routes = self.market.routes.len(), "routes enumerated");
        }
        if !missing.is_empty() {
            self.stats.cold_skips.fetch_add(1, Ordering::Relaxed);
            self.cache.count_cold(missing.len() as u64);
            self.watch(missing);
        }
        moved
    }

    /// Signed deviation of a 1:1 pegged pool from parity, bps (quote per base, decimals
    /// adjusted); `None` for pools whose tokens are not both USD stables of equal reference price.
    fn peg_deviation_bps(&self, i: usize) -> Option<f64> {
        let pool = &self.market.pools[i];
        let (b, q) = pool.tokens();
        let (tb, tq) = (self.market.token(&b)?, self.market.token(&q)?);
        if (tb.usd_price - tq.usd_price).abs() > 1e-9 {
            return None;
        }
        let mid = pool.mid_price().ok()?;
        let scale = 10f64.powi(i32::from(tb.decimals) - i32::from(tq.decimals));
        let price = market::u256_f64(mid) / 1e18 * scale;
        Some((price - 1.0) * 10_000.0)
    }

    fn track_deviation(&mut self, head: &BlockRef) {
        for i in self.stabilizer_pools.clone() {
            if let Some(dev) = self.peg_deviation_bps(i) {
                let pool = ChainAddress::new(self.p.chain.chain_id, self.market.venues[i].address);
                let _ = self.deviation.record(pool, head.number, head.timestamp, dev);
            }
        }
    }

    fn book(&self, next: &NextBlock) -> BookState {
        BookState {
            block: next.number,
            unix_time: next.timestamp,
            base_fee_wei: u128::from(next.base_fee),
            exposure_usd: Default::default(),
            bucket_in_use_usd: [0.0; 5],
        }
    }

    fn trade_head(&mut self, head: &BlockRef, next: &NextBlock, changed: &[usize], t0: Instant) {
        if self.gate.is_halted() {
            if !self.halted_logged {
                warn!(chain = %self.p.chain.name, "halted: nothing is signed until re-armed");
                self.halted_logged = true;
            }
            return;
        }
        self.halted_logged = false;
        let ts = Instant::now();
        // Routes through touched pools, plus the ones that were profitable at the last head
        // (an opportunity refused for fees, cold state or a cap stands until it is gone).
        let mut routes: Vec<usize> = changed
            .iter()
            .flat_map(|p| self.market.routes_through(*p).iter().map(|r| *r as usize))
            .chain(self.standing.iter().copied())
            .collect();
        routes.sort_unstable();
        routes.dedup();
        self.hist.record(EventKind::Head, Stage::Screen, ts.elapsed().as_nanos() as u64);
        let ts = Instant::now();
        let mut screened = self.screen_buffer();
        let picks = self.size_routes(
            &routes,
            next,
            &self.market.pools,
            &self.cache,
            &self.sim,
            screened.as_mut(),
        );
        self.standing = picks.iter().map(|p| p.route).collect();
        debug!(
            block = head.number,
            changed = changed.len(),
            routes = routes.len(),
            picks = picks.len(),
            "screened"
        );
        self.hist.record(EventKind::Head, Stage::Size, ts.elapsed().as_nanos() as u64);
        // Stabilizer trades compete with the arbitrage on the same pools: best profit first,
        // and a pool already traded in this block is not traded again (see prove_inner).
        let mut all = picks;
        all.extend(self.stabilizer_picks(next));
        let usd = |p: &Pick| {
            self.market
                .token(&self.market.routes[p.route].route.token())
                .map_or(0.0, |t| t.usd(p.native_profit))
        };
        all.sort_by(|a, b| usd(b).total_cmp(&usd(a)));
        self.event_sign = (0, 0);
        if !all.is_empty() {
            self.prove_and_submit(head, next, all, &[], EventKind::Head, t0);
        }
        if let Some(s) = screened {
            self.send_screened(EventKind::Head, head, next, &[], s);
        }
    }

    /// An empty buffer for the routes sized for an event, when the screen tap is set.
    fn screen_buffer(&mut self) -> Option<ScreenBuf> {
        self.stats.screen_tap.get().is_some().then(|| {
            let mut v = std::mem::take(&mut self.screened);
            v.routes.clear();
            v.amounts.clear();
            v
        })
    }

    /// The executor route of `entry` at `amount_in` funded by `flash`, encoded on the market's
    /// current pool states (no on-chain minimum profit yet).
    fn route_call(
        &self,
        entry: &RouteEntry,
        amount_in: U256,
        flash: sim::FlashPlan,
        next: &NextBlock,
    ) -> Option<crate::contracts::Executor::Route> {
        let params = RouteParams {
            amount_in,
            flash,
            min_profit: U256::ZERO,
            max_slippage_bps: self.p.risk.max_slippage_bps,
            deadline_block: next.number,
            coinbase_tip: U256::ZERO,
        };
        let ctx = QuoteCtx { timestamp: next.timestamp };
        let (pools, addresses, local) = self.market.local_tables(&entry.route)?;
        build_route(&pools, &addresses, &local, &params, &ctx).ok()
    }

    /// The probe transaction of `call` (at the next nonce, [`PROBE_GAS`]) and what to measure
    /// around it: the executor and the flash source, in the plan's tokens.
    fn probe(
        &self,
        call: crate::contracts::Executor::Route,
        plan: &sim::RoutePlan,
        fee: &crate::exec::FeeQuote,
    ) -> Option<(alloy::consensus::TxEip1559, SimTx)> {
        let tx = sim::route_tx(
            self.p.chain.chain_id,
            self.nonce.peek_next(),
            self.p.executor,
            call,
            PROBE_GAS,
            fee.max_fee_per_gas,
            fee.max_priority_fee_per_gas,
        );
        let env = sim::tx_env(&tx, self.p.operator).ok()?;
        let mut holders = vec![self.p.executor];
        holders.extend(plan.flash_source);
        let sim_tx = SimTx {
            tx: env,
            tokens: plan.tokens.clone(),
            holders,
            watch_calls_to: self.p.executor,
        };
        Some((tx, sim_tx))
    }

    /// Sends the routes sized for an event to the screen tap as executor calls (after the
    /// event's latency was recorded: never timed), and keeps the buffer.
    fn send_screened(
        &mut self,
        kind: EventKind,
        head: &BlockRef,
        next: &NextBlock,
        leading: &[(alloy::rpc::types::Transaction, Bytes)],
        mut screened: ScreenBuf,
    ) {
        if let (Some(t), Ok(fee)) = (
            self.stats.screen_tap.get(),
            self.fees.quote_for_base_fee(u128::from(next.base_fee), None),
        ) {
            let mut routes = Vec::with_capacity(screened.routes.len());
            let mut unencodable = 0;
            let input_at = |entry: &RouteEntry, amount: U256, flash| {
                let call = self.route_call(entry, amount, flash, next)?;
                let tx = sim::route_tx(
                    self.p.chain.chain_id,
                    0,
                    self.p.executor,
                    call,
                    PROBE_GAS,
                    fee.max_fee_per_gas,
                    fee.max_priority_fee_per_gas,
                );
                Some(tx.input)
            };
            for (route, amount_in, flash, profitable, evaluated) in &screened.routes {
                let entry = &self.market.routes[*route];
                let Some(input) = input_at(entry, *amount_in, *flash) else {
                    unencodable += 1;
                    continue;
                };
                let probes = screened.amounts[evaluated.clone()]
                    .iter()
                    .filter_map(|a| input_at(entry, *a, *flash))
                    .collect();
                routes.push(tap::ScreenedRoute {
                    route: *route,
                    amount_in: *amount_in,
                    profitable: *profitable,
                    input,
                    probes,
                });
            }
            let _ = t.send(tap::ScreenedEvent {
                kind,
                head: *head,
                next: *next,
                from: self.p.operator,
                to: self.p.executor,
                gas_limit: PROBE_GAS,
                max_fee_per_gas: fee.max_fee_per_gas,
                max_priority_fee_per_gas: fee.max_priority_fee_per_gas,
                leading: leading.iter().map(|(t, _)| t.clone()).collect(),
                routes,
                unencodable,
                signed: self.event_sign.0,
                sign_ns: self.event_sign.1,
            });
        }
        screened.routes.clear();
        screened.amounts.clear();
        self.screened = screened;
    }

    /// Sizes `routes` on `pools` (inventory read from `cache`); returns the profitable ones, best
    /// first, at most `prove_top`.
    fn size_routes(
        &self,
        routes: &[usize],
        next: &NextBlock,
        pools: &[Pool],
        cache: &ForkCache,
        sim: &Simulator,
        mut screened: Option<&mut ScreenBuf>,
    ) -> Vec<Pick> {
        let ctx = QuoteCtx { timestamp: next.timestamp };
        let book = self.book(next);
        let st = &self.p.strategies;
        // What each route may trade: the desk's cap and the inventory (cheap, in order).
        let mut jobs: Vec<SizeJob> = Vec::with_capacity(routes.len());
        for &r in routes {
            let entry = &self.market.routes[r];
            let enabled = match entry.strategy {
                StrategyKind::Depeg => st.depeg.enabled,
                StrategyKind::Triangle => st.triangle.enabled,
                _ => true,
            };
            // A backrun (pending path) trades any route the victim moved.
            if !enabled && !self.backrun_context {
                continue;
            }
            if !entry.route.hops().iter().all(|h| self.market.decoded[h.pool]) {
                continue;
            }
            let Some(token) = self.market.token(&entry.route.token()) else { continue };
            let cap = self.gate.notional_cap(
                &self.candidate(r, entry.strategy, U256::ZERO, 0.0, I256::ZERO, 0),
                &book,
            );
            let max_in = token.raw_for_usd(cap.max_notional_usd);
            if max_in.is_zero() {
                continue;
            }
            let min_in = U256::from(10u64).pow(U256::from(token.decimals.saturating_sub(2)));
            let inventory = self.inventory_in(cache, sim, entry.route.token());
            jobs.push(SizeJob { route: r, min_in, max_in, inventory });
        }
        // The sizing itself: pure native math on the pool table, in parallel when the event
        // moved many routes. Results come back in route order, so the picks do not depend on
        // the workers' timing.
        let tracing = screened.is_some();
        let entries = &self.market.routes;
        let size_one = |j: &SizeJob| {
            let mut trace = Vec::new();
            let sized = size_route(
                pools,
                &entries[j.route],
                j.min_in,
                j.max_in,
                j.inventory,
                &ctx,
                tracing.then_some(&mut trace),
            );
            (sized, trace)
        };
        let sized: Vec<_> = match &self.sizer {
            Some(workers) if jobs.len() >= PARALLEL_SIZING_MIN => {
                use rayon::prelude::*;
                workers.install(|| jobs.par_iter().map(size_one).collect())
            }
            _ => jobs.iter().map(size_one).collect(),
        };
        let mut picks = Vec::new();
        for (j, (sized, trace)) in jobs.iter().zip(sized) {
            let (r, entry) = (j.route, &entries[j.route]);
            if let Some(s) = screened.as_deref_mut() {
                let start = s.amounts.len();
                s.amounts.extend(trace);
                let evaluated = start..s.amounts.len();
                match &sized {
                    Some((t, flash)) => s.routes.push((r, t.amount_in, *flash, true, evaluated)),
                    None => {
                        let flash = if entry.flash.source().is_some() && j.inventory <= j.min_in {
                            entry.flash
                        } else {
                            sim::FlashPlan::Inventory
                        };
                        s.routes.push((r, j.min_in, flash, false, evaluated));
                    }
                }
            }
            let Some((sized, flash)) = sized else { continue };
            picks.push(Pick {
                route: r,
                amount_in: sized.amount_in,
                native_profit: sized.profit,
                strategy: entry.strategy,
                flash,
            });
        }
        self.stats.candidates.fetch_add(picks.len() as u64, Ordering::Relaxed);
        picks.sort_by(|a, b| {
            let usd = |p: &Pick| {
                self.market
                    .token(&self.market.routes[p.route].route.token())
                    .map_or(0.0, |t| t.usd(p.native_profit))
            };
            usd(b).total_cmp(&usd(a))
        });
        picks.truncate(self.p.prove_top.max(1));
        picks
    }

    /// Stabilizer candidates: pools whose deviation is sustained past θ, sized k × deviation
    /// (capped), through the best route that trades the pool toward parity.
    fn stabilizer_picks(&self, next: &NextBlock) -> Vec<Pick> {
        let st = &self.p.strategies.stabilizer;
        if !st.enabled {
            return Vec::new();
        }
        let ctx = QuoteCtx { timestamp: next.timestamp };
        let mut out = Vec::new();
        for &i in &self.stabilizer_pools {
            let pool = ChainAddress::new(self.p.chain.chain_id, self.market.venues[i].address);
            if !self.deviation.is_sustained(&pool, f64::from(st.theta_bps)) {
                continue;
            }
            let dev = self.deviation.current_bps(&pool).unwrap_or(0.0).abs();
            let target_usd = (st.k * dev).min(st.per_block_cap_usd);
            let mut best: Option<Pick> = None;
            for &r in self.market.by_pool.get(i).into_iter().flatten() {
                let entry = &self.market.routes[r as usize];
                let Some(token) = self.market.token(&entry.route.token()) else { continue };
                let cap = self.gate.notional_cap(
                    &self.candidate(
                        r as usize,
                        StrategyKind::Stabilizer,
                        U256::ZERO,
                        0.0,
                        I256::ZERO,
                        0,
                    ),
                    &self.book(next),
                );
                let amount = token.raw_for_usd(target_usd.min(cap.max_notional_usd));
                let Ok(profit) =
                    crate::routes::profit(&self.market.pools, &entry.route, amount, &ctx)
                else {
                    continue;
                };
                let fee =
                    (amount * U256::from(entry.flash_fee_bps)).div_ceil(U256::from(10_000u32));
                let profit = profit.saturating_sub(I256::from_raw(fee));
                if profit > I256::ZERO
                    && best.as_ref().is_none_or(|b| profit.into_raw() > b.native_profit)
                {
                    best = Some(Pick {
                        route: r as usize,
                        amount_in: amount,
                        native_profit: profit.into_raw(),
                        strategy: StrategyKind::Stabilizer,
                        flash: entry.flash,
                    });
                }
            }
            out.extend(best);
        }
        out
    }

    /// The executor's balance of `token` in the cache (zero when its layout or slot is unknown).
    fn inventory(&self, token: Address) -> U256 {
        self.inventory_in(&self.cache, &self.sim, token)
    }

    /// [`Engine::inventory`] in a cache and simulator taken out of the engine.
    fn inventory_in(&self, cache: &ForkCache, sim: &Simulator, token: Address) -> U256 {
        sim.layouts()
            .get(&token)
            .and_then(|l| cache.storage(&token, &l.balance_slot(self.p.executor)))
            .unwrap_or_default()
    }

    fn candidate(
        &self,
        route: usize,
        strategy: StrategyKind,
        amount_in: U256,
        profit_usd: f64,
        profit_raw: I256,
        gas_price: u128,
    ) -> Candidate {
        let entry = &self.market.routes[route];
        let token = entry.route.token();
        let notional = self.market.token(&token).map_or(0.0, |t| t.usd(amount_in));
        Candidate {
            route: entry.key,
            strategy,
            bucket: match strategy {
                StrategyKind::Stabilizer => Bucket::B,
                StrategyKind::CrossChain => Bucket::D,
                _ if entry.flash.source().is_some() => Bucket::C,
                _ => Bucket::A,
            },
            pools: entry
                .route
                .hops()
                .iter()
                .map(|h| {
                    ChainAddress::new(self.p.chain.chain_id, self.market.venues[h.pool].address)
                })
                .collect::<SmallVec<_>>(),
            notional_usd: notional,
            slippage_bps: self.p.risk.max_slippage_bps,
            profit_token: ChainAddress::new(self.p.chain.chain_id, token),
            profit_raw: if profit_raw > I256::ZERO { profit_raw.into_raw() } else { U256::ZERO },
            profit_usd,
            gas_price_wei: gas_price,
            exposure_change_usd: SmallVec::new(),
        }
    }

    /// Proves `picks` on the cache (after `pending`, in order), runs containment and the desk
    /// limits, signs the approved and hands them to the exec task.
    fn prove_and_submit(
        &mut self,
        head: &BlockRef,
        next: &NextBlock,
        picks: Vec<Pick>,
        pending: &[(alloy::rpc::types::Transaction, Bytes)],
        kind: EventKind,
        t0: Instant,
    ) {
        // The simulation borrows the cache and the simulator while the book (limits, nonces,
        // ledger) changes: take them out for the duration.
        let cache = std::mem::take(&mut self.cache);
        let sim =
            std::mem::replace(&mut self.sim, Simulator::new(self.p.chain.chain_id, self.p.spec));
        let touched = self.prove_inner(&cache, &sim, None, head, next, picks, pending, kind, t0);
        self.cache = cache;
        self.sim = sim;
        self.cache.touch(&touched, next.number);
    }

    /// Proves `picks` on `prebuilt` (a block simulation that already ran `pending`), or on a
    /// fresh one of the cache with `pending` applied first; returns the addresses it read.
    #[allow(clippy::too_many_arguments)]
    fn prove_inner<'c>(
        &mut self,
        cache: &'c ForkCache,
        simulator: &'c Simulator,
        prebuilt: Option<&mut BlockSim<'c>>,
        head: &BlockRef,
        next: &NextBlock,
        picks: Vec<Pick>,
        pending: &[(alloy::rpc::types::Transaction, Bytes)],
        kind: EventKind,
        t0: Instant,
    ) -> Vec<Address> {
        let chain_id = self.p.chain.chain_id;
        let fee = match self.fees.quote_for_base_fee(u128::from(next.base_fee), None) {
            Ok(f) => f,
            Err(e) => {
                // Gas spike: stand down rather than overpay.
                self.stats.refused.fetch_add(picks.len() as u64, Ordering::Relaxed);
                for p in &picks {
                    let id = self.open_opportunity(head, p, None);
                    self.decide(id, Err(("gas_price".into(), e.to_string())));
                }
                return Vec::new();
            }
        };
        let native_usd = self.p.chain.fees.native_usd;
        let mut approved: Vec<(u64, usize, SignedTx, SimOutcome, Candidate, I256)> = Vec::new();
        let mut missing: Vec<StateKey> = Vec::new();
        let mut own;
        let touched = {
            let bs = match prebuilt {
                Some(bs) => bs,
                None => {
                    let Ok(bs) = simulator.block(cache, head.hash, next) else { return Vec::new() };
                    own = bs;
                    for (victim, _) in pending {
                        let Ok(env) = pending_env(victim) else { return Vec::new() };
                        if own.apply_pending(env).is_err() {
                            return Vec::new();
                        }
                    }
                    &mut own
                }
            };
            let mut traded: Vec<usize> = Vec::new();
            for pick in picks {
                let entry = self.market.routes[pick.route].clone();
                // A candidate sharing a pool with one approved in this event was priced on the
                // state before that trade: it waits for the next event.
                if entry.route.hops().iter().any(|h| traded.contains(&h.pool)) {
                    continue;
                }
                let _span = tracing::info_span!(
                    "opp",
                    id = self.next_id,
                    strategy = pick.strategy.as_str()
                )
                .entered();
                let id = self.open_opportunity(head, &pick, Some(&entry));
                let ts = Instant::now();
                // The route's own pools only: the table is not copied per event.
                let Some(route_arg) = self.route_call(&entry, pick.amount_in, pick.flash, next)
                else {
                    self.decide(id, Err(("encode".into(), "route could not be encoded".into())));
                    continue;
                };
                let plan = plan_of(self.p.executor, &route_arg);
                let Some((probe_tx, sim_tx)) = self.probe(route_arg.clone(), &plan, &fee) else {
                    continue;
                };
                let simulated = bs.simulate(&sim_tx);
                if let Some(t) = self.stats.tap.get() {
                    let _ = t.send(tap::ProvedCandidate {
                        kind,
                        head: *head,
                        next: *next,
                        from: self.p.operator,
                        to: self.p.executor,
                        input: probe_tx.input.clone(),
                        gas_limit: probe_tx.gas_limit,
                        max_fee_per_gas: probe_tx.max_fee_per_gas,
                        max_priority_fee_per_gas: probe_tx.max_priority_fee_per_gas,
                        leading: pending.iter().map(|(t, _)| t.clone()).collect(),
                        route: pick.route,
                        amount_in: pick.amount_in,
                        outcome: tap::TapOutcome::of(&simulated),
                    });
                }
                let outcome = match simulated {
                    Ok(o) => o,
                    Err(SimError::Cold(keys)) => {
                        self.stats.cold_skips.fetch_add(1, Ordering::Relaxed);
                        missing.extend(keys);
                        self.decide(
                            id,
                            Err((
                                "cold_state".into(),
                                "state not cached yet; fetched for the next block".into(),
                            )),
                        );
                        continue;
                    }
                    Err(e) => {
                        self.decide(id, Err(("simulation".into(), e.to_string())));
                        continue;
                    }
                };
                self.stats.simulated.fetch_add(1, Ordering::Relaxed);
                self.hist.record(kind, Stage::Sim, ts.elapsed().as_nanos() as u64);
                let ts = Instant::now();
                let token = self.market.token(&entry.route.token()).cloned();
                let sim_profit =
                    outcome.delta(self.p.executor, entry.route.token()).unwrap_or_default();
                let gas_cost_wei =
                    U256::from(outcome.gas_used) * U256::from(fee.expected_gas_price_wei());
                let gas_usd = market::u256_f64(gas_cost_wei) / 1e18 * native_usd;
                let profit_usd =
                    token.as_ref().map_or(0.0, |t| signed_usd(t, sim_profit)) - gas_usd;
                self.record_simulation(id, next.number, &outcome, sim_profit, profit_usd);
                if let Err(errs) = check_containment(&plan, &outcome) {
                    let reason =
                        errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                    self.decide(id, Err((format!("containment:{}", errs[0].kind()), reason)));
                    continue;
                }
                // Net of gas in the profit token: what the route must make on chain.
                let gas_in_token = token
                    .as_ref()
                    .map_or(U256::MAX, |t| t.raw_for_usd(gas_usd).saturating_add(U256::from(1)));
                let net_raw = sim_profit.saturating_sub(I256::from_raw(gas_in_token));
                let cand = self.candidate(
                    pick.route,
                    pick.strategy,
                    pick.amount_in,
                    profit_usd,
                    net_raw,
                    fee.max_fee_per_gas,
                );
                let book = self.book(next);
                if let Err(r) = self.gate.check(&cand, &book) {
                    self.hist.record(kind, Stage::Risk, ts.elapsed().as_nanos() as u64);
                    self.refuse(id, &r);
                    continue;
                }
                if net_raw <= I256::ZERO {
                    self.refuse(id, &Refusal::MinProfitUsd { profit_usd, min_usd: 0.0 });
                    continue;
                }
                self.hist.record(kind, Stage::Risk, ts.elapsed().as_nanos() as u64);
                // The final transaction: on-chain minimum profit = gas in token units plus the
                // slippage-capped share of the simulated profit; gas limit from the simulation.
                let ts = Instant::now();
                let keep = U256::from(10_000 - self.p.risk.max_slippage_bps.min(10_000));
                let floor = sim_profit.into_raw() * keep / U256::from(10_000u32);
                let mut final_route = route_arg;
                final_route.minProfit = floor.max(gas_in_token).min(sim_profit.into_raw());
                let gas_limit = self.margin.gas_limit(outcome.gas_used);
                if self.p.mode.signs() {
                    let Some(signer) = &self.p.signer else {
                        self.decide(id, Err(("no_signer".into(), "no signer configured".into())));
                        continue;
                    };
                    let Ok(nonce) = self.nonce.next() else {
                        self.decide(
                            id,
                            Err(("nonce".into(), "nonce manager needs a resync".into())),
                        );
                        continue;
                    };
                    let tx = sim::route_tx(
                        chain_id,
                        nonce,
                        self.p.executor,
                        final_route,
                        gas_limit,
                        fee.max_fee_per_gas,
                        fee.max_priority_fee_per_gas,
                    );
                    let params = TxParams {
                        chain_id,
                        nonce,
                        to: self.p.executor,
                        input: tx.input.clone(),
                        gas_limit,
                        max_fee_per_gas: fee.max_fee_per_gas,
                        max_priority_fee_per_gas: fee.max_priority_fee_per_gas,
                        value: U256::ZERO,
                    };
                    match signer.sign_eip1559(&params) {
                        Ok(signed) => {
                            let sign_ns = ts.elapsed().as_nanos() as u64;
                            self.hist.record(kind, Stage::Sign, sign_ns);
                            self.event_sign.0 += 1;
                            self.event_sign.1 += sign_ns;
                            self.hist.record(kind, Stage::EndToEnd, t0.elapsed().as_nanos() as u64);
                            traded.extend(entry.route.hops().iter().map(|h| h.pool));
                            approved.push((id, pick.route, signed, outcome, cand, sim_profit));
                        }
                        Err(e) => {
                            self.nonce.release(nonce);
                            self.decide(id, Err(("sign".into(), e.to_string())));
                        }
                    }
                } else {
                    self.hist.record(kind, Stage::EndToEnd, t0.elapsed().as_nanos() as u64);
                    traded.extend(entry.route.hops().iter().map(|h| h.pool));
                    self.decide(id, Ok(()));
                    self.gate.record_submission(&cand, next.number);
                }
            }
            bs.view().take_touched()
        };
        if !missing.is_empty() {
            self.stats.cold_skips.fetch_add(missing.len() as u64, Ordering::Relaxed);
            self.watch(missing);
        }
        for (id, route, signed, outcome, cand, sim_profit) in approved {
            self.decide(id, Ok(()));
            self.gate.record_submission(&cand, next.number);
            if cand.strategy == StrategyKind::Stabilizer {
                self.stats.stabilizer_trades.fetch_add(1, Ordering::Relaxed);
            }
            self.stats.approved.fetch_add(1, Ordering::Relaxed);
            if !self.p.mode.sends() {
                // Shadow: signed and simulated, never sent.
                self.nonce.release(signed.nonce);
                continue;
            }
            let Some(exec) = &self.exec else {
                self.nonce.release(signed.nonce);
                continue;
            };
            let entry = &self.market.routes[route];
            let job = ExecJob {
                opportunity: id,
                submission: id,
                chain_id,
                leading: pending.iter().map(|(_, raw)| raw.clone()).collect(),
                txs: vec![signed],
                target_block: next.number,
                parent_hash: head.hash,
                profit_token: entry.route.token(),
                executor: self.p.executor,
                simulated_profit: sim_profit,
                simulated_gas: outcome.gas_used,
                route: cand.route,
                strategy: cand.strategy,
                profit_usd_per_raw: self
                    .market
                    .token(&entry.route.token())
                    .map_or(0.0, |t| t.usd(U256::from(1))),
                native_usd,
                bundle: matches!(self.p.chain.submission.mode, SubmissionMode::FlashbotsRelay),
                cost_usd: 0.0,
            };
            if exec.send(job).is_ok() {
                self.outstanding += 1;
                self.stats.submitted.fetch_add(1, Ordering::Relaxed);
            }
        }
        touched
    }

    fn open_opportunity(&mut self, head: &BlockRef, p: &Pick, entry: Option<&RouteEntry>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let entry = entry.unwrap_or(&self.market.routes[p.route]);
        let token = entry.route.token();
        let usd = self.market.token(&token).map(|t| t.usd(p.native_profit));
        if let Some(l) = &self.p.ledger {
            l.record(ledger::Opportunity {
                id,
                chain_id: self.p.chain.chain_id,
                block: head.number + 1,
                strategy: p.strategy.as_str().to_owned(),
                route: entry.label.clone(),
                token,
                size: p.amount_in,
                expected_profit: I256::from_raw(p.native_profit),
                expected_profit_usd: usd,
                detected_at_ms: now_ms(),
            });
        }
        if let Some(sev) = self.severity(entry) {
            debug!(opp = id, severity = sev, route = %entry.label, "depeg deviation");
        }
        id
    }

    /// The seed-004 severity of a depeg route's deviation (the largest over its pegged pools).
    fn severity(&self, entry: &RouteEntry) -> Option<&'static str> {
        if entry.strategy != StrategyKind::Depeg || !self.p.strategies.depeg.enabled {
            return None;
        }
        let dev = entry
            .route
            .hops()
            .iter()
            .filter_map(|h| self.peg_deviation_bps(h.pool))
            .map(f64::abs)
            .fold(0.0, f64::max);
        self.p.strategies.depeg.severity.classify(dev.round() as u32).map(|s| s.as_str())
    }

    fn record_simulation(
        &self,
        id: u64,
        block: u64,
        o: &SimOutcome,
        profit: I256,
        profit_usd: f64,
    ) {
        if let Some(l) = &self.p.ledger {
            l.record(ledger::Simulation {
                opportunity_id: id,
                block,
                success: o.success(),
                profit,
                profit_usd: Some(profit_usd),
                gas_used: o.gas_used,
                revert_reason: match &o.status {
                    sim::SimStatus::Success => None,
                    sim::SimStatus::Revert(r) | sim::SimStatus::Halt(r) => Some(r.clone()),
                },
                deltas: o
                    .deltas
                    .iter()
                    .filter(|d| d.holder == self.p.executor)
                    .map(|d| ledger::TokenDelta { token: d.token, delta: d.delta })
                    .collect(),
                at_ms: now_ms(),
            });
        }
    }

    fn refuse(&mut self, id: u64, r: &Refusal) {
        self.decide(id, Err((r.kind().to_owned(), r.to_string())));
    }

    fn decide(&mut self, id: u64, d: Result<(), (String, String)>) {
        match &d {
            Ok(()) => info!(opp = id, "approved"),
            Err((kind, reason)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                *self.stats.refusals_by_kind.entry(kind.clone()).or_default() += 1;
                debug!(opp = id, kind = %kind, %reason, "refused");
            }
        }
        if let Some(l) = &self.p.ledger {
            let (approved, kind, reason) = match d {
                Ok(()) => (true, None, None),
                Err((k, r)) => (false, Some(k), Some(r)),
            };
            l.record(ledger::Decision {
                opportunity_id: id,
                approved,
                refusal_kind: kind,
                reason,
                at_ms: now_ms(),
            });
        }
    }

    // ---------------------------------------------------------------------------------------
    // Pending transactions (backrun)
    // ---------------------------------------------------------------------------------------

    fn on_pending(&mut self, p: &PendingTx) {
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        let raw = Bytes::from(p.tx.inner.inner().encoded_2718());
        if self.pending_seen.len() < self.p.strategies.backrun.max_pending_per_block as usize {
            self.pending_seen.push((p.tx.clone(), raw));
        }
        self.evaluate_pending(p, 0);
    }

    /// Backrun evaluation of one pending transaction; `tries` counts retries after cold state.
    fn evaluate_pending(&mut self, p: &PendingTx, tries: u8) {
        let br = &self.p.strategies.backrun;
        let relay = matches!(self.p.chain.submission.mode, SubmissionMode::FlashbotsRelay);
        if !br.enabled
            || (br.bundle_only && !relay)
            || !self.cache.is_fresh()
            || self.gate.is_halted()
        {
            return;
        }
        if p.received_at.elapsed() > Duration::from_millis(br.max_pending_age_ms) {
            return;
        }
        let t0 = p.received_at;
        let ts = Instant::now();
        if tries == 0 {
            let handoff = ts.saturating_duration_since(t0).as_nanos() as u64;
            self.hist.record(EventKind::Pending, Stage::Handoff, handoff);
        }
        let from = p.tx.inner.signer();
        let Some(to) = p.to() else { return };
        let Some(venue) = self.market.venue_index(&to) else { return };
        let Some(head) = self.cache.head().copied() else { return };
        let Some(next) = self.next_block() else { return };
        // The victim and its sender's earlier pending transactions, in nonce order.
        let mut leading: Vec<(alloy::rpc::types::Transaction, Bytes)> = self
            .pending_seen
            .iter()
            .filter(|(t, _)| t.inner.signer() == from && t.nonce() <= p.tx.nonce())
            .cloned()
            .collect();
        leading.sort_by_key(|(t, _)| t.nonce());
        leading.dedup_by_key(|(t, _)| t.nonce());
        self.hist.record(EventKind::Pending, Stage::Decode, ts.elapsed().as_nanos() as u64);
        // One block simulation serves the victim's effect, the sizing and the proof: the cache
        // and the simulator are taken out of the engine for the duration.
        let cache = std::mem::take(&mut self.cache);
        let sim =
            std::mem::replace(&mut self.sim, Simulator::new(self.p.chain.chain_id, self.p.spec));
        let ctx = BackrunCtx { venue, head: &head, next: &next, leading: &leading, t0, tries };
        let touched = self.backrun(&cache, &sim, p, &ctx);
        self.cache = cache;
        self.sim = sim;
        self.cache.touch(&touched, next.number);
    }

    /// The victim's effect (its venue re-decoded on the state after it and its sender's earlier
    /// transactions), the routes it moved sized on that state, and the best proven on the same
    /// simulation. Returns the addresses the simulation read.
    fn backrun(
        &mut self,
        cache: &ForkCache,
        sim: &Simulator,
        p: &PendingTx,
        c: &BackrunCtx<'_>,
    ) -> Vec<Address> {
        let ts = Instant::now();
        let Ok(mut bs) = sim.block(cache, c.head.hash, c.next) else { return Vec::new() };
        for (t, _) in c.leading {
            let Ok(env) = pending_env(t) else { return Vec::new() };
            match bs.apply_pending(env) {
                Ok(sim::SimStatus::Success) => {}
                Err(SimError::Cold(keys)) => {
                    // The victim's own state (its balances) is not cached: fetch it off the
                    // hot path and look again when it lands, never wait for it here.
                    self.stats.cold_skips.fetch_add(1, Ordering::Relaxed);
                    self.watch(keys);
                    if c.tries < 4 && self.deferred.len() < 64 {
                        self.deferred.push((Box::new(p.clone()), c.tries));
                    }
                    return Vec::new();
                }
                _ => return Vec::new(),
            }
        }
        let Ok(victim_pool) = self.market.decode(&mut bs, c.venue, self.p.operator) else {
            return Vec::new();
        };
        self.hist.record(EventKind::Pending, Stage::StateApply, ts.elapsed().as_nanos() as u64);
        let ts = Instant::now();
        let routes: Vec<usize> =
            self.market.routes_through(c.venue).iter().map(|r| *r as usize).collect();
        self.hist.record(EventKind::Pending, Stage::Screen, ts.elapsed().as_nanos() as u64);
        let ts = Instant::now();
        // The venue's state after the victim stands in the table while its routes are sized
        // and proven, and is put back after (the table is never copied).
        let before = std::mem::replace(&mut self.market.pools[c.venue], victim_pool);
        self.backrun_context = true;
        let mut screened = self.screen_buffer();
        let mut picks =
            self.size_routes(&routes, c.next, &self.market.pools, cache, sim, screened.as_mut());
        self.backrun_context = false;
        self.event_sign = (0, 0);
        self.hist.record(EventKind::Pending, Stage::Size, ts.elapsed().as_nanos() as u64);
        for pk in &mut picks {
            pk.strategy = StrategyKind::Backrun;
        }
        picks.truncate(1);
        let mut touched = Vec::new();
        if !picks.is_empty() {
            touched = self.prove_inner(
                cache,
                sim,
                Some(&mut bs),
                c.head,
                c.next,
                picks,
                c.leading,
                EventKind::Pending,
                c.t0,
            );
        }
        if let Some(s) = screened {
            // On the victim's state, as the routes were sized.
            self.send_screened(EventKind::Pending, c.head, c.next, c.leading, s);
        }
        self.market.pools[c.venue] = before;
        touched
    }

    // ---------------------------------------------------------------------------------------
    // Outcomes
    // ---------------------------------------------------------------------------------------

    fn on_exec(&mut self, r: ExecReport) {
        if let ExecResult::Orphaned { pnl_usd, resync } = r.result {
            // Reorged out: reverse the PnL booked, follow the chain's nonce, and wait for the
            // submission's next outcome.
            self.outstanding += 1;
            let micro = (pnl_usd * 1e6) as i64;
            self.stats.realised_pnl_micro_usd.fetch_sub(micro, Ordering::Relaxed);
            self.gate.record_orphaned(r.route, pnl_usd, now_ms() / 1000);
            if let Some(n) = resync {
                self.nonce.resync(n);
            }
            self.x_on_exec(&r);
            return;
        }
        self.outstanding = self.outstanding.saturating_sub(1);
        self.on_leg_outcome(r.opportunity, matches!(r.result, ExecResult::Included { .. }));
        self.x_on_exec(&r);
        let unix = now_ms() / 1000;
        let trip = match &r.result {
            ExecResult::Included { pnl_usd } => {
                self.nonce.confirm(r.nonce);
                self.stats
                    .realised_pnl_micro_usd
                    .fetch_add((pnl_usd * 1e6) as i64, Ordering::Relaxed);
                self.gate.record_fill(r.route, *pnl_usd, unix)
            }
            ExecResult::Reverted { gas_usd } => {
                self.nonce.confirm(r.nonce);
                self.stats
                    .realised_pnl_micro_usd
                    .fetch_sub((gas_usd * 1e6) as i64, Ordering::Relaxed);
                self.gate.record_revert(r.route, *gas_usd, unix)
            }
            ExecResult::Missed => {
                self.nonce.release(r.nonce);
                self.gate.record_miss(r.route, unix)
            }
            ExecResult::Orphaned { .. } => Ok(None),
            ExecResult::NotDelivered { resync } => {
                match resync {
                    Some(latest) => {
                        self.nonce.resync(*latest);
                    }
                    None => self.nonce.release(r.nonce),
                }
                Ok(None)
            }
        };
        match trip {
            Ok(Some(t)) => {
                warn!(trip = ?t, "kill switch tripped: halted until re-armed");
                self.record_halt(true, &format!("{t:?}"));
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "halt file could not be written; halted in memory"),
        }
    }
}

fn signed_usd(t: &TokenMeta, v: I256) -> f64 {
    let usd = t.usd(v.unsigned_abs());
    if v < I256::ZERO { -usd } else { usd }
}

/// The sizer's precision on the hot path ([`SizingLimits::precision_bits`]): the search stops
/// at 2⁻¹⁶ of the input. Near an interior optimum the profit is flat to second order, so this
/// costs at most 10⁻⁵ of the profit (5 ppm worst over 300 random routes in the sizing tests) for
/// about a fifth fewer quotes than the default 24 bits.
pub const ENGINE_PRECISION_BITS: u32 = 16;

/// One route to size: its index, the input range the desk allows and the executor's inventory
/// of its token.
struct SizeJob {
    route: usize,
    min_in: U256,
    max_in: U256,
    inventory: U256,
}

/// Events that move at least this many routes are sized on the engine's worker pool (below
/// it, handing the work over costs more than it saves).
const PARALLEL_SIZING_MIN: usize = 8;
/// Most sizing workers per engine.
const MAX_SIZING_THREADS: usize = 4;

/// The worker pool that sizes large events: one thread per core up to [`MAX_SIZING_THREADS`]
/// (named `size-<chain>-<n>`); `None` on a single core or when the threads cannot start (the
/// engine then sizes on its own thread).
fn sizing_pool(chain: &str) -> Option<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if cores < 2 {
        return None;
    }
    let chain = chain.to_owned();
    rayon::ThreadPoolBuilder::new()
        .num_threads(cores.min(MAX_SIZING_THREADS))
        .thread_name(move |i| format!("size-{chain}-{i}"))
        .build()
        .map_err(|e| warn!(error = %e, "no sizing workers: routes are sized on the engine thread"))
        .ok()
}

/// Venues [`Engine::prime`] decodes.
const PRIME_VENUES: usize = 64;
/// Routes [`Engine::prime`] sizes.
const PRIME_ROUTES: usize = 256;

/// Gas limit of the probe transaction a candidate is simulated with (the signed one's comes
/// from the simulation).
const PROBE_GAS: u64 = 3_000_000;

/// One route's best trade between `min_in` and `max_in` of its token: from the executor's
/// `inventory` when it holds more than `min_in` (no flash fee), or funded by the route's flash
/// source at its fee; `None` when neither pays (or the route cannot be sized). With `trace`,
/// every input the sizing evaluated is appended to it.
pub fn size_route(
    pools: &[Pool],
    entry: &RouteEntry,
    min_in: U256,
    max_in: U256,
    inventory: U256,
    ctx: &QuoteCtx,
    mut trace: Option<&mut Vec<U256>>,
) -> Option<(crate::routes::SizedTrade, sim::FlashPlan)> {
    let limits = |max_in, input_fee_bps| SizingLimits {
        precision_bits: ENGINE_PRECISION_BITS,
        input_fee_bps,
        ..SizingLimits::new(min_in, max_in)
    };
    let mut sized = |l: &SizingLimits| match trace.as_deref_mut() {
        Some(t) => crate::routes::size_traced(pools, &entry.route, l, ctx, t),
        None => size(pools, &entry.route, l, ctx),
    };
    let mut best: Option<(crate::routes::SizedTrade, sim::FlashPlan)> = None;
    if inventory > min_in
        && let Ok(s) = sized(&limits(max_in.min(inventory), 0))
        && !s.profit.is_zero()
    {
        best = Some((s, sim::FlashPlan::Inventory));
    }
    if entry.flash.source().is_some()
        && let Ok(s) = sized(&limits(max_in, entry.flash_fee_bps))
        && best.as_ref().is_none_or(|(b, _)| s.profit > b.profit)
    {
        best = Some((s, entry.flash));
    }
    best.filter(|(s, _)| !s.profit.is_zero())
}

/// Screens `routes` of `market` as a head does (bench hook): each sized by [`size_route`] from
/// `min_in` to `max_in` of its token, flash-funded; the profitable ones, in route order.
#[doc(hidden)]
pub fn bench_screen(
    market: &Market,
    routes: &[usize],
    min_in: U256,
    max_in: U256,
    ctx: &QuoteCtx,
) -> Vec<(usize, crate::routes::SizedTrade)> {
    routes
        .iter()
        .filter_map(|&r| {
            let entry = market.routes.get(r)?;
            size_route(&market.pools, entry, min_in, max_in, U256::ZERO, ctx, None)
                .map(|(s, _)| (r, s))
        })
        .collect()
}

/// What [`Engine::backrun`] works on besides the victim.
struct BackrunCtx<'a> {
    venue: usize,
    head: &'a BlockRef,
    next: &'a NextBlock,
    leading: &'a [(alloy::rpc::types::Transaction, Bytes)],
    t0: Instant,
    tries: u8,
}

/// The revm transaction of a pending transaction as the chain would execute it.
fn pending_env(tx: &alloy::rpc::types::Transaction) -> Result<revm::context::TxEnv, SimError> {
    let from = tx.inner.signer();
    let gas_price = tx.max_fee_per_gas();
    revm::context::TxEnv::builder()
        .tx_type(Some(tx.inner.inner().tx_type() as u8))
        .caller(from)
        .nonce(tx.nonce())
        .chain_id(tx.chain_id())
        .kind(tx.kind())
        .data(tx.input().clone())
        .value(tx.value())
        .gas_limit(tx.gas_limit())
        .gas_price(gas_price)
        .gas_priority_fee(tx.max_priority_fee_per_gas())
        .build()
        .map_err(|e| SimError::Invalid(format!("{e:?}")))
}

/// Blocks until `f` holds or `timeout` passes (test and tool helper for the engine's counters).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}
