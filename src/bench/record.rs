//! `cantilever record --config FILE --chain NAME`: a live session recorded through the engine's
//! own reads, so the cassette holds exactly the state the engine asks for.
//!
//! ```text
//!  node ─WS─▶ ingest::live ─▶ tee thread ─▶ CassetteWriter (events)
//!                                 └──────▶ channels ─▶ engine::start (dry run)
//!  node ◀HTTP─ RpcSource ◀─ RecordingSource ◀─ warm_up / feeder ──▶ CassetteWriter (answers)
//! ```

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::{
    primitives::Address,
    providers::{Provider, ProviderBuilder},
};
use revm::primitives::hardfork::SpecId;

use super::bench_strategies;
use crate::{
    cassette::{CassetteError, CassetteMeta, CassetteStats, CassetteWriter, RecordingSource},
    config::{ChainConfig, EngineConfig, RiskConfig, StrategiesConfig},
    engine::{RunError, StartOptions, rpc_source, start, warm_up},
    ingest::{self, BlockRef, Event, IngestCounters, LiveConfig},
};

/// What to record.
#[derive(Clone, Debug)]
pub struct EngineRecordOptions {
    /// The chain (its endpoints are used; never printed).
    pub chain: ChainConfig,
    /// Strategies (backrun is turned on, as the bench runs it).
    pub strategies: StrategiesConfig,
    /// Desk limits.
    pub risk: RiskConfig,
    /// The cassette to write.
    pub out: PathBuf,
    /// Stop after this many new heads.
    pub blocks: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// The executor's operator (simulations run from it; recorded in the note).
    pub operator: Address,
}

/// Why an engine recording failed. Never shows an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EngineRecordError {
    /// The chain's configuration is not usable.
    #[error("chain `{chain}`: {what}")]
    Config {
        /// Chain.
        chain: String,
        /// What.
        what: String,
    },
    /// The node did not answer.
    #[error("chain `{chain}`: the node did not answer {what}")]
    Node {
        /// Chain.
        chain: String,
        /// The request.
        what: &'static str,
    },
    /// The cassette could not be written.
    #[error(transparent)]
    Cassette(#[from] CassetteError),
    /// The engine could not start.
    #[error(transparent)]
    Engine(#[from] RunError),
    /// The live feed could not start.
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    /// The tee thread failed.
    #[error("recorder: {0}")]
    Thread(String),
}

/// What an engine recording wrote.
#[derive(Clone, Debug)]
pub struct EngineRecordSummary {
    /// The file.
    pub file: String,
    /// The block the warm-up read.
    pub start_block: u64,
    /// The last head the engine processed.
    pub last_block: u64,
    /// Heads recorded.
    pub heads: u64,
    /// Pending transactions recorded.
    pub pending: u64,
    /// Sizes.
    pub stats: CassetteStats,
}

impl std::fmt::Display for EngineRecordSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recorded blocks {}..={} through the engine into {}: {} heads, {} pending txs\n{}",
            self.start_block, self.last_block, self.file, self.heads, self.pending, self.stats
        )
    }
}

