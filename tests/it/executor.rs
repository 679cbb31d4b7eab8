//! The on-chain executor (RELIABILITY test 13, DESIGN §5–§6) against the shared devnet.
//!
//! Every test deploys its own executor from a fresh owner account (a second fresh account is the
//! operator, a third a stranger) and, where a route needs venues, its own tokens and venues from a
//! fourth "house" account, so tests run in parallel without touching the scenario's pools. Revert
//! reasons are read with `eth_call` and matched exactly (`Error(string)` text or the decoded custom
//! error); refusals are then also sent on chain with a fixed gas limit to show nothing moved.

use std::time::{Duration, Instant};

use alloy::{
    eips::BlockId,
    network::Ethereum,
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, PendingTransactionBuilder, Provider},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    sol_types::{Revert, SolCall, SolError, SolInterface, SolValue},
};
use cantilever::{
    contracts::{
        Executor::{self, ExecutorErrors, Flash, Hop, Route},
        FlashLender, PmmPool, ReserveVault, TestToken, UniV2Factory, UniV2Pair,
    },
    devnet::ChainManifest,
};

use crate::harness::{balance, fresh_account, fund, reader, shared};

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    CallbackIntruder,
    "fixtures/artifacts/CallbackIntruder.json"
);

/// Gas limit for every executor transaction (anvil's estimate can be low when the mined block's
/// timestamp makes V2 pairs update their accumulators).
const GAS: u64 = 3_000_000;

/// Hop kinds (Executor.sol).
const PMM_SELL_BASE: u8 = 0;
const PMM_SELL_QUOTE: u8 = 1;
const UNIV2: u8 = 2;
const VAULT_MINT: u8 = 3;
const VAULT_REDEEM: u8 = 4;

/// Flash kinds (Executor.sol).
const FLASH_ERC3156: u8 = 1;
const FLASH_DODO: u8 = 2;
const FLASH_UNIV2: u8 = 3;

/// DOMAIN §2.1 "Optimal two-pool arb": Δ* = 3,490.82 (6-decimal raw units).
const ARB_IN: u64 = 3_490_820_000;

/// `n` whole units of a 6-decimal token.
fn units(n: u64) -> U256 {
    U256::from(n) * U256::from(1_000_000u64)
}

fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

// ------------------------------------------------------------------------------------------------
// Transactions and revert reasons
// ------------------------------------------------------------------------------------------------

/// A fresh funded account and a provider signing with it.
struct Actor {
    key: PrivateKeySigner,
    p: DynProvider,
}

impl Actor {
    async fn new(chain: &ChainManifest) -> Self {
        let (key, p) = fresh_account(chain).await;
        Self { key, p }
    }

    fn addr(&self) -> Address {
        self.key.address()
    }
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

/// Sends a binding call (gas estimated unless the call sets it) and requires success.
async fn ok<P: Provider, D: alloy::contract::CallDecoder>(
    call: alloy::contract::CallBuilder<P, D>,
    what: &str,
) -> TransactionReceipt {
    let pending = call.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let r = mined(pending).await;
    assert!(r.status(), "{what}: reverted");
    r
}

/// Deploys a contract (gas estimated) and returns its address.
async fn deploy<P: Provider, D: alloy::contract::CallDecoder>(
    builder: alloy::contract::CallBuilder<P, D>,
    what: &str,
) -> Address {
    ok(builder, what).await.contract_address.unwrap_or_else(|| panic!("{what}: no address"))
}

/// Sends `value` wei from `who` to `to` and requires success.
async fn pay(who: &Actor, to: Address, value: U256) {
    let pending = who
        .p
        .send_transaction(TransactionRequest::default().to(to).value(value))
        .await
        .expect("send value");
    assert!(mined(pending).await.status(), "value transfer reverted");
}

fn tx(to: Address, data: &Bytes) -> TransactionRequest {
    TransactionRequest::default().to(to).input(data.clone().into()).gas_limit(GAS)
}

/// Runs `data` against `to` as `who` with `eth_call`: the return data, or the revert data.
async fn simulate(who: &Actor, to: Address, data: &Bytes) -> Result<Bytes, Bytes> {
    match who.p.call(tx(to, data).from(who.addr())).await {
        Ok(out) => Ok(out),
        Err(e) => Err(e
            .as_error_resp()
            .and_then(|r| r.as_revert_data())
            .unwrap_or_else(|| panic!("not a revert: {e}"))),
    }
}

/// Sends `data` to `to` as `who` with a fixed gas limit (no estimate, so a reverting call reaches
/// the chain) and returns the receipt.
async fn send(who: &Actor, to: Address, data: &Bytes) -> TransactionReceipt {
    mined(who.p.send_transaction(tx(to, data)).await.expect("send")).await
}

/// The readable revert reason: the `Error(string)` text, else the decoded executor error.
fn reason(data: &[u8]) -> String {
    if let Ok(r) = Revert::abi_decode(data) {
        return r.reason;
    }
    if let Ok(e) = ExecutorErrors::abi_decode(data) {
        return format!("{e:?}");
    }
    format!("undecodable revert data {}", Bytes::copy_from_slice(data))
}

/// Requires that `who` calling `data` on `to` reverts with exactly `want`, both in `eth_call` and
/// as a mined transaction.
async fn refused(who: &Actor, to: Address, data: Bytes, want: &str, what: &str) {
    let got = simulate(who, to, &data).await.expect_err(what);
    assert_eq!(reason(&got), want, "{what}");
    let r = send(who, to, &data).await;
    assert!(!r.status(), "{what}: succeeded on chain");
}

/// The executor's custom error for `route` run by `who`.
async fn custom_error(who: &Actor, exec: Address, route: &Route) -> ExecutorErrors {
    let got = simulate(who, exec, &execute_data(route)).await.expect_err("route must revert");
    ExecutorErrors::abi_decode(&got)
        .unwrap_or_else(|_| panic!("expected an executor custom error, got {}", reason(&got)))
}

fn data(call: impl SolCall) -> Bytes {
    call.abi_encode().into()
}

fn execute_data(route: &Route) -> Bytes {
    data(Executor::executeCall { route: route.clone() })
}

// ------------------------------------------------------------------------------------------------
// Routes
// ------------------------------------------------------------------------------------------------

fn hop(kind: u8, venue: Address, token_in: Address, token_out: Address, amount_in: U256) -> Hop {
    Hop {
        kind,
        venue,
        tokenIn: token_in,
        tokenOut: token_out,
        amountIn: amount_in,
        minOut: U256::ZERO,
    }
}

fn no_flash() -> Flash {
    Flash { kind: 0, source: Address::ZERO, token: Address::ZERO, amount: U256::ZERO }
}

fn flash(kind: u8, source: Address, token: Address, amount: U256) -> Flash {
    Flash { kind, source, token, amount }
}

fn route(flash: Flash, hops: Vec<Hop>, profit_token: Address) -> Route {
    Route {
        flash,
        hops,
        profitToken: profit_token,
        minProfit: U256::ZERO,
        deadlineBlock: U256::ZERO,
        coinbaseTip: U256::ZERO,
    }
}

/// Uniswap V2 output for `amount_in` with the 0.3% fee.
fn v2_out(amount_in: U256, r_in: U256, r_out: U256) -> U256 {
    let x = amount_in * U256::from(997u64);
    x * r_out / (r_in * U256::from(1000u64) + x)
}

/// The `Executed` event of the executor at `exec` in `r`.
fn executed(r: &TransactionReceipt, exec: Address) -> Executor::Executed {
    r.inner
        .logs()
        .iter()
        .filter(|l| l.address() == exec)
        .find_map(|l| l.log_decode::<Executor::Executed>().ok())
        .expect("Executed event")
        .inner
        .data
}

// ------------------------------------------------------------------------------------------------
// The rig: one executor and its actors; venues on demand
// ------------------------------------------------------------------------------------------------

struct Rig {
    chain: &'static ChainManifest,
    /// The executor's owner (the deployer).
    owner: Actor,
    /// The executor's operator.
    operator: Actor,
    /// Nobody in particular.
    stranger: Actor,
    /// Deploys and owns the test's tokens and venues.
    house: Actor,
    exec: Address,
}

impl Rig {
    async fn new() -> Self {
        let chain = shared().c138();
        let owner = Actor::new(chain).await;
        let operator = Actor::new(chain).await;
        let stranger = Actor::new(chain).await;
        let house = Actor::new(chain).await;
        let exec =
            deploy(Executor::deploy_builder(owner.p.clone(), operator.addr()), "executor").await;
        Self { chain, owner, operator, stranger, house, exec }
    }

