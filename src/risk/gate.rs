//! The desk-limit gate and the book it keeps.

use std::collections::HashMap;
use std::fmt;

use alloy::primitives::U256;

use super::{
    BookState, Bucket, Candidate, ChainAddress, Halt, HaltError, HaltInfo, Refusal, RouteKey,
    StrategyKind,
};
use crate::config::{ChainConfig, RiskConfig, StabilizerConfig};

const SECS_PER_DAY: u64 = 86_400;

/// The notional cap that bound an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotionalLimit {
    /// `max_notional_per_route_usd`.
    Route,
    /// The route's size ramp.
    Ramp,
    /// Room left in the candidate's capital bucket.
    Bucket,
    /// Room left in this block's volume cap.
    BlockVolume,
    /// Room left in this block's stabilizer cap.
    StabilizerVolume,
}

impl NotionalLimit {
    /// A stable snake-case label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::Ramp => "ramp",
            Self::Bucket => "bucket",
            Self::BlockVolume => "block_volume",
            Self::StabilizerVolume => "stabilizer_volume",
        }
    }
}

impl fmt::Display for NotionalLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approved candidate: the largest notional every cap allows now, and which cap binds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Approval {
    /// Largest notional allowed, USD (≥ the candidate's notional).
    pub max_notional_usd: f64,
    /// The cap that sets it.
    pub binding: NotionalLimit,
}

/// A kill-switch trip reported by a `record_*` call: the halt is now engaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trip {
    /// N consecutive reverts or misses.
    ConsecutiveFailures {
        /// The run of failures.
        count: u32,
    },
    /// The realised loss today reached the daily cap.
    DailyLoss {
        /// Realised loss today, USD.
        loss_usd: f64,
        /// The cap, USD.
        cap_usd: f64,
    },
}

impl fmt::Display for Trip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConsecutiveFailures { count } => {
                write!(f, "kill switch: {count} consecutive reverts or misses")
            }
            Self::DailyLoss { loss_usd, cap_usd } => write!(
                f,
                "kill switch: realised loss today ${loss_usd:.2} reached the daily cap of ${cap_usd:.2}"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Ramp {
    cap_usd: f64,
    clean_fills: u32,
}

/// The desk limits and the book they need. Owned by the engine thread; every method is
/// synchronous and reads no clock.
#[derive(Debug)]
pub struct RiskGate {
    cfg: RiskConfig,
    max_gas_wei: u128,
    stabilizer_min_blocks: u32,
    stabilizer_block_cap_usd: f64,
    min_profit_raw: HashMap<ChainAddress, U256>,
    halt: Halt,
    // The book.
    consecutive_failures: u32,
    loss_day: u64,
    loss_today_usd: f64,
    ramps: HashMap<RouteKey, Ramp>,
    volume_block: u64,
    volume_usd: f64,
    stabilizer_volume_usd: f64,
    last_stabilizer_trade: HashMap<ChainAddress, u64>,
}

/// Gwei to wei, rounded; negative and NaN give 0, huge values saturate.
fn gwei_to_wei(gwei: f64) -> u128 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "saturating")]
    let wei = (gwei * 1e9).round().max(0.0) as u128;
    wei
}

impl RiskGate {
    /// A gate with the `[risk]` limits, the stabilizer's MIN_BLOCKS and per-block cap, the
    /// `min_profit` symbols resolved on every chain that declares them, and `halt` (usually
    /// [`Halt::load`] of `engine.halt_file`).
    pub fn new(
        risk: &RiskConfig,
        stabilizer: &StabilizerConfig,
        chains: &[ChainConfig],
        halt: Halt,
    ) -> Self {
        let mut min_profit_raw = HashMap::new();
        for chain in chains {
            for (symbol, raw) in &risk.min_profit {
                if let Some(t) = chain.token(symbol) {
                    min_profit_raw.insert(ChainAddress::new(chain.chain_id, t.address), raw.0);
                }
            }
        }
        Self {
            max_gas_wei: gwei_to_wei(risk.max_gas_price_gwei),
            stabilizer_min_blocks: stabilizer.min_blocks.max(risk.min_blocks),
            stabilizer_block_cap_usd: stabilizer.per_block_cap_usd,
            min_profit_raw,
            halt,
            cfg: risk.clone(),
            consecutive_failures: 0,
            loss_day: 0,
            loss_today_usd: 0.0,
            ramps: HashMap::new(),
            volume_block: 0,
            volume_usd: 0.0,
            stabilizer_volume_usd: 0.0,
            last_stabilizer_trade: HashMap::new(),
        }
    }

