//! `cantilever bench`: a cassette replayed through the real engine, timed per stage.
//!
//! ```text
//!  Cassette ─▶ CassetteSource ─▶ warm_up ─▶ Warmed ─┐
//!     │                                             ▼
//!     └─▶ lockstep driver ─▶ ingest::channels ─▶ engine::start (feeder + engine thread, shadow)
//!              ▲ waits for EngineStats::handled        │ StageHistograms
//!              └───────────────────────────────────────┴──▶ BenchReport (text, JSON, HTML)
//! ```
//!
//! The engine runs in shadow mode with a throwaway key generated in-process: every approved
//! candidate is proven and signed, nothing is sent (no exec task exists). Events go in at full
//! speed but in lockstep: the next one is sent as soon as the engine has handled the previous
//! one, so each latency is the pipeline's, never time spent queued behind earlier events (and the
//! feeder does not coalesce a burst of heads into one, as it rightly does live).
//!
//! Head decode (`decode` of a head) is the only stage the engine does not time itself (live it is
//! the ingest task's JSON parsing): the driver times parsing each head's `newHeads` notification
//! frame, rebuilt from the recorded head, and stamps the head as received before that parse, so a
//! head's end-to-end latency runs from the frame to the signed transaction.
//!
//! `--pools N` adds N synthetic PMM pools: copies of a real pool's configuration at fresh
//! addresses whose code and storage the state source answers from the real pool's recorded
//! answers ([`SynthSource`]), so the engine warms, refreshes, screens and proves them as real ones.

pub mod baseline;
mod html;
pub mod record;
mod synth;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use revm::primitives::hardfork::SpecId;
use serde::Serialize;

use crate::{
    cassette::{Cassette, CassetteError},
    config::{ChainConfig, Config, EngineConfig, RiskConfig, StrategiesConfig},
    engine::{RunError, StartOptions, start, warm_up},
    ingest::{self, Event, Head, IngestCounters},
    telemetry::{EventKind, Percentiles, SharedHistograms, Stage, StageHistograms},
};

pub use baseline::{BaselineReport, CassetteRpc, EventTap, Synthetic, run_baseline};
pub use html::render_html;
pub use synth::{SynthSource, add_synthetic_pools};

/// Candidates proven per event (as `cantilever run`).
pub const PROVE_TOP: usize = 4;
/// The stages a bench reports, in pipeline order (submission is stopped after signing);
/// pending transactions have no [`Stage::Fetch`] (their state is the head's).
pub const STAGES: [Stage; 10] = [
    Stage::Decode,
    Stage::Fetch,
    Stage::Handoff,
    Stage::StateApply,
    Stage::Screen,
    Stage::Size,
    Stage::Sim,
    Stage::Risk,
    Stage::Sign,
    Stage::EndToEnd,
];
/// The most synthetic pools a run evaluates the eth_call baselines with (a call per screened
/// route grows with the pools: about 0.6 routes per pool per head).
pub const BASELINE_MAX_POOLS: usize = 200;
/// The pool counts `--sweep` runs.
pub const SWEEP: [usize; 3] = [100, 1_000, 10_000];
/// The pending-transaction rates (per second) `--sweep` runs.
pub const RATES: [f64; 3] = [10.0, 100.0, 1_000.0];
/// How long each paced run sends pending transactions, seconds (by default).
pub const RATE_SECONDS: f64 = 2.0;
/// The default time budget of each sweep run's replay.
pub const SWEEP_BUDGET: Duration = Duration::from_secs(120);
/// How long the driver waits for the engine to handle one event before moving on.
const SETTLE: Duration = Duration::from_secs(5);

/// Where the bench takes the chain's configuration from.
#[derive(Clone, Debug)]
pub enum ConfigFile {
    /// A TOML configuration (URLs are not used; unset `${VAR}`s are allowed).
    Toml(PathBuf),
    /// A devnet manifest (`cantilever devnet --out FILE`), made into the devnet configuration.
    Manifest(PathBuf),
}

/// What to bench.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The cassette.
    pub events: PathBuf,
    /// The configuration the cassette was recorded with.
    pub config: ConfigFile,
    /// The chain's name in the configuration (default: the one with the cassette's chain id).
    pub chain: Option<String>,
    /// Synthetic pools to add (0: none).
    pub pools: usize,
    /// Evaluate every screened route and proven candidate again over RPC on anvil (the eth_call
    /// baselines); only up to [`BASELINE_MAX_POOLS`] synthetic pools.
    pub baseline: bool,
    /// Pace pending transactions at this rate instead of lockstep (see [`Pacing`]).
    pub rate: Option<f64>,
    /// How long a paced run sends pending transactions, seconds.
    pub rate_seconds: f64,
    /// Stop sending events once the replay has run this long (the report says how many went in).
    pub budget: Option<Duration>,
    /// Run the engine busy-polling its inputs ([`EngineConfig::busy_poll`]).
    pub busy_poll: bool,
}

