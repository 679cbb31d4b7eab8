//! The venue fixture contracts against anvil: the Uniswap V2 pair (DOMAIN §2.1), the reserve vault
//! (seed 001), the synthetic swap (seed 002), the ERC-3156 lender (DOMAIN §3) and the bridge, plus
//! the devnet's relayer end to end.
//!
//! Every test deploys its own tokens and venues from fresh accounts, so tests run in parallel and
//! never touch the scenario's contracts; the one exception is the relayer test, which locks on the
//! scenario bridge with a fresh account. Expected numbers are literals computed offline with exact
//! integers from the contracts' documented formulas (the formula sits next to each). Revert
//! reasons are read with `eth_call` and matched exactly; each refusal is then also mined with a
//! fixed gas limit to show it fails on chain.
//!
//! The synthetic-swap tests that move the clock (the 60 s settlement lock) run on a private anvil
//! node, not on the shared devnet: chain time is global, and a source chain pushed ahead of the
//! wall clock delays every later bridge release from it by the same amount (the destination bridge
//! needs its own `block.timestamp ≥ lockedAt + delay`), which would break the relayer tests.

use std::time::{Duration, Instant};

use alloy::{
    contract::{CallBuilder, CallDecoder},
    eips::BlockId,
    network::Ethereum,
    primitives::{Address, B256, Bytes, U256, keccak256},
    providers::{DynProvider, PendingTransactionBuilder, Provider, ext::AnvilApi},
    rpc::types::TransactionReceipt,
    signers::local::PrivateKeySigner,
    sol_types::{Revert, SolError, SolEvent},
};
use cantilever::{
    contracts::{Bridge, FlashLender, ReserveVault, SynthSwap, TestToken, UniV2Factory, UniV2Pair},
    devnet::{AnvilNode, AnvilOptions, ChainManifest},
};

use crate::harness::{balance, deploy_token, fresh_account, fund, provider, reader, shared};

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    V2FlashBorrower,
    "fixtures/artifacts/V2FlashBorrower.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    Erc3156TestBorrower,
    "fixtures/artifacts/Erc3156TestBorrower.json"
);

/// Gas limit for every venue transaction (anvil's estimate can be too low when a V2 pair updates
/// its accumulators, and a refusal must reach the chain rather than fail estimation).
const GAS: u64 = 3_000_000;

fn pow10(n: u64) -> U256 {
    U256::from(10u64).pow(U256::from(n))
}

/// `n` whole units of an 18-decimal token.
fn e18(n: u64) -> U256 {
    U256::from(n) * pow10(18)
}

/// `n` whole units of a 6-decimal token.
fn e6(n: u64) -> U256 {
    U256::from(n) * pow10(6)
}

fn u(s: &str) -> U256 {
    s.parse().expect("decimal literal")
}

// ------------------------------------------------------------------------------------------------
// Accounts, transactions, revert reasons, events
// ------------------------------------------------------------------------------------------------

/// A funded account and a provider signing with it.
struct Actor {
    key: PrivateKeySigner,
    p: DynProvider,
}

impl Actor {
    /// A fresh random account with ether on `chain` of the shared devnet.
    async fn fresh(chain: &ChainManifest) -> Self {
        let (key, p) = fresh_account(chain).await;
        Self { key, p }
    }

    fn addr(&self) -> Address {
        self.key.address()
    }
}

/// A private anvil node (automine, 10 dev accounts) for tests that move the clock; it stops when
/// the returned node is dropped.
fn private_chain() -> (AnvilNode, Vec<Actor>) {
    let node = AnvilNode::spawn(&AnvilOptions::default()).expect("private anvil node");
    let url = node.http_url();
    let actors =
        node.keys().iter().map(|k| Actor { key: k.clone(), p: provider(&url, k) }).collect();
    (node, actors)
}

