//! Uniswap-V2-style constant-product pair (DOMAIN §2.1): exact `getAmountOut` / `getAmountIn`, the
//! state after a swap, the flash-swap repayment, closed-form two-pool arbitrage sizing, state
//! decoding from any pair with the Uniswap V2 interface, and the executor hop.
//!
//! Base is `token0` and quote is `token1`, so [`Side::SellBase`] pays token0 and receives token1.
//! With fee `f` bps and `γ = 10,000 − f` (Uniswap V2: f = 30, the `997/1000` of the contracts; the
//! ratio is the same, so the floors are identical):
//! - out = ⌊x·γ·R_out / (R_in·10,000 + x·γ)⌋
//! - in  = ⌊R_in·y·10,000 / ((R_out − y)·γ)⌋ + 1
//! - flash repayment of X borrowed = ⌈10,000·X / γ⌉
//!
//! Reserves are `uint112` on chain; any state or input that would push a reserve past 2¹¹² − 1
//! (where the pair reverts "OVERFLOW") is [`VenueError::Overflow`]. The hot path is `u128`
//! arithmetic: every operand fits (a reserve is below 2¹¹², γ below 2¹⁴), and only the numerator
//! `x·γ·R_out` can need 256 bits, in which case one `U256` division finishes the job.

use alloy::{
    eips::BlockId,
    primitives::{Address, U256, U512, Uint},
    providers::Provider,
    sol_types::SolCall,
};

use super::{
    Quote, QuoteCtx, Side, Venue, VenueError,
    fetch::{CallBatch, FetchError},
};
use crate::contracts::{Executor, UniV2Pair};

/// Largest value a `uint112` reserve can hold.
pub const MAX_RESERVE: u128 = (1u128 << 112) - 1;
/// Denominator of fee rates in bps.
pub const FEE_DENOMINATOR_BPS: u16 = 10_000;
/// The Uniswap V2 swap fee (0.3%).
pub const UNISWAP_V2_FEE_BPS: u16 = 30;
/// The executor's hop kind for a Uniswap V2 swap (`Executor.sol`, `HOP_UNIV2`).
pub const HOP_KIND_V2: u8 = 2;

const DEN: u128 = FEE_DENOMINATOR_BPS as u128;

/// The state of one constant-product pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V2Pair {
    /// The lower-addressed token (base).
    pub token0: Address,
    /// The higher-addressed token (quote).
    pub token1: Address,
    /// Stored reserve of token0 (`uint112` on chain).
    pub reserve0: u128,
    /// Stored reserve of token1 (`uint112` on chain).
    pub reserve1: u128,
    /// Swap fee on the input, in bps (30 for Uniswap V2 and the fixture pair). Must be below
    /// 10,000. The executor prices its V2 hops at 30 bps whatever this says.
    pub fee_bps: u16,
}

impl Default for V2Pair {
    fn default() -> Self {
        Self::new(Address::ZERO, Address::ZERO, 0, 0)
    }
}

impl V2Pair {
    /// A pair with the Uniswap V2 fee of 30 bps.
    pub const fn new(token0: Address, token1: Address, reserve0: u128, reserve1: u128) -> Self {
        Self { token0, token1, reserve0, reserve1, fee_bps: UNISWAP_V2_FEE_BPS }
    }

    /// The same pair with another swap fee (forks that charge other than 0.3%).
    #[must_use]
    pub const fn with_fee_bps(mut self, fee_bps: u16) -> Self {
        self.fee_bps = fee_bps;
        self
    }

    /// The tokens paid and received on `side`.
    pub const fn tokens_for(&self, side: Side) -> (Address, Address) {
        match side {
            Side::SellBase => (self.token0, self.token1),
            Side::SellQuote => (self.token1, self.token0),
        }
    }

    /// The reserves (in, out) for `side`, checked: both within `uint112` and non-zero.
    #[inline]
    fn reserves(&self, side: Side) -> Result<(u128, u128), VenueError> {
        let (r_in, r_out) = match side {
            Side::SellBase => (self.reserve0, self.reserve1),
            Side::SellQuote => (self.reserve1, self.reserve0),
        };
        if r_in > MAX_RESERVE || r_out > MAX_RESERVE {
            return Err(VenueError::InvalidState("reserve above uint112"));
        }
        if r_in == 0 || r_out == 0 {
            return Err(VenueError::NoLiquidity);
        }
        Ok((r_in, r_out))
    }

    /// `10,000 − fee_bps`, or an error for a fee of 100% or more.
    #[inline]
    fn gamma(&self) -> Result<u128, VenueError> {
        if self.fee_bps >= FEE_DENOMINATOR_BPS {
            return Err(VenueError::InvalidState("fee of 100% or more"));
        }
        Ok(DEN - self.fee_bps as u128)
    }

    /// Checked input: non-zero and small enough that the input reserve stays within `uint112`.
    #[inline]
    fn input(amount_in: U256, r_in: u128) -> Result<u128, VenueError> {
        if amount_in.is_zero() {
            return Err(VenueError::ZeroInput);
        }
        let room = MAX_RESERVE - r_in;
        if amount_in > U256::from(room) {
            return Err(VenueError::Overflow);
        }
        Ok(amount_in.saturating_to::<u128>())
    }

