//! Synthetic pools for scaling runs: copies of a real PMM pool at fresh addresses.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use alloy::primitives::{Address, B256, U256, keccak256};

use crate::{
    config::{ChainConfig, VenueKind},
    state::{AccountRead, BlockInfo, ReadRequest, ReadSet, SourceError, StateSource},
};

/// The bench's state source over a recording: answers for synthetic pools from their
/// original's answers, and carries recorded values forward.
///
/// Reads of a synthetic address are asked of its original and renamed back. A read the inner
/// source cannot answer whole is answered key by key: a key not recorded at the block asked is
/// taken from the latest earlier block of `history` that recorded it (a value the recording
/// engine did not re-read had not changed for it), and a key never recorded (a token's balance
/// slot of a synthetic pool, say) reads as zero.
///
/// A synthetic pool's own state is answered at the first block the source is asked about (the
/// warm-up block) whatever block is asked: the copies are independent pools that no recorded
/// block touches, so their state must not follow the original's (the cache's divergence samples
/// would otherwise disagree on them at every head and force full re-reads).
#[derive(Clone, Debug)]
pub struct SynthSource<S> {
    inner: S,
    map: Arc<HashMap<Address, Address>>,
    history: Arc<Vec<B256>>,
    pin: Arc<OnceLock<B256>>,
    /// Slots answered key by key: the history position answered at and the value, so a later
    /// block only looks at the blocks recorded since (not the whole history again).
    slots: Arc<Mutex<SlotMemo>>,
}

/// Slot → (history position answered at, value).
type SlotMemo = HashMap<(Address, U256), (usize, U256)>;