    fn executor(&self) -> Executor::ExecutorInstance<DynProvider> {
        Executor::new(self.exec, reader(&self.chain.http_url))
    }

    /// A 6-decimal token owned by the house, with `supply` units minted to the house.
    async fn token(&self, symbol: &str, supply: u64) -> Address {
        let p = self.house.p.clone();
        let t =
            deploy(TestToken::deploy_builder(p.clone(), symbol.into(), symbol.into(), 6), symbol)
                .await;
        if supply > 0 {
            ok(TestToken::new(t, p).mint(self.house.addr(), units(supply)), "mint").await;
        }
        t
    }

    /// Moves `amount` raw units of `token` from the house to `to`.
    async fn give(&self, token: Address, to: Address, amount: U256) {
        ok(TestToken::new(token, self.house.p.clone()).transfer(to, amount), "transfer").await;
    }

    async fn bal(&self, token: Address, who: Address) -> U256 {
        TestToken::new(token, reader(&self.chain.http_url)).balanceOf(who).call().await.unwrap()
    }

    async fn native(&self, who: Address) -> U256 {
        reader(&self.chain.http_url).get_balance(who).await.unwrap()
    }

    async fn allowance(&self, token: Address, owner: Address, spender: Address) -> U256 {
        TestToken::new(token, reader(&self.chain.http_url))
            .allowance(owner, spender)
            .call()
            .await
            .unwrap()
    }

    /// A V2 pair (in its own factory) holding `amount_a` units of `a` and `amount_b` units of `b`.
    async fn pair(&self, a: Address, amount_a: u64, b: Address, amount_b: u64) -> Address {
        let p = self.house.p.clone();
        let f = deploy(UniV2Factory::deploy_builder(p.clone()), "factory").await;
        let factory = UniV2Factory::new(f, p.clone());
        ok(factory.createPair(a, b), "createPair").await;
        let pair = factory.getPair(a, b).call().await.unwrap();
        self.give(a, pair, units(amount_a)).await;
        self.give(b, pair, units(amount_b)).await;
        ok(UniV2Pair::new(pair, p).mint(self.house.addr()), "pair mint").await;
        pair
    }

    /// Stored reserves of `pair` as (reserve of `token_in`, reserve of the other token).
    async fn reserves(&self, pair: Address, token_in: Address) -> (U256, U256) {
        let pr = UniV2Pair::new(pair, reader(&self.chain.http_url));
        let r = pr.getReserves().call().await.unwrap();
        let (r0, r1) = (U256::from(r._reserve0), U256::from(r._reserve1));
        if pr.token0().call().await.unwrap() == token_in { (r0, r1) } else { (r1, r0) }
    }

