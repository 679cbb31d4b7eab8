//! The live source of one chain: alloy WebSocket subscriptions, HTTP backfill, reconnects.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::B256;
use alloy::providers::{DynProvider, Provider, ProviderBuilder, WsConnect};
use alloy::transports::TransportErrorKind;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::{
    BlockRef, Event, EventSender, Head, HeadTracker, IngestCounters, PendingTx, SendError, Step,
};
use super::{DEFAULT_WINDOW, ResyncReason};
use crate::config::{ChainConfig, EndpointUrl};

const TARGET: &str = "cantilever::ingest";

/// A live source that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An endpoint is not a valid URL (the URL itself is never shown: it may embed a key).
    #[error("chain {chain_id}: the {which} endpoint is not a valid URL")]
    BadUrl {
        /// The chain.
        chain_id: u64,
        /// `ws_url` or `http_url`.
        which: &'static str,
    },
}

/// Settings of one chain's live source. `Debug` never shows the endpoints.
#[derive(Clone)]
pub struct LiveConfig {
    /// EIP-155 chain id (stamped on every event).
    pub chain_id: u64,
    ws_url: EndpointUrl,
    http_url: EndpointUrl,
    /// Capacity of alloy's newHeads subscription channel (alloy's default is 16). Default 64:
    /// a lag past it is caught up from the node. Memory: alloy keeps the channel's first
    /// receiver unread for the subscription's life, so the channel always holds its last
    /// `capacity` notifications (about 1 kB each).
    pub head_subscription_capacity: usize,
    /// Capacity of the full-pending-transactions subscription channel. Default 2048 (a burst
    /// the feed task cannot keep up with beyond it is counted as lagged and dropped). Memory: as
    /// for heads, the last `capacity` transactions stay held (about 1–2 kB each).
    pub pending_subscription_capacity: usize,
    /// Subscribe to full pending transactions. Default `true`.
    pub pending: bool,
    /// Recent block hashes kept for reorg detection. Default 128.
    pub window: usize,
    /// First reconnect delay; doubles per failure up to `backoff_max`, with ±25% jitter.
    /// Default 250 ms.
    pub backoff_initial: Duration,
    /// Longest reconnect delay. Default 10 s.
    pub backoff_max: Duration,
    /// alloy's own reconnect tries inside one session before the session ends. Default 3.
    pub ws_max_retries: u32,
    /// alloy's base reconnect interval. Default 500 ms.
    pub ws_retry_interval: Duration,
    /// WebSocket keepalive ping; a missing pong ends the connection. Default 5 s.
    pub ws_keepalive: Duration,
    /// Tries per block fetch over HTTP before giving up (→ resync). Default 4.
    pub fetch_tries: u32,
    /// Longest wait for one network step: the WebSocket connect, a subscribe, one block fetch.
    /// A silent peer (accepts, never answers) costs this much, never a hang. Default 5 s.
    pub request_timeout: Duration,
    /// With no new head on the subscription for this long, the latest block is polled over
    /// HTTP. If the node has heads the subscription never delivered, they are emitted (backfilled
    /// in order) and the session is ended as stale and reconnected: alloy reconnects silently
    /// and never replays, and a black-holed socket may stay "up". Default 10 s;
    /// [`LiveConfig::from_chain`] uses three block times (1 s to 60 s).
    pub stale_after: Duration,
}

impl fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveConfig")
            .field("chain_id", &self.chain_id)
            .field("ws_url", &self.ws_url)
            .field("http_url", &self.http_url)
            .field("pending", &self.pending)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl LiveConfig {
    /// Defaults for `chain_id` with these endpoints.
    pub fn new(chain_id: u64, ws_url: EndpointUrl, http_url: EndpointUrl) -> Self {
        Self {
            chain_id,
            ws_url,
            http_url,
            head_subscription_capacity: 64,
            pending_subscription_capacity: 2048,
            pending: true,
            window: DEFAULT_WINDOW,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            ws_max_retries: 3,
            ws_retry_interval: Duration::from_millis(500),
            ws_keepalive: Duration::from_secs(5),
            fetch_tries: 4,
            request_timeout: Duration::from_secs(5),
            stale_after: Duration::from_secs(10),
        }
    }

    /// Defaults for a configured chain; [`stale_after`](Self::stale_after) is three block times.
    pub fn from_chain(chain: &ChainConfig) -> Self {
        let mut cfg = Self::new(chain.chain_id, chain.ws_url.clone(), chain.http_url.clone());
        cfg.stale_after = Duration::from_millis(chain.block_time_ms.saturating_mul(3))
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        cfg
    }
}

