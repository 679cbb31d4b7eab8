//! Why the gate refused a candidate: data with a stable kind and a reason with the numbers.

use std::fmt;

use alloy::primitives::U256;

use super::{Bucket, ChainAddress};

/// A refused candidate. Each variant carries the numbers that decided it; [`Refusal::kind`] is a
/// stable snake-case label for metrics and the ledger, `Display` the human reason.
///
/// Building a refusal never allocates, except [`Refusal::Halted`] (the operator's reason, cloned
/// from the gate) and [`Refusal::Containment`] (the simulator's report).
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The manual halt or kill switch is engaged; nothing is signed until it is re-armed.
    Halted {
        /// Why it was engaged.
        reason: String,
        /// When it was engaged, unix seconds.
        since_unix: u64,
    },
    /// A field of the candidate is not a finite, non-negative number.
    InvalidCandidate {
        /// The field.
        field: &'static str,
    },
    /// The candidate's slippage assumption is above the desk cap.
    Slippage {
        /// The candidate's slippage, bps.
        slippage_bps: u32,
        /// The cap, bps.
        max_bps: u32,
    },
    /// Profit after gas, in raw profit-token units, is below the token's `min_profit`.
    MinProfitRaw {
        /// Profit after gas, raw units.
        profit_raw: U256,
        /// The minimum, raw units.
        min_raw: U256,
    },
    /// Profit after gas in USD is below `min_profit_usd`.
    MinProfitUsd {
        /// Profit after gas, USD.
        profit_usd: f64,
        /// The minimum, USD.
        min_usd: f64,
    },
    /// The gas price the transaction would pay is above the cap.
    GasPrice {
        /// The candidate's gas price, wei.
        gas_price_wei: u128,
        /// The cap, wei.
        max_wei: u128,
    },
    /// The chain's current base fee is above the cap: stand down.
    BaseFee {
        /// The base fee of the head, wei.
        base_fee_wei: u128,
        /// The cap, wei.
        max_wei: u128,
    },
    /// Realised losses since UTC midnight reached the daily cap.
    DailyLoss {
        /// Realised loss today, USD (positive).
        loss_usd: f64,
        /// The cap, USD.
        cap_usd: f64,
    },
    /// The trade would push one token's exposure above its share of NAV.
    Exposure {
        /// The token.
        token: ChainAddress,
        /// Exposure after the trade, USD.
        after_usd: f64,
        /// The cap, USD.
        cap_usd: f64,
    },
    /// The named capital bucket has no room for the notional.
    Bucket {
        /// The bucket.
        bucket: Bucket,
        /// Notional of the candidate, USD.
        notional_usd: f64,
        /// Room left in the bucket, USD.
        room_usd: f64,
    },
    /// The notional is above the per-route maximum.
    RouteNotional {
        /// Notional of the candidate, USD.
        notional_usd: f64,
        /// The cap, USD.
        cap_usd: f64,
    },
    /// The notional is above the route's current size-ramp cap.
    Ramp {
        /// Notional of the candidate, USD.
        notional_usd: f64,
        /// The route's ramp cap, USD.
        cap_usd: f64,
    },
    /// The block's total traded volume would exceed the per-block cap.
    BlockVolume {
        /// Notional of the candidate, USD.
        notional_usd: f64,
        /// Room left in this block, USD.
        room_usd: f64,
    },
    /// The block's stabilizer volume would exceed the stabilizer's per-block cap.
    StabilizerVolume {
        /// Notional of the candidate, USD.
        notional_usd: f64,
        /// Room left for the stabilizer in this block, USD.
        room_usd: f64,
    },
    /// A stabilizer trade on this pool happened fewer than MIN_BLOCKS ago.
    MinBlocks {
        /// The pool.
        pool: ChainAddress,
        /// Block of the last stabilizer trade on the pool.
        last_block: u64,
        /// The block being checked.
        block: u64,
        /// MIN_BLOCKS.
        min_blocks: u32,
    },
    /// The simulator's flash-loan containment failed (reported by the engine).
    Containment(String),
}

