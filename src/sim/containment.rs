//! Flash-loan containment, checked on the simulation before anything is signed (DESIGN §5): every
//! borrowed asset repaid inside the transaction, the executor's net delta ≥ 0 for every token and
//! ≥ `min_profit` for the profit token, no allowance left behind, callbacks only from the
//! contracts the route called. A route failing any of these is refused with every reason.

use alloy::primitives::{Address, I256, U256};

use super::{SimOutcome, SimStatus};

/// What a route is allowed to do, from the route itself (not from the simulation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// The executor contract.
    pub executor: Address,
    /// The token profit is measured in.
    pub profit_token: Address,
    /// The smallest acceptable profit (raw units of `profit_token`).
    pub min_profit: U256,
    /// The flash-loan source, if the route borrows.
    pub flash_source: Option<Address>,
    /// The venues the route trades on (the only other contracts allowed to call back).
    pub venues: Vec<Address>,
    /// Every ERC-20 the route touches.
    pub tokens: Vec<Address>,
}

/// One reason a route is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContainmentError {
    /// The transaction did not succeed.
    #[error("reverted: {0}")]
    Reverted(String),
    /// A token's balances cannot be measured (layout not located).
    #[error("token {0} is unmeasurable")]
    Unmeasurable(Address),
    /// A token the route touches was not measured for a holder that must be checked.
    #[error("no measurement of {token} for {holder}")]
    NotMeasured {
        /// The holder.
        holder: Address,
        /// The token.
        token: Address,
    },
    /// The lender ends with less than it started with.
    #[error("lender {lender} not repaid in {token}: delta {delta}")]
    NotRepaid {
        /// The flash source.
        lender: Address,
        /// The token.
        token: Address,
        /// Its balance change.
        delta: I256,
    },
    /// The executor lost some of a token.
    #[error("executor loses {delta} of {token}")]
    ExecutorLoss {
        /// The token.
        token: Address,
        /// Its balance change.
        delta: I256,
    },
    /// The profit is below the minimum.
    #[error("profit {profit} below minimum {min}")]
    BelowMinProfit {
        /// The measured profit.
        profit: I256,
        /// The minimum.
        min: U256,
    },
    /// The executor left an allowance behind.
    #[error("allowance of {value} on {token} left to {spender}")]
    AllowanceLeft {
        /// The token.
        token: Address,
        /// The spender.
        spender: Address,
        /// The allowance.
        value: U256,
    },
    /// A contract the route did not call called into the executor.
    #[error("unexpected call into the executor from {0}")]
    UnexpectedCaller(Address),
}

impl ContainmentError {
    /// A stable short name for metrics and the ledger.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Reverted(_) => "reverted",
            Self::Unmeasurable(_) => "unmeasurable_token",
            Self::NotMeasured { .. } => "not_measured",
            Self::NotRepaid { .. } => "flash_not_repaid",
            Self::ExecutorLoss { .. } => "executor_loss",
            Self::BelowMinProfit { .. } => "below_min_profit",
            Self::AllowanceLeft { .. } => "allowance_left",
            Self::UnexpectedCaller(_) => "unexpected_caller",
        }
    }
}

