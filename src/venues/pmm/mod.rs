//! DODO V2 PMM pools (DSP, DVM, DPP): exact native math, state decoding and call encoding.
//!
//! The math is a step-for-step `U256` port of the contract libraries (DOMAIN §1): [`math`] holds
//! DecimalMath and DODOMath (GeneralIntegrate, SolveQuadraticForTrade, SolveQuadraticForTarget,
//! the contract's square root), [`pricing`] the trade functions by R state, the target regression
//! and the mid price. [`PmmPool`] adds the pool around it: fees on the output (lp and maintainer,
//! DOMAIN §1.5), the per-kind target rules (DOMAIN §1.6), the checks the swap transaction makes
//! after pricing (payout within the balance, `uint112` reserves and targets, the TWAP update's mid
//! price), [`PmmPool::apply`] for the state after a trade, and closed-form sizing against an
//! external price ([`PmmPool::optimal_input_vs_price`], DOMAIN §1.11). State comes from
//! [`fetch`] (one JSON-RPC batch of view calls, any DODO V2 deployment) or
//! [`PmmPool::from_storage`] (our fixtures' slots, no calls); [`PmmPool::hop`] encodes the
//! executor hop.
//!
//! Cost: a quote runs the contract's steps in `U256` with fast paths that give identical results
//! (products of operands below 2^128, division by 1e18 with a precomputed reciprocal, a square root
//! seeded from its top 128 bits and finished by one Newton step and exact correction). The target
//! regression (one square root) runs on every quote away from R = ONE, as in the contract;
//! [`PmmPool::quoter`] does it once for many quotes on one state.
//!
//! Rounding is the contract's, not the pool's favour: in a deep pool at R = ONE one wei in can
//! return one wei out, and a zero-output trade that the contract accepts is `Ok` with 0.
//!
//! Exactness: for any state and input, [`PmmPool::query_sell_base`] / [`PmmPool::query_sell_quote`]
//! equal the contract's `querySellBase` / `querySellQuote`, and [`Venue::quote`] / [`Venue::apply`]
//! equal a real `sellBase` / `sellQuote` (return value and every storage word after), to the wei,
//! errors included: the in-module property tests run the fixture contracts
//! (`fixtures/contracts/pmm/PmmPool.sol` for DSP and DPP, `DvmPool.sol` for DVM) in revm on random
//! states in every R state. `PROPTEST_CASES=1000000 cargo test --release venues::pmm` is the long
//! run; the default is 10,000 cases per direction and pool kind.
//!
//! What the contract refuses is a [`VenueError`]: `NoLiquidity` ("TARGET_IS_ZERO"), `ZeroOutput`
//! ("DODOMath: should not be zero"), `OverReserves` (the payout exceeds the pool's balance),
//! `Overflow` (a checked step, or a reserve or target past `uint112`), `InvalidState` (R out of
//! range). Nothing here panics on input.
//!
//! DPP trades with exactly the DSP code (stored targets and R, updated only when R changes), so
//! [`PmmKind::Dpp`] shares the DSP path and the DSP fixture covers it; DPP differs only in its
//! `init` argument order (k before i) and its owner's `reset`, neither of which the math sees.

use alloy::primitives::{Address, U256};

use super::{Quote, QuoteCtx, Side, Venue, VenueError};
use crate::contracts::Executor;

mod fetch;
pub mod math;
pub mod pricing;
mod sizing;

#[cfg(test)]
mod tests;

pub use fetch::{IDodoV2Pool, assemble, fetch};
pub use pricing::{CurveOut, PmmState, RState};

use math::{add, fits_u112, mul_floor, reciprocal_floor, sub};

/// Bindings of the DVM fixture (`fixtures/contracts/pmm/DvmPool.sol`).
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod dvm_fixture {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        DvmPool,
        "fixtures/artifacts/DvmPool.json"
    );
}

/// Which DODO V2 pool type: decides how targets and R are kept (DOMAIN §1.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PmmKind {
    /// DODO Stable Pool: targets and R stored, changed only when R changes.
    #[default]
    Dsp,
    /// DODO Vending Machine: no stored targets; every read sets Q0 = 0, R = ABOVE_ONE and re-solves
    /// B0 from the reserves.
    Dvm,
    /// DODO Private Pool: trades exactly as DSP (the owner's `reset` is outside the math).
    Dpp,
}