    /// A PMM pool (i = 1, k = 0.0005, LP fee 3 bps, no maintainer fee, no TWAP) with `liquidity`
    /// units of each side.
    async fn pmm(&self, base: Address, quote: Address, liquidity: u64) -> Address {
        let p = self.house.p.clone();
        let e18 = U256::from(10u64).pow(U256::from(18));
        let pool = deploy(
            PmmPool::deploy_builder(
                p.clone(),
                self.house.addr(),
                base,
                quote,
                U256::from(300_000_000_000_000u64),
                Address::ZERO,
                e18,
                U256::from(500_000_000_000_000u64),
                false,
            ),
            "pmm pool",
        )
        .await;
        self.give(base, pool, units(liquidity)).await;
        self.give(quote, pool, units(liquidity)).await;
        ok(PmmPool::new(pool, p).buyShares(self.house.addr()), "buyShares").await;
        pool
    }

    /// Runs `route` as `who`: checks the `eth_call` return value, sends it, and returns the
    /// profit from the `Executed` event after checking it equals the simulated one.
    async fn run(&self, who: &Actor, route: &Route) -> (U256, TransactionReceipt) {
        let d = execute_data(route);
        let simulated = match simulate(who, self.exec, &d).await {
            Ok(out) => Executor::executeCall::abi_decode_returns(&out).unwrap(),
            Err(e) => panic!("route reverted in simulation: {}", reason(&e)),
        };
        let r = send(who, self.exec, &d).await;
        assert!(r.status(), "route reverted on chain");
        let ev = executed(&r, self.exec);
        assert_eq!(ev.profit, simulated, "event profit equals the simulated return value");
        assert_eq!(ev.profitToken, route.profitToken);
        assert_eq!(ev.hops, U256::from(route.hops.len()));
        (ev.profit, r)
    }
}

/// Two V2 pairs with the DOMAIN §2.1 price gap: A = (1,000,000 U; 1,010,000 X) sells X cheap,
/// B = (990,000 X; 1,000,000 U) buys it dear.
struct Arb {
    u: Address,
    x: Address,
    a: Address,
    b: Address,
}

impl Arb {
    async fn new(rig: &Rig) -> Self {
        let u = rig.token("U", 10_000_000).await;
        let x = rig.token("X", 10_000_000).await;
        let a = rig.pair(u, 1_000_000, x, 1_010_000).await;
        let b = rig.pair(x, 990_000, u, 1_000_000).await;
        Self { u, x, a, b }
    }

    /// U → X on A, then all of it X → U on B.
    fn hops(&self, amount: U256) -> Vec<Hop> {
        vec![
            hop(UNIV2, self.a, self.u, self.x, amount),
            hop(UNIV2, self.b, self.x, self.u, U256::ZERO),
        ]
    }

    /// The two hops' outputs at the pairs' current reserves.
    async fn quote(&self, rig: &Rig, amount: U256) -> (U256, U256) {
        let (ai, ao) = rig.reserves(self.a, self.u).await;
        let out0 = v2_out(amount, ai, ao);
        let (bi, bo) = rig.reserves(self.b, self.x).await;
        (out0, v2_out(out0, bi, bo))
    }
}

/// Calldata of every flash-loan callback, with `initiator`/`sender` set to `exec` and `payload` as
/// the callback data.
fn callbacks(exec: Address, token: Address, payload: &Bytes) -> Vec<(&'static str, Bytes)> {
    let one = U256::from(1u64);
    vec![
        (
            "onFlashLoan",
            data(Executor::onFlashLoanCall {
                initiator: exec,
                token,
                amount: one,
                fee: U256::ZERO,
                data: payload.clone(),
            }),
        ),
        (
            "DVMFlashLoanCall",
            data(Executor::DVMFlashLoanCallCall {
                sender: exec,
                baseAmount: one,
                quoteAmount: U256::ZERO,
                data: payload.clone(),
            }),
        ),
        (
            "DSPFlashLoanCall",
            data(Executor::DSPFlashLoanCallCall {
                sender: exec,
                baseAmount: one,
                quoteAmount: U256::ZERO,
                data: payload.clone(),
            }),
        ),
        (
            "DPPFlashLoanCall",
            data(Executor::DPPFlashLoanCallCall {
                sender: exec,
                baseAmount: one,
                quoteAmount: U256::ZERO,
                data: payload.clone(),
            }),
        ),
        (
            "uniswapV2Call",
            data(Executor::uniswapV2CallCall {
                sender: exec,
                amount0: one,
                amount1: U256::ZERO,
                data: payload.clone(),
            }),
        ),
    ]
}

/// Callback data shaped exactly like the executor's own: abi.encode(Flash, Hop[]), here a "loan"
/// of `token` whose hop would hand the executor's `token` to `venue`.
fn crafted_payload(token: Address, venue: Address, other: Address) -> Bytes {
    let f = flash(FLASH_ERC3156, venue, token, U256::from(1u64));
    let hops = vec![hop(UNIV2, venue, token, other, units(1_000))];
    (f, hops).abi_encode_params().into()
}

// ------------------------------------------------------------------------------------------------
// Access control
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn stranger_is_refused_on_every_entry_point() {
    let rig = Rig::new().await;
    let (exec, s) = (rig.exec, &rig.stranger);
    let t = rig.token("T", 1_000_000).await;
    let other = rig.token("O", 0).await;
    rig.give(t, exec, units(1_000)).await;
    pay(&rig.owner, exec, ether(1)).await;
    let any_route = route(no_flash(), vec![hop(UNIV2, s.addr(), t, other, units(1_000))], t);

    let admin: Vec<(&str, Bytes, &str)> = vec![
        ("execute", execute_data(&any_route), "NOT_AUTHORIZED"),
        (
            "executeLeg",
            data(Executor::executeLegCall {
                hops: any_route.hops.clone(),
                deadlineBlock: U256::ZERO,
            }),
            "NOT_AUTHORIZED",
        ),
        ("setOperator", data(Executor::setOperatorCall { newOperator: s.addr() }), "NOT_OWNER"),
        ("sweep", data(Executor::sweepCall { token: t, amount: units(1_000) }), "NOT_OWNER"),
        ("sweepNative", data(Executor::sweepNativeCall { amount: ether(1) }), "NOT_OWNER"),
        (
            "transferOwnership",
            data(Executor::transferOwnershipCall { newOwner: s.addr() }),
            "NOT_OWNER",
        ),
        (
            "setMaxCoinbaseTip",
            data(Executor::setMaxCoinbaseTipCall { newCap: U256::MAX }),
            "NOT_OWNER",
        ),
        ("acceptOwnership", data(Executor::acceptOwnershipCall {}), "NOT_PENDING_OWNER"),
    ];
    for (what, d, want) in admin {
        refused(s, exec, d, want, what).await;
    }
    // Each callback, with data crafted as the executor itself would send it.
    for (what, d) in callbacks(exec, t, &crafted_payload(t, s.addr(), other)) {
        refused(s, exec, d, "NO_OPERATION", what).await;
    }

    // Nothing changed: roles, cap, and every balance.
    let ex = rig.executor();
    assert_eq!(ex.owner().call().await.unwrap(), rig.owner.addr());
    assert_eq!(ex.operator().call().await.unwrap(), rig.operator.addr());
    assert_eq!(ex.pendingOwner().call().await.unwrap(), Address::ZERO);
    assert_eq!(ex.maxCoinbaseTip().call().await.unwrap(), U256::ZERO);
    assert_eq!(rig.bal(t, exec).await, units(1_000));
    assert_eq!(rig.bal(t, s.addr()).await, U256::ZERO);
    assert_eq!(rig.allowance(t, exec, s.addr()).await, U256::ZERO);
    assert_eq!(rig.native(exec).await, ether(1));
}

#[tokio::test]
async fn callbacks_without_an_operation_revert_no_operation_even_for_owner_and_operator() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let t = rig.token("T", 1_000_000).await;
    let other = rig.token("O", 0).await;
    rig.give(t, exec, units(1_000)).await;
    let payload = crafted_payload(t, rig.owner.addr(), other);
    for (role, who) in [("owner", &rig.owner), ("operator", &rig.operator)] {
        for (what, d) in callbacks(exec, t, &payload) {
            refused(who, exec, d, "NO_OPERATION", &format!("{what} by the {role}")).await;
        }
    }
    // A contract calling the callbacks outside any operation fares no better.
    for mode in 0u8..5 {
        let intruder = deploy(
            CallbackIntruder::deploy_builder(
                rig.house.p.clone(),
                exec,
                t,
                other,
                mode,
                Address::ZERO,
            ),
            "intruder",
        )
        .await;
        let d = data(CallbackIntruder::fireCall {});
        refused(&rig.stranger, intruder, d, "NO_OPERATION", &format!("intruder mode {mode}")).await;
    }
    assert_eq!(rig.bal(t, exec).await, units(1_000));
}

