//! `cantilever record`: a live session of one chain into a cassette.
//!
//! The live feed ([`crate::ingest::live::spawn`] into [`crate::ingest::channels`]) gives heads,
//! pending transactions and markers with their arrival times; a [`Refresher`] over a
//! [`RecordingSource`] around an [`RpcSource`] reads the watched accounts and slots at each head,
//! so the cassette holds every state answer a refresher with the same watch list asks for.
//!
//! ```text
//!  node ─WS─▶ ingest::live ─▶ heads / pending ─▶ recorder thread ─▶ CassetteWriter
//!  node ◀HTTP─ RpcSource ◀─ RecordingSource ◀─ Refresher::on_head(hash) ─┘    ▲
//!                                 └──────────── every answer ─────────────────┘
//! ```

use std::{
    fmt,
    future::Future,
    path::PathBuf,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
};
use crossbeam_channel::select_biased;

use super::{CassetteError, CassetteMeta, CassetteStats, CassetteWriter, RecordingSource};
use crate::{
    config::EndpointUrl,
    ingest::{self, Event, EventReceiver, IngestError, IngestHandle, LiveConfig},
    state::{RefreshError, Refresher, RefresherConfig, RpcSource, SourceError, StateKey},
};

const TARGET: &str = "cantilever::cassette";

/// What to record. `Debug` never shows the endpoints.
#[derive(Clone)]
pub struct RecordOptions {
    /// WebSocket endpoint (heads and full pending transactions).
    pub ws_url: EndpointUrl,
    /// HTTP endpoint (state reads, block fetches).
    pub http_url: EndpointUrl,
    /// The cassette to write (created or truncated).
    pub out: PathBuf,
    /// Stop after this many new heads (heads other than the block recording started at).
    pub blocks: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Accounts whose balance, nonce and code the refresher watches.
    pub watch: Vec<Address>,
    /// Storage slots the refresher watches.
    pub slots: Vec<(Address, U256)>,
    /// Metadata: `chain_id` is taken from the node, `watched` from `watch`, and a zero
    /// `block_time_ms` is estimated from the last 16 blocks.
    pub meta: CassetteMeta,
    /// How long to wait for the WebSocket to deliver the first head. Default 30 s.
    pub connect_timeout: Duration,
}

impl fmt::Debug for RecordOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordOptions")
            .field("ws_url", &self.ws_url)
            .field("http_url", &self.http_url)
            .field("out", &self.out)
            .field("blocks", &self.blocks)
            .field("duration", &self.duration)
            .field("watch", &self.watch.len())
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl RecordOptions {
    /// Records from these endpoints into `out` until stopped, watching nothing.
    pub fn new(ws_url: EndpointUrl, http_url: EndpointUrl, out: PathBuf) -> Self {
        Self {
            ws_url,
            http_url,
            out,
            blocks: None,
            duration: None,
            watch: Vec::new(),
            slots: Vec::new(),
            meta: CassetteMeta::default(),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Parses `ADDRESS:SLOT` (slot decimal or `0x` hex), as `--watch-slot` takes it.
///
/// # Errors
/// A message naming what does not parse.
pub fn parse_slot(s: &str) -> Result<(Address, U256), String> {
    let (a, slot) = s.split_once(':').ok_or_else(|| format!("`{s}`: expected ADDRESS:SLOT"))?;
    let address = Address::from_str(a.trim()).map_err(|_| format!("`{a}` is not an address"))?;
    let slot = U256::from_str(slot.trim()).map_err(|_| format!("`{slot}` is not a slot number"))?;
    Ok((address, slot))
}

/// Why a recording failed. Never shows an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// An endpoint is not usable.
    #[error("the {which} endpoint: {detail}")]
    Endpoint {
        /// `--ws` or `--http`.
        which: &'static str,
        /// What is wrong (variable names, never values).
        detail: String,
    },
    /// The node did not answer a setup request.
    #[error("the node (--http) did not answer {what}")]
    Node {
        /// The request.
        what: &'static str,
    },
    /// The initial state read failed.
    #[error("initial state read: {0}")]
    State(String),
    /// The cassette could not be written.
    #[error(transparent)]
    Cassette(#[from] CassetteError),
    /// The live feed could not start.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// No head arrived over the WebSocket in time.
    #[error("no head arrived over the WebSocket (--ws) within {0:?}")]
    NotConnected(Duration),
    /// The live feed ended unexpectedly.
    #[error("the live feed ended")]
    FeedEnded,
    /// The recorder thread could not start or died.
    #[error("recorder thread: {0}")]
    Thread(String),
}

/// Why a recording stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `blocks` new heads were recorded.
    Blocks,
    /// `duration` elapsed.
    Duration,
    /// Stopped by the caller (Ctrl-C).
    Shutdown,
}

/// What a recording wrote.
#[derive(Clone, Debug)]
pub struct RecordSummary {
    /// The file.
    pub file: String,
    /// Chain id.
    pub chain_id: u64,
    /// The block recording started at.
    pub start_block: u64,
    /// The last head recorded.
    pub last_block: u64,
    /// Heads recorded.
    pub heads: u64,
    /// Pending transactions recorded.
    pub pending: u64,
    /// Heads whose state could not be read (the failure is in the cassette).
    pub state_failures: u64,
    /// Why it stopped.
    pub stopped: StopReason,
    /// Sizes.
    pub stats: CassetteStats,
}

impl fmt::Display for RecordSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recorded chain {} blocks {}..={} into {} ({:?}): {} heads, {} pending txs, {} state-read failures\n{}",
            self.chain_id,
            self.start_block,
            self.last_block,
            self.file,
            self.stopped,
            self.heads,
            self.pending,
            self.state_failures,
            self.stats
        )
    }
}