/// Storage slots of our fixture contracts, for [`PmmPool::from_storage`]: `(reserves, targets,
/// twap flag, lp fee, k, i)`. The reserves word packs base (bits 0–111), quote (112–223) and the
/// TWAP timestamp (224–255); the targets word packs B0, Q0 and R the same way. Tokens are slots 1
/// and 2 for every kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageLayout {
    /// `_BASE_RESERVE_` / `_QUOTE_RESERVE_` / `_BLOCK_TIMESTAMP_LAST_`.
    pub reserves: u64,
    /// `_BASE_TARGET_` / `_QUOTE_TARGET_` / `_RState_` (none for DVM).
    pub targets: Option<u64>,
    /// `_IS_OPEN_TWAP_`.
    pub twap_open: u64,
    /// `_LP_FEE_RATE_`.
    pub lp_fee_rate: u64,
    /// `_K_`.
    pub k: u64,
    /// `_I_`.
    pub i: u64,
}

impl PmmKind {
    /// Storage layout of our fixture for this kind (`PmmPool.sol` for DSP and DPP, `DvmPool.sol`
    /// for DVM); checked against the compiled artifacts' `storageLayout` by the tests.
    pub const fn fixture_layout(self) -> StorageLayout {
        match self {
            Self::Dsp | Self::Dpp => StorageLayout {
                reserves: 3,
                targets: Some(4),
                twap_open: 6,
                lp_fee_rate: 7,
                k: 9,
                i: 10,
            },
            Self::Dvm => StorageLayout {
                reserves: 3,
                targets: None,
                twap_open: 5,
                lp_fee_rate: 6,
                k: 8,
                i: 9,
            },
        }
    }
}

/// A PMM pool's state as the trading math needs it.
///
/// Reserves and targets are raw token units. For DSP and DPP, `base_target`, `quote_target` and `r`
/// follow the contract's storage: the target of the short side may be stale, because it is
/// re-solved from the reserves on every read, as the contract does (a value from
/// `getPMMStateForCall` is equally valid). For DVM the contract stores no targets: the math
/// ignores these three fields, which [`PmmPool::apply`] keeps at what `getPMMStateForCall` would
/// report (re-solved B0, Q0 = 0, ABOVE_ONE).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PmmPool {
    /// Pool type.
    pub kind: PmmKind,
    /// Base token.
    pub base: Address,
    /// Quote token.
    pub quote: Address,
    /// Price i: quote raw per base raw, times 1e18.
    pub i: U256,
    /// Slippage factor k, 18 decimals.
    pub k: U256,
    /// Base reserve B (`_BASE_RESERVE_`).
    pub base_reserve: U256,
    /// Quote reserve Q (`_QUOTE_RESERVE_`).
    pub quote_reserve: U256,
    /// Base target B0 (`_BASE_TARGET_`).
    pub base_target: U256,
    /// Quote target Q0 (`_QUOTE_TARGET_`).
    pub quote_target: U256,
    /// R state (`_RState_`).
    pub r: RState,
    /// LP fee rate, 18 decimals (`_LP_FEE_RATE_`).
    pub lp_fee_rate: U256,
    /// Maintainer fee rate of the configured trader (the EOA that signs; the contract reads it for
    /// tx.origin), 18 decimals.
    pub mt_fee_rate: U256,
    /// `_BLOCK_TIMESTAMP_LAST_` when the pool keeps a TWAP (`_IS_OPEN_TWAP_`), else `None`. With a
    /// TWAP, a swap in a later second computes the post-trade mid price and reverts if that fails.
    pub twap_timestamp_last: Option<u32>,
}

/// What a swap writes to storage, before the state after is built.
#[derive(Clone, Copy, Debug)]
struct Writes {
    side: Side,
    /// The input side's reserve after (old reserve + input).
    grown: U256,
    /// The output side's reserve after (old reserve − receive − mtFee).
    left: U256,
    /// The input side's target, stored when R changes (DSP/DPP).
    new_target: Option<U256>,
    /// R after (stored with the target).
    new_r: RState,
}

/// What `querySellBase` / `querySellQuote` return, plus the LP fee.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmmQuery {
    /// Output received after the LP and maintainer fees.
    pub receive: U256,
    /// Maintainer fee (paid out of the pool to the maintainer).
    pub mt_fee: U256,
    /// LP fee (stays in the pool).
    pub lp_fee: U256,
    /// R state after the trade (DSP/DPP; always ABOVE_ONE for DVM).
    pub new_r: RState,
    /// The re-solved target of the input side before the trade (`newBaseTarget` of
    /// `querySellBase`, `newQuoteTarget` of `querySellQuote`); stored if R changes.
    pub new_target: U256,
}

