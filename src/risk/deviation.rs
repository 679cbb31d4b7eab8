//! Sustained-deviation detection (seed 000 flash-spike filter, DOMAIN §7.4).
//!
//! The engine records one sample per watched pool per block: the pool's deviation from its
//! reference at the end of the block, in signed basis points, with the block's timestamp. A second
//! sample for the same block replaces the first (only the end-of-block state counts, so a price
//! pushed and restored within one block leaves no trace).
//!
//! Over the window of the last N blocks (`sustained_blocks`) ending at the pool's latest sample:
//! - the time-weighted mean uses "previous price" weighting, as a Uniswap-style accumulator does:
//!   each sample counts for the time until the next one, Σ d_i·(t_{i+1} − t_i) / (t_last − t_0);
//!   so the latest sample carries no weight in the mean;
//! - [`DeviationTracker::is_sustained`] is true only when that mean exceeds the threshold, the
//!   latest sample exceeds it too, both on the same side, and at least M (`sustained_min_samples`)
//!   samples of the window exceed it on that side. Two samples at least are needed: one block
//!   never qualifies, nor does a one-block outlier (it is either the latest sample, which has no
//!   weight in the mean, or an earlier one, after which the latest sample is back under the
//!   threshold, or it is one sample out of the M needed).

use std::collections::{HashMap, VecDeque};

use super::ChainAddress;
use crate::config::RiskConfig;

/// A sample the tracker refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum DeviationError {
    /// The deviation is NaN or infinite.
    #[error("deviation sample for pool {pool} at block {block} is not finite")]
    NotFinite {
        /// The pool.
        pool: ChainAddress,
        /// The block.
        block: u64,
    },
    /// The block is older than the pool's latest sample (call `rollback` on a reorg first).
    #[error(
        "deviation sample for pool {pool} at block {block} is older than its latest ({latest})"
    )]
    OutOfOrder {
        /// The pool.
        pool: ChainAddress,
        /// The block of the sample.
        block: u64,
        /// The latest block sampled for the pool.
        latest: u64,
    },
    /// The timestamp goes back in time relative to the previous block's sample.
    #[error(
        "deviation sample for pool {pool} at block {block} has timestamp {timestamp} before the previous sample's {previous}"
    )]
    TimeWentBack {
        /// The pool.
        pool: ChainAddress,
        /// The block.
        block: u64,
        /// The sample's timestamp.
        timestamp: u64,
        /// The previous sample's timestamp.
        previous: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    block: u64,
    timestamp: u64,
    deviation_bps: f64,
}

/// Per-pool time-weighted deviation over the last N blocks. Deterministic; no clock reads.
#[derive(Debug, Clone)]
pub struct DeviationTracker {
    window_blocks: u64,
    min_samples: usize,
    pools: HashMap<ChainAddress, VecDeque<Sample>>,
}

impl DeviationTracker {
    /// A tracker over `window_blocks` blocks (N, at least 1) needing `min_samples` samples over the
    /// threshold (M, clamped to 1..=N).
    pub fn new(window_blocks: u32, min_samples: u32) -> Self {
        let window_blocks = u64::from(window_blocks.max(1));
        let min_samples = (min_samples.max(1) as usize).min(window_blocks as usize);
        Self { window_blocks, min_samples, pools: HashMap::new() }
    }

    /// A tracker with `sustained_blocks` and `sustained_min_samples` from `[risk]`.
    pub fn from_config(risk: &RiskConfig) -> Self {
        Self::new(risk.sustained_blocks, risk.sustained_min_samples)
    }

