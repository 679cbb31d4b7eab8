//! Venues: exact native math, state decoding and call encoding for every venue family.
//!
//! The engine screens thousands of candidates per block with this native math and proves only the
//! best in revm, so each venue must be both fast and exactly right: for the same state and input,
//! the native output equals the contract's to the wei (property-tested against revm executing the
//! fixture contracts). No floating point decides an amount anywhere in this module.
//!
//! Every venue is a two-sided market between a `base` and a `quote` token and is reached through
//! the [`Pool`] enum in the inner loop (no `dyn`):
//!
//! | venue | base | quote | sell base | sell quote |
//! |---|---|---|---|---|
//! | [`pmm`] DODO PMM (DSP, DVM, DPP) | base token | quote token | `sellBase` | `sellQuote` |
//! | [`v2`] Uniswap-V2-style pair | token0 | token1 | token0 → token1 | token1 → token0 |
//! | [`vault`] reserve vault | compliant twin | official stable | `redeem` | `mint` |
//! | [`synth`] oracle-priced synthetic swap | a virtual asset | base currency | `burn` | `mint` |
//! | [`bridge`] bridge leg | token on the source chain | token on the destination | `lock` → release | — |
//!
//! What a contract would refuse (no liquidity, over reserves, paused, locked, over a cap) is a typed
//! [`VenueError`], never a panic and never a silently wrong number.

use alloy::primitives::{Address, U256};

pub mod bridge;
pub mod fetch;
pub mod pmm;
pub mod synth;
#[cfg(test)]
pub(crate) mod testkit;
pub mod v2;
pub mod vault;

/// Which way a trade goes through a two-sided venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Pay base, receive quote.
    SellBase,
    /// Pay quote, receive base.
    SellQuote,
}

impl Side {
    /// The other direction.
    pub const fn flip(self) -> Self {
        match self {
            Self::SellBase => Self::SellQuote,
            Self::SellQuote => Self::SellBase,
        }
    }
}

/// The result of a native quote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quote {
    /// What the trader receives, net of every fee.
    pub amount_out: U256,
    /// Fee kept by the venue or its LPs, in the output token (PMM LP fee, synth fee, ...).
    pub lp_fee: U256,
    /// Fee paid to a maintainer or protocol, in the output token (PMM maintainer fee).
    pub mt_fee: U256,
}

/// Why a venue would refuse a trade or a state is unusable. Classified, never a string match.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VenueError {
    /// The input is zero.
    #[error("zero input")]
    ZeroInput,
    /// The venue has no liquidity on the side that would pay out.
    #[error("no liquidity")]
    NoLiquidity,
    /// The output would exceed what the venue holds.
    #[error("output exceeds reserves")]
    OverReserves,
    /// The trade would give nothing back (the contract reverts or pays 0).
    #[error("zero output")]
    ZeroOutput,
    /// An intermediate value overflows 256 bits (or a reserve its storage width).
    #[error("arithmetic overflow")]
    Overflow,
    /// The venue is paused.
    #[error("paused")]
    Paused,
    /// The trader is inside a settlement lock.
    #[error("locked until {until}")]
    Locked {
        /// Unix time the lock ends.
        until: u64,
    },
    /// The trade would pass a cap (debt cap, bridge capacity, stress block).
    #[error("over cap")]
    OverCap,
    /// The state itself is inconsistent (e.g. zero target, unknown R state, k above one).
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// The venue does not trade in this direction.
    #[error("unsupported direction")]
    Unsupported,
}

impl VenueError {
    /// Whether the refusal is about this trade only (a different size or a later block may pass),
    /// as opposed to a state the venue cannot be traded in at all.
    pub const fn is_size_dependent(&self) -> bool {
        matches!(
            self,
            Self::ZeroInput
                | Self::OverReserves
                | Self::ZeroOutput
                | Self::Overflow
                | Self::OverCap
        )
    }
}

/// Context that a quote may depend on besides the venue's own state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuoteCtx {
    /// Timestamp of the block the trade lands in (settlement locks, TWAP).
    pub timestamp: u64,
}

/// Every venue kind, for the inner loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pool {
    /// DODO PMM pool.
    Pmm(pmm::PmmPool),
    /// Uniswap-V2-style pair.
    V2(v2::V2Pair),
    /// Reserve vault.
    Vault(vault::ReserveVault),
    /// Oracle-priced synthetic swap, one asset against its base currency.
    Synth(synth::SynthMarket),
    /// One direction of a bridge.
    Bridge(bridge::BridgeLeg),
}

/// The interface every venue type implements; [`Pool`] dispatches to it by `match`.
pub trait Venue {
    /// The base and quote token addresses.
    fn tokens(&self) -> (Address, Address);
    /// Exact output for `amount_in` paid on `side`.
    ///
    /// # Errors
    /// A [`VenueError`] for whatever the contract would refuse.
    fn quote(&self, side: Side, amount_in: U256, ctx: &QuoteCtx) -> Result<Quote, VenueError>;
    /// Applies the trade to the state (the state after the trade) and returns its quote.
    ///
    /// # Errors
    /// As [`Venue::quote`]; the state is unchanged on error.
    fn apply(&mut self, side: Side, amount_in: U256, ctx: &QuoteCtx) -> Result<Quote, VenueError>;
    /// Marginal price of base in quote, 1e18-scaled, in raw units (quote raw per base raw × 1e18).
    ///
    /// # Errors
    /// When the state has no price (empty venue).
    fn mid_price(&self) -> Result<U256, VenueError>;
}

macro_rules! dispatch {
    ($self:expr, $v:ident => $e:expr) => {
        match $self {
            Pool::Pmm($v) => $e,
            Pool::V2($v) => $e,
            Pool::Vault($v) => $e,
            Pool::Synth($v) => $e,
            Pool::Bridge($v) => $e,
        }
    };
}

impl Venue for Pool {
    #[inline]
    fn tokens(&self) -> (Address, Address) {
        dispatch!(self, v => v.tokens())
    }

    #[inline]
    fn quote(&self, side: Side, amount_in: U256, ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        dispatch!(self, v => v.quote(side, amount_in, ctx))
    }

    #[inline]
    fn apply(&mut self, side: Side, amount_in: U256, ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        dispatch!(self, v => v.apply(side, amount_in, ctx))
    }

    #[inline]
    fn mid_price(&self) -> Result<U256, VenueError> {
        dispatch!(self, v => v.mid_price())
    }
}

/// The minimum output of a hop under a slippage cap: `quote × (10,000 − max_slippage_bps) / 10,000`,
/// rounded down. A cap of 10,000 bps or more gives 0.
pub fn min_out(quote: U256, max_slippage_bps: u32) -> U256 {
    if max_slippage_bps >= 10_000 {
        return U256::ZERO;
    }
    quote.saturating_mul(U256::from(10_000 - max_slippage_bps)) / U256::from(10_000u32)
}
