//! `cantilever run`: start-up, the sync loop, signals and the graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use revm::primitives::hardfork::SpecId;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::{AppError, ChainTelemetry, RunArgs, load_for_run, redact_urls};
use crate::config::{ChainConfig, Config};
use crate::engine::{Control, RunHandle, RunOptions, run_chain};
use crate::exec::{KeyRole, load_signer};
use crate::ledger::{Ledger, LedgerHandle};
use crate::risk::{Halt, Mode};
use crate::telemetry::{
    DEFAULT_MAX_HEAD_LAG_BLOCKS, Exporter, Health, Metrics, MetricsServer, Registry,
    SharedHistograms,
};

/// How often engine counters are copied into health and metrics, and the node's head is read.
const SYNC_PERIOD: Duration = Duration::from_millis(250);
/// How long one read of the node's head may take before the chain counts as disconnected.
const NODE_TIMEOUT: Duration = Duration::from_secs(1);
/// Candidates proven in revm per event.
const PROVE_TOP: usize = 4;
/// Tracing target of this module.
const TARGET: &str = "cantilever::app";

/// Runs the bot until SIGINT or SIGTERM, then shuts down gracefully within
/// `args.shutdown_deadline`; a second signal exits the process at once (exit code 128 + signal).
/// `SIGUSR1` re-reads the halt file and halts or re-arms every chain to match it.
///
/// In order: load and validate the configuration (mode overrides applied), install the log
/// subscriber, load every key, open the ledger (config hash = keccak-256 of the file), bind the
/// metrics server, start one engine per selected chain with an executor, then loop.
///
/// # Errors
/// [`AppError`] naming what could not start (configuration, key, ledger, telemetry, a chain), or
/// the ledger failing to close at shutdown.
pub async fn run(args: RunArgs) -> Result<(), AppError> {
    let (cfg, hash) = load_for_run(&args)?;
    let format = args.log_format.unwrap_or(cfg.telemetry.log_format);
    if let Err(e) = crate::telemetry::init_tracing(format, &cfg.telemetry.log_level) {
        eprintln!("warning: {e}");
    }
    let mut signals = Signals::install().map_err(AppError::Signals)?;
    let chains = select_chains(&cfg, args.chain.as_deref())?;
    let keys = chains.iter().map(load_keys).collect::<Result<Vec<_>, _>>()?;
    let ledger = Ledger::open(&cfg.engine.ledger_path, hash, env!("CARGO_PKG_VERSION"))?.spawn()?;
    info!(target: TARGET, run = %ledger.run_id(), config_hash = %hash, pid = std::process::id(),
        mode = %Mode::from_engine(&cfg.engine), config = %cfg.summary(), "cantilever starting");

    let served = serve(&cfg, &args, chains, keys, &ledger, &mut signals).await;
    let (result, watcher) = match served {
        Ok(watcher) => (Ok(()), watcher),
        Err(e) => (Err(e), None),
    };
    // Whatever happened, commit what was recorded and mark the run ended.
    let closing = tokio::task::spawn_blocking(move || ledger.close());
    let closed = match tokio::time::timeout(ledger_reserve(args.shutdown_deadline), closing).await {
        Ok(Ok(r)) => r.map_err(AppError::from),
        Ok(Err(e)) => Err(AppError::Setup(format!("closing the ledger: {e}"))),
        Err(_) => Err(AppError::Setup("closing the ledger timed out".into())),
    };
    if let Some(w) = watcher {
        w.abort();
    }
    match (&result, &closed) {
        (Ok(()), Ok(())) => info!(target: TARGET, "stopped cleanly; ledger closed"),
        (_, Err(e)) => error!(target: TARGET, error = %e, "ledger not closed cleanly"),
        _ => {}
    }
    result.and(closed)
}