/// A running live source. Dropping it (or [`IngestHandle::stop`]) ends the task.
#[derive(Debug)]
pub struct IngestHandle {
    task: JoinHandle<()>,
    counters: Arc<IngestCounters>,
}

impl IngestHandle {
    /// The chain's counters.
    pub fn counters(&self) -> &Arc<IngestCounters> {
        &self.counters
    }

    /// Whether the task has ended (the engine's receiver is gone).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Ends the task and waits for it.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for IngestHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the live source of one chain on the current tokio runtime. With `resume_from` (the last
/// head the engine processed before a restart), everything after it is backfilled in order.
///
/// # Errors
/// [`IngestError::BadUrl`] when an endpoint does not parse.
pub fn spawn(
    cfg: LiveConfig,
    tx: EventSender,
    resume_from: Option<BlockRef>,
) -> Result<IngestHandle, IngestError> {
    let url = cfg
        .http_url
        .expose_secret()
        .parse()
        .map_err(|_| IngestError::BadUrl { chain_id: cfg.chain_id, which: "http_url" })?;
    let http = ProviderBuilder::new().disable_recommended_fillers().connect_http(url).erased();
    let tracker = match resume_from {
        Some(last) => HeadTracker::resume(cfg.chain_id, cfg.window, last),
        None => HeadTracker::new(cfg.chain_id, cfg.window),
    };
    let counters = Arc::new(IngestCounters::default());
    let mut source = Source { cfg, tx, counters: counters.clone(), http, tracker };
    let task = tokio::spawn(async move { source.run().await });
    Ok(IngestHandle { task, counters })
}

/// How a session ended.
enum End {
    /// It never came up (connect or subscribe failed or timed out): reconnect.
    Failed,
    /// It was up, then lost (connection closed, or the subscription went stale): reconnect.
    Lost,
    /// The engine is gone: stop.
    Stop,
}

struct Source {
    cfg: LiveConfig,
    tx: EventSender,
    counters: Arc<IngestCounters>,
    http: DynProvider,
    tracker: HeadTracker,
}

impl Source {
    async fn run(&mut self) {
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            match self.session().await {
                End::Stop => return,
                // A session that was up for a while resets the backoff (a connect that times
                // out does not: it would turn the backoff into the timeout).
                End::Lost if started.elapsed() > self.cfg.backoff_max => failures = 0,
                End::Lost | End::Failed => {}
            }
            failures = failures.saturating_add(1);
            IngestCounters::add(&self.counters.reconnects, 1);
            let delay = backoff(self.cfg.backoff_initial, self.cfg.backoff_max, failures);
            tracing::info!(target: TARGET, chain_id = self.cfg.chain_id, ?delay, "reconnecting");
            tokio::time::sleep(delay).await;
        }
    }

