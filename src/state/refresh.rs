//! Off the hot path: decides what to read for each head and reads it in batches pinned to the
//! head's hash.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use alloy::primitives::{Address, B256, U256, map::HashMap};

use super::{BlockInfo, BlockRef, ReadRequest, SourceError, StateKey, StateSource, StateUpdate};

/// Settings of a [`Refresher`].
#[derive(Clone, Debug)]
pub struct RefresherConfig {
    /// Blocks of head history kept to find a reorg's common ancestor (deeper reorgs: full read).
    pub reorg_window: usize,
    /// Untouched slots re-read each block for the divergence check.
    pub samples_per_block: usize,
    /// Accounts whose balance and nonce are re-read every block (executor, operator).
    pub always: Vec<Address>,
    /// Seed of the sample choice (deterministic runs).
    pub seed: u64,
}

impl Default for RefresherConfig {
    fn default() -> Self {
        Self { reorg_window: 64, samples_per_block: 16, always: Vec::new(), seed: 0x00c0_ffee }
    }
}

/// Why a head could not be turned into an update. The refresher keeps its previous head, so the
/// next head retries everything.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
}

#[derive(Clone, Debug, Default)]
struct Watched {
    account: bool,
    code_read: bool,
    has_code: bool,
    slots: BTreeSet<U256>,
}

/// Owns the watch list and the recent head chain; turns heads into [`StateUpdate`]s. See the
/// [module docs](super).
pub struct Refresher<S> {
    source: S,
    cfg: RefresherConfig,
    watch: BTreeMap<Address, Watched>,
    flat: Vec<(Address, U256)>,
    flat_dirty: bool,
    new_keys: BTreeSet<StateKey>,
    history: VecDeque<BlockInfo>,
    head: Option<BlockRef>,
    full_pending: bool,
    rng: fastrand::Rng,
    /// `(token, slot)` → the holder whose balance it holds, for tokens that name every balance
    /// change in their logs.
    holder_of: HashMap<(Address, U256), Address>,
    /// `(token, holder)` → the slot of the holder's balance (the inverse of `holder_of`).
    slot_of: HashMap<(Address, Address), U256>,
    /// For each mapped token, its watched slots that hold no declared holder's balance (read
    /// whenever the token is touched; the mapped ones only for the holders a block names).
    unmapped: HashMap<Address, BTreeSet<U256>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Refresher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("source", &self.source)
            .field("head", &self.head)
            .field("watched_addresses", &self.watch.len())
            .field("mapped_balances", &self.holder_of.len())
            .finish_non_exhaustive()
    }
}

impl<S: StateSource> Refresher<S> {
    /// A refresher over `source` with nothing watched.
    pub fn new(source: S, cfg: RefresherConfig) -> Self {
        let rng = fastrand::Rng::with_seed(cfg.seed);
        let mut r = Self {
            source,
            cfg,
            watch: BTreeMap::new(),
            flat: Vec::new(),
            flat_dirty: false,
            new_keys: BTreeSet::new(),
            history: VecDeque::new(),
            head: None,
            full_pending: true,
            rng,
            holder_of: HashMap::default(),
            slot_of: HashMap::default(),
            unmapped: HashMap::default(),
        };
        let always = r.cfg.always.clone();
        r.watch(always.into_iter().map(StateKey::Account));
        r
    }

    /// The source.
    pub const fn source(&self) -> &S {
        &self.source
    }

    /// The last head an update was produced for.
    pub const fn head(&self) -> Option<&BlockRef> {
        self.head.as_ref()
    }

    /// Number of watched slots.
    pub fn watched_slots(&self) -> usize {
        self.watch.values().map(|w| w.slots.len()).sum()
    }

    /// Number of token balance slots whose holder is known (see [`Refresher::map_balances`]).
    pub fn mapped_balances(&self) -> usize {
        self.holder_of.len()
    }

    /// Declares that every change of `token`'s balances is named in the token's logs (ERC-20
    /// `Transfer`s name both holders) and that the balance of each of `holders` lives at
    /// `slot_of(holder)`. From then on a head that touches the token re-reads such a balance
    /// slot only when the block's logs name its holder (or the block touched the holder
    /// otherwise); every other watched slot of the token (supply, allowances, balances of holders
    /// not declared) is re-read as before. Blocks whose [`BlockInfo::names_holders`] is false are
    /// read whole. Not for rebasing or other tokens that move balances silently.
    pub fn map_balances(
        &mut self,
        token: Address,
        holders: impl IntoIterator<Item = Address>,
        slot_of: impl Fn(Address) -> U256,
    ) {
        for h in holders {
            let slot = slot_of(h);
            self.holder_of.insert((token, slot), h);
            self.slot_of.insert((token, h), slot);
        }
        let watched = self.watch.get(&token).map(|w| &w.slots);
        let unmapped = watched
            .into_iter()
            .flatten()
            .filter(|s| !self.holder_of.contains_key(&(token, **s)))
            .copied()
            .collect();
        self.unmapped.insert(token, unmapped);
    }

