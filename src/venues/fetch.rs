//! State decoding over JSON-RPC: the error every venue's `fetch` returns and a small helper that
//! runs typed view calls as one JSON-RPC batch of `eth_call`s pinned to one block.
//!
//! A venue's state is read with view calls only (never raw storage slots), so any contract with the
//! venue's public interface decodes, and all calls of one venue go out in **one** batch at the same
//! [`BlockId`], so the values belong together. Pin a block number or hash: with `latest` a node may
//! answer the calls of one batch at different heads.
//!
//! ```no_run
//! # async fn demo(p: impl alloy::providers::Provider, pair: alloy::primitives::Address)
//! # -> Result<(), cantilever::venues::fetch::FetchError> {
//! use cantilever::{contracts::UniV2Pair, venues::fetch::CallBatch};
//! let mut batch = CallBatch::new(p.client(), pair, alloy::eips::BlockId::number(1));
//! let token0 = batch.add(pair, &UniV2Pair::token0Call {})?;
//! let reserves = batch.add(pair, &UniV2Pair::getReservesCall {})?;
//! batch.send().await?;
//! let (token0, reserves) = (token0.get().await?, reserves.get().await?);
//! # let _ = (token0, reserves); Ok(()) }
//! ```

use std::marker::PhantomData;

use alloy::{
    eips::BlockId,
    primitives::{Address, Bytes},
    rpc::{
        client::{BatchRequest, ClientRef, Waiter},
        types::{TransactionInput, TransactionRequest},
    },
    sol_types::SolCall,
    transports::TransportError,
};

/// Why a venue's state could not be read. Every variant names the venue (the contract the state
/// belongs to) and the call that failed (its Solidity signature, e.g. `"getReserves()"`, or
/// `"batch"` when the whole batch failed).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request did not get an answer: network, HTTP status, rate limit, a node error other than
    /// a revert, or a response that was not JSON-RPC.
    #[error("venue {venue}: {call}: transport error: {source}")]
    Transport {
        /// The venue being read.
        venue: Address,
        /// The call that failed.
        call: &'static str,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// The view call reverted (e.g. an unlisted synth asset, a contract without this function).
    #[error("venue {venue}: {call} reverted: {}", revert_reason(data))]
    Reverted {
        /// The venue being read.
        venue: Address,
        /// The call that reverted.
        call: &'static str,
        /// The revert data (empty when the node gave none).
        data: Bytes,
    },
    /// The call succeeded but its return data does not decode as the expected type (for example
    /// an account without code returns nothing).
    #[error("venue {venue}: {call}: undecodable return data ({len} bytes): {reason}")]
    Decode {
        /// The venue being read.
        venue: Address,
        /// The call whose return did not decode.
        call: &'static str,
        /// Length of the return data.
        len: usize,
        /// The decoder's message.
        reason: String,
    },
    /// The values decoded but contradict each other or the caller's expectation (a token that is
    /// not the venue's, a debt below a component of it, a reserve wider than its storage).
    #[error("venue {venue}: {call}: inconsistent state: {reason}")]
    Inconsistent {
        /// The venue being read.
        venue: Address,
        /// The call whose value is inconsistent.
        call: &'static str,
        /// What is inconsistent.
        reason: &'static str,
    },
}

impl FetchError {
    /// The venue whose state was being read.
    pub const fn venue(&self) -> Address {
        match self {
            Self::Transport { venue, .. }
            | Self::Reverted { venue, .. }
            | Self::Decode { venue, .. }
            | Self::Inconsistent { venue, .. } => *venue,
        }
    }

