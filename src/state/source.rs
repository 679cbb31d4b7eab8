//! Where cached values come from: a node over JSON-RPC, every read pinned to one block hash.
//!
//! Reads (never submissions, which live in `exec` and are sent once) are retried by
//! [`RpcSource`] under a [`RetryPolicy`]: a per-attempt timeout, capped exponential backoff with
//! jitter, an overall deadline and an attempt cap. Transport trouble (connection, HTTP 429 or
//! 5xx, JSON-RPC rate limits, timeouts), a node that does not know the block yet, and empty or
//! undecodable answers are retried; a null or missing value is an error, never zero state.
//! When retries run out the last attempt's error is returned; every variant but
//! [`SourceError::UnknownBlock`] (which names the block) names the method.
//! Counters per method are in [`SourceStats`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::{
    eips::{BlockId, BlockNumberOrTag, RpcBlockHash},
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider},
    rpc::{
        client::{BatchRequest, Waiter},
        types::{Block, Filter, Log},
    },
    transports::{RpcError, TransportError, TransportErrorKind, http::reqwest},
};

use super::BlockRef;

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The node does not know the block (it lags, pruned it, or the block was reorged away). The
    /// read is never retried at another block and never taken as empty state.
    #[error("the node does not know block {block}: {detail}")]
    UnknownBlock {
        /// The block asked for (hash, number or tag).
        block: String,
        /// What the node said.
        detail: String,
    },
    /// Transport failure (connection, timeout, HTTP status, rate limit).
    #[error("{method}: transport error: {source}")]
    Transport {
        /// The JSON-RPC method.
        method: &'static str,
        /// The underlying error.
        #[source]
        source: TransportError,
    },
    /// The node answered something that does not decode or cannot be right (a null or missing
    /// value included: never taken as zero).
    #[error("{method}: malformed answer: {detail}")]
    Malformed {
        /// The JSON-RPC method.
        method: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// One attempt got no answer within the per-call timeout.
    #[error("{method}: no answer within {after:?}")]
    Timeout {
        /// The JSON-RPC method.
        method: &'static str,
        /// The timeout that expired.
        after: Duration,
    },
    /// The node refused the request with a JSON-RPC error that asking again will not change
    /// (not a rate limit, not an unknown block).
    #[error("{method}: the node refused: error {code}: {message}")]
    Rejected {
        /// The JSON-RPC method.
        method: &'static str,
        /// JSON-RPC error code.
        code: i64,
        /// The node's message (bounded).
        message: String,
    },
}

impl SourceError {
    /// Whether waiting and asking again may succeed (transport trouble, rate limits, timeouts, a
    /// node that lags, an empty or undecodable answer). [`RpcSource`] has already retried under
    /// its policy before returning an error: what it returns is the last attempt's error.
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. }
                | Self::UnknownBlock { .. }
                | Self::Malformed { .. }
                | Self::Timeout { .. }
        )
    }

    fn from_rpc(
        method: &'static str,
        block: &dyn std::fmt::Display,
        source: TransportError,
    ) -> Self {
        let source = without_url(source);
        match &source {
            RpcError::NullResp => {
                return Self::Malformed { method, detail: "null answer".into() };
            }
            RpcError::DeserError { err, text } => {
                let mut detail = format!("{err}: {text}");
                truncate(&mut detail, 256);
                return Self::Malformed { method, detail };
            }
            _ => {}
        }
        if let Some(resp) = source.as_error_resp() {
            let msg = resp.message.to_ascii_lowercase();
            let unknown = [
                "unknown block",
                "header not found",
                "block not found",
                "not found",
                "out of range",
                "block height is",
            ];
            if unknown.iter().any(|m| msg.contains(m)) {
                return Self::UnknownBlock {
                    block: block.to_string(),
                    detail: resp.message.to_string(),
                };
            }
            let transient = [
                "rate limit",
                "too many requests",
                "limit exceeded",
                "exceeded",
                "capacity",
                "try again",
                "timeout",
                "timed out",
                "temporarily",
                "unavailable",
                "busy",
            ];
            // 429 and -32005 (limit exceeded), -32603 (internal error) are how providers say
            // "not now"; anything else (bad params, method not found) will not change.
            if !(matches!(resp.code, 429 | -32005 | -32603)
                || transient.iter().any(|m| msg.contains(m)))
            {
                let mut message = resp.message.to_string();
                truncate(&mut message, 256);
                return Self::Rejected { method, code: resp.code, message };
            }
        }
        Self::Transport { method, source }
    }
}