    async fn session(&mut self) -> End {
        let chain_id = self.cfg.chain_id;
        let limit = self.cfg.request_timeout;
        let ws = WsConnect::new(self.cfg.ws_url.expose_secret())
            .with_max_retries(self.cfg.ws_max_retries)
            .with_retry_interval(self.cfg.ws_retry_interval)
            .with_keepalive_interval(self.cfg.ws_keepalive);
        // Every step is bounded: a peer that accepts and never answers must not hang the feed.
        let provider = match timeout(limit, ProviderBuilder::new().connect_ws(ws)).await {
            Ok(Ok(p)) => p,
            _ => return self.connect_failed("connect"),
        };
        let subscribe =
            provider.subscribe_blocks().channel_size(self.cfg.head_subscription_capacity);
        let mut heads = match timeout(limit, subscribe).await {
            Ok(Ok(s)) => s,
            _ => return self.connect_failed("subscribe newHeads"),
        };
        let mut pending = if self.cfg.pending {
            let subscribe = provider
                .subscribe_full_pending_transactions()
                .channel_size(self.cfg.pending_subscription_capacity);
            match timeout(limit, subscribe).await {
                Ok(Ok(s)) => Some(s),
                _ => {
                    // Some nodes do not offer full pending transactions: follow heads anyway.
                    IngestCounters::add(&self.counters.connect_failures, 1);
                    tracing::warn!(target: TARGET, chain_id,
                        "full pending-transaction subscription refused; following heads only");
                    None
                }
            }
        } else {
            None
        };
        self.counters.connected.store(true, Ordering::Relaxed);
        tracing::info!(target: TARGET, chain_id, "connected");
        if self.emit(Event::Connection { chain_id, up: true }).await.is_err() {
            return End::Stop;
        }
        // Catch up with whatever was missed since the last head (or since `resume_from`).
        if self.catch_up().await.is_err() {
            return End::Stop;
        }
        let quiet = tokio::time::sleep(self.cfg.stale_after);
        tokio::pin!(quiet);
        let end = loop {
            tokio::select! {
                biased;
                r = heads.recv() => match r {
                    Ok(header) => {
                        quiet.as_mut().reset(tokio::time::Instant::now() + self.cfg.stale_after);
                        let head = Head::from_rpc(chain_id, &header, Instant::now());
                        let step = self.tracker.on_head(head);
                        if self.drive(step).await.is_err() {
                            break End::Stop;
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        IngestCounters::add(&self.counters.lagged_heads, missed);
                        tracing::warn!(target: TARGET, chain_id, missed, "newHeads lagged; resyncing");
                        let reason = ResyncReason::Lagged { missed };
                        if self.emit(Event::Resync { chain_id, reason }).await.is_err() {
                            break End::Stop;
                        }
                        if self.catch_up().await.is_err() {
                            break End::Stop;
                        }
                    }
                    Err(RecvError::Closed) => break End::Lost,
                },
                r = recv_pending(&mut pending) => match r {
                    Ok(tx) => {
                        let p = PendingTx { chain_id, tx, received_at: Instant::now() };
                        if self.tx.send_pending(p, &self.counters).is_err() {
                            break End::Stop;
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        IngestCounters::add(&self.counters.lagged_pending, missed);
                    }
                    Err(RecvError::Closed) => break End::Lost,
                },
                () = &mut quiet => match self.check_stale().await {
                    Ok(false) => {
                        quiet.as_mut().reset(tokio::time::Instant::now() + self.cfg.stale_after);
                    }
                    Ok(true) => break End::Lost,
                    Err(SendError) => break End::Stop,
                },
            }
        };
        self.counters.connected.store(false, Ordering::Relaxed);
        if let End::Stop = end {
            return End::Stop;
        }
        tracing::warn!(target: TARGET, chain_id, "subscription closed or stale; connection lost");
        match self.emit(Event::Connection { chain_id, up: false }).await {
            Ok(()) => End::Lost,
            Err(_) => End::Stop,
        }
    }

    /// After a quiet spell, polls the latest block. `Ok(true)` when the node has heads above
    /// the last one emitted that the subscription never delivered: they are emitted in order
    /// (backfilled), and the subscription is stale. A latest block at or below the tip changes
    /// nothing (an idle chain, or an HTTP backend a block behind: never a reason to roll back).
    async fn check_stale(&mut self) -> Result<bool, SendError> {
        let Some(head) = self.fetch(BlockQuery::Latest).await else {
            return Ok(false);
        };
        if self.tracker.tip().is_some_and(|tip| head.number <= tip.number) {
            return Ok(false);
        }
        IngestCounters::add(&self.counters.stale_sessions, 1);
        tracing::warn!(target: TARGET, chain_id = self.cfg.chain_id, quiet = ?self.cfg.stale_after,
            latest = head.number, "the subscription missed heads the node has; reconnecting");
        let step = self.tracker.on_head(head);
        self.drive(step).await?;
        Ok(true)
    }

    /// Counts and logs a failed connection step. The error text is not logged: it may contain
    /// the endpoint, which may embed an API key.
    fn connect_failed(&self, what: &'static str) -> End {
        IngestCounters::add(&self.counters.connect_failures, 1);
        tracing::warn!(target: TARGET, chain_id = self.cfg.chain_id, what, "websocket failed");
        End::Failed
    }

    /// Emits a head or control event, counting heads, reorgs and resyncs.
    async fn emit(&self, event: Event) -> Result<(), SendError> {
        let c = &self.counters;
        match &event {
            Event::Head(_) => IngestCounters::add(&c.heads, 1),
            Event::Reorg { depth, common_ancestor, .. } => {
                IngestCounters::add(&c.reorgs, 1);
                tracing::warn!(target: TARGET, chain_id = self.cfg.chain_id, depth,
                    ancestor = common_ancestor.number, "reorg");
            }
            Event::Resync { reason, .. } => {
                IngestCounters::add(&c.resyncs, 1);
                tracing::warn!(target: TARGET, chain_id = self.cfg.chain_id, %reason, "resync");
            }
            Event::Pending(_) | Event::Connection { .. } => {}
        }
        self.tx.send_head(event, c).await
    }

    /// Emits a step's events and performs its fetches until the tracker is done.
    async fn drive(&mut self, mut step: Step) -> Result<(), SendError> {
        loop {
            if step.duplicate {
                IngestCounters::add(&self.counters.duplicates, 1);
            }
            IngestCounters::add(&self.counters.backfilled, u64::from(step.backfilled));
            for event in step.events.drain(..) {
                self.emit(event).await?;
            }
            let Some(hash) = step.fetch else {
                return Ok(());
            };
            let block = self.fetch(BlockQuery::Hash(hash)).await;
            step = self.tracker.on_fetched(block);
        }
    }

    /// Feeds the node's latest block through the tracker (which backfills from the last head).
    async fn catch_up(&mut self) -> Result<(), SendError> {
        match self.fetch(BlockQuery::Latest).await {
            Some(head) => {
                let step = self.tracker.on_head(head);
                self.drive(step).await
            }
            // The next subscription head will backfill instead.
            None => Ok(()),
        }
    }

    /// Fetches a block over HTTP with a few tries; `None` when it is unknown or every try failed.
    async fn fetch(&self, query: BlockQuery) -> Option<Head> {
        let tries = self.cfg.fetch_tries.max(1);
        for attempt in 0..tries {
            let call = async {
                match query {
                    BlockQuery::Hash(h) => self.http.get_block_by_hash(h).await,
                    BlockQuery::Latest => {
                        self.http.get_block_by_number(BlockNumberOrTag::Latest).await
                    }
                }
            };
            // A timeout counts as a failed try, like a transport error.
            let result = match timeout(self.cfg.request_timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(TransportErrorKind::custom_str("block fetch timed out")),
            };
            match result {
                Ok(Some(block)) => {
                    return Some(Head::from_rpc(self.cfg.chain_id, &block.header, Instant::now()));
                }
                // Unknown to the node (orphaned again, or not yet seen): do not insist.
                Ok(None) if attempt + 1 >= 2 => return None,
                Ok(None) => {}
                Err(_) => {
                    IngestCounters::add(&self.counters.fetch_errors, 1);
                    tracing::debug!(target: TARGET, chain_id = self.cfg.chain_id, ?query,
                        attempt, "block fetch failed");
                }
            }
            tokio::time::sleep(Duration::from_millis(50u64 << attempt.min(6))).await;
        }
        None
    }
}

#[derive(Debug, Clone, Copy)]
enum BlockQuery {
    Hash(B256),
    Latest,
}

/// Receives from the pending subscription, or never when there is none. Cancel-safe.
async fn recv_pending(
    sub: &mut Option<alloy::pubsub::Subscription<alloy::rpc::types::Transaction>>,
) -> Result<alloy::rpc::types::Transaction, RecvError> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Capped exponential backoff with ±25% jitter for the `failures`-th consecutive failure (≥ 1).
fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exp = initial.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(max);
    let jitter = 0.75 + fastrand::f64() * 0.5;
    exp.mul_f64(jitter).max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_never_spins() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(2));
        for n in 1..40 {
            let d = backoff(i, m, n);
            assert!(d >= Duration::from_millis(75), "{n}: {d:?}");
            assert!(d <= Duration::from_millis(2_500), "{n}: {d:?}");
        }
        assert!(backoff(i, m, 1) <= Duration::from_millis(125));
        assert!(backoff(i, m, 10) >= Duration::from_millis(1_500));
        assert!(backoff(Duration::ZERO, Duration::ZERO, 1) >= Duration::from_millis(10));
    }

    #[test]
    fn debug_never_shows_endpoints() {
        let cfg = LiveConfig::new(
            1,
            EndpointUrl::new("wss://node.example/v2/SECRETKEY").unwrap(),
            EndpointUrl::new("https://node.example/v2/SECRETKEY").unwrap(),
        );
        let s = format!("{cfg:?}");
        assert!(!s.contains("SECRETKEY"), "{s}");
    }
}
