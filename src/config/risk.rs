//! `[risk]`: containment and desk limits (seeds 000 and 003). Every limit must be positive;
//! zero or negative limits are refused rather than read as "off".

use std::collections::BTreeMap;
use std::fmt;

use alloy::primitives::U256;
use serde::{Deserialize, Deserializer, de};

/// Desk risk limits (`[risk]`). Only `nav_usd` is required.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskConfig {
    /// Net asset value under management, USD (> 0); the base of every percentage below.
    pub nav_usd: f64,
    /// Slippage tolerance, basis points (1–10,000): a minimum out on every hop and a minimum
    /// profit on the whole route. Default 30.
    #[serde(default = "defaults::max_slippage_bps")]
    pub max_slippage_bps: u32,
    /// Minimum profit per profit token in raw units (`cUSDT = 5_000_000` is 5 cUSDT at 6
    /// decimals; a string for amounts above 2^63), keyed by a declared symbol. Enforced on chain
    /// by the executor (`profit >= minProfit`). Tokens not listed use `min_profit_usd`.
    #[serde(default)]
    pub min_profit: BTreeMap<String, RawAmount>,
    /// Minimum profit, USD (> 0), for profit tokens without a `min_profit` entry. Default 5.
    #[serde(default = "defaults::min_profit_usd")]
    pub min_profit_usd: f64,
    /// Stand down while the base fee exceeds this, gwei (> 0). Default 100.
    #[serde(default = "defaults::max_gas_price_gwei")]
    pub max_gas_price_gwei: f64,
    /// Largest exposure to one token, % of NAV (0–100]. Default 25.
    #[serde(default = "defaults::exposure_per_token_pct")]
    pub exposure_per_token_pct: f64,
    /// Capital buckets A–E, % of NAV (`[risk.buckets]`).
    #[serde(default)]
    pub buckets: CapitalBuckets,
    /// Largest notional of one route, USD (> 0). Default 25,000.
    #[serde(default = "defaults::max_notional_per_route_usd")]
    pub max_notional_per_route_usd: f64,
    /// Realised loss in a UTC day that halts trading, USD (> 0). Default 2,500.
    #[serde(default = "defaults::daily_loss_cap_usd")]
    pub daily_loss_cap_usd: f64,
    /// Consecutive reverts or misses that trip the kill switch (≥ 1). Default 3.
    #[serde(default = "defaults::pause_after_consecutive_failures")]
    pub pause_after_consecutive_failures: u32,
    /// N: window of blocks over which a deviation must be sustained (time-weighted) before the
    /// bot acts on it; never a single-block spike (≥ 1). Default 5.
    #[serde(default = "defaults::sustained_blocks")]
    pub sustained_blocks: u32,
    /// m: at least this many of the N samples must exceed the threshold (1 ≤ m ≤ N). Default 3.
    #[serde(default = "defaults::sustained_min_samples")]
    pub sustained_min_samples: u32,
    /// MIN_BLOCKS: blocks between two trades on one pool (≥ 1). Default 3.
    #[serde(default = "defaults::min_blocks")]
    pub min_blocks: u32,
    /// Total volume the bot trades in one block, USD (> 0). Default 10,000.
    #[serde(default = "defaults::per_block_volume_cap_usd")]
    pub per_block_volume_cap_usd: f64,
    /// Size ramp for new routes (`[risk.ramp]`).
    #[serde(default)]
    pub ramp: SizeRamp,
}

mod defaults {
    pub(super) fn max_slippage_bps() -> u32 {
        30
    }
    pub(super) fn min_profit_usd() -> f64 {
        5.0
    }
    pub(super) fn max_gas_price_gwei() -> f64 {
        100.0
    }
    pub(super) fn exposure_per_token_pct() -> f64 {
        25.0
    }
    pub(super) fn max_notional_per_route_usd() -> f64 {
        25_000.0
    }
    pub(super) fn daily_loss_cap_usd() -> f64 {
        2_500.0
    }
    pub(super) fn pause_after_consecutive_failures() -> u32 {
        3
    }
    pub(super) fn sustained_blocks() -> u32 {
        5
    }
    pub(super) fn sustained_min_samples() -> u32 {
        3
    }
    pub(super) fn min_blocks() -> u32 {
        3
    }
    pub(super) fn per_block_volume_cap_usd() -> f64 {
        10_000.0
    }
}