/// Time kept back from the deadline for closing the ledger.
fn ledger_reserve(deadline: Duration) -> Duration {
    (deadline / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// The chains to run: every configured chain with an executor, or only `--chain NAME`.
pub(super) fn select_chains(
    cfg: &Config,
    only: Option<&str>,
) -> Result<Vec<ChainConfig>, AppError> {
    if let Some(name) = only {
        let Some(c) = cfg.chain(name) else {
            let names: Vec<&str> = cfg.chains.iter().map(|c| c.name.as_str()).collect();
            return Err(AppError::Setup(format!(
                "--chain {name}: no such chain in the configuration (configured: {})",
                names.join(", ")
            )));
        };
        if c.executor.is_none() {
            return Err(AppError::Setup(format!(
                "--chain {name}: the chain has no `executor` address; nothing to run"
            )));
        }
        return Ok(vec![c.clone()]);
    }
    let mut out = Vec::new();
    for c in &cfg.chains {
        if c.executor.is_some() {
            out.push(c.clone());
        } else {
            warn!(target: TARGET, chain = %c.name, "no `executor` address: chain not run");
        }
    }
    if out.is_empty() {
        return Err(AppError::Setup(
            "no configured chain has an `executor` address; nothing to run".into(),
        ));
    }
    Ok(out)
}

/// The chain's executor signer and relay identity, when configured. Errors name the role and
/// the variable or keystore path only.
fn load_keys(
    c: &ChainConfig,
) -> Result<(Option<PrivateKeySigner>, Option<PrivateKeySigner>), AppError> {
    let executor = c.signer.as_ref().map(|r| load_signer(r, KeyRole::Executor)).transpose()?;
    let identity =
        c.submission.identity.as_ref().map(|r| load_signer(r, KeyRole::Identity)).transpose()?;
    Ok((executor, identity))
}

/// A chain's latest block number as last read from its node (`ok` false when it did not answer).
#[derive(Debug, Default)]
struct NodeHead {
    latest: AtomicU64,
    ok: AtomicBool,
}

impl NodeHead {
    fn get(&self) -> Option<u64> {
        self.ok.load(Ordering::Relaxed).then(|| self.latest.load(Ordering::Relaxed))
    }
}

/// Reads the node's head every [`SYNC_PERIOD`] until aborted.
fn spawn_head_poller(provider: DynProvider, head: Arc<NodeHead>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match tokio::time::timeout(NODE_TIMEOUT, provider.get_block_number()).await {
                Ok(Ok(n)) => {
                    head.latest.store(n, Ordering::Relaxed);
                    head.ok.store(true, Ordering::Relaxed);
                }
                _ => head.ok.store(false, Ordering::Relaxed),
            }
            tokio::time::sleep(SYNC_PERIOD).await;
        }
    })
}

/// One running chain: its engine, its telemetry and its node-head poller.
struct Running {
    handle: RunHandle,
    telemetry: ChainTelemetry,
    node: Arc<NodeHead>,
    poller: JoinHandle<()>,
    /// Whether the engine was halted at the last sync.
    was_halted: bool,
    /// A `Control::Halt` was sent and no re-arm since (so it is not sent twice).
    halt_sent: bool,
    /// A `Control::Rearm` was sent and the engine has not reported it yet.
    rearming: bool,
}