#[tokio::test]
async fn callback_from_an_unexpected_contract_during_an_operation_reverts_bad_caller() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let arb = Arb::new(&rig).await;
    rig.give(arb.u, exec, units(10_000)).await;
    let intruder = |mode: u8, accomplice: Address| {
        CallbackIntruder::deploy_builder(rig.house.p.clone(), exec, arb.u, arb.x, mode, accomplice)
    };
    let names = [
        "onFlashLoan",
        "DVMFlashLoanCall",
        "DSPFlashLoanCall",
        "DPPFlashLoanCall",
        "uniswapV2Call",
    ];

    // A real ERC-3156 lender, so a genuine callback can be in progress while the intruder calls.
    let lender =
        deploy(FlashLender::deploy_builder(rig.house.p.clone(), U256::ZERO), "lender").await;
    rig.give(arb.u, lender, units(100_000)).await;

    for (mode, name) in (0u8..).zip(names) {
        let hop_venue = deploy(intruder(mode, Address::ZERO), "intruder").await;
        // 1. No flash loan: a hop venue calls back while `execute` runs (nobody is expected).
        let r = route(no_flash(), vec![hop(UNIV2, hop_venue, arb.u, arb.x, units(1_000))], arb.u);
        let got = simulate(&rig.operator, exec, &execute_data(&r)).await.expect_err(name);
        assert_eq!(reason(&got), "BAD_CALLER", "{name} from a hop venue, no flash");

        // 2. The lender `execute` borrowed from is expected, but another contract calls first.
        let accomplice = deploy(intruder(mode, Address::ZERO), "accomplice").await;
        let fake_lender = deploy(intruder(0, accomplice), "fake lender").await;
        let r = route(
            flash(FLASH_ERC3156, fake_lender, arb.u, units(1_000)),
            arb.hops(units(1_000)),
            arb.u,
        );
        let got = simulate(&rig.operator, exec, &execute_data(&r)).await.expect_err(name);
        assert_eq!(reason(&got), "BAD_CALLER", "{name} from an accomplice of the lender");

        // 3. Inside a genuine flash loan, a hop venue calls back a second time.
        let r = route(
            flash(FLASH_ERC3156, lender, arb.u, units(1_000)),
            vec![hop(UNIV2, hop_venue, arb.u, arb.x, units(1_000))],
            arb.u,
        );
        let got = simulate(&rig.operator, exec, &execute_data(&r)).await.expect_err(name);
        assert_eq!(reason(&got), "BAD_CALLER", "{name} from a hop venue inside a real loan");
    }

    // Control: when the expected source itself calls back, the caller gate passes and the data
    // check is what refuses the intruder's forged payload.
    let self_lender = deploy(intruder(0, Address::ZERO), "self-firing lender").await;
    let r = route(
        flash(FLASH_ERC3156, self_lender, arb.u, units(1_000)),
        arb.hops(units(1_000)),
        arb.u,
    );
    let got = simulate(&rig.operator, exec, &execute_data(&r)).await.expect_err("control");
    assert_eq!(reason(&got), "BAD_DATA");

    // On chain: the attempt reverts and the executor keeps every token.
    let hop_venue = deploy(intruder(4, Address::ZERO), "intruder").await;
    let r = route(no_flash(), vec![hop(UNIV2, hop_venue, arb.u, arb.x, units(1_000))], arb.u);
    let receipt = send(&rig.operator, exec, &execute_data(&r)).await;
    assert!(!receipt.status());
    assert_eq!(rig.bal(arb.u, exec).await, units(10_000));
    assert_eq!(rig.bal(arb.u, hop_venue).await, U256::ZERO);
    assert_eq!(rig.bal(arb.u, lender).await, units(100_000));
}

