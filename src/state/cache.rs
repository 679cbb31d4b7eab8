//! The cache proper: one writer (the engine thread), updates applied in block order, an undo log
//! for the reorg window, the divergence check, and bounded memory.

use std::collections::VecDeque;

use alloy::primitives::{
    Address, B256, KECCAK256_EMPTY, U256, keccak256,
    map::{AddressHashMap, B256HashMap, HashMap},
};
use revm::{bytecode::Bytecode, state::AccountInfo};

use super::{AccountRead, BlockRef, StateKey, StateUpdate, StateView};

/// Memory and history bounds of a [`ForkCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most storage slots held; past it the least recently used unpinned accounts are evicted.
    pub max_slots: usize,
    /// Unpinned accounts no simulation used for this many blocks are evicted.
    pub idle_blocks: u64,
    /// Blocks of undo history kept (the deepest reorg rolled back in place; deeper ones need a
    /// full re-read).
    pub reorg_window: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self { max_slots: 4_000_000, idle_blocks: 256, reorg_window: 64 }
    }
}

/// Counters of a cache's life, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Updates applied.
    pub updates: u64,
    /// Reorgs rolled back.
    pub reorgs: u64,
    /// Blocks rolled back in total.
    pub blocks_rolled_back: u64,
    /// Sampled keys that differed from the node.
    pub divergences: u64,
    /// Accounts evicted.
    pub evicted: u64,
    /// Reads of keys the cache did not hold (candidates skipped).
    pub cold_misses: u64,
    /// Accounts held now.
    pub accounts: usize,
    /// Storage slots held now.
    pub slots: usize,
    /// Distinct contract codes held now.
    pub codes: usize,
}

/// What applying an update did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Blocks rolled back before applying (0 without a reorg).
    pub rolled_back: u64,
    /// Sampled keys that differed from what the cache held.
    pub divergences: u64,
    /// Values written.
    pub written: usize,
    /// For a full read: the addresses with a value that differed from what the cache held
    /// (sorted, without duplicates); only those were written.
    pub changed: Vec<Address>,
}

/// Why an update was refused; the cache is marked stale and keeps its previous head.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// No full read has been applied yet.
    #[error("the cache has no base state yet: a full read must come first")]
    NoBase,
    /// The update does not extend the cache's head and names no ancestor.
    #[error("block {number} ({hash}) does not extend the cache head {head}")]
    ParentMismatch {
        /// The update's block number.
        number: u64,
        /// The update's block hash.
        hash: B256,
        /// The cache's head hash.
        head: B256,
    },
    /// The update's ancestor is older than the undo window.
    #[error("reorg ancestor {ancestor} is outside the undo window: a full re-read is needed")]
    AncestorUnknown {
        /// The ancestor hash.
        ancestor: B256,
    },
}

/// Why the cache must not be traded on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Staleness {
    /// Sampled slots differed from the node.
    Divergence(u64),
    /// An update could not be applied.
    Refused(ApplyError),
}

#[derive(Clone, Debug, Default)]
struct Entry {
    info: Option<AccountInfo>,
    storage: HashMap<U256, U256>,
    last_used: u64,
    pinned: bool,
}

#[derive(Clone, Debug)]
enum Undo {
    Account(Address, Option<AccountInfo>),
    Slot(Address, U256, Option<U256>),
}

#[derive(Clone, Debug)]
struct BlockUndo {
    block: BlockRef,
    items: Vec<Undo>,
}

/// The engine's copy of chain state at one block. See the [module docs](super).
#[derive(Debug, Default)]
pub struct ForkCache {
    accounts: AddressHashMap<Entry>,
    codes: B256HashMap<Bytecode>,
    head: Option<BlockRef>,
    undo: VecDeque<BlockUndo>,
    hashes: VecDeque<(u64, B256)>,
    stale: Option<Staleness>,
    limits: CacheLimits,
    slots: usize,
    stats: CacheStats,
}

impl ForkCache {
    /// An empty cache with `limits`.
    pub fn new(limits: CacheLimits) -> Self {
        Self { limits, ..Default::default() }
    }

