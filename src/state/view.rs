//! What revm reads: the cache at its head plus an overlay of pending transactions' writes.

use alloy::primitives::{
    Address, B256, KECCAK256_EMPTY, U256,
    map::{AddressHashMap, B256HashMap, HashMap},
};
use revm::{
    Database, DatabaseCommit,
    bytecode::Bytecode,
    database_interface::DBErrorMarker,
    state::{Account, AccountInfo},
};

use super::{ForkCache, StateKey};

/// Why a simulation could not read state. Never a fetch: the engine skips the candidate and has
/// the key watched from the next block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The cache does not hold this key.
    #[error("cold state: {0:?}")]
    Cold(StateKey),
    /// `BLOCKHASH` of a block the cache does not know.
    #[error("unknown block hash for block {0}")]
    BlockHash(u64),
    /// Code by hash the cache does not hold.
    #[error("unknown code {0}")]
    Code(B256),
}

impl DBErrorMarker for StateError {}

#[derive(Clone, Debug, Default)]
struct OverlayAccount {
    info: Option<AccountInfo>,
    destroyed: bool,
    cleared: bool,
    storage: HashMap<U256, U256>,
}

/// A revm [`Database`] over a [`ForkCache`] and an overlay. Writes committed through
/// [`DatabaseCommit`] (pending transactions a route backruns) go to the overlay, never to the
/// cache; [`StateView::clear_overlay`] drops them. Reads of keys the cache does not hold fail with
/// [`StateError::Cold`] and are recorded in [`StateView::misses`].
#[derive(Debug)]
pub struct StateView<'a> {
    cache: &'a ForkCache,
    overlay: AddressHashMap<OverlayAccount>,
    codes: B256HashMap<Bytecode>,
    misses: Vec<StateKey>,
    touched: Vec<Address>,
    discovery: bool,
}

impl<'a> StateView<'a> {
    /// A view of `cache` with an empty overlay.
    pub fn new(cache: &'a ForkCache) -> Self {
        Self {
            cache,
            overlay: AddressHashMap::default(),
            codes: B256HashMap::default(),
            misses: Vec::new(),
            touched: Vec::new(),
            discovery: false,
        }
    }

    /// The cache under the overlay.
    pub const fn cache(&self) -> &'a ForkCache {
        self.cache
    }

    /// Discovery mode (registration, off the hot path): a key the cache does not hold reads as
    /// zero (an absent account as non-existent) and is recorded, so one run names many missing
    /// keys instead of stopping at the first. Never used for a simulation that decides anything.
    pub const fn set_discovery(&mut self, on: bool) {
        self.discovery = on;
    }

    /// Drops every overlay write (pending transactions applied so far).
    pub fn clear_overlay(&mut self) {
        self.overlay.clear();
    }

    /// Whether pending writes are layered on the cache.
    pub fn has_overlay(&self) -> bool {
        !self.overlay.is_empty()
    }

    /// Overrides one storage slot in the overlay (probes, what-if runs).
    pub fn set_storage_override(&mut self, address: Address, slot: U256, value: U256) {
        self.overlay.entry(address).or_default().storage.insert(slot, value);
    }

    /// Overrides an account's balance and nonce in the overlay, keeping its code if cached.
    pub fn set_account_override(&mut self, address: Address, balance: U256, nonce: u64) {
        let mut info = self.cache.account(&address).cloned().unwrap_or_default();
        info.balance = balance;
        info.nonce = nonce;
        self.overlay.entry(address).or_default().info = Some(info);
    }

    /// Whether the overlay overrides `address`'s account info.
    pub fn has_account_override(&self, address: &Address) -> bool {
        self.overlay.get(address).is_some_and(|o| o.info.is_some())
    }

    /// Keys read but not held, since the last [`StateView::take_misses`].
    pub fn misses(&self) -> &[StateKey] {
        &self.misses
    }

    /// Takes the recorded misses.
    pub fn take_misses(&mut self) -> Vec<StateKey> {
        std::mem::take(&mut self.misses)
    }

    /// Takes the accounts loaded since the last call (for eviction bookkeeping), deduplicated.
    pub fn take_touched(&mut self) -> Vec<Address> {
        let mut t = std::mem::take(&mut self.touched);
        t.sort_unstable();
        t.dedup();
        t
    }

    /// Current value of a slot through the overlay, if known.
    pub fn storage_value(&self, address: &Address, slot: &U256) -> Option<U256> {
        if let Some(o) = self.overlay.get(address) {
            if let Some(v) = o.storage.get(slot) {
                return Some(*v);
            }
            if o.cleared || o.destroyed {
                return Some(U256::ZERO);
            }
        }
        self.cache.storage(address, slot)
    }

    fn miss<T>(&mut self, key: StateKey) -> Result<T, StateError> {
        if !self.misses.contains(&key) {
            self.misses.push(key);
        }
        Err(StateError::Cold(key))
    }
}

impl Database for StateView<'_> {
    type Error = StateError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, StateError> {
        self.touched.push(address);
        if let Some(o) = self.overlay.get(&address) {
            if o.destroyed {
                return Ok(None);
            }
            if let Some(info) = &o.info {
                return Ok(Some(info.clone()));
            }
        }
        match self.cache.account(&address) {
            Some(info) => Ok(Some(info.clone())),
            None if self.discovery => {
                let _ = self.miss::<()>(StateKey::Account(address));
                Ok(None)
            }
            None => self.miss(StateKey::Account(address)),
        }
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, StateError> {
        if code_hash == KECCAK256_EMPTY || code_hash == B256::ZERO {
            return Ok(Bytecode::default());
        }
        if let Some(c) = self.codes.get(&code_hash).or_else(|| self.cache.code(&code_hash)) {
            return Ok(c.clone());
        }
        Err(StateError::Code(code_hash))
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, StateError> {
        match self.storage_value(&address, &index) {
            Some(v) => Ok(v),
            None if self.discovery => {
                let _ = self.miss::<()>(StateKey::Slot(address, index));
                Ok(U256::ZERO)
            }
            None => self.miss(StateKey::Slot(address, index)),
        }
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, StateError> {
        self.cache.block_hash(number).ok_or(StateError::BlockHash(number))
    }
}

impl DatabaseCommit for StateView<'_> {
    fn commit(&mut self, changes: AddressHashMap<Account>) {
        for (address, account) in changes {
            if !account.is_touched() {
                continue;
            }
            let o = self.overlay.entry(address).or_default();
            if account.is_selfdestructed() {
                *o = OverlayAccount { destroyed: true, ..Default::default() };
                continue;
            }
            o.destroyed = false;
            if account.is_created() {
                o.storage.clear();
                o.cleared = true;
            }
            if let Some(code) = &account.info.code
                && account.info.code_hash != KECCAK256_EMPTY
            {
                self.codes.entry(account.info.code_hash).or_insert_with(|| code.clone());
            }
            o.info = Some(account.info);
            o.storage.extend(account.storage.into_iter().map(|(k, v)| (k, v.present_value())));
        }
    }
}
