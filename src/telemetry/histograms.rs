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
    /// Heads only: the head's state read by the feeder thread, from the frame's arrival to the
    /// update being handed to the engine (the hand-off to the feeder included).
    Fetch,
    /// Waiting between threads: from the hand-off to the engine (the feeder's update, or the
    /// pending transaction's arrival) to the engine taking the event up.
    Handoff,
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
    pub const ALL: [Self; 11] = [
        Self::Decode,
        Self::Fetch,
        Self::Handoff,
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
            Self::Fetch => "fetch",
            Self::Handoff => "handoff",
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

/// Where the engine publishes its histograms for the metrics server (and the bench), off its
/// hot path.
///
/// The engine records into its own [`StageHistograms`] and, every few hundred ms, hands them over
/// whole with [`publish`](Self::publish): a swap with an empty set this side keeps ready, so the
/// engine thread never copies or merges megabytes of counters (a copy of every histogram took over
/// a millisecond, and an event arriving meanwhile waited for it). A merger thread adds each
/// handed-over set into the running total readers see, empties it and gives it back as the next
/// spare. Publishing never waits on a reader or on the merger: with no spare ready it is skipped
/// and the engine keeps recording into the set it holds.
#[derive(Debug, Clone)]
pub struct SharedHistograms {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    total: Arc<Mutex<Option<StageHistograms>>>,
    /// Sets handed over, to the merger.
    deltas: crossbeam_channel::Sender<StageHistograms>,
    /// Emptied sets, back from the merger.
    spares: crossbeam_channel::Receiver<StageHistograms>,
    /// Sets handed over and not merged yet.
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl Default for SharedHistograms {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds `delta` into `total` (creating it) and empties `delta`.
fn merge_into(total: &Mutex<Option<StageHistograms>>, delta: &mut StageHistograms) {
    let mut slot = total.lock().unwrap_or_else(PoisonError::into_inner);
    match slot.as_mut() {
        // Cannot fail: both sides share their bounds.
        Some(t) => {
            let _ = t.merge(delta);
        }
        None => *slot = Some(delta.clone()),
    }
    drop(slot);
    delta.reset();
}

impl SharedHistograms {
    /// Nothing published yet; starts the merger thread (it ends with the last clone).
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let total = Arc::new(Mutex::new(None));
        let pending = Arc::new(AtomicUsize::new(0));
        let (deltas, deltas_rx) = crossbeam_channel::bounded::<StageHistograms>(2);
        let (spares_tx, spares) = crossbeam_channel::bounded(2);
        if let Ok(h) = StageHistograms::new() {
            let _ = spares_tx.try_send(h);
        }
        let (t, p) = (total.clone(), pending.clone());
        let merger = std::thread::Builder::new().name("hist-merge".into()).spawn(move || {
            for mut delta in deltas_rx {
                merge_into(&t, &mut delta);
                // The spare is back before the set counts as merged: a reader that saw it
                // merged can publish again at once.
                let _ = spares_tx.try_send(delta);
                p.fetch_sub(1, Ordering::AcqRel);
            }
        });
        if let Err(e) = merger {
            tracing::warn!(error = %e, "no histogram merger thread: stage latencies are not published");
        }
        Self { inner: Arc::new(Shared { total, deltas, spares, pending }) }
    }

    /// Hands over what `hists` recorded since the last publish (`hists` is left empty to record
    /// on) unless no emptied set is ready (the merger is behind); returns whether it did. With
    /// `force` (a stopping engine's last publish) a new empty set stands in for a missing spare.
    pub fn publish(&self, hists: &mut StageHistograms, force: bool) -> bool {
        use std::sync::atomic::Ordering;
        let spare = match self.inner.spares.try_recv() {
            Ok(s) => s,
            Err(_) if force => match StageHistograms::new() {
                Ok(s) => s,
                Err(_) => return false,
            },
            Err(_) => return false,
        };
        let delta = std::mem::replace(hists, spare);
        self.inner.pending.fetch_add(1, Ordering::AcqRel);
        match self.inner.deltas.try_send(delta) {
            Ok(()) => true,
            Err(e) => {
                // The merger is gone or behind: keep recording into what was handed over.
                self.inner.pending.fetch_sub(1, Ordering::AcqRel);
                *hists = e.into_inner();
                false
            }
        }
    }

    /// Runs `f` on the running total of everything published (`None` before the first
    /// publish), once the merger has added what was handed over (waiting at most a second);
    /// holds the lock for as long as `f` runs: keep it short.
    pub fn with_latest<R>(&self, f: impl FnOnce(Option<&StageHistograms>) -> R) -> R {
        use std::sync::atomic::Ordering;
        let start = Instant::now();
        while self.inner.pending.load(Ordering::Acquire) > 0
            && start.elapsed() < std::time::Duration::from_secs(1)
        {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        let slot = self.inner.total.lock().unwrap_or_else(PoisonError::into_inner);
        f(slot.as_ref())
    }
}