impl BenchOptions {
    /// A lockstep bench of `events` with `config`, no synthetic pools, no baseline.
    pub const fn new(events: PathBuf, config: ConfigFile) -> Self {
        Self {
            events,
            config,
            chain: None,
            pools: 0,
            baseline: false,
            rate: None,
            rate_seconds: RATE_SECONDS,
            budget: None,
            busy_poll: false,
        }
    }
}

/// Why a bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The cassette could not be read.
    #[error(transparent)]
    Cassette(#[from] CassetteError),
    /// The configuration could not be read.
    #[error("configuration {file}: {detail}")]
    Config {
        /// The file.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// The engine could not start on the cassette's state.
    #[error("engine: {0}")]
    Engine(#[from] RunError),
    /// Synthetic pools could not be made.
    #[error("synthetic pools: {0}")]
    Synth(String),
    /// The replay failed.
    #[error("replay: {0}")]
    Replay(String),
    /// The eth_call baseline could not run.
    #[error("baseline: {0}")]
    Baseline(String),
}

/// One stage's latencies, nanoseconds.
#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    /// Stage label (`decode`, ..., `end_to_end`).
    pub stage: &'static str,
    /// Percentiles, max and count.
    #[serde(flatten)]
    pub latency: Percentiles,
    /// Mean.
    pub mean_ns: f64,
    /// Counts in log-spaced buckets (4 per decade from 100 ns): `(upper bound ns, count)`.
    pub histogram: Vec<(u64, u64)>,
}

/// Every stage of one event kind.
#[derive(Clone, Debug, Serialize)]
pub struct KindReport {
    /// `head` or `pending`.
    pub kind: &'static str,
    /// Events of this kind replayed.
    pub events: u64,
    /// Stages in pipeline order.
    pub stages: Vec<StageReport>,
}

impl KindReport {
    /// The report of `stage`.
    pub fn stage(&self, stage: Stage) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.stage == stage.as_str())
    }
}

/// Engine counters at the end of the replay.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineCounts {
    /// Heads processed.
    pub heads: u64,
    /// Pending transactions seen.
    pub pending: u64,
    /// Candidates simulated.
    pub simulated: u64,
    /// Candidates approved (signed).
    pub approved: u64,
    /// Candidates refused.
    pub refused: u64,
    /// Candidates skipped for cold state.
    pub cold_skips: u64,
    /// Full state re-reads the engine applied during the replay.
    pub full_reads: u64,
}

/// What one bench run measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The cassette.
    pub cassette: String,
    /// The chain.
    pub chain: String,
    /// Venues in the market (synthetic ones included).
    pub venues: usize,
    /// Synthetic pools added.
    pub synthetic_pools: usize,
    /// Candidate routes.
    pub routes: usize,
    /// Events replayed (heads, pending transactions, markers).
    pub events: u64,
    /// Wall time of the replay, seconds.
    pub elapsed_s: f64,
    /// Events per second through the engine (closed loop: one at a time).
    pub events_per_s: f64,
    /// Resident set size after the replay, bytes (0 where /proc is absent).
    pub rss_bytes: u64,
    /// Peak resident set size of the process, bytes.
    pub peak_rss_bytes: u64,
    /// Events the engine did not finish within 5 s (0 on a healthy run).
    pub unsettled: u64,
    /// Whether the replay stopped early at its time budget (the later events were not sent).
    pub cut_short: bool,
    /// Engine counters.
    pub counts: EngineCounts,
    /// Head events.
    pub head: KindReport,
    /// Pending-transaction events.
    pub pending: KindReport,
    /// Build profile (`debug` or `release`).
    pub profile: &'static str,
    /// Whether the engine busy-polled its inputs instead of parking between events.
    pub busy_poll: bool,
    /// The eth_call baseline on the same events (when asked).
    pub baseline: Option<BaselineReport>,
    /// How pending transactions were paced (`None`: lockstep).
    pub pacing: Option<Pacing>,
}

