//! Test support shared by the venue modules: the property-test case count and runner, a local
//! chain ([`LocalEvm`]) with token helpers that write balances and supplies straight into storage,
//! storage-slot arithmetic, and amount strategies.
//!
//! The normal run uses 10,000 cases per property; `PROPTEST_CASES` overrides it
//! (`PROPTEST_CASES=1000000 cargo test --release venues::` is the long run).

use alloy::{
    primitives::{Address, B256, Bytes, U256, keccak256},
    sol_types::{SolCall, SolConstructor},
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};

use crate::{
    contracts::TestToken,
    evm::{EvmError, LocalEvm},
};

/// Cases per property: `PROPTEST_CASES` when set, else 10,000.
pub(crate) fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000)
}

/// A runner with [`cases`] cases and no regression files written into the source tree.
pub(crate) fn runner() -> TestRunner {
    runner_with(cases())
}

/// A runner with `n` cases.
pub(crate) fn runner_with(n: u32) -> TestRunner {
    TestRunner::new(Config { cases: n, failure_persistence: None, ..Config::default() })
}

/// `10^n`.
pub(crate) fn pow10(n: u32) -> U256 {
    U256::from(10u64).pow(U256::from(n))
}

/// Parses a decimal literal.
pub(crate) fn dec(s: &str) -> U256 {
    s.parse().expect("decimal literal")
}

/// The storage slot of `mapping[key]` for a mapping at `slot`: keccak256(key ‖ slot).
pub(crate) fn mapping_slot(key: B256, slot: U256) -> U256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(key.as_slice());
    buf[32..].copy_from_slice(&slot.to_be_bytes::<32>());
    keccak256(buf).into()
}

/// An address as a mapping key (left-padded to 32 bytes).
pub(crate) fn addr_key(a: Address) -> B256 {
    a.into_word()
}

/// `TestToken` storage: `totalSupply` slot.
const TOKEN_SUPPLY_SLOT: u64 = 2;
/// `TestToken` storage: `balanceOf` mapping slot.
const TOKEN_BALANCE_SLOT: u64 = 4;
/// `TestToken` storage: `allowance` mapping slot.
const TOKEN_ALLOWANCE_SLOT: u64 = 5;

/// A local chain for property tests.
#[derive(Debug)]
pub(crate) struct Chain {
    /// The EVM (public for direct `send` / `view`).
    pub(crate) evm: LocalEvm,
}

impl Chain {
    pub(crate) fn new() -> Self {
        Self { evm: LocalEvm::default() }
    }

    /// The deployer (owner of everything deployed through this chain).
    pub(crate) fn owner(&self) -> Address {
        self.evm.sender
    }

    /// Deploys `code ++ args`.
    pub(crate) fn deploy(&mut self, code: &Bytes, args: Vec<u8>) -> Address {
        self.evm.deploy(code, &args).expect("deploy")
    }

    /// Deploys a `TestToken`.
    pub(crate) fn token(&mut self, symbol: &str, decimals: u8) -> Address {
        let args = TestToken::constructorCall {
            name_: symbol.into(),
            symbol_: symbol.into(),
            decimals_: decimals,
        }
        .abi_encode();
        self.deploy(&TestToken::BYTECODE, args)
    }

    /// Writes a storage slot.
    pub(crate) fn store(&mut self, at: Address, slot: U256, value: U256) {
        self.evm.set_storage(at, slot, value).expect("storage write");
    }

    /// Sets `who`'s balance of `token` (no supply bookkeeping).
    pub(crate) fn set_balance(&mut self, token: Address, who: Address, amount: U256) {
        let slot = mapping_slot(addr_key(who), U256::from(TOKEN_BALANCE_SLOT));
        self.store(token, slot, amount);
    }

    /// Sets `token`'s total supply.
    pub(crate) fn set_supply(&mut self, token: Address, amount: U256) {
        self.store(token, U256::from(TOKEN_SUPPLY_SLOT), amount);
    }

    /// Sets an unlimited allowance of `owner` for `spender` (`type(uint256).max` never decreases).
    pub(crate) fn approve_max(&mut self, token: Address, owner: Address, spender: Address) {
        let inner = mapping_slot(addr_key(owner), U256::from(TOKEN_ALLOWANCE_SLOT));
        let slot = mapping_slot(addr_key(spender), inner);
        self.store(token, slot, U256::MAX);
    }

    /// `who`'s balance of `token`.
    pub(crate) fn balance(&self, token: Address, who: Address) -> U256 {
        self.view(token, &TestToken::balanceOfCall(who)).expect("balanceOf")
    }

    /// A committing call from `from`.
    pub(crate) fn send<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<C::Return, EvmError> {
        self.evm.send(from, to, call)
    }

    /// A view call (from the zero address).
    pub(crate) fn view<C: SolCall>(&self, to: Address, call: &C) -> Result<C::Return, EvmError> {
        self.evm.view(Address::ZERO, to, call)
    }

