//! `[strategies.*]`: what the bot looks for. Every section and key is optional; a strategy that
//! is enabled must reference declared chains, tokens and venues.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use serde::Deserialize;

use super::de;

/// All strategies (`[strategies]`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategiesConfig {
    /// Stablecoin depeg (`[strategies.depeg]`).
    pub depeg: DepegConfig,
    /// Anchor triangle TokenA → anchor → TokenB → TokenA (`[strategies.triangle]`).
    pub triangle: TriangleConfig,
    /// Proportional stabilizer on sustained deviation (`[strategies.stabilizer]`).
    pub stabilizer: StabilizerConfig,
    /// Backrun of pending transactions that move a tracked pool (`[strategies.backrun]`).
    pub backrun: BackrunConfig,
    /// Cross-chain spread (`[strategies.cross_chain]`); absent means not configured.
    pub cross_chain: Option<CrossChainConfig>,
}

/// Stablecoin depeg strategy (`[strategies.depeg]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DepegConfig {
    /// Default `true`; with no `pegs` it watches nothing.
    pub enabled: bool,
    /// Severity bands of the deviation from peg (`[strategies.depeg.severity]`).
    pub severity: SeverityThresholds,
    /// The stables watched and where their peg comes from (`[[strategies.depeg.pegs]]`).
    pub pegs: Vec<PegConfig>,
}

impl Default for DepegConfig {
    fn default() -> Self {
        Self { enabled: true, severity: SeverityThresholds::default(), pegs: Vec::new() }
    }
}

/// Lower bounds of the depeg severity bands in basis points, strictly increasing. Defaults from
/// seed 004: minor 0.05–0.2% (5 bps), moderate 0.2–1% (20), severe > 1% (100), extreme > 5% (500).
/// A deviation below `minor_bps` is noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityThresholds {
    /// Start of the minor band (default 5 bps = 0.05%).
    pub minor_bps: u32,
    /// Start of the moderate band (default 20 bps = 0.2%).
    pub moderate_bps: u32,
    /// Start of the severe band (default 100 bps = 1%).
    pub severe_bps: u32,
    /// Start of the extreme band (default 500 bps = 5%).
    pub extreme_bps: u32,
}

impl Default for SeverityThresholds {
    fn default() -> Self {
        Self { minor_bps: 5, moderate_bps: 20, severe_bps: 100, extreme_bps: 500 }
    }
}

impl SeverityThresholds {
    /// The band of a deviation of `deviation_bps` (absolute), or `None` below `minor_bps`.
    pub fn classify(&self, deviation_bps: u32) -> Option<Severity> {
        if deviation_bps >= self.extreme_bps {
            Some(Severity::Extreme)
        } else if deviation_bps >= self.severe_bps {
            Some(Severity::Severe)
        } else if deviation_bps >= self.moderate_bps {
            Some(Severity::Moderate)
        } else if deviation_bps >= self.minor_bps {
            Some(Severity::Minor)
        } else {
            None
        }
    }
}

/// A depeg severity band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// 0.05–0.2% by default.
    Minor,
    /// 0.2–1%.
    Moderate,
    /// Above 1%.
    Severe,
    /// Above 5%.
    Extreme,
}

impl Severity {
    /// A stable name for logs and the ledger.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Minor => "minor",
            Self::Moderate => "moderate",
            Self::Severe => "severe",
            Self::Extreme => "extreme",
        }
    }
}

/// One watched peg (`[[strategies.depeg.pegs]]`): `token` should trade 1:1 against `peg_token`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PegConfig {
    /// Chain name.
    pub chain: String,
    /// The stable watched (`cUSDT`), declared on `chain`.
    pub token: String,
    /// What it is pegged to 1:1 (`USDT`), declared on `chain`.
    pub peg_token: String,
    /// Where the peg price comes from.
    pub reference: PegReference,
    /// `reference = "vault"`: name of the vault venue on `chain` (atomic redeem leg).
    #[serde(default)]
    pub vault: Option<String>,
    /// `reference = "oracle"`: the price feed contract.
    #[serde(default, deserialize_with = "de::opt_address")]
    pub oracle: Option<Address>,
}

/// Source of a peg price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PegReference {
    /// 1:1 mint/redeem at a reserve vault (atomic when the vault is not paused).
    Vault,
    /// An on-chain price feed.
    Oracle,
    /// The depth-weighted price across the other declared venues of the pair.
    Venues,
}

/// Anchor triangle (`[strategies.triangle]`), seed 000: TokenA → anchor → TokenB → TokenA over
/// the N anchor pools.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriangleConfig {
    /// Default `false`.
    pub enabled: bool,
    /// Chain name; required when enabled.
    pub chain: Option<String>,
    /// Anchor symbol. Default `XAU`.
    pub anchor: String,
    /// Tokens anchored to it (at least two, excluding the anchor), declared on `chain`.
    pub tokens: Vec<String>,
}

impl Default for TriangleConfig {
    fn default() -> Self {
        Self { enabled: false, chain: None, anchor: "XAU".to_owned(), tokens: Vec::new() }
    }
}