/// A paced run: pending transactions sent at a fixed rate on the replay clock, without waiting
/// for the engine (heads still wait until the engine is idle). Each recorded pending transaction
/// is sent `repeat` times in a row, at its place in the recording, so every rate replays the
/// same victims on the same state; end-to-end latency then includes time spent queued.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pacing {
    /// Target rate, pending transactions per second.
    pub rate: f64,
    /// Sends of each recorded pending transaction.
    pub repeat: u64,
    /// Pending transactions sent.
    pub sent: u64,
    /// Achieved rate over the pending bursts.
    pub achieved_rate: f64,
    /// Pending transactions the engine examined (the rest were dropped from a full queue).
    pub examined: u64,
    /// Candidates signed in the run (heads included).
    pub signed: u64,
    /// Pending transactions already queued ahead of each one sent.
    pub queue_depth: Percentiles,
    /// Sends that found the engine behind the clock by more than one interval.
    pub late: u64,
}

impl BenchReport {
    /// The report of one kind.
    pub const fn kind(&self, kind: EventKind) -> &KindReport {
        match kind {
            EventKind::Head => &self.head,
            EventKind::Pending => &self.pending,
        }
    }
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1_000.0)
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "bench {} ({} profile{}): chain {}, {} venues ({} synthetic), {} routes",
            self.cassette,
            self.profile,
            if self.busy_poll { ", engine busy-polling" } else { "" },
            self.chain,
            self.venues,
            self.synthetic_pools,
            self.routes
        )?;
        writeln!(
            f,
            "{} events in {:.3} s: {:.0} events/s; RSS {:.1} MB (peak {:.1} MB); {} unsettled",
            self.events,
            self.elapsed_s,
            self.events_per_s,
            self.rss_bytes as f64 / 1e6,
            self.peak_rss_bytes as f64 / 1e6,
            self.unsettled
        )?;
        if self.cut_short {
            writeln!(f, "cut short at its time budget: later events were not sent")?;
        }
        let c = &self.counts;
        writeln!(
            f,
            "engine: {} heads, {} pending, {} simulated, {} signed, {} refused, {} cold skips, {} full re-reads",
            c.heads, c.pending, c.simulated, c.approved, c.refused, c.cold_skips, c.full_reads
        )?;
        for k in [&self.head, &self.pending] {
            writeln!(f, "\n{} events: {}   (µs)", k.kind, k.events)?;
            writeln!(
                f,
                "{:<12} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
                "stage", "count", "p50", "p90", "p99", "p99.9", "max"
            )?;
            for s in &k.stages {
                let l = &s.latency;
                writeln!(
                    f,
                    "{:<12} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
                    s.stage,
                    l.count,
                    us(l.p50),
                    us(l.p90),
                    us(l.p99),
                    us(l.p999),
                    us(l.max)
                )?;
            }
        }
        if let Some(p) = &self.pacing {
            writeln!(
                f,
                "\npaced at {:.0} pending/s ({} sends of each recorded one): {} sent at {:.0}/s, {} examined, queue depth p50 {} p99 {} max {}, {} late",
                p.rate,
                p.repeat,
                p.sent,
                p.achieved_rate,
                p.examined,
                p.queue_depth.p50,
                p.queue_depth.p99,
                p.queue_depth.max,
                p.late
            )?;
        }
        if let Some(b) = &self.baseline {
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

/// How latency and memory grow with the pool count and the pending rate (`--sweep`).
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    /// The lockstep run without synthetic pools (with the baseline when asked).
    pub base: BenchReport,
    /// One lockstep run per pool count.
    pub runs: Vec<BenchReport>,
    /// One paced run per pending rate.
    pub rates: Vec<BenchReport>,
    /// Pool counts or rates whose run failed, with why.
    pub failures: Vec<String>,
}

impl SweepReport {
    /// Every run: base, pool counts, rates.
    pub fn all(&self) -> Vec<BenchReport> {
        std::iter::once(&self.base).chain(&self.runs).chain(&self.rates).cloned().collect()
    }
}

/// The pools table of a sweep.
fn pools_table(f: &mut std::fmt::Formatter<'_>, runs: &[BenchReport]) -> std::fmt::Result {
    writeln!(
        f,
        "{:>8} {:>8} {:>14} {:>14} {:>14} {:>17} {:>12}",
        "pools",
        "routes",
        "head e2e p50",
        "head e2e p99",
        "pending p99",
        "head p99 vs first",
        "RSS MB"
    )?;
    let first = runs.first().map(|r| e2e(&r.head).p99).unwrap_or(0);
    for r in runs {
        let p = e2e(&r.head);
        let ratio = if first == 0 { 0.0 } else { p.p99 as f64 / first as f64 };
        writeln!(
            f,
            "{:>8} {:>8} {:>12}µs {:>12}µs {:>12}µs {:>16.2}× {:>12.1}{}",
            r.synthetic_pools,
            r.routes,
            us(p.p50),
            us(p.p99),
            us(e2e(&r.pending).p99),
            ratio,
            r.rss_bytes as f64 / 1e6,
            if r.cut_short { "  (cut short at its budget)" } else { "" }
        )?;
    }
    Ok(())
}