/// Polls for the receipt of `pending` (no status check).
async fn mined(pending: PendingTransactionBuilder<Ethereum>) -> TransactionReceipt {
    let hash = *pending.tx_hash();
    let p = pending.provider().clone();
    let started = Instant::now();
    loop {
        if let Some(r) = p.get_transaction_receipt(hash).await.expect("receipt") {
            return r;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no receipt for {hash}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `call` as built (gas estimated unless set) and requires success.
async fn ok_as_is<P: Provider, D: CallDecoder>(
    call: CallBuilder<P, D>,
    what: &str,
) -> TransactionReceipt {
    let pending = call.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let r = mined(pending).await;
    assert!(r.status(), "{what}: reverted");
    r
}

/// Sends `call` with the fixed gas limit and requires success.
async fn ok<P: Provider, D: CallDecoder>(
    call: CallBuilder<P, D>,
    what: &str,
) -> TransactionReceipt {
    ok_as_is(call.gas(GAS), what).await
}

/// Deploys a contract (gas estimated) and returns its address.
async fn deploy<P: Provider, D: CallDecoder>(builder: CallBuilder<P, D>, what: &str) -> Address {
    ok_as_is(builder, what).await.contract_address.unwrap_or_else(|| panic!("{what}: no address"))
}

/// The `Error(string)` text of revert data.
fn reason(data: &[u8]) -> String {
    Revert::abi_decode(data)
        .map(|r| r.reason)
        .unwrap_or_else(|_| format!("undecodable revert data {}", Bytes::copy_from_slice(data)))
}

/// Requires that `call`, sent by `who`, reverts with exactly `want`: first with `eth_call`, then
/// mined with the fixed gas limit. Returns the failed receipt.
async fn reverts<P: Provider, D: CallDecoder>(
    who: &Actor,
    call: CallBuilder<P, D>,
    want: &str,
    what: &str,
) -> TransactionReceipt {
    let call = call.from(who.addr()).gas(GAS);
    let err = call.call_raw().await.expect_err(what);
    let data = err.as_revert_data().unwrap_or_else(|| panic!("{what}: not a revert: {err}"));
    assert_eq!(reason(&data), want, "{what}: eth_call revert reason");
    let r = mined(call.send().await.unwrap_or_else(|e| panic!("{what}: send: {e}"))).await;
    assert!(!r.status(), "{what}: succeeded on chain");
    r
}

/// Requires that the read-only `call` reverts with exactly `want`.
async fn call_reverts<P: Provider, D: CallDecoder>(
    call: CallBuilder<P, D>,
    want: &str,
    what: &str,
) {
    let err = call.call_raw().await.expect_err(what);
    let data = err.as_revert_data().unwrap_or_else(|| panic!("{what}: not a revert: {err}"));
    assert_eq!(reason(&data), want, "{what}");
}

/// Every `E` emitted by `emitter` in `r`, in log order.
fn events<E: SolEvent>(r: &TransactionReceipt, emitter: Address) -> Vec<E> {
    r.inner
        .logs()
        .iter()
        .filter(|l| l.address() == emitter)
        .filter_map(|l| l.log_decode::<E>().ok())
        .map(|l| l.inner.data)
        .collect()
}

/// The single `E` emitted by `emitter` in `r`.
fn event<E: SolEvent>(r: &TransactionReceipt, emitter: Address) -> E {
    let mut all = events::<E>(r, emitter);
    assert_eq!(all.len(), 1, "exactly one {} from {emitter}", E::SIGNATURE);
    all.remove(0)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The timestamp of the block that mined `r`.
async fn block_time(p: &DynProvider, r: &TransactionReceipt) -> u64 {
    let n = r.block_number.expect("mined receipt has a block number");
    p.get_block_by_number(n.into()).await.expect("block").expect("block exists").header.timestamp
}

async fn token_balance(p: &DynProvider, token: Address, who: Address) -> U256 {
    TestToken::new(token, p).balanceOf(who).call().await.expect("balanceOf")
}

/// A token owned by `owner` with `supply` raw units minted to it.
async fn token(owner: &Actor, symbol: &str, decimals: u8, supply: U256) -> Address {
    let t = deploy_token(&owner.p, symbol, decimals).await;
    ok(TestToken::new(t, &owner.p).mint(owner.addr(), supply), "mint").await;
    t
}

/// `owner` of `token` mints `amount` to `to`.
async fn mint_to(owner: &Actor, token: Address, to: Address, amount: U256) {
    ok(TestToken::new(token, &owner.p).mint(to, amount), "mint").await;
}

async fn transfer(from: &Actor, token: Address, to: Address, amount: U256) {
    ok(TestToken::new(token, &from.p).transfer(to, amount), "transfer").await;
}

async fn approve_max(from: &Actor, token: Address, spender: Address) {
    ok(TestToken::new(token, &from.p).approve(spender, U256::MAX), "approve").await;
}

// ------------------------------------------------------------------------------------------------
// Uniswap V2 pair (DOMAIN §2.1)
// ------------------------------------------------------------------------------------------------

/// A fresh pair of two fresh 18-decimal tokens, each reserve `reserve`, liquidity held by `house`.
/// Returns (pair, token0, token1).
async fn v2_pair(house: &Actor, reserve: U256) -> (Address, Address, Address) {
    let a = token(house, "VA", 18, reserve * U256::from(2u64)).await;
    let b = token(house, "VB", 18, reserve * U256::from(2u64)).await;
    let factory = deploy(UniV2Factory::deploy_builder(&house.p), "factory").await;
    let factory = UniV2Factory::new(factory, &house.p);
    ok_as_is(factory.createPair(a, b), "createPair").await;
    let pair = factory.getPair(a, b).call().await.unwrap();
    assert_eq!(factory.getPair(b, a).call().await.unwrap(), pair, "getPair is symmetric");
    let pr = UniV2Pair::new(pair, &house.p);
    let (t0, t1) = (pr.token0().call().await.unwrap(), pr.token1().call().await.unwrap());
    assert!(t0 < t1, "token0 is the lower address");
    assert_eq!((t0.min(t1), t0.max(t1)), (a.min(b), a.max(b)));
    transfer(house, a, pair, reserve).await;
    transfer(house, b, pair, reserve).await;
    let r = ok(pr.mint(house.addr()), "pair mint").await;
    // First mint: √(r·r) − 1000 shares, 1000 locked at address(0).
    let minted = event::<UniV2Pair::Mint>(&r, pair);
    assert_eq!((minted.amount0, minted.amount1), (reserve, reserve));
    assert_eq!(pr.balanceOf(house.addr()).call().await.unwrap(), reserve - U256::from(1000u64));
    let sync = event::<UniV2Pair::Sync>(&r, pair);
    assert_eq!((U256::from(sync.reserve0), U256::from(sync.reserve1)), (reserve, reserve));
    (pair, t0, t1)
}

async fn reserves(p: &DynProvider, pair: Address) -> (U256, U256) {
    let r = UniV2Pair::new(pair, p).getReserves().call().await.unwrap();
    (U256::from(r._reserve0), U256::from(r._reserve1))
}

#[tokio::test]
async fn v2_swap_pays_the_domain_amount_out_to_the_wei() {
    let c = shared().c138();
    let house = Actor::fresh(c).await;
    let reserve = e18(1_000_000);
    let (pair, t0, t1) = v2_pair(&house, reserve).await;
    let pr = UniV2Pair::new(pair, &house.p);
    let me = house.addr();

    // DOMAIN §2.1: reserves 1e6/1e6, input 10,000 → 9,871.580343970612988504 out
    // (⌊x·997·R/(R·1000 + x·997)⌋ with 18 decimals).
    let amount_in = e18(10_000);
    let out = u("9871580343970612988504");
    let x = amount_in * U256::from(997u64);
    assert_eq!(x * reserve / (reserve * U256::from(1000u64) + x), out, "getAmountOut");

    transfer(&house, t0, pair, amount_in).await;
    // One wei more than getAmountOut breaks the invariant; the input stays in the pair.
    reverts(&house, pr.swap(U256::ZERO, out + U256::from(1u64), me, Bytes::new()), "K", "out + 1")
        .await;
    let before = token_balance(&house.p, t1, me).await;
    let r = ok(pr.swap(U256::ZERO, out, me, Bytes::new()), "swap exact out").await;
    assert_eq!(token_balance(&house.p, t1, me).await, before + out, "taker receives exactly out");

    // Sync carries the new reserves, Swap the in/out amounts, sender = caller, to = recipient.
    let sync = event::<UniV2Pair::Sync>(&r, pair);
    assert_eq!(U256::from(sync.reserve0), reserve + amount_in);
    assert_eq!(U256::from(sync.reserve1), reserve - out);
    let swap = event::<UniV2Pair::Swap>(&r, pair);
    assert_eq!(swap.sender, me);
    assert_eq!(swap.to, me);
    assert_eq!(
        (swap.amount0In, swap.amount1In, swap.amount0Out, swap.amount1Out),
        (amount_in, U256::ZERO, U256::ZERO, out)
    );
    assert_eq!(reserves(&house.p, pair).await, (reserve + amount_in, reserve - out));

    // `to` may not be one of the pair's tokens; outputs must be non-zero and below the reserves.
    for t in [t0, t1] {
        reverts(&house, pr.swap(U256::ZERO, U256::from(1u64), t, Bytes::new()), "INVALID_TO", "to")
            .await;
    }
    reverts(
        &house,
        pr.swap(U256::ZERO, U256::ZERO, me, Bytes::new()),
        "INSUFFICIENT_OUTPUT_AMOUNT",
        "zero out",
    )
    .await;
    let (_, r1) = reserves(&house.p, pair).await;
    reverts(&house, pr.swap(U256::ZERO, r1, me, Bytes::new()), "INSUFFICIENT_LIQUIDITY", "all out")
        .await;
    // Nothing moved.
    assert_eq!(reserves(&house.p, pair).await, (reserve + amount_in, reserve - out));
}

#[tokio::test]
async fn v2_flash_swap_needs_ceil_1000x_over_997_back() {
    let c = shared().c138();
    let house = Actor::fresh(c).await;
    let reserve = e18(1_000_000);
    let (pair, t0, _t1) = v2_pair(&house, reserve).await;
    let borrower = deploy(V2FlashBorrower::deploy_builder(&house.p), "borrower").await;
    let fb = V2FlashBorrower::new(borrower, &house.p);

    // DOMAIN §2.1: borrowing X of token0 needs P = ⌈1000·X/997⌉ back in token0.
    let borrow = e18(10_000);
    let repay = u("10030090270812437311936");
    let k = U256::from(1000u64) * borrow;
    assert_eq!(k.div_ceil(U256::from(997u64)), repay, "⌈1000·X/997⌉");
    // The borrower holds the fee; the loan itself pays the rest.
    transfer(&house, t0, borrower, repay - borrow).await;

    reverts(
        &house,
        fb.flash(pair, borrow, U256::ZERO, t0, repay - U256::from(1u64)),
        "K",
        "P − 1 wei",
    )
    .await;
    assert_eq!(reserves(&house.p, pair).await, (reserve, reserve), "failed flash left no trace");

    let r = ok(fb.flash(pair, borrow, U256::ZERO, t0, repay), "flash swap repaid with P").await;
    let called = event::<V2FlashBorrower::Called>(&r, borrower);
    assert_eq!(called.pair, pair);
    assert_eq!(called.sender, borrower, "uniswapV2Call gets the swap caller");
    assert_eq!((called.amount0, called.amount1), (borrow, U256::ZERO));
    assert_eq!(called.balance, repay, "the loan arrived before the callback");
    let swap = event::<UniV2Pair::Swap>(&r, pair);
    assert_eq!(
        (swap.amount0In, swap.amount1In, swap.amount0Out, swap.amount1Out),
        (repay, U256::ZERO, borrow, U256::ZERO),
        "in0 = the whole repayment (balance − (reserve − out))"
    );
    assert_eq!((swap.sender, swap.to), (borrower, borrower));
    let sync = event::<UniV2Pair::Sync>(&r, pair);
    assert_eq!(U256::from(sync.reserve0), reserve - borrow + repay);
    assert_eq!(U256::from(sync.reserve1), reserve);
    assert_eq!(token_balance(&house.p, t0, borrower).await, U256::ZERO);
}

// ------------------------------------------------------------------------------------------------
// Reserve vault (seed 001)
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn vault_mints_and_redeems_one_to_one_minus_the_fee_and_pauses() {
    let c = shared().c138();
    let owner = Actor::fresh(c).await;
    let user = Actor::fresh(c).await;
    let official = token(&owner, "oUSD", 6, U256::ZERO).await;
    let compliant = deploy_token(&owner.p, "cUSD", 6).await;
    let fee_bps = 2u16; // the scenario's vault fee
    let vault = deploy(
        ReserveVault::deploy_builder(&owner.p, official, compliant, fee_bps),
        "reserve vault",
    )
    .await;
    ok(TestToken::new(compliant, &owner.p).setMinter(vault, true), "setMinter").await;
    mint_to(&owner, official, user.addr(), e6(1_000_000)).await;
    approve_max(&user, official, vault).await;
    approve_max(&user, compliant, vault).await;
    let v = ReserveVault::new(vault, &user.p);
    let supply = |t: Address| {
        let p = user.p.clone();
        async move { TestToken::new(t, &p).totalSupply().call().await.unwrap() }
    };

    // mint(A): fee = ⌊A·2/10000⌋ = ⌊24,691,357.8024⌋, out = A − fee.
    let a = U256::from(123_456_789_012u64);
    let (mint_fee, mint_out) = (U256::from(24_691_357u64), U256::from(123_432_097_655u64));
    let q = v.quoteMint(a).call().await.unwrap();
    assert_eq!((q.amountOut, q.fee), (mint_out, mint_fee));
    let r = ok(v.mint(a), "vault mint").await;
    let ev = event::<ReserveVault::Minted>(&r, vault);
    assert_eq!((ev.user, ev.amountIn, ev.amountOut, ev.fee), (user.addr(), a, mint_out, mint_fee));
    assert_eq!(token_balance(&user.p, compliant, user.addr()).await, mint_out);
    assert_eq!(token_balance(&user.p, official, user.addr()).await, e6(1_000_000) - a);
    assert_eq!(v.officialReserve().call().await.unwrap(), a, "reserve += A (fee stays)");
    assert_eq!(supply(compliant).await, mint_out, "compliant supply += A − fee");
    assert_eq!(v.backingRatioBps().call().await.unwrap(), U256::from(10_002u64));

    // redeem(R): fee = ⌊R·2/10000⌋ = ⌊4,691,357.8024⌋, paid = R − fee; all R compliant burnt.
    let rd = U256::from(23_456_789_012u64);
    let (red_fee, paid) = (U256::from(4_691_357u64), U256::from(23_452_097_655u64));
    let q = v.quoteRedeem(rd).call().await.unwrap();
    assert_eq!((q.amountOut, q.fee), (paid, red_fee));
    let r = ok(v.redeem(rd), "vault redeem").await;
    let ev = event::<ReserveVault::Redeemed>(&r, vault);
    assert_eq!((ev.user, ev.amountIn, ev.amountOut, ev.fee), (user.addr(), rd, paid, red_fee));
    let reserve = a - paid;
    let csupply = mint_out - rd;
    assert_eq!(reserve, U256::from(100_004_691_357u64));
    assert_eq!(csupply, U256::from(99_975_308_643u64));
    assert_eq!(v.officialReserve().call().await.unwrap(), reserve, "reserve −= R − fee");
    assert_eq!(supply(compliant).await, csupply, "compliant supply −= R");
    assert_eq!(token_balance(&user.p, compliant, user.addr()).await, csupply);
    assert_eq!(token_balance(&user.p, official, user.addr()).await, e6(1_000_000) - a + paid);

    // The owner pauses; a stranger cannot pause or unpause.
    let small = e6(10);
    reverts(&user, v.pause(), "NOT_OWNER", "stranger pause").await;
    let vo = ReserveVault::new(vault, &owner.p);
    ok(vo.pause(), "owner pause").await;
    assert!(v.paused().call().await.unwrap());
    reverts(&user, v.mint(small), "PAUSED", "mint while paused").await;
    reverts(&user, v.redeem(small), "PAUSED", "redeem while paused").await;
    reverts(&user, v.unpause(), "NOT_OWNER", "stranger unpause").await;
    ok(vo.unpause(), "owner unpause").await;
    assert!(!v.paused().call().await.unwrap());
    // The reserve and supply did not move while paused.
    assert_eq!(v.officialReserve().call().await.unwrap(), reserve);
    assert_eq!(supply(compliant).await, csupply);
}

#[tokio::test]
async fn vault_below_95_percent_backing_stops_and_poke_latches_the_pause() {
    let c = shared().c138();
    let owner = Actor::fresh(c).await;
    let user = Actor::fresh(c).await;
    let official = token(&owner, "oUSD", 6, U256::ZERO).await;
    let compliant = deploy_token(&owner.p, "cUSD", 6).await;
    let vault =
        deploy(ReserveVault::deploy_builder(&owner.p, official, compliant, 2), "vault").await;
    ok(TestToken::new(compliant, &owner.p).setMinter(vault, true), "setMinter").await;
    mint_to(&owner, official, user.addr(), e6(1_000_000)).await;
    approve_max(&user, official, vault).await;
    approve_max(&user, compliant, vault).await;
    let v = ReserveVault::new(vault, &user.p);
    let vo = ReserveVault::new(vault, &owner.p);
    let ct = TestToken::new(compliant, &owner.p);

    // 100,000 in: reserve 100,000e6, supply 99,980e6 (fee 20e6), ratio ⌊1e11·1e4/9.998e10⌋ = 10002.
    ok(v.mint(e6(100_000)), "mint").await;
    let reserve = e6(100_000);
    let csupply = e6(99_980);
    assert_eq!(v.backingRatioBps().call().await.unwrap(), U256::from(10_002u64));

    // The compliant token's owner mints unbacked supply. ratio ≥ 9500 ⟺ extra ≤ ⌊R·1e4/9500⌋ − S.
    let max_extra = reserve * U256::from(10_000u64) / U256::from(9_500u64) - csupply;
    assert_eq!(max_extra, U256::from(5_283_157_894u64));
    ok(ct.mint(owner.addr(), max_extra), "unbacked mint to the edge").await;
    assert_eq!(v.backingRatioBps().call().await.unwrap(), U256::from(9_500u64));
    assert!(!vo.poke().call().await.unwrap(), "poke does nothing at exactly 9500 bps");
    ok(ct.mint(owner.addr(), U256::from(1u64)), "one more unbacked raw unit").await;
    assert_eq!(v.backingRatioBps().call().await.unwrap(), U256::from(9_499u64));

    // Below 95%: mint and redeem stop although the flag is not set yet.
    assert!(!v.paused().call().await.unwrap());
    reverts(&user, v.mint(e6(10)), "PAUSED", "mint under 95%").await;
    reverts(&user, v.redeem(e6(10)), "PAUSED", "redeem under 95%").await;
    // Anyone may poke; it latches the pause and says why.
    let r = ok(v.poke(), "poke").await;
    assert_eq!(event::<ReserveVault::AutoPaused>(&r, vault).ratioBps, U256::from(9_499u64));
    assert!(v.paused().call().await.unwrap());
    assert!(!v.poke().call().await.unwrap(), "a second poke reports nothing new");

    // Backing recovers (the owner burns the unbacked supply): still paused until the owner says so.
    ok(ct.burn(max_extra + U256::from(1u64)), "burn the unbacked supply").await;
    assert_eq!(v.backingRatioBps().call().await.unwrap(), U256::from(10_002u64));
    reverts(&user, v.mint(e6(10)), "PAUSED", "mint after recovery, still latched").await;
    reverts(&user, v.redeem(e6(10)), "PAUSED", "redeem after recovery, still latched").await;
    reverts(&user, v.unpause(), "NOT_OWNER", "stranger unpause").await;
    ok(vo.unpause(), "owner unpause").await;
    let r = ok(v.mint(e6(10)), "mint after unpause").await;
    let ev = event::<ReserveVault::Minted>(&r, vault);
    assert_eq!((ev.amountOut, ev.fee), (U256::from(9_998_000u64), U256::from(2_000u64)));
    let r = ok(v.redeem(e6(10)), "redeem after unpause").await;
    assert_eq!(event::<ReserveVault::Redeemed>(&r, vault).amountOut, U256::from(9_998_000u64));
}

// ------------------------------------------------------------------------------------------------
// Synthetic swap (seed 002)
// ------------------------------------------------------------------------------------------------

fn asset_id(name: &str) -> B256 {
    keccak256(name.as_bytes())
}

/// The SynthSwap price of a synth worth `base_units` raw base units per whole (1e18) synth:
/// `base_units`·1e18.
fn price_of(base_units: U256) -> U256 {
    base_units * pow10(18)
}

/// Sets the next block's timestamp on a private node.
async fn set_next_timestamp(p: &DynProvider, ts: u64) {
    p.anvil_set_next_block_timestamp(ts).await.expect("evm_setNextBlockTimestamp");
}

#[tokio::test]
async fn synth_mint_burn_swap_exact_with_the_60s_settlement_lock() {
    let (_node, actors) = private_chain();
    let (owner, user) = (&actors[0], &actors[1]);
    let base = token(owner, "bUSD", 6, e6(2_000_000)).await;
    let synth = deploy(SynthSwap::deploy_builder(&owner.p, base), "synth swap").await;
    let so = SynthSwap::new(synth, &owner.p);
    let s = SynthSwap::new(synth, &user.p);
    let (xau, eur) = (asset_id("XAU"), asset_id("EUR"));
    let p_xau = price_of(e6(2_650)); // 2.65e27: $2,650 per whole synth, 6-decimal base
    let p_eur = price_of(U256::from(1_080_000u64)); // $1.08
    ok(so.addAsset(xau, p_xau, e6(5_000_000)), "add XAU").await;
    ok(so.addAsset(eur, p_eur, e6(2_000_000)), "add EUR").await;
    transfer(owner, base, synth, e6(1_000_000)).await; // collateral
    mint_to(owner, base, user.addr(), e6(10_000)).await;
    approve_max(user, base, synth).await;

    // mint: fee = ⌈10,000e6·30/1e4⌉ = 30e6; out = ⌊9,970e6·1e36/2.65e27⌋.
    let base_in = e6(10_000);
    let synth_out = u("3762264150943396226");
    let mint_fee = e6(30);
    let q = s.quoteMint(xau, base_in).call().await.unwrap();
    assert_eq!((q.synthOut, q.fee), (synth_out, mint_fee));
    let r = ok(s.mint(xau, base_in), "mint").await;
    let t0 = block_time(&user.p, &r).await;
    let ev = event::<SynthSwap::Minted>(&r, synth);
    assert_eq!(
        (ev.user, ev.asset, ev.baseIn, ev.synthOut, ev.fee),
        (user.addr(), xau, base_in, synth_out, mint_fee)
    );
    assert_eq!(s.balanceOf(xau, user.addr()).call().await.unwrap(), synth_out);
    assert_eq!(s.supply(xau).call().await.unwrap(), synth_out);
    assert_eq!(s.collateral().call().await.unwrap(), e6(1_010_000));
    assert_eq!(s.assetDebt(xau).call().await.unwrap(), e6(9_970), "⌈supply·price/1e36⌉");
    assert_eq!(s.stressBps().call().await.unwrap(), U256::from(99u64), "⌈9,970·1e4/1,010,000⌉");
    assert_eq!(s.lockedUntil(user.addr()).call().await.unwrap(), U256::from(t0 + 60));

    // +59 s: still locked. The burn is mined at exactly +59 s and fails; `eth_call` at that block
    // (anvil runs it with the block's timestamp) gives the reason for burn, mint and swap alike.
    let half = synth_out / U256::from(2u64);
    set_next_timestamp(&user.p, t0 + 59).await;
    let call = s.burn(xau, half).from(user.addr()).gas(GAS);
    let r = mined(call.send().await.expect("send burn at +59 s")).await;
    assert!(!r.status(), "burn at +59 s succeeded");
    assert_eq!(block_time(&user.p, &r).await, t0 + 59, "the refusal was mined at +59 s");
    let at59 = BlockId::number(r.block_number.expect("block number"));
    call_reverts(call.block(at59), "LOCKED", "burn at +59 s").await;
    call_reverts(s.mint(xau, e6(1)).from(user.addr()).block(at59), "LOCKED", "mint at +59 s").await;
    call_reverts(s.swap(xau, eur, half).from(user.addr()).block(at59), "LOCKED", "swap at +59 s")
        .await;

    // +60 s: burn half at 30 bps (healthy stress): gross = ⌊s·p/1e36⌋, fee = ⌈gross·30/1e4⌉.
    let (gross, burn_fee) = (U256::from(4_984_999_999u64), U256::from(14_955_000u64));
    let base_out = gross - burn_fee;
    assert_eq!(half, u("1881132075471698113"));
    let q = s.quoteBurn(xau, half).call().await.unwrap();
    assert_eq!((q.baseOut, q.fee), (base_out, burn_fee));
    set_next_timestamp(&user.p, t0 + 60).await;
    let r = ok(s.burn(xau, half), "burn at +60 s").await;
    let t1 = block_time(&user.p, &r).await;
    assert_eq!(t1, t0 + 60);
    let ev = event::<SynthSwap::Burned>(&r, synth);
    assert_eq!(
        (ev.user, ev.asset, ev.synthIn, ev.baseOut, ev.fee, ev.feeBps),
        (user.addr(), xau, half, base_out, burn_fee, U256::from(30u64))
    );
    assert_eq!(token_balance(&user.p, base, user.addr()).await, base_out);
    assert_eq!(s.collateral().call().await.unwrap(), e6(1_010_000) - base_out);
    assert_eq!(s.lockedUntil(user.addr()).call().await.unwrap(), U256::from(t1 + 60));

    // +60 s again: swap the rest into EUR. fee = ⌈in·30/1e4⌉ (XAU units, destroyed);
    // out = ⌊(in − fee)·p_xau/p_eur⌋, whose debt ⌈out·p_eur/1e36⌉ = 4,970,045,000 must fit the cap.
    let rest = synth_out - half;
    let (swap_out, swap_fee) = (u("4601893518518518516388"), u("5643396226415095"));
    let eur_debt = U256::from(4_970_045_000u64);
    ok(so.setDebtCap(eur, eur_debt - U256::from(1u64)), "EUR cap one below").await;
    // (An empty block at +60 s, so `eth_call` sees the lock over too.)
    set_next_timestamp(&user.p, t1 + 60).await;
    user.p.evm_mine(None).await.expect("evm_mine");
    reverts(user, s.swap(xau, eur, rest), "CAP", "swap into EUR above its cap").await;
    ok(so.setDebtCap(eur, eur_debt), "EUR cap exactly the debt").await;
    let q = s.quoteSwap(xau, eur, rest).call().await.unwrap();
    assert_eq!((q.amountOut, q.fee), (swap_out, swap_fee));
    let r = ok(s.swap(xau, eur, rest), "swap").await;
    let ev = event::<SynthSwap::Swapped>(&r, synth);
    assert_eq!(
        (ev.user, ev.fromAsset, ev.toAsset, ev.amountIn, ev.amountOut, ev.fee),
        (user.addr(), xau, eur, rest, swap_out, swap_fee)
    );
    assert_eq!(s.balanceOf(xau, user.addr()).call().await.unwrap(), U256::ZERO);
    assert_eq!(s.balanceOf(eur, user.addr()).call().await.unwrap(), swap_out);
    assert_eq!(s.supply(xau).call().await.unwrap(), U256::ZERO);
    assert_eq!(s.supply(eur).call().await.unwrap(), swap_out);
    assert_eq!(s.assetDebt(eur).call().await.unwrap(), eur_debt);
}

#[tokio::test]
async fn synth_burn_fee_follows_the_stress_zones_and_blocks_at_105_percent() {
    let (_node, actors) = private_chain();
    let owner = &actors[0];
    let users = &actors[1..6]; // A, B, C, D, E
    let base = token(owner, "bUSD", 6, e6(10_000_000)).await;
    let synth = deploy(SynthSwap::deploy_builder(&owner.p, base), "synth swap").await;
    let so = SynthSwap::new(synth, &owner.p);
    let xau = asset_id("XAU");
    ok(so.addAsset(xau, price_of(e6(2_000)), e6(1_000_000_000)), "add XAU").await;
    transfer(owner, base, synth, e6(100_000)).await;

    // Five users mint 100,000 each at $2,000: 49.85 XAU each; collateral 600,000.
    let each = u("49850000000000000000");
    let mut unlock = 0u64;
    for user in users {
        mint_to(owner, base, user.addr(), e6(200_000)).await;
        approve_max(user, base, synth).await;
        let r = ok(SynthSwap::new(synth, &user.p).mint(xau, e6(100_000)), "mint").await;
        assert_eq!(event::<SynthSwap::Minted>(&r, synth).synthOut, each);
        unlock = unlock.max(block_time(&user.p, &r).await + 60);
    }
    // Past every settlement lock (mine a block at the unlock time; later blocks are never earlier).
    set_next_timestamp(&owner.p, unlock).await;
    owner.p.evm_mine(None).await.expect("evm_mine");

    // One zone per user: (price, stress before, fee bps, gross, fee, base out).
    // gross = ⌊49.85e18·price/1e36⌋; fee = ⌈gross·bps/1e4⌉.
    let zones: [(U256, u64, u64, u64, u64); 3] = [
        // healthy, < 9500: 30 bps. stress = ⌈498,500·1e4/600,000⌉.
        (price_of(e6(2_000)), 8_309, 30, 99_700_000_000, 299_100_000),
        // 95–100%: 30 + ⌈70·(9759 − 9500)/500⌉ = 67 bps.
        (price_of(e6(2_450)), 9_759, 67, 122_132_500_000, 818_287_750),
        // 100–105%: 100 + ⌈400·252²/500²⌉ = 202 bps.
        (price_of(e6(2_600)), 10_252, 202, 129_610_000_000, 2_618_122_000),
    ];
    for ((price, want_stress, bps, gross, fee), user) in zones.into_iter().zip(users) {
        ok(so.setPrice(xau, price), "setPrice").await;
        assert_eq!(
            so.stressBps().call().await.unwrap(),
            U256::from(want_stress),
            "stress at {price}"
        );
        assert_eq!(so.burnFeeBps().call().await.unwrap(), U256::from(bps));
        let before = token_balance(&user.p, base, user.addr()).await;
        let r = ok(SynthSwap::new(synth, &user.p).burn(xau, each), "burn").await;
        let ev = event::<SynthSwap::Burned>(&r, synth);
        let (gross, fee) = (U256::from(gross), U256::from(fee));
        assert_eq!(
            (ev.synthIn, ev.baseOut, ev.fee, ev.feeBps),
            (each, gross - fee, fee, U256::from(bps)),
            "burn at stress {want_stress}"
        );
        assert_eq!(token_balance(&user.p, base, user.addr()).await, before + gross - fee);
    }
    // Left: D and E, 99.7 XAU, collateral 252,293.00975.
    assert_eq!(so.collateral().call().await.unwrap(), U256::from(252_293_009_750u64));

    // The price where stress first reaches 10500 bps (debt 264,882,430,937 raw), and one wei below.
    let p_block = u("2656794693440320962888665998");
    let (d, e) = (&users[3], &users[4]);
    let sd = SynthSwap::new(synth, &d.p);
    ok(so.setPrice(xau, p_block - U256::from(1u64)), "setPrice just below blocked").await;
    assert_eq!(so.stressBps().call().await.unwrap(), U256::from(10_499u64));
    assert_eq!(so.burnFeeBps().call().await.unwrap(), U256::from(499u64));
    let q = sd.quoteBurn(xau, each).call().await.unwrap();
    assert_eq!((q.baseOut, q.fee), (U256::from(125_832_398_815u64), U256::from(6_608_816_652u64)));
    ok(so.setPrice(xau, p_block), "setPrice to blocked").await;
    assert_eq!(so.stressBps().call().await.unwrap(), U256::from(10_500u64));
    call_reverts(so.burnFeeBps(), "BLOCKED", "burnFeeBps at 10500").await;
    call_reverts(sd.quoteMint(xau, e6(1)), "BLOCKED", "quoteMint at 10500").await;
    reverts(d, sd.burn(xau, each), "BLOCKED", "burn at 10500").await;
    reverts(e, SynthSwap::new(synth, &e.p).mint(xau, e6(1_000)), "BLOCKED", "mint at 10500").await;
    assert_eq!(sd.balanceOf(xau, d.addr()).call().await.unwrap(), each, "nothing burnt");

    // The zone is read live, not latched: back at $2,000 D burns at 30 bps.
    ok(so.setPrice(xau, price_of(e6(2_000))), "setPrice back").await;
    assert_eq!(
        so.stressBps().call().await.unwrap(),
        U256::from(7_904u64),
        "⌈199,400·1e4/252,293.00975⌉"
    );
    let r = ok(sd.burn(xau, each), "burn healthy again").await;
    assert_eq!(event::<SynthSwap::Burned>(&r, synth).feeBps, U256::from(30u64));
}

#[tokio::test]
async fn synth_debt_cap_and_pause() {
    let c = shared().c138();
    let owner = Actor::fresh(c).await;
    let a = Actor::fresh(c).await;
    let b = Actor::fresh(c).await;
    let base = token(&owner, "bUSD", 6, U256::ZERO).await;
    let synth = deploy(SynthSwap::deploy_builder(&owner.p, base), "synth swap").await;
    let so = SynthSwap::new(synth, &owner.p);
    let one = asset_id("ONE");
    // $1 per synth; cap 997 base units of debt.
    ok(so.addAsset(one, price_of(U256::from(1_000_000u64)), e6(997)), "add ONE").await;
    for x in [&a, &b] {
        mint_to(&owner, base, x.addr(), e6(10_000)).await;
        approve_max(x, base, synth).await;
    }
    let sa = SynthSwap::new(synth, &a.p);
    let sb = SynthSwap::new(synth, &b.p);

    // 1,000 in: fee 3, 997e18 out, debt exactly the cap (≤ passes).
    let r = ok(sa.mint(one, e6(1_000)), "mint to the cap").await;
    assert_eq!(event::<SynthSwap::Minted>(&r, synth).synthOut, e18(997));
    assert_eq!(sa.assetDebt(one).call().await.unwrap(), e6(997));
    // 1,000 raw more: fee ⌈3⌉ = 3, 997e12 synth, debt 997e6 + 997 > cap.
    let dust = U256::from(1_000u64);
    call_reverts(sb.quoteMint(one, dust), "CAP", "quoteMint over the cap").await;
    reverts(&b, sb.mint(one, dust), "CAP", "mint over the cap").await;
    reverts(&b, sb.setDebtCap(one, e6(2_000)), "NOT_OWNER", "stranger cap").await;
    ok(so.setDebtCap(one, e6(997) + U256::from(997u64)), "cap + 997").await;
    let r = ok(sb.mint(one, dust), "mint to the new cap").await;
    assert_eq!(event::<SynthSwap::Minted>(&r, synth).synthOut, U256::from(997u64) * pow10(12));
    assert_eq!(sb.assetDebt(one).call().await.unwrap(), e6(997) + U256::from(997u64));

    // A cap of 0 allows nothing more (a fresh account, not under a settlement lock).
    let c3 = Actor::fresh(c).await;
    mint_to(&owner, base, c3.addr(), e6(10)).await;
    approve_max(&c3, base, synth).await;
    ok(so.setDebtCap(one, U256::ZERO), "cap 0").await;
    reverts(&c3, SynthSwap::new(synth, &c3.p).mint(one, e6(1)), "CAP", "cap 0").await;

    // Pause: owner only; mint refuses "PAUSED" before anything else.
    ok(so.setDebtCap(one, e6(1_000_000)), "cap up").await;
    reverts(&c3, SynthSwap::new(synth, &c3.p).pause(), "NOT_OWNER", "stranger pause").await;
    ok(so.pause(), "pause").await;
    reverts(&c3, SynthSwap::new(synth, &c3.p).mint(one, e6(1)), "PAUSED", "mint paused").await;
    ok(so.unpause(), "unpause").await;
    ok(SynthSwap::new(synth, &c3.p).mint(one, e6(1)), "mint unpaused").await;
}

#[tokio::test]
async fn synth_burn_fee_curve_boundaries() {
    let c = shared().c138();
    let owner = Actor::fresh(c).await;
    let synth = deploy(
        SynthSwap::deploy_builder(&owner.p, Address::repeat_byte(0x11)),
        "synth swap (pure curve)",
    )
    .await;
    let s = SynthSwap::new(synth, &owner.p);
    // s < 9500 → 30; [9500, 10000) → 30 + ⌈70·(s−9500)/500⌉; [10000, 10500) → 100 + ⌈400·d²/250000⌉.
    for (stress, bps) in [
        (0u64, 30u64),
        (9_499, 30),
        (9_500, 30),
        (9_501, 31),
        (9_750, 65),
        (9_800, 72),
        (9_999, 100),
        (10_000, 100),
        (10_001, 101),
        (10_250, 200),
        (10_499, 499),
    ] {
        assert_eq!(
            s.burnFeeBpsAt(U256::from(stress)).call().await.unwrap(),
            U256::from(bps),
            "burnFeeBpsAt({stress})"
        );
    }
    for stress in [U256::from(10_500u64), U256::from(20_000u64), U256::MAX] {
        call_reverts(s.burnFeeBpsAt(stress), "BLOCKED", "burnFeeBpsAt ≥ 10500").await;
    }
}

// ------------------------------------------------------------------------------------------------
// ERC-3156 flash lender (DOMAIN §3)
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn erc3156_lender_fee_rounds_up_and_repayment_is_pulled() {
    let c = shared().c138();
    let house = Actor::fresh(c).await;
    let tk = token(&house, "LND", 6, U256::ZERO).await;
    let lender = deploy(FlashLender::deploy_builder(&house.p, U256::from(5u64)), "lender").await;
    let liquidity = e6(1_000_000);
    mint_to(&house, tk, lender, liquidity).await;
    let l = FlashLender::new(lender, &house.p);
    let borrower = deploy(Erc3156TestBorrower::deploy_builder(&house.p), "borrower").await;
    let b = Erc3156TestBorrower::new(borrower, &house.p);

    // flashFee = ⌈amount·5/1e4⌉.
    for (amount, fee) in
        [(0u64, 0u64), (1, 1), (2_000, 1), (2_001, 2), (4_000, 2), (1_234_567_891, 617_284)]
    {
        assert_eq!(
            l.flashFee(tk, U256::from(amount)).call().await.unwrap(),
            U256::from(fee),
            "flashFee({amount})"
        );
    }
    assert_eq!(l.maxFlashLoan(tk).call().await.unwrap(), liquidity);

    // A borrower that approves amount + fee: the lender gains exactly the fee.
    let amount = U256::from(1_234_567_891u64);
    let fee = U256::from(617_284u64);
    mint_to(&house, tk, borrower, fee).await;
    let r = ok(b.borrow(lender, tk, amount), "flash loan repaid").await;
    let ev = event::<FlashLender::FlashLoan>(&r, lender);
    assert_eq!((ev.receiver, ev.token, ev.amount, ev.fee), (borrower, tk, amount, fee));
    let cb = event::<Erc3156TestBorrower::Loaned>(&r, borrower);
    assert_eq!(cb.lender, lender);
    assert_eq!(cb.initiator, borrower, "initiator = the flashLoan caller");
    assert_eq!((cb.token, cb.amount, cb.fee), (tk, amount, fee));
    assert_eq!(cb.balance, amount + fee, "the loan arrived before the callback");
    assert_eq!(token_balance(&house.p, tk, lender).await, liquidity + fee);
    assert_eq!(token_balance(&house.p, tk, borrower).await, U256::ZERO);

    // Refusals; the lender's balance never moves.
    mint_to(&house, tk, borrower, fee).await;
    let magic = keccak256("ERC3156FlashBorrower.onFlashLoan");
    ok(b.configure(false, magic), "no approval").await;
    reverts(&house, b.borrow(lender, tk, amount), "ALLOWANCE", "no approval").await;
    ok(b.configure(true, B256::ZERO), "wrong return").await;
    reverts(&house, b.borrow(lender, tk, amount), "CALLBACK_FAILED", "wrong magic").await;
    ok(b.configure(true, magic), "well behaved").await;
    let max = l.maxFlashLoan(tk).call().await.unwrap();
    reverts(&house, b.borrow(lender, tk, max + U256::from(1u64)), "UNSUPPORTED", "above max").await;
    assert_eq!(token_balance(&house.p, tk, lender).await, liquidity + fee);
    assert_eq!(token_balance(&house.p, tk, borrower).await, fee);
}

// ------------------------------------------------------------------------------------------------
// Bridge
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn bridge_contract_capacity_fee_relayer_delay_once_and_reserve() {
    let s = shared();
    let (c138, alltra) = (s.c138(), s.alltra());
    let sender = Actor::fresh(c138).await;
    let relayer = Actor::fresh(alltra).await;
    let stranger = Actor::fresh(alltra).await;
    let recipient = Address::repeat_byte(0x5e);

    // Source side (chain 138): 10 bps, capacity 1,000 per lock.
    let src_token = token(&sender, "BRG", 6, e6(10_000)).await;
    let src =
        deploy(Bridge::deploy_builder(&sender.p, relayer.addr(), 10, 3_600), "source bridge").await;
    let sb = Bridge::new(src, &sender.p);
    approve_max(&sender, src_token, src).await;
    let to = U256::from(alltra.chain_id);
    reverts(&sender, sb.lock(src_token, e6(1), recipient, to), "UNSUPPORTED", "no capacity").await;
    ok(sb.setCapacity(src_token, e6(1_000)), "setCapacity").await;
    assert_eq!(sb.capacity(src_token).call().await.unwrap(), e6(1_000));
    reverts(
        &sender,
        sb.lock(src_token, e6(1_000) + U256::from(1u64), recipient, to),
        "CAPACITY",
        "above capacity",
    )
    .await;
    reverts(&sender, sb.lock(src_token, U256::ZERO, recipient, to), "ZERO_AMOUNT", "zero").await;

    // fee = ⌊amount·10/1e4⌋ kept by the source bridge; Locked.amount is net.
    let amount = U256::from(123_456_789u64);
    let (net, fee) = (U256::from(123_333_333u64), U256::from(123_456u64));
    let q = sb.quoteLock(amount).call().await.unwrap();
    assert_eq!((q.net, q.fee), (net, fee));
    let r = ok(sb.lock(src_token, amount, recipient, to), "lock").await;
    let locked = event::<Bridge::Locked>(&r, src);
    assert_eq!(locked.id, U256::from(1u64));
    assert_eq!(
        (locked.token, locked.sender, locked.recipient),
        (src_token, sender.addr(), recipient)
    );
    assert_eq!((locked.amount, locked.fee, locked.dstChainId), (net, fee, to));
    assert_eq!(locked.timestamp, block_time(&sender.p, &r).await);
    // Exactly the capacity is allowed: fee 1e6, net 999e6.
    let r2 = ok(sb.lock(src_token, e6(1_000), recipient, to), "lock at capacity").await;
    let locked2 = event::<Bridge::Locked>(&r2, src);
    assert_eq!(locked2.id, U256::from(2u64));
    assert_eq!((locked2.amount, locked2.fee), (e6(999), e6(1)));
    assert_eq!(token_balance(&sender.p, src_token, src).await, amount + e6(1_000));

    // Destination side (651940), released by us as the relayer. Delay 3600 s for now.
    let dst_token = token(&relayer, "BRG", 6, e6(10_000)).await;
    let dst =
        deploy(Bridge::deploy_builder(&relayer.p, relayer.addr(), 10, 3_600), "dst bridge").await;
    let reserve = e6(500);
    transfer(&relayer, dst_token, dst, reserve).await;
    let db = Bridge::new(dst, &relayer.p);
    let from = U256::from(c138.chain_id);
    let release =
        |id: U256, amount: U256, at: u64| db.release(from, id, dst_token, recipient, amount, at);
    reverts(
        &stranger,
        Bridge::new(dst, &stranger.p).release(
            from,
            locked.id,
            dst_token,
            recipient,
            net,
            locked.timestamp,
        ),
        "NOT_RELAYER",
        "stranger release",
    )
    .await;
    reverts(&relayer, release(locked.id, net, locked.timestamp), "TOO_EARLY", "before the delay")
        .await;

    // Delay 1 s. anvil stamps a block with the wall clock (no block without a transaction here), so
    // once the wall clock reaches lockedAt + 1 of both locks, the next release is past the delay.
    ok(db.setDelay(1), "setDelay").await;
    let due = locked.timestamp.max(locked2.timestamp) + 1;
    // Other tests may have pushed chain 138's clock a little ahead of the wall clock.
    assert!(due <= unix_now() + 60, "chain 138's clock runs far ahead: lockedAt {due}");
    while unix_now() < due {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = ok(release(locked.id, net, locked.timestamp), "release").await;
    let ev = event::<Bridge::Released>(&r, dst);
    assert_eq!(
        (ev.srcChainId, ev.id, ev.token, ev.recipient, ev.amount),
        (from, locked.id, dst_token, recipient, net)
    );
    // Mined at or after lockedAt + 1 (the delay).
    assert!(block_time(&relayer.p, &r).await > locked.timestamp);
    assert_eq!(token_balance(&relayer.p, dst_token, recipient).await, net);
    assert!(db.released(from, locked.id).call().await.unwrap());
    reverts(&relayer, release(locked.id, net, locked.timestamp), "DONE", "second release").await;
    assert_eq!(token_balance(&relayer.p, dst_token, recipient).await, net, "paid once");

    // Reserve: 500 − 123.333333 = 376.666667 left; lock 2 needs 999.
    let left = reserve - net;
    assert_eq!(token_balance(&relayer.p, dst_token, dst).await, left);
    reverts(&relayer, release(locked2.id, locked2.amount, locked2.timestamp), "RESERVE", "short")
        .await;
    transfer(&relayer, dst_token, dst, locked2.amount - left - U256::from(1u64)).await;
    reverts(&relayer, release(locked2.id, locked2.amount, locked2.timestamp), "RESERVE", "1 short")
        .await;
    transfer(&relayer, dst_token, dst, U256::from(1u64)).await;
    ok(release(locked2.id, locked2.amount, locked2.timestamp), "release at exact reserve").await;
    assert_eq!(token_balance(&relayer.p, dst_token, dst).await, U256::ZERO);
    assert_eq!(token_balance(&relayer.p, dst_token, recipient).await, net + e6(999));
}

#[tokio::test]
async fn devnet_relayer_delivers_a_lock_from_138_to_alltra() {
    let s = shared();
    let (c138, alltra) = (s.c138(), s.alltra());
    let bridge138 = c138.bridge.expect("scenario bridge on 138");
    let bridge651 = alltra.bridge.expect("scenario bridge on 651940");
    let me = Actor::fresh(c138).await;
    // 1,234.567891 cUSDT; scenario fee 10 bps: fee ⌊1,234,567,891·10/1e4⌋ = 1,234,567.
    let amount = U256::from(1_234_567_891u64);
    let (net, fee) = (U256::from(1_233_333_324u64), U256::from(1_234_567u64));
    fund(c138, "cUSDT", me.addr(), amount).await;
    let cusdt = c138.tokens["cUSDT"].address;
    approve_max(&me, cusdt, bridge138).await;
    let before = balance(alltra, "cUSDT", me.addr()).await;
    assert_eq!(before, U256::ZERO, "a fresh account holds nothing on 651940");

    let r = ok(
        Bridge::new(bridge138, &me.p).lock(cusdt, amount, me.addr(), U256::from(alltra.chain_id)),
        "lock on 138",
    )
    .await;
    let locked = event::<Bridge::Locked>(&r, bridge138);
    assert_eq!((locked.amount, locked.fee), (net, fee));
    assert_eq!(locked.recipient, me.addr());
    assert_eq!(balance(c138, "cUSDT", me.addr()).await, U256::ZERO);

    // The relayer cannot release before the destination clock reaches lockedAt + delay; if another
    // test pushed chain 138's clock ahead of the wall clock, that skew adds to the 20 s budget.
    let skew = locked.timestamp.saturating_sub(unix_now());
    let budget = Duration::from_secs(20 + skew);
    let started = Instant::now();
    loop {
        let now = balance(alltra, "cUSDT", me.addr()).await;
        if now != before {
            assert_eq!(now, before + net, "released exactly amount − fee");
            break;
        }
        assert!(
            started.elapsed() < budget,
            "the relayer did not release lock {} within {budget:?} (chain 138 skew {skew} s)",
            locked.id
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dst = Bridge::new(bridge651, reader(&alltra.http_url));
    assert!(dst.released(U256::from(c138.chain_id), locked.id).call().await.unwrap());
    // Nothing more arrives (released once).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(balance(alltra, "cUSDT", me.addr()).await, before + net);
}
