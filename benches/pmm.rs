//! PMM quote benches: the native math (`cantilever::venues::pmm`) in each R state and direction,
//! both as `Venue::quote` (target regression included) and through a prepared `PmmQuoter`
//! (regression done once per state), and the same quote executed in revm (`querySellBase` /
//! `querySellQuote` of the fixture contract on the same state) as the baseline, in the same run.
//! Every bench asserts after measuring that native and revm agree to the wei, so a fast wrong
//! change cannot pass. States: a 6/6 pool of 1,000,000 each side at i = 1, k = 0.1, lp 0.1%,
//! mt 0.05%, at R = ONE, after selling 50,000 base (BELOW_ONE), after selling 50,000 quote
//! (ABOVE_ONE), and the same pool as a DVM; the quoted trade is 10,000.
//!
//! `cargo bench --bench pmm`. Target: native quote ≤ 300 ns.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, time::Duration};

use alloy::{
    primitives::{Address, U256},
    sol_types::SolConstructor,
};
use cantilever::{
    contracts::{FeeRateModel, PmmPool as PmmPoolContract, TestToken},
    evm::LocalEvm,
    venues::{
        QuoteCtx, Side, Venue,
        pmm::{PmmKind, PmmPool, RState, dvm_fixture::DvmPool},
    },
};
use criterion::{Criterion, criterion_group, criterion_main};
use revm::DatabaseRef;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TRADER: Address = Address::new([0x77; 20]);
const MAINTAINER: Address = Address::new([0x79; 20]);

fn pow10(n: u64) -> U256 {
    U256::from(10u64).pow(U256::from(n))
}

/// A chain with a funded 6/6 pool (1,000,000 each side, i = 1, k = 0.1, lp 0.1%, mt 0.05%).
struct Setup {
    evm: LocalEvm,
    base: Address,
    quote: Address,
    pool: Address,
    kind: PmmKind,
}

fn setup(kind: PmmKind) -> Setup {
    let mut evm = LocalEvm::default();
    let owner = evm.sender;
    let token = |evm: &mut LocalEvm, name: &str| {
        let args =
            TestToken::constructorCall { name_: name.into(), symbol_: name.into(), decimals_: 6 }
                .abi_encode();
        evm.deploy(&TestToken::BYTECODE, &args).unwrap()
    };
    let base = token(&mut evm, "cUSDT");
    let quote = token(&mut evm, "USDT");
    let model = evm
        .deploy(
            &FeeRateModel::BYTECODE,
            &FeeRateModel::constructorCall { initialDefaultRate: pow10(15) / U256::from(2u64) }
                .abi_encode(),
        )
        .unwrap();
    let (i, k, lp) = (pow10(18), pow10(17), pow10(15));
    let pool = match kind {
        PmmKind::Dvm => evm.deploy(
            &DvmPool::BYTECODE,
            &DvmPool::constructorCall {
                maintainer: MAINTAINER,
                baseTokenAddress: base,
                quoteTokenAddress: quote,
                lpFeeRate: lp,
                mtFeeRateModel: model,
                i,
                k,
                isOpenTWAP: false,
            }
            .abi_encode(),
        ),
        PmmKind::Dsp | PmmKind::Dpp => evm.deploy(
            &PmmPoolContract::BYTECODE,
            &PmmPoolContract::constructorCall {
                maintainer: MAINTAINER,
                baseTokenAddress: base,
                quoteTokenAddress: quote,
                lpFeeRate: lp,
                mtFeeRateModel: model,
                i,
                k,
                isOpenTWAP: false,
            }
            .abi_encode(),
        ),
    }
    .unwrap();
    let liquidity = pow10(12);
    for t in [base, quote] {
        evm.send(owner, t, &TestToken::mintCall { to: pool, amount: liquidity }).unwrap();
    }
    evm.send(owner, pool, &PmmPoolContract::buySharesCall { to: owner }).unwrap();
    Setup { evm, base, quote, pool, kind }
}

impl Setup {
    /// Sells `amount` of `token` into the pool (moves R for DSP).
    fn trade(&mut self, token: Address, amount: U256) {
        let owner = self.evm.sender;
        self.evm.send(owner, token, &TestToken::mintCall { to: self.pool, amount }).unwrap();
        if token == self.base {
            self.evm.send(owner, self.pool, &PmmPoolContract::sellBaseCall { to: owner }).unwrap();
        } else {
            self.evm.send(owner, self.pool, &PmmPoolContract::sellQuoteCall { to: owner }).unwrap();
        }
    }

