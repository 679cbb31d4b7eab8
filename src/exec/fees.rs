//! EIP-1559 fees for the next block, gas limits, and the worst-case gas cost.
//!
//! The next base fee comes from the parent header through alloy's
//! [`calc_next_block_base_fee`] with the chain's
//! [`BaseFeeParams`]. The priority fee is the chain's [`FeePolicy`] priority fee, plus an optional
//! share of the simulated profit spread over the gas used. `max_fee = min(cap, 2 × next_base +
//! priority)`. When the next base fee alone is above the cap the answer is a [`FeeRefusal`]: the
//! bot stands down during a gas spike instead of overpaying. Pure, synchronous arithmetic.

use alloy::{
    consensus::BlockHeader,
    eips::eip1559::{BaseFeeParams, calc_next_block_base_fee},
    primitives::U256,
};

use crate::config::FeePolicy;

/// A chain's fee policy in wei, ready for per-block use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeParams {
    /// Cap on `maxFeePerGas`, in wei.
    pub max_fee_cap_wei: u128,
    /// Base `maxPriorityFeePerGas`, in wei.
    pub priority_fee_wei: u128,
    /// Share of the simulated profit added to the priority fee, in basis points (0–10,000).
    pub tip_share_bps: u32,
    /// The chain's EIP-1559 base-fee parameters (Ethereum's by default).
    pub base_fee_params: BaseFeeParams,
}

impl FeeParams {
    /// The policy of a chain, with Ethereum's base-fee parameters.
    pub fn from_policy(policy: &FeePolicy) -> Self {
        Self {
            max_fee_cap_wei: policy.max_fee_wei(),
            priority_fee_wei: policy.priority_fee_wei(),
            tip_share_bps: policy.tip_share_bps.min(10_000),
            base_fee_params: BaseFeeParams::ethereum(),
        }
    }

    /// The same policy with other base-fee parameters (for chains that change them).
    pub fn with_base_fee_params(self, base_fee_params: BaseFeeParams) -> Self {
        Self { base_fee_params, ..self }
    }

    /// `profit_wei × tip_share_bps / 10,000`: the share of a profit given to the block producer.
    pub fn tip_share_wei(&self, profit_wei: U256) -> U256 {
        profit_wei * U256::from(self.tip_share_bps) / U256::from(10_000u64)
    }

    /// Fees for the block after `parent`.
    ///
    /// `tip` is the simulated profit in wei and the simulated gas used; when given, the tip
    /// share of that profit is added to the priority fee, spread over the gas used.
    ///
    /// # Errors
    /// [`FeeRefusal::NoBaseFee`] for a pre-London parent, [`FeeRefusal::BaseFeeOverCap`] when
    /// the next base fee alone is above the cap.
    pub fn quote<H: BlockHeader>(
        &self,
        parent: &H,
        tip: Option<ProfitTip>,
    ) -> Result<FeeQuote, FeeRefusal> {
        let next_base = next_base_fee(parent, self.base_fee_params).ok_or(FeeRefusal::NoBaseFee)?;
        self.quote_for_base_fee(u128::from(next_base), tip)
    }

    /// Fees for a block whose base fee is `next_base_fee_wei` (already computed).
    ///
    /// # Errors
    /// [`FeeRefusal::BaseFeeOverCap`] when `next_base_fee_wei` is above the cap.
    pub fn quote_for_base_fee(
        &self,
        next_base_fee_wei: u128,
        tip: Option<ProfitTip>,
    ) -> Result<FeeQuote, FeeRefusal> {
        if next_base_fee_wei > self.max_fee_cap_wei {
            return Err(FeeRefusal::BaseFeeOverCap {
                next_base_fee_wei,
                max_fee_cap_wei: self.max_fee_cap_wei,
            });
        }
        let extra = match tip {
            Some(t) if t.gas_used > 0 => {
                let per_gas = self.tip_share_wei(t.profit_wei) / U256::from(t.gas_used);
                u128::try_from(per_gas).unwrap_or(u128::MAX)
            }
            _ => 0,
        };
        let priority = self.priority_fee_wei.saturating_add(extra);
        let max_fee =
            next_base_fee_wei.saturating_mul(2).saturating_add(priority).min(self.max_fee_cap_wei);
        Ok(FeeQuote {
            next_base_fee_wei,
            max_fee_per_gas: max_fee,
            // A priority above the max fee is refused by nodes; the cap wins.
            max_priority_fee_per_gas: priority.min(max_fee),
        })
    }
}

/// The simulated profit and gas used that a tip share is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfitTip {
    /// Simulated profit in wei (converted to the native token by the caller).
    pub profit_wei: U256,
    /// Simulated gas used.
    pub gas_used: u64,
}