    /// Exact output of `amount_in` paid on `side` (the contract's `getAmountOut`), without the
    /// fee breakdown of [`Venue::quote`].
    ///
    /// # Errors
    /// [`VenueError::ZeroInput`], [`VenueError::NoLiquidity`] (a zero reserve),
    /// [`VenueError::Overflow`] (the input reserve would pass `uint112`), [`VenueError::ZeroOutput`]
    /// (the pair would pay nothing), [`VenueError::InvalidState`] (reserve above `uint112`, fee of
    /// 100% or more).
    #[inline]
    pub fn amount_out(&self, side: Side, amount_in: U256) -> Result<U256, VenueError> {
        let (r_in, r_out) = self.reserves(side)?;
        let x = Self::input(amount_in, r_in)?;
        let out = out_given_in(x, r_in, r_out, self.gamma()?);
        if out == 0 {
            return Err(VenueError::ZeroOutput);
        }
        Ok(U256::from(out))
    }

    /// The input on `side` that buys `amount_out`: Uniswap's `getAmountIn`,
    /// ⌊R_in·y·10,000 / ((R_out − y)·γ)⌋ + 1 (DOMAIN §2.1). Paying it gives at least `amount_out`.
    /// It is the least such input, except when the division is exact: then Uniswap's `+ 1`
    /// overpays by one wei and one wei less also passes the pair's K check.
    ///
    /// # Errors
    /// [`VenueError::ZeroOutput`] for a zero target, [`VenueError::OverReserves`] when the target
    /// is not below the output reserve, [`VenueError::Overflow`] when the required input would
    /// push the input reserve past `uint112` (no input can buy it), and the state errors of
    /// [`V2Pair::amount_out`].
    pub fn amount_in_for(&self, side: Side, amount_out: U256) -> Result<U256, VenueError> {
        let (r_in, r_out) = self.reserves(side)?;
        let gamma = self.gamma()?;
        if amount_out.is_zero() {
            return Err(VenueError::ZeroOutput);
        }
        if amount_out >= U256::from(r_out) {
            return Err(VenueError::OverReserves);
        }
        let y = amount_out.saturating_to::<u128>();
        // r_in·y·10⁴ < 2²³⁸; (r_out − y)·γ < 2¹²⁶.
        let num = U256::from(r_in) * U256::from(y) * U256::from(DEN);
        let den = U256::from((r_out - y) * gamma);
        let amount_in = num / den + U256::ONE;
        if amount_in > U256::from(MAX_RESERVE - r_in) {
            return Err(VenueError::Overflow);
        }
        Ok(amount_in)
    }

    /// What a flash swap of `borrowed` units of `token` must pay back in the same token:
    /// ⌈10,000·X / γ⌉ (⌈1000·X/997⌉ on Uniswap V2). One wei less fails the K check.
    ///
    /// # Errors
    /// [`VenueError::Unsupported`] when `token` is not one of the pair's, [`VenueError::ZeroInput`]
    /// for a zero loan, [`VenueError::OverReserves`] when the loan is not below the reserve,
    /// [`VenueError::Overflow`] when the repaid balance would pass `uint112`, and the state errors.
    pub fn flash_repayment(&self, token: Address, borrowed: U256) -> Result<U256, VenueError> {
        let reserve = if token == self.token0 {
            self.reserve0
        } else if token == self.token1 {
            self.reserve1
        } else {
            return Err(VenueError::Unsupported);
        };
        if reserve > MAX_RESERVE {
            return Err(VenueError::InvalidState("reserve above uint112"));
        }
        let gamma = self.gamma()?;
        if borrowed.is_zero() {
            return Err(VenueError::ZeroInput);
        }
        if borrowed >= U256::from(reserve) {
            return Err(VenueError::OverReserves);
        }
        let repay = (borrowed * U256::from(DEN)).div_ceil(U256::from(gamma));
        if U256::from(reserve) - borrowed + repay > U256::from(MAX_RESERVE) {
            return Err(VenueError::Overflow);
        }
        Ok(repay)
    }

    /// The executor hop that swaps `amount_in` on `side` through the pair at `venue` (kind 2).
    /// `amount_in = 0` means "the previous hop's measured output". The executor prices the swap
    /// with the 0.3% Uniswap V2 formula.
    pub fn hop(&self, venue: Address, side: Side, amount_in: U256, min_out: U256) -> Executor::Hop {
        let (token_in, token_out) = self.tokens_for(side);
        Executor::Hop {
            kind: HOP_KIND_V2,
            venue,
            tokenIn: token_in,
            tokenOut: token_out,
            amountIn: amount_in,
            minOut: min_out,
        }
    }

    /// Reads the pair at `address` with one batch of `token0()`, `token1()` and `getReserves()`
    /// at `block`, so any contract with the Uniswap V2 pair interface decodes. The fee cannot be
    /// read from that interface: it is set to 30 bps (use [`V2Pair::with_fee_bps`] for forks).
    ///
    /// Cancel-safe: only view calls are sent; dropping the future abandons them.
    ///
    /// # Errors
    /// A [`FetchError`] naming the pair and the failing call; [`FetchError::Inconsistent`] when
    /// both tokens are the same.
    pub async fn fetch(
        provider: &impl Provider,
        address: Address,
        block: BlockId,
    ) -> Result<Self, FetchError> {
        let mut batch = CallBatch::new(provider.client(), address, block);
        let token0 = batch.add(address, &UniV2Pair::token0Call {})?;
        let token1 = batch.add(address, &UniV2Pair::token1Call {})?;
        let reserves = batch.add(address, &UniV2Pair::getReservesCall {})?;
        batch.send().await?;
        let (token0, token1, reserves) =
            (token0.get().await?, token1.get().await?, reserves.get().await?);
        if token0 == token1 {
            return Err(FetchError::Inconsistent {
                venue: address,
                call: UniV2Pair::token1Call::SIGNATURE,
                reason: "token0 equals token1",
            });
        }
        Ok(Self::new(
            token0,
            token1,
            reserves._reserve0.saturating_to::<u128>(),
            reserves._reserve1.saturating_to::<u128>(),
        ))
    }
}

