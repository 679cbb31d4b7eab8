//! State sources around cassettes: one that records every answer of another source, and one that
//! answers only from a cassette.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use alloy::primitives::{Address, B256, Bytes, U256, map::HashMap};

use super::{CassetteWriter, FailureKind, RecordedFailure, StateAnswer, StateCall};
use crate::state::{AccountRead, BlockInfo, ReadRequest, ReadSet, SourceError, StateSource};

/// A [`StateSource`] that forwards every call to `S` and appends the call and its answer (or its
/// failure) to a cassette. Answers are returned unchanged. A failed cassette write never fails the
/// call: the writer closes, keeps the cause ([`CassetteWriter::failure`]) and it is logged once.
#[derive(Debug, Clone)]
pub struct RecordingSource<S> {
    inner: S,
    writer: Arc<CassetteWriter>,
    warned: Arc<AtomicBool>,
}

impl<S: StateSource> RecordingSource<S> {
    /// Records `inner`'s answers into `writer`.
    pub fn new(inner: S, writer: Arc<CassetteWriter>) -> Self {
        Self { inner, writer, warned: Arc::new(AtomicBool::new(false)) }
    }

    /// The wrapped source.
    pub const fn inner(&self) -> &S {
        &self.inner
    }

    /// The writer.
    pub const fn writer(&self) -> &Arc<CassetteWriter> {
        &self.writer
    }

    fn write(&self, answer: StateAnswer) {
        if let Err(e) = self.writer.answer(answer)
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(target: "cantilever::cassette", error = %e, "state answers are no longer recorded");
        }
    }

    fn write_failure(&self, call: StateCall, e: &SourceError) {
        let failure = match e {
            SourceError::UnknownBlock { detail, .. } => RecordedFailure {
                kind: FailureKind::UnknownBlock,
                method: method_of(&call).to_owned(),
                detail: detail.clone(),
            },
            // The transport error's text may name the endpoint (and a key in it): not recorded.
            SourceError::Transport { method, .. } | SourceError::Timeout { method, .. } => {
                RecordedFailure {
                    kind: FailureKind::Transport,
                    method: (*method).to_owned(),
                    detail: String::new(),
                }
            }
            SourceError::Malformed { method, detail } => RecordedFailure {
                kind: FailureKind::Malformed,
                method: (*method).to_owned(),
                detail: detail.clone(),
            },
            // A node's refusal of the request itself (bad params): recorded as an answer that
            // does not decode, with the node's message.
            SourceError::Rejected { method, message, .. } => RecordedFailure {
                kind: FailureKind::Malformed,
                method: (*method).to_owned(),
                detail: message.clone(),
            },
        };
        self.write(StateAnswer::Failed { call, failure });
    }
}

const fn method_of(call: &StateCall) -> &'static str {
    match call {
        StateCall::Block(_) => "eth_getBlockByHash",
        StateCall::Latest => "eth_getBlockByNumber",
        StateCall::Read { .. } => "batch",
    }
}

impl<S: StateSource> StateSource for RecordingSource<S> {
    async fn block(&self, hash: B256) -> Result<BlockInfo, SourceError> {
        let r = self.inner.block(hash).await;
        match &r {
            Ok(info) => self.write(StateAnswer::Block(info.clone())),
            Err(e) => self.write_failure(StateCall::Block(hash), e),
        }
        r
    }

    async fn latest(&self) -> Result<BlockInfo, SourceError> {
        let r = self.inner.latest().await;
        match &r {
            Ok(info) => self.write(StateAnswer::Latest(info.clone())),
            Err(e) => self.write_failure(StateCall::Latest, e),
        }
        r
    }

    async fn read(&self, at: B256, req: &ReadRequest) -> Result<ReadSet, SourceError> {
        let r = self.inner.read(at, req).await;
        match &r {
            Ok(set) => {
                // The request must be recoverable from the answer (the format stores only the
                // answer); a source that answers other keys is recorded as asked.
                if request_of(set) == *req {
                    self.write(StateAnswer::Read { at, set: set.clone() });
                } else {
                    let failure = RecordedFailure {
                        kind: FailureKind::Malformed,
                        method: "read".into(),
                        detail: "the answer's keys differ from the request".into(),
                    };
                    self.write(StateAnswer::Failed {
                        call: StateCall::Read { at, req: req.clone() },
                        failure,
                    });
                }
            }
            Err(e) => self.write_failure(StateCall::Read { at, req: req.clone() }, e),
        }
        r
    }
}

/// The request a read answer answers: its accounts (code asked when present) and slots.
pub(crate) fn request_of(set: &ReadSet) -> ReadRequest {
    ReadRequest {
        accounts: set.accounts.iter().map(|a| (a.address, a.code.is_some())).collect(),
        slots: set.slots.iter().map(|(a, s, _)| (*a, *s)).collect(),
    }
}