    /// Records `pool`'s deviation at the end of `block` (timestamp `timestamp`, unix seconds), in
    /// signed basis points. A repeat for the pool's latest block replaces it.
    ///
    /// # Errors
    /// [`DeviationError`] for a non-finite deviation, a block older than the pool's latest sample,
    /// or a timestamp before the previous sample's; the sample is then ignored.
    pub fn record(
        &mut self,
        pool: ChainAddress,
        block: u64,
        timestamp: u64,
        deviation_bps: f64,
    ) -> Result<(), DeviationError> {
        if !deviation_bps.is_finite() {
            return Err(DeviationError::NotFinite { pool, block });
        }
        let samples = self.pools.entry(pool).or_default();
        let sample = Sample { block, timestamp, deviation_bps };
        let replaces = match samples.back() {
            Some(last) if block < last.block => {
                return Err(DeviationError::OutOfOrder { pool, block, latest: last.block });
            }
            Some(last) => last.block == block,
            None => false,
        };
        let previous = samples.iter().rev().nth(usize::from(replaces));
        if let Some(prev) = previous
            && timestamp < prev.timestamp
        {
            return Err(DeviationError::TimeWentBack {
                pool,
                block,
                timestamp,
                previous: prev.timestamp,
            });
        }
        if replaces {
            samples.pop_back();
        }
        samples.push_back(sample);
        let oldest_kept = block.saturating_sub(self.window_blocks - 1);
        while samples.front().is_some_and(|s| s.block < oldest_kept) {
            samples.pop_front();
        }
        Ok(())
    }

    /// Drops every sample at or above `block` for every pool (the blocks were reorged out).
    pub fn rollback(&mut self, block: u64) {
        for samples in self.pools.values_mut() {
            while samples.back().is_some_and(|s| s.block >= block) {
                samples.pop_back();
            }
        }
    }

    /// Forgets `pool`.
    pub fn remove(&mut self, pool: &ChainAddress) {
        self.pools.remove(pool);
    }

    /// The latest sample of `pool`, bps.
    pub fn current_bps(&self, pool: &ChainAddress) -> Option<f64> {
        self.pools.get(pool)?.back().map(|s| s.deviation_bps)
    }

    /// The time-weighted mean deviation of `pool` over its window, bps; `None` with fewer than two
    /// samples or no time elapsed between the first and the latest.
    pub fn time_weighted_bps(&self, pool: &ChainAddress) -> Option<f64> {
        time_weighted(self.pools.get(pool)?)
    }

    /// Whether `pool`'s deviation is sustained beyond `threshold_bps` (absolute) on one side: the
    /// time-weighted mean and the latest sample both exceed it, and at least M samples of the
    /// window do.
    pub fn is_sustained(&self, pool: &ChainAddress, threshold_bps: f64) -> bool {
        let Some(samples) = self.pools.get(pool) else {
            return false;
        };
        let (Some(mean), Some(current)) = (time_weighted(samples), samples.back()) else {
            return false;
        };
        let threshold = threshold_bps.abs();
        let side = current.deviation_bps.signum();
        let beyond = |d: f64| d.abs() > threshold && d.signum() == side;
        let over = samples.iter().filter(|s| beyond(s.deviation_bps)).count();
        beyond(current.deviation_bps) && beyond(mean) && over >= self.min_samples
    }
}

/// Mean deviation weighted by how long each sample stood (until the next one). When the chain's
/// timestamps do not advance over the window (a devnet mining several blocks in one second), the
/// blocks themselves are the clock.
fn time_weighted(samples: &VecDeque<Sample>) -> Option<f64> {
    let (first, last) = (samples.front()?, samples.back()?);
    let by_time = last.timestamp > first.timestamp;
    let span = if by_time {
        last.timestamp - first.timestamp
    } else {
        last.block.checked_sub(first.block).filter(|s| *s > 0)?
    };
    let mut acc = 0.0;
    for (a, b) in samples.iter().zip(samples.iter().skip(1)) {
        let d = if by_time { b.timestamp - a.timestamp } else { b.block - a.block };
        #[allow(clippy::cast_precision_loss, reason = "block intervals are far below 2^53 s")]
        let dt = d as f64;
        acc += a.deviation_bps * dt;
    }
    #[allow(clippy::cast_precision_loss, reason = "block intervals are far below 2^53 s")]
    Some(acc / span as f64)
}

#[cfg(test)]
mod tests {
    use alloy::primitives::Address;

    use super::*;

    const T0: u64 = 1_700_000_000;

    fn pool() -> ChainAddress {
        ChainAddress::new(138, Address::repeat_byte(0x11))
    }

    /// N = 5, M = 3 (the defaults), samples at blocks 1.. every 12 s.
    fn feed(devs: &[f64]) -> DeviationTracker {
        let mut t = DeviationTracker::new(5, 3);
        for (i, d) in devs.iter().enumerate() {
            t.record(pool(), i as u64 + 1, T0 + 12 * i as u64, *d).unwrap();
        }
        t
    }