/// ⌊x·γ·r_out / (r_in·10⁴ + x·γ)⌋ for r_in, r_out ≤ 2¹¹² − 1, x ≤ 2¹¹² − 1 − r_in, γ ≤ 10⁴,
/// r_in > 0: x·γ < 2¹²⁶ and the denominator < 2¹²⁷ fit `u128`; the numerator may not.
#[inline]
fn out_given_in(x: u128, r_in: u128, r_out: u128, gamma: u128) -> u128 {
    let x_fee = x * gamma;
    let den = r_in * DEN + x_fee;
    match x_fee.checked_mul(r_out) {
        Some(num) => num / den,
        None => (U256::from(x_fee) * U256::from(r_out) / U256::from(den)).saturating_to::<u128>(),
    }
}

impl Venue for V2Pair {
    #[inline]
    fn tokens(&self) -> (Address, Address) {
        (self.token0, self.token1)
    }

    /// `amount_out` as [`V2Pair::amount_out`]; `lp_fee` is what the fee costs in the output
    /// token (the fee-free output minus the output).
    #[inline]
    fn quote(&self, side: Side, amount_in: U256, _ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        let (r_in, r_out) = self.reserves(side)?;
        let x = Self::input(amount_in, r_in)?;
        let out = out_given_in(x, r_in, r_out, self.gamma()?);
        if out == 0 {
            return Err(VenueError::ZeroOutput);
        }
        let fee = out_given_in(x, r_in, r_out, DEN) - out;
        Ok(Quote { amount_out: U256::from(out), lp_fee: U256::from(fee), mt_fee: U256::ZERO })
    }

    fn apply(&mut self, side: Side, amount_in: U256, ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        let q = self.quote(side, amount_in, ctx)?;
        // Both fit: the quote checked r_in + x ≤ 2¹¹² − 1 and out < r_out.
        let x = amount_in.saturating_to::<u128>();
        let out = q.amount_out.saturating_to::<u128>();
        match side {
            Side::SellBase => {
                self.reserve0 += x;
                self.reserve1 -= out;
            }
            Side::SellQuote => {
                self.reserve1 += x;
                self.reserve0 -= out;
            }
        }
        Ok(q)
    }

    /// reserve1 · 1e18 / reserve0, rounded down.
    fn mid_price(&self) -> Result<U256, VenueError> {
        if self.reserve0 == 0 || self.reserve1 == 0 {
            return Err(VenueError::NoLiquidity);
        }
        Ok(U256::from(self.reserve1) * U256::from(1_000_000_000_000_000_000u128)
            / U256::from(self.reserve0))
    }
}

/// The input of the most profitable round trip through two pairs (DOMAIN §2.1): pay token T into
/// `a` on `a_side`, receive X, pay all of X into `b` on `b_side`, receive T.
///
/// The composed output is z(Δ) = a·Δ / (b + c·Δ) with a = γ_a·γ_b·A_out·B_out, b = A_in·B_in and
/// c = γ_a·(B_in + γ_b·A_out) (γ as fractions), so the profit z − Δ peaks at
/// Δ* = (√(a·b) − b)/c; in integers with γ in bps:
/// Δ* = ⌊(10⁴·⌊√(γ_a·γ_b·A_in·A_out·B_in·B_out)⌋ − 10⁸·A_in·B_in) / (γ_a·(10⁴·B_in + γ_b·A_out))⌋,
/// computed in 512 bits (the product under the root needs up to 475). With equal fees this is
/// DOMAIN's (√(γ·E_in·E_out) − E_in)/γ.
///
/// Returns `None` when the tokens do not chain (a's output is not b's input or b's output not
/// a's input), a reserve is zero or invalid, or the round trip cannot profit. The result is capped
/// so that `a`'s input reserve stays within `uint112`.
pub fn optimal_two_pool_input(a: &V2Pair, a_side: Side, b: &V2Pair, b_side: Side) -> Option<U256> {
    let (a_tin, a_tout) = a.tokens_for(a_side);
    let (b_tin, b_tout) = b.tokens_for(b_side);
    if a_tout != b_tin || b_tout != a_tin {
        return None;
    }
    let (ai, ao) = a.reserves(a_side).ok()?;
    let (bi, bo) = b.reserves(b_side).ok()?;
    let (ga, gb) = (a.gamma().ok()?, b.gamma().ok()?);
    let w = |v: u128| U512::from(v);
    let product = w(ga * gb) * w(ai) * w(ao) * w(bi) * w(bo);
    let lhs = isqrt(product) * w(DEN);
    let rhs = w(ai) * w(bi) * w(DEN * DEN);
    if lhs <= rhs {
        return None;
    }
    let den = w(ga) * (w(bi) * w(DEN) + w(gb) * w(ao));
    let delta = (lhs - rhs) / den;
    let cap = w(MAX_RESERVE - ai);
    let delta = if delta > cap { cap } else { delta };
    if delta.is_zero() {
        return None;
    }
    Some(U256::from_limbs_slice(&delta.as_limbs()[..4]))
}