#[derive(Debug, Default)]
struct BlockState {
    /// Balance, nonce and, when it was read, code.
    accounts: HashMap<Address, (U256, u64, Option<Bytes>)>,
    slots: HashMap<(Address, U256), U256>,
}

/// A call as the index keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CallKey {
    Block(B256),
    Latest,
    Read(B256, Vec<(Address, bool)>, Vec<(Address, U256)>),
}

impl CallKey {
    fn of(call: &StateCall) -> Self {
        match call {
            StateCall::Block(h) => Self::Block(*h),
            StateCall::Latest => Self::Latest,
            StateCall::Read { at, req } => Self::Read(*at, req.accounts.clone(), req.slots.clone()),
        }
    }
}

/// What one recorded call returned.
#[derive(Debug)]
enum Outcome {
    Block(BlockInfo),
    /// A read that succeeded (its values are in the block's state).
    Read,
    Failed(RecordedFailure),
}

/// The outcomes of one call in recorded order, and how many replays have used.
#[derive(Debug, Default)]
struct Calls {
    outcomes: Vec<Outcome>,
    next: AtomicUsize,
}

impl Calls {
    /// The next outcome; the last repeats once all are used.
    fn next(&self) -> Option<&Outcome> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.outcomes.get(i).or_else(|| self.outcomes.last())
    }
}

#[derive(Debug, Default)]
struct Index {
    /// Every block known by hash (from `block` and `latest` answers).
    blocks: HashMap<B256, BlockInfo>,
    /// Every value read, by block hash.
    state: HashMap<B256, BlockState>,
    /// Each call's outcomes in order: block calls, and the reads that failed at least once (a
    /// read that never failed is answered from `state` whatever its place in the order).
    calls: HashMap<CallKey, Calls>,
    /// Whether any read failed while recording (otherwise reads skip the `calls` lookup).
    read_failures: bool,
}

/// A [`StateSource`] answering only from recorded answers; it never touches the network.
///
/// A call made while recording gets the recorded outcomes in order (success or failure; the
/// last repeats once used up), so the same sequence of calls replays exactly, lagging-node
/// failures included. A call never made while recording is answered from what was recorded
/// when that is exact: `block(hash)` from any answer holding that block, `read(at, req)` when
/// every key asked was read at `at` (values at one block hash never change, so answers of
/// different reads at `at` combine exactly; code must have been read where it is asked).
/// Anything else is a miss: [`SourceError::Rejected`] with method `"cassette"` and a message
/// naming the call and the key not recorded (not retryable: asking again cannot help). Clones
/// share the replay position.
#[derive(Debug, Clone)]
pub struct CassetteSource {
    index: Arc<Index>,
}

impl CassetteSource {
    /// Indexes `answers`.
    pub fn new(answers: &[StateAnswer]) -> Self {
        let mut ix = Index::default();
        for a in answers {
            let (key, outcome) = match a {
                StateAnswer::Block(info) => {
                    ix.blocks.insert(info.block.hash, info.clone());
                    (CallKey::Block(info.block.hash), Outcome::Block(info.clone()))
                }
                StateAnswer::Latest(info) => {
                    ix.blocks.insert(info.block.hash, info.clone());
                    (CallKey::Latest, Outcome::Block(info.clone()))
                }
                StateAnswer::Read { at, set } => {
                    let st = ix.state.entry(*at).or_default();
                    for acc in &set.accounts {
                        let e = st.accounts.entry(acc.address).or_insert((
                            acc.balance,
                            acc.nonce,
                            None,
                        ));
                        e.0 = acc.balance;
                        e.1 = acc.nonce;
                        if acc.code.is_some() {
                            e.2.clone_from(&acc.code);
                        }
                    }
                    for (addr, slot, value) in &set.slots {
                        st.slots.insert((*addr, *slot), *value);
                    }
                    let req = request_of(set);
                    (CallKey::Read(*at, req.accounts, req.slots), Outcome::Read)
                }
                StateAnswer::Failed { call, failure } => {
                    (CallKey::of(call), Outcome::Failed(failure.clone()))
                }
            };
            ix.calls.entry(key).or_default().outcomes.push(outcome);
        }
        ix.calls.retain(|k, c| {
            !matches!(k, CallKey::Read(..))
                || c.outcomes.iter().any(|o| matches!(o, Outcome::Failed(_)))
        });
        ix.read_failures = ix.calls.keys().any(|k| matches!(k, CallKey::Read(..)));
        Self { index: Arc::new(ix) }
    }

    /// The value of `address`'s `slot` that a read at block `at` recorded.
    pub fn slot_at(&self, at: &B256, address: Address, slot: U256) -> Option<U256> {
        self.index.state.get(at)?.slots.get(&(address, slot)).copied()
    }

    /// The balance, nonce and (when it was read there) code of `address` that a read at block
    /// `at` recorded.
    pub fn account_at(&self, at: &B256, address: Address) -> Option<AccountRead> {
        let (balance, nonce, code) = self.index.state.get(at)?.accounts.get(&address)?;
        Some(AccountRead { address, balance: *balance, nonce: *nonce, code: code.clone() })
    }