impl PmmPool {
    /// The state as stored, before the target regression (for DVM: B0 = Q0 = 0, ABOVE_ONE).
    #[inline(always)]
    pub fn stored_state(&self) -> PmmState {
        match self.kind {
            PmmKind::Dvm => PmmState {
                i: self.i,
                k: self.k,
                b: self.base_reserve,
                q: self.quote_reserve,
                b0: U256::ZERO,
                q0: U256::ZERO,
                r: RState::AboveOne,
            },
            PmmKind::Dsp | PmmKind::Dpp => PmmState {
                i: self.i,
                k: self.k,
                b: self.base_reserve,
                q: self.quote_reserve,
                b0: self.base_target,
                q0: self.quote_target,
                r: self.r,
            },
        }
    }

    /// The state with the short-side target re-solved (`getPMMState` / `getPMMStateForCall`).
    ///
    /// # Errors
    /// [`VenueError::Overflow`] when the regression fails (the contract's views revert).
    #[inline(always)]
    pub fn adjusted_state(&self) -> Result<PmmState, VenueError> {
        let mut state = self.stored_state();
        state.adjust_target()?;
        Ok(state)
    }

    /// `querySellBase(trader, amount)` exactly: quote out after fees for `pay_base` base. Accepts
    /// 0 (pays 0), as the contract does; the checks of the swap itself are in [`Venue::quote`].
    ///
    /// # Errors
    /// Whatever the contract's view reverts with (see the module docs).
    #[inline(always)]
    pub fn query_sell_base(&self, pay_base: U256) -> Result<PmmQuery, VenueError> {
        let state = self.adjusted_state()?;
        self.query_with(&state, Err(VenueError::Overflow), Side::SellBase, pay_base)
    }

    /// `querySellQuote(trader, amount)` exactly: base out after fees for `pay_quote` quote.
    ///
    /// # Errors
    /// As [`PmmPool::query_sell_base`].
    #[inline(always)]
    pub fn query_sell_quote(&self, pay_quote: U256) -> Result<PmmQuery, VenueError> {
        let state = self.adjusted_state()?;
        self.query_with(&state, reciprocal_floor(self.i), Side::SellQuote, pay_quote)
    }

    /// The view on an adjusted `state`, with `reciprocalFloor(i)` given (used by sells of quote).
    #[inline(always)]
    fn query_with(
        &self,
        state: &PmmState,
        recip_i: math::MathResult,
        side: Side,
        amount: U256,
    ) -> Result<PmmQuery, VenueError> {
        match side {
            Side::SellBase => self.with_fees(state.sell_base(amount)?, state.b0),
            Side::SellQuote => self.with_fees(state.sell_quote_with(amount, recip_i)?, state.q0),
        }
    }

