//! PMMPricing: the trade functions by R state (DOMAIN §1.4), target regression ("adjustedTarget")
//! and the mid price (DOMAIN §1.2), step for step as `fixtures/contracts/pmm/lib/PMMPricing.sol`.

use alloy::primitives::U256;

use super::math::{
    MathResult, ONE, add, div, div_floor, general_integrate, mul, mul_floor, reciprocal_floor,
    solve_quadratic_for_target, solve_quadratic_for_trade, sub,
};
use crate::venues::VenueError;

/// The R state of a PMM pool (`PMMPricing.RState`; ABI value in brackets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RState {
    /// (0) B = B0 and Q = Q0: the price is `i`.
    #[default]
    One = 0,
    /// (1) B < B0: traders bought base, the price is above `i`.
    AboveOne = 1,
    /// (2) Q < Q0: traders sold base, the price is below `i`.
    BelowOne = 2,
}

impl RState {
    /// Decodes the contract's `_RState_` / `getPMMStateForCall` value.
    ///
    /// # Errors
    /// [`VenueError::InvalidState`] for a value other than 0, 1 or 2 (the contract's enum
    /// conversion panics on it).
    pub fn try_from_u256(value: U256) -> Result<Self, VenueError> {
        match value.as_limbs() {
            [0, 0, 0, 0] => Ok(Self::One),
            [1, 0, 0, 0] => Ok(Self::AboveOne),
            [2, 0, 0, 0] => Ok(Self::BelowOne),
            _ => Err(VenueError::InvalidState("R state out of range")),
        }
    }

    /// The ABI value (0, 1 or 2).
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The PMM state `{i, K, B, Q, B0, Q0, R}` (`PMMPricing.PMMState`), all raw integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PmmState {
    /// Price: quote raw per base raw, times 1e18.
    pub i: U256,
    /// Slippage factor, 18 decimals (0 ..= 1e18).
    pub k: U256,
    /// Base reserve.
    pub b: U256,
    /// Quote reserve.
    pub q: U256,
    /// Base target.
    pub b0: U256,
    /// Quote target.
    pub q0: U256,
    /// R state.
    pub r: RState,
}

/// Raw output of a trade (before fees) and the R state after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CurveOut {
    /// Output of the curve, before the LP and maintainer fees.
    pub amount: U256,
    /// R state after the trade.
    pub new_r: RState,
}

impl PmmState {
    /// Re-solves the target of the short side in place (`PMMPricing.adjustedTarget`):
    /// BELOW_ONE: `Q0 = SolveQuadraticForTarget(Q, B − B0, i, k)`; ABOVE_ONE:
    /// `B0 = SolveQuadraticForTarget(B, Q − Q0, 1/i, k)`; ONE: unchanged.
    ///
    /// # Errors
    /// [`VenueError::Overflow`] when a checked step fails (e.g. B < B0 at BELOW_ONE, i = 0 at
    /// ABOVE_ONE).
    #[inline(always)]
    pub fn adjust_target(&mut self) -> Result<(), VenueError> {
        let recip_i = match self.r {
            RState::AboveOne => reciprocal_floor(self.i),
            RState::One | RState::BelowOne => Err(VenueError::Overflow), // not used
        };
        self.adjust_target_with(&recip_i)
    }

    /// [`PmmState::adjust_target`] with `reciprocalFloor(i)` computed by the caller (used only at
    /// ABOVE_ONE, where the contract computes it).
    ///
    /// # Errors
    /// As [`PmmState::adjust_target`].
    #[inline(always)]
    pub fn adjust_target_with(&mut self, recip_i: &MathResult) -> Result<(), VenueError> {
        match self.r {
            RState::BelowOne => {
                self.q0 =
                    solve_quadratic_for_target(self.q, sub(self.b, self.b0)?, self.i, self.k)?;
            }
            RState::AboveOne => {
                let delta = sub(self.q, self.q0)?;
                self.b0 = solve_quadratic_for_target(self.b, delta, recip_i.clone()?, self.k)?;
            }
            RState::One => {}
        }
        Ok(())
    }

