//! Route sizing benches: the closed form for two V2 pairs (DOMAIN §2.1), the bracketed search on a
//! PMM + V2 cycle and on a three-hop mixed cycle (6- and 18-decimal tokens), the PMM closed form
//! against a flat leg (DOMAIN §1.11), and the rejection of an unprofitable cycle by the mid-price
//! bound. Pools and routes are built once; each result is asserted after its bench (profitable,
//! where expected, and equal to the route's own output at the chosen size) so a fast wrong change
//! cannot pass.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use alloy::primitives::{Address, U256};
use cantilever::{
    routes::{Route, RouteHop, SizedTrade, SizingLimits, SizingMethod, route_output, size},
    venues::{
        Pool, QuoteCtx, Side, Venue,
        pmm::{PmmKind, PmmPool, RState},
        v2::V2Pair,
    },
};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CTX: QuoteCtx = QuoteCtx { timestamp: 1_700_000_000 };

fn pow10(n: u32) -> U256 {
    U256::from(10u64).pow(U256::from(n))
}

fn tok(n: u8) -> Address {
    Address::with_last_byte(n)
}

/// A DSP at R = ONE with B = B0 = `b` and Q = Q0 = `b·i/1e18`.
fn dsp(base: Address, quote: Address, i: U256, k: U256, b: U256, lp_fee: U256) -> PmmPool {
    let q = b * i / pow10(18);
    PmmPool {
        kind: PmmKind::Dsp,
        base,
        quote,
        i,
        k,
        base_reserve: b,
        quote_reserve: q,
        base_target: b,
        quote_target: q,
        r: RState::One,
        lp_fee_rate: lp_fee,
        ..PmmPool::default()
    }
}

struct Case {
    name: &'static str,
    pools: Vec<Pool>,
    route: Route,
    method: SizingMethod,
    profitable: bool,
}

fn cases() -> Vec<Case> {
    let (usdc, x, usdt, weth) = (tok(1), tok(2), tok(3), tok(4));
    let e18 = 10u128.pow(18);
    let hop = RouteHop::new;
    let mut out = Vec::new();

    // DOMAIN §2.1: A = (1,000,000 USDC; 1,010,000 X), B = (1,000,000 USDC; 990,000 X).
    let pools = vec![
        Pool::V2(V2Pair::new(usdc, x, 10u128.pow(12), 1_010_000 * e18)),
        Pool::V2(V2Pair::new(usdc, x, 10u128.pow(12), 990_000 * e18)),
    ];
    let route = Route::new(&pools, &[hop(0, Side::SellBase), hop(1, Side::SellQuote)]).unwrap();
    out.push(Case {
        name: "sizing/v2_v2/closed_form",
        pools,
        route,
        method: SizingMethod::TwoV2,
        profitable: true,
    });

    // A 6/6 DSP (k = 0.05, 3 bps) after a 300k dump (mid ≈ 0.97), against a V2 pair at par.
    let mut pmm = dsp(
        usdt,
        usdc,
        pow10(18),
        pow10(16) * U256::from(5u8),
        pow10(12),
        pow10(14) * U256::from(3u8),
    );
    pmm.apply(Side::SellBase, U256::from(300_000u64) * pow10(6), &CTX).unwrap();
    let pools = vec![
        Pool::Pmm(pmm.clone()),
        Pool::V2(V2Pair::new(usdt, usdc, 5_000_000 * 10u128.pow(6), 5_000_000 * 10u128.pow(6))),
    ];
    // Buy cheap USDT from the PMM with USDC, sell it on the pair.
    let route = Route::new(&pools, &[hop(0, Side::SellQuote), hop(1, Side::SellBase)]).unwrap();
    out.push(Case {
        name: "sizing/pmm_v2/search",
        pools,
        route,
        method: SizingMethod::Search,
        profitable: true,
    });

    // Three hops through mixed decimals: USDC →(PMM, 6/6) USDT →(V2, 6/18) WETH-ish →(V2, 18/6) USDC.
    let pools = vec![
        Pool::Pmm(pmm.clone()),
        Pool::V2(V2Pair::new(usdt, weth, 2_000_000 * 10u128.pow(6), 2_000_000 * e18)),
        Pool::V2(V2Pair::new(weth, usdc, 3_000_000 * e18, 3_000_000 * 10u128.pow(6))),
    ];
    let route = Route::new(
        &pools,
        &[hop(0, Side::SellQuote), hop(1, Side::SellBase), hop(2, Side::SellBase)],
    )
    .unwrap();
    out.push(Case {
        name: "sizing/pmm_v2_v2_mixed_decimals/search",
        pools,
        route,
        method: SizingMethod::Search,
        profitable: true,
    });

    // DOMAIN §1.11 example 1 shape: the dumped PMM against a flat (k = 0) leg at i = 1.
    let flat = dsp(usdt, usdc, pow10(18), U256::ZERO, pow10(18), U256::ZERO);
    let pools = vec![Pool::Pmm(pmm), Pool::Pmm(flat)];
    let route = Route::new(&pools, &[hop(0, Side::SellQuote), hop(1, Side::SellBase)]).unwrap();
    out.push(Case {
        name: "sizing/pmm_vs_flat/closed_form",
        pools,
        route,
        method: SizingMethod::PmmVsPrice,
        profitable: true,
    });

    // An unprofitable cycle (the PMM buys X 1% dearer than the pair sells it): no quote needed.
    let pools = vec![
        Pool::V2(V2Pair::new(usdc, x, 10u128.pow(12), 1_000_000 * e18)),
        Pool::Pmm(dsp(usdc, x, pow10(28) * U256::from(101u8), pow10(16), pow10(12), U256::ZERO)),
    ];
    let route = Route::new(&pools, &[hop(0, Side::SellBase), hop(1, Side::SellQuote)]).unwrap();
    out.push(Case {
        name: "sizing/unprofitable/mid_price_bound",
        pools,
        route,
        method: SizingMethod::MidPriceBound,
        profitable: false,
    });
    out
}

fn check(case: &Case, sized: &SizedTrade) {
    assert_eq!(sized.method, case.method, "{}: {sized:?}", case.name);
    assert_eq!(sized.is_profitable(), case.profitable, "{}: {sized:?}", case.name);
    if sized.is_profitable() {
        let out = route_output(&case.pools, &case.route, sized.amount_in, &CTX).unwrap();
        assert_eq!(out, sized.amount_out, "{}", case.name);
        assert_eq!(sized.amount_out - sized.amount_in, sized.profit, "{}", case.name);
    }
}

fn sizing(c: &mut Criterion) {
    let limits = SizingLimits::default();
    for case in cases() {
        let run = || size(black_box(&case.pools), black_box(&case.route), &limits, &CTX).unwrap();
        c.bench_function(case.name, |b| b.iter(|| black_box(run())));
        let sized = run();
        check(&case, &sized);
        eprintln!(
            "{}: in {} out {} profit {} ({} route evaluations)",
            case.name, sized.amount_in, sized.amount_out, sized.profit, sized.evaluations
        );
    }
    // One route evaluation of the three-hop route, for scale.
    let case = &cases()[2];
    let x = U256::from(10_000u64) * pow10(6);
    c.bench_function("sizing/route_output/pmm_v2_v2", |b| {
        b.iter(|| black_box(route_output(&case.pools, &case.route, black_box(x), &CTX).unwrap()))
    });
    assert!(route_output(&case.pools, &case.route, x, &CTX).unwrap() > x);
    let _ = case.pools[0].mid_price().unwrap();
}

criterion_group!(benches, sizing);
criterion_main!(benches);
