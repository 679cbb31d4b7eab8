//! The PMM fixture pool (`fixtures/contracts/pmm`) against DOMAIN §1 on the shared devnet's chain 138.
//!
//! Every test builds its own pools from a fresh account ([`build`]: two `TestToken`s the account owns
//! and can mint, a `FeeRateModel`, a `PmmPool`, liquidity via `buyShares`), so tests are isolated and
//! run in parallel. Numbers are DOMAIN §1.10's: full-wei values are compared exactly, rounded ones
//! ("9,959.949689") through [`assert_shown`], which rounds half up to the digits DOMAIN displays
//! (DOMAIN rounds: e.g. 9,959.9496886… is shown as …689). Swaps are the real two-step flow: mint the
//! input into the pool, then `sellBase`/`sellQuote`; what the receiver gets is a balance delta.
//! Every transaction carries an explicit gas limit (anvil's estimate can be too low on TWAP pools),
//! except token deploys, which go through the shared `deploy_token` helper (estimated, deterministic).

use alloy::{
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, Provider, ext::AnvilApi},
    rpc::types::TransactionReceipt,
    signers::local::PrivateKeySigner,
    sol_types::{Revert, SolValue},
};
use cantilever::{
    contracts::{FeeRateModel, PmmPool, TestToken},
    devnet::deploy::confirm,
};
use futures::future::join_all;

use crate::harness::{deploy_token, fresh_account, shared};

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    PmmFlashBorrower,
    "fixtures/artifacts/PmmFlashBorrower.json"
);

/// Gas limit for every transaction (deploys included).
const GAS: u64 = 5_000_000;

/// R states (PMMPricing.RState).
const ONE_R: u8 = 0;
const ABOVE_ONE: u8 = 1;
const BELOW_ONE: u8 = 2;

/// k = 0.1 and k = 0.0005 (18 decimals).
const K_10PCT: u64 = 100_000_000_000_000_000;
const K_5BP: u64 = 500_000_000_000_000;

/// `v` as U256.
fn u(v: u64) -> U256 {
    U256::from(v)
}

/// 10^e.
fn pow10(e: u8) -> U256 {
    U256::from(10u64).pow(U256::from(e))
}

/// 1e18.
fn one() -> U256 {
    pow10(18)
}

/// `n` whole tokens of a `dec`-decimal token.
fn units(n: u64, dec: u8) -> U256 {
    u(n) * pow10(dec)
}