impl<S: StateSource> SynthSource<S> {
    /// `map`: synthetic address → the real pool it copies; `history`: the recording's block
    /// hashes, oldest first.
    pub fn new(inner: S, map: HashMap<Address, Address>, history: Vec<B256>) -> Self {
        Self {
            inner,
            map: Arc::new(map),
            history: Arc::new(history),
            pin: Arc::new(OnceLock::new()),
            slots: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// `at`, then the blocks recorded before it, newest first.
    fn blocks_back(&self, at: B256) -> Vec<B256> {
        let before = self.history.iter().position(|h| *h == at).unwrap_or(0);
        std::iter::once(at).chain(self.history[..before].iter().rev().copied()).collect()
    }

    fn real(&self, a: Address) -> Address {
        self.map.get(&a).copied().unwrap_or(a)
    }

    async fn read_one(&self, blocks: &[B256], one: &ReadRequest) -> Option<ReadSet> {
        for b in blocks {
            if let Ok(s) = self.inner.read(*b, one).await {
                return Some(s);
            }
        }
        None
    }

    async fn read_each(&self, at: B256, req: &ReadRequest) -> ReadSet {
        let blocks = self.blocks_back(at);
        let mut out = ReadSet::default();
        for (address, with_code) in &req.accounts {
            let one = ReadRequest { accounts: vec![(*address, *with_code)], slots: vec![] };
            let got =
                self.read_one(&blocks, &one).await.and_then(|s| s.accounts.into_iter().next());
            out.accounts.push(got.unwrap_or(AccountRead {
                address: *address,
                balance: U256::ZERO,
                nonce: 0,
                code: with_code.then(Default::default),
            }));
        }
        // Position of `at` in the history (its blocks back are `blocks`).
        let pos = blocks.len() - 1;
        for (address, slot) in &req.slots {
            let key = (*address, *slot);
            let known = self.slots.lock().ok().and_then(|m| m.get(&key).copied());
            // A key answered at an earlier position needs only the blocks recorded since.
            let (scan, fallback) = match known {
                Some((p, v)) if p <= pos && self.history.get(pos) == Some(&at) => {
                    (&blocks[..pos - p], v)
                }
                _ => (&blocks[..], U256::ZERO),
            };
            let one = ReadRequest { accounts: vec![], slots: vec![key] };
            let got = self.read_one(scan, &one).await.and_then(|s| s.slots.into_iter().next());
            let value = got.map_or(fallback, |g| g.2);
            if let Ok(mut m) = self.slots.lock() {
                m.insert(key, (pos, value));
            }
            out.slots.push((*address, *slot, value));
        }
        out
    }
}

impl<S: StateSource> StateSource for SynthSource<S> {
    async fn block(&self, hash: B256) -> Result<BlockInfo, SourceError> {
        self.inner.block(hash).await
    }

    async fn latest(&self) -> Result<BlockInfo, SourceError> {
        self.inner.latest().await
    }

    async fn read(&self, at: B256, req: &ReadRequest) -> Result<ReadSet, SourceError> {
        let pin = *self.pin.get_or_init(|| at);
        let synthetic = |a: &Address| self.map.contains_key(a);
        if pin != at
            && (req.accounts.iter().any(|(a, _)| synthetic(a))
                || req.slots.iter().any(|(a, _)| synthetic(a)))
        {
            // Split: the copies' own state at the pin, everything else at `at`; answers
            // back in request order.
            let part = |syn: bool| ReadRequest {
                accounts: req
                    .accounts
                    .iter()
                    .filter(|(a, _)| synthetic(a) == syn)
                    .copied()
                    .collect(),
                slots: req.slots.iter().filter(|(a, _)| synthetic(a) == syn).copied().collect(),
            };
            let (pinned, live) =
                (self.read_at(pin, &part(true)).await?, self.read_at(at, &part(false)).await?);
            let (mut pa, mut la) = (pinned.accounts.into_iter(), live.accounts.into_iter());
            let (mut ps, mut ls) = (pinned.slots.into_iter(), live.slots.into_iter());
            let mut out = ReadSet::default();
            for (a, _) in &req.accounts {
                let next = if synthetic(a) { pa.next() } else { la.next() };
                out.accounts.extend(next);
            }
            for (a, _) in &req.slots {
                let next = if synthetic(a) { ps.next() } else { ls.next() };
                out.slots.extend(next);
            }
            return Ok(out);
        }
        self.read_at(at, req).await
    }
}

impl<S: StateSource> SynthSource<S> {
    async fn read_at(&self, at: B256, req: &ReadRequest) -> Result<ReadSet, SourceError> {
        if req.accounts.is_empty() && req.slots.is_empty() {
            return Ok(ReadSet::default());
        }
        let mapped = ReadRequest {
            accounts: req.accounts.iter().map(|(a, c)| (self.real(*a), *c)).collect(),
            slots: req.slots.iter().map(|(a, s)| (self.real(*a), *s)).collect(),
        };
        let mut set = match self.inner.read(at, &mapped).await {
            Ok(s) if s.accounts.len() == req.accounts.len() && s.slots.len() == req.slots.len() => {
                s
            }
            _ => self.read_each(at, &mapped).await,
        };
        // Answers are in request order: give each its asked address back.
        for (got, (asked, _)) in set.accounts.iter_mut().zip(&req.accounts) {
            got.address = *asked;
        }
        for (got, (asked, _)) in set.slots.iter_mut().zip(&req.slots) {
            got.0 = *asked;
        }
        Ok(set)
    }
}

/// Adds `n` synthetic copies of `chain`'s first PMM pool to its venues (named `<pool>#<i>`, at
/// addresses derived from `i`); returns synthetic address → original, for [`SynthSource::new`].
///
/// # Errors
/// A message when `n > 0` and the chain has no PMM pool to copy.
pub fn add_synthetic_pools(
    chain: &mut ChainConfig,
    n: usize,
) -> Result<HashMap<Address, Address>, String> {
    let mut map = HashMap::new();
    if n == 0 {
        return Ok(map);
    }
    let original = chain
        .venues
        .iter()
        .find(|v| v.kind == VenueKind::DodoDsp)
        .cloned()
        .ok_or_else(|| format!("chain `{}` has no PMM pool to copy", chain.name))?;
    for i in 0..n {
        let seed = keccak256(format!("cantilever synthetic pool {i}").as_bytes());
        let address = Address::from_slice(&seed[12..]);
        let mut v = original.clone();
        v.name = format!("{}#{i}", original.name);
        v.address = address;
        map.insert(address, original.address);
        chain.venues.push(v);
    }
    Ok(map)
}
