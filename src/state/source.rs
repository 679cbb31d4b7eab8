//! Where cached values come from: a node over JSON-RPC, every read pinned to one block hash.

use std::future::Future;

use alloy::{
    eips::{BlockId, BlockNumberOrTag, RpcBlockHash},
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider},
    rpc::{
        client::{BatchRequest, Waiter},
        types::{Block, Filter, Log},
    },
    transports::TransportError,
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
    /// The node answered something that does not decode or cannot be right.
    #[error("{method}: malformed answer: {detail}")]
    Malformed {
        /// The JSON-RPC method.
        method: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl SourceError {
    /// Whether waiting and asking again may succeed (transport trouble, a node that lags).
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Transport { .. } | Self::UnknownBlock { .. })
    }

    fn from_rpc(
        method: &'static str,
        block: &dyn std::fmt::Display,
        source: TransportError,
    ) -> Self {
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
        }
        Self::Transport { method, source }
    }
}

/// A block and the addresses its transactions touched, as far as the header, the transactions and
/// the logs tell: senders, recipients, and log emitters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// The block.
    pub block: BlockRef,
    /// Addresses touched (deduplicated, sorted).
    pub touched: Vec<Address>,
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
#[derive(Clone, Debug)]
pub struct RpcSource {
    provider: DynProvider,
    max_batch: usize,
}

impl RpcSource {
    /// A source over `provider`, sending at most `max_batch` requests per JSON-RPC batch.
    pub fn new(provider: DynProvider, max_batch: usize) -> Self {
        Self { provider, max_batch: max_batch.max(1) }
    }

    /// The provider.
    pub const fn provider(&self) -> &DynProvider {
        &self.provider
    }

    async fn block_info(&self, id: BlockId, label: String) -> Result<BlockInfo, SourceError> {
        let block: Option<Block> = match id {
            BlockId::Hash(h) => self.provider.get_block_by_hash(h.block_hash).full().await,
            BlockId::Number(n) => self.provider.get_block_by_number(n).full().await,
        }
        .map_err(|e| SourceError::from_rpc("eth_getBlockByHash", &label, e))?;
        let block = block.ok_or_else(|| SourceError::UnknownBlock {
            block: label.clone(),
            detail: "null block".into(),
        })?;
        let hash = block.header.hash;
        let logs: Vec<Log> = self
            .provider
            .get_logs(&Filter::new().at_block_hash(hash))
            .await
            .map_err(|e| SourceError::from_rpc("eth_getLogs", &hash, e))?;
        Ok(block_info(&block, &logs))
    }
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
    touched.extend(logs.iter().map(|l| l.address()));
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
        let client = self.provider.client();
        for chunk in items.chunks(self.max_batch) {
            let mut batch = BatchRequest::new(client);
            let mut waiters = Vec::with_capacity(chunk.len());
            for &(i, what) in chunk {
                let added = match what {
                    0 => batch
                        .add_call("eth_getBalance", &(req.accounts[i].0, id))
                        .map(Pending::Balance),
                    1 => batch
                        .add_call("eth_getTransactionCount", &(req.accounts[i].0, id))
                        .map(Pending::Nonce),
                    2 => batch.add_call("eth_getCode", &(req.accounts[i].0, id)).map(Pending::Code),
                    _ => {
                        let (a, s) = req.slots[i];
                        batch.add_call("eth_getStorageAt", &(a, s, id)).map(Pending::Slot)
                    }
                }
                .map_err(|source| SourceError::Transport { method: "batch", source })?;
                waiters.push((i, added));
            }
            batch.send().await.map_err(|e| SourceError::from_rpc("batch", &at, e))?;
            for (i, w) in waiters {
                match w {
                    Pending::Balance(w) => {
                        out.accounts[i].balance =
                            w.await.map_err(|e| SourceError::from_rpc("eth_getBalance", &at, e))?;
                    }
                    Pending::Nonce(w) => {
                        let n = w.await.map_err(|e| {
                            SourceError::from_rpc("eth_getTransactionCount", &at, e)
                        })?;
                        out.accounts[i].nonce =
                            u64::try_from(n).map_err(|_| SourceError::Malformed {
                                method: "eth_getTransactionCount",
                                detail: format!("nonce {n} does not fit 64 bits"),
                            })?;
                    }
                    Pending::Code(w) => {
                        out.accounts[i].code = Some(
                            w.await.map_err(|e| SourceError::from_rpc("eth_getCode", &at, e))?,
                        );
                    }
                    Pending::Slot(w) => {
                        let v = w
                            .await
                            .map_err(|e| SourceError::from_rpc("eth_getStorageAt", &at, e))?;
                        out.slots[i].2 = U256::from_be_bytes(v.0);
                    }
                }
            }
        }
        Ok(out)
    }
}