/// Everything between start-up and the ledger's close. Returns the second-signal watcher (to be
/// aborted once the ledger is closed) when it got that far.
async fn serve(
    cfg: &Config,
    args: &RunArgs,
    chains: Vec<ChainConfig>,
    keys: Vec<(Option<PrivateKeySigner>, Option<PrivateKeySigner>)>,
    ledger: &LedgerHandle,
    signals: &mut Signals,
) -> Result<Option<JoinHandle<()>>, AppError> {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;
    let health = Health::new(chains.iter().map(|c| (c.name.as_str(), DEFAULT_MAX_HEAD_LAG_BLOCKS)));
    // One set of stage histograms per chain, each published by its engine.
    let histograms: Vec<(String, SharedHistograms)> =
        chains.iter().map(|c| (c.name.clone(), SharedHistograms::new())).collect();
    let exporter = Exporter { registry, health: health.clone(), histograms: histograms.clone() };
    let server = MetricsServer::bind(
        cfg.telemetry.metrics_addr,
        cfg.telemetry.allow_public_metrics,
        exporter,
    )
    .await?;
    let metrics_addr = server.local_addr();
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.serve(async {
        let _ = server_stopped.await;
    }));

    let start = start_all(cfg, chains, keys, ledger, &metrics, &health, &histograms);
    let started = tokio::select! {
        r = start => Some(r),
        s = signals.stop() => {
            info!(target: TARGET, signal = s.name(), "signal during start-up: stopping");
            None
        }
    };
    let mut running = match started {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            let _ = server_stop.send(());
            let _ = server_task.await;
            return Err(e);
        }
        None => {
            let _ = server_stop.send(());
            let _ = server_task.await;
            return Ok(None);
        }
    };
    let names: Vec<&str> = running.iter().map(|r| r.telemetry.name()).collect();
    // Cross-chain trading over the running engines, when configured.
    let engines: Vec<(&str, &RunHandle)> =
        running.iter().map(|r| (r.telemetry.name(), &r.handle)).collect();
    let xchain = crate::xchain::start_from_config(cfg, &engines, Some(ledger.clone()))
        .map_err(AppError::Setup)?;
    let xchain = match xchain {
        Some(h) => {
            info!(target: TARGET, "cross-chain coordinator running");
            let m = crate::xchain::XMetrics::new(metrics.registry())
                .map_err(|e| AppError::Setup(e.to_string()))?;
            Some((h, m))
        }
        None => None,
    };
    info!(target: TARGET, chains = ?names, metrics = %metrics_addr,
        "running; SIGINT/SIGTERM stop gracefully, SIGUSR1 re-reads the halt file");

    let mut tick = tokio::time::interval(SYNC_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stop = loop {
        tokio::select! {
            _ = tick.tick() => {
                sync(&mut running, &health, &metrics, ledger, &cfg.engine.halt_file);
                if let Some((h, m)) = &xchain {
                    m.sync(&h.stats);
                }
            }
            s = signals.next() => match s {
                Sig::Usr1 => reload_halt(&mut running, &cfg.engine.halt_file),
                Sig::Hup => reload_risk(&running, &args.config),
                s => break s,
            },
        }
    };

    // Graceful shutdown.
    let inflight: u64 = running.iter().map(|r| r.telemetry.inflight()).sum();
    info!(target: TARGET, signal = stop.name(), deadline_s = args.shutdown_deadline.as_secs_f64(),
        inflight, "shutting down: no new decisions, waiting for in-flight submissions");
    for r in &running {
        r.telemetry.set_stopping();
    }
    let watcher = spawn_second_signal_watcher(std::mem::replace(signals, Signals::inert()));
    let budget = args.shutdown_deadline.saturating_sub(ledger_reserve(args.shutdown_deadline));
    let began = Instant::now();
    let mut telemetry = Vec::with_capacity(running.len());
    let mut stops = Vec::with_capacity(running.len());
    for r in running {
        r.poller.abort();
        telemetry.push(r.telemetry);
        stops.push(r.handle.stop(budget));
    }
    if tokio::time::timeout(budget, futures::future::join_all(stops)).await.is_err() {
        let left: u64 = telemetry.iter().map(ChainTelemetry::inflight).sum();
        warn!(target: TARGET, inflight = left,
            "shutdown deadline reached: outcomes of submissions still in flight are not recorded");
    } else {
        info!(target: TARGET, took_ms = began.elapsed().as_millis() as u64,
            "engines stopped; in-flight submissions settled");
    }
    for t in &mut telemetry {
        t.sync(None);
    }
    let _ = server_stop.send(());
    let _ = tokio::time::timeout(Duration::from_millis(500), server_task).await;
    Ok(Some(watcher))
}

/// Starts the engines one by one (each warms its state first). On a failure the ones already
/// running are stopped.
async fn start_all(
    cfg: &Config,
    chains: Vec<ChainConfig>,
    keys: Vec<(Option<PrivateKeySigner>, Option<PrivateKeySigner>)>,
    ledger: &LedgerHandle,
    metrics: &Metrics,
    health: &Health,
    histograms: &[(String, SharedHistograms)],
) -> Result<Vec<Running>, AppError> {
    let mut running: Vec<Running> = Vec::with_capacity(chains.len());
    for (i, (chain, (signer, identity))) in chains.into_iter().zip(keys).enumerate() {
        let name = chain.name.clone();
        let published = histograms.get(i).map(|(_, h)| h.clone());
        let started = start_one(cfg, chain, signer, identity, ledger, published).await;
        let result = started.and_then(|(handle, provider)| {
            let telemetry = ChainTelemetry::new(
                metrics,
                health,
                cfg.chain(&name)
                    .ok_or_else(|| AppError::Setup(format!("chain {name} vanished")))?,
                handle.stats.clone(),
                handle.inflight.clone(),
            )?
            .with_exec(handle.exec_counters.clone())?;
            Ok((handle, provider, telemetry))
        });
        match result {
            Ok((handle, provider, telemetry)) => {
                let node = Arc::new(NodeHead::default());
                let poller = spawn_head_poller(provider, node.clone());
                info!(target: TARGET, chain = %name, routes = handle.routes, "engine running");
                running.push(Running {
                    was_halted: handle.stats.halted.load(Ordering::Relaxed),
                    halt_sent: false,
                    rearming: false,
                    handle,
                    telemetry,
                    node,
                    poller,
                });
            }
            Err(e) => {
                for r in running {
                    r.poller.abort();
                    r.handle.stop(Duration::from_secs(2)).await;
                }
                return Err(e);
            }
        }
    }
    Ok(running)
}