impl Refusal {
    /// A stable snake-case label for metrics and the ledger.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Halted { .. } => "halted",
            Self::InvalidCandidate { .. } => "invalid_candidate",
            Self::Slippage { .. } => "slippage",
            Self::MinProfitRaw { .. } => "min_profit_raw",
            Self::MinProfitUsd { .. } => "min_profit_usd",
            Self::GasPrice { .. } => "gas_price",
            Self::BaseFee { .. } => "base_fee",
            Self::DailyLoss { .. } => "daily_loss",
            Self::Exposure { .. } => "exposure",
            Self::Bucket { .. } => "bucket",
            Self::RouteNotional { .. } => "route_notional",
            Self::Ramp { .. } => "ramp",
            Self::BlockVolume { .. } => "block_volume",
            Self::StabilizerVolume { .. } => "stabilizer_volume",
            Self::MinBlocks { .. } => "min_blocks",
            Self::Containment(_) => "containment",
        }
    }

    /// For refusals that only concern size: the largest notional, USD, that this limit would
    /// allow now (the engine may resize to it and check again). `None` for every other refusal.
    pub fn allowed_notional_usd(&self) -> Option<f64> {
        match self {
            Self::Bucket { room_usd, .. }
            | Self::BlockVolume { room_usd, .. }
            | Self::StabilizerVolume { room_usd, .. } => Some(*room_usd),
            Self::RouteNotional { cap_usd, .. } | Self::Ramp { cap_usd, .. } => Some(*cap_usd),
            _ => None,
        }
    }
}

/// Wei as gwei with up to 3 decimals, for messages.
struct Gwei(u128);

impl fmt::Display for Gwei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Precision loss above 2^53 wei is irrelevant for a message.
        #[allow(clippy::cast_precision_loss, reason = "display only")]
        let g = self.0 as f64 / 1e9;
        write!(f, "{g:.3} gwei")
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Halted { reason, since_unix } => {
                write!(f, "halted since unix {since_unix}: {reason}; re-arm explicitly to trade")
            }
            Self::InvalidCandidate { field } => {
                write!(f, "candidate field `{field}` is not a finite non-negative number")
            }
            Self::Slippage { slippage_bps, max_bps } => {
                write!(f, "slippage {slippage_bps} bps above the cap of {max_bps} bps")
            }
            Self::MinProfitRaw { profit_raw, min_raw } => {
                write!(f, "profit after gas {profit_raw} raw below the minimum {min_raw} raw")
            }
            Self::MinProfitUsd { profit_usd, min_usd } => {
                write!(f, "profit after gas ${profit_usd:.2} below the minimum ${min_usd:.2}")
            }
            Self::GasPrice { gas_price_wei, max_wei } => {
                write!(f, "gas price {} above the cap of {}", Gwei(*gas_price_wei), Gwei(*max_wei))
            }
            Self::BaseFee { base_fee_wei, max_wei } => write!(
                f,
                "base fee {} above the cap of {}: standing down",
                Gwei(*base_fee_wei),
                Gwei(*max_wei)
            ),
            Self::DailyLoss { loss_usd, cap_usd } => write!(
                f,
                "realised loss today ${loss_usd:.2} reached the daily cap of ${cap_usd:.2}"
            ),
            Self::Exposure { token, after_usd, cap_usd } => write!(
                f,
                "exposure to token {token} would be ${after_usd:.2}, above the cap of \
                 ${cap_usd:.2}"
            ),
            Self::Bucket { bucket, notional_usd, room_usd } => write!(
                f,
                "notional ${notional_usd:.2} exceeds the ${room_usd:.2} left in bucket {bucket}"
            ),
            Self::RouteNotional { notional_usd, cap_usd } => {
                write!(f, "notional ${notional_usd:.2} above the per-route cap of ${cap_usd:.2}")
            }
            Self::Ramp { notional_usd, cap_usd } => write!(
                f,
                "notional ${notional_usd:.2} above the route's size-ramp cap of ${cap_usd:.2}"
            ),
            Self::BlockVolume { notional_usd, room_usd } => write!(
                f,
                "notional ${notional_usd:.2} exceeds the ${room_usd:.2} left in this block's \
                 volume cap"
            ),
            Self::StabilizerVolume { notional_usd, room_usd } => write!(
                f,
                "notional ${notional_usd:.2} exceeds the ${room_usd:.2} left in this block's \
                 stabilizer cap"
            ),
            Self::MinBlocks { pool, last_block, block, min_blocks } => write!(
                f,
                "pool {pool} had a stabilizer trade at block {last_block}; block {block} \
                 is within MIN_BLOCKS = {min_blocks}"
            ),
            Self::Containment(why) => write!(f, "containment failed: {why}"),
        }
    }
}

impl std::error::Error for Refusal {}
