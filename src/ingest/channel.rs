//! The two bounded channels from ingest to the engine, and the ingest counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};

use super::{Event, PendingTx};

/// How long a head send waits between tries while the heads channel is full.
const HEAD_RETRY: Duration = Duration::from_millis(2);

/// Counters of one chain's feed, plain atomics read by telemetry (relaxed ordering).
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Heads emitted (including backfilled ones).
    pub heads: AtomicU64,
    /// Heads emitted that were fetched to fill a gap or a reorg branch.
    pub backfilled: AtomicU64,
    /// Heads dropped as already known.
    pub duplicates: AtomicU64,
    /// Reorgs emitted.
    pub reorgs: AtomicU64,
    /// Resyncs emitted.
    pub resyncs: AtomicU64,
    /// Head notifications lost to subscription lag.
    pub lagged_heads: AtomicU64,
    /// Pending-transaction notifications lost to subscription lag.
    pub lagged_pending: AtomicU64,
    /// Pending transactions emitted.
    pub pending: AtomicU64,
    /// Pending transactions dropped because the pending channel was full.
    pub dropped_pending: AtomicU64,
    /// Times a head send found the heads channel full and waited.
    pub head_send_stalls: AtomicU64,
    /// Sessions that ended (connection lost or subscription closed) and were reconnected.
    pub reconnects: AtomicU64,
    /// Failed connection or subscription attempts.
    pub connect_failures: AtomicU64,
    /// Failed block fetches over HTTP (each try, timeouts included).
    pub fetch_errors: AtomicU64,
    /// Sessions ended as stale: after a quiet spell the node had heads the subscription never
    /// delivered (a silent reconnect that lost notifications, or a black-holed socket).
    pub stale_sessions: AtomicU64,
    /// Whether the WebSocket session is up.
    pub connected: AtomicBool,
}

impl IngestCounters {
    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The engine has dropped its receiver: ingest should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the engine's event receiver is gone")]
pub struct SendError;

/// The ingest side of the two channels; cloned into every chain's task.
#[derive(Debug, Clone)]
pub struct EventSender {
    heads: Sender<Event>,
    pending: Sender<Event>,
    /// A receiver on the pending channel, used only to drop its oldest item when it is full.
    pending_drain: Receiver<Event>,
}

/// The engine side: drain `heads` first, then `pending`.
#[derive(Debug)]
pub struct EventReceiver {
    /// Heads, reorgs, connection changes and resyncs, in order, never dropped.
    pub heads: Receiver<Event>,
    /// Pending transactions; the oldest are dropped when the engine falls behind.
    pub pending: Receiver<Event>,
}

/// Makes the heads channel (`head_capacity`) and the pending channel (`pending_capacity`), both
/// at least 1.
pub fn channels(head_capacity: usize, pending_capacity: usize) -> (EventSender, EventReceiver) {
    let (htx, hrx) = bounded(head_capacity.max(1));
    let (ptx, prx) = bounded(pending_capacity.max(1));
    (
        EventSender { heads: htx, pending: ptx, pending_drain: prx.clone() },
        EventReceiver { heads: hrx, pending: prx },
    )
}

impl EventSender {
    /// Sends a head or control event, waiting (asynchronously) while the heads channel is full:
    /// heads are never dropped. Cancel-safe: a cancelled send has not sent.
    ///
    /// # Errors
    /// [`SendError`] when the engine's receiver is gone.
    pub async fn send_head(
        &self,
        event: Event,
        counters: &IngestCounters,
    ) -> Result<(), SendError> {
        let mut event = event;
        let mut stalled = false;
        loop {
            match self.heads.try_send(event) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(SendError),
                Err(TrySendError::Full(back)) => {
                    if !stalled {
                        stalled = true;
                        IngestCounters::add(&counters.head_send_stalls, 1);
                    }
                    event = back;
                    tokio::time::sleep(HEAD_RETRY).await;
                }
            }
        }
    }

    /// Sends a pending transaction without waiting; when the channel is full the oldest queued
    /// transaction is dropped (and counted) to make room.
    ///
    /// # Errors
    /// [`SendError`] when the engine's receiver is gone.
    pub fn send_pending(&self, tx: PendingTx, counters: &IngestCounters) -> Result<(), SendError> {
        let mut event = Event::Pending(Box::new(tx));
        for _ in 0..2 {
            match self.pending.try_send(event) {
                Ok(()) => {
                    IngestCounters::add(&counters.pending, 1);
                    return Ok(());
                }
                Err(TrySendError::Disconnected(_)) => return Err(SendError),
                Err(TrySendError::Full(back)) => {
                    event = back;
                    match self.pending_drain.try_recv() {
                        Ok(_) => IngestCounters::add(&counters.dropped_pending, 1),
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => return Err(SendError),
                    }
                }
            }
        }
        // Still full (the engine raced us): drop this one.
        IngestCounters::add(&counters.dropped_pending, 1);
        Ok(())
    }
}
