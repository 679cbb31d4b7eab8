//! Inclusion tracking: did a submission land, at what cost, and what did it earn?
//!
//! A [`Tracked`] submission is our transactions, the block they target, and how many blocks after
//! it to keep looking. [`InclusionTracker::check`] is called with the current head (each new
//! block) and polls receipts over HTTP; it answers `None` while undecided, then an
//! [`InclusionOutcome`]: landed (included or reverted, with gas and effective gas price per
//! transaction) or missed with a [`MissReason`]. Realised PnL is the profit holder's balance of
//! the profit token at the inclusion block minus at the block before, next to the gas paid.
//! Reads are idempotent: a [`TrackError`] means "ask again", never a decision.

use std::time::Duration;

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, I256, U256},
    providers::{Provider, RootProvider},
    rpc::types::{TransactionReceipt, TransactionRequest},
    sol_types::SolCall,
    transports::{RpcError, TransportErrorKind},
};
use futures::future::join_all;

use super::{error::SubmitSetupError, error::TrackError, signer::SignedTx, submit::RpcFailure};
use crate::{config::EndpointUrl, contracts::TestToken};

/// One of our transactions to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedTx {
    /// Transaction hash.
    pub hash: B256,
    /// Sender (the executor EOA).
    pub from: Address,
    /// Sender nonce.
    pub nonce: u64,
}

impl From<&SignedTx> for TrackedTx {
    fn from(tx: &SignedTx) -> Self {
        Self { hash: tx.hash, from: tx.from, nonce: tx.nonce }
    }
}

/// Where realised profit is measured: `token.balanceOf(holder)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfitProbe {
    /// The profit token (ERC-20).
    pub token: Address,
    /// The account that keeps the profit (the executor contract).
    pub holder: Address,
}

/// A submission to track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// Our transactions, in nonce order.
    pub txs: Vec<TrackedTx>,
    /// The block the submission targets.
    pub target_block: u64,
    /// Blocks after the target to keep looking (0 for bundles, which target one block).
    pub window: u64,
    /// Hashes of our own later transactions that reuse these nonces (a replacement): when one
    /// of them lands instead, the miss is [`MissReason::Replaced`].
    pub replaced_by: Vec<B256>,
    /// Where to measure realised profit, if anywhere.
    pub profit: Option<ProfitProbe>,
}

impl Tracked {
    /// Tracks `txs` for `target_block` and `window` blocks after it.
    pub fn new(txs: &[SignedTx], target_block: u64, window: u64) -> Self {
        Self {
            txs: txs.iter().map(TrackedTx::from).collect(),
            target_block,
            window,
            replaced_by: Vec::new(),
            profit: None,
        }
    }

    /// The same, measuring realised profit with `probe`.
    pub fn with_profit(self, probe: ProfitProbe) -> Self {
        Self { profit: Some(probe), ..self }
    }

    /// The last block this submission can still be decided as "not yet".
    pub fn last_block(&self) -> u64 {
        self.target_block.saturating_add(self.window)
    }
}

/// One mined transaction of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxReceiptSummary {
    /// Transaction hash.
    pub hash: B256,
    /// Block it was mined in.
    pub block: u64,
    /// That block's hash (a reorg that replaces the block orphans the transaction).
    pub block_hash: B256,
    /// Index within the block.
    pub index: u64,
    /// Gas used.
    pub gas_used: u64,
    /// Effective gas price paid, in wei.
    pub effective_gas_price: u128,
    /// Whether it succeeded (status 1).
    pub success: bool,
}

impl TxReceiptSummary {
    /// `gas_used × effective_gas_price`, in wei.
    pub fn gas_cost_wei(&self) -> U256 {
        U256::from(self.gas_used) * U256::from(self.effective_gas_price)
    }
}

/// Realised profit of a landed submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealisedPnl {
    /// The profit token.
    pub token: Address,
    /// Balance of the holder at the block before the first inclusion.
    pub balance_before: U256,
    /// Balance of the holder at the (last) inclusion block.
    pub balance_after: U256,
    /// Gas paid by our transactions, in wei.
    pub gas_cost_wei: U256,
}

impl RealisedPnl {
    /// `balance_after − balance_before`, in token units (saturating at the `I256` range). It also
    /// counts any other transfer to or from the holder in the same blocks.
    pub fn token_delta(&self) -> I256 {
        signed(self.balance_after).saturating_sub(signed(self.balance_before))
    }

    /// `token_delta − gas_cost_wei`: the net result when the profit token is the chain's wrapped
    /// native token (otherwise convert the gas cost first and use [`token_delta`](Self::token_delta)).
    pub fn net_wei(&self) -> I256 {
        self.token_delta().saturating_sub(signed(self.gas_cost_wei))
    }
}

/// `v` as a signed integer, saturating at `I256::MAX`.
fn signed(v: U256) -> I256 {
    I256::try_from(v).unwrap_or(I256::MAX)
}