#[derive(Debug, Default)]
struct Tally {
    heads: u64,
    pending: u64,
    state_failures: u64,
    last_block: u64,
}

/// A recording in progress.
#[derive(Debug)]
pub struct Recorder {
    writer: Arc<CassetteWriter>,
    ingest: Option<IngestHandle>,
    thread: Option<JoinHandle<Result<(Tally, StopReason), RecordError>>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
    stop: Arc<AtomicBool>,
    chain_id: u64,
    start_block: u64,
}

/// A transport error's text may name the endpoint: describe source errors without it.
fn describe(e: &RefreshError) -> String {
    match e {
        RefreshError::Source(SourceError::Transport { method, .. }) => {
            format!("{method}: transport error")
        }
        other => other.to_string(),
    }
}

fn endpoint(url: &EndpointUrl, which: &'static str) -> Result<EndpointUrl, RecordError> {
    let mut url = url.clone();
    if !url.is_resolved() {
        url.resolve(&|v| std::env::var(v).ok()).map_err(|missing| RecordError::Endpoint {
            which,
            detail: format!("unset environment variables: {}", missing.join(", ")),
        })?;
    }
    Ok(url)
}

async fn estimate_block_time_ms(p: &DynProvider) -> Result<u64, RecordError> {
    let node = |_| RecordError::Node { what: "eth_getBlockByNumber" };
    let latest = p.get_block_by_number(BlockNumberOrTag::Latest).await.map_err(node)?;
    let Some(latest) = latest else { return Ok(0) };
    let n = latest.header.number.min(16);
    if n == 0 {
        return Ok(0);
    }
    let old = p
        .get_block_by_number(BlockNumberOrTag::Number(latest.header.number - n))
        .await
        .map_err(node)?;
    Ok(old.map_or(0, |old| {
        latest.header.timestamp.saturating_sub(old.header.timestamp).saturating_mul(1000) / n
    }))
}

impl Recorder {
    /// Connects, reads the watched state at the node's latest block, starts the live feed and
    /// returns once the first head has been recorded (the subscriptions are live from then on).
    ///
    /// # Errors
    /// [`RecordError`] naming what could not start; the file may exist, holding what was written.
    pub async fn start(opts: RecordOptions) -> Result<Self, RecordError> {
        let ws_url = endpoint(&opts.ws_url, "--ws")?;
        let http_url = endpoint(&opts.http_url, "--http")?;
        let url = http_url.expose_secret().parse().map_err(|_| RecordError::Endpoint {
            which: "--http",
            detail: "not a valid URL".into(),
        })?;
        let provider =
            ProviderBuilder::new().disable_recommended_fillers().connect_http(url).erased();
        let chain_id =
            provider.get_chain_id().await.map_err(|_| RecordError::Node { what: "eth_chainId" })?;
        let mut meta = opts.meta.clone();
        meta.chain_id = chain_id;
        meta.watched.clone_from(&opts.watch);
        if meta.block_time_ms == 0 {
            meta.block_time_ms = estimate_block_time_ms(&provider).await?;
        }
        if meta.note.is_empty() {
            meta.note = format!("cantilever {} record", env!("CARGO_PKG_VERSION"));
        }
        let writer = Arc::new(CassetteWriter::create(&opts.out, meta)?);

        let source = RecordingSource::new(RpcSource::new(provider, 500), writer.clone());
        let mut refresher = Refresher::new(source, RefresherConfig::default());
        refresher.watch(
            opts.watch
                .iter()
                .map(|a| StateKey::Account(*a))
                .chain(opts.slots.iter().map(|(a, s)| StateKey::Slot(*a, *s))),
        );
        let base = refresher.start().await.map_err(|e| RecordError::State(describe(&e)))?;
        let start = base.head;
        writer.flush()?;

        let (tx, rx) = ingest::channels(1_024, 8_192);
        let ingest = ingest::live::spawn(LiveConfig::new(chain_id, ws_url, http_url), tx, None)?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let job = Job {
            writer: writer.clone(),
            refresher,
            rx,
            rt: tokio::runtime::Handle::current(),
            stop: stop.clone(),
            start_hash: start.hash,
            blocks: opts.blocks,
            deadline: opts.duration.and_then(|d| Instant::now().checked_add(d)),
            ready: Some(ready_tx),
        };
        let thread = std::thread::Builder::new()
            .name(format!("record-{chain_id}"))
            .spawn(move || {
                let r = job.run();
                let _ = done_tx.send(());
                r
            })
            .map_err(|e| RecordError::Thread(e.to_string()))?;
        let mut rec = Self {
            writer,
            ingest: Some(ingest),
            thread: Some(thread),
            done: Some(done_rx),
            stop,
            chain_id,
            start_block: start.number,
        };
        match tokio::time::timeout(opts.connect_timeout, ready_rx).await {
            Ok(Ok(())) => Ok(rec),
            Ok(Err(_)) => Err(rec.join().await.err().unwrap_or(RecordError::FeedEnded)),
            Err(_) => {
                rec.stop.store(true, Ordering::Relaxed);
                let _ = rec.join().await;
                Err(RecordError::NotConnected(opts.connect_timeout))
            }
        }
    }