/// Starts one chain's engine; returns it with an HTTP provider for its node-head poller.
async fn start_one(
    cfg: &Config,
    chain: ChainConfig,
    signer: Option<PrivateKeySigner>,
    identity: Option<PrivateKeySigner>,
    ledger: &LedgerHandle,
    histograms: Option<SharedHistograms>,
) -> Result<(RunHandle, DynProvider), AppError> {
    let name = chain.name.clone();
    let fail = |reason: String| AppError::Start { chain: name.clone(), reason };
    let url = chain
        .http_url
        .expose_secret()
        .parse()
        .map_err(|_| fail(format!("http_url {} is not a URL", chain.http_url)))?;
    let provider = ProviderBuilder::new().connect_http(url).erased();
    if let Some(executor) = chain.executor {
        let roles = super::check_key_roles(
            &provider,
            &name,
            executor,
            signer.as_ref().map(PrivateKeySigner::address),
            identity.as_ref().map(PrivateKeySigner::address),
        )
        .await
        .map_err(|e| fail(redact_urls(&e.to_string(), cfg)))?;
        if let Some(key) = roles.executor_key
            && key != roles.operator
        {
            warn!(target: TARGET, chain = %name, %key, operator = %roles.operator,
                "the executor key is not the executor contract's operator: its calls will revert");
        }
    }
    info!(target: TARGET, chain = %name, "warming state");
    let handle = run_chain(RunOptions {
        chain,
        strategies: cfg.strategies.clone(),
        risk: cfg.risk.clone(),
        engine: cfg.engine.clone(),
        signer,
        identity,
        ledger: Some(ledger.clone()),
        histograms,
        spec: SpecId::PRAGUE,
        prove_top: PROVE_TOP,
    })
    .await
    .map_err(|e| fail(redact_urls(&e.to_string(), cfg)))?;
    Ok((handle, provider))
}

/// One sync: counters and health per chain, the process halt flag, the ledger queue depth; a
/// chain that halted by itself (its kill switch) halts the others too, as the shared halt file
/// would on the next restart.
fn sync(
    running: &mut [Running],
    health: &Health,
    metrics: &Metrics,
    ledger: &LedgerHandle,
    halt_file: &std::path::Path,
) {
    for r in running.iter_mut() {
        r.telemetry.sync(r.node.get());
        if r.rearming && !r.telemetry.is_halted() {
            r.rearming = false;
        }
    }
    metrics.ledger_queue_depth.set(i64::try_from(ledger.queue_depth()).unwrap_or(i64::MAX));
    metrics.realised_pnl_usd.set(running.iter().map(|r| r.telemetry.realised_pnl_usd()).sum());
    let newly: Vec<String> = running
        .iter()
        .filter(|r| r.telemetry.is_halted() && !r.was_halted && !r.halt_sent && !r.rearming)
        .map(|r| r.telemetry.name().to_owned())
        .collect();
    if !newly.is_empty() {
        let file_reason = Halt::load(halt_file).info().map(|i| i.reason.clone());
        let reason = format!(
            "halted on {}: {}",
            newly.join(", "),
            file_reason.as_deref().unwrap_or("kill switch")
        );
        for r in running.iter_mut().filter(|r| !r.telemetry.is_halted() && !r.halt_sent) {
            warn!(target: TARGET, chain = %r.telemetry.name(), %reason, "halting with the others");
            r.handle.control(Control::Halt(reason.clone()));
            r.halt_sent = true;
        }
    }
    let mut any_halted = false;
    for r in running.iter_mut() {
        let halted = r.telemetry.is_halted();
        any_halted |= (halted && !r.rearming) || r.halt_sent;
        r.was_halted = halted;
    }
    health.set_halted(any_halted);
}