/// EIP-1559 fees for one transaction in the next block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeQuote {
    /// The base fee the next block will have, in wei.
    pub next_base_fee_wei: u128,
    /// `maxFeePerGas`, in wei: `min(cap, 2 × next base fee + priority)`.
    pub max_fee_per_gas: u128,
    /// `maxPriorityFeePerGas`, in wei (never above `max_fee_per_gas`).
    pub max_priority_fee_per_gas: u128,
}

impl FeeQuote {
    /// The price per gas the next block would charge: `min(max fee, next base + priority)`.
    pub fn expected_gas_price_wei(&self) -> u128 {
        self.next_base_fee_wei
            .saturating_add(self.max_priority_fee_per_gas)
            .min(self.max_fee_per_gas)
    }

    /// Worst-case gas cost at `gas_limit`: `gas_limit × max_fee_per_gas`, in wei. Compare the
    /// profit against this before signing.
    pub fn worst_case_cost_wei(&self, gas_limit: u64) -> U256 {
        worst_case_gas_cost_wei(gas_limit, self.max_fee_per_gas)
    }

    /// Expected gas cost of `gas_used` in the next block, in wei.
    pub fn expected_cost_wei(&self, gas_used: u64) -> U256 {
        U256::from(gas_used) * U256::from(self.expected_gas_price_wei())
    }
}

/// Why no fee is offered for the next block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeeRefusal {
    /// The next base fee alone is above the policy cap: a gas spike; stand down.
    #[error("next base fee {next_base_fee_wei} wei is above the cap of {max_fee_cap_wei} wei")]
    BaseFeeOverCap {
        /// The next block's base fee, in wei.
        next_base_fee_wei: u128,
        /// The policy cap, in wei.
        max_fee_cap_wei: u128,
    },
    /// The parent header has no base fee (a pre-London chain): no EIP-1559 fee can be derived.
    #[error("the parent header has no base fee")]
    NoBaseFee,
}

/// The next block's base fee from its parent header, through alloy's formula; `None` when the
/// parent has no base fee.
pub fn next_base_fee<H: BlockHeader>(parent: &H, params: BaseFeeParams) -> Option<u64> {
    Some(calc_next_block_base_fee(
        parent.gas_used(),
        parent.gas_limit(),
        parent.base_fee_per_gas()?,
        params,
    ))
}

/// `gas_limit × max_fee_per_gas` in wei: the most a transaction can pay for gas.
pub fn worst_case_gas_cost_wei(gas_limit: u64, max_fee_per_gas: u128) -> U256 {
    U256::from(gas_limit) * U256::from(max_fee_per_gas)
}

/// Gas limit from simulated gas: `simulated × multiplier + extra`, saturating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasMargin {
    /// Multiplier in basis points (12,500 = ×1.25).
    pub multiplier_bps: u32,
    /// Constant added after the multiplier, in gas.
    pub extra_gas: u64,
}

impl Default for GasMargin {
    /// ×1.25 plus 10,000 gas.
    fn default() -> Self {
        Self { multiplier_bps: 12_500, extra_gas: 10_000 }
    }
}

impl GasMargin {
    /// The gas limit for a transaction that used `simulated_gas` in simulation (rounded up).
    pub fn gas_limit(&self, simulated_gas: u64) -> u64 {
        let scaled = (u128::from(simulated_gas) * u128::from(self.multiplier_bps)).div_ceil(10_000);
        u64::try_from(scaled).unwrap_or(u64::MAX).saturating_add(self.extra_gas)
    }
}

#[cfg(test)]
mod tests {
    use alloy::consensus::Header;

    use super::*;

    const GWEI: u128 = 1_000_000_000;

    fn params() -> FeeParams {
        FeeParams::from_policy(&FeePolicy {
            max_fee_gwei: 50.0,
            priority_fee_gwei: 1.5,
            tip_share_bps: 1_000,
            native_usd: 2_500.0,
        })
    }

