//! Cassettes: the one recording format shared by `cantilever record`, `bench` and
//! `backtest --cassette`.
//!
//! A cassette holds one chain's session: what the chain said (heads, full pending transactions,
//! reorg markers, connection changes, each with its arrival offset in nanoseconds) and every
//! answer the state source gave (`block(hash)`, `latest()`, `read(at, req)`, failures included),
//! so the engine can be driven offline exactly as it was live.
//!
//! ```text
//!  live:   node ─WS─▶ ingest::live ─▶ channels ─▶ recorder ─┐        RpcSource ─▶ RecordingSource ─▶ Refresher
//!                                                           ▼                         │
//!                                             CassetteWriter (one file, appends) ◀────┘
//!  replay: Cassette::load ─▶ EventReplay (ReplayClock) ─▶ channels ─▶ engine
//!                       └──▶ CassetteSource (StateSource) ─▶ Refresher
//! ```
//!
//! # Format (version 1)
//! A 12-byte header (`CNTLCAS\0`, version u16 LE, two zero bytes), then records, each framed as
//! `u32 LE payload length | u32 LE CRC-32 of the payload | payload`; a payload is a kind byte and
//! a body of LEB128 varints, fixed-width hashes and addresses, U256 as a length byte plus minimal
//! big-endian bytes, and length-prefixed byte strings. The first record is [`CassetteMeta`]; a
//! finished file ends with an end record (a file without one was interrupted: it still loads and
//! says so). Pending transactions are stored as their signed EIP-2718 bytes plus the sender; a
//! read is stored as its answer only (the request is exactly the answer's keys). Binary rather than
//! JSON lines: a head is ~110 bytes instead of ~400, a raw transaction is not doubled by hex.
//!
//! Decoding never panics and never allocates more than the record holds: a record is at most
//! 32 MiB, every list length is checked against the bytes left, every frame is checksummed, and
//! each error names the file, the record number and the field.

mod codec;
mod file;
pub mod record;
mod replay;
mod source;
#[cfg(test)]
mod tests;

use alloy::primitives::{Address, B256};

pub use file::{Cassette, CassetteError, CassetteReader, CassetteStats, CassetteWriter, KindStats};
pub use replay::{EventReplay, ReplayClock, ReplayHandle, ReplayStats};
pub use source::{CassetteSource, RecordingSource};

use crate::{
    ingest::Event,
    state::{BlockInfo, ReadRequest, ReadSet},
};

/// What a cassette was recorded from and for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CassetteMeta {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The chain's block time in milliseconds (0 when unknown).
    pub block_time_ms: u64,
    /// Wall-clock time at offset 0 (unix milliseconds).
    pub started_unix_ms: u64,
    /// The executor contract the recording was made for, if any.
    pub executor: Option<Address>,
    /// Venue (pool) addresses.
    pub venues: Vec<Address>,
    /// Token addresses.
    pub tokens: Vec<Address>,
    /// Flash lender addresses.
    pub lenders: Vec<Address>,
    /// Accounts the state recorder watched.
    pub watched: Vec<Address>,
    /// Free text (what, how, which build); at most 4 KiB is kept.
    pub note: String,
}

/// An event as it arrived, `offset_ns` after the recording started.
#[derive(Clone, Debug)]
pub struct TimedEvent {
    /// Arrival offset from the start of the recording, nanoseconds.
    pub offset_ns: u64,
    /// The event. Loaded from a file, `received_at` is the load time plus the offset; a replay
    /// stamps the time it sends the event.
    pub event: Event,
}

/// A state-source call, as a cassette keys it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateCall {
    /// `block(hash)`.
    Block(B256),
    /// `latest()`.
    Latest,
    /// `read(at, req)`.
    Read {
        /// Block hash the read is pinned to.
        at: B256,
        /// What was asked.
        req: ReadRequest,
    },
}

impl std::fmt::Display for StateCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Block(h) => write!(f, "block({h})"),
            Self::Latest => f.write_str("latest()"),
            Self::Read { at, req } => write!(
                f,
                "read(at {at}: {} accounts, {} slots)",
                req.accounts.len(),
                req.slots.len()
            ),
        }
    }
}

/// How a recorded call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The node did not know the block.
    UnknownBlock,
    /// Transport trouble (the error text is not recorded: it may name the endpoint).
    Transport,
    /// The node's answer did not decode.
    Malformed,
}

/// A recorded failure of a state-source call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedFailure {
    /// Kind.
    pub kind: FailureKind,
    /// The JSON-RPC method that failed.
    pub method: String,
    /// The node's message (empty for transport failures).
    pub detail: String,
}

/// A recorded state-source answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateAnswer {
    /// `block(hash)` answered (the hash is `info.block.hash`).
    Block(BlockInfo),
    /// `latest()` answered.
    Latest(BlockInfo),
    /// `read(at, req)` answered; the request is the answer's keys (accounts with code asked when
    /// the code is present).
    Read {
        /// Block hash.
        at: B256,
        /// The answer.
        set: ReadSet,
    },
    /// A call failed.
    Failed {
        /// The call.
        call: StateCall,
        /// How.
        failure: RecordedFailure,
    },
}

/// One record of a cassette.
#[derive(Clone, Debug)]
pub enum Record {
    /// Chain metadata (always the first record).
    Meta(CassetteMeta),
    /// An ingest event with its arrival offset.
    Event(TimedEvent),
    /// A state-source answer.
    Answer(StateAnswer),
    /// The end of a finished recording: how many records came before it.
    End {
        /// Records before this one (meta included).
        records: u64,
    },
}

/// Whether two events are the same, ignoring when they were received.
pub fn same_event(a: &Event, b: &Event) -> bool {
    match (a, b) {
        (Event::Head(x), Event::Head(y)) => {
            let mut y = y.clone();
            y.received_at = x.received_at;
            *x == y
        }
        (Event::Pending(x), Event::Pending(y)) => x.chain_id == y.chain_id && x.tx == y.tx,
        (
            Event::Reorg { chain_id: c1, depth: d1, common_ancestor: a1 },
            Event::Reorg { chain_id: c2, depth: d2, common_ancestor: a2 },
        ) => c1 == c2 && d1 == d2 && a1 == a2,
        (
            Event::Connection { chain_id: c1, up: u1 },
            Event::Connection { chain_id: c2, up: u2 },
        ) => c1 == c2 && u1 == u2,
        (
            Event::Resync { chain_id: c1, reason: r1 },
            Event::Resync { chain_id: c2, reason: r2 },
        ) => c1 == c2 && r1 == r2,
        _ => false,
    }
}