    /// A quoter for many quotes on this unchanged state: the target regression and `1/i` are
    /// computed once, so each [`PmmQuoter::quote`] is the trade alone (the engine's size search
    /// quotes one pool many times per block). Equal to [`Venue::quote`] for every input.
    pub fn quoter(&self) -> PmmQuoter<'_> {
        PmmQuoter { pool: self, state: self.adjusted_state(), recip_i: reciprocal_floor(self.i) }
    }

    #[inline(always)]
    fn with_fees(&self, curve: CurveOut, new_target: U256) -> Result<PmmQuery, VenueError> {
        let raw = curve.amount;
        let fee = |rate: U256| if rate.is_zero() { Ok(U256::ZERO) } else { mul_floor(raw, rate) };
        let mt_fee = fee(self.mt_fee_rate)?;
        let lp_fee = fee(self.lp_fee_rate)?;
        let receive = sub(sub(raw, lp_fee)?, mt_fee)?;
        let new_r = if self.kind == PmmKind::Dvm { RState::AboveOne } else { curve.new_r };
        Ok(PmmQuery { receive, mt_fee, lp_fee, new_r, new_target })
    }

    /// Everything `sellBase` / `sellQuote` checks and computes, without building the state after:
    /// the quote and what the swap writes.
    #[inline(always)]
    fn trade(
        &self,
        side: Side,
        amount_in: U256,
        ctx: &QuoteCtx,
    ) -> Result<(Quote, Writes), VenueError> {
        if amount_in.is_zero() {
            return Err(VenueError::ZeroInput);
        }
        // 1/i once, for the regression at ABOVE_ONE (every DVM) and for sells of quote.
        let mut state = self.stored_state();
        let recip_i = if side == Side::SellQuote || state.r == RState::AboveOne {
            reciprocal_floor(self.i)
        } else {
            Err(VenueError::Overflow) // not used
        };
        state.adjust_target_with(&recip_i)?;
        self.trade_with(&state, recip_i, side, amount_in, ctx)
    }

    /// [`PmmPool::trade`] on an adjusted `state` (nonzero input).
    #[inline(always)]
    fn trade_with(
        &self,
        state: &PmmState,
        recip_i: math::MathResult,
        side: Side,
        amount_in: U256,
        ctx: &QuoteCtx,
    ) -> Result<(Quote, Writes), VenueError> {
        let query = self.query_with(state, recip_i, side, amount_in)?;
        let quote = Quote { amount_out: query.receive, lp_fee: query.lp_fee, mt_fee: query.mt_fee };
        // Payout: receive to the trader, then mtFee to the maintainer, out of the balance (= the
        // reserve; the input arrived in the other token).
        let (in_reserve, out_reserve) = match side {
            Side::SellBase => (self.base_reserve, self.quote_reserve),
            Side::SellQuote => (self.quote_reserve, self.base_reserve),
        };
        let left = sub(out_reserve, query.receive)
            .and_then(|rest| sub(rest, query.mt_fee))
            .map_err(|_| VenueError::OverReserves)?;
        // DSP/DPP store the input side's target and R when R changes.
        let new_target =
            (self.kind != PmmKind::Dvm && query.new_r != self.r).then_some(query.new_target);
        if new_target.is_some_and(|t| !fits_u112(t)) {
            return Err(VenueError::Overflow);
        }
        // `_setReserve` requires both balances to fit uint112.
        let grown = add(in_reserve, amount_in)?;
        if !fits_u112(grown) || !fits_u112(left) {
            return Err(VenueError::Overflow);
        }
        let writes = Writes { side, grown, left, new_target, new_r: query.new_r };
        if let Some(last) = self.twap_timestamp_last {
            // `_twapUpdate` runs after the reserves (and targets) are written.
            let now = ctx.timestamp as u32; // block.timestamp mod 2^32
            if now.wrapping_sub(last) > 0 && !grown.is_zero() && !left.is_zero() {
                self.after(&writes, ctx).adjusted_state()?.mid_price()?;
            }
        }
        Ok((quote, writes))
    }

    /// The pool after `writes`.
    fn after(&self, writes: &Writes, ctx: &QuoteCtx) -> Self {
        let mut next = self.clone();
        match writes.side {
            Side::SellBase => {
                next.base_reserve = writes.grown;
                next.quote_reserve = writes.left;
                if let Some(t) = writes.new_target {
                    next.base_target = t;
                }
            }
            Side::SellQuote => {
                next.quote_reserve = writes.grown;
                next.base_reserve = writes.left;
                if let Some(t) = writes.new_target {
                    next.quote_target = t;
                }
            }
        }
        if writes.new_target.is_some() {
            next.r = writes.new_r;
        }
        if next.twap_timestamp_last.is_some() {
            next.twap_timestamp_last = Some(ctx.timestamp as u32);
        }
        next
    }

    /// Decodes a pool from our fixture's storage (`PmmPool.sol` for DSP/DPP, `DvmPool.sol` for
    /// DVM; see [`PmmKind::fixture_layout`]): the engine's fast path from its state cache, no
    /// calls. `slot(n)` returns storage word `n` of the pool; `mt_fee_rate` is the trader's rate
    /// from the fee model (not in the pool's storage). For DVM the targets come out as
    /// `getPMMStateForCall` reports them when they can be solved, else zero.
    ///
    /// # Errors
    /// [`VenueError::InvalidState`] when the stored R is not 0, 1 or 2.
    pub fn from_storage(
        kind: PmmKind,
        mt_fee_rate: U256,
        mut slot: impl FnMut(u64) -> U256,
    ) -> Result<Self, VenueError> {
        let layout = kind.fixture_layout();
        let mask112 = (U256::ONE << 112usize) - U256::ONE;
        let address = |word: U256| Address::from_word(word.to_be_bytes::<32>().into());
        let reserves = slot(layout.reserves);
        let twap_open = (slot(layout.twap_open) & U256::from(0xffu8)) != U256::ZERO;
        let mut pool = Self {
            kind,
            base: address(slot(1)),
            quote: address(slot(2)),
            i: slot(layout.i),
            k: slot(layout.k),
            base_reserve: reserves & mask112,
            quote_reserve: (reserves >> 112usize) & mask112,
            lp_fee_rate: slot(layout.lp_fee_rate),
            mt_fee_rate,
            twap_timestamp_last: twap_open.then(|| (reserves >> 224usize).to::<u32>()),
            ..Self::default()
        };
        match layout.targets {
            Some(n) => {
                let targets = slot(n);
                pool.base_target = targets & mask112;
                pool.quote_target = (targets >> 112usize) & mask112;
                pool.r = RState::try_from_u256(targets >> 224usize)?;
            }
            None => pool.set_dvm_targets(),
        }
        Ok(pool)
    }

    /// DVM: keep the informational target fields at what `getPMMStateForCall` reports.
    fn set_dvm_targets(&mut self) {
        let solved = self.adjusted_state().map(|s| s.b0).unwrap_or_default();
        self.base_target = solved;
        self.quote_target = U256::ZERO;
        self.r = RState::AboveOne;
    }

    /// The executor hop for this pool: kind 0 (`sellBase`) or 1 (`sellQuote`), tokens by side.
    /// `min_out` is the smallest acceptable output, normally
    /// [`min_out`](super::min_out)`(quote.amount_out, max_slippage_bps)`.
    pub fn hop(&self, pool: Address, side: Side, amount_in: U256, min_out: U256) -> Executor::Hop {
        let (kind, token_in, token_out) = match side {
            Side::SellBase => (0u8, self.base, self.quote),
            Side::SellQuote => (1u8, self.quote, self.base),
        };
        Executor::Hop {
            kind,
            venue: pool,
            tokenIn: token_in,
            tokenOut: token_out,
            amountIn: amount_in,
            minOut: min_out,
        }
    }
}