/// The rates table of a sweep.
fn rates_table(f: &mut std::fmt::Formatter<'_>, runs: &[BenchReport]) -> std::fmt::Result {
    writeln!(
        f,
        "{:>8} {:>8} {:>9} {:>9} {:>14} {:>14} {:>12} {:>12} {:>6}",
        "rate/s",
        "sent",
        "achieved",
        "examined",
        "pending p50",
        "pending p99",
        "queue p99",
        "queue max",
        "late"
    )?;
    for r in runs {
        let Some(p) = &r.pacing else { continue };
        let l = e2e(&r.pending);
        writeln!(
            f,
            "{:>8.0} {:>8} {:>9.0} {:>9} {:>12}µs {:>12}µs {:>12} {:>12} {:>6}",
            p.rate,
            p.sent,
            p.achieved_rate,
            p.examined,
            us(l.p50),
            us(l.p99),
            p.queue_depth.p99,
            p.queue_depth.max,
            p.late
        )?;
    }
    Ok(())
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.base)?;
        writeln!(
            f,
            "
scaling with synthetic pools (lockstep):"
        )?;
        pools_table(f, &self.runs)?;
        writeln!(
            f,
            "
scaling with the pending rate (paced; latency includes queueing):"
        )?;
        rates_table(f, &self.rates)?;
        for e in &self.failures {
            writeln!(f, "failed: {e}")?;
        }
        Ok(())
    }
}

fn e2e(k: &KindReport) -> Percentiles {
    k.stage(Stage::EndToEnd).map(|s| s.latency).unwrap_or_default()
}

/// The chain, strategies and desk limits of `file`.
///
/// # Errors
/// [`BenchError::Config`] naming the file and the problem.
pub fn load_chain(
    file: &ConfigFile,
    name: Option<&str>,
    chain_id: u64,
) -> Result<(ChainConfig, StrategiesConfig, RiskConfig, Option<Address>), BenchError> {
    let (path, cfg, operator) = match file {
        ConfigFile::Toml(p) => {
            // URLs are never used: an unset variable is filled with a placeholder.
            let env = |v: &str| std::env::var(v).ok().or_else(|| Some("http://127.0.0.1:9".into()));
            let cfg = Config::load_with_env(p, &env);
            (p, cfg.map_err(|e| e.to_string()), None)
        }
        ConfigFile::Manifest(p) => {
            let read = std::fs::read_to_string(p).map_err(|e| e.to_string());
            let m = read.and_then(|s| {
                serde_json::from_str::<crate::devnet::DevnetManifest>(&s).map_err(|e| e.to_string())
            });
            let operator =
                m.as_ref().ok().and_then(|m| m.chain(chain_id)).map(|c| c.accounts.operator);
            let cfg = m.and_then(|m| crate::devnet::devnet_config(&m).map_err(|e| e.to_string()));
            (p, cfg, operator)
        }
    };
    let err = |detail: String| BenchError::Config { file: path.display().to_string(), detail };
    let cfg = cfg.map_err(err)?;
    let chain = match name {
        Some(n) => cfg.chain(n).cloned().ok_or_else(|| err(format!("no chain named `{n}`")))?,
        None => cfg
            .chains
            .iter()
            .find(|c| c.chain_id == chain_id)
            .cloned()
            .ok_or_else(|| err(format!("no chain with id {chain_id} (the cassette's)")))?,
    };
    Ok((chain, cfg.strategies, cfg.risk, operator))
}

/// The strategies a bench and an engine recording run: as configured, with backrun on and
/// allowed without a relay, so every pending victim is evaluated.
pub fn bench_strategies(mut s: StrategiesConfig) -> StrategiesConfig {
    s.backrun.enabled = true;
    s.backrun.bundle_only = false;
    s
}

/// The operator a cassette was recorded for (`operator=0x…` in its note).
pub fn operator_of(note: &str) -> Option<Address> {
    note.split_whitespace().find_map(|w| w.strip_prefix("operator=")?.parse().ok())
}

/// An engine configuration in shadow mode whose halt file does not exist.
fn shadow_engine(busy_poll: bool) -> EngineConfig {
    let dir = std::env::temp_dir();
    EngineConfig {
        ledger_path: dir.join("cantilever-bench-unused.db"),
        halt_file: dir.join(format!("cantilever-bench-{}.halt", uuid::Uuid::new_v4())),
        dry_run: true,
        shadow: true,
        busy_poll,
    }
}