    /// Replaces the limits with `risk` and the stabilizer's (already validated), keeping the book:
    /// the halt, consecutive failures, today's loss, the ramps, this block's volume and the last
    /// stabilizer trades. Returns a one-line description of what changed, for the log.
    pub fn reconfigure(
        &mut self,
        risk: &RiskConfig,
        stabilizer: &StabilizerConfig,
        chains: &[ChainConfig],
    ) -> String {
        let old = std::mem::replace(&mut self.cfg, risk.clone());
        let mut min_profit_raw = HashMap::new();
        for chain in chains {
            for (symbol, raw) in &risk.min_profit {
                if let Some(t) = chain.token(symbol) {
                    min_profit_raw.insert(ChainAddress::new(chain.chain_id, t.address), raw.0);
                }
            }
        }
        self.min_profit_raw = min_profit_raw;
        self.max_gas_wei = gwei_to_wei(risk.max_gas_price_gwei);
        self.stabilizer_min_blocks = stabilizer.min_blocks.max(risk.min_blocks);
        self.stabilizer_block_cap_usd = stabilizer.per_block_cap_usd;
        if old == *risk { "unchanged".to_owned() } else { format!("{old:?} -> {risk:?}") }
    }

    /// Sets the raw minimum profit of `token` (overrides the `min_profit` entry, if any).
    pub fn set_min_profit_raw(&mut self, token: ChainAddress, raw: U256) {
        self.min_profit_raw.insert(token, raw);
    }

    /// The limits in force.
    pub const fn config(&self) -> &RiskConfig {
        &self.cfg
    }

    /// Checks `c` against every desk limit at `book`.
    ///
    /// # Errors
    /// The first limit `c` breaks, as a [`Refusal`] (an outcome, not a fault).
    pub fn check(&self, c: &Candidate, book: &BookState) -> Result<Approval, Refusal> {
        validate(c)?;
        if let Some(h) = self.halt.info() {
            return Err(Refusal::Halted {
                reason: h.reason.clone(),
                since_unix: h.engaged_at_unix,
            });
        }
        let loss = self.loss_today_usd(book.unix_time);
        if loss >= self.cfg.daily_loss_cap_usd {
            return Err(Refusal::DailyLoss {
                loss_usd: loss,
                cap_usd: self.cfg.daily_loss_cap_usd,
            });
        }
        if book.base_fee_wei > self.max_gas_wei {
            return Err(Refusal::BaseFee {
                base_fee_wei: book.base_fee_wei,
                max_wei: self.max_gas_wei,
            });
        }
        if c.gas_price_wei > self.max_gas_wei {
            return Err(Refusal::GasPrice {
                gas_price_wei: c.gas_price_wei,
                max_wei: self.max_gas_wei,
            });
        }
        if c.slippage_bps > self.cfg.max_slippage_bps {
            return Err(Refusal::Slippage {
                slippage_bps: c.slippage_bps,
                max_bps: self.cfg.max_slippage_bps,
            });
        }
        self.check_profit(c)?;
        self.check_min_blocks(c, book.block)?;
        self.check_exposure(c, book)?;
        let (cap, binding) = self.cap(c, book);
        if c.notional_usd > cap {
            let (notional_usd, cap_usd, room_usd) = (c.notional_usd, cap, cap);
            return Err(match binding {
                NotionalLimit::Route => Refusal::RouteNotional { notional_usd, cap_usd },
                NotionalLimit::Ramp => Refusal::Ramp { notional_usd, cap_usd },
                NotionalLimit::Bucket => {
                    Refusal::Bucket { bucket: c.bucket, notional_usd, room_usd }
                }
                NotionalLimit::BlockVolume => Refusal::BlockVolume { notional_usd, room_usd },
                NotionalLimit::StabilizerVolume => {
                    Refusal::StabilizerVolume { notional_usd, room_usd }
                }
            });
        }
        Ok(Approval { max_notional_usd: cap, binding })
    }