    /// The chain id.
    pub const fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The block recording started at.
    pub const fn start_block(&self) -> u64 {
        self.start_block
    }

    async fn join(&mut self) -> Result<(Tally, StopReason), RecordError> {
        let thread = self.thread.take().ok_or(RecordError::FeedEnded)?;
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| RecordError::Thread(e.to_string()))?;
        if let Some(i) = self.ingest.take() {
            i.stop().await;
        }
        joined.map_err(|_| RecordError::Thread("the recorder thread panicked".into()))?
    }

    /// Records until the block or time limit is reached or `shutdown` completes, then stops the
    /// feed and finishes the file (end record, flush, sync).
    ///
    /// # Errors
    /// [`RecordError`] when the feed ended or the cassette could not be written.
    pub async fn finish(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RecordSummary, RecordError> {
        let done = self.done.take();
        let mut stopped_by_caller = false;
        if let Some(done) = done {
            tokio::select! {
                () = shutdown => {
                    stopped_by_caller = true;
                    self.stop.store(true, Ordering::Relaxed);
                }
                _ = done => {}
            }
        }
        let (tally, mut stopped) = self.join().await?;
        if stopped_by_caller {
            stopped = StopReason::Shutdown;
        }
        let stats = self.writer.finish()?;
        Ok(RecordSummary {
            file: self.writer.file().to_owned(),
            chain_id: self.chain_id,
            start_block: self.start_block,
            last_block: tally.last_block.max(self.start_block),
            heads: tally.heads,
            pending: tally.pending,
            state_failures: tally.state_failures,
            stopped,
            stats,
        })
    }
}

struct Job {
    writer: Arc<CassetteWriter>,
    refresher: Refresher<RecordingSource<RpcSource>>,
    rx: EventReceiver,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    start_hash: B256,
    blocks: Option<u64>,
    deadline: Option<Instant>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Job {
    fn run(mut self) -> Result<(Tally, StopReason), RecordError> {
        let mut t = Tally::default();
        let mut new_heads: u64 = 0;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok((t, StopReason::Shutdown));
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok((t, StopReason::Duration));
            }
            select_biased! {
                recv(self.rx.heads) -> e => {
                    let event = e.map_err(|_| RecordError::FeedEnded)?;
                    self.writer.event(&event)?;
                    let Event::Head(head) = event else { continue };
                    t.heads += 1;
                    t.last_block = head.number;
                    if let Err(e) = self.rt.block_on(self.refresher.on_head(head.hash)) {
                        t.state_failures += 1;
                        tracing::warn!(target: TARGET, block = head.number, error = %describe(&e), "state read failed");
                    }
                    // A crash loses at most the records since the last head.
                    self.writer.flush()?;
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(());
                    }
                    if head.hash != self.start_hash {
                        new_heads += 1;
                        if self.blocks.is_some_and(|n| new_heads >= n) {
                            return Ok((t, StopReason::Blocks));
                        }
                    }
                }
                recv(self.rx.pending) -> e => {
                    let event = e.map_err(|_| RecordError::FeedEnded)?;
                    self.writer.event(&event)?;
                    t.pending += 1;
                }
                default(Duration::from_millis(50)) => {}
            }
        }
    }
}