    /// The failure `read(at, req)` would replay next, if the recording has one for it there;
    /// takes its turn as `read` would.
    pub fn read_failure(&self, at: B256, req: &ReadRequest) -> Option<SourceError> {
        if !self.index.read_failures {
            return None;
        }
        let call = StateCall::Read { at, req: req.clone() };
        match self.next(&call) {
            Some(Outcome::Failed(f)) => Some(Self::failure(&call, f)),
            _ => None,
        }
    }

    /// Blocks known by hash.
    pub fn blocks(&self) -> usize {
        self.index.blocks.len()
    }

    /// Whether a block with `hash` is recorded.
    pub fn has_block(&self, hash: &B256) -> bool {
        self.index.blocks.contains_key(hash)
    }

    /// The next recorded outcome of `call`, if it was made while recording.
    fn next(&self, call: &StateCall) -> Option<&Outcome> {
        self.index.calls.get(&CallKey::of(call))?.next()
    }

    fn failure(call: &StateCall, f: &RecordedFailure) -> SourceError {
        match f.kind {
            FailureKind::UnknownBlock => SourceError::UnknownBlock {
                block: match call {
                    StateCall::Block(h) | StateCall::Read { at: h, .. } => h.to_string(),
                    StateCall::Latest => "latest".into(),
                },
                detail: f.detail.clone(),
            },
            FailureKind::Transport | FailureKind::Malformed => SourceError::Malformed {
                method: static_method(&f.method),
                detail: format!(
                    "recorded failure{}{}",
                    if f.detail.is_empty() { "" } else { ": " },
                    f.detail
                ),
            },
        }
    }

    fn miss(call: &StateCall, what: &str) -> SourceError {
        SourceError::Rejected {
            method: "cassette",
            code: 0,
            message: format!(
                "{call}: not recorded: {what} (a cassette holds exactly the reads of the engine \
                 that recorded it; after a change to what the engine reads, record it again: \
                 README, \"Regenerating the recorded fixtures\")"
            ),
        }
    }

    fn answer_read(&self, at: B256, req: &ReadRequest) -> Result<ReadSet, String> {
        let st = self.index.state.get(&at).ok_or_else(|| format!("no read at block {at}"))?;
        let mut out = ReadSet {
            accounts: Vec::with_capacity(req.accounts.len()),
            slots: Vec::with_capacity(req.slots.len()),
        };
        for (address, with_code) in &req.accounts {
            let (balance, nonce, code) =
                st.accounts.get(address).ok_or_else(|| format!("account {address}"))?;
            let code = if *with_code {
                Some(code.clone().ok_or_else(|| format!("code of {address}"))?)
            } else {
                None
            };
            out.accounts.push(AccountRead {
                address: *address,
                balance: *balance,
                nonce: *nonce,
                code,
            });
        }
        for (address, slot) in &req.slots {
            let v = st
                .slots
                .get(&(*address, *slot))
                .ok_or_else(|| format!("slot {slot:#x} of {address}"))?;
            out.slots.push((*address, *slot, *v));
        }
        Ok(out)
    }

    fn block_answer(&self, call: &StateCall, hash: Option<B256>) -> Result<BlockInfo, SourceError> {
        match self.next(call) {
            Some(Outcome::Block(info)) => Ok(info.clone()),
            Some(Outcome::Failed(f)) => Err(Self::failure(call, f)),
            Some(Outcome::Read) | None => hash
                .and_then(|h| self.index.blocks.get(&h).cloned())
                .ok_or_else(|| Self::miss(call, "no answer")),
        }
    }
}

/// The method names [`RpcSource`](crate::state::RpcSource) reports, as static strings.
fn static_method(m: &str) -> &'static str {
    const KNOWN: [&str; 8] = [
        "eth_getBlockByHash",
        "eth_getBlockByNumber",
        "eth_getLogs",
        "eth_getBalance",
        "eth_getTransactionCount",
        "eth_getCode",
        "eth_getStorageAt",
        "batch",
    ];
    KNOWN.iter().find(|k| **k == m).copied().unwrap_or("recorded")
}

impl StateSource for CassetteSource {
    async fn block(&self, hash: B256) -> Result<BlockInfo, SourceError> {
        self.block_answer(&StateCall::Block(hash), Some(hash))
    }

    async fn latest(&self) -> Result<BlockInfo, SourceError> {
        self.block_answer(&StateCall::Latest, None)
    }

    async fn read(&self, at: B256, req: &ReadRequest) -> Result<ReadSet, SourceError> {
        if let Some(e) = self.read_failure(at, req) {
            return Err(e);
        }
        self.answer_read(at, req)
            .map_err(|what| Self::miss(&StateCall::Read { at, req: req.clone() }, &what))
    }
}