impl Venue for PmmPool {
    #[inline]
    fn tokens(&self) -> (Address, Address) {
        (self.base, self.quote)
    }

    /// Exact output of `sellBase` / `sellQuote` for `amount_in`, net of the LP and maintainer fees.
    ///
    /// A zero input is refused ([`VenueError::ZeroInput`]) although the contract accepts it (and
    /// pays nothing); a positive input whose output rounds to zero is `Ok` with 0 out, because the
    /// contract does not revert on it. `ctx.timestamp` matters only for a pool with a TWAP.
    #[inline]
    fn quote(&self, side: Side, amount_in: U256, ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        self.trade(side, amount_in, ctx).map(|(quote, _)| quote)
    }

    /// As [`Venue::quote`], and moves the state to what the contract stores after the swap:
    /// reserves, for DSP/DPP the input side's target and R when R changes, the TWAP timestamp; for
    /// DVM the re-solved informational targets.
    fn apply(&mut self, side: Side, amount_in: U256, ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        let (quote, writes) = self.trade(side, amount_in, ctx)?;
        let mut next = self.after(&writes, ctx);
        if next.kind == PmmKind::Dvm {
            next.set_dvm_targets();
        }
        *self = next;
        Ok(quote)
    }

    /// `getMidPrice()`.
    ///
    /// # Errors
    /// [`VenueError::NoLiquidity`] when the reserve the price divides by is zero;
    /// [`VenueError::Overflow`] when the contract's view would revert otherwise.
    fn mid_price(&self) -> Result<U256, VenueError> {
        let state = self.adjusted_state()?;
        let divisor = if state.r == RState::BelowOne { state.q } else { state.b };
        if divisor.is_zero() {
            return Err(VenueError::NoLiquidity);
        }
        state.mid_price()
    }
}

/// Quotes on one unchanged pool state with the target regression done once; from
/// [`PmmPool::quoter`].
#[derive(Clone, Debug)]
pub struct PmmQuoter<'a> {
    pool: &'a PmmPool,
    state: Result<PmmState, VenueError>,
    recip_i: math::MathResult,
}

impl PmmQuoter<'_> {
    /// Exactly [`Venue::quote`] of the pool.
    ///
    /// # Errors
    /// As [`Venue::quote`].
    #[inline]
    pub fn quote(&self, side: Side, amount_in: U256, ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        if amount_in.is_zero() {
            return Err(VenueError::ZeroInput);
        }
        let state = self.state.as_ref().map_err(Clone::clone)?;
        let recip_i = match side {
            Side::SellBase => Err(VenueError::Overflow),
            Side::SellQuote => self.recip_i.clone(),
        };
        self.pool.trade_with(state, recip_i, side, amount_in, ctx).map(|(quote, _)| quote)
    }
}
