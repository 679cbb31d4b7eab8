//! Ingest: the chain event feed. Per chain, on tokio, it follows new heads and full pending
//! transactions over the WebSocket, repairs the head chain (duplicates, gaps, reorgs) and feeds
//! the engine thread through two bounded crossbeam channels.
//!
//! ```text
//!  node ──WS newHeads──▶ HeadTracker (pure) ──Head / Reorg / Resync──▶ heads channel ──▶ engine
//!       ──WS pending───────────────────────────────Pending──────────▶ pending channel ─▶ (drains
//!  node ◀─HTTP eth_getBlockByHash (backfill), eth_getBlockByNumber(latest) (catch-up)   heads first)
//! ```
//!
//! - [`HeadTracker`] is pure logic: given heads as they arrive it returns what to emit and which
//!   block to fetch; the driver in [`live`] performs the fetches over HTTP and feeds them back.
//! - [`live::spawn`] runs one chain: alloy WS with its own short retry budget, subscriptions with
//!   channels far above alloy's default of 16, `recv()` so lag is seen, counted and followed by a
//!   [`Event::Resync`] and a catch-up from `latest`; when the connection ends it reconnects with
//!   capped exponential backoff and jitter, emitting [`Event::Connection`] down and up, and
//!   backfills from the last head by hash. Every network step is under a timeout; a quiet spell
//!   polls the latest block and ends a stale session (missed heads are backfilled first).
//!   Every error path sleeps; nothing spins.
//! - [`channels`] makes the two channels. Heads are never dropped: when the heads channel is full
//!   the ingest task waits (an async sleep-and-retry, never blocking a tokio thread) and counts the
//!   stall; meanwhile alloy's subscription buffer absorbs new heads, and if it overflows the lag is
//!   counted and repaired by resync and backfill. A full pending channel drops its oldest pending
//!   transaction (the newest is the most useful to a backrun) and counts it.
//! - [`IngestCounters`]: plain atomics per chain for telemetry.
//!
//! Reorgs are detected by parent hash only (anvil 1.7 does not re-send removed logs).
//! Notifications missed while disconnected are never replayed by alloy; the backfill is ours.

mod channel;
pub mod live;
#[cfg(test)]
mod tests;
mod tracker;

use std::fmt;
use std::time::Instant;

use alloy::consensus::Transaction as _;
use alloy::primitives::{Address, B256};

pub use channel::{EventReceiver, EventSender, IngestCounters, SendError, channels};
pub use live::{IngestError, IngestHandle, LiveConfig};
pub use tracker::{DEFAULT_WINDOW, HeadTracker, Step};

/// A block by number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRef {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
}

impl fmt::Display for BlockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} ({})", self.number, self.hash)
    }
}

/// A new canonical head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// Block timestamp, unix seconds.
    pub timestamp: u64,
    /// Base fee per gas, wei (`None` before London).
    pub base_fee: Option<u64>,
    /// Block gas limit.
    pub gas_limit: u64,
    /// When the ingest task received it (from the subscription or a backfill fetch).
    pub received_at: Instant,
}

impl Head {
    /// Builds a head from an RPC header of `chain_id`, received at `received_at`.
    pub fn from_rpc(
        chain_id: u64,
        header: &alloy::rpc::types::Header,
        received_at: Instant,
    ) -> Self {
        Self {
            chain_id,
            number: header.inner.number,
            hash: header.hash,
            parent_hash: header.inner.parent_hash,
            timestamp: header.inner.timestamp,
            base_fee: header.inner.base_fee_per_gas,
            gas_limit: header.inner.gas_limit,
            received_at,
        }
    }

    /// Number and hash.
    pub const fn block_ref(&self) -> BlockRef {
        BlockRef { number: self.number, hash: self.hash }
    }
}

/// A pending transaction seen in the node's mempool, signer recovered.
#[derive(Debug, Clone)]
pub struct PendingTx {
    /// EIP-155 chain id of the node it came from.
    pub chain_id: u64,
    /// The transaction as the node reported it (envelope with the recovered sender).
    pub tx: alloy::rpc::types::Transaction,
    /// When the ingest task received it.
    pub received_at: Instant,
}

impl PendingTx {
    /// The transaction hash.
    pub fn hash(&self) -> B256 {
        *self.tx.inner.tx_hash()
    }

    /// The recovered sender.
    pub fn from(&self) -> Address {
        self.tx.inner.signer()
    }

    /// The recipient (`None` for a contract creation).
    pub fn to(&self) -> Option<Address> {
        self.tx.inner.to()
    }
}

/// Why the feed resynchronised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The subscription lagged and `missed` notifications were lost; the heads that follow are
    /// backfilled from `latest`, but pending transactions in between are gone.
    Lagged {
        /// Notifications lost.
        missed: u64,
    },
    /// A new branch does not join the remembered chain (it forks below block `below`).
    DeepReorg {
        /// The oldest block remembered.
        below: u64,
    },
    /// More blocks are missing than the window holds (from the tip `from` to the head `to`).
    GapTooLarge {
        /// The last head emitted.
        from: u64,
        /// The new head.
        to: u64,
    },
    /// A parent block could not be fetched.
    BackfillFailed {
        /// The hash asked for.
        hash: B256,
    },
}

impl fmt::Display for ResyncReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lagged { missed } => {
                write!(f, "subscription lagged, {missed} notifications lost")
            }
            Self::DeepReorg { below } => write!(f, "reorg deeper than the window (below #{below})"),
            Self::GapTooLarge { from, to } => {
                write!(f, "gap from #{from} to #{to} is larger than the window")
            }
            Self::BackfillFailed { hash } => write!(f, "block {hash} could not be fetched"),
        }
    }
}

/// An event for the engine thread.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new canonical head (in order; backfilled heads come before the head that revealed them).
    Head(Head),
    /// A pending transaction (on the pending channel; boxed, it is ~600 bytes).
    Pending(Box<PendingTx>),
    /// The chain reorganised: blocks above `common_ancestor` are orphaned (`depth` of them); the
    /// new branch's heads follow in order.
    Reorg {
        /// EIP-155 chain id.
        chain_id: u64,
        /// Orphaned blocks (old tip number − ancestor number).
        depth: u64,
        /// The last block both branches share.
        common_ancestor: BlockRef,
    },
    /// The WebSocket connection went down or came (back) up.
    Connection {
        /// EIP-155 chain id.
        chain_id: u64,
        /// Whether it is up.
        up: bool,
    },
    /// The feed lost continuity: re-read state at the next head. The heads that follow start
    /// from the new head (or, for [`ResyncReason::Lagged`], are backfilled).
    Resync {
        /// EIP-155 chain id.
        chain_id: u64,
        /// Why.
        reason: ResyncReason,
    },
}

impl Event {
    /// The chain the event is about.
    pub const fn chain_id(&self) -> u64 {
        match self {
            Self::Head(h) => h.chain_id,
            Self::Pending(p) => p.chain_id,
            Self::Reorg { chain_id, .. }
            | Self::Connection { chain_id, .. }
            | Self::Resync { chain_id, .. } => *chain_id,
        }
    }
}