/// Stabilizer (`[strategies.stabilizer]`), seed 000 §6/§10: on a deviation sustained above θ
/// (see `risk.sustained_blocks`), trade s = k × deviation, capped per block, at most once per
/// `min_blocks` per pool, and only when the route pays.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StabilizerConfig {
    /// Default `false`.
    pub enabled: bool,
    /// θ: the deviation that triggers it, in basis points (> 0). Default 10 (the ±0.10% target).
    pub theta_bps: u32,
    /// k: trade size in USD per basis point of deviation (> 0). Default 100.
    pub k: f64,
    /// Cap on stabilizer volume per block, USD (> 0, ≤ `risk.per_block_volume_cap_usd`).
    /// Default 10,000.
    pub per_block_cap_usd: f64,
    /// Blocks between two stabilizer trades on one pool (≥ `risk.min_blocks`). Default 3.
    pub min_blocks: u32,
    /// The pools it may trade; empty means every DODO pool.
    pub pools: Vec<VenueRef>,
}

impl Default for StabilizerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            theta_bps: 10,
            k: 100.0,
            per_block_cap_usd: 10_000.0,
            min_blocks: 3,
            pools: Vec::new(),
        }
    }
}

/// A venue on a named chain (`{ chain = "chain138", venue = "XAU/cUSDT" }`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueRef {
    /// Chain name.
    pub chain: String,
    /// Venue name on that chain.
    pub venue: String,
}

/// Backrun (`[strategies.backrun]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackrunConfig {
    /// Default `false`.
    pub enabled: bool,
    /// Backrun only where the victim and the backrun go in one bundle (`flashbots-relay`
    /// chains). Default `true`: on public-RPC chains ordering is not guaranteed.
    pub bundle_only: bool,
    /// Ignore pending transactions first seen longer ago than this, ms (> 0). Default 3,000.
    pub max_pending_age_ms: u64,
    /// Pending transactions simulated per block at most (> 0). Default 256.
    pub max_pending_per_block: u32,
}

impl Default for BackrunConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bundle_only: true,
            max_pending_age_ms: 3_000,
            max_pending_per_block: 256,
        }
    }
}

/// Cross-chain spread (`[strategies.cross_chain]`), seed 000 layer 3: trade both legs at once
/// from inventory held on each chain, rebalance through the bridge when inventory drifts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrossChainConfig {
    /// Default `false`.
    pub enabled: bool,
    /// The two chain names; required (exactly two, distinct) when enabled.
    pub chains: Vec<String>,
    /// Minimum spread after fees, gas and bridge cost, basis points (> 0). Default 20.
    pub min_spread_bps: u32,
    /// Inventory targets per chain and token (`[[strategies.cross_chain.inventory]]`).
    pub inventory: Vec<InventoryTarget>,
    /// Rebalance when a holding drifts more than this % from its target (0–100]. Default 20.
    pub skew_threshold_pct: f64,
    /// Cap on value in flight through bridges, USD (> 0). Default 100,000.
    pub max_in_flight_usd: f64,
    /// Expected bridge transfer time, seconds (> 0); transfers older than 3× are flagged.
    /// Default 600.
    pub bridge_latency_secs: u64,
    /// The bridge venue used to rebalance; optional.
    pub bridge: Option<VenueRef>,
    /// Margin for the time a position is open (both legs in flight, inventory to bring back),
    /// basis points of the notional, charged like a fee in sizing. Default 5.
    pub risk_margin_bps: u32,
    /// What to do when one leg lands and the other does not. Default `hold`.
    pub on_leg_failure: LegFailurePolicy,
    /// With `unwind`: the largest loss accepted to unwind the landed leg, bps of its input.
    /// Default 100.
    pub unwind_max_loss_bps: u32,
    /// The same asset under different symbols (`[strategies.cross_chain.assets]`): a symbol
    /// declared on one of the two chains = the symbol it is matched by on the other (for
    /// example `AUSDC = "USDC"`). Pairs, inventory and rebalancing use the second name. Default
    /// empty: symbols match as declared.
    pub assets: BTreeMap<String, String>,
}

/// What the cross-chain strategy does when one leg lands and the other does not (seed 003: one-way
/// risk only; degrade to a safe holding state; never chase the failed leg).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegFailurePolicy {
    /// Keep the landed leg's inventory as an open position and stop trading the pair until it is
    /// closed by an operator or offset by rebalancing.
    Hold,
    /// Trade the landed leg back on its own chain at once, within `unwind_max_loss_bps`.
    Unwind,
}

impl Default for CrossChainConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            chains: Vec::new(),
            min_spread_bps: 20,
            inventory: Vec::new(),
            skew_threshold_pct: 20.0,
            max_in_flight_usd: 100_000.0,
            bridge_latency_secs: 600,
            bridge: None,
            risk_margin_bps: 5,
            on_leg_failure: LegFailurePolicy::Hold,
            unwind_max_loss_bps: 100,
            assets: BTreeMap::new(),
        }
    }
}

/// Inventory the cross-chain strategy keeps on one chain (`[[strategies.cross_chain.inventory]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryTarget {
    /// Chain name (one of `cross_chain.chains`).
    pub chain: String,
    /// Token symbol declared on that chain.
    pub token: String,
    /// Target holding, USD (> 0).
    pub target_usd: f64,
}