    /// Watches `keys` from now on; keys not watched before are read with the next update.
    pub fn watch(&mut self, keys: impl IntoIterator<Item = StateKey>) {
        for key in keys {
            let w = self.watch.entry(key.address()).or_default();
            let new = match key {
                StateKey::Account(_) => !std::mem::replace(&mut w.account, true),
                StateKey::Slot(a, s) => {
                    let new = w.slots.insert(s);
                    if new {
                        self.flat.push((a, s));
                        if let Some(u) = self.unmapped.get_mut(&a)
                            && !self.holder_of.contains_key(&(a, s))
                        {
                            u.insert(s);
                        }
                    }
                    new
                }
            };
            if new {
                self.new_keys.insert(key);
            }
        }
    }

    /// Stops watching `addresses` (evicted from the cache).
    pub fn unwatch(&mut self, addresses: &[Address]) {
        for a in addresses {
            if self.cfg.always.contains(a) {
                continue;
            }
            if self.watch.remove(a).is_some() {
                self.flat_dirty = true;
            }
            self.new_keys.retain(|k| k.address() != *a);
        }
        if !self.holder_of.is_empty() {
            self.holder_of.retain(|(t, _), h| !addresses.contains(t) && !addresses.contains(h));
            self.slot_of.retain(|(t, h), _| !addresses.contains(t) && !addresses.contains(h));
            self.unmapped.retain(|t, _| !addresses.contains(t));
        }
    }

    /// The next update re-reads every watched key (after a divergence or a refused update).
    pub const fn request_full(&mut self) {
        self.full_pending = true;
    }

    /// A full read at the node's latest block: the cache's base state.
    ///
    /// # Errors
    /// [`RefreshError`] when the source fails; nothing changes.
    pub async fn start(&mut self) -> Result<StateUpdate, RefreshError> {
        let info = self.source.latest().await?;
        self.full(info).await
    }

    /// Reads keys watched since the last update at the current head (prefetch of new venues and
    /// of keys a simulation missed). `None` when there is nothing new or no head yet.
    ///
    /// # Errors
    /// [`RefreshError`] when the source fails; the keys stay pending.
    pub async fn prefetch(&mut self) -> Result<Option<StateUpdate>, RefreshError> {
        let Some(head) = self.head else { return Ok(None) };
        if self.new_keys.is_empty() {
            return Ok(None);
        }
        let req = self.request_for(&[], true, false);
        let read = self.source.read(head.hash, &req).await?;
        self.mark_read(&read.accounts);
        self.new_keys.clear();
        Ok(Some(StateUpdate {
            head,
            ancestor: Some(head),
            full: false,
            accounts: read.accounts,
            slots: read.slots,
            samples: Vec::new(),
            blocks: 0,
            touched: Vec::new(),
        }))
    }

    /// The update for the head with hash `hash`: what its block (and any blocks skipped or
    /// replaced since the last head) touched, re-read at `hash`. `None` when `hash` is the current
    /// head or an ancestor of it (a duplicate or late notification).
    ///
    /// # Errors
    /// [`RefreshError`] when the source fails (e.g. a lagging node that does not know `hash`);
    /// the refresher keeps its previous head and nothing is half-applied.
    pub async fn on_head(&mut self, hash: B256) -> Result<Option<StateUpdate>, RefreshError> {
        if self.history.iter().any(|b| b.block.hash == hash) {
            return Ok(None);
        }
        let info = self.source.block(hash).await?;
        let Some(head) = self.head else {
            return self.full(info).await.map(Some);
        };
        if self.full_pending {
            return self.full(info).await.map(Some);
        }
        // Walk back from the new head to a block we know.
        let mut branch = vec![info];
        let ancestor = loop {
            let tip = &branch[branch.len() - 1].block;
            if let Some(b) = self.history.iter().find(|b| b.block.hash == tip.parent_hash) {
                break b.block;
            }
            let oldest = self.history.front().map_or(head.number, |b| b.block.number);
            if tip.number <= oldest || branch.len() > self.cfg.reorg_window {
                // Deeper than our history: start over from a full read at the new head.
                let info = branch.swap_remove(0);
                return self.full(info).await.map(Some);
            }
            let parent = self.source.block(tip.parent_hash).await?;
            branch.push(parent);
        };
        branch.reverse();
        let mut touched: BTreeSet<Address> = BTreeSet::new();
        // Balances are narrowed to the holders named only when every block re-read (orphaned
        // ones included) named its holders.
        let mut named = true;
        for b in self.history.iter().filter(|b| b.block.number > ancestor.number).chain(&branch) {
            touched.extend(b.touched.iter().copied());
            named &= b.names_holders;
        }
        let new_head = branch[branch.len() - 1].block;
        touched.insert(new_head.coinbase);
        self.watch([StateKey::Account(new_head.coinbase)]);
        let touched: Vec<Address> = touched.into_iter().collect();
        let touched_out = touched.clone();
        let mut req = self.request_for(&touched, true, named);
        let samples = self.sample(&touched);
        let n_main = req.slots.len();
        req.slots.extend(samples.iter().copied());
        let mut read = self.source.read(new_head.hash, &req).await?;
        let samples = read.slots.split_off(n_main);
        self.mark_read(&read.accounts);
        self.new_keys.clear();
        self.history.retain(|b| b.block.number <= ancestor.number);
        self.history.extend(branch);
        while self.history.len() > self.cfg.reorg_window {
            self.history.pop_front();
        }
        let direct = new_head.parent_hash == head.hash;
        self.head = Some(new_head);
        Ok(Some(StateUpdate {
            head: new_head,
            ancestor: (!direct).then_some(ancestor),
            full: false,
            accounts: read.accounts,
            slots: read.slots,
            samples,
            blocks: new_head.number.saturating_sub(ancestor.number),
            touched: touched_out,
        }))
    }