    /// The largest notional, USD, the caps allow for `c`'s route, bucket and strategy at `book`
    /// (its own notional is ignored), and which cap binds. Call before sizing.
    pub fn notional_cap(&self, c: &Candidate, book: &BookState) -> Approval {
        let (max_notional_usd, binding) = self.cap(c, book);
        Approval { max_notional_usd, binding }
    }

    fn cap(&self, c: &Candidate, book: &BookState) -> (f64, NotionalLimit) {
        let nav = self.cfg.nav_usd;
        let bucket_budget =
            if c.bucket == Bucket::E { 0.0 } else { nav * c.bucket.pct(&self.cfg.buckets) / 100.0 };
        let in_use = book.bucket_in_use_usd[c.bucket.index()];
        let (volume, stab_volume) = self.volume_at(book.block);
        let mut caps = [
            (self.cfg.max_notional_per_route_usd, NotionalLimit::Route),
            (self.ramp_cap_usd(c.route), NotionalLimit::Ramp),
            (bucket_budget - finite_or_zero(in_use), NotionalLimit::Bucket),
            (self.cfg.per_block_volume_cap_usd - volume, NotionalLimit::BlockVolume),
            (f64::INFINITY, NotionalLimit::StabilizerVolume),
        ];
        if c.strategy == StrategyKind::Stabilizer {
            caps[4].0 = self.stabilizer_block_cap_usd - stab_volume;
        }
        // First minimum wins ties, so the order above is the reporting priority.
        let (cap, binding) =
            caps.into_iter().fold((f64::INFINITY, NotionalLimit::Route), |acc, x| {
                if x.0 < acc.0 { x } else { acc }
            });
        (cap.max(0.0), binding)
    }

    fn check_profit(&self, c: &Candidate) -> Result<(), Refusal> {
        if let Some(min_raw) = self.min_profit_raw.get(&c.profit_token) {
            if c.profit_raw < *min_raw {
                return Err(Refusal::MinProfitRaw { profit_raw: c.profit_raw, min_raw: *min_raw });
            }
        } else if c.profit_usd < self.cfg.min_profit_usd {
            return Err(Refusal::MinProfitUsd {
                profit_usd: c.profit_usd,
                min_usd: self.cfg.min_profit_usd,
            });
        }
        Ok(())
    }

    fn check_min_blocks(&self, c: &Candidate, block: u64) -> Result<(), Refusal> {
        if c.strategy != StrategyKind::Stabilizer {
            return Ok(());
        }
        for pool in &c.pools {
            if let Some(&last) = self.last_stabilizer_trade.get(pool)
                && block < last.saturating_add(u64::from(self.stabilizer_min_blocks))
            {
                return Err(Refusal::MinBlocks {
                    pool: *pool,
                    last_block: last,
                    block,
                    min_blocks: self.stabilizer_min_blocks,
                });
            }
        }
        Ok(())
    }

    fn check_exposure(&self, c: &Candidate, book: &BookState) -> Result<(), Refusal> {
        let cap_usd = self.cfg.nav_usd * self.cfg.exposure_per_token_pct / 100.0;
        for (token, change) in &c.exposure_change_usd {
            if *change <= 0.0 {
                continue;
            }
            let now = book.exposure_usd.get(token).copied().map_or(0.0, finite_or_zero);
            let after_usd = now + change;
            if after_usd > cap_usd {
                return Err(Refusal::Exposure { token: *token, after_usd, cap_usd });
            }
        }
        Ok(())
    }

    /// Volume and stabilizer volume already submitted for `block`.
    fn volume_at(&self, block: u64) -> (f64, f64) {
        if block == self.volume_block {
            (self.volume_usd, self.stabilizer_volume_usd)
        } else {
            (0.0, 0.0)
        }
    }

