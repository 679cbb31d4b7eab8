//! Where a token keeps balances and allowances, located once per token, so balance changes are
//! read from the token's own storage writes instead of trusted from return values or events.

use alloy::{
    primitives::{Address, B256, Log, U256, address, b256, keccak256, map::AddressHashMap},
    sol_types::SolCall,
};
use revm::context::TxEnv;

use super::{BlockSim, SimError};
use crate::state::StateKey;

alloy::sol! {
    /// The ERC-20 views the probes call.
    interface IErc20Views {
        function balanceOf(address holder) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
    }
}
use IErc20Views as TestToken;

/// `keccak256("Approval(address,address,uint256)")`.
const APPROVAL: B256 = b256!("8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925");
/// Throwaway addresses the probes ask about (never hold anything).
const PROBE_HOLDER: Address = address!("c0ffee000000000000000000000000000000c0de");
const PROBE_SPENDER: Address = address!("c0ffee000000000000000000000000000000beef");
const PROBE_CALLER: Address = address!("c0ffee0000000000000000000000000000005afe");

/// Order of the hash inputs of a mapping slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingOrder {
    /// Solidity: `keccak256(key ++ index)`.
    Solidity,
    /// Vyper: `keccak256(index ++ key)`.
    Vyper,
}

fn mapping_slot(order: MappingOrder, key: B256, index: U256) -> U256 {
    let idx = B256::from(index);
    let h = match order {
        MappingOrder::Solidity => keccak256([key.as_slice(), idx.as_slice()].concat()),
        MappingOrder::Vyper => keccak256([idx.as_slice(), key.as_slice()].concat()),
    };
    U256::from_be_bytes(h.0)
}

/// The storage layout of one ERC-20's balances (and allowances, when located).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLayout {
    /// Slot index of the balances mapping.
    pub balance_index: U256,
    /// Hash order of the mappings.
    pub order: MappingOrder,
    /// Slot index of the allowances mapping (owner → spender → amount), when located.
    pub allowance_index: Option<U256>,
}

impl TokenLayout {
    /// The slot holding `holder`'s balance.
    pub fn balance_slot(&self, holder: Address) -> U256 {
        mapping_slot(self.order, holder.into_word(), self.balance_index)
    }

    /// The slot holding `owner`'s allowance to `spender`, when the layout is known.
    pub fn allowance_slot(&self, owner: Address, spender: Address) -> Option<U256> {
        let index = self.allowance_index?;
        let inner = mapping_slot(self.order, owner.into_word(), index);
        Some(mapping_slot(self.order, spender.into_word(), inner))
    }
}

/// Located layouts by token.
#[derive(Clone, Debug, Default)]
pub struct TokenLayouts {
    map: AddressHashMap<TokenLayout>,
}

impl TokenLayouts {
    /// The layout of `token`, if located.
    pub fn get(&self, token: &Address) -> Option<&TokenLayout> {
        self.map.get(token)
    }

    /// Records the layout of `token`.
    pub fn insert(&mut self, token: Address, layout: TokenLayout) {
        self.map.insert(token, layout);
    }

    /// Number of located tokens.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is located.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Locates `token`'s layout on the block simulation `bs` (registration time, off the hot
    /// path). `Ok(None)` when the token does not keep balances in a plain mapping (the token is
    /// then unmeasurable and routes through it are refused).
    ///
    /// How: `balanceOf(fresh address)` must read the fresh address's slot, which the cache cannot
    /// hold, so the read fails cold and names the slot; the slot is matched against the mapping
    /// formula for indices 0..128, then confirmed by writing a marker there (in the overlay) and
    /// reading `balanceOf` back. Allowances are located the same way.
    ///
    /// # Errors
    /// [`SimError::Cold`] when the token's own code or other state is not cached yet (watch the
    /// keys and retry).
    pub fn probe(bs: &mut BlockSim<'_>, token: Address) -> Result<Option<TokenLayout>, SimError> {
        let bal = TestToken::balanceOfCall { holder: PROBE_HOLDER }.abi_encode();
        let Some((balance_index, order)) =
            first_cold_mapping(bs, token, bal, &[PROBE_HOLDER.into_word()])?
        else {
            return Ok(None);
        };
        // Confirm with a marker.
        let layout = TokenLayout { balance_index, order, allowance_index: None };
        let marker = U256::from(0x5eed_u64) << 64;
        bs.view().set_storage_override(token, layout.balance_slot(PROBE_HOLDER), marker);
        let seen =
            call_view(bs, token, TestToken::balanceOfCall { holder: PROBE_HOLDER }.abi_encode());
        bs.clear_pending();
        if seen.ok().flatten().map(|b| U256::from_be_slice(&b)) != Some(marker) {
            return Ok(None);
        }
        let allow =
            TestToken::allowanceCall { owner: PROBE_HOLDER, spender: PROBE_SPENDER }.abi_encode();
        let allowance_index = match cold_slot(bs, token, allow)? {
            Some(slot) => (0u64..128).map(U256::from).find(|i| {
                let inner = mapping_slot(order, PROBE_HOLDER.into_word(), *i);
                mapping_slot(order, PROBE_SPENDER.into_word(), inner) == slot
            }),
            None => None,
        };
        Ok(Some(TokenLayout { allowance_index, ..layout }))
    }
}