    /// The native pool, decoded from the fixture's storage.
    fn native(&self) -> PmmPool {
        let rate = pow10(15) / U256::from(2u64);
        PmmPool::from_storage(self.kind, rate, |n| {
            self.evm.db().storage_ref(self.pool, U256::from(n)).unwrap()
        })
        .unwrap()
    }

    /// The contract's quote (its view, executed in revm).
    fn revm_quote(&self, side: Side, amount: U256) -> U256 {
        let (pool, evm) = (self.pool, &self.evm);
        match (self.kind, side) {
            (PmmKind::Dvm, Side::SellBase) => {
                let call = DvmPool::querySellBaseCall { trader: TRADER, payBaseAmount: amount };
                evm.view(TRADER, pool, &call).unwrap().receiveQuoteAmount
            }
            (PmmKind::Dvm, Side::SellQuote) => {
                let call = DvmPool::querySellQuoteCall { trader: TRADER, payQuoteAmount: amount };
                evm.view(TRADER, pool, &call).unwrap().receiveBaseAmount
            }
            (_, Side::SellBase) => {
                let call =
                    PmmPoolContract::querySellBaseCall { trader: TRADER, payBaseAmount: amount };
                evm.view(TRADER, pool, &call).unwrap().receiveQuoteAmount
            }
            (_, Side::SellQuote) => {
                let call =
                    PmmPoolContract::querySellQuoteCall { trader: TRADER, payQuoteAmount: amount };
                evm.view(TRADER, pool, &call).unwrap().receiveBaseAmount
            }
        }
    }
}

fn quotes(c: &mut Criterion) {
    let amount = U256::from(10_000u64) * pow10(6);
    let ctx = QuoteCtx { timestamp: 1_750_000_000 };

    let one = setup(PmmKind::Dsp);
    let mut below = setup(PmmKind::Dsp);
    below.trade(below.base, U256::from(50_000u64) * pow10(6));
    let mut above = setup(PmmKind::Dsp);
    above.trade(above.quote, U256::from(50_000u64) * pow10(6));
    let dvm = setup(PmmKind::Dvm);
    assert_eq!(one.native().r, RState::One);
    assert_eq!(below.native().r, RState::BelowOne);
    assert_eq!(above.native().r, RState::AboveOne);

    let mut group = c.benchmark_group("pmm_quote");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for (name, s) in
        [("dsp_one", &one), ("dsp_below_one", &below), ("dsp_above_one", &above), ("dvm", &dvm)]
    {
        let pool = s.native();
        for (side, side_name) in [(Side::SellBase, "sell_base"), (Side::SellQuote, "sell_quote")] {
            let native =
                || black_box(&pool).quote(black_box(side), black_box(amount), &ctx).unwrap();
            group.bench_function(format!("native/{name}/{side_name}"), |b| b.iter(native));
            let quoter = pool.quoter();
            let prepared =
                || black_box(&quoter).quote(black_box(side), black_box(amount), &ctx).unwrap();
            group.bench_function(format!("native_quoter/{name}/{side_name}"), |b| b.iter(prepared));
            assert_eq!(prepared(), native());
            let reference = || s.revm_quote(black_box(side), black_box(amount));
            group.bench_function(format!("revm/{name}/{side_name}"), |b| b.iter(reference));
            let (n, r) = (native().amount_out, reference());
            assert!(!n.is_zero());
            assert_eq!(n, r, "{name} {side_name}: native {n} != revm {r}");
        }
    }
    group.finish();

    // The state after a trade and the closed-form size, for scale.
    let mut group = c.benchmark_group("pmm_other");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let pool = below.native();
    group.bench_function("native/apply/dsp_below_one/sell_quote", |b| {
        b.iter(|| {
            let mut p = pool.clone();
            black_box(p.apply(Side::SellQuote, black_box(amount), &ctx).unwrap())
        })
    });
    group.bench_function("native/mid_price/dsp_below_one", |b| {
        b.iter(|| black_box(&pool).mid_price().unwrap())
    });
    group.bench_function("native/optimal_input_vs_price/dsp_below_one", |b| {
        b.iter(|| black_box(&pool).optimal_input_vs_price(black_box(pow10(18))).unwrap())
    });
    group.finish();
    let mut p = pool.clone();
    p.apply(Side::SellQuote, amount, &ctx).unwrap();
    assert_eq!(p.quote_reserve, pool.quote_reserve + amount);
    let (side, size) = pool.optimal_input_vs_price(pow10(18)).unwrap();
    assert_eq!(side, Side::SellQuote);
    assert!(size > U256::ZERO && size < U256::from(50_000u64) * pow10(6));
}

criterion_group!(benches, quotes);
criterion_main!(benches);