/// A transport error without the endpoint URL (reqwest quotes it, and it may embed a key).
fn without_url(e: TransportError) -> TransportError {
    match e {
        RpcError::Transport(TransportErrorKind::Custom(inner)) => {
            match inner.downcast::<reqwest::Error>() {
                Ok(r) => RpcError::Transport(TransportErrorKind::Custom(Box::new(r.without_url()))),
                Err(inner) => RpcError::Transport(TransportErrorKind::Custom(inner)),
            }
        }
        other => other,
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// How [`RpcSource`] retries a read. Submissions are never retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Longest wait for one attempt (one call, or one batch). Default 2 s.
    pub call_timeout: Duration,
    /// Delay before the first retry; doubles per retry up to `max_backoff`, with ±25% jitter.
    /// Default 50 ms.
    pub initial_backoff: Duration,
    /// Longest delay between attempts. Default 1 s.
    pub max_backoff: Duration,
    /// Overall deadline of one read, attempts and delays included; no retry starts past it.
    /// Default 8 s.
    pub deadline: Duration,
    /// Most attempts per read (1: never retry). Default 8.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(2),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(8),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempt`-th failed attempt (≥ 1): capped, doubling, ±25% jitter.
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        exp.mul_f64(0.75 + fastrand::f64() * 0.5)
    }
}

/// Counters of one JSON-RPC method (relaxed atomics).
#[derive(Debug, Default)]
pub struct MethodStats {
    /// Attempts sent.
    pub attempts: AtomicU64,
    /// Attempts after the first of a read.
    pub retries: AtomicU64,
    /// Attempts that hit the per-call timeout.
    pub timeouts: AtomicU64,
    /// Attempts that failed with an error (timeouts not included).
    pub errors: AtomicU64,
    /// Reads that failed for good (error not retryable, or retries exhausted).
    pub failures: AtomicU64,
}

impl MethodStats {
    /// Reads one counter.
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-method counters of an [`RpcSource`], shared by its clones.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// `eth_getBlockByHash`.
    pub get_block_by_hash: MethodStats,
    /// `eth_getBlockByNumber` (`latest`).
    pub get_block_by_number: MethodStats,
    /// `eth_getLogs` by block hash.
    pub get_logs: MethodStats,
    /// Batched state reads (`eth_getBalance`, `eth_getTransactionCount`, `eth_getCode`,
    /// `eth_getStorageAt`), one attempt per batch.
    pub state_batch: MethodStats,
}

/// A block and the addresses its transactions touched, as far as the header, the transactions and
/// the logs tell: senders, recipients, log emitters and (with `names_holders`) every address a log
/// names in an indexed topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// The block.
    pub block: BlockRef,
    /// Addresses touched (deduplicated, sorted).
    pub touched: Vec<Address>,
    /// Whether `touched` also holds every address named in an indexed topic of the block's logs
    /// (the `from` and `to` of ERC-20 `Transfer`s, the owner of an `Approval`, a WETH `Deposit`'s
    /// holder): then a token's balance slot of a holder its logs do not name did not change in
    /// this block, and a head re-reads only the named holders' balances (see
    /// [`Refresher::map_balances`](super::Refresher::map_balances)). False for blocks recorded
    /// before holders were kept: every watched slot of a touched token is re-read.
    pub names_holders: bool,
}

/// The address in an indexed log topic, when the topic is shaped like one (its first 12 bytes
/// zero and the rest not).
fn topic_address(topic: &B256) -> Option<Address> {
    let (pad, rest) = topic.0.split_at(12);
    (pad.iter().all(|b| *b == 0) && rest.iter().any(|b| *b != 0)).then(|| Address::from_slice(rest))
}