// ------------------------------------------------------------------------------------------------
// Losing and short routes
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn unprofitable_route_reverts_no_profit_and_changes_no_balance() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let arb = Arb::new(&rig).await;
    let inventory = units(10_000);
    rig.give(arb.u, exec, inventory).await;
    let amount = U256::from(ARB_IN);

    // The arb run backwards: buy X where it is dear (B), sell it where it is cheap (A).
    let backwards = route(
        no_flash(),
        vec![hop(UNIV2, arb.b, arb.u, arb.x, amount), hop(UNIV2, arb.a, arb.x, arb.u, U256::ZERO)],
        arb.u,
    );
    let (bi, bo) = rig.reserves(arb.b, arb.u).await;
    let out0 = v2_out(amount, bi, bo);
    let (ai, ao) = rig.reserves(arb.a, arb.x).await;
    let out1 = v2_out(out0, ai, ao);
    assert!(out1 < amount, "the backwards route loses");
    match custom_error(&rig.operator, exec, &backwards).await {
        ExecutorErrors::NoProfit(e) => {
            assert_eq!(e.before, inventory);
            assert_eq!(e.after_, inventory - amount + out1);
            assert_eq!(e.minProfit, U256::ZERO);
        }
        other => panic!("expected NoProfit, got {other:?}"),
    }

    // A profitable route whose minProfit is one unit above what it makes is refused too.
    let (_, gross) = arb.quote(&rig, amount).await;
    let profit = gross - amount;
    let mut greedy = route(no_flash(), arb.hops(amount), arb.u);
    greedy.minProfit = profit + U256::from(1u64);
    match custom_error(&rig.operator, exec, &greedy).await {
        ExecutorErrors::NoProfit(e) => {
            assert_eq!(e.before, inventory);
            assert_eq!(e.after_, inventory + profit);
            assert_eq!(e.minProfit, profit + U256::from(1u64));
        }
        other => panic!("expected NoProfit, got {other:?}"),
    }

    // Mined, the losing route reverts and no token balance moves.
    let watched = [exec, arb.a, arb.b, rig.operator.addr()];
    let mut before = Vec::new();
    for t in [arb.u, arb.x] {
        for w in watched {
            before.push(rig.bal(t, w).await);
        }
    }
    let reserves_before = (rig.reserves(arb.a, arb.u).await, rig.reserves(arb.b, arb.u).await);
    for r in [&backwards, &greedy] {
        let receipt = send(&rig.operator, exec, &execute_data(r)).await;
        assert!(!receipt.status(), "the route must revert on chain");
    }
    let mut after = Vec::new();
    for t in [arb.u, arb.x] {
        for w in watched {
            after.push(rig.bal(t, w).await);
        }
    }
    assert_eq!(before, after, "no balance of U or X changed");
    assert_eq!(
        reserves_before,
        (rig.reserves(arb.a, arb.u).await, rig.reserves(arb.b, arb.u).await)
    );
}

#[tokio::test]
async fn hop_below_min_out_reverts_hop_min_out() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let arb = Arb::new(&rig).await;
    rig.give(arb.u, exec, units(10_000)).await;
    let amount = U256::from(ARB_IN);
    let (out0, out1) = arb.quote(&rig, amount).await;

    for (index, out) in [(0usize, out0), (1, out1)] {
        let mut r = route(no_flash(), arb.hops(amount), arb.u);
        r.hops[index].minOut = out + U256::from(1u64);
        match custom_error(&rig.operator, exec, &r).await {
            ExecutorErrors::HopMinOut(e) => {
                assert_eq!(e.index, U256::from(index));
                assert_eq!(e.out, out, "the measured output of hop {index}");
                assert_eq!(e.minOut, out + U256::from(1u64));
            }
            other => panic!("expected HopMinOut, got {other:?}"),
        }
        let receipt = send(&rig.operator, exec, &execute_data(&r)).await;
        assert!(!receipt.status());
    }
    // Exactly the quoted minimum passes.
    let mut r = route(no_flash(), arb.hops(amount), arb.u);
    r.hops[0].minOut = out0;
    r.hops[1].minOut = out1;
    let (profit, _) = rig.run(&rig.operator, &r).await;
    assert_eq!(profit, out1 - amount);
    assert_eq!(rig.bal(arb.u, exec).await, units(10_000) + profit);
}

// ------------------------------------------------------------------------------------------------
// Profitable routes
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn profitable_route_without_flash_loan() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let arb = Arb::new(&rig).await;
    let inventory = units(10_000);
    rig.give(arb.u, exec, inventory).await;
    let amount = U256::from(ARB_IN);
    let (_, out1) = arb.quote(&rig, amount).await;

    let (profit, _) = rig.run(&rig.operator, &route(no_flash(), arb.hops(amount), arb.u)).await;
    let measured = rig.bal(arb.u, exec).await - inventory;
    assert_eq!(profit, measured, "profit is the measured balance change");
    assert_eq!(profit, out1 - amount, "and what the V2 math predicts");
    // DOMAIN §2.1: about 24.507 U at Δ*.
    assert!(profit > U256::from(24_400_000u64) && profit < U256::from(24_600_000u64), "{profit}");
    assert_eq!(rig.bal(arb.x, exec).await, U256::ZERO, "no X left behind");

    // At Δ* the gap is closed: running the arb again loses and is refused.
    let again = route(no_flash(), arb.hops(amount), arb.u);
    assert!(matches!(custom_error(&rig.operator, exec, &again).await, ExecutorErrors::NoProfit(_)));
}

