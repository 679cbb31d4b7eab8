//! The fork state cache: the engine's picture of the chain, exact to the wei.
//!
//! The engine never reads chain state over RPC while it decides. It reads a [`ForkCache`]: an
//! in-memory copy of every account and storage slot the registered venues, tokens, flash lenders and
//! the executor need, pinned to one block hash. The cache implements revm's `Database` through a
//! per-block [`StateView`], so a simulation runs on exactly the state of the block it was built
//! from, with pending transactions layered on top as overlays that never touch the cache.
//!
//! ```text
//!  ingest head ──▶ Refresher (tokio, off the hot path)            engine thread (one writer)
//!                  1. block header + logs ─▶ touched addresses     ForkCache::apply(update)
//!                  2. one batched read pinned to the block hash ─▶ │ undo log per block (reorgs)
//!                     (touched slots, new keys, divergence sample) │ divergence check → stale
//!                  3. StateUpdate ─────────── crossbeam ─────────▶ │ eviction of cold entries
//!                                                                  ▼
//!                                             StateView (revm Database) + pending-tx overlay
//! ```
//!
//! - **Source** ([`StateSource`]): where values come from. [`RpcSource`] reads any node (archive or
//!   not) with every request pinned to a block *hash* (EIP-1898), so a node that has not seen the
//!   block answers "unknown block" instead of an older state; a recorded cassette is the other
//!   source.
//! - **Refresh** ([`Refresher`]): owns the watch list (which keys are cached) and the recent head
//!   chain. Per head it re-reads only the keys of addresses the block touched (log emitters, senders
//!   and recipients of its transactions, addresses its logs name in indexed topics, the
//!   always-fresh accounts such as the executor and its operator), adds keys the engine found
//!   missing, and samples a few untouched keys for the divergence check. Of a touched token whose
//!   balance changes are all logged, only the balances of the holders the block names are re-read
//!   ([`Refresher::map_balances`]), so the cost of a head follows what it did, not how many pools
//!   hold the token. A head whose parent is not the last head is walked back to the common
//!   ancestor; everything the orphaned blocks touched is re-read at the new head.
//! - **Cache** ([`ForkCache`]): applies updates in order, keeps an undo log for the reorg window so
//!   orphaned writes are dropped, compares the divergence sample with what it holds (a mismatch
//!   marks the cache stale and pauses trading until a full re-read lands), and evicts entries no
//!   simulation has used for a while, within a hard cap on cached slots.
//! - **View** ([`StateView`]): what revm reads. A key the cache does not hold is never fetched: the
//!   read fails with [`StateError::Cold`], the key is recorded, the candidate is skipped and counted,
//!   and the engine asks the refresher to watch the key from the next block on.

mod cache;
mod refresh;
mod source;
mod view;

use alloy::primitives::{Address, B256, U256};

pub use cache::{ApplyError, ApplyOutcome, CacheLimits, CacheStats, ForkCache};
pub use refresh::{RefreshError, Refresher, RefresherConfig};
pub use source::{
    AccountRead, BlockInfo, MethodStats, ReadRequest, ReadSet, RetryPolicy, RpcSource, SourceError,
    SourceStats, StateSource,
};
pub use view::{StateError, StateView};

/// A block as the state cache knows it: identity plus the fields the next block's environment is
/// derived from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockRef {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent block hash.
    pub parent_hash: B256,
    /// Block timestamp (unix seconds).
    pub timestamp: u64,
    /// Base fee per gas (wei); 0 before London.
    pub base_fee: u64,
    /// Gas limit of the block.
    pub gas_limit: u64,
    /// Gas used by the block (for the next base fee).
    pub gas_used: u64,
    /// The block's beneficiary (fee recipient).
    pub coinbase: Address,
    /// `mixHash` / `prevrandao` of the block.
    pub prevrandao: B256,
}

/// One cached item: an account's basic info (balance, nonce, code) or one storage slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKey {
    /// Balance, nonce and code of an account.
    Account(Address),
    /// One storage slot of a contract.
    Slot(Address, U256),
}

impl StateKey {
    /// The account the key belongs to.
    pub const fn address(&self) -> Address {
        match self {
            Self::Account(a) | Self::Slot(a, _) => *a,
        }
    }
}

/// Values read from the chain at one block, ready for [`ForkCache::apply`]. Produced off the hot
/// path by the [`Refresher`].
#[derive(Clone, Debug, Default)]
pub struct StateUpdate {
    /// The block the values belong to; the cache's head after applying.
    pub head: BlockRef,
    /// Set when `head` does not extend the previous head directly (a reorg or skipped blocks):
    /// the cache first rolls back to this ancestor, then applies the values.
    pub ancestor: Option<BlockRef>,
    /// A full re-read of every watched key: replaces what the cache holds and clears staleness.
    pub full: bool,
    /// Account reads.
    pub accounts: Vec<AccountRead>,
    /// Storage reads `(address, slot, value)`.
    pub slots: Vec<(Address, U256, U256)>,
    /// Keys of untouched addresses re-read at `head` for the divergence check: the cache compares
    /// them with what it holds.
    pub samples: Vec<(Address, U256, U256)>,
    /// How many blocks since the previous head this update covers (1 for a normal head).
    pub blocks: u64,
    /// Addresses the covered blocks touched (log emitters, senders, recipients, and everything
    /// the orphaned blocks of a reorg touched); every address for a full read.
    pub touched: Vec<Address>,
}

#[cfg(test)]
mod tests;