impl RiskConfig {
    /// The limits with every default and the given NAV.
    pub fn with_nav(nav_usd: f64) -> Self {
        Self {
            nav_usd,
            max_slippage_bps: defaults::max_slippage_bps(),
            min_profit: BTreeMap::new(),
            min_profit_usd: defaults::min_profit_usd(),
            max_gas_price_gwei: defaults::max_gas_price_gwei(),
            exposure_per_token_pct: defaults::exposure_per_token_pct(),
            buckets: CapitalBuckets::default(),
            max_notional_per_route_usd: defaults::max_notional_per_route_usd(),
            daily_loss_cap_usd: defaults::daily_loss_cap_usd(),
            pause_after_consecutive_failures: defaults::pause_after_consecutive_failures(),
            sustained_blocks: defaults::sustained_blocks(),
            sustained_min_samples: defaults::sustained_min_samples(),
            min_blocks: defaults::min_blocks(),
            per_block_volume_cap_usd: defaults::per_block_volume_cap_usd(),
            ramp: SizeRamp::default(),
        }
    }
}

/// Capital buckets of seed 000 §13, each a % of NAV (0–100), summing to at most 100.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapitalBuckets {
    /// Bucket A, public PMM liquidity. Default 30.
    pub a_public_pmm_pct: f64,
    /// Bucket B, private stabilization. Default 25.
    pub b_stabilization_pct: f64,
    /// Bucket C, flash-loan liquidity (own capital used instead of a flash loan). Default 15.
    pub c_flash_pct: f64,
    /// Bucket D, cross-chain buffer (inventory on each chain and in flight). Default 20.
    pub d_cross_chain_pct: f64,
    /// Bucket E, long-term vault reserves (never traded). Default 10.
    pub e_reserve_pct: f64,
}

impl Default for CapitalBuckets {
    fn default() -> Self {
        Self {
            a_public_pmm_pct: 30.0,
            b_stabilization_pct: 25.0,
            c_flash_pct: 15.0,
            d_cross_chain_pct: 20.0,
            e_reserve_pct: 10.0,
        }
    }
}

impl CapitalBuckets {
    /// The five buckets with their TOML keys, A to E.
    pub fn as_array(&self) -> [(&'static str, f64); 5] {
        [
            ("a_public_pmm_pct", self.a_public_pmm_pct),
            ("b_stabilization_pct", self.b_stabilization_pct),
            ("c_flash_pct", self.c_flash_pct),
            ("d_cross_chain_pct", self.d_cross_chain_pct),
            ("e_reserve_pct", self.e_reserve_pct),
        ]
    }

    /// Sum of the buckets, %.
    pub fn total_pct(&self) -> f64 {
        self.as_array().iter().map(|(_, v)| v).sum()
    }
}

/// Size ramp for routes the bot has not traded before (seed 003: $50k → $250k → $1M+).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SizeRamp {
    /// Notional cap of a new route, USD (> 0, ≤ `max_notional_per_route_usd`). Default 1,000.
    pub initial_notional_usd: f64,
    /// Multiply the cap by this after `clean_fills_to_grow` clean fills (> 1). Default 5.
    pub growth_factor: f64,
    /// Clean fills (included, profitable as simulated) before the cap grows (≥ 1). Default 3.
    pub clean_fills_to_grow: u32,
}

impl Default for SizeRamp {
    fn default() -> Self {
        Self { initial_notional_usd: 1_000.0, growth_factor: 5.0, clean_fills_to_grow: 3 }
    }
}

/// An amount in a token's raw units (wei-like integer). In TOML, a non-negative integer or, for
/// amounts above 2^63, a decimal string (`"25000000000000000000"`); `_` separators allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RawAmount(pub U256);

impl fmt::Display for RawAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

const RAW_AMOUNT_EXPECTED: &str =
    "a non-negative integer in raw token units, or a decimal string for amounts above 2^63";

impl<'de> Deserialize<'de> for RawAmount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = RawAmount;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(RAW_AMOUNT_EXPECTED)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawAmount, E> {
                u64::try_from(v).map(|v| RawAmount(U256::from(v))).map_err(|_| {
                    E::custom(format_args!(
                        "out of range: expected {RAW_AMOUNT_EXPECTED}, found a negative integer"
                    ))
                })
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawAmount, E> {
                Ok(RawAmount(U256::from(v)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawAmount, E> {
                let digits: String = s.chars().filter(|c| *c != '_').collect();
                if digits.is_empty()
                    || digits.len() > 78
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(E::custom(format_args!("expected {RAW_AMOUNT_EXPECTED}")));
                }
                U256::from_str_radix(&digits, 10)
                    .map(RawAmount)
                    .map_err(|_| E::custom("amount does not fit in 256 bits"))
            }
        }
        d.deserialize_any(Visitor)
    }
}