#[tokio::test]
async fn erc3156_flash_route_pays_the_fee_and_leaves_no_allowance() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let arb = Arb::new(&rig).await;
    let lender =
        deploy(FlashLender::deploy_builder(rig.house.p.clone(), U256::from(5u64)), "lender").await;
    let liquidity = units(100_000);
    rig.give(arb.u, lender, liquidity).await;
    let amount = U256::from(ARB_IN);
    let (_, out1) = arb.quote(&rig, amount).await;
    // ⌈amount · 5 / 10000⌉
    let fee = (amount * U256::from(5u64) + U256::from(9_999u64)) / U256::from(10_000u64);
    assert_eq!(rig.bal(arb.u, exec).await, U256::ZERO, "no inventory: all capital is borrowed");

    let r = route(flash(FLASH_ERC3156, lender, arb.u, amount), arb.hops(amount), arb.u);
    let (profit, _) = rig.run(&rig.operator, &r).await;
    assert_eq!(profit, rig.bal(arb.u, exec).await, "profit is the measured balance change");
    assert_eq!(profit, out1 - amount - fee);
    assert_eq!(rig.bal(arb.u, lender).await, liquidity + fee, "the lender got its fee");
    assert_eq!(rig.allowance(arb.u, exec, lender).await, U256::ZERO, "no allowance left");
    assert_eq!(rig.bal(arb.x, exec).await, U256::ZERO);
}

#[tokio::test]
async fn dodo_pmm_flash_loan_route() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let arb = Arb::new(&rig).await;
    // Base X, quote U: the executor borrows quote.
    let pool = rig.pmm(arb.x, arb.u, 500_000).await;
    let pool_before = (rig.bal(arb.u, pool).await, rig.bal(arb.x, pool).await);
    let amount = U256::from(ARB_IN);
    let (_, out1) = arb.quote(&rig, amount).await;

    let r = route(flash(FLASH_DODO, pool, arb.u, amount), arb.hops(amount), arb.u);
    let (profit, _) = rig.run(&rig.operator, &r).await;
    assert_eq!(profit, rig.bal(arb.u, exec).await, "profit is the measured balance change");
    assert_eq!(profit, out1 - amount, "DODO charges nothing when the same token comes back");
    assert_eq!((rig.bal(arb.u, pool).await, rig.bal(arb.x, pool).await), pool_before);
    let reserves = PmmPool::new(pool, reader(&rig.chain.http_url)).getVaultReserve().call().await;
    let reserves = reserves.unwrap();
    assert_eq!((reserves.quoteReserve, reserves.baseReserve), pool_before);
    assert_eq!(rig.bal(arb.x, exec).await, U256::ZERO);
}

#[tokio::test]
async fn v2_flash_swap_route_repays_ceil_1000_over_997() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let arb = Arb::new(&rig).await;
    let lender_pair = rig.pair(arb.u, 1_000_000, arb.x, 1_000_000).await;
    let (pu, px) = (rig.bal(arb.u, lender_pair).await, rig.bal(arb.x, lender_pair).await);
    let amount = U256::from(ARB_IN);
    let (_, out1) = arb.quote(&rig, amount).await;
    let repay = (amount * U256::from(1000u64) + U256::from(996u64)) / U256::from(997u64);

    let r = route(flash(FLASH_UNIV2, lender_pair, arb.u, amount), arb.hops(amount), arb.u);
    let (profit, _) = rig.run(&rig.operator, &r).await;
    assert_eq!(profit, rig.bal(arb.u, exec).await, "profit is the measured balance change");
    assert_eq!(profit, out1 - repay);
    assert_eq!(rig.bal(arb.u, lender_pair).await, pu - amount + repay, "repaid ⌈1000·X/997⌉");
    assert_eq!(rig.bal(arb.x, lender_pair).await, px);
    assert_eq!(rig.bal(arb.x, exec).await, U256::ZERO);
}