    /// The size-ramp cap of `route`, USD.
    pub fn ramp_cap_usd(&self, route: RouteKey) -> f64 {
        self.ramps.get(&route).map_or_else(|| self.initial_ramp_cap(), |r| r.cap_usd)
    }

    fn initial_ramp_cap(&self) -> f64 {
        self.cfg.ramp.initial_notional_usd.min(self.cfg.max_notional_per_route_usd)
    }

    /// Realised loss since UTC midnight of `unix_time`, USD.
    pub fn loss_today_usd(&self, unix_time: u64) -> f64 {
        if unix_time / SECS_PER_DAY == self.loss_day { self.loss_today_usd } else { 0.0 }
    }

    /// The current run of consecutive reverts and misses.
    pub const fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Whether the halt is engaged.
    pub const fn is_halted(&self) -> bool {
        self.halt.is_halted()
    }

    /// Why and since when the halt is engaged.
    pub const fn halt_info(&self) -> Option<&HaltInfo> {
        self.halt.info()
    }

    /// Records that `c` was submitted (or, in dry-run, decided) for `block`: counts its notional
    /// in the block's volume and, for the stabilizer, starts MIN_BLOCKS on its pools.
    pub fn record_submission(&mut self, c: &Candidate, block: u64) {
        if block != self.volume_block {
            self.volume_block = block;
            self.volume_usd = 0.0;
            self.stabilizer_volume_usd = 0.0;
        }
        let notional = finite_or_zero(c.notional_usd);
        self.volume_usd += notional;
        if c.strategy == StrategyKind::Stabilizer {
            self.stabilizer_volume_usd += notional;
            for pool in &c.pools {
                self.last_stabilizer_trade.insert(*pool, block);
            }
        }
    }

    /// Records a fill of `route` with realised PnL `pnl_usd` at `unix_time`. Ends the run of
    /// failures; a profitable (clean) fill counts toward the route's ramp, a losing one resets
    /// that count and adds to today's loss.
    ///
    /// # Errors
    /// [`HaltError`] when a trip could not persist the halt file (the gate is halted anyway).
    pub fn record_fill(
        &mut self,
        route: RouteKey,
        pnl_usd: f64,
        unix_time: u64,
    ) -> Result<Option<Trip>, HaltError> {
        self.consecutive_failures = 0;
        let initial = self.initial_ramp_cap();
        let max = self.cfg.max_notional_per_route_usd;
        let (growth, needed) = (self.cfg.ramp.growth_factor, self.cfg.ramp.clean_fills_to_grow);
        let ramp = self.ramps.entry(route).or_insert(Ramp { cap_usd: initial, clean_fills: 0 });
        if pnl_usd >= 0.0 {
            ramp.clean_fills += 1;
            if ramp.clean_fills >= needed {
                ramp.cap_usd = (ramp.cap_usd * growth).min(max);
                ramp.clean_fills = 0;
            }
            Ok(None)
        } else {
            ramp.clean_fills = 0;
            self.add_loss(-pnl_usd, unix_time)
        }
    }

    /// Takes back a fill of `route` recorded with `pnl_usd` whose block a reorg replaced: a clean
    /// fill no longer counts toward the ramp, a loss no longer counts toward the day it was
    /// booked in. The submission's final outcome is recorded again when it comes (a fill if it is
    /// mined on the new branch, a miss if not).
    pub fn record_orphaned(&mut self, route: RouteKey, pnl_usd: f64, unix_time: u64) {
        if !pnl_usd.is_finite() {
            return;
        }
        if pnl_usd >= 0.0 {
            if let Some(r) = self.ramps.get_mut(&route) {
                r.clean_fills = r.clean_fills.saturating_sub(1);
            }
        } else if unix_time / SECS_PER_DAY == self.loss_day {
            self.loss_today_usd = (self.loss_today_usd + pnl_usd).max(0.0);
        }
    }