fn probe_tx(bs: &mut BlockSim<'_>, token: Address, data: Vec<u8>) -> Result<TxEnv, SimError> {
    bs.view().set_account_override(PROBE_CALLER, U256::MAX >> 8, 0);
    TxEnv::builder()
        .caller(PROBE_CALLER)
        .nonce(0)
        .chain_id(None)
        .kind(alloy::primitives::TxKind::Call(token))
        .data(data.into())
        .gas_limit(1_000_000)
        .gas_price(u128::from(bs.next().base_fee))
        .build()
        .map_err(|e| SimError::Invalid(format!("{e:?}")))
}

/// Runs a view call; `Ok(None)` when it reverted.
fn call_view(
    bs: &mut BlockSim<'_>,
    token: Address,
    data: Vec<u8>,
) -> Result<Option<Vec<u8>>, SimError> {
    let tx = probe_tx(bs, token, data)?;
    bs.raw(tx).map(|r| r.map(|b| b.to_vec()))
}

/// The slot of `token` whose cold read aborted the call, when the call stops on one.
fn cold_slot(
    bs: &mut BlockSim<'_>,
    token: Address,
    data: Vec<u8>,
) -> Result<Option<U256>, SimError> {
    match call_view(bs, token, data) {
        Ok(_) => Ok(None),
        Err(SimError::Cold(keys)) => {
            let slot = keys.iter().find_map(|k| match k {
                StateKey::Slot(a, s) if *a == token => Some(*s),
                _ => None,
            });
            match slot {
                Some(s) => Ok(Some(s)),
                None => Err(SimError::Cold(keys)),
            }
        }
        Err(e) => Err(e),
    }
}

fn first_cold_mapping(
    bs: &mut BlockSim<'_>,
    token: Address,
    data: Vec<u8>,
    keys: &[B256],
) -> Result<Option<(U256, MappingOrder)>, SimError> {
    let Some(slot) = cold_slot(bs, token, data)? else { return Ok(None) };
    for i in (0u64..128).map(U256::from) {
        for order in [MappingOrder::Solidity, MappingOrder::Vyper] {
            if keys.iter().any(|k| mapping_slot(order, *k, i) == slot) {
                return Ok(Some((i, order)));
            }
        }
    }
    Ok(None)
}

/// `(token, spender)` when `log` is an `Approval` by `owner`.
pub(super) fn approval_by(log: &Log, owner: Address) -> Option<(Address, Address)> {
    let t = log.data.topics();
    if t.len() == 3 && t[0] == APPROVAL && Address::from_word(t[1]) == owner {
        return Some((log.address, Address::from_word(t[2])));
    }
    None
}

/// The value of the last `Approval(owner, spender)` `token` emitted in `logs`.
pub(super) fn last_approval(
    logs: &[Log],
    token: Address,
    owner: Address,
    spender: Address,
) -> U256 {
    logs.iter()
        .rev()
        .filter(|l| l.address == token && approval_by(l, owner) == Some((token, spender)))
        .find_map(|l| (l.data.data.len() >= 32).then(|| U256::from_be_slice(&l.data.data[..32])))
        .unwrap_or(U256::MAX)
}