    async fn full(&mut self, info: BlockInfo) -> Result<StateUpdate, RefreshError> {
        self.watch([StateKey::Account(info.block.coinbase)]);
        let all: Vec<Address> = self.watch.keys().copied().collect();
        let req = self.request_for(&all, false, false);
        let read = self.source.read(info.block.hash, &req).await?;
        self.mark_read(&read.accounts);
        self.new_keys.clear();
        self.full_pending = false;
        self.history.clear();
        let block = info.block;
        self.history.push_back(info);
        self.head = Some(block);
        Ok(StateUpdate {
            head: block,
            ancestor: None,
            full: true,
            accounts: read.accounts,
            slots: read.slots,
            samples: Vec::new(),
            blocks: 1,
            touched: all,
        })
    }

    /// Every watched key of `addresses` (sorted), the always-fresh accounts and (with `new`) the
    /// keys watched since the last read. With `named`, a mapped token's balance slot of a holder
    /// not in `addresses` is left out (the block's logs did not name it: it did not change).
    fn request_for(&self, addresses: &[Address], new: bool, named: bool) -> ReadRequest {
        let mut accounts: BTreeSet<Address> = BTreeSet::new();
        let mut slots: BTreeSet<(Address, U256)> = BTreeSet::new();
        for a in addresses.iter().chain(&self.cfg.always) {
            if let Some(w) = self.watch.get(a) {
                if w.account {
                    accounts.insert(*a);
                }
                match self.unmapped.get(a).filter(|_| named) {
                    // A mapped token: the slots of no declared holder, and the balances of the
                    // holders the block names (never a scan of every holder's balance).
                    Some(unmapped) => {
                        slots.extend(unmapped.iter().map(|s| (*a, *s)));
                        for h in addresses {
                            if let Some(s) = self.slot_of.get(&(*a, *h))
                                && w.slots.contains(s)
                            {
                                slots.insert((*a, *s));
                            }
                        }
                    }
                    None => slots.extend(w.slots.iter().map(|s| (*a, *s))),
                }
            }
        }
        if new {
            for k in &self.new_keys {
                match k {
                    StateKey::Account(a) => {
                        accounts.insert(*a);
                    }
                    StateKey::Slot(a, s) => {
                        slots.insert((*a, *s));
                    }
                }
            }
        }
        ReadRequest {
            accounts: accounts
                .into_iter()
                .map(|a| {
                    let w = self.watch.get(&a);
                    // Code once per account; EOAs again each time (EIP-7702 delegations).
                    (a, w.is_none_or(|w| !w.code_read || !w.has_code))
                })
                .collect(),
            slots: slots.into_iter().collect(),
        }
    }

    fn mark_read(&mut self, accounts: &[super::AccountRead]) {
        for a in accounts {
            if let (Some(w), Some(code)) = (self.watch.get_mut(&a.address), &a.code) {
                w.code_read = true;
                w.has_code = !code.is_empty();
            }
        }
    }

    fn sample(&mut self, touched: &[Address]) -> Vec<(Address, U256)> {
        if self.flat_dirty {
            self.flat = self
                .watch
                .iter()
                .flat_map(|(a, w)| w.slots.iter().map(move |s| (*a, *s)))
                .collect();
            self.flat_dirty = false;
        }
        let mut out = Vec::new();
        if self.flat.is_empty() {
            return out;
        }
        for _ in 0..self.cfg.samples_per_block.saturating_mul(2) {
            if out.len() >= self.cfg.samples_per_block {
                break;
            }
            let (a, s) = self.flat[self.rng.usize(..self.flat.len())];
            let fresh = self.new_keys.contains(&StateKey::Slot(a, s));
            if !fresh && touched.binary_search(&a).is_err() && !out.contains(&(a, s)) {
                out.push((a, s));
            }
        }
        out
    }
}
