//! Cross-chain spread trading and bridge rebalancing (seed 000 layer 3).
//!
//! ```text
//!  chain A engine ──snapshot/leg reports──▶ ┌─────────────┐ ◀──snapshot/leg reports── chain B engine
//!        ▲                                  │ coordinator │                                ▲
//!        └──── Prove / Go / Cancel / Bridge ┤  (thread)   ├ Prove / Go / Cancel / Bridge ──┘
//!                                           └─────────────┘
//!                                  inventory book · spread sizing · bridge tracking
//! ```
//!
//! Each chain keeps its own engine (ingest, fork cache, simulator, nonce, submitter), so one
//! chain's latency never waits on the other. After every head an engine publishes a snapshot (its
//! decoded pools, the executor's inventory, gas). The coordinator keeps one view of inventory per
//! asset per chain plus transfers in flight on the bridge ([`inventory`]), finds the same pair
//! priced on both chains and sizes the two legs net of both legs' gas, the bridge fee (the cost of
//! bringing the inventory back) and a risk margin ([`spread`]). A trade runs in two phases: both
//! engines prove their leg in revm on their own head and hold it; only when both proved does the
//! coordinator tell both to sign and send, at the same time. If exactly one leg lands the landed
//! side is recorded as an open position (ledger `positions`, metric) and the pair is frozen
//! (`hold`) or the landed leg is traded back within a loss cap (`unwind`); the failed leg is never
//! chased. When an asset's split between the chains drifts past the skew threshold, the excess
//! moves through the bridge (`executor.bridgeOut`, owner-approved destinations only), after the
//! capacity rule (the destination reserve covers the outflow in flight over the bridge latency)
//! and the in-flight cap; transfers are tracked from the `Locked` to the `Released` event and
//! their fee and gas booked.

pub mod coordinator;
pub mod inventory;
pub mod msg;
pub mod spread;