    /// The block the cached values belong to.
    pub const fn head(&self) -> Option<&BlockRef> {
        self.head.as_ref()
    }

    /// Whether the cache may be traded on: it has a head, the last update applied cleanly and the
    /// last divergence sample matched.
    pub const fn is_fresh(&self) -> bool {
        self.head.is_some() && self.stale.is_none()
    }

    /// Whether the cache may be traded on at the chain head `hash`: fresh and pinned to exactly
    /// that block (a cache one block behind is not fresh for the new head).
    pub fn is_fresh_at(&self, hash: B256) -> bool {
        self.is_fresh() && self.head.is_some_and(|h| h.hash == hash)
    }

    /// Why the cache is stale, if it is.
    pub const fn staleness(&self) -> Option<&Staleness> {
        self.stale.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            accounts: self.accounts.len(),
            slots: self.slots,
            codes: self.codes.len(),
            ..self.stats
        }
    }

    /// A read view for simulations at the cache's head; see [`StateView`].
    pub fn view(&self) -> StateView<'_> {
        StateView::new(self)
    }

    /// Pins `address`: it is never evicted (registered venues, tokens, lenders, the executor).
    pub fn pin(&mut self, address: Address) {
        self.accounts.entry(address).or_default().pinned = true;
    }

    /// Whether the cache holds `key`.
    pub fn contains(&self, key: &StateKey) -> bool {
        match key {
            StateKey::Account(a) => self.accounts.get(a).is_some_and(|e| e.info.is_some()),
            StateKey::Slot(a, s) => self.accounts.get(a).is_some_and(|e| e.storage.contains_key(s)),
        }
    }

    /// Every key held (for a full re-read or a recording).
    pub fn keys(&self) -> Vec<StateKey> {
        let mut keys = Vec::with_capacity(self.accounts.len() + self.slots);
        for (a, e) in &self.accounts {
            if e.info.is_some() {
                keys.push(StateKey::Account(*a));
            }
            keys.extend(e.storage.keys().map(|s| StateKey::Slot(*a, *s)));
        }
        keys.sort_unstable();
        keys
    }

    /// Account info, if held.
    pub fn account(&self, address: &Address) -> Option<&AccountInfo> {
        self.accounts.get(address).and_then(|e| e.info.as_ref())
    }

    /// A storage value, if held.
    pub fn storage(&self, address: &Address, slot: &U256) -> Option<U256> {
        self.accounts.get(address).and_then(|e| e.storage.get(slot).copied())
    }

    /// Code by hash (every held code is deduplicated by hash).
    pub fn code(&self, hash: &B256) -> Option<&Bytecode> {
        self.codes.get(hash)
    }

    /// The hash of a recent block (for `BLOCKHASH`).
    pub fn block_hash(&self, number: u64) -> Option<B256> {
        self.hashes.iter().find(|(n, _)| *n == number).map(|(_, h)| *h)
    }

    /// Records that simulations at block `block` used `addresses` (keeps them from eviction).
    pub fn touch<'a>(&mut self, addresses: impl IntoIterator<Item = &'a Address>, block: u64) {
        for a in addresses {
            if let Some(e) = self.accounts.get_mut(a) {
                e.last_used = e.last_used.max(block);
            }
        }
    }

    /// Counts reads of keys the cache did not hold.
    pub const fn count_cold(&mut self, n: u64) {
        self.stats.cold_misses += n;
    }

    /// Marks the cache stale until a full read is applied (e.g. the source failed for this head).
    pub fn mark_stale(&mut self, why: ApplyError) {
        self.stale = Some(Staleness::Refused(why));
    }

    /// Applies an update; see the [module docs](super) for the rules. On error the cache keeps its
    /// previous values and head and is marked stale.
    ///
    /// # Errors
    /// [`ApplyError`] when the update does not fit the cache's history.
    pub fn apply(&mut self, update: &StateUpdate) -> Result<ApplyOutcome, ApplyError> {
        let mut out = ApplyOutcome::default();
        if update.full {
            self.undo.clear();
            self.hashes.clear();
            // Only what differs is written: a full re-read of an unchanged chain costs a
            // comparison per key, and the caller re-decodes only what changed.
            let mut changed = Vec::new();
            for a in &update.accounts {
                if self.account_differs(a) {
                    self.write_account(a, None);
                    changed.push(a.address);
                    out.written += 1;
                }
            }
            for (a, s, v) in update.slots.iter().chain(&update.samples) {
                if self.storage(a, s) != Some(*v) {
                    self.write_slot(*a, *s, *v, None);
                    changed.push(*a);
                    out.written += 1;
                }
            }
            changed.sort_unstable();
            changed.dedup();
            out.changed = changed;
            // The base block is the oldest ancestor a later reorg can roll back to.
            self.undo.push_back(BlockUndo { block: update.head, items: Vec::new() });
            self.stale = None;
        } else {
            let Some(head) = self.head else {
                self.stale = Some(Staleness::Refused(ApplyError::NoBase));
                return Err(ApplyError::NoBase);
            };
            match update.ancestor {
                Some(anc) if anc.hash != head.hash => {
                    let Some(pos) = self.undo.iter().rposition(|u| u.block.hash == anc.hash) else {
                        let e = ApplyError::AncestorUnknown { ancestor: anc.hash };
                        self.stale = Some(Staleness::Refused(e.clone()));
                        return Err(e);
                    };
                    while self.undo.len() > pos + 1 {
                        if let Some(u) = self.undo.pop_back() {
                            self.revert(u);
                            out.rolled_back += 1;
                        }
                    }
                    self.hashes.retain(|(n, _)| *n <= anc.number);
                    self.stats.reorgs += 1;
                    self.stats.blocks_rolled_back += out.rolled_back;
                }
                Some(_) => {}
                None if update.head.parent_hash != head.hash => {
                    let e = ApplyError::ParentMismatch {
                        number: update.head.number,
                        hash: update.head.hash,
                        head: head.hash,
                    };
                    self.stale = Some(Staleness::Refused(e.clone()));
                    return Err(e);
                }
                None => {}
            }
            let mut items = Vec::new();
            for a in &update.accounts {
                self.write_account(a, Some(&mut items));
            }
            // Only values that differ are written (and undone on a reorg): a head re-reads every
            // watched slot of each touched address, most of them unchanged.
            for (a, s, v) in &update.slots {
                if self.storage(a, s) != Some(*v) {
                    self.write_slot(*a, *s, *v, Some(&mut items));
                }
            }
            for (a, s, v) in &update.samples {
                if self.storage(a, s) != Some(*v) {
                    out.divergences += 1;
                    self.write_slot(*a, *s, *v, Some(&mut items));
                }
            }
            out.written = items.len();
            self.undo.push_back(BlockUndo { block: update.head, items });
            while self.undo.len() > self.limits.reorg_window {
                self.undo.pop_front();
            }
            if out.divergences > 0 {
                self.stats.divergences += out.divergences;
                self.stale = Some(Staleness::Divergence(out.divergences));
            } else if matches!(self.stale, Some(Staleness::Refused(_))) {
                // A refused update left holes only a full read repairs.
            } else {
                self.stale = None;
            }
        }
        self.head = Some(update.head);
        if self.hashes.back().is_none_or(|(_, h)| *h != update.head.hash) {
            self.hashes.push_back((update.head.number, update.head.hash));
        }
        while self.hashes.len() > 256 {
            self.hashes.pop_front();
        }
        self.stats.updates += 1;
        Ok(out)
    }

    /// Whether `read` differs from the account held (or none is held).
    fn account_differs(&self, read: &AccountRead) -> bool {
        let Some(held) = self.account(&read.address) else { return true };
        let code_differs = read.code.as_ref().is_some_and(|raw| {
            held.code.as_ref().is_none_or(|c| c.original_byte_slice() != &raw[..])
        });
        held.balance != read.balance || held.nonce != read.nonce || code_differs
    }

    fn write_account(&mut self, read: &AccountRead, undo: Option<&mut Vec<Undo>>) {
        let code = read.code.as_ref().map(|raw| {
            if raw.is_empty() {
                (KECCAK256_EMPTY, Bytecode::default())
            } else {
                let hash = keccak256(raw);
                let code = self
                    .codes
                    .entry(hash)
                    .or_insert_with(|| Bytecode::new_raw(raw.clone()))
                    .clone();
                (hash, code)
            }
        });
        let entry = self.accounts.entry(read.address).or_default();
        let previous = entry.info.clone();
        let (code_hash, code) = match (code, &entry.info) {
            (Some((h, c)), _) => (h, Some(c)),
            (None, Some(old)) => (old.code_hash, old.code.clone()),
            // Balance and nonce without code for an account never read: treat as codeless only
            // if it has none; the refresher always reads code the first time.
            (None, None) => (KECCAK256_EMPTY, Some(Bytecode::default())),
        };
        entry.info = Some(AccountInfo {
            balance: read.balance,
            nonce: read.nonce,
            code_hash,
            code,
            ..Default::default()
        });
        if let Some(u) = undo {
            u.push(Undo::Account(read.address, previous));
        }
    }

    fn write_slot(&mut self, a: Address, s: U256, v: U256, undo: Option<&mut Vec<Undo>>) {
        let entry = self.accounts.entry(a).or_default();
        let previous = entry.storage.insert(s, v);
        if previous.is_none() {
            self.slots += 1;
        }
        if let Some(u) = undo {
            u.push(Undo::Slot(a, s, previous));
        }
    }

    fn revert(&mut self, block: BlockUndo) {
        for item in block.items.into_iter().rev() {
            match item {
                Undo::Account(a, prev) => {
                    if let Some(e) = self.accounts.get_mut(&a) {
                        e.info = prev;
                    }
                }
                Undo::Slot(a, s, prev) => {
                    if let Some(e) = self.accounts.get_mut(&a) {
                        match prev {
                            Some(v) => {
                                if e.storage.insert(s, v).is_none() {
                                    self.slots += 1;
                                }
                            }
                            None => {
                                if e.storage.remove(&s).is_some() {
                                    self.slots -= 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Evicts unpinned accounts idle for longer than the limit, then the least recently used ones
    /// while the slot count is over the cap. Returns what was evicted, so the refresher stops
    /// watching it.
    pub fn evict(&mut self) -> Vec<Address> {
        let now = self.head.map_or(0, |h| h.number);
        let idle = self.limits.idle_blocks;
        let mut gone: Vec<Address> = self
            .accounts
            .iter()
            .filter(|(_, e)| !e.pinned && e.last_used.saturating_add(idle) < now)
            .map(|(a, _)| *a)
            .collect();
        if self.slots > self.limits.max_slots {
            let mut lru: Vec<(u64, Address)> = self
                .accounts
                .iter()
                .filter(|(a, e)| !e.pinned && !gone.contains(a))
                .map(|(a, e)| (e.last_used, *a))
                .collect();
            lru.sort_unstable();
            let mut slots = self.slots;
            for (_, a) in lru {
                if slots <= self.limits.max_slots {
                    break;
                }
                slots -= self.accounts.get(&a).map_or(0, |e| e.storage.len());
                gone.push(a);
            }
        }
        for a in &gone {
            if let Some(e) = self.accounts.remove(a) {
                self.slots -= e.storage.len();
            }
        }
        if !gone.is_empty() {
            let live: alloy::primitives::map::HashSet<B256> = self
                .accounts
                .values()
                .filter_map(|e| e.info.as_ref().map(|i| i.code_hash))
                .collect();
            self.codes.retain(|h, _| live.contains(h));
        }
        self.stats.evicted += gone.len() as u64;
        gone
    }

    /// Writes values directly (tests, benches and synthetic fixtures): no history, no checks.
    pub fn insert_raw(&mut self, accounts: &[AccountRead], slots: &[(Address, U256, U256)]) {
        for a in accounts {
            self.write_account(a, None);
        }
        for (a, s, v) in slots {
            self.write_slot(*a, *s, *v, None);
        }
    }

    /// Sets the head without values (tests, benches and synthetic fixtures).
    pub fn set_head_raw(&mut self, head: BlockRef) {
        self.head = Some(head);
        self.hashes.push_back((head.number, head.hash));
        self.stale = None;
    }
}