/// A `newHeads` notification frame carrying `h`, as a node sends it.
fn head_frame(h: &Head) -> Result<String, BenchError> {
    let header = alloy::rpc::types::Header {
        hash: h.hash,
        inner: alloy::consensus::Header {
            parent_hash: h.parent_hash,
            number: h.number,
            timestamp: h.timestamp,
            base_fee_per_gas: h.base_fee,
            gas_limit: h.gas_limit,
            ..Default::default()
        },
        total_difficulty: None,
        size: None,
    };
    let result = serde_json::to_value(&header).map_err(|e| BenchError::Replay(e.to_string()))?;
    let frame = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "eth_subscription",
        "params": { "subscription": "0x1", "result": result },
    });
    Ok(frame.to_string())
}

#[derive(serde::Deserialize)]
struct Frame {
    params: FrameParams,
}

#[derive(serde::Deserialize)]
struct FrameParams {
    result: alloy::rpc::types::Header,
}

/// The resident and peak resident set sizes of this process, bytes (zeros without /proc).
pub fn rss() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else { return (0, 0) };
    let kb = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// Replays a cassette through the engine and reports per-stage latencies. Call inside a
/// multi-thread tokio runtime.
///
/// # Errors
/// [`BenchError`] naming what could not be read or started.
pub async fn run_bench(o: &BenchOptions) -> Result<BenchReport, BenchError> {
    let cassette = Cassette::load(&o.events)?;
    run_cassette(&cassette, o).await
}

/// What `--sweep` runs.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Synthetic pool counts (lockstep runs).
    pub pools: Vec<usize>,
    /// Pending-transaction rates per second (paced runs, no synthetic pools).
    pub rates: Vec<f64>,
    /// Time budget of each pool count's and rate's replay (a run past it stops early and says
    /// so; route enumeration during warm-up is not bounded by it).
    pub budget: Option<Duration>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self { pools: SWEEP.to_vec(), rates: RATES.to_vec(), budget: Some(SWEEP_BUDGET) }
    }
}

/// The base run (lockstep, no synthetic pools, with the baseline when asked), then one run per
/// pool count and one per rate. A pool count or rate whose run fails (a route blow-up, say) is
/// reported in `failures` and the sweep goes on.
///
/// # Errors
/// As [`run_bench`], for the cassette and the base run.
pub async fn run_sweep(o: &BenchOptions, s: &SweepOptions) -> Result<SweepReport, BenchError> {
    let cassette = Cassette::load(&o.events)?;
    let base = run_cassette(&cassette, &BenchOptions { pools: 0, rate: None, ..o.clone() }).await?;
    let mut report =
        SweepReport { base, runs: Vec::new(), rates: Vec::new(), failures: Vec::new() };
    for &pools in &s.pools {
        let o = BenchOptions { pools, rate: None, baseline: false, budget: s.budget, ..o.clone() };
        match run_cassette(&cassette, &o).await {
            Ok(r) => report.runs.push(r),
            Err(e) => report.failures.push(format!("{pools} pools: {e}")),
        }
    }
    for &rate in &s.rates {
        let o = BenchOptions {
            pools: 0,
            rate: Some(rate),
            baseline: false,
            budget: s.budget,
            ..o.clone()
        };
        match run_cassette(&cassette, &o).await {
            Ok(r) => report.rates.push(r),
            Err(e) => report.failures.push(format!("{rate} pending/s: {e}")),
        }
    }
    Ok(report)
}