use std::{
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

pub use coordinator::{InventoryPoint, XChain, XStats};
pub use msg::{
    BridgeOrder, ChainSnapshot, Holding, LegOrder, LegOutcome, LegProof, PoolView, XControl,
    XEvent, XLink,
};

use crate::{
    config::{CrossChainConfig, RiskConfig},
    engine::Control,
    ledger::LedgerHandle,
};

/// A running coordinator.
#[derive(Debug)]
pub struct XHandle {
    /// Counters.
    pub stats: Arc<XStats>,
    /// Inventory accounting at every snapshot (bounded).
    pub history: Arc<Mutex<Vec<InventoryPoint>>>,
    thread: Option<JoinHandle<()>>,
}

impl XHandle {
    /// A copy of the inventory history.
    pub fn points(&self) -> Vec<InventoryPoint> {
        self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Waits for the coordinator thread to end (after its engines stopped).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Links the two chains' engines to a new coordinator thread and starts it. Must be called from
/// within a tokio runtime (bridge tracking reads through it).
///
/// # Errors
/// When the thread cannot be spawned.
pub fn start(
    cfg: CrossChainConfig,
    risk: &RiskConfig,
    chains: [XChain; 2],
    ledger: Option<LedgerHandle>,
) -> std::io::Result<XHandle> {
    let (tx, rx) = crossbeam_channel::unbounded();
    for c in &chains {
        c.control.send(Control::Xchain(XControl::Link(XLink(tx.clone()))));
    }
    // Each chain reads ahead what a transfer to the other chain through its bridge needs.
    for (i, c) in chains.iter().enumerate() {
        if let Some(bridge) = c.bridge {
            let other = chains[1 - i].chain_id;
            c.control.send(Control::Xchain(XControl::Warm(vec![(bridge, other)])));
        }
    }
    drop(tx);
    let stats = Arc::new(XStats::default());
    let history = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Handle::current();
    let co = coordinator::Coordinator::new(
        cfg,
        risk.max_slippage_bps,
        max_notional(risk),
        chains,
        ledger,
        stats.clone(),
        history.clone(),
        rt,
    );
    let thread = std::thread::Builder::new().name("xchain".into()).spawn(move || co.run(&rx))?;
    Ok(XHandle { stats, history, thread: Some(thread) })
}

/// The largest notional one cross-chain trade may take under the desk's limits, USD.
pub fn max_notional(risk: &RiskConfig) -> f64 {
    risk.max_notional_per_route_usd
        .min(risk.per_block_volume_cap_usd)
        .min(risk.ramp.initial_notional_usd)
}

/// Starts the coordinator for a configured, enabled `[strategies.cross_chain]` over engines
/// already running (`engines` by chain name); `Ok(None)` when cross-chain trading is not enabled
/// or one of its chains is not running.
///
/// # Errors
/// A chain's `http_url` does not parse, or the thread cannot be spawned.
pub fn start_from_config(
    cfg: &crate::config::Config,
    engines: &[(&str, &crate::engine::RunHandle)],
    ledger: Option<LedgerHandle>,
) -> Result<Option<XHandle>, String> {
    let Some(x) = cfg.strategies.cross_chain.as_ref().filter(|x| x.enabled) else {
        return Ok(None);
    };
    let mut chains = Vec::with_capacity(2);
    for name in &x.chains {
        let (Some(chain), Some((_, h))) =
            (cfg.chain(name), engines.iter().find(|(n, _)| *n == name.as_str()))
        else {
            tracing::warn!(chain = %name, "cross-chain trading needs both chains running; not started");
            return Ok(None);
        };
        let url = chain
            .http_url
            .expose_secret()
            .parse()
            .map_err(|_| format!("chain `{name}`: http_url is not a URL"))?;
        let provider = alloy::providers::Provider::erased(
            alloy::providers::ProviderBuilder::new().connect_http(url),
        );
        let Some(executor) = chain.executor else {
            return Err(format!("chain `{name}`: cross-chain trading needs an executor"));
        };
        let other: Vec<&String> = x.chains.iter().filter(|c| *c != name).collect();
        let bridge = chain
            .venues
            .iter()
            .find(|v| {
                v.kind == crate::config::VenueKind::Bridge
                    && v.remote_chain.as_ref().is_some_and(|r| other.contains(&r))
            })
            .map(|v| v.address);
        chains.push(XChain {
            chain_id: chain.chain_id,
            name: name.clone(),
            control: h.controller(),
            provider: Some(provider),
            executor,
            bridge,
        });
    }
    let chains: [XChain; 2] =
        chains.try_into().map_err(|_| "cross_chain.chains must name two chains".to_owned())?;
    start(x.clone(), &cfg.risk, chains, ledger).map(Some).map_err(|e| format!("coordinator: {e}"))
}

/// The coordinator's counters on the metrics page (gauges set from [`XStats`] at each sync).
#[derive(Debug, Clone)]
pub struct XMetrics {
    gauges: Vec<(&'static str, crate::telemetry::Gauge)>,
    floats: Vec<(&'static str, crate::telemetry::FloatGauge)>,
}

/// (metric name, help) of the integer gauges, in [`XMetrics::sync`] order.
const X_GAUGES: [(&str, &str); 8] = [
    ("cantilever_xchain_trades", "Cross-chain trades whose legs were ordered proven."),
    ("cantilever_xchain_settled", "Cross-chain trades with both legs landed."),
    (
        "cantilever_xchain_one_leg",
        "Cross-chain trades where exactly one leg landed (open positions).",
    ),
    ("cantilever_xchain_frozen", "1 while a pair is frozen after a leg failure."),
    ("cantilever_xchain_refused_costs", "Spreads screened and refused for not paying every cost."),
    ("cantilever_bridge_transfers", "Bridge transfers sent."),
    ("cantilever_bridge_arrived", "Bridge transfers released on their destination."),
    (
        "cantilever_bridge_refused_capacity",
        "Rebalances refused by the capacity rule or the in-flight cap.",
    ),
];

/// (metric name, help) of the USD gauges, in [`XMetrics::sync`] order.
const X_FLOATS: [(&str, &str); 4] = [
    (
        "cantilever_xchain_realised_pnl_usd",
        "Realised PnL of settled cross-chain trades after gas, USD.",
    ),
    ("cantilever_xchain_simulated_pnl_usd", "Simulated PnL of the same trades after gas, USD."),
    ("cantilever_bridge_in_flight_usd", "Value in flight through the bridge, USD."),
    ("cantilever_bridge_cost_usd", "Bridge fees and lock gas booked, USD."),
];

impl XMetrics {
    /// Registers the coordinator's gauges.
    ///
    /// # Errors
    /// A name clash in `registry`.
    pub fn new(
        registry: &crate::telemetry::Registry,
    ) -> Result<Self, crate::telemetry::TelemetryError> {
        let gauges = X_GAUGES
            .iter()
            .map(|(n, h)| registry.gauge(n, h, &[]).map(|g| (*n, g)))
            .collect::<Result<_, _>>()?;
        let floats = X_FLOATS
            .iter()
            .map(|(n, h)| registry.float_gauge(n, h, &[]).map(|g| (*n, g)))
            .collect::<Result<_, _>>()?;
        Ok(Self { gauges, floats })
    }

    /// Sets every gauge from `s`.
    pub fn sync(&self, s: &XStats) {
        use std::sync::atomic::Ordering::Relaxed;
        let ints = [
            s.trades.load(Relaxed),
            s.settled.load(Relaxed),
            s.one_leg.load(Relaxed),
            u64::from(s.frozen.load(Relaxed)),
            s.refused_costs.load(Relaxed),
            s.transfers.load(Relaxed),
            s.arrived.load(Relaxed),
            s.refused_capacity.load(Relaxed),
        ];
        for ((_, g), v) in self.gauges.iter().zip(ints) {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        }
        let usd = [
            s.realised_micro_usd.load(Relaxed),
            s.simulated_micro_usd.load(Relaxed),
            s.in_flight_micro_usd.load(Relaxed),
            s.bridge_cost_micro_usd.load(Relaxed),
        ];
        for ((_, g), v) in self.floats.iter().zip(usd) {
            g.set(v as f64 / 1e6);
        }
    }
}