/// Checks `outcome` against `plan`; returns the measured profit, or every violation found.
///
/// # Errors
/// The list of violations (never empty).
pub fn check(plan: &RoutePlan, outcome: &SimOutcome) -> Result<I256, Vec<ContainmentError>> {
    let mut errs = Vec::new();
    match &outcome.status {
        SimStatus::Success => {}
        SimStatus::Revert(r) | SimStatus::Halt(r) => {
            errs.push(ContainmentError::Reverted(r.clone()))
        }
    }
    errs.extend(outcome.unmeasured.iter().map(|t| ContainmentError::Unmeasurable(*t)));
    let mut profit = I256::ZERO;
    for token in &plan.tokens {
        if outcome.unmeasured.contains(token) {
            continue;
        }
        match outcome.delta(plan.executor, *token) {
            None => {
                errs.push(ContainmentError::NotMeasured { holder: plan.executor, token: *token })
            }
            Some(d) if *token == plan.profit_token => {
                profit = d;
                if d < I256::ZERO {
                    errs.push(ContainmentError::ExecutorLoss { token: *token, delta: d });
                }
                if d < I256::from_raw(plan.min_profit) {
                    errs.push(ContainmentError::BelowMinProfit { profit: d, min: plan.min_profit });
                }
            }
            Some(d) if d < I256::ZERO => {
                errs.push(ContainmentError::ExecutorLoss { token: *token, delta: d });
            }
            Some(_) => {}
        }
        if let Some(lender) = plan.flash_source {
            match outcome.delta(lender, *token) {
                None => errs.push(ContainmentError::NotMeasured { holder: lender, token: *token }),
                Some(d) if d < I256::ZERO && !plan.venues.contains(&lender) => {
                    errs.push(ContainmentError::NotRepaid { lender, token: *token, delta: d });
                }
                Some(_) => {}
            }
        }
    }
    for a in &outcome.allowances {
        errs.push(ContainmentError::AllowanceLeft {
            token: a.token,
            spender: a.spender,
            value: a.value,
        });
    }
    for c in &outcome.callers {
        if Some(*c) != plan.flash_source && !plan.venues.contains(c) {
            errs.push(ContainmentError::UnexpectedCaller(*c));
        }
    }
    if errs.is_empty() { Ok(profit) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, I256, U256};

    use super::*;
    use crate::sim::{Allowance, SimOutcome, SimStatus, TokenDelta};

    const EXEC: Address = Address::repeat_byte(0xe0);
    const LENDER: Address = Address::repeat_byte(0x1e);
    const POOL: Address = Address::repeat_byte(0x90);
    const A: Address = Address::repeat_byte(0xa0);
    const B: Address = Address::repeat_byte(0xb0);

    fn plan() -> RoutePlan {
        RoutePlan {
            executor: EXEC,
            profit_token: A,
            min_profit: U256::from(10),
            flash_source: Some(LENDER),
            venues: vec![POOL],
            tokens: vec![A, B],
        }
    }

    fn outcome(exec_a: i64, exec_b: i64, lender_a: i64) -> SimOutcome {
        let d =
            |holder, token, v: i64| TokenDelta { holder, token, delta: I256::try_from(v).unwrap() };
        SimOutcome {
            status: SimStatus::Success,
            gas_used: 100_000,
            gas_price: 1,
            logs: vec![],
            deltas: vec![
                d(EXEC, A, exec_a),
                d(EXEC, B, exec_b),
                d(LENDER, A, lender_a),
                d(LENDER, B, 0),
            ],
            unmeasured: vec![],
            allowances: vec![],
            callers: vec![LENDER],
        }
    }

    #[test]
    fn a_clean_route_passes_with_its_measured_profit() {
        assert_eq!(check(&plan(), &outcome(25, 0, 5)), Ok(I256::try_from(25).unwrap()));
    }

    #[test]
    fn every_violation_is_named() {
        let kinds = |o: &SimOutcome| -> Vec<&'static str> {
            check(&plan(), o).unwrap_err().iter().map(ContainmentError::kind).collect()
        };
        assert_eq!(kinds(&outcome(5, 0, 0)), ["below_min_profit"]);
        assert_eq!(kinds(&outcome(-1, 0, 0)), ["executor_loss", "below_min_profit"]);
        assert_eq!(kinds(&outcome(25, -3, 0)), ["executor_loss"]);
        assert_eq!(kinds(&outcome(25, 0, -1)), ["flash_not_repaid"]);
        let mut o = outcome(25, 0, 0);
        o.allowances.push(Allowance { token: A, spender: POOL, value: U256::from(1) });
        o.callers.push(Address::repeat_byte(0x66));
        assert_eq!(kinds(&o), ["allowance_left", "unexpected_caller"]);
        let mut o = outcome(25, 0, 0);
        o.unmeasured.push(B);
        o.deltas.retain(|d| d.token != B);
        assert_eq!(kinds(&o), ["unmeasurable_token"]);
        let mut o = outcome(0, 0, 0);
        o.status = SimStatus::Revert("NoProfit(before 1, after 0, min 10)".into());
        assert_eq!(kinds(&o)[0], "reverted");
        let mut o = outcome(25, 0, 0);
        o.deltas.retain(|d| d.holder != LENDER);
        assert_eq!(kinds(&o), ["not_measured", "not_measured"]);
    }
}