/// Records until `blocks` new heads, `duration`, or `shutdown` completes. Call inside a
/// multi-thread tokio runtime.
///
/// # Errors
/// [`EngineRecordError`] naming what failed.
pub async fn record_engine(
    o: EngineRecordOptions,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<EngineRecordSummary, EngineRecordError> {
    let chain = o.chain.clone();
    let name = chain.name.clone();
    let cfg_err = |what: &str| EngineRecordError::Config { chain: name.clone(), what: what.into() };
    let url =
        chain.http_url.expose_secret().parse().map_err(|_| cfg_err("http_url is not a URL"))?;
    let provider = ProviderBuilder::new().connect_http(url).erased();
    let node = |what| EngineRecordError::Node { chain: name.clone(), what };
    let chain_id = provider.get_chain_id().await.map_err(|_| node("eth_chainId"))?;
    let strategies = bench_strategies(o.strategies.clone());
    let meta = CassetteMeta {
        chain_id,
        block_time_ms: chain.block_time_ms,
        started_unix_ms: crate::ledger::now_unix_ms(),
        executor: chain.executor,
        venues: chain.venues.iter().map(|v| v.address).collect(),
        tokens: chain.tokens.iter().map(|t| t.address).collect(),
        lenders: chain.flash_lenders.iter().map(|l| l.address).collect(),
        watched: vec![o.operator],
        note: format!(
            "operator={} recorded by cantilever {} through the engine (chain {})",
            o.operator,
            env!("CARGO_PKG_VERSION"),
            chain.name
        ),
    };
    let writer = Arc::new(CassetteWriter::create(&o.out, meta)?);
    let source = RecordingSource::new(rpc_source(provider), writer.clone());
    let warmed = warm_up(source, &chain, &strategies, SpecId::PRAGUE, o.operator).await?;
    let head = warmed.head()?;
    writer.flush()?;
    let (live_tx, live_rx) = ingest::channels(1_024, 8_192);
    let feed = ingest::live::spawn(
        LiveConfig::from_chain(&chain),
        live_tx,
        Some(BlockRef { number: head.number, hash: head.hash }),
    )?;
    let (eng_tx, eng_rx) = ingest::channels(1_024, 8_192);
    let dir = std::env::temp_dir();
    let engine = EngineConfig {
        ledger_path: dir.join("cantilever-record-unused.db"),
        halt_file: dir.join(format!("cantilever-record-{}.halt", uuid::Uuid::new_v4())),
        dry_run: true,
        shadow: false,
        busy_poll: false,
    };
    let opts = StartOptions {
        chain,
        strategies,
        risk: o.risk,
        engine,
        operator: o.operator,
        signer: None,
        identity: None,
        start_nonce: 0,
        ledger: None,
        histograms: None,
        spec: SpecId::PRAGUE,
        prove_top: super::PROVE_TOP,
    };
    let probe = (eng_rx.heads.clone(), eng_rx.pending.clone());
    let run = start(warmed, eng_rx, opts)?;
    // In lockstep, as the bench replays: the feeder reads every head (never a burst coalesced
    // into its newest), so the cassette answers every read the replay makes.
    let lock = super::Lockstep::new(&run, probe.0, probe.1);
    let stats = run.stats.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = o.duration.and_then(|d| Instant::now().checked_add(d));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let tee = {
        let writer = writer.clone();
        let stop = stop.clone();
        let rt = tokio::runtime::Handle::current();
        let blocks = o.blocks;
        let start_number = head.number;
        std::thread::Builder::new()
            .name("record-tee".into())
            .spawn(move || -> Result<(u64, u64, u64), EngineRecordError> {
                let counters = IngestCounters::default();
                let (mut heads, mut pending, mut last) = (0u64, 0u64, start_number);
                let r = loop {
                    if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                        break Ok(());
                    }
                    crossbeam_channel::select_biased! {
                        recv(live_rx.heads) -> e => {
                            let Ok(event) = e else { break Ok(()) };
                            if let Err(e) = writer.event(&event) { break Err(e) }
                            let number = match &event {
                                Event::Head(h) => {
                                    heads += 1;
                                    last = last.max(h.number);
                                    Some(h.number)
                                }
                                _ => None,
                            };
                            let before = lock.handled();
                            if rt.block_on(eng_tx.send_head(event, &counters)).is_err() { break Ok(()) }
                            match number {
                                Some(n) => lock.settle_head(before, n),
                                None => lock.settle(before),
                            };
                            if blocks.is_some_and(|n| last >= start_number + n) { break Ok(()) }
                        }
                        recv(live_rx.pending) -> e => {
                            let Ok(event) = e else { break Ok(()) };
                            if let Err(e) = writer.event(&event) { break Err(e) }
                            pending += 1;
                            if let Event::Pending(p) = event {
                                let before = lock.handled();
                                let _ = eng_tx.send_pending(*p, &counters);
                                lock.settle(before);
                            }
                        }
                        default(Duration::from_millis(50)) => {}
                    }
                };
                let _ = done_tx.send(());
                r.map(|()| (heads, pending, last)).map_err(EngineRecordError::from)
            })
            .map_err(|e| EngineRecordError::Thread(e.to_string()))?
    };
    tokio::select! {
        () = shutdown => stop.store(true, Ordering::Relaxed),
        _ = done_rx => {}
    }
    let joined = tokio::task::spawn_blocking(move || tee.join())
        .await
        .map_err(|e| EngineRecordError::Thread(e.to_string()))?
        .map_err(|_| EngineRecordError::Thread("the tee thread panicked".into()))?;
    let (heads, pending, last) = joined?;
    // Let the engine finish the last head (its reads and any supplement are recorded).
    let settled = crate::engine::wait_until(Duration::from_secs(10), || {
        stats.last_head.load(Ordering::Acquire) >= last
    });
    if settled {
        let mut seen = stats.handled.load(Ordering::Acquire);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = stats.handled.load(Ordering::Acquire);
            if now == seen {
                break;
            }
            seen = now;
        }
    }
    feed.stop().await;
    run.stop(Duration::from_secs(2)).await;
    let stats = writer.finish()?;
    Ok(EngineRecordSummary {
        file: writer.file().to_owned(),
        start_block: head.number,
        last_block: last,
        heads,
        pending,
        stats,
    })
}
