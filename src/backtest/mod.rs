//! `cantilever backtest`: the real engine replayed over history, block by block, and judged
//! against what the chain really did.
//!
//! ```text
//!  archive RPC ─▶ RpcCache (SQLite, throttle, retry) ─▶ RpcSource ─┬─▶ warm_up ─▶ Engine (same code as live)
//!  or cassette ─────────────────────────────▶ CassetteSource ──────┤     ▲ block N's txs as pending, then head N
//!                                                                  │     │ ExecJob (signed tx) ─▶ Judge (revm)
//!                                                                  └─▶ Judge: own fork cache on the real chain
//!                                                                        landed? PnL after gas, peg with/without
//! ```
//!
//! Per block N the engine holds the state of N's parent (forked through the state source, which
//! every read goes through), receives N's transactions in block order as its pending stream,
//! then N as its head. The engine runs its live code path with the signing key of a throwaway
//! operator and its execution channel wired to the judge instead of a submitter: nothing can be
//! sent anywhere. Each signed transaction is executed by the judge where it would have landed —
//! a backrun right after its victim inside N (after every earlier transaction of N, not only the
//! victim's), a head trade at the top of N+1 — and its outcome (landed or reverted, PnL after gas)
//! is reported back to the engine as the exec task would, so the desk limits see it.
//!
//! Every run is deterministic: events are handled one at a time, the engine's clock is never
//! consulted for a decision (pending transactions are fresh when handed over), the operator key
//! is fixed. An RPC run can record a cassette (`--record`) holding exactly what it read;
//! `--cassette` replays it offline with identical decisions and PnL.
//!
//! The peg deviation per block is read on the judge's state: *without* is the recorded chain at
//! the end of block N, *with* is the same state after the bot's transactions that landed in N
//! (not carried into later blocks: the recorded chain never saw them).

pub mod default;
mod judge;
mod report;
pub mod rpc_cache;
pub mod xchain;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, keccak256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::{client::ClientBuilder, types::Transaction},
    signers::local::PrivateKeySigner,
};
use revm::primitives::hardfork::SpecId;

pub use default::{DefaultReport, render_html as render_default_html};
pub use judge::{JudgeError, Verdict};
pub use report::{BacktestReport, DecisionRow, GroupReport, PegRow, render_html};
pub use rpc_cache::{CacheCounters, CacheError, RpcCache};

use crate::{
    bench::ConfigFile,
    cassette::{Cassette, CassetteError, CassetteMeta, CassetteWriter, RecordingSource},
    config::{ChainConfig, RiskConfig, StrategiesConfig},
    engine::{
        BlockMsg, Engine, EngineParams, EngineStats, ExecJob, ExecReport, ExecResult, FeederCmd,
        Input, Warmed, warm_up,
    },
    exec::TxSigner,
    ingest::{Event, Head, PendingTx},
    ledger::{Ledger, LedgerHandle, Record},
    risk::{Halt, Mode},
    state::{
        BlockInfo, BlockRef, ReadRequest, ReadSet, RetryPolicy, RpcSource, SourceError, StateSource,
    },
};
use judge::{BlockTx, Judge, recorded_env};