#[tokio::test]
async fn vault_mint_and_redeem_hops() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let hp = rig.house.p.clone();
    let official = rig.token("OFF", 10_000_000).await;
    let compliant = rig.token("CMP", 0).await;
    let vault =
        deploy(ReserveVault::deploy_builder(hp.clone(), official, compliant, 0), "vault").await;
    ok(TestToken::new(compliant, hp.clone()).setMinter(vault, true), "setMinter").await;
    let backing = units(2_100_000);
    ok(TestToken::new(official, hp.clone()).approve(vault, backing), "approve").await;
    ok(ReserveVault::new(vault, hp.clone()).mint(backing), "vault mint").await;
    ok(ReserveVault::new(vault, hp.clone()).setFeeBps(5), "setFeeBps").await;
    let fee = |a: U256| a * U256::from(5u64) / U256::from(10_000u64);
    // Compliant cheap on `cheap`, dear on `dear`, against the vault's 1:1.
    let cheap = rig.pair(official, 1_000_000, compliant, 1_010_000).await;
    let dear = rig.pair(official, 1_010_000, compliant, 1_000_000).await;
    let inventory = units(10_000);
    rig.give(official, exec, inventory).await;
    let amount = units(3_000);

    // Redeem: buy compliant on `cheap`, redeem it at the vault.
    let (ri, ro) = rig.reserves(cheap, official).await;
    let bought = v2_out(amount, ri, ro);
    let paid = bought - fee(bought);
    let r = route(
        no_flash(),
        vec![
            hop(UNIV2, cheap, official, compliant, amount),
            hop(VAULT_REDEEM, vault, compliant, official, U256::ZERO),
        ],
        official,
    );
    let (profit, _) = rig.run(&rig.operator, &r).await;
    assert_eq!(profit, paid - amount);
    assert_eq!(rig.bal(official, exec).await, inventory + profit, "measured");

    // Mint: mint compliant at the vault, sell it on `dear` (the owner may run routes too).
    let before = rig.bal(official, exec).await;
    let minted = amount - fee(amount);
    let (ri, ro) = rig.reserves(dear, compliant).await;
    let sold = v2_out(minted, ri, ro);
    let r = route(
        no_flash(),
        vec![
            hop(VAULT_MINT, vault, official, compliant, amount),
            hop(UNIV2, dear, compliant, official, U256::ZERO),
        ],
        official,
    );
    let (profit, _) = rig.run(&rig.owner, &r).await;
    assert_eq!(profit, sold - amount);
    assert_eq!(rig.bal(official, exec).await - before, profit, "measured");
    assert_eq!(rig.bal(compliant, exec).await, U256::ZERO);
    assert_eq!(rig.allowance(official, exec, vault).await, U256::ZERO);
    assert_eq!(rig.allowance(compliant, exec, vault).await, U256::ZERO);
}

#[tokio::test]
async fn pmm_hops_against_v2_pairs() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let arb = Arb::new(&rig).await;
    let pool = rig.pmm(arb.x, arb.u, 1_000_000).await;
    let inventory = units(10_000);
    rig.give(arb.u, exec, inventory).await;
    let amount = units(3_000);
    let pmm = PmmPool::new(pool, reader(&rig.chain.http_url));
    let trader = rig.operator.addr(); // tx.origin prices the maintainer fee

    // X costs 1 U on the pool and fetches ~1.0101 U on B: sellQuote there, sell X on B.
    let got_x = pmm.querySellQuote(trader, amount).call().await.unwrap().receiveBaseAmount;
    let (bi, bo) = rig.reserves(arb.b, arb.x).await;
    let back = v2_out(got_x, bi, bo);
    let r = route(
        no_flash(),
        vec![
            hop(PMM_SELL_QUOTE, pool, arb.u, arb.x, amount),
            hop(UNIV2, arb.b, arb.x, arb.u, U256::ZERO),
        ],
        arb.u,
    );
    let (profit, _) = rig.run(&rig.operator, &r).await;
    assert_eq!(profit, back - amount);
    assert_eq!(rig.bal(arb.u, exec).await, inventory + profit, "measured");

    // X is cheap on A: buy it there, sellBase on the pool.
    let before = rig.bal(arb.u, exec).await;
    let (ai, ao) = rig.reserves(arb.a, arb.u).await;
    let x = v2_out(amount, ai, ao);
    let back = pmm.querySellBase(trader, x).call().await.unwrap().receiveQuoteAmount;
    let r = route(
        no_flash(),
        vec![
            hop(UNIV2, arb.a, arb.u, arb.x, amount),
            hop(PMM_SELL_BASE, pool, arb.x, arb.u, U256::ZERO),
        ],
        arb.u,
    );
    let (profit, _) = rig.run(&rig.operator, &r).await;
    assert_eq!(profit, back - amount);
    assert_eq!(rig.bal(arb.u, exec).await - before, profit, "measured");
    assert_eq!(rig.bal(arb.x, exec).await, U256::ZERO);
}

// ------------------------------------------------------------------------------------------------
// Funds leave only to the owner
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn sweep_pays_only_the_owner() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let t = rig.token("T", 1_000_000).await;
    rig.give(t, exec, units(1_000)).await;
    let supply = TestToken::new(t, reader(&rig.chain.http_url)).totalSupply().call().await.unwrap();
    let others = [rig.operator.addr(), rig.stranger.addr(), rig.house.addr()];
    let mut others_before = Vec::new();
    for w in others {
        others_before.push(rig.bal(t, w).await);
    }

    // Neither the operator nor a stranger can sweep.
    let d = data(Executor::sweepCall { token: t, amount: units(400) });
    refused(&rig.operator, exec, d.clone(), "NOT_OWNER", "sweep by the operator").await;
    refused(&rig.stranger, exec, d.clone(), "NOT_OWNER", "sweep by a stranger").await;
    assert_eq!(rig.bal(t, exec).await, units(1_000));

    let r = send(&rig.owner, exec, &d).await;
    assert!(r.status(), "the owner sweeps");
    assert_eq!(rig.bal(t, rig.owner.addr()).await, units(400), "the owner receives");
    assert_eq!(rig.bal(t, exec).await, units(600));
    let mut others_after = Vec::new();
    for w in others {
        others_after.push(rig.bal(t, w).await);
    }
    assert_eq!(others_before, others_after, "nobody else's balance changed");
    let supply_after =
        TestToken::new(t, reader(&rig.chain.http_url)).totalSupply().call().await.unwrap();
    assert_eq!(supply, supply_after);

    // The same with a scenario token the deployer mints to the executor.
    let c = rig.chain;
    fund(c, "USDT", exec, units(250)).await;
    let d = data(Executor::sweepCall { token: c.tokens["USDT"].address, amount: units(250) });
    refused(&rig.operator, exec, d.clone(), "NOT_OWNER", "USDT sweep by the operator").await;
    assert!(send(&rig.owner, exec, &d).await.status());
    assert_eq!(balance(c, "USDT", rig.owner.addr()).await, units(250), "the owner receives");
    assert_eq!(balance(c, "USDT", exec).await, U256::ZERO);
    for w in others {
        assert_eq!(balance(c, "USDT", w).await, U256::ZERO, "nobody else receives");
    }
}