    /// Records a revert of `route` that cost `gas_cost_usd` at `unix_time`: a failure (the ramp
    /// shrinks back to its start) and a realised loss.
    ///
    /// # Errors
    /// [`HaltError`] when a trip could not persist the halt file (the gate is halted anyway).
    pub fn record_revert(
        &mut self,
        route: RouteKey,
        gas_cost_usd: f64,
        unix_time: u64,
    ) -> Result<Option<Trip>, HaltError> {
        let loss_trip = self.add_loss(gas_cost_usd, unix_time)?;
        let fail_trip = self.failure(route, unix_time)?;
        Ok(loss_trip.or(fail_trip))
    }

    /// Records a miss of `route` (not included, or included without the simulated outcome) at
    /// `unix_time`: a failure; the ramp shrinks back to its start.
    ///
    /// # Errors
    /// [`HaltError`] when a trip could not persist the halt file (the gate is halted anyway).
    pub fn record_miss(
        &mut self,
        route: RouteKey,
        unix_time: u64,
    ) -> Result<Option<Trip>, HaltError> {
        self.failure(route, unix_time)
    }

    fn failure(&mut self, route: RouteKey, unix_time: u64) -> Result<Option<Trip>, HaltError> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let initial = self.initial_ramp_cap();
        self.ramps.insert(route, Ramp { cap_usd: initial, clean_fills: 0 });
        if self.consecutive_failures >= self.cfg.pause_after_consecutive_failures {
            let trip = Trip::ConsecutiveFailures { count: self.consecutive_failures };
            return self.trip(trip, unix_time);
        }
        Ok(None)
    }

    fn add_loss(&mut self, loss_usd: f64, unix_time: u64) -> Result<Option<Trip>, HaltError> {
        let day = unix_time / SECS_PER_DAY;
        if day != self.loss_day {
            self.loss_day = day;
            self.loss_today_usd = 0.0;
        }
        // A non-finite loss is treated as the whole cap: the safe reading of a broken number.
        let loss =
            if loss_usd.is_finite() { loss_usd.max(0.0) } else { self.cfg.daily_loss_cap_usd };
        self.loss_today_usd += loss;
        if loss > 0.0 && self.loss_today_usd >= self.cfg.daily_loss_cap_usd {
            let trip = Trip::DailyLoss {
                loss_usd: self.loss_today_usd,
                cap_usd: self.cfg.daily_loss_cap_usd,
            };
            return self.trip(trip, unix_time);
        }
        Ok(None)
    }

    fn trip(&mut self, trip: Trip, unix_time: u64) -> Result<Option<Trip>, HaltError> {
        if self.halt.is_halted() {
            return Ok(None);
        }
        tracing::warn!(target: "cantilever::risk", %trip, "kill switch tripped; halting");
        self.halt.engage(&trip.to_string(), unix_time)?;
        Ok(Some(trip))
    }

    /// Engages the halt by hand with `reason` at `unix_time`.
    ///
    /// # Errors
    /// [`HaltError`] when the halt file cannot be written (the gate is halted anyway).
    pub fn halt(&mut self, reason: &str, unix_time: u64) -> Result<(), HaltError> {
        self.halt.engage(reason, unix_time)
    }

    /// Re-arms after a halt or kill-switch trip: removes the halt file and clears the run of
    /// failures. Today's realised loss stays (the daily cap still applies until UTC midnight).
    ///
    /// # Errors
    /// [`HaltError`] when the halt file cannot be removed; the gate then stays halted.
    pub fn rearm(&mut self) -> Result<(), HaltError> {
        self.halt.rearm()?;
        self.consecutive_failures = 0;
        Ok(())
    }
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

fn validate(c: &Candidate) -> Result<(), Refusal> {
    if !(c.notional_usd.is_finite() && c.notional_usd >= 0.0) {
        return Err(Refusal::InvalidCandidate { field: "notional_usd" });
    }
    if !c.profit_usd.is_finite() {
        return Err(Refusal::InvalidCandidate { field: "profit_usd" });
    }
    if c.exposure_change_usd.iter().any(|(_, x)| !x.is_finite()) {
        return Err(Refusal::InvalidCandidate { field: "exposure_change_usd" });
    }
    Ok(())
}