/// Candidates proven per event (as `cantilever run`).
pub const PROVE_TOP: usize = 4;

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The configuration could not be read.
    #[error("configuration {file}: {detail}")]
    Config {
        /// The file (or `embedded default`).
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// The cassette could not be read or written.
    #[error(transparent)]
    Cassette(#[from] CassetteError),
    /// The RPC cache could not be opened.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The node could not give a block.
    #[error("block {block}: {detail}")]
    Block {
        /// The block number.
        block: u64,
        /// What went wrong (the endpoint is never named).
        detail: String,
    },
    /// The range is empty or starts at genesis.
    #[error("range {from}..={to}: {detail}")]
    Range {
        /// First block.
        from: u64,
        /// Last block.
        to: u64,
        /// Why it cannot be run.
        detail: String,
    },
    /// The engine could not start or run.
    #[error("engine: {0}")]
    Engine(String),
    /// State could not be read.
    #[error("state: {0}")]
    State(String),
    /// The judge could not execute a transaction.
    #[error(transparent)]
    Judge(#[from] JudgeError),
    /// The ledger the engine records into could not be used.
    #[error("ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// The chain, strategies, limits and operator a backtest runs with.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The chain.
    pub chain: ChainConfig,
    /// Strategies (backrun evaluated without a relay, as `bench`).
    pub strategies: StrategiesConfig,
    /// Desk limits.
    pub risk: RiskConfig,
    /// The executor's operator the engine simulates from.
    pub operator: Address,
}

impl Setup {
    /// The setup of `file` (a TOML configuration or a devnet manifest) for the chain `name`, or
    /// the one with `chain_id`; without a file, the embedded default manifest's.
    ///
    /// # Errors
    /// [`BacktestError::Config`] naming the file and the problem.
    pub fn load(
        file: Option<&ConfigFile>,
        name: Option<&str>,
        chain_id: u64,
        operator: Option<Address>,
    ) -> Result<Self, BacktestError> {
        let Some(file) = file else {
            let mut s = default::setup()?;
            if let Some(o) = operator {
                s.operator = o;
            }
            return Ok(s);
        };
        let (chain, strategies, risk, manifest_operator) =
            crate::bench::load_chain(file, name, chain_id).map_err(|e| BacktestError::Config {
                file: match file {
                    ConfigFile::Toml(p) | ConfigFile::Manifest(p) => p.display().to_string(),
                },
                detail: e.to_string(),
            })?;
        Ok(Self {
            chain,
            strategies: crate::bench::bench_strategies(strategies),
            risk,
            operator: operator.or(manifest_operator).unwrap_or(Address::ZERO),
        })
    }
}

/// An RPC backtest.
#[derive(Clone, Debug)]
pub struct RpcOptions {
    /// HTTP JSON-RPC endpoint of an archive node (never printed).
    pub url: String,
    /// First block.
    pub from: u64,
    /// Last block (inclusive).
    pub to: u64,
    /// Directory of the answer cache.
    pub cache_dir: PathBuf,
    /// Requests per second sent to the node (0: unthrottled).
    pub requests_per_s: u32,
    /// Also write a cassette of the run here.
    pub record: Option<PathBuf>,
    /// Where the chain's configuration comes from (default: the embedded manifest).
    pub config: Option<ConfigFile>,
    /// The chain's name in the configuration (default: the node's chain id).
    pub chain: Option<String>,
    /// The operator (default: the manifest's, else the zero address).
    pub operator: Option<Address>,
    /// Draw a progress bar on stderr (hidden when it is not a terminal).
    pub progress: bool,
}

/// One recorded block as the backtest replays it.
#[derive(Clone, Debug)]
pub struct ReplayBlock {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// Timestamp.
    pub timestamp: u64,
    /// Base fee.
    pub base_fee: Option<u64>,
    /// Gas limit.
    pub gas_limit: u64,
    /// Its transactions in block order.
    pub txs: Vec<Transaction>,
}

/// The fixed throwaway key the backtest signs with: nothing it signs can be sent, and the same
/// key makes every run byte-identical.
fn throwaway_key() -> Result<PrivateKeySigner, BacktestError> {
    PrivateKeySigner::from_bytes(&keccak256(b"cantilever backtest throwaway key"))
        .map_err(|e| BacktestError::Engine(e.to_string()))
}

/// A [`StateSource`] whose `latest()` is a fixed block (the backtest's base).
#[derive(Clone, Debug)]
struct Pinned<S> {
    inner: S,
    base: B256,
}

impl<S: StateSource> StateSource for Pinned<S> {
    async fn block(&self, hash: B256) -> Result<BlockInfo, SourceError> {
        self.inner.block(hash).await
    }

    async fn latest(&self) -> Result<BlockInfo, SourceError> {
        self.inner.block(self.base).await
    }

    async fn read(&self, at: B256, req: &ReadRequest) -> Result<ReadSet, SourceError> {
        self.inner.read(at, req).await
    }
}

/// The provider of an RPC backtest: the answer cache, then alloy's rate-limit retry, then HTTP.
///
/// # Errors
/// [`BacktestError::Config`] when the URL does not parse (it is not echoed).
pub fn cached_provider(url: &str, cache: &RpcCache) -> Result<DynProvider, BacktestError> {
    let url = url.parse().map_err(|_| BacktestError::Config {
        file: "--rpc".into(),
        detail: "not a URL (not shown: it may hold a key)".into(),
    })?;
    let client = ClientBuilder::default()
        .layer(cache.clone())
        .layer(alloy::transports::layers::RetryBackoffLayer::new(8, 200, 1_000))
        .http(url);
    Ok(ProviderBuilder::new().connect_client(client).erased())
}

fn rpc_detail(e: &alloy::transports::TransportError) -> String {
    if e.is_transport_error() {
        "transport error (endpoint not shown)".into()
    } else {
        e.to_string()
    }
}

/// Block `n` with its transactions, retried with a doubling backoff.
async fn fetch_block(p: &DynProvider, n: u64) -> Result<alloy::rpc::types::Block, BacktestError> {
    let mut delay = Duration::from_millis(100);
    let mut last = String::new();
    for attempt in 1..=6u32 {
        match p.get_block_by_number(n.into()).full().await {
            Ok(Some(b)) => return Ok(b),
            Ok(None) => last = "the node does not have it".into(),
            Err(e) => last = rpc_detail(&e),
        }
        if attempt < 6 {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(4));
        }
    }
    Err(BacktestError::Block { block: n, detail: last })
}

fn replay_block(b: &alloy::rpc::types::Block) -> ReplayBlock {
    let h = &b.header;
    ReplayBlock {
        number: h.number,
        hash: h.hash,
        parent_hash: h.parent_hash,
        timestamp: h.timestamp,
        base_fee: h.base_fee_per_gas,
        gas_limit: h.gas_limit,
        txs: b.transactions.txns().cloned().collect(),
    }
}

/// An archive node opened for a backtest: its chain, the blocks to replay and the state source
/// pinned at the first block's parent.
struct OpenRpc {
    chain_id: u64,
    blocks: Vec<ReplayBlock>,
    source: Pinned<RpcSource>,
}

/// Opens `o.url` behind the answer cache and reads the blocks of `o`'s range.
async fn open_rpc(o: &RpcOptions) -> Result<OpenRpc, BacktestError> {
    if o.from == 0 || o.to < o.from {
        return Err(BacktestError::Range {
            from: o.from,
            to: o.to,
            detail: "needs 1 <= from <= to (block `from` is forked at its parent)".into(),
        });
    }
    let cache = RpcCache::open(&o.cache_dir, o.requests_per_s)?;
    let provider = cached_provider(&o.url, &cache)?;
    let chain_id = {
        let mut delay = Duration::from_millis(100);
        let mut id = None;
        for _ in 0..6 {
            match provider.get_chain_id().await {
                Ok(c) => {
                    id = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(delay).await,
            }
            delay *= 2;
        }
        id.ok_or_else(|| BacktestError::Block {
            block: o.from,
            detail: "eth_chainId failed (endpoint not shown)".into(),
        })?
    };
    let base = fetch_block(&provider, o.from - 1).await?;
    let mut blocks = Vec::new();
    for n in o.from..=o.to {
        blocks.push(replay_block(&fetch_block(&provider, n).await?));
    }
    let policy = RetryPolicy { call_timeout: Duration::from_secs(10), ..RetryPolicy::default() };
    let source =
        Pinned { inner: RpcSource::new(provider, 200).with_policy(policy), base: base.header.hash };
    Ok(OpenRpc { chain_id, blocks, source })
}

/// A cassette writer at `path` for `rpc`'s run with `setup`, its events written, and the
/// source that records every read into it.
fn recording(
    path: &Path,
    setup: &Setup,
    rpc: &OpenRpc,
) -> Result<(Arc<CassetteWriter>, RecordingSource<Pinned<RpcSource>>), BacktestError> {
    let (from, to) =
        (rpc.blocks.first().map_or(0, |b| b.number), rpc.blocks.last().map_or(0, |b| b.number));
    let meta = CassetteMeta {
        chain_id: rpc.chain_id,
        block_time_ms: setup.chain.block_time_ms,
        started_unix_ms: 0,
        executor: setup.chain.executor,
        venues: setup.chain.venues.iter().map(|v| v.address).collect(),
        tokens: setup.chain.tokens.iter().map(|t| t.address).collect(),
        lenders: Vec::new(),
        watched: Vec::new(),
        note: format!("cantilever backtest blocks {from}..={to} operator={}", setup.operator),
    };
    let writer = Arc::new(CassetteWriter::create(path, meta)?);
    write_events(&writer, rpc.chain_id, &rpc.blocks)?;
    let source = RecordingSource::new(rpc.source.clone(), writer.clone());
    Ok((writer, source))
}

/// Runs a backtest over an archive RPC (see the [module docs](self)). Call inside a
/// multi-thread tokio runtime.
///
/// # Errors
/// [`BacktestError`] naming what could not be read or run.
pub async fn run_rpc(o: &RpcOptions) -> Result<BacktestReport, BacktestError> {
    let rpc = open_rpc(o).await?;
    let setup = Setup::load(o.config.as_ref(), o.chain.as_deref(), rpc.chain_id, o.operator)?;
    let label = format!("rpc blocks {}..={}", o.from, o.to);
    let report = match &o.record {
        None => drive(rpc.source, &rpc.blocks, &setup, &label, o.progress).await?,
        Some(path) => {
            let (writer, source) = recording(path, &setup, &rpc)?;
            let r = drive(source, &rpc.blocks, &setup, &label, o.progress).await;
            writer.finish()?;
            r?
        }
    };
    Ok(report)
}

/// Writes `blocks` as cassette events: each block's transactions as pending, then its head.
fn write_events(
    w: &CassetteWriter,
    chain_id: u64,
    blocks: &[ReplayBlock],
) -> Result<(), CassetteError> {
    let now = Instant::now();
    for b in blocks {
        for tx in &b.txs {
            let p = PendingTx { chain_id, tx: tx.clone(), received_at: now };
            w.event(&Event::Pending(Box::new(p)))?;
        }
        w.event(&Event::Head(Head {
            chain_id,
            number: b.number,
            hash: b.hash,
            parent_hash: b.parent_hash,
            timestamp: b.timestamp,
            base_fee: b.base_fee,
            gas_limit: b.gas_limit,
            received_at: now,
        }))?;
    }
    Ok(())
}

/// The blocks of a cassette: each head with the pending transactions recorded before it.
pub fn cassette_blocks(c: &Cassette) -> Vec<ReplayBlock> {
    let mut out = Vec::new();
    let mut txs = Vec::new();
    for t in &c.events {
        match &t.event {
            Event::Pending(p) => txs.push(p.tx.clone()),
            Event::Head(h) => out.push(ReplayBlock {
                number: h.number,
                hash: h.hash,
                parent_hash: h.parent_hash,
                timestamp: h.timestamp,
                base_fee: h.base_fee,
                gas_limit: h.gas_limit,
                txs: std::mem::take(&mut txs),
            }),
            _ => {}
        }
    }
    out
}

/// Runs a backtest on a cassette written by `backtest --record` (no network). Call inside a
/// multi-thread tokio runtime.
///
/// # Errors
/// [`BacktestError`] naming what could not be read or run.
pub async fn run_cassette(
    cassette: &Cassette,
    setup: &Setup,
    label: &str,
    progress: bool,
) -> Result<BacktestReport, BacktestError> {
    let blocks = cassette_blocks(cassette);
    drive(cassette.source(), &blocks, setup, label, progress).await
}

/// The operator a cassette was recorded for (`operator=0x…` in its note).
pub fn cassette_operator(c: &Cassette) -> Option<Address> {
    crate::bench::operator_of(&c.meta.note)
}

/// What the engine decided about one opportunity, with the judge's verdict when it signed.
#[derive(Debug, Default)]
struct Outcome {
    verdict: Option<Verdict>,
    target: u64,
}

/// The engine with its refresher, driven one input at a time.
struct Driver<S> {
    engine: Engine,
    refresher: crate::state::Refresher<S>,
    cmds: crossbeam_channel::Receiver<FeederCmd>,
    jobs: tokio::sync::mpsc::UnboundedReceiver<ExecJob>,
}

impl<S: StateSource> Driver<S> {
    /// Handles `input`, then serves the engine's requests to the feeder until none is left
    /// (watched keys are read at the current head and handed over, as the feeder does).
    async fn handle(&mut self, input: Input) {
        self.engine.handle(input);
        while let Ok(cmd) = self.cmds.try_recv() {
            match cmd {
                FeederCmd::Watch(keys) => {
                    self.refresher.watch(keys);
                    match self.refresher.prefetch().await {
                        Ok(Some(update)) => {
                            let msg = BlockMsg::new(update, Instant::now()).answering_watch();
                            self.engine.handle(Input::Block(Box::new(msg)));
                        }
                        Ok(None) => {
                            self.engine.stats().watches.fetch_sub(1, Ordering::AcqRel);
                        }
                        Err(e) => {
                            self.engine.stats().watches.fetch_sub(1, Ordering::AcqRel);
                            tracing::warn!(error = %e, "backtest: prefetch failed");
                        }
                    }
                }
                FeederCmd::Unwatch(a) => self.refresher.unwatch(&a),
                FeederCmd::Full => self.refresher.request_full(),
            }
        }
    }

    fn take_jobs(&mut self) -> Vec<ExecJob> {
        let mut v = Vec::new();
        while let Ok(j) = self.jobs.try_recv() {
            v.push(j);
        }
        v
    }
}

/// Judges `jobs` (decided while the judge's head is their target's parent), reports each
/// outcome to the engine, and returns the landed transactions with their opportunity ids.
async fn settle<S: StateSource>(
    jobs: Vec<ExecJob>,
    judge: &mut Judge<S>,
    driver: &mut Driver<S>,
    recorded: &[BlockTx],
    env: &crate::sim::NextBlock,
    outcomes: &mut BTreeMap<u64, Outcome>,
    operator: Address,
) -> Result<Vec<(u64, revm::context::TxEnv)>, BacktestError> {
    let mut landed = Vec::new();
    for job in jobs {
        // A backrun goes right after its victim (the last transaction it leads with), after
        // every earlier transaction of the block; a head trade at the top of the block.
        let before: &[BlockTx] = match job.leading.last() {
            Some(victim) => {
                let h = keccak256(victim);
                match recorded.iter().position(|t| t.hash == h) {
                    Some(i) => &recorded[..=i],
                    None => recorded,
                }
            }
            None => &[],
        };
        let verdict = judge.judge(&job, before, env).await?;
        let nonce = job.txs.first().map_or(0, |t| t.nonce);
        if verdict.landed
            && let Some(t) = job.txs.first()
        {
            landed.push((job.opportunity, judge::bot_env(&t.raw, operator)?));
        }
        let (delta, gas_usd) = (verdict.profit_raw, verdict.gas_usd);
        let result = if verdict.landed {
            ExecResult::Included { pnl_usd: verdict.pnl_usd }
        } else {
            ExecResult::Reverted { gas_usd: -verdict.pnl_usd }
        };
        driver
            .handle(Input::Exec(ExecReport {
                opportunity: job.opportunity,
                route: job.route,
                nonce,
                result,
                delta,
                gas_usd,
            }))
            .await;
        outcomes.insert(job.opportunity, Outcome { verdict: Some(verdict), target: env.number });
    }
    Ok(landed)
}

/// One chain's backtest in progress: the engine (live code path, execution wired to the judge),
/// the judge following the recorded chain, and what they decided so far.
struct ChainRun<S> {
    setup: Setup,
    source: S,
    driver: Driver<S>,
    judge: Judge<S>,
    ledger: LedgerHandle,
    ledger_path: PathBuf,
    run: crate::ledger::RunId,
    outcomes: BTreeMap<u64, Outcome>,
    peg: Vec<PegRow>,
    /// Bot transactions that landed (with their opportunity ids), by the block they landed in.
    landed: BTreeMap<u64, Vec<(u64, revm::context::TxEnv)>>,
    /// Also read the peg where each head trade lands, before it and after it alone
    /// (cross-chain runs).
    peg_per_tx: bool,
    /// Those readings (before, after), by opportunity.
    tx_peg: BTreeMap<u64, (Vec<judge::PegReading>, Vec<judge::PegReading>)>,
    transactions: u64,
    /// Where a transaction signed now would land: the top of the block after the last one
    /// replayed (set by [`Self::block`]).
    next_env: Option<crate::sim::NextBlock>,
}

impl<S: StateSource + Clone + 'static> ChainRun<S> {
    /// Warms the engine and the judge up at the source's latest block (the first block's parent).
    async fn start(source: S, setup: &Setup) -> Result<Self, BacktestError> {
        let chain = &setup.chain;
        let operator = setup.operator;
        let warmed = warm_up(source.clone(), chain, &setup.strategies, SpecId::PRAGUE, operator)
            .await
            .map_err(|e| BacktestError::Engine(e.to_string()))?;
        let Warmed { refresher, cache, sim, market } = warmed;
        let judge = Judge::new(source.clone(), chain, operator).await?;
        let start_nonce = cache.account(&operator).map_or(0, |a| a.nonce);
        let tmp = std::env::temp_dir();
        let id = uuid::Uuid::new_v4();
        let ledger_path = tmp.join(format!("cantilever-backtest-{id}.db"));
        let ledger = Ledger::open(&ledger_path, B256::ZERO, env!("CARGO_PKG_VERSION"))?;
        let run = ledger.run_id();
        let ledger = ledger.spawn()?;
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (exec_tx, exec_rx) = tokio::sync::mpsc::unbounded_channel();
        let executor = chain.executor.ok_or_else(|| BacktestError::Config {
            file: chain.name.clone(),
            detail: "no executor address".into(),
        })?;
        let params = EngineParams {
            chain: chain.clone(),
            strategies: setup.strategies.clone(),
            risk: setup.risk.clone(),
            // The live path, with the execution channel wired to the judge: no submitter exists.
            mode: Mode::Live,
            halt: Halt::load(tmp.join(format!("cantilever-backtest-{id}.halt"))),
            executor,
            operator,
            signer: Some(TxSigner::new(throwaway_key()?)),
            start_nonce,
            spec: SpecId::PRAGUE,
            prove_top: PROVE_TOP,
            ledger: Some(ledger.clone()),
            histograms: None,
            // The backtest drives the engine directly, never through its loop.
            busy_poll: false,
        };
        let engine = Engine::new(
            params,
            cache,
            sim,
            market,
            cmd_tx,
            Some(exec_tx),
            Arc::new(EngineStats::default()),
        )
        .map_err(|e| BacktestError::Engine(e.to_string()))?;
        Ok(Self {
            setup: setup.clone(),
            source,
            driver: Driver { engine, refresher, cmds: cmd_rx, jobs: exec_rx },
            judge,
            ledger,
            ledger_path,
            run,
            outcomes: BTreeMap::new(),
            peg: Vec::new(),
            landed: BTreeMap::new(),
            peg_per_tx: false,
            tx_peg: BTreeMap::new(),
            transactions: 0,
            next_env: None,
        })
    }

    async fn block_info(&self, hash: B256) -> Result<BlockRef, BacktestError> {
        self.source
            .block(hash)
            .await
            .map(|i| i.block)
            .map_err(|e| BacktestError::State(e.to_string()))
    }

    /// Replays block `b` (`next` is the block after it, when the run has one): its
    /// transactions as the pending stream, then the block as the head; judges what the engine
    /// signed and reads the peg with and without the bot.
    async fn block(
        &mut self,
        b: &ReplayBlock,
        next: Option<&ReplayBlock>,
    ) -> Result<(), BacktestError> {
        let chain_id = self.setup.chain.chain_id;
        let operator = self.setup.operator;
        let info = self.block_info(b.hash).await?;
        let recorded = b.txs.iter().map(recorded_env).collect::<Result<Vec<_>, _>>()?;
        self.transactions += b.txs.len() as u64;
        // The block's transactions, in order, as the pending stream.
        for tx in &b.txs {
            let p = PendingTx { chain_id, tx: tx.clone(), received_at: Instant::now() };
            self.driver.handle(Input::Pending(Box::new(p))).await;
        }
        let jobs = self.driver.take_jobs();
        let env = Judge::<S>::env_of(&info);
        let l = settle(
            jobs,
            &mut self.judge,
            &mut self.driver,
            &recorded,
            &env,
            &mut self.outcomes,
            operator,
        )
        .await?;
        self.landed.entry(b.number).or_default().extend(l);
        // The real block as the head.
        self.judge.advance(b.hash).await?;
        match self.driver.refresher.on_head(b.hash).await {
            Ok(Some(update)) => {
                let msg = BlockMsg::new(update, Instant::now());
                self.driver.handle(Input::Block(Box::new(msg))).await;
            }
            Ok(None) => {}
            Err(e) => {
                let reason = format!("block {}: {e}", b.number);
                self.driver.handle(Input::Stale { reason }).await;
            }
        }
        self.next_env = Some(match next {
            Some(n) => Judge::<S>::env_of(&self.block_info(n.hash).await?),
            None => self.judge.env_after_head()?,
        });
        self.settle_head_jobs().await?;
        // The peg at the end of the block, without and with the bot's landed transactions.
        let landed = self.landed.get(&b.number).cloned().unwrap_or_default();
        let extra: Vec<_> = landed.iter().map(|l| l.1.clone()).collect();
        // In the environment of the block they landed in (their deadline is that block).
        let without = self.judge.peg(&[], &env).await?;
        let with =
            if extra.is_empty() { without.clone() } else { self.judge.peg(&extra, &env).await? };

        for ((pool, w0), (_, w1)) in without.into_iter().zip(with) {
            self.peg.push(PegRow { block: b.number, pool, without_bps: w0, with_bps: w1 });
        }
        Ok(())
    }

    /// Judges what the engine signed since the last head (head trades, cross-chain legs) at the
    /// top of the next block; false when it signed nothing.
    async fn settle_head_jobs(&mut self) -> Result<bool, BacktestError> {
        let jobs = self.driver.take_jobs();
        if jobs.is_empty() {
            return Ok(false);
        }
        let env = match self.next_env {
            Some(e) => e,
            None => self.judge.env_after_head()?,
        };
        let operator = self.setup.operator;
        let l = settle(
            jobs,
            &mut self.judge,
            &mut self.driver,
            &[],
            &env,
            &mut self.outcomes,
            operator,
        )
        .await?;
        if self.peg_per_tx {
            // At the top of the next block: the judge's head state, then the transaction alone.
            for (opportunity, tx) in &l {
                let before = self.judge.peg(&[], &env).await?;
                let after = self.judge.peg(std::slice::from_ref(tx), &env).await?;
                self.tx_peg.insert(*opportunity, (before, after));
            }
        }
        self.landed.entry(env.number).or_default().extend(l);
        Ok(true)
    }

    /// Closes the ledger and aggregates the report.
    fn finish(self, label: &str, blocks: &[ReplayBlock]) -> Result<BacktestReport, BacktestError> {
        let Self { setup, driver, ledger, ledger_path, run, outcomes, peg, transactions, .. } =
            self;
        drop(driver);
        ledger.flush()?;
        ledger.close()?;
        let records = crate::ledger::read_records(&ledger_path, run)?;
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", ledger_path.display()));
        }
        let decisions = decision_rows(&records, &outcomes);
        Ok(BacktestReport::new(
            label,
            &setup.chain,
            blocks.first().map_or(0, |b| b.number),
            blocks.last().map_or(0, |b| b.number),
            blocks.len() as u64,
            transactions,
            decisions,
            peg,
        ))
    }
}