/// `SIGUSR1`: makes every engine match the halt file (engaged → `Control::Halt` with the file's
/// reason; absent → `Control::Rearm`).
fn reload_halt(running: &mut [Running], halt_file: &std::path::Path) {
    let halt = Halt::load(halt_file);
    match halt.info() {
        Some(info) => {
            info!(target: TARGET, reason = %info.reason, "SIGUSR1: halt file engaged; halting");
            for r in running.iter_mut().filter(|r| !r.telemetry.is_halted() && !r.halt_sent) {
                r.handle.control(Control::Halt(info.reason.clone()));
                r.halt_sent = true;
            }
        }
        None => {
            let halted = running.iter().filter(|r| r.telemetry.is_halted() || r.halt_sent).count();
            info!(target: TARGET, chains = halted, "SIGUSR1: no halt file; re-arming");
            for r in running.iter_mut().filter(|r| r.telemetry.is_halted() || r.halt_sent) {
                r.handle.control(Control::Rearm);
                r.halt_sent = false;
                r.rearming = true;
            }
        }
    }
}

/// SIGHUP: re-reads the configuration file, validates all of it, and hands the new `[risk]` and
/// `[strategies.stabilizer]` limits to every engine (the change is logged by each). Anything else
/// that changed needs a restart. An invalid file changes nothing; its errors are printed as
/// `check-config` prints them.
fn reload_risk(running: &[Running], path: &std::path::Path) {
    match crate::config::Config::load(path) {
        Ok(cfg) => {
            info!(target: TARGET, "SIGHUP: configuration valid; reloading risk limits");
            for r in running {
                r.handle.control(Control::Reconfigure(Box::new((
                    cfg.risk.clone(),
                    cfg.strategies.stabilizer.clone(),
                ))));
            }
        }
        Err(errors) => {
            warn!(target: TARGET, "SIGHUP: configuration refused; limits unchanged");
            super::print_config_errors(&path.display().to_string(), &errors);
        }
    }
}

/// After the first stop signal: a second one exits at once (committed ledger rows survive: the
/// ledger is WAL).
fn spawn_second_signal_watcher(mut signals: Signals) -> JoinHandle<()> {
    tokio::spawn(async move {
        let s = signals.stop().await;
        eprintln!(
            "cantilever: second {} during shutdown: exiting now (committed ledger rows are kept)",
            s.name()
        );
        std::process::exit(s.exit_code());
    })
}

/// A signal the bot reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    Int,
    Term,
    Usr1,
    Hup,
}

impl Sig {
    const fn name(self) -> &'static str {
        match self {
            Self::Int => "SIGINT",
            Self::Term => "SIGTERM",
            Self::Usr1 => "SIGUSR1",
            Self::Hup => "SIGHUP",
        }
    }

    /// 128 + the signal number, as shells report a death by signal.
    const fn exit_code(self) -> i32 {
        match self {
            Self::Int => 130,
            Self::Term => 143,
            Self::Usr1 => 138,
            Self::Hup => 129,
        }
    }
}

/// The process's signal streams (installed once, before anything starts).
#[cfg(unix)]
struct Signals {
    streams: Option<[tokio::signal::unix::Signal; 4]>,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            streams: Some([
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::user_defined1())?,
                signal(SignalKind::hangup())?,
            ]),
        })
    }

    /// A placeholder left behind when the streams move to the second-signal watcher.
    const fn inert() -> Self {
        Self { streams: None }
    }

    /// The next signal. Never resolves for an inert set.
    async fn next(&mut self) -> Sig {
        let Some([int, term, usr1, hup]) = self.streams.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            Some(()) = int.recv() => Sig::Int,
            Some(()) = term.recv() => Sig::Term,
            Some(()) = usr1.recv() => Sig::Usr1,
            Some(()) = hup.recv() => Sig::Hup,
            else => std::future::pending().await,
        }
    }

    /// The next SIGINT or SIGTERM (SIGUSR1 is ignored meanwhile).
    async fn stop(&mut self) -> Sig {
        loop {
            let s = self.next().await;
            if !matches!(s, Sig::Usr1 | Sig::Hup) {
                return s;
            }
        }
    }
}

/// Elsewhere: Ctrl-C only.
#[cfg(not(unix))]
struct Signals {
    live: bool,
}

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self { live: true })
    }

    const fn inert() -> Self {
        Self { live: false }
    }

    async fn next(&mut self) -> Sig {
        if self.live && tokio::signal::ctrl_c().await.is_ok() {
            return Sig::Int;
        }
        std::future::pending().await
    }

    async fn stop(&mut self) -> Sig {
        self.next().await
    }
}