#[tokio::test]
async fn sweep_native_pays_only_the_owner() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    pay(&rig.house, exec, ether(5)).await;
    let d = data(Executor::sweepNativeCall { amount: ether(2) });
    refused(&rig.operator, exec, d.clone(), "NOT_OWNER", "sweepNative by the operator").await;
    refused(&rig.stranger, exec, d.clone(), "NOT_OWNER", "sweepNative by a stranger").await;
    assert_eq!(rig.native(exec).await, ether(5));

    let watched = [rig.operator.addr(), rig.stranger.addr(), rig.house.addr()];
    let mut before = Vec::new();
    for w in watched {
        before.push(rig.native(w).await);
    }
    let owner_before = rig.native(rig.owner.addr()).await;
    let r = send(&rig.owner, exec, &d).await;
    assert!(r.status(), "the owner sweeps native");
    let gas_cost = U256::from(r.gas_used) * U256::from(r.effective_gas_price);
    assert_eq!(rig.native(rig.owner.addr()).await, owner_before + ether(2) - gas_cost);
    assert_eq!(rig.native(exec).await, ether(3));
    let mut after = Vec::new();
    for w in watched {
        after.push(rig.native(w).await);
    }
    assert_eq!(before, after, "nobody else's balance changed");
}

#[tokio::test]
async fn ownership_moves_in_two_steps_and_sweeps_follow_it() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let t = rig.token("T", 1_000_000).await;
    rig.give(t, exec, units(1_000)).await;
    let heir = Actor::new(rig.chain).await;
    let sweep = data(Executor::sweepCall { token: t, amount: units(100) });

    let r =
        send(&rig.owner, exec, &data(Executor::transferOwnershipCall { newOwner: heir.addr() }))
            .await;
    assert!(r.status());
    // Nominated is not owner: the nominee cannot sweep, the old owner still can.
    refused(&heir, exec, sweep.clone(), "NOT_OWNER", "sweep by the nominee").await;
    refused(
        &rig.stranger,
        exec,
        data(Executor::acceptOwnershipCall {}),
        "NOT_PENDING_OWNER",
        "accept by a stranger",
    )
    .await;
    assert!(send(&heir, exec, &data(Executor::acceptOwnershipCall {})).await.status());
    assert_eq!(rig.executor().owner().call().await.unwrap(), heir.addr());
    refused(&rig.owner, exec, sweep.clone(), "NOT_OWNER", "sweep by the former owner").await;
    assert!(send(&heir, exec, &sweep).await.status());
    assert_eq!(rig.bal(t, heir.addr()).await, units(100));
    assert_eq!(rig.bal(t, rig.owner.addr()).await, U256::ZERO);
    assert_eq!(rig.bal(t, exec).await, units(900));
}

// ------------------------------------------------------------------------------------------------
// Coinbase tip cap
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn coinbase_tip_is_capped_by_the_owner_and_paid_exactly() {
    let rig = Rig::new().await;
    let exec = rig.exec;
    let arb = Arb::new(&rig).await;
    rig.give(arb.u, exec, units(10_000)).await;
    pay(&rig.owner, exec, ether(1)).await;
    let cap = U256::from(10u64).pow(U256::from(15));
    let tipped = |tip: U256| {
        let mut r = route(no_flash(), arb.hops(units(1_000)), arb.u);
        r.coinbaseTip = tip;
        r
    };

    // Tips are disabled until the owner sets a cap.
    assert_eq!(rig.executor().maxCoinbaseTip().call().await.unwrap(), U256::ZERO);
    refused(&rig.operator, exec, execute_data(&tipped(U256::from(1u64))), "TIP_CAP", "tip, no cap")
        .await;
    let set_cap = data(Executor::setMaxCoinbaseTipCall { newCap: cap });
    refused(&rig.operator, exec, set_cap.clone(), "NOT_OWNER", "cap set by the operator").await;
    let r = send(&rig.owner, exec, &set_cap).await;
    assert!(r.status());
    let ev = r
        .inner
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<Executor::MaxCoinbaseTipSet>().ok())
        .expect("MaxCoinbaseTipSet")
        .inner
        .data;
    assert_eq!((ev.previousCap, ev.newCap), (U256::ZERO, cap));
    assert_eq!(rig.executor().maxCoinbaseTip().call().await.unwrap(), cap);

    refused(&rig.operator, exec, execute_data(&tipped(cap + U256::from(1u64))), "TIP_CAP", "above")
        .await;
    assert_eq!(rig.native(exec).await, ether(1), "no tip left on a refused route");

    // A tip of exactly the cap goes to the block's coinbase, to the wei.
    let (_, out1) = arb.quote(&rig, units(1_000)).await;
    let (profit, r) = rig.run(&rig.operator, &tipped(cap)).await;
    assert_eq!(profit, out1 - units(1_000));
    assert_eq!(rig.native(exec).await, ether(1) - cap);
    let p = reader(&rig.chain.http_url);
    let n = r.block_number.expect("mined");
    let block = p.get_block_by_number(n.into()).await.unwrap().expect("block");
    let coinbase = block.header.beneficiary;
    let base_fee = u128::from(block.header.base_fee_per_gas.unwrap_or_default());
    let receipts = p.get_block_receipts(BlockId::number(n)).await.unwrap().expect("receipts");
    let priority: U256 = receipts
        .iter()
        .map(|x| U256::from(x.gas_used) * U256::from(x.effective_gas_price - base_fee))
        .sum();
    let delta = p.get_balance(coinbase).number(n).await.unwrap()
        - p.get_balance(coinbase).number(n - 1).await.unwrap();
    assert_eq!(delta, cap + priority, "coinbase got the tip (plus the block's priority fees)");
}