    /// Raw quote out for `pay_base` base sold (`PMMPricing.sellBaseToken`); the state must be
    /// target-adjusted.
    ///
    /// # Errors
    /// As the contract: [`VenueError::NoLiquidity`] ("TARGET_IS_ZERO"), [`VenueError::ZeroOutput`]
    /// ("should not be zero"), [`VenueError::Overflow`].
    #[inline(always)]
    pub fn sell_base(&self, pay_base: U256) -> Result<CurveOut, VenueError> {
        match self.r {
            RState::One => Ok(CurveOut {
                amount: solve_quadratic_for_trade(self.q0, self.q0, pay_base, self.i, self.k)?,
                new_r: RState::BelowOne,
            }),
            RState::AboveOne => {
                let back_to_one_pay = sub(self.b0, self.b)?;
                let back_to_one_receive = sub(self.q, self.q0)?;
                if pay_base < back_to_one_pay {
                    let out =
                        general_integrate(self.b0, add(self.b, pay_base)?, self.b, self.i, self.k)?;
                    Ok(CurveOut { amount: out.min(back_to_one_receive), new_r: RState::AboveOne })
                } else if pay_base == back_to_one_pay {
                    Ok(CurveOut { amount: back_to_one_receive, new_r: RState::One })
                } else {
                    let rest = solve_quadratic_for_trade(
                        self.q0,
                        self.q0,
                        pay_base - back_to_one_pay,
                        self.i,
                        self.k,
                    )?;
                    Ok(CurveOut {
                        amount: add(back_to_one_receive, rest)?,
                        new_r: RState::BelowOne,
                    })
                }
            }
            RState::BelowOne => Ok(CurveOut {
                amount: solve_quadratic_for_trade(self.q0, self.q, pay_base, self.i, self.k)?,
                new_r: RState::BelowOne,
            }),
        }
    }

    /// Raw base out for `pay_quote` quote sold (`PMMPricing.sellQuoteToken`, price
    /// `reciprocalFloor(i)`); the state must be target-adjusted.
    ///
    /// # Errors
    /// As [`PmmState::sell_base`].
    #[inline(always)]
    pub fn sell_quote(&self, pay_quote: U256) -> Result<CurveOut, VenueError> {
        self.sell_quote_with(pay_quote, reciprocal_floor(self.i))
    }

    /// [`PmmState::sell_quote`] with `reciprocalFloor(i)` computed by the caller (an error there
    /// surfaces only on the paths where the contract computes it).
    ///
    /// # Errors
    /// As [`PmmState::sell_quote`].
    #[inline(always)]
    pub fn sell_quote_with(
        &self,
        pay_quote: U256,
        recip_i: MathResult,
    ) -> Result<CurveOut, VenueError> {
        match self.r {
            RState::One => Ok(CurveOut {
                amount: solve_quadratic_for_trade(
                    self.b0,
                    self.b0,
                    pay_quote,
                    recip_i.clone()?,
                    self.k,
                )?,
                new_r: RState::AboveOne,
            }),
            RState::AboveOne => Ok(CurveOut {
                amount: solve_quadratic_for_trade(
                    self.b0,
                    self.b,
                    pay_quote,
                    recip_i.clone()?,
                    self.k,
                )?,
                new_r: RState::AboveOne,
            }),
            RState::BelowOne => {
                let back_to_one_pay = sub(self.q0, self.q)?;
                let back_to_one_receive = sub(self.b, self.b0)?;
                if pay_quote < back_to_one_pay {
                    let out = general_integrate(
                        self.q0,
                        add(self.q, pay_quote)?,
                        self.q,
                        recip_i.clone()?,
                        self.k,
                    )?;
                    Ok(CurveOut { amount: out.min(back_to_one_receive), new_r: RState::BelowOne })
                } else if pay_quote == back_to_one_pay {
                    Ok(CurveOut { amount: back_to_one_receive, new_r: RState::One })
                } else {
                    let rest = solve_quadratic_for_trade(
                        self.b0,
                        self.b0,
                        pay_quote - back_to_one_pay,
                        recip_i.clone()?,
                        self.k,
                    )?;
                    Ok(CurveOut {
                        amount: add(back_to_one_receive, rest)?,
                        new_r: RState::AboveOne,
                    })
                }
            }
        }
    }

    /// Marginal price of base in quote, 18 decimals (`PMMPricing.getMidPrice`); the state must be
    /// target-adjusted. BELOW_ONE: `i / (1 − k + k·(Q0/Q)²)`; otherwise `i·(1 − k + k·(B0/B)²)`, with
    /// the contract's floor steps.
    ///
    /// # Errors
    /// [`VenueError::Overflow`] when a checked step fails, including a zero reserve (division by
    /// zero).
    #[inline]
    pub fn mid_price(&self) -> MathResult {
        if self.r == RState::BelowOne {
            let r = div_floor(div(mul(self.q0, self.q0)?, self.q)?, self.q)?;
            let r = add(sub(ONE, self.k)?, mul_floor(self.k, r)?)?;
            div_floor(self.i, r)
        } else {
            let r = div_floor(div(mul(self.b0, self.b0)?, self.b)?, self.b)?;
            let r = add(sub(ONE, self.k)?, mul_floor(self.k, r)?)?;
            mul_floor(self.i, r)
        }
    }
}