/// What to read at a block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadRequest {
    /// Accounts: `(address, with_code)`; code is read only when asked (it never changes for a
    /// deployed contract, so refreshes skip it).
    pub accounts: Vec<(Address, bool)>,
    /// Storage slots.
    pub slots: Vec<(Address, U256)>,
}

impl ReadRequest {
    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.slots.is_empty()
    }
}

/// One account as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountRead {
    /// The account.
    pub address: Address,
    /// Balance (wei).
    pub balance: U256,
    /// Nonce.
    pub nonce: u64,
    /// Code, when it was read (`Some(empty)` for an account without code).
    pub code: Option<Bytes>,
}

/// The answers to a [`ReadRequest`], in request order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSet {
    /// Accounts.
    pub accounts: Vec<AccountRead>,
    /// Storage `(address, slot, value)`.
    pub slots: Vec<(Address, U256, U256)>,
}

/// A source of chain state pinned by block hash: a node over RPC, or a recorded cassette.
pub trait StateSource: Send + Sync {
    /// The block with this hash and what it touched.
    fn block(&self, hash: B256) -> impl Future<Output = Result<BlockInfo, SourceError>> + Send;
    /// The node's latest block and what it touched.
    fn latest(&self) -> impl Future<Output = Result<BlockInfo, SourceError>> + Send;
    /// Reads `req` at the block with hash `at`; all answers belong to that block or the call fails.
    fn read(
        &self,
        at: B256,
        req: &ReadRequest,
    ) -> impl Future<Output = Result<ReadSet, SourceError>> + Send;
}

/// [`StateSource`] over a node's JSON-RPC: batched requests, each pinned to the block hash with
/// `requireCanonical`, so a lagging node fails loudly instead of answering for an older block.
///
/// Reads are retried under its [`RetryPolicy`] (default: [`RetryPolicy::default`]) and counted
/// in its [`SourceStats`].
#[derive(Clone, Debug)]
pub struct RpcSource {
    provider: DynProvider,
    max_batch: usize,
    policy: RetryPolicy,
    stats: Arc<SourceStats>,
}

/// Label of a batched state read in errors.
const STATE_BATCH: &str = "state read batch";

impl RpcSource {
    /// A source over `provider`, sending at most `max_batch` requests per JSON-RPC batch, with
    /// the default retry policy.
    pub fn new(provider: DynProvider, max_batch: usize) -> Self {
        Self {
            provider,
            max_batch: max_batch.max(1),
            policy: RetryPolicy::default(),
            stats: Arc::default(),
        }
    }

    /// The same source with retry policy `policy`.
    #[must_use]
    pub const fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The retry policy.
    pub const fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The counters per method.
    pub const fn stats(&self) -> &Arc<SourceStats> {
        &self.stats
    }

