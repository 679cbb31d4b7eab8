//! Taps on what the engine screens and proves, for `cantilever bench`'s eth_call baselines.
//!
//! Unset (every live run) each tap costs one atomic load per proven candidate or event. A bench
//! sets [`EngineStats::tap`](super::EngineStats::tap) right after `start`; the engine then sends,
//! for every candidate it simulated (or found cold), the exact call it simulated and what revm
//! said. With [`EngineStats::screen_tap`](super::EngineStats::screen_tap) set it also sends, once
//! an event is handled (after its end-to-end latency was recorded, so building these calls is
//! never timed), every route it screened for the event as the executor call a typical bot would
//! evaluate by `eth_call`: at the size it found, or at the route's minimum probe amount.

use alloy::primitives::{Address, Bytes, U256};

use crate::{
    sim::{NextBlock, SimError, SimOutcome},
    state::BlockRef,
    telemetry::EventKind,
};

/// What the in-process simulation of a candidate said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TapOutcome {
    /// Simulated: whether it succeeded and the gas it used.
    Simulated {
        /// Success (not reverted or halted).
        success: bool,
        /// Gas used, intrinsic gas included.
        gas_used: u64,
    },
    /// Skipped: state the cache did not hold.
    Cold,
    /// The simulation failed (the error's text).
    Failed(String),
}

/// One candidate the engine proved, as the call it simulated.
#[derive(Clone, Debug)]
pub struct ProvedCandidate {
    /// The event kind that produced it.
    pub kind: EventKind,
    /// The head whose state it ran on.
    pub head: BlockRef,
    /// The block environment it ran in.
    pub next: NextBlock,
    /// Sender (the operator).
    pub from: Address,
    /// The executor.
    pub to: Address,
    /// The executor route's calldata (as signed, before the on-chain minimum profit is set).
    pub input: Bytes,
    /// Gas limit of the probe.
    pub gas_limit: u64,
    /// Max fee per gas.
    pub max_fee_per_gas: u128,
    /// Priority fee per gas.
    pub max_priority_fee_per_gas: u128,
    /// Pending transactions applied before it (the victims of a backrun), in order.
    pub leading: Vec<alloy::rpc::types::Transaction>,
    /// Route index in the market.
    pub route: usize,
    /// Input amount.
    pub amount_in: U256,
    /// What revm said.
    pub outcome: TapOutcome,
}

impl TapOutcome {
    /// The outcome of a simulation result.
    pub fn of(r: &Result<SimOutcome, SimError>) -> Self {
        match r {
            Ok(o) => Self::Simulated { success: o.success(), gas_used: o.gas_used },
            Err(SimError::Cold(_)) => Self::Cold,
            Err(e) => Self::Failed(e.to_string()),
        }
    }
}

/// One route the engine screened (sized natively) for an event, as an executor call.
#[derive(Clone, Debug)]
pub struct ScreenedRoute {
    /// Route index in the market.
    pub route: usize,
    /// Input amount: the size found, or the minimum probe amount when sizing found no profit.
    pub amount_in: U256,
    /// Whether sizing found a profit.
    pub profitable: bool,
    /// The executor route's calldata at `amount_in`.
    pub input: Bytes,
    /// The executor route's calldata at every input the sizing evaluated natively, in order
    /// (what a bot without native venue math would ask a node to evaluate instead).
    pub probes: Vec<Bytes>,
}

/// Every route the engine screened for one event (sent once the event is handled).
#[derive(Clone, Debug)]
pub struct ScreenedEvent {
    /// The event kind.
    pub kind: EventKind,
    /// The head whose state the routes were sized on.
    pub head: BlockRef,
    /// The block environment.
    pub next: NextBlock,
    /// Sender (the operator).
    pub from: Address,
    /// The executor.
    pub to: Address,
    /// Gas limit of each call.
    pub gas_limit: u64,
    /// Max fee per gas.
    pub max_fee_per_gas: u128,
    /// Priority fee per gas.
    pub max_priority_fee_per_gas: u128,
    /// Pending transactions ahead of every route (the victims of a backrun), in order.
    pub leading: Vec<alloy::rpc::types::Transaction>,
    /// The routes, in screening order (routes the sizer could not encode are left out).
    pub routes: Vec<ScreenedRoute>,
    /// Routes screened whose call could not be encoded at their amount.
    pub unencodable: usize,
    /// Transactions the engine signed for the event.
    pub signed: u32,
    /// Time the engine spent signing them, ns (the signing a typical bot does too).
    pub sign_ns: u64,
}