    /// A non-committing call from `from`.
    pub(crate) fn try_call<C: SolCall>(
        &self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<C::Return, EvmError> {
        self.evm.view(from, to, call)
    }
}

/// A value with a log-uniform bit length in `0..=max_bits` (uniform below that length), so tiny,
/// medium and huge magnitudes are all common.
pub(crate) fn log_uniform(max_bits: u32) -> impl Strategy<Value = U256> {
    (0..=max_bits, any::<[u64; 4]>()).prop_map(|(bits, limbs)| {
        let v = U256::from_limbs(limbs);
        if bits == 0 { U256::ZERO } else { v >> (256 - bits as usize) }
    })
}

/// An amount to trade against a side holding `reserve`: one to a thousand wei, a fraction of the
/// reserve (0.01% to 99.99%), a log-uniform amount up to a few times the reserve, or an absurd one
/// up to `U256::MAX`.
pub(crate) fn amount_against(reserve: U256) -> BoxedStrategy<U256> {
    let bits = reserve.bit_len() as u32;
    prop_oneof![
        2 => (1u64..=1000).prop_map(U256::from),
        4 => (1u64..=9_999).prop_map(move |bp| reserve * U256::from(bp) / U256::from(10_000u64)),
        4 => log_uniform((bits + 3).min(256)),
        1 => log_uniform(256),
    ]
    .boxed()
}

/// Counts the outcomes of a property's cases, so a property cannot pass vacuously (every case an
/// error, or an error kind never reached).
#[derive(Debug, Default)]
pub(crate) struct Tally(std::cell::RefCell<std::collections::BTreeMap<String, u32>>);

impl Tally {
    /// Counts one outcome: `"ok"` or the error variant's name.
    pub(crate) fn add<T>(&self, outcome: &Result<T, crate::venues::VenueError>) {
        let label = match outcome {
            Ok(_) => "ok".to_owned(),
            Err(e) => {
                let name = format!("{e:?}");
                name.split(['(', ' ', '{']).next().unwrap_or_default().to_owned()
            }
        };
        *self.0.borrow_mut().entry(label).or_default() += 1;
    }

    /// Requires at least `min_ok_pct` % successes and every label of `seen` at least once, when
    /// the run has 1,000 cases or more (short runs may miss rare outcomes).
    pub(crate) fn check(&self, min_ok_pct: u32, seen: &[&str]) {
        let counts = self.0.borrow();
        let total: u32 = counts.values().sum();
        eprintln!("outcomes: {counts:?}");
        if cases() < 1_000 {
            return;
        }
        let ok = counts.get("ok").copied().unwrap_or_default();
        assert!(ok * 100 >= total * min_ok_pct, "only {ok} of {total} cases succeeded: {counts:?}");
        for label in seen {
            assert!(counts.contains_key(*label), "no case ended in {label}: {counts:?}");
        }
    }
}

/// A private anvil node for the `fetch` tests (real JSON-RPC, real batches, real revert
/// encoding), with a provider that signs as dev account 0. A missing anvil fails the test.
pub(crate) struct Node {
    /// The node; ends on drop.
    _node: crate::devnet::AnvilNode,
    /// Provider signing as `me`.
    pub(crate) p: alloy::providers::DynProvider,
    /// Dev account 0.
    pub(crate) me: Address,
}

impl Node {
    /// Starts a node.
    pub(crate) fn spawn() -> Self {
        let node = crate::devnet::AnvilNode::spawn(&crate::devnet::AnvilOptions::default())
            .expect("anvil (install it with `npm install` in tools/)");
        let key = node.keys()[0].clone();
        let me = key.address();
        let p = crate::devnet::deploy::signing_provider(&node.http_url(), key).expect("provider");
        Self { _node: node, p, me }
    }

    async fn submit(&self, tx: alloy::rpc::types::TransactionRequest) -> Option<Address> {
        use alloy::{network::TransactionBuilder, providers::Provider};
        let tx = tx.with_gas_limit(10_000_000);
        let pending = self.p.send_transaction(tx).await.expect("send");
        let receipt =
            crate::devnet::deploy::confirm(&self.p, pending, "test tx").await.expect("mined");
        receipt.contract_address
    }

    /// Deploys `code ++ args`.
    pub(crate) async fn deploy(&self, code: &Bytes, args: Vec<u8>) -> Address {
        use alloy::network::TransactionBuilder;
        let mut data = code.to_vec();
        data.extend(args);
        let tx = alloy::rpc::types::TransactionRequest::default().with_deploy_code(data);
        self.submit(tx).await.expect("contract address")
    }

    /// Deploys a `TestToken`.
    pub(crate) async fn token(&self, symbol: &str, decimals: u8) -> Address {
        let args = TestToken::constructorCall {
            name_: symbol.into(),
            symbol_: symbol.into(),
            decimals_: decimals,
        }
        .abi_encode();
        self.deploy(&TestToken::BYTECODE, args).await
    }

    /// Sends `call` to `to` and requires success.
    pub(crate) async fn send<C: SolCall>(&self, to: Address, call: &C) {
        use alloy::network::TransactionBuilder;
        let tx = alloy::rpc::types::TransactionRequest::default()
            .with_to(to)
            .with_input(call.abi_encode());
        self.submit(tx).await;
    }

    /// A view call at the latest block.
    pub(crate) async fn view<C: SolCall>(&self, to: Address, call: &C) -> C::Return {
        use alloy::{network::TransactionBuilder, providers::Provider};
        let tx = alloy::rpc::types::TransactionRequest::default()
            .with_to(to)
            .with_input(call.abi_encode());
        let out = self.p.call(tx).await.expect("eth_call");
        C::abi_decode_returns(&out).expect("decode")
    }

    /// The latest block, pinned by number.
    pub(crate) async fn block(&self) -> alloy::eips::BlockId {
        use alloy::providers::Provider;
        alloy::eips::BlockId::number(self.p.get_block_number().await.expect("block number"))
    }

    /// A provider for a port nothing listens on (transport errors).
    pub(crate) fn dead_provider() -> alloy::providers::DynProvider {
        use alloy::providers::{Provider, ProviderBuilder};
        let url = "http://127.0.0.1:9".parse().expect("url");
        ProviderBuilder::new().connect_http(url).erased()
    }
}