    /// The call that failed (a Solidity signature, or `"batch"`).
    pub const fn call(&self) -> &'static str {
        match self {
            Self::Transport { call, .. }
            | Self::Reverted { call, .. }
            | Self::Decode { call, .. }
            | Self::Inconsistent { call, .. } => call,
        }
    }

    /// Whether the same request may succeed when sent again: only transport failures. A revert,
    /// an undecodable return or an inconsistent state is a property of the contract at that block
    /// and repeats.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Transport { .. })
    }

    /// The decoded `Error(string)` / `Panic(uint256)` reason of a revert, when there is one.
    pub fn revert_reason(&self) -> Option<String> {
        match self {
            Self::Reverted { data, .. } => alloy::sol_types::decode_revert_reason(data),
            _ => None,
        }
    }

    /// Classifies the error of one `eth_call` in a batch: an error response that says "revert" is
    /// [`FetchError::Reverted`] (with the revert data when the node sent it), anything else is
    /// [`FetchError::Transport`].
    pub fn from_call_error(venue: Address, call: &'static str, source: TransportError) -> Self {
        if let Some(payload) = source.as_error_resp() {
            let reverted = payload.message.contains("revert")
                || payload.code == 3
                || payload.as_revert_data().is_some();
            if reverted {
                let data = payload.as_revert_data().unwrap_or_default();
                return Self::Reverted { venue, call, data };
            }
        }
        Self::Transport { venue, call, source }
    }
}

fn revert_reason(data: &Bytes) -> String {
    if data.is_empty() {
        return "no revert data".to_owned();
    }
    alloy::sol_types::decode_revert_reason(data).unwrap_or_else(|| data.to_string())
}

/// A JSON-RPC batch of typed `eth_call`s for one venue, all at one block.
///
/// Add calls with [`CallBatch::add`], send the batch once with [`CallBatch::send`], then read each
/// [`PendingCall`]. Nothing goes on the wire before `send`.
#[derive(Debug)]
pub struct CallBatch<'a> {
    batch: BatchRequest<'a>,
    venue: Address,
    block: BlockId,
}

impl<'a> CallBatch<'a> {
    /// An empty batch for `venue` (named in every error) on `client` (`provider.client()`),
    /// evaluated at `block`.
    pub fn new(client: ClientRef<'a>, venue: Address, block: BlockId) -> Self {
        Self { batch: BatchRequest::new(client), venue, block }
    }

    /// Adds `call` sent to `to` (the venue itself or a contract it depends on, e.g. a token).
    ///
    /// # Errors
    /// [`FetchError::Transport`] when the request cannot be serialised.
    pub fn add<C: SolCall>(&mut self, to: Address, call: &C) -> Result<PendingCall<C>, FetchError> {
        let tx = TransactionRequest::default()
            .to(to)
            .input(TransactionInput::both(Bytes::from(call.abi_encode())));
        let waiter = self.batch.add_call("eth_call", &(tx, self.block)).map_err(|source| {
            FetchError::Transport { venue: self.venue, call: C::SIGNATURE, source }
        })?;
        Ok(PendingCall { waiter, venue: self.venue, _call: PhantomData })
    }

    /// Sends the batch (one JSON-RPC request) and waits for its responses.
    ///
    /// Cancel-safe: only view calls are sent; dropping the future abandons them.
    ///
    /// # Errors
    /// [`FetchError::Transport`] with call `"batch"` when the batch as a whole fails; the errors of
    /// single calls surface from [`PendingCall::get`].
    pub async fn send(self) -> Result<(), FetchError> {
        let venue = self.venue;
        self.batch.send().await.map_err(|source| FetchError::Transport {
            venue,
            call: "batch",
            source,
        })
    }
}

/// One call of a sent [`CallBatch`], decoded as `C`'s return type.
#[derive(Debug)]
#[must_use = "a pending call does nothing unless read with `get`"]
pub struct PendingCall<C> {
    waiter: Waiter<Bytes>,
    venue: Address,
    _call: PhantomData<fn() -> C>,
}

impl<C: SolCall> PendingCall<C> {
    /// The decoded return value. Call after [`CallBatch::send`] has completed.
    ///
    /// # Errors
    /// [`FetchError::Reverted`] when the call reverted, [`FetchError::Decode`] when the return
    /// data does not decode, [`FetchError::Transport`] for any other failure (including a batch
    /// response that lacks this call).
    pub async fn get(self) -> Result<C::Return, FetchError> {
        let venue = self.venue;
        let call = C::SIGNATURE;
        let data = self.waiter.await.map_err(|e| FetchError::from_call_error(venue, call, e))?;
        C::abi_decode_returns(&data).map_err(|e| FetchError::Decode {
            venue,
            call,
            len: data.len(),
            reason: e.to_string(),
        })
    }
}
