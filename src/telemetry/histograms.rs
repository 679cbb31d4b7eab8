//! Per-stage latency histograms, owned by the engine thread.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::TelemetryError;

/// Lowest recorded value, ns.
const LOWEST_NS: u64 = 1;
/// Highest recorded value, ns (60 s); longer durations are recorded as 60 s.
const HIGHEST_NS: u64 = 60_000_000_000;
/// Significant decimal digits kept.
const SIGFIG: u8 = 3;

/// What woke the engine: a new head or a pending transaction. Latencies differ by an order of
/// magnitude, so they are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new block header.
    Head,
    /// A pending transaction (backrun candidate).
    Pending,
}

impl EventKind {
    /// Every kind, in index order.
    pub const ALL: [Self; 2] = [Self::Head, Self::Pending];

    /// The label value (`head`, `pending`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Pending => "pending",
        }
    }
}

/// A stage of the pipeline, in the order an event goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Decoding the WS frame into an event.
    Decode,
    /// Applying the head or pending diff to the fork cache.
    StateApply,
    /// Re-quoting changed pools and screening affected routes.
    Screen,
    /// Sizing candidates.
    Size,
    /// Proving them in revm.
    Sim,
    /// Containment and desk limits.
    Risk,
    /// Signing.
    Sign,
    /// Handing to the submitter.
    Submit,
    /// From the frame's arrival to the signed transaction.
    EndToEnd,
}

impl Stage {
    /// Every stage, in index order.
    pub const ALL: [Self; 9] = [
        Self::Decode,
        Self::StateApply,
        Self::Screen,
        Self::Size,
        Self::Sim,
        Self::Risk,
        Self::Sign,
        Self::Submit,
        Self::EndToEnd,
    ];

    /// The label value (`decode`, `state_apply`, ..., `end_to_end`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::StateApply => "state_apply",
            Self::Screen => "screen",
            Self::Size => "size",
            Self::Sim => "sim",
            Self::Risk => "risk",
            Self::Sign => "sign",
            Self::Submit => "submit",
            Self::EndToEnd => "end_to_end",
        }
    }
}

fn index(kind: EventKind, stage: Stage) -> usize {
    kind as usize * Stage::ALL.len() + stage as usize
}

/// Percentiles of one histogram, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value recorded.
    pub max: u64,
    /// Values recorded.
    pub count: u64,
}

/// One hdrhistogram per ([`EventKind`], [`Stage`]) in nanoseconds, 1 ns to 60 s, 3 significant
/// digits. Owned by one thread (the engine); recording takes no lock and never allocates.
#[derive(Debug, Clone)]
pub struct StageHistograms {
    hists: Vec<Histogram<u64>>,
}

impl StageHistograms {
    /// Empty histograms for every kind and stage (about 4 MB in all).
    ///
    /// # Errors
    /// [`TelemetryError::Histogram`] if hdrhistogram refuses the bounds (it does not for these).
    pub fn new() -> Result<Self, TelemetryError> {
        let hists = (0..EventKind::ALL.len() * Stage::ALL.len())
            .map(|_| Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIG))
            .collect::<Result<_, _>>()
            .map_err(|e| TelemetryError::Histogram(e.to_string()))?;
        Ok(Self { hists })
    }

    /// Records `nanos` for `stage` of a `kind` event; values above 60 s count as 60 s.
    #[inline]
    pub fn record(&mut self, kind: EventKind, stage: Stage, nanos: u64) {
        self.hists[index(kind, stage)].saturating_record(nanos);
    }

    /// Records the time since `start`.
    #[inline]
    pub fn record_since(&mut self, kind: EventKind, stage: Stage, start: Instant) {
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.record(kind, stage, nanos);
    }

    /// Adds every value of `other` (another thread's histograms, say) into these.
    ///
    /// # Errors
    /// [`TelemetryError::Histogram`] if a value of `other` is out of range (impossible between
    /// two `StageHistograms`, which share their bounds).
    pub fn merge(&mut self, other: &Self) -> Result<(), TelemetryError> {
        for (mine, theirs) in self.hists.iter_mut().zip(&other.hists) {
            mine.add(theirs).map_err(|e| TelemetryError::Histogram(e.to_string()))?;
        }
        Ok(())
    }

    /// p50, p90, p99, p99.9, max and count of one histogram.
    pub fn percentiles(&self, kind: EventKind, stage: Stage) -> Percentiles {
        let h = &self.hists[index(kind, stage)];
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            count: h.len(),
        }
    }

    /// Mean of one histogram in nanoseconds (0 when empty).
    pub fn mean(&self, kind: EventKind, stage: Stage) -> f64 {
        self.hists[index(kind, stage)].mean()
    }

    /// One histogram's counts in log-spaced buckets from 100 ns, `per_decade` buckets per power
    /// of ten, up to its largest value: `(bucket upper bound ns, count)` (for plots).
    pub fn buckets(&self, kind: EventKind, stage: Stage, per_decade: u32) -> Vec<(u64, u64)> {
        let h = &self.hists[index(kind, stage)];
        if h.is_empty() {
            return Vec::new();
        }
        let factor = 10f64.powf(1.0 / f64::from(per_decade.max(1)));
        h.iter_log(100, factor)
            .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
            .collect()
    }

    /// Empties every histogram.
    pub fn reset(&mut self) {
        self.hists.iter_mut().for_each(Histogram::reset);
    }
}

/// Where the engine publishes its histograms for the metrics server. The engine calls
/// [`publish`](Self::publish) every few hundred ms; it only ever `try_lock`s, so it never waits
/// on the server (a publish that finds the server reading is skipped and retried next time).
#[derive(Debug, Clone, Default)]
pub struct SharedHistograms {
    latest: Arc<Mutex<Option<StageHistograms>>>,
}

impl SharedHistograms {
    /// Nothing published yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies `hists` in unless the server is reading right now; returns whether it did.
    pub fn publish(&self, hists: &StageHistograms) -> bool {
        match self.latest.try_lock() {
            Ok(mut slot) => {
                match slot.as_mut() {
                    Some(latest) => latest.clone_from(hists),
                    None => *slot = Some(hists.clone()),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Runs `f` on the latest published histograms (`None` before the first publish), holding
    /// the lock for as long as `f` runs: keep it short.
    pub fn with_latest<R>(&self, f: impl FnOnce(Option<&StageHistograms>) -> R) -> R {
        let slot = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        f(slot.as_ref())
    }
}