/// Our transactions that were mined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// The (last) block they were mined in.
    pub block: u64,
    /// One summary per mined transaction, in the order tracked.
    pub txs: Vec<TxReceiptSummary>,
    /// Tracked transactions that were not mined within the window (only for multi-transaction
    /// raw submissions; bundles land whole or not at all).
    pub missing: Vec<B256>,
    /// Total gas used.
    pub gas_used: u64,
    /// Total gas paid, in wei.
    pub gas_cost_wei: U256,
    /// Realised profit, when a [`ProfitProbe`] was given.
    pub pnl: Option<RealisedPnl>,
}

/// Why a submission did not land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissReason {
    /// Not in the target block nor the window after it, and the nonce is still free.
    NotIncluded,
    /// The nonce was consumed by a transaction that is not one of ours (out-of-band use of the
    /// key, or a reorg replay): resync nonces.
    NonceUsedByOther {
        /// The consumed nonce.
        nonce: u64,
    },
    /// One of our own replacements landed instead.
    Replaced {
        /// The replacement that landed.
        by: B256,
    },
}

/// The decision about one tracked submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InclusionOutcome {
    /// Every mined transaction of ours succeeded.
    Included(Landed),
    /// At least one mined transaction of ours reverted (gas was paid).
    Reverted(Landed),
    /// Nothing of ours was mined.
    Missed {
        /// Why.
        reason: MissReason,
    },
}

/// Polls receipts and balances over HTTP.
#[derive(Debug, Clone)]
pub struct InclusionTracker {
    provider: RootProvider,
    url: EndpointUrl,
    timeout: Duration,
}

impl InclusionTracker {
    /// A tracker reading from `url` (the chain's `http_url`), each read under `timeout`.
    ///
    /// # Errors
    /// [`SubmitSetupError::BadUrl`] when `url` is not http(s).
    pub fn new(
        chain: &str,
        url: &EndpointUrl,
        timeout: Duration,
    ) -> Result<Self, SubmitSetupError> {
        Ok(Self {
            provider: super::submit::http_provider(url, chain, "http_url")?,
            url: url.clone(),
            timeout,
        })
    }

    /// Decides `tracked` as of chain head `head`: `None` while its transactions may still land.
    ///
    /// Cancel-safe (reads only).
    ///
    /// # Errors
    /// [`TrackError`] when a read fails or times out; ask again later.
    pub async fn check(
        &self,
        tracked: &Tracked,
        head: u64,
    ) -> Result<Option<InclusionOutcome>, TrackError> {
        let receipts = join_all(tracked.txs.iter().map(|t| self.receipt(t.hash))).await;
        let mut mined = Vec::new();
        let mut missing = Vec::new();
        for (t, r) in tracked.txs.iter().zip(receipts) {
            match r? {
                Some(summary) => mined.push(summary),
                None => missing.push(*t),
            }
        }
        if missing.is_empty() {
            return self.landed(tracked, mined, Vec::new()).await.map(Some);
        }
        // A missing transaction whose nonce is already used on chain can never land.
        let mut nonce_taken = None;
        for t in &missing {
            if self.nonce_count(t.from).await? > t.nonce {
                nonce_taken = Some(t.nonce);
                break;
            }
        }
        if nonce_taken.is_none() && head < tracked.last_block() {
            return Ok(None);
        }
        if nonce_taken.is_some() {
            // The nonce moved between the receipt read and the nonce read: the transaction may
            // have been mined in between. Read the receipts again before calling it a miss.
            let mut still = Vec::new();
            for t in missing {
                match self.receipt(t.hash).await? {
                    Some(summary) => mined.push(summary),
                    None => still.push(t),
                }
            }
            missing = still;
            if missing.is_empty() {
                return self.landed(tracked, mined, Vec::new()).await.map(Some);
            }
        }
        if !mined.is_empty() {
            let missing = missing.iter().map(|t| t.hash).collect();
            return self.landed(tracked, mined, missing).await.map(Some);
        }
        for by in &tracked.replaced_by {
            if self.receipt(*by).await?.is_some() {
                return Ok(Some(InclusionOutcome::Missed {
                    reason: MissReason::Replaced { by: *by },
                }));
            }
        }
        let reason = match nonce_taken {
            Some(nonce) => MissReason::NonceUsedByOther { nonce },
            None => MissReason::NotIncluded,
        };
        Ok(Some(InclusionOutcome::Missed { reason }))
    }