/// ⌊√n⌋ by Newton's iteration from a power of two above the root (integer only).
fn isqrt<const BITS: usize, const LIMBS: usize>(n: Uint<BITS, LIMBS>) -> Uint<BITS, LIMBS> {
    if n.is_zero() {
        return n;
    }
    let mut x = Uint::<BITS, LIMBS>::ONE << n.bit_len().div_ceil(2);
    loop {
        let y = (x + n / x) >> 1;
        if y >= x {
            return x;
        }
        x = y;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use alloy::{
        primitives::{Bytes, address},
        sol_types::SolConstructor,
    };
    use proptest::prelude::*;

    use super::*;
    use crate::{
        contracts::{TestToken, UniV2Factory},
        venues::testkit::{
            Chain, Tally, amount_against, cases, dec, log_uniform, pow10, runner, runner_with,
        },
    };

    const CTX: QuoteCtx = QuoteCtx { timestamp: 0 };
    const TRADER: Address = address!("0x00000000000000000000000000000000000a11ce");

    fn e18(n: u64) -> U256 {
        U256::from(n) * pow10(18)
    }

    fn pair(r0: U256, r1: U256) -> V2Pair {
        V2Pair::new(Address::with_last_byte(1), Address::with_last_byte(2), r0.to(), r1.to())
    }

    // ------------------------------------------------------------ DOMAIN §2.1 worked examples

    #[test]
    fn domain_amount_out_10k_on_1m() {
        let p = pair(e18(1_000_000), e18(1_000_000));
        let out = p.amount_out(Side::SellBase, e18(10_000)).unwrap();
        assert_eq!(out, dec("9871580343970612988504"));
        assert_eq!(p.quote(Side::SellQuote, e18(10_000), &CTX).unwrap().amount_out, out);
    }

    #[test]
    fn domain_amount_in_for_10k_out() {
        // 6/6 decimals: exactly 10,131.404314.
        let p = pair(U256::from(1_000_000_000_000u64), U256::from(1_000_000_000_000u64));
        let need = p.amount_in_for(Side::SellBase, U256::from(10_000_000_000u64)).unwrap();
        assert_eq!(need, U256::from(10_131_404_314u64));
        assert!(p.amount_out(Side::SellBase, need).unwrap() >= U256::from(10_000_000_000u64));
        assert!(
            p.amount_out(Side::SellBase, need - U256::ONE).unwrap() < U256::from(10_000_000_000u64)
        );
        // An exact division: getAmountIn's `+ 1` overpays by one wei (16,000 buys 136).
        let p = pair(U256::from(29_910u64), U256::from(391u64));
        assert_eq!(p.amount_in_for(Side::SellBase, U256::from(136u64)), Ok(U256::from(16_001u64)));
        assert_eq!(p.amount_out(Side::SellBase, U256::from(16_000u64)), Ok(U256::from(136u64)));
        // 18/18 decimals: 10,131.404313951956880744.
        let p = pair(e18(1_000_000), e18(1_000_000));
        let need = p.amount_in_for(Side::SellQuote, e18(10_000)).unwrap();
        assert_eq!(need, dec("10131404313951956880744"));
    }

    #[test]
    fn domain_flash_repayment() {
        let p = pair(e18(1_000_000), e18(1_000_000));
        let repay = p.flash_repayment(p.token0, e18(10_000)).unwrap();
        assert_eq!(repay, dec("10030090270812437311936"));
        // P − 1 fails K: 997·(P − 1) < 1000·X.
        let x = e18(10_000);
        assert!((repay - U256::ONE) * U256::from(997) < x * U256::from(1000));
        assert!(repay * U256::from(997) >= x * U256::from(1000));
        assert_eq!(p.flash_repayment(Address::with_last_byte(9), x), Err(VenueError::Unsupported));
        assert_eq!(p.flash_repayment(p.token1, e18(1_000_000)), Err(VenueError::OverReserves));
    }

    /// Profit of the round trip `delta` through a then b (native math), or None when a hop fails.
    fn round_trip(a: &V2Pair, a_side: Side, b: &V2Pair, b_side: Side, delta: U256) -> Option<U256> {
        let x = a.amount_out(a_side, delta).ok()?;
        let back = b.amount_out(b_side, x).ok()?;
        Some(back.saturating_sub(delta))
    }

    #[test]
    fn domain_two_pool_optimum() {
        // A = (1,000,000 USDC; 1,010,000 X), B = (990,000 X; 1,000,000 USDC).
        for (du, dx) in [(6u32, 18u32), (18, 18), (6, 6)] {
            let usdc = Address::with_last_byte(1);
            let x = Address::with_last_byte(2);
            let u = |n: u64| U256::from(n) * pow10(du);
            let xx = |n: u64| U256::from(n) * pow10(dx);
            let a = V2Pair::new(usdc, x, u(1_000_000).to(), xx(1_010_000).to());
            let b = V2Pair::new(usdc, x, u(1_000_000).to(), xx(990_000).to());
            let delta = optimal_two_pool_input(&a, Side::SellBase, &b, Side::SellQuote).unwrap();
            // Δ* = 3,490.82 USDC.
            let cents = delta * U256::from(100) / pow10(du);
            assert_eq!(cents, U256::from(349_081), "Δ* = {delta} at {du}/{dx} decimals");
            let profit = round_trip(&a, Side::SellBase, &b, Side::SellQuote, delta).unwrap();
            // Profit 24.507 USDC.
            let milli = (profit * U256::from(1000) + pow10(du) / U256::from(2)) / pow10(du);
            assert_eq!(milli, U256::from(24_507));
            // ±10% of that size gives 24.26.
            for size in
                [delta * U256::from(9) / U256::from(10), delta * U256::from(11) / U256::from(10)]
            {
                let p = round_trip(&a, Side::SellBase, &b, Side::SellQuote, size).unwrap();
                let centi = (p * U256::from(100) + pow10(du) / U256::from(2)) / pow10(du);
                assert_eq!(centi, U256::from(2_426));
            }
            // The reverse direction loses; tokens that do not chain give nothing.
            assert_eq!(optimal_two_pool_input(&b, Side::SellBase, &a, Side::SellQuote), None);
            assert_eq!(optimal_two_pool_input(&a, Side::SellBase, &b, Side::SellBase), None);
        }
    }

    #[test]
    fn mid_price_and_fees() {
        let p = pair(e18(1_000_000), U256::from(2_000_000_000_000u64));
        // 2 USDC (6 dec) per 1 token (18 dec): 2e6 / 1e18 raw × 1e18 = 2e6.
        assert_eq!(p.mid_price().unwrap(), U256::from(2_000_000u64));
        let q = p.quote(Side::SellBase, e18(1), &CTX).unwrap();
        // A tiny trade pays ≈ 0.3% of ≈ 2 USDC.
        assert_eq!(q.amount_out + q.lp_fee, U256::from(1_999_998u64));
        assert_eq!(q.lp_fee, U256::from(6_000u64));
        assert_eq!(pair(U256::ZERO, U256::ONE).mid_price(), Err(VenueError::NoLiquidity));
    }

    #[test]
    fn refusals_are_typed() {
        let p = pair(U256::from(1_000u64), U256::from(1_000u64));
        assert_eq!(p.amount_out(Side::SellBase, U256::ZERO), Err(VenueError::ZeroInput));
        assert_eq!(p.amount_out(Side::SellBase, U256::ONE), Err(VenueError::ZeroOutput));
        assert_eq!(p.amount_out(Side::SellBase, U256::MAX), Err(VenueError::Overflow));
        assert_eq!(
            p.amount_out(Side::SellBase, U256::from(MAX_RESERVE - 999)),
            Err(VenueError::Overflow)
        );
        assert!(p.amount_out(Side::SellBase, U256::from(MAX_RESERVE - 1000)).is_ok());
        assert_eq!(
            p.amount_in_for(Side::SellBase, U256::from(1_000u64)),
            Err(VenueError::OverReserves)
        );
        assert_eq!(p.amount_in_for(Side::SellBase, U256::ZERO), Err(VenueError::ZeroOutput));
        assert_eq!(
            pair(U256::ZERO, U256::ONE).amount_out(Side::SellBase, U256::ONE),
            Err(VenueError::NoLiquidity)
        );
        let mut absurd = pair(U256::ONE, U256::ONE);
        absurd.reserve0 = u128::MAX;
        assert!(matches!(
            absurd.amount_out(Side::SellQuote, U256::ONE),
            Err(VenueError::InvalidState(_))
        ));
        let full_fee = pair(U256::from(1_000u64), U256::from(1_000u64)).with_fee_bps(10_000);
        assert!(matches!(
            full_fee.amount_out(Side::SellBase, U256::ONE),
            Err(VenueError::InvalidState(_))
        ));
        // An error leaves the state unchanged.
        let mut q = p.clone();
        assert!(q.apply(Side::SellBase, U256::MAX, &CTX).is_err());
        assert_eq!(q, p);
    }

    #[test]
    fn isqrt_is_exact() {
        for n in [0u64, 1, 2, 3, 4, 15, 16, 17, 99, 100, 101, u64::MAX] {
            let r = isqrt(U256::from(n));
            assert!(r * r <= U256::from(n) && (r + U256::ONE) * (r + U256::ONE) > U256::from(n));
        }
        let big = U512::MAX;
        let r = isqrt(big);
        assert!(r.checked_mul(r).is_some_and(|s| s <= big));
        assert!((r + U512::ONE).checked_mul(r + U512::ONE).is_none());
    }

    /// Any state, any input: typed errors, never a panic; successes respect the reserves.
    #[test]
    fn no_panic_on_any_input() {
        let any_state = (
            any::<u128>(),
            any::<u128>(),
            any::<u16>(),
            prop_oneof![Just(UNISWAP_V2_FEE_BPS), any::<u16>()],
        );
        let amounts = prop_oneof![log_uniform(256), Just(U256::MAX), Just(U256::ZERO)];
        let strat = (any_state, amounts.clone(), amounts, any::<bool>());
        runner()
            .run(&strat, |((r0, r1, small, fee), x, y, base)| {
                let side = if base { Side::SellBase } else { Side::SellQuote };
                let r0 = if small % 3 == 0 { r0 >> 16 } else { r0 };
                let mut p = pair(U256::ZERO, U256::ZERO).with_fee_bps(fee);
                p.reserve0 = r0;
                p.reserve1 = r1;
                let before = p.clone();
                if let Ok(q) = p.quote(side, x, &CTX) {
                    let (_, r_out) = p.reserves(side).unwrap();
                    prop_assert!(q.amount_out < U256::from(r_out));
                    prop_assert!(q.amount_out > U256::ZERO);
                }
                let _ = p.amount_in_for(side, y);
                let _ = p.flash_repayment(p.token0, y);
                let _ = p.mid_price();
                let _ = optimal_two_pool_input(&p, side, &before, side.flip());
                match p.apply(side, x, &CTX) {
                    Ok(_) => prop_assert!(p.reserve0 <= MAX_RESERVE && p.reserve1 <= MAX_RESERVE),
                    Err(_) => prop_assert_eq!(&p, &before),
                }
                Ok(())
            })
            .unwrap();
    }

    // ------------------------------------------------------------ against the fixture contract

    /// Two factories with one (6-dec, 6-dec) and one (18-dec, 6-dec) pair each, on a local EVM.
    struct Fixture {
        chain: Chain,
        /// (pair address, token0, token1, decimals of token0, decimals of token1); index 0 and 1
        /// are (6, 6) and (18, 6) pairs of the first factory, 2 and 3 the same tokens in the second.
        pairs: Vec<(Address, Address, Address, u32, u32)>,
        executor: Address,
    }

    fn fixture() -> Fixture {
        let mut chain = Chain::new();
        let owner = chain.owner();
        let u = chain.token("U", 6);
        let v = chain.token("V", 6);
        let w = chain.token("W", 18);
        let decimals = |t: Address| if t == w { 18 } else { 6 };
        let mut pairs = Vec::new();
        for _ in 0..2 {
            let factory = chain.deploy(&UniV2Factory::BYTECODE, Vec::new());
            for (a, b) in [(u, v), (w, u)] {
                let call = UniV2Factory::createPairCall { tokenA: a, tokenB: b };
                let pair = chain.send(owner, factory, &call).unwrap();
                let t0 = chain.view(pair, &UniV2Pair::token0Call {}).unwrap();
                let t1 = chain.view(pair, &UniV2Pair::token1Call {}).unwrap();
                pairs.push((pair, t0, t1, decimals(t0), decimals(t1)));
            }
        }
        let args = Executor::constructorCall { operator_: Address::ZERO }.abi_encode();
        let executor = chain.deploy(&Executor::BYTECODE, args);
        Fixture { chain, pairs, executor }
    }

    impl Fixture {
        /// Writes reserves (slot 5: reserve0 | reserve1 << 112 | blockTimestampLast << 224) and
        /// the matching token balances of the pair; returns the native state.
        fn set_pair(&mut self, index: usize, r0: u128, r1: u128) -> (Address, V2Pair) {
            let (pair, t0, t1, _, _) = self.pairs[index];
            let ts = U256::from(self.chain.evm.timestamp() % (1u64 << 32));
            let word = U256::from(r0) | (U256::from(r1) << 112) | (ts << 224);
            self.chain.store(pair, U256::from(5u64), word);
            self.chain.set_balance(t0, pair, U256::from(r0));
            self.chain.set_balance(t1, pair, U256::from(r1));
            (pair, V2Pair::new(t0, t1, r0, r1))
        }

        fn reserves(&self, pair: Address) -> (u128, u128) {
            let r = self.chain.view(pair, &UniV2Pair::getReservesCall {}).unwrap();
            (r._reserve0.to(), r._reserve1.to())
        }
    }

    fn swap_call(side: Side, out: U256) -> UniV2Pair::swapCall {
        let (a0, a1) = match side {
            Side::SellBase => (U256::ZERO, out),
            Side::SellQuote => (out, U256::ZERO),
        };
        UniV2Pair::swapCall { amount0Out: a0, amount1Out: a1, to: TRADER, data: Bytes::new() }
    }

    /// A reserve for a token with `dec` decimals: mostly 1 wei to 10⁹ whole tokens, sometimes
    /// tiny, sometimes near the `uint112` limit.
    fn reserve(dec: u32) -> BoxedStrategy<u128> {
        let bits = pow10(9 + dec).bit_len() as u32;
        prop_oneof![
            8 => log_uniform(bits).prop_map(|v| v.to::<u128>().max(1)),
            1 => 1u128..=1000,
            1 => (0u128..1 << 64).prop_map(|d| MAX_RESERVE - d),
        ]
        .boxed()
    }

    /// (pair index 0 or 1, reserve0, reserve1, side, amount), reserves drawn for each token's
    /// decimals as deployed.
    fn swap_case(fx: &Fixture) -> impl Strategy<Value = (usize, u128, u128, Side, U256)> + use<> {
        let decimals = [(fx.pairs[0].3, fx.pairs[0].4), (fx.pairs[1].3, fx.pairs[1].4)];
        (0usize..2, any::<bool>())
            .prop_flat_map(move |(i, base)| {
                let (d0, d1) = decimals[i];
                let side = if base { Side::SellBase } else { Side::SellQuote };
                (Just(i), reserve(d0), reserve(d1), Just(side))
            })
            .prop_flat_map(|(i, r0, r1, side)| {
                let r_in = if side == Side::SellBase { r0 } else { r1 };
                (Just(i), Just(r0), Just(r1), Just(side), amount_against(U256::from(r_in)))
            })
    }

    /// Exact input: the native output is the largest the pair accepts (out + 1 fails, out
    /// succeeds), the trader receives exactly it, and `apply` gives the pair's reserves after.
    /// When the native side refuses, the pair refuses every positive output.
    #[test]
    fn quote_and_apply_match_the_pair() {
        let fx = fixture();
        let strat = swap_case(&fx);
        let fx = RefCell::new(fx);
        let tally = Tally::default();
        runner()
            .run(&strat, |(i, r0, r1, side, x)| {
                let mut fx = fx.borrow_mut();
                let (pair, mut native) = fx.set_pair(i, r0, r1);
                let (tin, tout) = native.tokens_for(side);
                fx.chain.set_balance(tin, TRADER, x);
                fx.chain.set_balance(tout, TRADER, U256::ZERO);
                if !x.is_zero() {
                    fx.chain
                        .send(TRADER, tin, &TestToken::transferCall { to: pair, amount: x })
                        .unwrap();
                }
                let quoted = native.quote(side, x, &CTX);
                tally.add(&quoted);
                match quoted {
                    Ok(q) => {
                        let more = fx.chain.try_call(
                            TRADER,
                            pair,
                            &swap_call(side, q.amount_out + U256::ONE),
                        );
                        prop_assert!(more.is_err(), "pair pays more than {}", q.amount_out);
                        let done = fx.chain.send(TRADER, pair, &swap_call(side, q.amount_out));
                        prop_assert!(done.is_ok(), "pair refused {}: {:?}", q.amount_out, done);
                        prop_assert_eq!(fx.chain.balance(tout, TRADER), q.amount_out);
                        let applied = native.apply(side, x, &CTX).unwrap();
                        prop_assert_eq!(applied, q);
                        prop_assert_eq!(fx.reserves(pair), (native.reserve0, native.reserve1));
                    }
                    Err(e) => {
                        let any = fx.chain.try_call(TRADER, pair, &swap_call(side, U256::ONE));
                        prop_assert!(any.is_err(), "native {e:?} but the pair pays");
                    }
                }
                Ok(())
            })
            .unwrap();
        tally.check(60, &["ok", "ZeroInput", "ZeroOutput", "Overflow"]);
    }

    /// Exact output: paying `amount_in_for(y)` buys y, one wei less does not. When the native
    /// side refuses, the largest input the pair can take does not buy y either.
    #[test]
    fn amount_in_for_matches_the_pair() {
        let fx = fixture();
        let strat = swap_case(&fx).prop_flat_map(|(i, r0, r1, side, _)| {
            let r_out = if side == Side::SellBase { r1 } else { r0 };
            (Just(i), Just(r0), Just(r1), Just(side), amount_against(U256::from(r_out)))
        });
        let fx = RefCell::new(fx);
        let tally = Tally::default();
        runner()
            .run(&strat, |(i, r0, r1, side, y)| {
                let mut fx = fx.borrow_mut();
                let (pair, native) = fx.set_pair(i, r0, r1);
                let (tin, _) = native.tokens_for(side);
                let r_in = if side == Side::SellBase { r0 } else { r1 };
                let pay = |fx: &mut Fixture, amount: U256| {
                    fx.chain.set_balance(tin, TRADER, amount);
                    if !amount.is_zero() {
                        let t = TestToken::transferCall { to: pair, amount };
                        fx.chain.send(TRADER, tin, &t).unwrap();
                    }
                };
                let need = native.amount_in_for(side, y);
                tally.add(&need);
                match need {
                    Ok(need) => {
                        // getAmountIn's `+ 1` overpays by one wei when its division is exact.
                        let r_out = if side == Side::SellBase { r1 } else { r0 };
                        let num = U256::from(r_in) * y * U256::from(DEN);
                        let den = U256::from(r_out) - y;
                        let exact = (num % (den * U256::from(DEN - 30))).is_zero();
                        let least = if exact { need - U256::ONE } else { need };
                        pay(&mut fx, least - U256::ONE);
                        let short = fx.chain.try_call(TRADER, pair, &swap_call(side, y));
                        prop_assert!(short.is_err(), "{} − 1 already buys {y}", least);
                        pay(&mut fx, U256::ONE);
                        let done = fx.chain.send(TRADER, pair, &swap_call(side, y));
                        prop_assert!(done.is_ok(), "{least} does not buy {y}: {done:?}");
                        prop_assert!(native.amount_out(side, least).unwrap() >= y);
                        prop_assert!(native.amount_out(side, need).unwrap() >= y);
                    }
                    Err(_) => {
                        pay(&mut fx, U256::from(MAX_RESERVE - r_in));
                        let any = fx.chain.try_call(TRADER, pair, &swap_call(side, y));
                        prop_assert!(any.is_err(), "native refuses but the pair sells {y}");
                    }
                }
                Ok(())
            })
            .unwrap();
        tally.check(50, &["ok", "ZeroOutput", "OverReserves", "Overflow"]);
    }

    /// The closed-form size and the hop encoding through the real executor: a round trip over two
    /// pairs of the same tokens at Δ*, run by `Executor.execute`, earns exactly the native profit,
    /// leaves the reserves `apply` predicts, and beats ±1% of the size natively.
    #[test]
    fn optimal_round_trip_through_the_executor() {
        let fx = RefCell::new(fixture());
        // Pair A: a 6-decimal reserve and a second reserve of 6 or 18 decimals; pair B holds the
        // same tokens, 7/3 as deep, at a price skewed by up to ±5%.
        let strat =
            (any::<bool>(), reserve(6), reserve(6), reserve(18), -500i64..=500, any::<bool>());
        let ran = Cell::new(0u32);
        runner_with((cases() / 10).max(100))
            .run(&strat, |(pick_66, r_six, r_other6, r_other18, skew_bp, sell_base)| {
                let mut fx = fx.borrow_mut();
                let (ia, ib) = if pick_66 { (0, 2) } else { (1, 3) };
                let (_, _, _, d0, _) = fx.pairs[ia];
                let (a0, a1) = match (pick_66, d0) {
                    (true, _) => (r_six, r_other6),
                    (false, 18) => (r_other18, r_six),
                    (false, _) => (r_six, r_other18),
                };
                let scale = |r: u128, num: u128, den: u128| {
                    let v = U256::from(r) * U256::from(num) / U256::from(den);
                    v.min(U256::from(MAX_RESERVE)).to::<u128>().max(1)
                };
                let b0 = scale(a0, 7, 3);
                let b1 = scale(scale(a1, 7, 3), (10_000 + skew_bp) as u128, 10_000);
                let (pa, mut a) = fx.set_pair(ia, a0, a1);
                let (pb, mut b) = fx.set_pair(ib, b0, b1);
                let a_side = if sell_base { Side::SellBase } else { Side::SellQuote };
                let Some(delta) = optimal_two_pool_input(&a, a_side, &b, a_side.flip()) else {
                    return Ok(());
                };
                let Some(profit) = round_trip(&a, a_side, &b, a_side.flip(), delta) else {
                    return Ok(());
                };
                // Integer floors may cost up to one unit of X in the first hop, worth up to
                // ⌈B_out/B_in⌉ units of T in the second.
                let (b_in, b_out) = b.reserves(a_side.flip()).unwrap();
                let slack = U256::from(3 + b_out.div_ceil(b_in));
                for size in [
                    delta * U256::from(99) / U256::from(100),
                    delta * U256::from(101) / U256::from(100),
                ] {
                    if let Some(p) = round_trip(&a, a_side, &b, a_side.flip(), size) {
                        prop_assert!(
                            p <= profit + slack,
                            "{size} earns {p} > {profit} at Δ* {delta}"
                        );
                    }
                }
                if profit.is_zero() {
                    return Ok(());
                }
                let (tin, _) = a.tokens_for(a_side);
                let executor = fx.executor;
                fx.chain.set_balance(tin, executor, delta);
                let mid = a.amount_out(a_side, delta).unwrap();
                let route = Executor::Route {
                    flash: Executor::Flash {
                        kind: 0,
                        source: Address::ZERO,
                        token: Address::ZERO,
                        amount: U256::ZERO,
                    },
                    hops: vec![
                        a.hop(pa, a_side, delta, mid),
                        b.hop(pb, a_side.flip(), U256::ZERO, delta + profit),
                    ],
                    profitToken: tin,
                    minProfit: profit,
                    deadlineBlock: U256::ZERO,
                    coinbaseTip: U256::ZERO,
                };
                let owner = fx.chain.owner();
                let got = fx.chain.send(owner, executor, &Executor::executeCall { route });
                prop_assert!(got.is_ok(), "executor refused Δ* {delta}: {got:?}");
                prop_assert_eq!(got.unwrap(), profit);
                a.apply(a_side, delta, &CTX).unwrap();
                b.apply(a_side.flip(), mid, &CTX).unwrap();
                prop_assert_eq!(fx.reserves(pa), (a.reserve0, a.reserve1));
                prop_assert_eq!(fx.reserves(pb), (b.reserve0, b.reserve1));
                ran.set(ran.get() + 1);
                Ok(())
            })
            .unwrap();
        assert!(ran.get() > 10, "only {} profitable round trips ran", ran.get());
    }

    // ------------------------------------------------------------ state decoding over JSON-RPC

    /// `fetch` decodes a pair from its address alone on a real node, at a pinned block, and
    /// names the venue and the call in every failure.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetch_reads_a_pair_at_a_block() {
        use crate::venues::{fetch::FetchError, testkit::Node};
        let n = Node::spawn();
        let a = n.token("A", 6).await;
        let b = n.token("B", 18).await;
        let factory = n.deploy(&UniV2Factory::BYTECODE, Vec::new()).await;
        n.send(factory, &UniV2Factory::createPairCall { tokenA: a, tokenB: b }).await;
        let pair = n.view(factory, &UniV2Factory::getPairCall { _0: a, _1: b }).await;
        let empty = n.block().await;
        n.send(a, &TestToken::mintCall { to: pair, amount: U256::from(2_000_000_000_000u64) })
            .await;
        n.send(b, &TestToken::mintCall { to: pair, amount: e18(1_000_000) }).await;
        n.send(pair, &UniV2Pair::mintCall { to: n.me }).await;
        let block = n.block().await;

        let v = V2Pair::fetch(&n.p, pair, block).await.unwrap();
        let (t0, t1) = if a < b { (a, b) } else { (b, a) };
        assert_eq!((v.token0, v.token1, v.fee_bps), (t0, t1, 30));
        let (r_a, r_b) = (2_000_000_000_000u128, e18(1_000_000).to::<u128>());
        assert_eq!((v.reserve0, v.reserve1), if a < b { (r_a, r_b) } else { (r_b, r_a) });
        let before = V2Pair::fetch(&n.p, pair, empty).await.unwrap();
        assert_eq!((before.reserve0, before.reserve1), (0, 0));
        assert_eq!(before.quote(Side::SellBase, U256::ONE, &CTX), Err(VenueError::NoLiquidity));

        // An account without code returns nothing; a contract without the interface reverts.
        let e = V2Pair::fetch(&n.p, n.me, block).await.unwrap_err();
        assert!(matches!(e, FetchError::Decode { call: "token0()", .. }), "{e}");
        assert_eq!(e.venue(), n.me);
        let e = V2Pair::fetch(&n.p, a, block).await.unwrap_err();
        assert!(matches!(e, FetchError::Reverted { call: "token0()", .. }), "{e}");
        assert!(!e.is_retryable());
        let e = V2Pair::fetch(&Node::dead_provider(), pair, block).await.unwrap_err();
        assert!(matches!(e, FetchError::Transport { call: "batch", .. }), "{e}");
        assert!(e.is_retryable());
        assert_eq!(e.venue(), pair);
    }
}
