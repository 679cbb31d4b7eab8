//! Copying a chain engine's counters into health and metrics, off the hot path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{ChainConfig, SubmissionMode};
use crate::engine::{EngineStats, ExecCounters};
use crate::telemetry::{ChainHealth, Counter, Gauge, Health, Metrics, TelemetryError};

/// Reads one cumulative counter of [`EngineStats`].
type StatField = fn(&EngineStats) -> &AtomicU64;

/// One engine counter mirrored into a Prometheus counter (by the increase since the last sync).
#[derive(Debug)]
struct Mirror {
    read: StatField,
    to: Counter,
    last: u64,
}

impl Mirror {
    fn sync(&mut self, stats: &EngineStats) {
        let now = (self.read)(stats).load(Ordering::Relaxed);
        // The engine's counters only grow; a smaller value (never expected) is not subtracted.
        self.to.add(now.saturating_sub(self.last));
        self.last = self.last.max(now);
    }
}

/// One chain's engine counters copied into [`Health`] and the registry of [`Metrics`].
///
/// Call [`sync`](Self::sync) every few hundred ms with the node's latest block number (or
/// `None` when the node did not answer). It sets, for the chain: connected (the node answered),
/// head lag (node head − the engine's last fully processed head), cache freshness; and it adds
/// the increase of every engine counter to:
///
/// | metric | engine counter |
/// |---|---|
/// | `cantilever_candidates_total` | candidates screened profitable |
/// | `cantilever_refusals_total{reason="all"}` | refusals of every kind |
/// | `cantilever_refusals_total{reason=KIND}` | refusals by kind (`min_profit_usd`, `containment:reverted`, ...) |
/// | `cantilever_approvals_total{chain}` | approvals |
/// | `cantilever_submissions_total{chain,kind}` | submissions handed to execution (`raw` or `bundle`) |
/// | `cantilever_stabilizer_trades_total{chain}` | stabilizer trades approved |
/// | `cantilever_simulations_total{chain}` | candidates proven in revm |
/// | `cantilever_heads_total{chain}` | heads processed |
/// | `cantilever_pending_txs_total{chain}` | pending transactions examined |
/// | `cantilever_cold_skips_total{chain}` | candidates skipped for cold state |
///
/// | `cantilever_reconnects_total{chain}` | the WS feed's reconnects |
/// | `cantilever_gaps_backfilled_total{chain}` | blocks the feed backfilled after a gap |
/// | `cantilever_feed_lagged_total{chain}` | heads the feed's subscription lagged (then resynced) |
/// | `cantilever_reorgs_total{chain}` | reorgs the feed saw |
///
/// With the exec task's counters ([`with_exec`](Self::with_exec)):
///
/// | metric | exec counter |
/// |---|---|
/// | `cantilever_inclusions_total{relay,outcome}` | final outcomes per relay or RPC endpoint |
/// | `cantilever_orphaned_total{chain}` | landed submissions reorged out |
/// | `cantilever_bundles_cancelled_total{chain}` | bundles cancelled (reorg, shutdown) |
///
/// and the gauges `cantilever_engine_head{chain}` (last head processed),
/// `cantilever_inflight_submissions{chain}` and `cantilever_chain_realised_pnl_usd{chain}`.
/// "Connected" needs both the node's answer and the WS feed's own connection state. The halt flag is process-wide: the caller sets
/// [`Health::set_halted`] from [`is_halted`](Self::is_halted) of every chain.
#[derive(Debug)]
pub struct ChainTelemetry {
    name: String,
    stats: Arc<EngineStats>,
    inflight: Arc<AtomicU64>,
    health: ChainHealth,
    mirrors: Vec<Mirror>,
    head: Gauge,
    inflight_gauge: Gauge,
    pnl: crate::telemetry::FloatGauge,
    reconnects: Counter,
    gaps: Counter,
    seen_reconnects: u64,
    seen_gaps: u64,
    metrics: Metrics,
    refusals: std::collections::HashMap<String, (Counter, u64)>,
    lagged: Counter,
    reorgs: Counter,
    seen_lagged: u64,
    seen_reorgs: u64,
    exec: Option<ExecMirror>,
}