    fn parent(base_gwei: u128, gas_used: u64) -> Header {
        Header {
            gas_limit: 30_000_000,
            gas_used,
            base_fee_per_gas: Some(u64::try_from(base_gwei * GWEI).unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn policy_in_wei() {
        let p = params();
        assert_eq!(p.max_fee_cap_wei, 50 * GWEI);
        assert_eq!(p.priority_fee_wei, 1_500_000_000);
        assert_eq!(p.tip_share_bps, 1_000);
    }

    #[test]
    fn next_base_fee_follows_eip1559() {
        let eth = BaseFeeParams::ethereum();
        // At target (half full) the base fee is unchanged; full: +12.5%; empty: −12.5%.
        assert_eq!(next_base_fee(&parent(10, 15_000_000), eth), Some(10_000_000_000));
        assert_eq!(next_base_fee(&parent(10, 30_000_000), eth), Some(11_250_000_000));
        assert_eq!(next_base_fee(&parent(10, 0), eth), Some(8_750_000_000));
        let pre_london = Header { base_fee_per_gas: None, ..parent(10, 0) };
        assert_eq!(next_base_fee(&pre_london, eth), None);
        assert_eq!(params().quote(&pre_london, None), Err(FeeRefusal::NoBaseFee));
    }

    #[test]
    fn max_fee_is_twice_base_plus_priority_under_the_cap() {
        let q = params().quote(&parent(10, 15_000_000), None).unwrap();
        assert_eq!(q.next_base_fee_wei, 10 * GWEI);
        assert_eq!(q.max_priority_fee_per_gas, 1_500_000_000);
        assert_eq!(q.max_fee_per_gas, 21_500_000_000);
        assert_eq!(q.expected_gas_price_wei(), 11_500_000_000);
        assert_eq!(q.worst_case_cost_wei(100_000), U256::from(100_000u128 * 21_500_000_000));
        assert_eq!(q.expected_cost_wei(80_000), U256::from(80_000u128 * 11_500_000_000));
    }

    #[test]
    fn cap_limits_max_fee_and_priority() {
        // Next base 40 gwei: 2×40 + 1.5 = 81.5 > 50 → capped at 50.
        let q = params().quote_for_base_fee(40 * GWEI, None).unwrap();
        assert_eq!(q.max_fee_per_gas, 50 * GWEI);
        assert_eq!(q.max_priority_fee_per_gas, 1_500_000_000);
        // At the cap exactly: max fee = cap, priority squeezed to what is left in practice.
        let q = params().quote_for_base_fee(50 * GWEI, None).unwrap();
        assert_eq!(q.max_fee_per_gas, 50 * GWEI);
        assert_eq!(q.expected_gas_price_wei(), 50 * GWEI);
    }

    #[test]
    fn gas_spike_is_refused() {
        // A ×10 spike (10 → 100 gwei) against a 50 gwei cap: stand down; the refusal names both.
        let refusal = params().quote(&parent(100, 15_000_000), None).unwrap_err();
        assert_eq!(
            refusal,
            FeeRefusal::BaseFeeOverCap {
                next_base_fee_wei: 100 * GWEI,
                max_fee_cap_wei: 50 * GWEI
            }
        );
        // Just above the cap after the +12.5% of a full parent block.
        let refusal = params().quote(&parent(45, 30_000_000), None).unwrap_err();
        assert!(matches!(refusal, FeeRefusal::BaseFeeOverCap { next_base_fee_wei, .. }
            if next_base_fee_wei == 50_625_000_000));
        assert!(refusal.to_string().contains("50625000000"));
    }

    #[test]
    fn tip_share_adds_to_priority() {
        // 10% of 0.01 ETH over 200,000 gas = 5 gwei per gas on top of 1.5.
        let tip =
            ProfitTip { profit_wei: U256::from(10_000_000_000_000_000u128), gas_used: 200_000 };
        assert_eq!(params().tip_share_wei(tip.profit_wei), U256::from(1_000_000_000_000_000u128));
        let q = params().quote_for_base_fee(10 * GWEI, Some(tip)).unwrap();
        assert_eq!(q.max_priority_fee_per_gas, 6_500_000_000);
        assert_eq!(q.max_fee_per_gas, 26_500_000_000);
        // A huge profit cannot push the priority fee above the cap.
        let rich = ProfitTip { profit_wei: U256::MAX, gas_used: 1 };
        let q = params().quote_for_base_fee(10 * GWEI, Some(rich)).unwrap();
        assert_eq!(q.max_fee_per_gas, 50 * GWEI);
        assert_eq!(q.max_priority_fee_per_gas, 50 * GWEI);
        // Zero gas used: no division, no tip.
        let none = ProfitTip { profit_wei: U256::from(1u64), gas_used: 0 };
        let q = params().quote_for_base_fee(10 * GWEI, Some(none)).unwrap();
        assert_eq!(q.max_priority_fee_per_gas, 1_500_000_000);
    }

    #[test]
    fn gas_limit_margin() {
        let m = GasMargin::default();
        assert_eq!(m.gas_limit(100_000), 135_000);
        assert_eq!(m.gas_limit(1), 10_002, "rounded up");
        assert_eq!(m.gas_limit(0), 10_000);
        assert_eq!(m.gas_limit(u64::MAX), u64::MAX, "saturates");
        let exact = GasMargin { multiplier_bps: 10_000, extra_gas: 0 };
        assert_eq!(exact.gas_limit(21_000), 21_000);
    }

    #[test]
    fn worst_case_cost_does_not_overflow() {
        assert_eq!(
            worst_case_gas_cost_wei(u64::MAX, u128::MAX),
            U256::from(u64::MAX) * U256::from(u128::MAX)
        );
    }
}
