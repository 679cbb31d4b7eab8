//! Synthetic pools for scaling runs: copies of a real PMM pool at fresh addresses.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use alloy::primitives::{Address, B256, U256, keccak256};

use crate::{
    cassette::CassetteSource,
    config::{ChainConfig, VenueKind},
    state::{AccountRead, BlockInfo, ReadRequest, ReadSet, SourceError, StateSource},
};

/// The bench's state source over a recording: answers for synthetic pools from their
/// original's answers, and carries recorded values forward.
///
/// Each key is looked up in the cassette directly (no error is built for a key a block did not
/// record, so the replay's own cost stays out of the engine's fetch latency): a key recorded at
/// the block asked is answered from there; a key not recorded there is taken from the latest
/// earlier block of `history` that recorded it (a value the recording engine did not re-read had
/// not changed for it). A key never recorded at or before the block asked reads as zero when
/// synthetic pools were added (a token's balance slot of a synthetic pool is never recorded);
/// without them it fails the read as a miss, as the cassette would (a zero for a real key would
/// be a state the chain never had). A recorded failure of the same read replays as it would
/// from the cassette.
///
/// A synthetic pool's own state is answered at the first block the source is asked about (the
/// warm-up block) whatever block is asked: the copies are independent pools that no recorded
/// block touches, so their state must not follow the original's (the cache's divergence samples
/// would otherwise disagree on them at every head and force full re-reads).
#[derive(Clone, Debug)]
pub struct SynthSource {
    inner: CassetteSource,
    map: Arc<HashMap<Address, Address>>,
    history: Arc<Vec<B256>>,
    /// Position of each block hash in `history`.
    position: Arc<HashMap<B256, usize>>,
    pin: Arc<OnceLock<B256>>,
    /// Slots answered from an earlier block: the history position answered at and the value,
    /// so a later block only looks at the blocks recorded since (not the whole history again).
    slots: Arc<Mutex<SlotMemo>>,
}

/// Slot → (history position answered at, value; `None`: not recorded by then).
type SlotMemo = HashMap<(Address, U256), (usize, Option<U256>)>;

impl SynthSource {
    /// `map`: synthetic address → the real pool it copies; `history`: the recording's block
    /// hashes, oldest first.
    pub fn new(inner: CassetteSource, map: HashMap<Address, Address>, history: Vec<B256>) -> Self {
        let position = history.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        Self {
            inner,
            map: Arc::new(map),
            history: Arc::new(history),
            position: Arc::new(position),
            pin: Arc::new(OnceLock::new()),
            slots: Arc::new(Mutex::new(HashMap::default())),
        }
    }

    fn real(&self, a: Address) -> Address {
        self.map.get(&a).copied().unwrap_or(a)
    }

    /// `at` and the blocks recorded before it, newest first.
    fn blocks_back(&self, at: B256) -> impl Iterator<Item = B256> + '_ {
        let before = self.position.get(&at).copied().unwrap_or(0);
        std::iter::once(at).chain(self.history[..before].iter().rev().copied())
    }

    /// `address` at `at` as recorded there or at the latest earlier block; `None` when never
    /// recorded by then.
    fn account(&self, at: B256, address: Address, with_code: bool) -> Option<AccountRead> {
        let real = self.real(address);
        let mut found: Option<AccountRead> = None;
        for b in self.blocks_back(at) {
            let Some(a) = self.inner.account_at(&b, real) else { continue };
            let got = found.get_or_insert(AccountRead { code: None, ..a.clone() });
            if got.code.is_none() {
                got.code = a.code;
            }
            if !with_code || got.code.is_some() {
                break;
            }
        }
        let mut a = found?;
        a.address = address;
        if !with_code {
            a.code = None;
        } else if a.code.is_none() {
            a.code = Some(Default::default());
        }
        Some(a)
    }

    /// `address`'s `slot` at `at` as recorded there or at the latest earlier block; `None` when
    /// never recorded by then.
    fn slot(&self, at: B256, address: Address, slot: U256) -> Option<U256> {
        let real = self.real(address);
        if let Some(v) = self.inner.slot_at(&at, real, slot) {
            return Some(v);
        }
        let key = (real, slot);
        let pos = *self.position.get(&at)?;
        let known = self.slots.lock().ok().and_then(|m| m.get(&key).copied());
        // A key answered at an earlier position needs only the blocks recorded since.
        let (from, fallback) = match known {
            Some((p, v)) if p <= pos => (p, v),
            _ => (0, None),
        };
        let value = self.history[from..pos]
            .iter()
            .rev()
            .find_map(|b| self.inner.slot_at(b, real, slot))
            .or(fallback);
        if let Ok(mut m) = self.slots.lock() {
            m.insert(key, (pos, value));
        }
        value
    }

    /// A key never recorded at or before the block asked: zero with synthetic pools (their
    /// balance slots in the tokens were never recorded), else a miss naming the key.
    fn unrecorded<T: Default>(
        &self,
        at: B256,
        what: impl FnOnce() -> String,
    ) -> Result<T, SourceError> {
        if self.map.is_empty() {
            return Err(SourceError::Rejected {
                method: "cassette",
                code: 0,
                message: format!("read at {at}: {} not recorded at or before this block", what()),
            });
        }
        Ok(T::default())
    }
}

impl StateSource for SynthSource {
    async fn block(&self, hash: B256) -> Result<BlockInfo, SourceError> {
        self.inner.block(hash).await
    }

    async fn latest(&self) -> Result<BlockInfo, SourceError> {
        self.inner.latest().await
    }

    async fn read(&self, at: B256, req: &ReadRequest) -> Result<ReadSet, SourceError> {
        if let Some(e) = self.inner.read_failure(at, req) {
            return Err(e);
        }
        let pin = *self.pin.get_or_init(|| at);
        let block_of = |a: &Address| if self.map.contains_key(a) { pin } else { at };
        let accounts = req
            .accounts
            .iter()
            .map(|(a, code)| match self.account(block_of(a), *a, *code) {
                Some(got) => Ok(got),
                None => self.unrecorded(at, || format!("account {a}")).map(|d: AccountRead| {
                    AccountRead { address: *a, code: code.then(Default::default), ..d }
                }),
            })
            .collect::<Result<_, _>>()?;
        let slots = req
            .slots
            .iter()
            .map(|(a, s)| match self.slot(block_of(a), *a, *s) {
                Some(v) => Ok((*a, *s, v)),
                None => self.unrecorded(at, || format!("slot {s:#x} of {a}")).map(|v| (*a, *s, v)),
            })
            .collect::<Result<_, _>>()?;
        Ok(ReadSet { accounts, slots })
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