/// [`run_bench`] on a loaded cassette.
///
/// # Errors
/// As [`run_bench`].
pub async fn run_cassette(
    cassette: &Cassette,
    o: &BenchOptions,
) -> Result<BenchReport, BenchError> {
    let meta = &cassette.meta;
    let (mut chain, strategies, risk, manifest_operator) =
        load_chain(&o.config, o.chain.as_deref(), meta.chain_id)?;
    let strategies = bench_strategies(strategies);
    let operator = operator_of(&meta.note).or(manifest_operator).unwrap_or(Address::ZERO);
    let source = cassette.source();
    let synth = add_synthetic_pools(&mut chain, o.pools).map_err(BenchError::Synth)?;
    let synth_map = synth.clone();
    let history = cassette
        .answers
        .iter()
        .filter_map(|a| match a {
            crate::cassette::StateAnswer::Latest(i) | crate::cassette::StateAnswer::Block(i) => {
                Some((i.block.number, i.block.hash))
            }
            _ => None,
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    let source = SynthSource::new(source, synth, history);
    let warmed = warm_up(source, &chain, &strategies, SpecId::PRAGUE, operator).await?;
    let warm_head = warmed.head()?;
    let venues = warmed.market.venues.len();
    let (tx, rx) = ingest::channels(1_024, 8_192);
    let probe = (rx.heads.clone(), rx.pending.clone());
    let shared = SharedHistograms::new();
    let start_nonce = warmed.cache.account(&operator).map_or(0, |a| a.nonce);
    let opts = StartOptions {
        chain: chain.clone(),
        strategies,
        risk,
        engine: shadow_engine(o.busy_poll),
        operator,
        // A throwaway key: shadow mode signs, nothing is ever sent.
        signer: Some(PrivateKeySigner::random()),
        identity: None,
        start_nonce,
        ledger: None,
        histograms: Some(shared.clone()),
        spec: SpecId::PRAGUE,
        prove_top: PROVE_TOP,
    };
    let run = start(warmed, rx, opts)?;
    let counters = Arc::new(IngestCounters::default());
    let _ = run.stats.ingest.set(counters.clone());
    let routes = run.routes;
    // The baselines need every route the engine screens and every candidate it proves, per
    // event.
    let baseline = o.baseline && o.pools <= BASELINE_MAX_POOLS;
    let tap = if baseline {
        let (t, r) = crossbeam_channel::unbounded();
        let _ = run.stats.tap.set(t);
        let (st, sr) = crossbeam_channel::unbounded();
        let _ = run.stats.screen_tap.set(st);
        Some((r, sr))
    } else {
        None
    };

    // Frames are built before the clock starts; only their parsing is timed.
    let mut frames = Vec::with_capacity(cassette.events.len());
    for t in &cassette.events {
        frames.push(match &t.event {
            Event::Head(h) => Some(head_frame(h)?),
            _ => None,
        });
    }
    let recorded_pending =
        cassette.events.iter().filter(|t| matches!(t.event, Event::Pending(_))).count() as u64;
    let pace = o.rate.filter(|r| r.is_finite() && *r > 0.0).map(|rate| Pacing {
        rate,
        repeat: ((rate * o.rate_seconds) / recorded_pending.max(1) as f64).ceil().max(1.0) as u64,
        ..Pacing::default()
    });
    let driver = Driver {
        decode: StageHistograms::new().map_err(|e| BenchError::Replay(e.to_string()))?,
        rt: tokio::runtime::Handle::current(),
        lock: Lockstep::new(&run, probe.0, probe.1),
        chain_id: meta.chain_id,
        warm_head: warm_head.number,
        tap,
        pace,
        budget: o.budget,
    };
    let events = cassette.events.clone();
    let drive = tokio::task::spawn_blocking(move || driver.drive(&events, frames, &tx, &counters));
    let driven = drive.await.map_err(|e| BenchError::Replay(e.to_string()));
    let stats = run.stats.clone();
    run.stop(Duration::from_secs(2)).await;
    let Driven { sent, unsettled, elapsed, decode, candidates, pacing, kinds, cut_short } =
        driven??;
    let (rss_bytes, peak_rss_bytes) = rss();
    let mut hist = shared
        .with_latest(|h| h.cloned())
        .ok_or_else(|| BenchError::Replay("the engine published no histograms".into()))?;
    hist.merge(&decode).map_err(|e| BenchError::Replay(e.to_string()))?;
    let kind = |k: EventKind| KindReport {
        kind: k.as_str(),
        events: kinds[k as usize],
        stages: STAGES
            .iter()
            .filter(|s| k == EventKind::Head || **s != Stage::Fetch)
            .map(|s| StageReport {
                stage: s.as_str(),
                latency: hist.percentiles(k, *s),
                mean_ns: hist.mean(k, *s),
                histogram: hist.buckets(k, *s, 4),
            })
            .collect(),
    };
    let baseline = if baseline {
        let ours = |k| {
            let e2e = hist.percentiles(k, Stage::EndToEnd);
            (e2e.p50, e2e.p99)
        };
        // The copies' own state is the one their originals had at the warm-up block.
        let synthetic =
            (o.pools > 0).then(|| Synthetic { map: synth_map.clone(), pin: warm_head.number });
        Some(run_baseline(cassette, &candidates, synthetic, ours).await?)
    } else {
        None
    };
    let read = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    let counts = EngineCounts {
        heads: read(&stats.heads),
        pending: read(&stats.pending),
        simulated: read(&stats.simulated),
        approved: read(&stats.approved),
        refused: read(&stats.refused),
        cold_skips: read(&stats.cold_skips),
        full_reads: read(&stats.full_reads),
    };
    let pacing = pacing.map(|p| Pacing { examined: counts.pending, signed: counts.approved, ..p });
    Ok(BenchReport {
        cassette: o.events.display().to_string(),
        chain: chain.name.clone(),
        venues,
        synthetic_pools: o.pools,
        routes,
        events: sent,
        elapsed_s: secs,
        events_per_s: if secs > 0.0 { sent as f64 / secs } else { 0.0 },
        rss_bytes,
        peak_rss_bytes,
        unsettled,
        cut_short,
        counts,
        head: kind(EventKind::Head),
        pending: kind(EventKind::Pending),
        profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        busy_poll: o.busy_poll,
        baseline,
        pacing,
    })
}

/// What the driver did.
struct Driven {
    sent: u64,
    unsettled: u64,
    elapsed: Duration,
    decode: StageHistograms,
    candidates: Vec<EventTap>,
    pacing: Option<Pacing>,
    /// Events sent by kind (head, pending).
    kinds: [u64; 2],
    cut_short: bool,
}

/// Feeds the cassette's events to the engine (on a blocking thread).
struct Driver<Q> {
    decode: StageHistograms,
    rt: tokio::runtime::Handle,
    lock: Lockstep<Q>,
    chain_id: u64,
    warm_head: u64,
    tap: Option<(
        crossbeam_channel::Receiver<crate::engine::tap::ProvedCandidate>,
        crossbeam_channel::Receiver<crate::engine::tap::ScreenedEvent>,
    )>,
    pace: Option<Pacing>,
    budget: Option<Duration>,
}

impl<Q: Fn() -> usize> Driver<Q> {
    fn drive(
        mut self,
        events: &[crate::cassette::TimedEvent],
        frames: Vec<Option<String>>,
        tx: &ingest::EventSender,
        counters: &IngestCounters,
    ) -> Result<Driven, BenchError> {
        let replay = |e: crate::ingest::SendError| BenchError::Replay(e.to_string());
        let mut sent = 0u64;
        let mut unsettled = 0u64;
        let mut candidates = Vec::new();
        let mut depth = hdrhistogram::Histogram::<u64>::new(3)
            .map_err(|e| BenchError::Replay(e.to_string()))?;
        let (mut burst, mut late, mut paced) = (Duration::ZERO, 0u64, 0u64);
        let mut kinds = [0u64; 2];
        let mut cut_short = false;
        // The engine primes its hot path on its own thread before taking events.
        self.lock.wait_ready();
        let began = Instant::now();
        for (i, (t, frame)) in events.iter().zip(frames).enumerate() {
            if self.budget.is_some_and(|b| began.elapsed() > b) {
                cut_short = true;
                break;
            }
            let before = self.lock.handled();
            match (&t.event, frame) {
                (Event::Head(h), Some(frame)) => {
                    if h.number <= self.warm_head {
                        continue;
                    }
                    let t0 = Instant::now();
                    let f: Frame = serde_json::from_str(&frame)
                        .map_err(|e| BenchError::Replay(format!("head frame: {e}")))?;
                    let head = Head::from_rpc(self.chain_id, &f.params.result, t0);
                    kinds[EventKind::Head as usize] += 1;
                    self.decode.record_since(EventKind::Head, Stage::Decode, t0);
                    self.rt.block_on(tx.send_head(Event::Head(head), counters)).map_err(replay)?;
                }
                (Event::Pending(p), _) => match &self.pace {
                    None => {
                        let mut p = (**p).clone();
                        p.received_at = Instant::now();
                        tx.send_pending(p, counters).map_err(replay)?;
                        kinds[EventKind::Pending as usize] += 1;
                    }
                    Some(pace) => {
                        // A burst on the replay clock, not waited on; settled before the next
                        // head so every head still sees an idle engine.
                        let interval = Duration::from_secs_f64(1.0 / pace.rate);
                        let start = Instant::now();
                        for k in 0..pace.repeat {
                            let due = start + interval * (k as u32);
                            let now = Instant::now();
                            if now < due {
                                std::thread::sleep(due - now);
                            } else if now - due > interval {
                                late += 1;
                            }
                            let _ = depth.record(self.lock.pending.len() as u64);
                            let mut p = (**p).clone();
                            p.received_at = Instant::now();
                            tx.send_pending(p, counters).map_err(replay)?;
                        }
                        burst += start.elapsed() + interval;
                        paced += pace.repeat;
                        sent += pace.repeat;
                        kinds[EventKind::Pending as usize] += pace.repeat;
                        if !self.lock.settle_at(before + pace.repeat) {
                            unsettled += 1;
                        }
                        self.collect(i, &mut candidates);
                        continue;
                    }
                },
                (other, _) => {
                    // Markers (reorgs, connection changes) go through as they came, unwaited.
                    self.rt.block_on(tx.send_head(other.clone(), counters)).map_err(replay)?;
                    sent += 1;
                    continue;
                }
            }
            sent += 1;
            let settled = match &t.event {
                Event::Head(h) => self.lock.settle_head(before, h.number),
                _ => self.lock.settle(before),
            };
            if !settled {
                unsettled += 1;
            }
            self.collect(i, &mut candidates);
        }
        let elapsed = began.elapsed();
        let pacing = self.pace.take().map(|p| Pacing {
            sent: paced,
            achieved_rate: if burst.is_zero() { 0.0 } else { paced as f64 / burst.as_secs_f64() },
            queue_depth: baseline::percentiles_of(&depth),
            late,
            ..p
        });
        Ok(Driven {
            sent,
            unsettled,
            elapsed,
            decode: self.decode,
            candidates,
            pacing,
            kinds,
            cut_short,
        })
    }

    /// What the engine screened and proved for event `i` (once it is settled).
    fn collect(&self, i: usize, out: &mut Vec<EventTap>) {
        if let Some((proved, screened)) = &self.tap {
            let e = EventTap {
                event: i,
                proved: proved.try_iter().collect(),
                screened: screened.try_iter().collect(),
            };
            if !e.proved.is_empty() || !e.screened.is_empty() {
                out.push(e);
            }
        }
    }
}

/// Paces a feed on the engine: after sending an event, wait until the engine has handled it and
/// nothing is queued for it, so no event waits behind another and the feeder reads every head.
pub(crate) struct Lockstep<Q> {
    stats: Arc<crate::engine::EngineStats>,
    heads: crossbeam_channel::Receiver<Event>,
    pending: crossbeam_channel::Receiver<Event>,
    queued: Q,
}

impl Lockstep<()> {
    /// A lockstep on `run`, whose event receivers `heads` and `pending` are clones of.
    pub(crate) fn new(
        run: &crate::engine::RunHandle,
        heads: crossbeam_channel::Receiver<Event>,
        pending: crossbeam_channel::Receiver<Event>,
    ) -> Lockstep<impl Fn() -> usize + Send + 'static> {
        Lockstep { stats: run.stats.clone(), heads, pending, queued: run.queue_probe() }
    }
}

impl<Q: Fn() -> usize> Lockstep<Q> {
    /// Waits (at most [`SETTLE`]) until the engine takes events; false on timeout.
    pub(crate) fn wait_ready(&self) -> bool {
        let start = Instant::now();
        while !self.stats.ready.load(Ordering::Acquire) && start.elapsed() < SETTLE {
            std::thread::sleep(Duration::from_micros(50));
        }
        self.stats.ready.load(Ordering::Acquire)
    }

    /// Inputs handled so far (read before sending).
    pub(crate) fn handled(&self) -> u64 {
        self.stats.handled.load(Ordering::Acquire)
    }

    /// Waits (polling every 20 µs, at most [`SETTLE`]) until an input beyond `before` was handled,
    /// nothing is queued and no state read the engine asked of the feeder is outstanding (a
    /// cold-skipped transaction is retried on its answer before the next event, never at a
    /// point that depends on thread timing); false on timeout.
    pub(crate) fn settle(&self, before: u64) -> bool {
        self.settle_at(before + 1)
    }

    /// Waits (as [`Lockstep::settle`]) until the engine has handled head `number` itself, not
    /// only some input after `before`: a head goes through the feeder's state read first, and an
    /// input the feeder had already queued for the previous head (state a cold-skipped
    /// transaction asked for) may be handled meanwhile. Settling on it would send the next
    /// pending transaction before its head, evaluated on the previous block.
    pub(crate) fn settle_head(&self, before: u64, number: u64) -> bool {
        self.settle_when(before + 1, || self.stats.last_head.load(Ordering::Acquire) >= number)
    }

    /// Waits (as [`Lockstep::settle`]) until `target` inputs were handled and nothing is queued.
    pub(crate) fn settle_at(&self, target: u64) -> bool {
        self.settle_when(target, || true)
    }

    fn settle_when(&self, target: u64, also: impl Fn() -> bool) -> bool {
        let done = || {
            also()
                && self.stats.watches.load(Ordering::Acquire) == 0
                && self.handled() >= target
                && self.heads.is_empty()
                && self.pending.is_empty()
                && (self.queued)() == 0
        };
        let start = Instant::now();
        while start.elapsed() < SETTLE {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
        done()
    }
}

/// Writes `text` to `path`, naming the file on failure.
///
/// # Errors
/// The I/O error with the file's name.
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}