/// The backtest proper over any state source whose `latest()` is the parent of the first block.
async fn drive<S: StateSource + Clone + 'static>(
    source: S,
    blocks: &[ReplayBlock],
    setup: &Setup,
    label: &str,
    progress: bool,
) -> Result<BacktestReport, BacktestError> {
    let mut run = ChainRun::start(source, setup).await?;
    let bar = progress_bar(blocks.len() as u64, progress);
    for (i, b) in blocks.iter().enumerate() {
        bar.set_message(format!("block {}", b.number));
        run.block(b, blocks.get(i + 1)).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    run.finish(label, blocks)
}

fn decision_rows(records: &[Record], outcomes: &BTreeMap<u64, Outcome>) -> Vec<DecisionRow> {
    let mut rows: BTreeMap<u64, DecisionRow> = BTreeMap::new();
    for r in records {
        match r {
            Record::Opportunity(o) => {
                rows.insert(
                    o.id,
                    DecisionRow {
                        opportunity: o.id,
                        block: o.block,
                        strategy: o.strategy.clone(),
                        route: o.route.clone(),
                        expected_profit_usd: o.expected_profit_usd.unwrap_or(0.0),
                        ..DecisionRow::default()
                    },
                );
            }
            Record::Decision(d) => {
                if let Some(row) = rows.get_mut(&d.opportunity_id) {
                    row.approved = d.approved;
                    row.refusal.clone_from(&d.refusal_kind);
                }
            }
            _ => {}
        }
    }
    for (id, o) in outcomes {
        if let (Some(row), Some(v)) = (rows.get_mut(id), &o.verdict) {
            row.signed = true;
            row.landed = v.landed;
            row.landed_in = o.target;
            row.gas_used = v.gas_used;
            row.pnl_usd = v.pnl_usd;
            row.failure.clone_from(&v.failure);
        }
    }
    rows.into_values().collect()
}

fn progress_bar(len: u64, on: bool) -> indicatif::ProgressBar {
    if !on {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "backtest {bar:40} {pos}/{len} blocks {msg} ({elapsed})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Writes `text` to `path`, naming the file on failure.
///
/// # Errors
/// The I/O error with the file's name.
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}