    /// The provider.
    pub const fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// Runs `call` under the retry policy: each attempt under the per-call timeout (never past
    /// the deadline), retryable errors retried after a jittered, capped, doubling delay while
    /// attempts and the deadline allow. When they run out, the last attempt's error is returned
    /// (it names the method) and the read is counted in `failures`.
    async fn retry<T, F, Fut>(
        &self,
        method: &'static str,
        stats: &MethodStats,
        mut call: F,
    ) -> Result<T, SourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SourceError>>,
    {
        let p = &self.policy;
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut previous: Option<SourceError> = None;
        loop {
            attempt += 1;
            MethodStats::add(&stats.attempts);
            if attempt > 1 {
                MethodStats::add(&stats.retries);
            }
            let left = p.deadline.saturating_sub(started.elapsed());
            let limit = p.call_timeout.min(left).max(Duration::from_millis(1));
            let err = match tokio::time::timeout(limit, call()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    MethodStats::add(&stats.errors);
                    e
                }
                Err(_) => {
                    MethodStats::add(&stats.timeouts);
                    // An attempt cut short by the deadline says nothing about the node: report
                    // what the full attempt before it found.
                    match previous.take() {
                        Some(e) if limit < p.call_timeout => {
                            MethodStats::add(&stats.failures);
                            return Err(e);
                        }
                        _ => SourceError::Timeout { method, after: limit },
                    }
                }
            };
            if !err.is_retryable() {
                MethodStats::add(&stats.failures);
                return Err(err);
            }
            let delay = p.delay(attempt);
            if attempt >= p.max_attempts.max(1) || started.elapsed() + delay >= p.deadline {
                MethodStats::add(&stats.failures);
                tracing::warn!(target: "cantilever::state", method, attempts = attempt,
                    elapsed = ?started.elapsed(), error = %err, "read failed; retries exhausted");
                return Err(err);
            }
            tracing::debug!(target: "cantilever::state", method, attempt, error = %err,
                "read failed; retrying");
            previous = Some(err);
            tokio::time::sleep(delay).await;
        }
    }

    async fn block_info(&self, id: BlockId, label: String) -> Result<BlockInfo, SourceError> {
        let (method, stats) = match id {
            BlockId::Hash(_) => ("eth_getBlockByHash", &self.stats.get_block_by_hash),
            BlockId::Number(_) => ("eth_getBlockByNumber", &self.stats.get_block_by_number),
        };
        let block: Block = self
            .retry(method, stats, || async {
                let block: Option<Block> = match id {
                    BlockId::Hash(h) => self.provider.get_block_by_hash(h.block_hash).full().await,
                    BlockId::Number(n) => self.provider.get_block_by_number(n).full().await,
                }
                .map_err(|e| SourceError::from_rpc(method, &label, e))?;
                block.ok_or_else(|| SourceError::UnknownBlock {
                    block: label.clone(),
                    detail: "null block".into(),
                })
            })
            .await?;
        let hash = block.header.hash;
        let logs: Vec<Log> = self
            .retry("eth_getLogs", &self.stats.get_logs, || async {
                self.provider
                    .get_logs(&Filter::new().at_block_hash(hash))
                    .await
                    .map_err(|e| SourceError::from_rpc("eth_getLogs", &hash, e))
            })
            .await?;
        Ok(block_info(&block, &logs))
    }

    /// One batch of single reads at `id`; the answers in `chunk` order.
    async fn read_chunk(
        &self,
        id: BlockId,
        at: B256,
        req: &ReadRequest,
        chunk: &[(usize, u8)],
    ) -> Result<Vec<Answer>, SourceError> {
        let client = self.provider.client();
        let mut batch = BatchRequest::new(client);
        let mut waiters = Vec::with_capacity(chunk.len());
        for &(i, what) in chunk {
            let added = match what {
                0 => {
                    batch.add_call("eth_getBalance", &(req.accounts[i].0, id)).map(Pending::Balance)
                }
                1 => batch
                    .add_call("eth_getTransactionCount", &(req.accounts[i].0, id))
                    .map(Pending::Nonce),
                2 => batch.add_call("eth_getCode", &(req.accounts[i].0, id)).map(Pending::Code),
                _ => {
                    let (a, s) = req.slots[i];
                    batch.add_call("eth_getStorageAt", &(a, s, id)).map(Pending::Slot)
                }
            }
            .map_err(|source| SourceError::Transport { method: STATE_BATCH, source })?;
            waiters.push(added);
        }
        batch.send().await.map_err(|e| SourceError::from_rpc(STATE_BATCH, &at, e))?;
        let mut answers = Vec::with_capacity(waiters.len());
        for w in waiters {
            answers.push(match w {
                Pending::Balance(w) => Answer::Balance(
                    w.await.map_err(|e| SourceError::from_rpc("eth_getBalance", &at, e))?,
                ),
                Pending::Nonce(w) => {
                    let n = w
                        .await
                        .map_err(|e| SourceError::from_rpc("eth_getTransactionCount", &at, e))?;
                    Answer::Nonce(u64::try_from(n).map_err(|_| SourceError::Malformed {
                        method: "eth_getTransactionCount",
                        detail: format!("nonce {n} does not fit 64 bits"),
                    })?)
                }
                Pending::Code(w) => {
                    Answer::Code(w.await.map_err(|e| SourceError::from_rpc("eth_getCode", &at, e))?)
                }
                Pending::Slot(w) => {
                    let v =
                        w.await.map_err(|e| SourceError::from_rpc("eth_getStorageAt", &at, e))?;
                    Answer::Slot(U256::from_be_bytes(v.0))
                }
            });
        }
        Ok(answers)
    }
}

