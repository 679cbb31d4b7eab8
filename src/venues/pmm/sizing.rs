//! Closed-form arbitrage size against an external price (DOMAIN §1.11).
//!
//! With f the total output fee (lp + mt) and P* the external price of base in quote, trading
//! through the pool pays until its marginal price, net of the fee, meets P*:
//! - buy base (sell quote) while `mid < P*(1−f)`: stop where `mid = P*(1−f)`;
//! - sell base while `mid·(1−f) > P*`: stop where `mid = P*/(1−f)`.
//!
//! On each side of R = ONE the mid price has a closed form in the moving reserve
//! (`i·(1−k+k(B0/B)²)` above, `i/(1−k+k(Q0/Q)²)` below), so the stop level is
//! `V' = V0·√(k / (ratio − 1 + k))` with `ratio` the price ratio that applies on that side. A trade
//! that reaches R = ONE before the stop continues on the other side from the targets. Amounts are
//! integer-exact up to the rounding of one square root; the router proves the final size with the
//! exact quote.

use alloy::primitives::U256;

use super::{
    PmmKind, PmmPool, PmmState, RState,
    math::{ONE, ONE2, div_floor, general_integrate, mul_floor, reciprocal_floor, sqrt},
};
use crate::venues::{Side, Venue};

/// `V0·√(k / (ratio − 1 + k))`, 1e18-scaled `ratio` and `k`; 0 for `k = 0` (a flat price is
/// traded to the end of the segment).
fn stop_level(v0: U256, ratio: U256, k: U256) -> Option<U256> {
    if k.is_zero() {
        return Some(U256::ZERO);
    }
    let denom = ratio.checked_add(k)?.checked_sub(ONE)?;
    if denom.is_zero() {
        return None;
    }
    let root = sqrt(k.checked_mul(ONE2)? / denom); // √(k/denom)·1e18
    mul_floor(v0, root).ok()
}

impl PmmPool {
    /// The side and input size that take the pool's marginal price, net of its fees, to `p_star`
    /// (quote raw per base raw, times 1e18 — the units of `i`), per DOMAIN §1.11:
    /// `Some((SellQuote, quote in))` when the pool sells base below `P*(1−f)`,
    /// `Some((SellBase, base in))` when it buys base above `P*/(1−f)`, `None` when neither pays or
    /// the state has no price. Crossing R = ONE is followed (not for DVM, whose Q0 is 0: selling
    /// base stops at B0).
    pub fn optimal_input_vs_price(&self, p_star: U256) -> Option<(Side, U256)> {
        let state = self.adjusted_state().ok()?;
        let keep = ONE.checked_sub(self.lp_fee_rate.checked_add(self.mt_fee_rate)?)?; // 1 − f
        if keep.is_zero() || p_star.is_zero() || state.i.is_zero() {
            return None;
        }
        let mid = self.mid_price().ok()?;
        let buy_limit = mul_floor(p_star, keep).ok()?;
        if mid < buy_limit {
            return size_buy_base(&state, buy_limit)
                .filter(|a| !a.is_zero())
                .map(|a| (Side::SellQuote, a));
        }
        let sell_limit = div_floor(p_star, keep).ok()?;
        if mid > sell_limit {
            return size_sell_base(&state, sell_limit, self.kind == PmmKind::Dvm)
                .filter(|a| !a.is_zero())
                .map(|a| (Side::SellBase, a));
        }
        None
    }
}

/// Quote to pay until `mid = limit` (`limit = P*(1−f)` > mid).
fn size_buy_base(st: &PmmState, limit: U256) -> Option<U256> {
    let (mut input, b_start) = match st.r {
        RState::BelowOne => {
            if limit < st.i {
                // The stop lies below R = ONE: Q' = Q0·√(k/(i/limit − 1 + k)).
                let q_stop = stop_level(st.q0, div_floor(st.i, limit).ok()?, st.k)?.min(st.q0);
                return q_stop.checked_sub(st.q);
            }
            (st.q0.checked_sub(st.q)?, st.b0)
        }
        RState::One => (U256::ZERO, st.b0),
        RState::AboveOne => (U256::ZERO, st.b),
    };
    if limit <= st.i {
        return Some(input);
    }
    // Above R = ONE: B' = B0·√(k/(limit/i − 1 + k)); pay the integral from b_start down to B'.
    let b_stop = stop_level(st.b0, div_floor(limit, st.i).ok()?, st.k)?;
    if b_stop < b_start {
        let b_stop = if st.k.is_zero() { b_stop } else { b_stop.max(U256::ONE) };
        input = input.checked_add(general_integrate(st.b0, b_start, b_stop, st.i, st.k).ok()?)?;
    }
    Some(input)
}

/// Base to sell until `mid = limit` (`limit = P*/(1−f)` < mid).
fn size_sell_base(st: &PmmState, limit: U256, dvm: bool) -> Option<U256> {
    let (mut input, q_start) = match st.r {
        RState::AboveOne => {
            if limit > st.i {
                // The stop lies above R = ONE: B' = B0·√(k/(limit/i − 1 + k)).
                let b_stop = stop_level(st.b0, div_floor(limit, st.i).ok()?, st.k)?.min(st.b0);
                return b_stop.checked_sub(st.b);
            }
            let to_one = st.b0.checked_sub(st.b)?;
            if dvm {
                return Some(to_one); // Q0 = 0: past B0 the DVM reverts
            }
            (to_one, st.q0)
        }
        RState::One => (U256::ZERO, st.q0),
        RState::BelowOne => (U256::ZERO, st.q),
    };
    if limit >= st.i {
        return Some(input);
    }
    // Below R = ONE: Q' = Q0·√(k/(i/limit − 1 + k)); sell the base that moves Q from q_start to Q'.
    let q_stop = stop_level(st.q0, div_floor(st.i, limit).ok()?, st.k)?;
    if q_stop < q_start {
        let q_stop = if st.k.is_zero() { q_stop } else { q_stop.max(U256::ONE) };
        let price = reciprocal_floor(st.i).ok()?;
        input = input.checked_add(general_integrate(st.q0, q_start, q_stop, price, st.k).ok()?)?;
    }
    Some(input)
}