    /// Polls [`check`](Self::check) every `interval` against the node's block number until it
    /// decides. For tools and tests; the bot calls `check` on each new head instead.
    ///
    /// # Errors
    /// The first [`TrackError`].
    pub async fn wait(
        &self,
        tracked: &Tracked,
        interval: Duration,
    ) -> Result<InclusionOutcome, TrackError> {
        loop {
            let head = self.read("eth_blockNumber", self.provider.get_block_number()).await?;
            if let Some(outcome) = self.check(tracked, head).await? {
                return Ok(outcome);
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// The `latest` transaction count of `address` (the nonce to resync to after a node said ours
    /// was off).
    ///
    /// # Errors
    /// [`TrackError`] when the read fails or times out.
    pub async fn nonce_at_latest(&self, address: Address) -> Result<u64, TrackError> {
        self.read("eth_getTransactionCount", self.provider.get_transaction_count(address)).await
    }

    /// The node's latest block number.
    ///
    /// # Errors
    /// [`TrackError`] when the read fails or times out.
    pub async fn head(&self) -> Result<u64, TrackError> {
        self.read("eth_blockNumber", self.provider.get_block_number()).await
    }

    /// The hash of the canonical block `number`, `None` when the node has no such block yet.
    ///
    /// # Errors
    /// [`TrackError`] when the read fails or times out.
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>, TrackError> {
        let call = format!("eth_getBlockByNumber {number}");
        let block = self
            .read(&call, self.provider.get_block_by_number(number.into()).into_future())
            .await?;
        Ok(block.map(|b| b.header.hash))
    }

    /// Whether every mined transaction of `landed` is still in the block it was seen in (a
    /// reorg that replaced that block orphans it: its receipt is gone or names another block).
    ///
    /// # Errors
    /// [`TrackError`] when a read fails or times out.
    pub async fn is_canonical(&self, landed: &Landed) -> Result<bool, TrackError> {
        for tx in &landed.txs {
            match self.receipt(tx.hash).await? {
                Some(now) if now.block_hash == tx.block_hash => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    async fn landed(
        &self,
        tracked: &Tracked,
        txs: Vec<TxReceiptSummary>,
        missing: Vec<B256>,
    ) -> Result<InclusionOutcome, TrackError> {
        let first = txs.iter().map(|t| t.block).min().unwrap_or_default();
        let block = txs.iter().map(|t| t.block).max().unwrap_or_default();
        let gas_used = txs.iter().map(|t| t.gas_used).sum();
        let gas_cost_wei = txs.iter().map(TxReceiptSummary::gas_cost_wei).sum();
        let pnl = match tracked.profit {
            Some(probe) => Some(RealisedPnl {
                token: probe.token,
                balance_before: self.balance(probe, first.saturating_sub(1)).await?,
                balance_after: self.balance(probe, block).await?,
                gas_cost_wei,
            }),
            None => None,
        };
        let all_ok = txs.iter().all(|t| t.success);
        let landed = Landed { block, txs, missing, gas_used, gas_cost_wei, pnl };
        Ok(if all_ok {
            InclusionOutcome::Included(landed)
        } else {
            InclusionOutcome::Reverted(landed)
        })
    }

    async fn receipt(&self, hash: B256) -> Result<Option<TxReceiptSummary>, TrackError> {
        let call = format!("eth_getTransactionReceipt {hash}");
        let receipt: Option<TransactionReceipt> =
            self.read(&call, self.provider.get_transaction_receipt(hash)).await?;
        let Some(r) = receipt else { return Ok(None) };
        // A receipt without a block is pending on some nodes: not mined yet.
        let Some(block) = r.block_number else { return Ok(None) };
        Ok(Some(TxReceiptSummary {
            hash,
            block,
            block_hash: r.block_hash.unwrap_or_default(),
            index: r.transaction_index.unwrap_or_default(),
            gas_used: r.gas_used,
            effective_gas_price: r.effective_gas_price,
            success: r.status(),
        }))
    }

    async fn nonce_count(&self, from: Address) -> Result<u64, TrackError> {
        let call = format!("eth_getTransactionCount {from}");
        self.read(&call, self.provider.get_transaction_count(from).latest().into_future()).await
    }

    async fn balance(&self, probe: ProfitProbe, block: u64) -> Result<U256, TrackError> {
        let call = format!("balanceOf({}) of {} at block {block}", probe.holder, probe.token);
        let data = TestToken::balanceOfCall::new((probe.holder,)).abi_encode();
        let req = TransactionRequest::default().to(probe.token).input(data.into());
        let out = self
            .read(&call, self.provider.call(req).block(BlockId::number(block)).into_future())
            .await?;
        TestToken::balanceOfCall::abi_decode_returns(&out)
            .map_err(|e| TrackError { call, reason: format!("undecodable answer: {e}") })
    }

    /// Awaits one read under the timeout, mapping failures to a URL-free [`TrackError`].
    async fn read<T>(
        &self,
        call: &str,
        fut: impl std::future::IntoFuture<Output = Result<T, RpcError<TransportErrorKind>>>,
    ) -> Result<T, TrackError> {
        match tokio::time::timeout(self.timeout, fut.into_future()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(TrackError {
                call: call.to_owned(),
                reason: RpcFailure::from_rpc(&e, self.url.expose_secret()).describe(),
            }),
            Err(_) => Err(TrackError { call: call.to_owned(), reason: "timed out".into() }),
        }
    }
}
