//! Risk: containment and desk limits, checked inline on the engine thread before anything is
//! signed (DESIGN §5, seeds 000 and 003).
//!
//! Everything here is synchronous and deterministic: no clock reads, no I/O on the check path.
//! Callers pass the block number and unix time ([`BookState`]). A refusal is data ([`Refusal`],
//! with a stable [`Refusal::kind`] and a reason with the numbers), never an `Err`.
//!
//! - [`RiskGate::check`] runs every desk limit on one [`Candidate`]: the halt, the daily loss cap,
//!   the base fee and gas price caps, the slippage cap, the minimum profit after gas, MIN_BLOCKS
//!   between stabilizer trades per pool, exposure per token, and the notional caps (per route, the
//!   route's size ramp, the capital bucket, the per-block volume and the stabilizer's per-block
//!   cap). An [`Approval`] carries the largest notional the caps allow, so the engine can cap the
//!   size; [`RiskGate::notional_cap`] gives that cap before sizing.
//! - `record_submission` / `record_fill` / `record_revert` / `record_miss` update the gate's book:
//!   per-block volume, last stabilizer trade per pool, size ramps, realised loss today and the run
//!   of consecutive failures. N consecutive reverts or misses, or the daily loss cap, trip the kill
//!   switch: the [`Halt`] is engaged and persisted, and only [`RiskGate::rearm`] clears it.
//! - [`DeviationTracker`]: time-weighted deviation per pool over the last N blocks; a single-block
//!   spike never qualifies as sustained.
//! - [`Halt`]: the halt file that survives restart. [`Mode`]: live, dry-run or shadow.

mod deviation;
mod gate;
mod halt;
mod mode;
mod refusal;
#[cfg(test)]
mod tests;

use std::fmt;

use alloy::primitives::{Address, U256, keccak256};
use smallvec::SmallVec;

use crate::config::CapitalBuckets;

pub use deviation::{DeviationError, DeviationTracker};
pub use gate::{Approval, NotionalLimit, RiskGate, Trip};
pub use halt::{Halt, HaltError, HaltInfo};
pub use mode::Mode;
pub use refusal::Refusal;

/// A contract (pool or token) on one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainAddress {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Contract address.
    pub address: Address,
}

impl ChainAddress {
    /// `address` on `chain_id`.
    pub const fn new(chain_id: u64, address: Address) -> Self {
        Self { chain_id, address }
    }
}

impl fmt::Display for ChainAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.address, self.chain_id)
    }
}

/// A stable identity of a route for its size ramp: the same pools in the same order give the
/// same key across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey(pub u64);

impl RouteKey {
    /// The key of the route through `pools` in order (keccak of chain ids and addresses, first 8
    /// bytes).
    pub fn from_pools(pools: &[ChainAddress]) -> Self {
        let mut buf: SmallVec<[u8; 112]> = SmallVec::new();
        for p in pools {
            buf.extend_from_slice(&p.chain_id.to_be_bytes());
            buf.extend_from_slice(p.address.as_slice());
        }
        let h = keccak256(&buf);
        let mut first = [0u8; 8];
        first.copy_from_slice(&h[..8]);
        Self(u64::from_be_bytes(first))
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Capital buckets of seed 000 §13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// A: public PMM liquidity.
    A,
    /// B: private stabilization.
    B,
    /// C: flash-loan liquidity (own capital instead of a flash loan).
    C,
    /// D: cross-chain buffer.
    D,
    /// E: long-term vault reserves; never traded.
    E,
}

impl Bucket {
    /// All buckets, A to E.
    pub const ALL: [Self; 5] = [Self::A, Self::B, Self::C, Self::D, Self::E];

    /// Index 0–4 (A–E), for [`BookState::bucket_in_use_usd`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The bucket's share of NAV, %.
    pub const fn pct(self, buckets: &CapitalBuckets) -> f64 {
        match self {
            Self::A => buckets.a_public_pmm_pct,
            Self::B => buckets.b_stabilization_pct,
            Self::C => buckets.c_flash_pct,
            Self::D => buckets.d_cross_chain_pct,
            Self::E => buckets.e_reserve_pct,
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::A => "A",
            Self::B => "B",
            Self::C => "C",
            Self::D => "D",
            Self::E => "E",
        })
    }
}

/// The strategy a candidate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    /// Stablecoin depeg.
    Depeg,
    /// Anchor triangle.
    Triangle,
    /// Proportional stabilizer (MIN_BLOCKS and its own per-block cap apply).
    Stabilizer,
    /// Backrun of a pending transaction.
    Backrun,
    /// Cross-chain spread.
    CrossChain,
}

impl StrategyKind {
    /// A stable name for logs, metrics and the ledger.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Depeg => "depeg",
            Self::Triangle => "triangle",
            Self::Stabilizer => "stabilizer",
            Self::Backrun => "backrun",
            Self::CrossChain => "cross_chain",
        }
    }
}

/// A proven route the engine wants to sign, as the gate sees it. Amounts are after gas.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The route's identity (size ramp).
    pub route: RouteKey,
    /// The strategy that found it.
    pub strategy: StrategyKind,
    /// The capital bucket it draws on.
    pub bucket: Bucket,
    /// The pools it trades, in route order.
    pub pools: SmallVec<[ChainAddress; 4]>,
    /// Notional (input value) of the trade, USD.
    pub notional_usd: f64,
    /// The slippage tolerance the per-hop minimum outs were built with, bps.
    pub slippage_bps: u32,
    /// The token the profit is measured in.
    pub profit_token: ChainAddress,
    /// Simulated profit after gas, raw units of the profit token.
    pub profit_raw: U256,
    /// Simulated profit after gas, USD (may be negative).
    pub profit_usd: f64,
    /// The gas price the transaction would pay (max fee per gas), wei.
    pub gas_price_wei: u128,
    /// Change of exposure per token the trade leaves behind, USD (an atomic round trip leaves
    /// none; a held position or a cross-chain leg does). Positive adds exposure.
    pub exposure_change_usd: SmallVec<[(ChainAddress, f64); 2]>,
}

/// What the engine knows now that the gate does not track itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookState {
    /// The block the trade targets.
    pub block: u64,
    /// The caller's clock, unix seconds (daily loss window, halt time).
    pub unix_time: u64,
    /// Base fee of the current head, wei.
    pub base_fee_wei: u128,
    /// Current exposure per token (holdings and transfers in flight), USD.
    pub exposure_usd: std::collections::HashMap<ChainAddress, f64>,
    /// Capital in use per bucket A–E (index [`Bucket::index`]), USD.
    pub bucket_in_use_usd: [f64; 5],
}