/// The exec task's counters and what was already copied of them.
#[derive(Debug)]
struct ExecMirror {
    counters: Arc<ExecCounters>,
    orphaned: Counter,
    cancelled: Counter,
    seen_orphaned: u64,
    seen_cancelled: u64,
    outcomes: std::collections::HashMap<(String, &'static str), (Counter, u64)>,
}

impl ChainTelemetry {
    /// Registers `chain`'s series in `metrics`' registry and takes its setters from `health`
    /// (where the chain must be registered under its name).
    ///
    /// # Errors
    /// [`TelemetryError::Metric`] when a series clashes with an earlier registration, or the
    /// chain is not registered in `health`.
    pub fn new(
        metrics: &Metrics,
        health: &Health,
        chain: &ChainConfig,
        stats: Arc<EngineStats>,
        inflight: Arc<AtomicU64>,
    ) -> Result<Self, TelemetryError> {
        let name = chain.name.as_str();
        let health = health.chain(name).ok_or_else(|| {
            TelemetryError::Metric(format!("chain {name} is not registered in the health"))
        })?;
        let reg = metrics.registry();
        let labels = [("chain", name)];
        let per_chain = |metric: &str, help: &str| reg.counter(metric, help, &labels);
        let kind = match chain.submission.mode {
            SubmissionMode::FlashbotsRelay => "bundle",
            SubmissionMode::PublicRpc | SubmissionMode::PrivateRpc => "raw",
        };
        let table: [(StatField, Counter); 9] = [
            (|s| &s.candidates, metrics.candidates.clone()),
            (|s| &s.refused, metrics.refusals("all")?),
            (
                |s| &s.approved,
                per_chain("cantilever_approvals_total", "Candidates approved by every check.")?,
            ),
            (|s| &s.submitted, metrics.submissions(name, kind)?),
            (
                |s| &s.stabilizer_trades,
                per_chain("cantilever_stabilizer_trades_total", "Stabilizer trades approved.")?,
            ),
            (
                |s| &s.simulated,
                per_chain("cantilever_simulations_total", "Candidates proven in revm.")?,
            ),
            (|s| &s.heads, per_chain("cantilever_heads_total", "Heads processed by the engine.")?),
            (
                |s| &s.pending,
                per_chain("cantilever_pending_txs_total", "Pending transactions examined.")?,
            ),
            (
                |s| &s.cold_skips,
                per_chain("cantilever_cold_skips_total", "Candidates skipped for cold state.")?,
            ),
        ];
        let mirrors = table.into_iter().map(|(read, to)| Mirror { read, to, last: 0 }).collect();
        Ok(Self {
            name: name.to_owned(),
            stats,
            inflight,
            health,
            mirrors,
            head: reg.gauge(
                "cantilever_engine_head",
                "The last block the engine fully processed.",
                &labels,
            )?,
            inflight_gauge: reg.gauge(
                "cantilever_inflight_submissions",
                "Submissions sent whose outcome is not known yet.",
                &labels,
            )?,
            pnl: reg.float_gauge(
                "cantilever_chain_realised_pnl_usd",
                "Realised PnL after gas of the chain's decided submissions, USD.",
                &labels,
            )?,
            reconnects: metrics.chain(name)?.reconnects,
            gaps: metrics.chain(name)?.gaps_backfilled,
            seen_reconnects: 0,
            seen_gaps: 0,
            metrics: metrics.clone(),
            refusals: std::collections::HashMap::new(),
            lagged: per_chain(
                "cantilever_feed_lagged_total",
                "Heads the feed's subscription lagged behind (each followed by a resync).",
            )?,
            reorgs: per_chain("cantilever_reorgs_total", "Reorgs seen by the chain feed.")?,
            seen_lagged: 0,
            seen_reorgs: 0,
            exec: None,
        })
    }

    /// Also mirrors the exec task's counters: outcomes per relay, orphaned inclusions, cancelled
    /// bundles.
    ///
    /// # Errors
    /// [`TelemetryError::Metric`] when a series clashes with an earlier registration.
    pub fn with_exec(mut self, counters: Arc<ExecCounters>) -> Result<Self, TelemetryError> {
        let reg = self.metrics.registry();
        let labels = [("chain", self.name.as_str())];
        self.exec = Some(ExecMirror {
            counters,
            orphaned: reg.counter(
                "cantilever_orphaned_total",
                "Landed submissions whose block was reorged out.",
                &labels,
            )?,
            cancelled: reg.counter(
                "cantilever_bundles_cancelled_total",
                "Bundles cancelled on the relays (parent replaced by a reorg, or shutdown).",
                &labels,
            )?,
            seen_orphaned: 0,
            seen_cancelled: 0,
            outcomes: std::collections::HashMap::new(),
        });
        Ok(self)
    }