/// An exact integer written in decimal (underscores allowed).
fn int(s: &str) -> U256 {
    s.replace('_', "").parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// ⌊a·b/1e18⌋ (DecimalMath.mulFloor).
fn mul_floor(a: U256, b: U256) -> U256 {
    a * b / one()
}

/// Asserts that `x` (a `dec`-decimal raw amount) shows as `shown` ("9,959.949689") when rounded half
/// up to the decimals `shown` has. With all `dec` decimals shown this is exact equality.
fn assert_shown(x: U256, dec: u8, shown: &str, what: &str) {
    let clean: String = shown.chars().filter(|c| *c != ',').collect();
    let (whole, frac) = clean.split_once('.').unwrap_or((clean.as_str(), ""));
    let places = u8::try_from(frac.len()).expect("decimals");
    assert!(places <= dec, "{what}: {shown} has more than {dec} decimals");
    let scale = pow10(dec - places);
    let got = (x + scale / u(2)) / scale;
    assert_eq!(got, int(&format!("{whole}{frac}")), "{what}: {x} (raw, {dec} dec) is not {shown}");
}

// ------------------------------------------------------------------------------------------------
// Transactions
// ------------------------------------------------------------------------------------------------

/// Sends `call` with the fixed gas limit and requires success.
async fn send<P: Provider, D: alloy::contract::CallDecoder>(
    p: &DynProvider,
    call: alloy::contract::CallBuilder<P, D>,
    what: &str,
) -> TransactionReceipt {
    let pending = call.gas(GAS).send().await.unwrap_or_else(|e| panic!("{what}: send: {e}"));
    confirm(p, pending, what).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Deploys with the fixed gas limit and returns the address.
async fn deploy<P: Provider, D: alloy::contract::CallDecoder>(
    p: &DynProvider,
    builder: alloy::contract::CallBuilder<P, D>,
    what: &str,
) -> Address {
    send(p, builder, what).await.contract_address.unwrap_or_else(|| panic!("{what}: no address"))
}

/// `call` from `from` reverts with `reason`: the `eth_call` revert string is matched exactly, then
/// the transaction is sent (fixed gas) and must be mined as a revert.
async fn assert_reverts<P: Provider, D: alloy::contract::CallDecoder>(
    p: &DynProvider,
    call: alloy::contract::CallBuilder<P, D>,
    from: Address,
    reason: &str,
    what: &str,
) {
    let call = call.from(from).gas(GAS);
    let err = match call.call_raw().await {
        Ok(out) => panic!("{what}: eth_call succeeded ({out}), expected revert {reason:?}"),
        Err(e) => e,
    };
    let got = err
        .as_decoded_error::<Revert>()
        .unwrap_or_else(|| panic!("{what}: not a revert string: {err}"));
    assert_eq!(got.reason, reason, "{what}");
    let pending = call.send().await.unwrap_or_else(|e| panic!("{what}: send: {e}"));
    let mined = confirm(p, pending, what).await;
    assert!(
        mined.as_ref().is_err_and(|e| e.to_string().contains("reverted")),
        "{what}: expected an on-chain revert, got {mined:?}"
    );
}

/// Timestamp of the block that mined `r`.
async fn block_time(p: &DynProvider, r: &TransactionReceipt) -> u64 {
    let n = r.block_number.expect("mined receipt has a block number");
    p.get_block_by_number(n.into()).await.expect("block").expect("block exists").header.timestamp
}

// ------------------------------------------------------------------------------------------------
// Pool fixture
// ------------------------------------------------------------------------------------------------

type Token = TestToken::TestTokenInstance<DynProvider>;
type Pool = PmmPool::PmmPoolInstance<DynProvider>;

/// The side being sold.
#[derive(Clone, Copy, Debug)]
enum Side {
    Base,
    Quote,
}

/// What a pool is built from.
#[derive(Clone, Debug)]
struct Spec {
    bd: u8,
    qd: u8,
    i: U256,
    k: U256,
    lp: U256,
    mt: U256,
    b: U256,
    q: U256,
    twap: bool,
}

impl Spec {
    /// (base decimals, quote decimals, i, k, lp, mt, B, Q), TWAP closed.
    #[allow(clippy::too_many_arguments)]
    fn new(bd: u8, qd: u8, i: U256, k: u64, lp: u64, mt: u64, b: U256, q: U256) -> Self {
        Self { bd, qd, i, k: u(k), lp: u(lp), mt: u(mt), b, q, twap: false }
    }

    /// DOMAIN §1.10's pool: 18/18, i = 1e18, B = Q = 1,000,000, no mt fee.
    fn domain(k: u64, lp: u64) -> Self {
        Self::new(18, 18, one(), k, lp, 0, units(1_000_000, 18), units(1_000_000, 18))
    }

    fn twap(mut self, open: bool) -> Self {
        self.twap = open;
        self
    }
}

/// One pool with its own tokens and fee model, all owned by `key` (which also holds the LP shares
/// and trades unless a test says otherwise).
struct Fx {
    key: PrivateKeySigner,
    p: DynProvider,
    base: Token,
    quote: Token,
    model: FeeRateModel::FeeRateModelInstance<DynProvider>,
    pool: Pool,
    maintainer: Address,
}

/// A query or swap result.
#[derive(Debug, PartialEq, Eq)]
struct Quote {
    out: U256,
    mt_fee: U256,
    r: u8,
    target: U256,
}

/// Deploys tokens, fee model (default rate `mt`) and pool from a fresh account, then adds B and Q
/// with `buyShares`.
async fn build(s: Spec) -> Fx {
    let c = shared().c138();
    let (key, p) = fresh_account(c).await;
    let owner = key.address();
    let maintainer = PrivateKeySigner::random().address();
    let base = deploy_token(&p, "PB", s.bd).await;
    let quote = deploy_token(&p, "PQ", s.qd).await;
    let model = deploy(&p, FeeRateModel::deploy_builder(p.clone(), s.mt), "deploy model").await;
    let pool =
        PmmPool::deploy_builder(p.clone(), maintainer, base, quote, s.lp, model, s.i, s.k, s.twap);
    let pool = deploy(&p, pool, "deploy pool").await;
    let fx = Fx {
        base: TestToken::new(base, p.clone()),
        quote: TestToken::new(quote, p.clone()),
        model: FeeRateModel::new(model, p.clone()),
        pool: PmmPool::new(pool, p.clone()),
        key,
        p,
        maintainer,
    };
    send(&fx.p, fx.base.mint(pool, s.b), "mint base liquidity").await;
    send(&fx.p, fx.quote.mint(pool, s.q), "mint quote liquidity").await;
    send(&fx.p, fx.pool.buyShares(owner), "buyShares").await;
    fx
}

impl Fx {
    fn owner(&self) -> Address {
        self.key.address()
    }

    fn token(&self, side: Side) -> &Token {
        match side {
            Side::Base => &self.base,
            Side::Quote => &self.quote,
        }
    }

    /// The token received when selling `side`.
    fn other(&self, side: Side) -> &Token {
        match side {
            Side::Base => &self.quote,
            Side::Quote => &self.base,
        }
    }

    async fn bal(&self, t: &Token, who: Address) -> U256 {
        t.balanceOf(who).call().await.expect("balanceOf")
    }

    /// `querySellBase`/`querySellQuote` for `trader`.
    async fn query_for(&self, trader: Address, side: Side, amount: U256) -> Quote {
        match side {
            Side::Base => {
                let r =
                    self.pool.querySellBase(trader, amount).call().await.expect("querySellBase");
                Quote {
                    out: r.receiveQuoteAmount,
                    mt_fee: r.mtFee,
                    r: r.newRState,
                    target: r.newBaseTarget,
                }
            }
            Side::Quote => {
                let r =
                    self.pool.querySellQuote(trader, amount).call().await.expect("querySellQuote");
                Quote {
                    out: r.receiveBaseAmount,
                    mt_fee: r.mtFee,
                    r: r.newRState,
                    target: r.newQuoteTarget,
                }
            }
        }
    }

    async fn query(&self, side: Side, amount: U256) -> Quote {
        self.query_for(self.owner(), side, amount).await
    }

    /// Mints `amount` of `side` into the pool (the swap's implicit input).
    async fn pay_in(&self, side: Side, amount: U256) {
        send(&self.p, self.token(side).mint(*self.pool.address(), amount), "mint input").await;
    }

    /// The second half of a swap, sent by the owner: `sellBase`/`sellQuote` to the owner.
    async fn swap_call(&self, side: Side) -> TransactionReceipt {
        let to = self.owner();
        match side {
            Side::Base => send(&self.p, self.pool.sellBase(to), "sellBase").await,
            Side::Quote => send(&self.p, self.pool.sellQuote(to), "sellQuote").await,
        }
    }

    /// A real swap by the owner: what the owner received (balance delta).
    async fn swap(&self, side: Side, amount: U256) -> U256 {
        let before = self.bal(self.other(side), self.owner()).await;
        self.pay_in(side, amount).await;
        self.swap_call(side).await;
        self.bal(self.other(side), self.owner()).await - before
    }

    /// getPMMStateForCall (short-side target re-solved).
    async fn state(&self) -> PmmPool::getPMMStateForCallReturn {
        self.pool.getPMMStateForCall().call().await.expect("getPMMStateForCall")
    }

    async fn mid(&self) -> U256 {
        self.pool.getMidPrice().call().await.expect("getMidPrice")
    }

    async fn stored_r(&self) -> u8 {
        u8::try_from(self.pool._RState_().call().await.expect("_RState_")).expect("R fits u8")
    }

    /// Stored (B0, Q0), as written when R last changed.
    async fn stored_targets(&self) -> (U256, U256) {
        let b0 = self.pool._BASE_TARGET_().call().await.expect("_BASE_TARGET_");
        let q0 = self.pool._QUOTE_TARGET_().call().await.expect("_QUOTE_TARGET_");
        (U256::from(b0), U256::from(q0))
    }

    async fn reserves(&self) -> (U256, U256) {
        let r = self.pool.getVaultReserve().call().await.expect("getVaultReserve");
        (r.baseReserve, r.quoteReserve)
    }

    /// (accumulator, last timestamp) of the TWAP.
    async fn twap(&self) -> (U256, u64) {
        let cum = self.pool._BASE_PRICE_CUMULATIVE_LAST_().call().await.expect("cumulative");
        let last = self.pool._BLOCK_TIMESTAMP_LAST_().call().await.expect("timestamp last");
        (cum, u64::from(last))
    }
}

// ------------------------------------------------------------------------------------------------
// DOMAIN §1.10: 18/18 pool at R = ONE, sell 10,000
// ------------------------------------------------------------------------------------------------

/// One row of DOMAIN §1.10's first table.
struct RoneRow {
    k: u64,
    raw: &'static str,
    avg: &'static str,
    mid: &'static str,
    net_1bp: &'static str,
    net_30bp: &'static str,
}

const R_ONE_ROWS: [RoneRow; 3] = [
    RoneRow {
        k: K_10PCT,
        raw: "9989919447032049723473",
        avg: "0.998992",
        mid: "0.997975778515",
        net_1bp: "9,988.920455",
        net_30bp: "9,959.949689",
    },
    RoneRow {
        k: K_5BP,
        raw: "9999949495462216980619",
        avg: "0.999995",
        mid: "0.999989848130",
        net_1bp: "9,998.949501",
        net_30bp: "9,969.949647",
    },
    RoneRow {
        k: 0,
        raw: "10000000000000000000000",
        avg: "1",
        mid: "1.000000000000000000",
        net_1bp: "9,999.000000000000000000",
        net_30bp: "9,970.000000000000000000",
    },
];

/// lp 0.01% and 0.3%.
const LP_1BP: u64 = 100_000_000_000_000;
const LP_30BP: u64 = 3_000_000_000_000_000;

/// Per k: three pools (lp 0, 0.01%, 0.3%). Selling 10,000 base: the query gives the raw output (lp
/// 0) or raw − ⌊raw·lp⌋ (checked against DOMAIN's digits), a real sellBase pays exactly the query,
/// and the state after is B = 1,010,000, Q = B − paid, R = BELOW_ONE with the mid of DOMAIN.
/// Selling 10,000 quote instead gives the same raw base (symmetric at i = 1).
#[tokio::test]
async fn sell_10k_at_r_one_matches_domain_table() {
    join_all(R_ONE_ROWS.iter().map(|row| async move {
        let x = units(10_000, 18);
        let raw = int(row.raw);
        let lps = [0, LP_1BP, LP_30BP];
        let pools = join_all(lps.map(|lp| build(Spec::domain(row.k, lp)))).await;
        let what = |lp: u64| format!("k={} lp={lp}", row.k);

        let sym = pools[0].query(Side::Quote, x).await;
        assert_eq!(
            (sym.out, sym.r, sym.target),
            (raw, ABOVE_ONE, units(1_000_000, 18)),
            "{}",
            what(0)
        );

        for (fx, lp) in pools.iter().zip(lps) {
            let w = what(lp);
            let net = raw - mul_floor(raw, u(lp));
            let q = fx.query(Side::Base, x).await;
            assert_eq!(
                q,
                Quote { out: net, mt_fee: U256::ZERO, r: BELOW_ONE, target: units(1_000_000, 18) },
                "{w}"
            );
            assert_eq!(fx.swap(Side::Base, x).await, net, "{w}: real sellBase pays the query");
            assert_eq!(
                fx.reserves().await,
                (units(1_010_000, 18), units(1_000_000, 18) - net),
                "{w}"
            );
            assert_eq!(fx.stored_r().await, BELOW_ONE, "{w}");
            assert_eq!(fx.state().await.R, u(BELOW_ONE.into()), "{w}");
        }
        assert_shown(raw * one() / x, 18, row.avg, "avg price");
        assert_shown(raw - mul_floor(raw, u(LP_1BP)), 18, row.net_1bp, "net @ lp 0.01%");
        assert_shown(raw - mul_floor(raw, u(LP_30BP)), 18, row.net_30bp, "net @ lp 0.3%");
        assert_shown(pools[0].mid().await, 18, row.mid, &format!("mid after, k={}", row.k));
    }))
    .await;
}

// ------------------------------------------------------------------------------------------------
// DOMAIN §1.10: post-trade state for k = 0.1
// ------------------------------------------------------------------------------------------------

/// Q after selling 10,000 base into the k = 0.1 pool, and the re-solved Q0.
const POST_Q: &str = "990010080552967950276527";
const POST_Q0: &str = "999999999999999997536127";

/// A follow-up trade from the post-trade state.
struct FollowUp {
    what: &'static str,
    side: Side,
    /// Amount paid; `None` means Q0 − Q (back to one).
    pay: Option<u64>,
    shown: &'static str,
    r: u8,
}

const FOLLOW_UPS: [FollowUp; 4] = [
    FollowUp {
        what: "pay Q0-Q quote",
        side: Side::Quote,
        pay: None,
        shown: "10,000.000000000000000000",
        r: ONE_R,
    },
    FollowUp {
        what: "pay 5,000 quote",
        side: Side::Quote,
        pay: Some(5_000),
        shown: "5,007.578",
        r: BELOW_ONE,
    },
    FollowUp {
        what: "pay 20,000 quote",
        side: Side::Quote,
        pay: Some(20_000),
        shown: "19,999.980",
        r: ABOVE_ONE,
    },
    FollowUp {
        what: "sell 10,000 base",
        side: Side::Base,
        pay: Some(10_000),
        shown: "9,969.432",
        r: BELOW_ONE,
    },
];

/// k = 0.1, after selling 10,000 base: B, Q and R are DOMAIN's; getPMMState re-solves Q0 to
/// 1e6 − dust while the stored targets stay 1e6. Each follow-up (on its own pool, from that state)
/// is queried, compared with DOMAIN, sent for real, and leaves the stated R; paying exactly Q0 − Q
/// returns exactly 10,000 base, restores B = B0, Q = Q0 and mid = i, and stores Q0.
#[tokio::test]
async fn post_trade_state_k_0_1() {
    join_all(FOLLOW_UPS.iter().map(|f| async move {
        let fx = build(Spec::domain(K_10PCT, 0)).await;
        fx.swap(Side::Base, units(10_000, 18)).await;
        let (q, q0) = (int(POST_Q), int(POST_Q0));
        assert_eq!(fx.reserves().await, (units(1_010_000, 18), q));
        assert_eq!(fx.stored_r().await, BELOW_ONE);
        assert_eq!(fx.stored_targets().await, (units(1_000_000, 18), units(1_000_000, 18)));
        let s = fx.state().await;
        assert_eq!(
            (s.B, s.Q, s.B0, s.Q0, s.R),
            (units(1_010_000, 18), q, units(1_000_000, 18), q0, u(2))
        );
        assert_eq!(q0 - q, int("9989919447032047259600"), "back-to-one quote");
        assert_shown(q0 - q, 18, "9,989.919447032047", "back-to-one quote");

        let pay = f.pay.map_or(q0 - q, |n| units(n, 18));
        let quoted = fx.query(f.side, pay).await;
        assert_shown(quoted.out, 18, f.shown, f.what);
        assert_eq!(quoted.r, f.r, "{}: new R", f.what);
        assert_eq!(fx.swap(f.side, pay).await, quoted.out, "{}: real swap pays the query", f.what);
        assert_eq!(fx.stored_r().await, f.r, "{}: stored R", f.what);
        if f.pay.is_none() {
            assert_eq!(fx.reserves().await, (units(1_000_000, 18), q0), "back to one: reserves");
            assert_eq!(
                fx.stored_targets().await,
                (units(1_000_000, 18), q0),
                "back to one: Q0 stored"
            );
            assert_eq!(fx.mid().await, one(), "back to one: mid = i");
        }
    }))
    .await;
}

// ------------------------------------------------------------------------------------------------
// DOMAIN §1.10: larger sizes and the large dump
// ------------------------------------------------------------------------------------------------

/// 18/18 pool at R = ONE, sell (k, base, DOMAIN's quote out): query and real swap agree with DOMAIN.
#[tokio::test]
async fn larger_sizes_match_domain() {
    let rows = [
        (K_10PCT, 100_000, "98,914.197"),
        (K_10PCT, 500_000, "460,655.337"),
        (K_5BP, 100_000, "99,994.445"),
        (K_5BP, 500_000, "499,750.374"),
    ];
    join_all(rows.iter().map(|&(k, size, shown)| async move {
        let fx = build(Spec::domain(k, 0)).await;
        let x = units(size, 18);
        let q = fx.query(Side::Base, x).await;
        assert_shown(q.out, 18, shown, &format!("k={k} sell {size}"));
        assert_eq!(fx.swap(Side::Base, x).await, q.out, "k={k} sell {size}: real swap");
    }))
    .await;
}

/// k = 0.0005 at R = ONE, dump 300,000 base: 299,935.748 quote (avg 0.999786), mid after 0.999480.
#[tokio::test]
async fn large_dump_k_0_0005() {
    let fx = build(Spec::domain(K_5BP, 0)).await;
    let x = units(300_000, 18);
    let out = fx.swap(Side::Base, x).await;
    assert_shown(out, 18, "299,935.748", "dump 300k: quote out");
    assert_shown(out * one() / x, 18, "0.999786", "dump 300k: avg price");
    assert_shown(fx.mid().await, 18, "0.999480", "dump 300k: mid after");
}

// ------------------------------------------------------------------------------------------------
// DOMAIN §1.10: other decimals, fees to the maintainer
// ------------------------------------------------------------------------------------------------

/// 6/6 (reserves 1e12, i = 1e18) and 18/6 (i = 1e6) pools, sell 10,000 base (raw, DOMAIN's values):
/// the query gives net = raw − ⌊raw·lp⌋ − ⌊raw·mt⌋ and mtFee = ⌊raw·mt⌋; a real sellBase pays the net
/// to the trader and the mt fee to the maintainer, and the lp fee stays in the quote reserve.
#[tokio::test]
async fn mixed_decimals_and_fees_match_domain() {
    struct Row {
        bd: u8,
        qd: u8,
        k: u64,
        lp: u64,
        mt: u64,
        raw: u64,
        net: u64,
        mt_fee: u64,
    }
    let rows = [
        Row {
            bd: 6,
            qd: 6,
            k: K_10PCT,
            lp: 0,
            mt: 0,
            raw: 9_989_919_447,
            net: 9_989_919_447,
            mt_fee: 0,
        },
        Row {
            bd: 6,
            qd: 6,
            k: K_5BP,
            lp: 0,
            mt: 0,
            raw: 9_999_949_495,
            net: 9_999_949_495,
            mt_fee: 0,
        },
        // lp 0.2%, mt 0.1% (the fee model's default rate 1e15): DOMAIN net 9,969.949648, mtFee 9.999949.
        Row {
            bd: 6,
            qd: 6,
            k: K_5BP,
            lp: 2_000_000_000_000_000,
            mt: 1_000_000_000_000_000,
            raw: 9_999_949_495,
            net: 9_969_949_648,
            mt_fee: 9_999_949,
        },
        Row {
            bd: 18,
            qd: 6,
            k: K_5BP,
            lp: 0,
            mt: 0,
            raw: 9_999_949_495,
            net: 9_999_949_495,
            mt_fee: 0,
        },
    ];
    join_all(rows.iter().map(|r| async move {
        let what = format!("{}/{} k={} lp={} mt={}", r.bd, r.qd, r.k, r.lp, r.mt);
        // i = 1e18 · 10^(qd − bd) (DOMAIN §1.1); reserves are 1,000,000 tokens each.
        let i = one() * pow10(r.qd) / pow10(r.bd);
        let spec = Spec::new(
            r.bd,
            r.qd,
            i,
            r.k,
            r.lp,
            r.mt,
            units(1_000_000, r.bd),
            units(1_000_000, r.qd),
        );
        let fx = build(spec.clone()).await;
        let s = fx.state().await;
        assert_eq!(
            (s.i, s.B0, s.Q0, s.R),
            (i, spec.b, spec.q, U256::ZERO),
            "{what}: initial state"
        );
        let lp_mt = fx.pool.getUserFeeRate(fx.owner()).call().await.expect("getUserFeeRate");
        assert_eq!((lp_mt.lpFeeRate, lp_mt.mtFeeRate), (u(r.lp), u(r.mt)), "{what}");

        let (raw, net, mt_fee) = (u(r.raw), u(r.net), u(r.mt_fee));
        assert_eq!(mt_fee, mul_floor(raw, u(r.mt)), "{what}: DOMAIN mtFee from raw");
        assert_eq!(net, raw - mul_floor(raw, u(r.lp)) - mt_fee, "{what}: DOMAIN net from raw");
        let x = units(10_000, r.bd);
        assert_eq!(fx.query(Side::Base, x).await.out, net, "{what}: query");
        assert_eq!(fx.query(Side::Base, x).await.mt_fee, mt_fee, "{what}: query mtFee");
        assert_eq!(fx.swap(Side::Base, x).await, net, "{what}: trader receives");
        assert_eq!(fx.bal(&fx.quote, fx.maintainer).await, mt_fee, "{what}: maintainer receives");
        assert_eq!(
            fx.reserves().await,
            (spec.b + x, spec.q - net - mt_fee),
            "{what}: lp fee stays"
        );
    }))
    .await;
}

/// The maintainer rate is the fee model's rate for tx.origin. With a default of 0.1%, trader B
/// overridden to 0.5% and a forwarding contract C overridden to 0.9%, querySellBase's mtFee follows
/// the trader argument; a sellBase sent by B through C (msg.sender C, tx.origin B) charges B's rate,
/// and a later direct sellBase by another EOA A charges the default.
#[tokio::test]
async fn maintainer_fee_follows_tx_origin() {
    let default_rate = 1_000_000_000_000_000u64;
    let b_rate = 5_000_000_000_000_000u64;
    let c_rate = 9_000_000_000_000_000u64;
    let fx = build(Spec::new(
        6,
        6,
        one(),
        K_5BP,
        0,
        default_rate,
        units(1_000_000, 6),
        units(1_000_000, 6),
    ))
    .await;
    let c = shared().c138();
    let (a, a_p) = fresh_account(c).await;
    let (b, b_p) = fresh_account(c).await;
    let fwd = deploy(&b_p, PmmFlashBorrower::deploy_builder(b_p.clone()), "deploy forwarder").await;
    send(&fx.p, fx.model.setTraderRate(b.address(), u(b_rate)), "setTraderRate B").await;
    send(&fx.p, fx.model.setTraderRate(fwd, u(c_rate)), "setTraderRate C").await;

    let x = units(10_000, 6);
    let raw = u(9_999_949_495); // DOMAIN §1.10, 6/6 k = 0.0005
    for (who, rate) in [(a.address(), default_rate), (b.address(), b_rate), (fwd, c_rate)] {
        let q = fx.query_for(who, Side::Base, x).await;
        let fee = mul_floor(raw, u(rate));
        assert_eq!((q.out, q.mt_fee), (raw - fee, fee), "query for {who} at rate {rate}");
        let rates = fx.pool.getUserFeeRate(who).call().await.expect("getUserFeeRate");
        assert_eq!(rates.mtFeeRate, u(rate));
    }

    // B sells through the forwarder: B's rate applies, not the forwarder's.
    fx.pay_in(Side::Base, x).await;
    let via = PmmFlashBorrower::new(fwd, b_p.clone());
    send(&b_p, via.sellBaseVia(*fx.pool.address(), b.address()), "sellBaseVia").await;
    let b_fee = mul_floor(raw, u(b_rate));
    assert_eq!(fx.bal(&fx.quote, b.address()).await, raw - b_fee, "B receives");
    assert_eq!(fx.bal(&fx.quote, fx.maintainer).await, b_fee, "maintainer gets B's rate");

    // A sells directly from the new state: the default rate.
    let q = fx.query_for(a.address(), Side::Base, x).await;
    assert_eq!(q.mt_fee, mul_floor(q.out + q.mt_fee, u(default_rate)));
    fx.pay_in(Side::Base, x).await;
    send(&a_p, PmmPool::new(*fx.pool.address(), a_p.clone()).sellBase(a.address()), "A sellBase")
        .await;
    assert_eq!(fx.bal(&fx.quote, a.address()).await, q.out, "A receives");
    assert_eq!(fx.bal(&fx.quote, fx.maintainer).await, b_fee + q.mt_fee, "maintainer gets A's fee");
}

// ------------------------------------------------------------------------------------------------
// Flash loan (DOMAIN §1.8)
// ------------------------------------------------------------------------------------------------

/// Borrowing with data calls DSPFlashLoanCall(sender, base, quote, data) on assetTo; returning the
/// same tokens changes nothing (no fee, even with lp and mt fees set); keeping them reverts
/// FLASH_LOAN_FAILED; re-entering sellBase from the callback reverts REENTRANT; empty data makes no
/// callback.
#[tokio::test]
async fn flash_loan_callback_repay_and_reentrancy() {
    let fx = build(Spec::domain(K_10PCT, LP_30BP)).await;
    send(&fx.p, fx.model.setDefaultRate(u(1_000_000_000_000_000)), "mt 0.1%").await;
    fx.swap(Side::Base, units(10_000, 18)).await; // a BELOW_ONE state, so nothing is trivially at R = ONE
    let borrower =
        deploy(&fx.p, PmmFlashBorrower::deploy_builder(fx.p.clone()), "deploy borrower").await;
    let bw = PmmFlashBorrower::new(borrower, fx.p.clone());
    let pool = *fx.pool.address();
    let mode = |m: u64| Bytes::from(U256::from(m).abi_encode());

    let snapshot = || async {
        let s = fx.state().await;
        (
            (s.B, s.Q, s.B0, s.Q0, s.R),
            fx.stored_targets().await,
            fx.bal(&fx.base, pool).await,
            fx.bal(&fx.quote, pool).await,
            fx.bal(&fx.quote, fx.maintainer).await,
            fx.bal(&fx.base, fx.maintainer).await,
            fx.mid().await,
        )
    };
    let before = snapshot().await;

    let (lend_b, lend_q) = (units(50_000, 18), units(20_000, 18));
    send(&fx.p, fx.pool.flashLoan(lend_b, lend_q, borrower, mode(0)), "flashLoan repay").await;
    assert_eq!(snapshot().await, before, "repaying the same tokens changes nothing");
    assert_eq!(bw.calls().call().await.expect("calls"), u(1));
    assert_eq!(bw.lastPool().call().await.expect("lastPool"), pool);
    assert_eq!(
        bw.lastSender().call().await.expect("lastSender"),
        fx.owner(),
        "sender = msg.sender"
    );
    assert_eq!(bw.lastBase().call().await.expect("lastBase"), lend_b);
    assert_eq!(bw.lastQuote().call().await.expect("lastQuote"), lend_q);
    assert_eq!(bw.lastBaseHeld().call().await.expect("held"), lend_b, "lent before the callback");
    assert_eq!(fx.bal(&fx.base, borrower).await, U256::ZERO);

    let call = fx.pool.flashLoan(lend_b, U256::ZERO, borrower, mode(1));
    assert_reverts(&fx.p, call, fx.owner(), "FLASH_LOAN_FAILED", "keep the loan").await;
    let call = fx.pool.flashLoan(lend_b, U256::ZERO, borrower, mode(2));
    assert_reverts(&fx.p, call, fx.owner(), "REENTRANT", "re-enter sellBase").await;

    send(&fx.p, fx.pool.flashLoan(U256::ZERO, U256::ZERO, borrower, Bytes::new()), "empty data")
        .await;
    assert_eq!(bw.calls().call().await.expect("calls"), u(1), "no callback without data");
    assert_eq!(snapshot().await, before, "reverted and empty loans change nothing");
}

// ------------------------------------------------------------------------------------------------
// TWAP (DOMAIN §1.9)
// ------------------------------------------------------------------------------------------------

/// With isOpenTWAP every swap adds (mid after the swap) × Δt, Δt steered with
/// evm_setNextBlockTimestamp (read back from the mined block, since other tests share the chain);
/// with it closed the accumulator and timestamp stay 0.
#[tokio::test]
async fn twap_accumulates_post_trade_mid() {
    let (open, closed) = tokio::join!(
        build(Spec::domain(K_10PCT, 0).twap(true)),
        build(Spec::domain(K_10PCT, 0).twap(false))
    );
    let trades = [(Side::Base, 10_000u64, 5u64), (Side::Quote, 30_000, 9)];

    let (mut cum, mut last) = open.twap().await;
    assert!(last > 0, "open TWAP records the timestamp");
    for (side, amount, gap) in trades {
        let mid_before = open.mid().await;
        open.pay_in(side, units(amount, 18)).await;
        let head = open.p.get_block_number().await.expect("head");
        let now = open
            .p
            .get_block_by_number(head.into())
            .await
            .expect("block")
            .expect("head")
            .header
            .timestamp;
        open.p.anvil_set_next_block_timestamp(now + gap).await.expect("evm_setNextBlockTimestamp");
        let t = block_time(&open.p, &open.swap_call(side).await).await;
        assert!(t - last >= gap, "Δt {} ≥ {gap}", t - last);
        let mid_after = open.mid().await;
        assert_ne!(mid_after, mid_before, "the trade moved the mid");
        let (c, l) = open.twap().await;
        assert_eq!(l, t, "timestamp last = block time");
        assert_eq!(c - cum, mid_after * u(t - last), "credited with the post-trade mid");
        (cum, last) = (c, l);
    }

    for (side, amount, _) in trades {
        closed.swap(side, units(amount, 18)).await;
    }
    assert_eq!(closed.twap().await, (U256::ZERO, 0), "closed TWAP stays 0");
}

// ------------------------------------------------------------------------------------------------
// uint112 reserves (DOMAIN §1.7)
// ------------------------------------------------------------------------------------------------

/// Minting a balance of exactly 2^112 − 1 into the pool syncs fine; one more raw unit makes sync
/// revert "OVERFLOW" and the reserve stays at 2^112 − 1. Base and quote side each.
#[tokio::test]
async fn reserves_above_uint112_revert_overflow() {
    join_all([Side::Base, Side::Quote].map(|side| async move {
        let fx = build(Spec::domain(K_10PCT, 0)).await;
        let max = (U256::from(1u64) << 112) - u(1);
        let pool = *fx.pool.address();
        let have = fx.bal(fx.token(side), pool).await;
        fx.pay_in(side, max - have).await;
        send(&fx.p, fx.pool.sync(), "sync at 2^112-1").await;
        let reserve = |r: (U256, U256)| match side {
            Side::Base => r.0,
            Side::Quote => r.1,
        };
        assert_eq!(reserve(fx.reserves().await), max, "{side:?}: reserve at the cap");
        fx.pay_in(side, u(1)).await;
        assert_reverts(&fx.p, fx.pool.sync(), fx.owner(), "OVERFLOW", "sync above 2^112-1").await;
        assert_eq!(reserve(fx.reserves().await), max, "{side:?}: reserve unchanged");
    }))
    .await;
}
