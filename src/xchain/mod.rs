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
    drop(tx);
    let stats = Arc::new(XStats::default());
    let history = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Handle::current();
    let max_notional = risk
        .max_notional_per_route_usd
        .min(risk.per_block_volume_cap_usd)
        .min(risk.ramp.initial_notional_usd);
    let co = coordinator::Coordinator::new(
        cfg,
        risk.max_slippage_bps,
        max_notional,
        chains,
        ledger,
        stats.clone(),
        history.clone(),
        rt,
    );
    let thread = std::thread::Builder::new().name("xchain".into()).spawn(move || co.run(&rx))?;
    Ok(XHandle { stats, history, thread: Some(thread) })
}