    /// The chain's realised PnL after gas, USD.
    #[allow(clippy::cast_precision_loss, reason = "a PnL in micro-USD fits an f64's mantissa")]
    pub fn realised_pnl_usd(&self) -> f64 {
        self.stats.realised_pnl_micro_usd.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// The chain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The engine's counters.
    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// Whether this chain's engine is halted.
    pub fn is_halted(&self) -> bool {
        self.stats.halted.load(Ordering::Relaxed)
    }

    /// Submissions whose outcome is not known yet.
    pub fn inflight(&self) -> u64 {
        self.inflight.load(Ordering::Acquire)
    }

    /// Copies the counters and sets the chain's health. `node_head` is the node's latest block
    /// number, `None` when it did not answer (the chain then counts as not connected).
    pub fn sync(&mut self, node_head: Option<u64>) {
        let stats = &*self.stats;
        for m in &mut self.mirrors {
            m.sync(stats);
        }
        let engine_head = stats.last_head.load(Ordering::Acquire);
        self.head.set(i64::try_from(engine_head).unwrap_or(i64::MAX));
        self.inflight_gauge.set(i64::try_from(self.inflight()).unwrap_or(i64::MAX));
        self.pnl.set(self.realised_pnl_usd());
        // Refusals by kind.
        for entry in &stats.refusals_by_kind {
            let (kind, now) = (entry.key(), *entry.value());
            if !self.refusals.contains_key(kind) {
                let Ok(c) = self.metrics.refusals(kind) else { continue };
                self.refusals.insert(kind.clone(), (c, 0));
            }
            if let Some((c, seen)) = self.refusals.get_mut(kind) {
                c.add(now.saturating_sub(*seen));
                *seen = (*seen).max(now);
            }
        }
        // The feed's own view: connected, reconnects, gaps backfilled.
        let feed_up = stats.ingest.get().is_none_or(|c| c.connected.load(Ordering::Relaxed));
        if let Some(c) = stats.ingest.get() {
            let r = c.reconnects.load(Ordering::Relaxed);
            let g = c.backfilled.load(Ordering::Relaxed);
            self.reconnects.add(r.saturating_sub(self.seen_reconnects));
            self.gaps.add(g.saturating_sub(self.seen_gaps));
            self.seen_reconnects = self.seen_reconnects.max(r);
            self.seen_gaps = self.seen_gaps.max(g);
            let l = c.lagged_heads.load(Ordering::Relaxed);
            let o = c.reorgs.load(Ordering::Relaxed);
            self.lagged.add(l.saturating_sub(self.seen_lagged));
            self.reorgs.add(o.saturating_sub(self.seen_reorgs));
            self.seen_lagged = self.seen_lagged.max(l);
            self.seen_reorgs = self.seen_reorgs.max(o);
        }
        if let Some(x) = &mut self.exec {
            x.sync(&self.metrics);
        }
        self.health.set_connected(node_head.is_some() && feed_up);
        if let Some(node) = node_head {
            self.health.set_head_lag_blocks(node.saturating_sub(engine_head));
        }
        self.health.set_cache_fresh(stats.fresh.load(Ordering::Relaxed));
    }

    /// Marks the chain not connected (shutdown: `/health` stops answering ready at once).
    pub fn set_stopping(&self) {
        self.health.set_connected(false);
    }
}

impl ExecMirror {
    fn sync(&mut self, metrics: &Metrics) {
        let o = self.counters.orphaned.load(Ordering::Relaxed);
        let c = self.counters.cancelled.load(Ordering::Relaxed);
        self.orphaned.add(o.saturating_sub(self.seen_orphaned));
        self.cancelled.add(c.saturating_sub(self.seen_cancelled));
        self.seen_orphaned = self.seen_orphaned.max(o);
        self.seen_cancelled = self.seen_cancelled.max(c);
        for (relay, outcome, now) in self.counters.outcomes() {
            let key = (relay, outcome);
            if !self.outcomes.contains_key(&key) {
                let Ok(counter) = metrics.inclusions(&key.0, outcome) else { continue };
                self.outcomes.insert(key.clone(), (counter, 0));
            }
            if let Some((counter, seen)) = self.outcomes.get_mut(&key) {
                counter.add(now.saturating_sub(*seen));
                *seen = (*seen).max(now);
            }
        }
    }
}
