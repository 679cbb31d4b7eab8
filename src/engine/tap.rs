//! A tap on the candidates the engine proves, for `cantilever bench`'s eth_call baseline.
//!
//! Unset (every live run) the tap costs one atomic load per proven candidate. A bench sets
//! [`EngineStats::tap`](super::EngineStats::tap) right after `start`; the engine then sends, for
//! every candidate it simulated (or found cold), the exact call it simulated and what revm said.

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