    #[test]
    fn sustained_deviation_qualifies() {
        let t = feed(&[0.0, 20.0, 20.0, 20.0, 20.0, 20.0]);
        assert_eq!(t.time_weighted_bps(&pool()), Some(20.0));
        assert!(t.is_sustained(&pool(), 10.0));
        assert!(!t.is_sustained(&pool(), 25.0));
        // Negative side too.
        let t = feed(&[-20.0; 5]);
        assert!(t.is_sustained(&pool(), 10.0));
    }

    #[test]
    fn spike_pushed_and_restored_within_a_block_never_qualifies() {
        let mut t = feed(&[0.0, 0.0, 0.0, 0.0]);
        // Block 5: pushed to 500 bps, then restored in the same block.
        t.record(pool(), 5, T0 + 48, 500.0).unwrap();
        t.record(pool(), 5, T0 + 48, 0.0).unwrap();
        assert_eq!(t.current_bps(&pool()), Some(0.0));
        assert!(!t.is_sustained(&pool(), 10.0));
    }

    #[test]
    fn one_block_outlier_never_qualifies() {
        // The outlier is the latest block: no weight in the mean.
        let t = feed(&[0.0, 0.0, 0.0, 0.0, 500.0]);
        assert_eq!(t.time_weighted_bps(&pool()), Some(0.0));
        assert!(!t.is_sustained(&pool(), 10.0));
        // The outlier is one block back: the mean is over, the current sample is not.
        let t = feed(&[0.0, 0.0, 0.0, 500.0, 0.0]);
        assert!(t.time_weighted_bps(&pool()).unwrap() > 10.0);
        assert!(!t.is_sustained(&pool(), 10.0));
        // Outlier one block back and the current just over: only 2 of the M = 3 samples exceed.
        let t = feed(&[0.0, 0.0, 0.0, 500.0, 12.0]);
        assert!(t.time_weighted_bps(&pool()).unwrap() > 10.0);
        assert!(!t.is_sustained(&pool(), 10.0));
    }

    #[test]
    fn one_sample_or_opposite_sides_never_qualify() {
        let t = feed(&[500.0]);
        assert!(!t.is_sustained(&pool(), 10.0));
        // Mean positive, current negative.
        let t = feed(&[50.0, 50.0, 50.0, 50.0, -50.0]);
        assert!(!t.is_sustained(&pool(), 10.0));
    }

    #[test]
    fn window_keeps_only_the_last_n_blocks() {
        // Old deviation outside the window does not count.
        let t = feed(&[100.0, 100.0, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0, 20.0]);
        assert!(!t.is_sustained(&pool(), 10.0));
        // Time weighting: a long quiet interval dilutes the deviation.
        let mut t = DeviationTracker::new(5, 2);
        t.record(pool(), 1, T0, 0.0).unwrap();
        t.record(pool(), 2, T0 + 100, 20.0).unwrap();
        t.record(pool(), 3, T0 + 101, 20.0).unwrap();
        t.record(pool(), 4, T0 + 102, 20.0).unwrap();
        assert!((t.time_weighted_bps(&pool()).unwrap() - 40.0 / 102.0).abs() < 1e-9);
        assert!(!t.is_sustained(&pool(), 10.0));
    }

    #[test]
    fn bad_samples_are_refused_and_rollback_drops_blocks() {
        let mut t = feed(&[20.0, 20.0, 20.0, 20.0]);
        assert!(matches!(
            t.record(pool(), 9, T0 + 100, f64::NAN),
            Err(DeviationError::NotFinite { .. })
        ));
        assert!(matches!(
            t.record(pool(), 2, T0 + 100, 1.0),
            Err(DeviationError::OutOfOrder { latest: 4, .. })
        ));
        assert!(matches!(t.record(pool(), 5, T0, 1.0), Err(DeviationError::TimeWentBack { .. })));
        assert!(t.is_sustained(&pool(), 10.0));
        t.rollback(3);
        assert_eq!(t.current_bps(&pool()), Some(20.0));
        assert!(!t.is_sustained(&pool(), 10.0), "two samples left, M = 3");
        t.record(pool(), 3, T0 + 24, 0.0).unwrap();
        assert_eq!(t.current_bps(&pool()), Some(0.0));
    }
}
