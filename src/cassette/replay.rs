//! Replaying a cassette's events into the ingest channels, at full speed or on the recorded clock.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crossbeam_channel::Receiver;
use tokio::task::JoinHandle;

use super::TimedEvent;
use crate::ingest::{Event, EventSender, IngestCounters, SendError};

/// When replayed events are due, and where the replay is in recorded time.
///
/// Full speed sends each event as soon as the previous one is accepted; the recorded clock sends
/// each at its recorded offset from the start of the replay, divided by `speed`. Clones share the
/// position, so a consumer (a backtest's clock) can read the recorded time of the last event sent.
#[derive(Clone, Debug)]
pub struct ReplayClock {
    speed: Option<f64>,
    start: Instant,
    started_unix_ms: u64,
    position_ns: Arc<AtomicU64>,
}

impl ReplayClock {
    /// No waiting between events.
    pub fn full_speed() -> Self {
        Self::with(None)
    }

    /// Events at their recorded offsets (real time).
    pub fn recorded() -> Self {
        Self::with(Some(1.0))
    }

    /// Events at their recorded offsets divided by `speed` (2.0 replays twice as fast), `speed`
    /// clamped to 0.001..=1,000,000. A speed that is not a positive finite number means full speed.
    pub fn scaled(speed: f64) -> Self {
        Self::with((speed.is_finite() && speed > 0.0).then(|| speed.clamp(1e-3, 1e6)))
    }

    fn with(speed: Option<f64>) -> Self {
        Self { speed, start: Instant::now(), started_unix_ms: 0, position_ns: Arc::default() }
    }

    /// Sets the wall-clock time of recorded offset 0 ([`super::CassetteMeta::started_unix_ms`]),
    /// for [`ReplayClock::unix_ms`].
    #[must_use]
    pub const fn starting_at_unix_ms(mut self, unix_ms: u64) -> Self {
        self.started_unix_ms = unix_ms;
        self
    }

    /// Whether events are sent without waiting.
    pub const fn is_full_speed(&self) -> bool {
        self.speed.is_none()
    }

    /// Restarts the clock: offset 0 is now.
    pub fn restart(&mut self) {
        self.start = Instant::now();
        self.position_ns.store(0, Ordering::Release);
    }

    /// When an event recorded at `offset_ns` is due (`None`: now, at full speed or when the
    /// instant is beyond what the platform represents).
    pub fn due(&self, offset_ns: u64) -> Option<Instant> {
        let speed = self.speed?;
        let scaled = Duration::try_from_secs_f64(offset_ns as f64 / 1e9 / speed).ok()?;
        self.start.checked_add(scaled)
    }

    /// The recorded offset of the last event sent, nanoseconds.
    pub fn position_ns(&self) -> u64 {
        self.position_ns.load(Ordering::Acquire)
    }

    /// The recorded wall-clock time of the last event sent (unix milliseconds).
    pub fn unix_ms(&self) -> u64 {
        self.started_unix_ms.saturating_add(self.position_ns() / 1_000_000)
    }

    pub(super) fn advance(&self, offset_ns: u64) {
        self.position_ns.fetch_max(offset_ns, Ordering::AcqRel);
    }
}

/// What a replay sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Heads, reorgs, connection changes and resyncs sent on the heads channel.
    pub heads_channel: u64,
    /// Pending transactions sent on the pending channel.
    pub pending: u64,
}

/// Sends a cassette's events into the channels [`crate::ingest::channels`] makes, in recorded
/// order, stamping `received_at` at the moment each is sent, counting into [`IngestCounters`] as
/// the live feed does: a consumer cannot tell it from [`crate::ingest::live::spawn`], except that
/// the feed ends (the sender is dropped) after the last event.
///
/// Heads are never dropped (a full heads channel is waited on, as live). Pending transactions are
/// dropped oldest-first when the pending channel is full, as live, unless
/// [`EventReplay::lossless`] was given the pending receiver: then the replay waits for room, so a
/// full-speed backtest sees every transaction.
#[derive(Clone, Debug)]
pub struct EventReplay {
    events: Arc<[TimedEvent]>,
    backpressure: Option<Receiver<Event>>,
}

impl EventReplay {
    /// A replay of `events` (in the order given).
    pub fn new(events: Vec<TimedEvent>) -> Self {
        Self { events: events.into(), backpressure: None }
    }

    /// Waits for room on the pending channel (`pending` is a clone of
    /// [`crate::ingest::EventReceiver::pending`]; the replay only looks at its length) instead of
    /// dropping the oldest transaction.
    #[must_use]
    pub fn lossless(mut self, pending: Receiver<Event>) -> Self {
        self.backpressure = Some(pending);
        self
    }

    /// The events.
    pub fn events(&self) -> &[TimedEvent] {
        &self.events
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there is nothing to replay.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Starts the replay on the current tokio runtime. Dropping the handle stops it.
    pub fn spawn(self, tx: EventSender, clock: ReplayClock) -> ReplayHandle {
        let counters = Arc::new(IngestCounters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move { self.run(&tx, &clock, &c).await });
        ReplayHandle { task: Some(task), counters }
    }

    /// Sends every event, pacing by `clock`, counting into `counters`. Not cancel-safe: a
    /// cancelled replay has sent a prefix of the events.
    ///
    /// # Errors
    /// [`SendError`] when the consumer's receivers are gone.
    pub async fn run(
        &self,
        tx: &EventSender,
        clock: &ReplayClock,
        counters: &IngestCounters,
    ) -> Result<ReplayStats, SendError> {
        let mut stats = ReplayStats::default();
        for t in self.events.iter() {
            if let Some(due) = clock.due(t.offset_ns) {
                tokio::time::sleep_until(due.into()).await;
            }
            clock.advance(t.offset_ns);
            let now = Instant::now();
            match &t.event {
                Event::Pending(p) => {
                    if let Some(rx) = &self.backpressure {
                        while rx.capacity().is_some_and(|cap| rx.len() >= cap) {
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                    }
                    let mut p = (**p).clone();
                    p.received_at = now;
                    tx.send_pending(p, counters)?;
                    stats.pending += 1;
                }
                other => {
                    let mut e = other.clone();
                    match &mut e {
                        Event::Head(h) => {
                            h.received_at = now;
                            IngestCounters::add(&counters.heads, 1);
                        }
                        Event::Reorg { .. } => IngestCounters::add(&counters.reorgs, 1),
                        Event::Resync { .. } => IngestCounters::add(&counters.resyncs, 1),
                        Event::Connection { up, .. } => {
                            counters.connected.store(*up, Ordering::Relaxed);
                        }
                        Event::Pending(_) => {}
                    }
                    tx.send_head(e, counters).await?;
                    stats.heads_channel += 1;
                }
            }
        }
        Ok(stats)
    }
}

/// A running replay. Dropping it stops the replay.
#[derive(Debug)]
pub struct ReplayHandle {
    task: Option<JoinHandle<Result<ReplayStats, SendError>>>,
    counters: Arc<IngestCounters>,
}

impl ReplayHandle {
    /// The replay's counters (as the live feed's).
    pub const fn counters(&self) -> &Arc<IngestCounters> {
        &self.counters
    }

    /// Whether every event has been sent (or the consumer is gone).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the replay to end.
    ///
    /// # Errors
    /// [`SendError`] when the consumer went away first (or the task was cancelled).
    pub async fn wait(mut self) -> Result<ReplayStats, SendError> {
        match self.task.take() {
            Some(t) => t.await.map_err(|_| SendError)?,
            None => Err(SendError),
        }
    }

    /// Stops the replay and waits for it.
    pub async fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for ReplayHandle {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