/// One decoded answer of a state batch.
enum Answer {
    Balance(U256),
    Nonce(u64),
    Code(Bytes),
    Slot(U256),
}

/// The [`BlockInfo`] of a block with full transactions and its logs.
pub(crate) fn block_info(block: &Block, logs: &[Log]) -> BlockInfo {
    use alloy::consensus::Transaction as _;
    let h = &block.header;
    let mut touched: Vec<Address> = Vec::new();
    for tx in block.transactions.txns() {
        touched.push(tx.inner.signer());
        if let Some(to) = tx.to() {
            touched.push(to);
        }
    }
    for l in logs {
        touched.push(l.address());
        // Holders the log names (a token's balance changes come with one): `Transfer(from, to)`,
        // `Approval(owner, spender)`, `Deposit(holder)` and the like.
        touched.extend(l.topics().iter().skip(1).filter_map(topic_address));
    }
    touched.sort_unstable();
    touched.dedup();
    BlockInfo {
        block: BlockRef {
            number: h.number,
            hash: h.hash,
            parent_hash: h.parent_hash,
            timestamp: h.timestamp,
            base_fee: h.base_fee_per_gas.unwrap_or(0),
            gas_limit: h.gas_limit,
            gas_used: h.gas_used,
            coinbase: h.beneficiary,
            prevrandao: h.mix_hash,
        },
        touched,
        names_holders: true,
    }
}

enum Pending {
    Balance(Waiter<U256>),
    Nonce(Waiter<U256>),
    Code(Waiter<Bytes>),
    Slot(Waiter<B256>),
}

impl StateSource for RpcSource {
    async fn block(&self, hash: B256) -> Result<BlockInfo, SourceError> {
        self.block_info(BlockId::Hash(RpcBlockHash::from_hash(hash, None)), hash.to_string()).await
    }

    async fn latest(&self) -> Result<BlockInfo, SourceError> {
        self.block_info(BlockId::Number(BlockNumberOrTag::Latest), "latest".into()).await
    }

    async fn read(&self, at: B256, req: &ReadRequest) -> Result<ReadSet, SourceError> {
        let id = BlockId::Hash(RpcBlockHash::from_hash(at, Some(true)));
        // Flatten into single requests, then send them in batches of `max_batch`.
        let mut items: Vec<(usize, u8)> = Vec::new(); // (index into accounts/slots, what)
        for (i, (_, code)) in req.accounts.iter().enumerate() {
            items.push((i, 0));
            items.push((i, 1));
            if *code {
                items.push((i, 2));
            }
        }
        items.extend((0..req.slots.len()).map(|i| (i, 3)));

        let mut out = ReadSet {
            accounts: req
                .accounts
                .iter()
                .map(|(a, _)| AccountRead { address: *a, ..Default::default() })
                .collect(),
            slots: req.slots.iter().map(|(a, s)| (*a, *s, U256::ZERO)).collect(),
        };
        for chunk in items.chunks(self.max_batch) {
            let answers = self
                .retry(STATE_BATCH, &self.stats.state_batch, || self.read_chunk(id, at, req, chunk))
                .await?;
            for (&(i, _), answer) in chunk.iter().zip(answers) {
                match answer {
                    Answer::Balance(b) => out.accounts[i].balance = b,
                    Answer::Nonce(n) => out.accounts[i].nonce = n,
                    Answer::Code(c) => out.accounts[i].code = Some(c),
                    Answer::Slot(v) => out.slots[i].2 = v,
                }
            }
        }
        Ok(out)
    }
}
