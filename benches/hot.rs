//! The hot path's functions, each against its baseline in the same run where one exists:
//!
//! - quotes: PMM sell base / sell quote, V2, reserve vault;
//! - sizing: the constant-price closed form against the bracketed search on the same depeg
//!   cycle (PMM against the vault, flash-funded at 5 bps), and the search on two PMM copies;
//! - route screening: the engine's per-route sizing ([`size_route`]) over 100 routes of a market
//!   of 100 synthetic copies of a dumped PMM pool plus the vault;
//! - state apply: `ForkCache::apply` of a head's update (40 slots, 4 accounts) on a warm cache;
//! - signing: an EIP-1559 executor transaction on libsecp256k1 against k256 (alloy's
//!   `PrivateKeySigner`), ratio printed.
//!
//! The revm simulation of a route has its own bench (`benches/sim.rs`). Every result is asserted
//! after its bench ran (the last value the timed loop produced), so a fast wrong change cannot
//! pass.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use alloy::{
    consensus::{SignableTransaction, TxEip1559, TxEnvelope},
    eips::eip2718::Encodable2718,
    network::TxSignerSync,
    primitives::{Address, B256, Bytes, TxKind, U256},
    signers::local::PrivateKeySigner,
};
use cantilever::{
    config::{FlashLenderKind, VenueKind},
    engine::{
        Market, TokenMeta, bench_screen,
        market::{LenderMeta, VenueMeta},
    },
    exec::{SigningBackend, TxParams, TxSigner},
    routes::{
        Route, RouteHop, SizedTrade, SizingLimits, SizingMethod, route_output, size,
        sizing::size_by_search,
    },
    state::{AccountRead, BlockRef, CacheLimits, ForkCache, StateUpdate},
    venues::{
        Pool, QuoteCtx, Side, Venue,
        pmm::{PmmKind, PmmPool, RState},
        v2::V2Pair,
        vault::ReserveVault,
    },
};
use criterion::{Criterion, criterion_group, criterion_main};

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

/// A cUSDT/USDT-like PMM (18/18, k = 0.05, 1 bp), `dump` base sold into it.
fn dumped_pmm(base: Address, quote: Address, dump: u64) -> PmmPool {
    let mut p = dsp(base, quote, pow10(18), pow10(16) * U256::from(5u8), pow10(24), pow10(14));
    if dump > 0 {
        p.apply(Side::SellBase, U256::from(dump) * pow10(18), &CTX).unwrap();
    }
    p
}

fn vault(compliant: Address, official: Address) -> ReserveVault {
    ReserveVault {
        compliant,
        official,
        official_reserve: pow10(27),
        compliant_supply: pow10(27),
        fee_bps: 2,
        paused: false,
    }
}

/// Runs `f` in a criterion bench and returns the value of its last call.
fn bench<T>(c: &mut Criterion, name: &str, mut f: impl FnMut() -> T) -> T {
    let mut last = None;
    c.bench_function(name, |b| b.iter(|| last = Some(black_box(f()))));
    last.expect("the bench ran")
}

/// Mean wall time of `f` over `n` calls (for the printed ratios; criterion has the full story).
fn mean(n: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n
}

fn quotes(c: &mut Criterion) {
    let (b, q) = (tok(1), tok(2));
    let pmm = Pool::Pmm(dumped_pmm(b, q, 300_000));
    let v2 = Pool::V2(V2Pair::new(b, q, 5_000_000 * 10u128.pow(18), 5_000_000 * 10u128.pow(18)));
    let vault = Pool::Vault(vault(b, q));
    let x = U256::from(10_000u64) * pow10(18);
    for (name, pool, side) in [
        ("quote/pmm_sell_base", &pmm, Side::SellBase),
        ("quote/pmm_sell_quote", &pmm, Side::SellQuote),
        ("quote/v2", &v2, Side::SellBase),
        ("quote/vault_redeem", &vault, Side::SellBase),
    ] {
        let got = bench(c, name, || pool.quote(side, black_box(x), &CTX).unwrap());
        // Exact against a fresh call, and priced as the pool is: base is cheap on the dumped
        // PMM (under 1 quote per base, over 1 base per quote), ~par on the pair, 1:1 less 2 bps
        // at the vault.
        assert_eq!(got, pool.quote(side, x, &CTX).unwrap(), "{name}");
        let out = got.amount_out;
        match name {
            "quote/pmm_sell_base" => assert!(out < x && out > x * U256::from(9u8) / pow10(1)),
            "quote/pmm_sell_quote" => assert!(out > x && out < x * U256::from(11u8) / pow10(1)),
            "quote/v2" => assert!(out < x && out > x * U256::from(99u8) / pow10(2)),
            _ => assert_eq!(out, x * U256::from(9_998u32) / U256::from(10_000u32)),
        }
    }
}

fn sizing(c: &mut Criterion) {
    let (b, q) = (tok(1), tok(2));
    // Depeg: base dumped on the PMM, redeemed 1:1 at the vault; flash-funded at 5 bps.
    let pools = vec![Pool::Pmm(dumped_pmm(b, q, 300_000)), Pool::Vault(vault(b, q))];
    let route =
        Route::new(&pools, &[RouteHop::new(0, Side::SellQuote), RouteHop::new(1, Side::SellBase)])
            .unwrap();
    let limits = SizingLimits { input_fee_bps: 5, precision_bits: 16, ..SizingLimits::default() };
    let closed = bench(c, "sizing/pmm_vs_vault/closed_form", || {
        size(black_box(&pools), &route, &limits, &CTX).unwrap()
    });
    let searched = bench(c, "sizing/pmm_vs_vault/search", || {
        size_by_search(black_box(&pools), &route, &limits, &CTX).unwrap()
    });
    check(&pools, &route, &closed, SizingMethod::PmmVsPrice, limits.input_fee_bps);
    check(&pools, &route, &searched, SizingMethod::Search, limits.input_fee_bps);
    let tol = searched.profit / U256::from(1_000_000_000u64) + U256::from(2u8);
    assert!(closed.profit + tol >= searched.profit, "{closed:?} vs {searched:?}");
    let (tc, ts) = (
        mean(2_000, || {
            let _ = black_box(size(&pools, &route, &limits, &CTX));
        }),
        mean(2_000, || {
            let _ = black_box(size_by_search(&pools, &route, &limits, &CTX));
        }),
    );
    eprintln!(
        "sizing pmm_vs_vault: closed form {tc:?} ({} quotes), search {ts:?} ({} quotes): {:.1}x",
        closed.evaluations,
        searched.evaluations,
        ts.as_secs_f64() / tc.as_secs_f64()
    );

    // Two PMM copies at different dumps (no closed form): the search, 24 vs 16 bits.
    let pools = vec![Pool::Pmm(dumped_pmm(b, q, 50_000)), Pool::Pmm(dumped_pmm(b, q, 400_000))];
    let route =
        Route::new(&pools, &[RouteHop::new(1, Side::SellQuote), RouteHop::new(0, Side::SellBase)])
            .unwrap();
    for (name, bits) in
        [("sizing/pmm_pmm/search_24_bits", 24), ("sizing/pmm_pmm/search_16_bits", 16)]
    {
        let limits = SizingLimits { precision_bits: bits, ..SizingLimits::default() };
        let sized = bench(c, name, || size(black_box(&pools), &route, &limits, &CTX).unwrap());
        check(&pools, &route, &sized, SizingMethod::Search, limits.input_fee_bps);
        eprintln!("{name}: profit {} in {} quotes", sized.profit, sized.evaluations);
    }
}

/// The sized trade is what the route pays: its output at its input net of the input fee
/// (`fee_bps` of the input, rounded up), and that less the input as profit.
fn check(pools: &[Pool], route: &Route, sized: &SizedTrade, method: SizingMethod, fee_bps: u32) {
    assert_eq!(sized.method, method, "{sized:?}");
    assert!(sized.is_profitable(), "{sized:?}");
    let fee = (sized.amount_in * U256::from(fee_bps)).div_ceil(U256::from(10_000u32));
    let out = route_output(pools, route, sized.amount_in, &CTX).unwrap();
    assert_eq!(out - fee, sized.amount_out, "{sized:?}");
    assert_eq!(sized.amount_out - sized.amount_in, sized.profit, "{sized:?}");
}

/// A market of the real pair (a dumped PMM and the vault) and `copies` synthetic PMM copies at
/// different dumps, one ERC-3156 lender (5 bps) of both tokens; routes enumerated.
fn market(copies: usize) -> Market {
    let (b, q) = (tok(1), tok(2));
    let token = |symbol: &str, address| TokenMeta {
        symbol: symbol.into(),
        address,
        decimals: 18,
        usd_price: 1.0,
    };
    let mut m = Market::default();
    m.chain_id = 138;
    m.tokens = vec![token("cUSDT", b), token("USDT", q)];
    m.lenders = vec![LenderMeta {
        kind: FlashLenderKind::Erc3156,
        address: tok(0xfe),
        tokens: vec![b, q],
        fee_bps: 5,
    }];
    let mut add = |name: String, kind, pool| {
        let address = Address::from_word(alloy::primitives::keccak256(name.as_bytes()));
        m.venues.push(VenueMeta { name, address, kind, base: b, quote: q });
        m.pools.push(pool);
        m.decoded.push(true);
    };
    add("cUSDT/USDT".into(), VenueKind::DodoDsp, Pool::Pmm(dumped_pmm(b, q, 300_000)));
    add("vault".into(), VenueKind::Vault, Pool::Vault(vault(b, q)));
    for i in 0..copies {
        let dump = (i as u64 * 7_919) % 400_000;
        add(format!("cUSDT/USDT#{i}"), VenueKind::DodoDsp, Pool::Pmm(dumped_pmm(b, q, dump)));
    }
    m.enumerate_routes(None);
    m
}

fn screening(c: &mut Criterion) {
    let m = market(100);
    assert!(m.routes.len() >= 100, "{} routes", m.routes.len());
    let routes: Vec<usize> = (0..100).collect();
    let (min_in, max_in) = (pow10(16), U256::from(1_000_000u64) * pow10(18));
    let picks = bench(c, "screen/size_routes_100", || {
        bench_screen(black_box(&m), &routes, min_in, max_in, &CTX)
    });
    assert!(!picks.is_empty() && picks.len() < routes.len(), "{} picks", picks.len());
    for (r, sized) in &picks {
        let route = &m.routes[*r].route;
        let out = route_output(&m.pools, route, sized.amount_in, &CTX).unwrap();
        let fee = (sized.amount_in * U256::from(5u8)).div_ceil(U256::from(10_000u32));
        assert_eq!(out - fee, sized.amount_out, "the output is net of the lender's fee");
        // Net of the lender's 5 bps: the sizer kept the fee out of the profit it maximised.
        assert_eq!(sized.amount_out - sized.amount_in, sized.profit);
        assert!(!sized.profit.is_zero());
    }
    eprintln!("screen: {} of {} routes pay", picks.len(), routes.len());
    // Route enumeration stays linear in the pools (the per-pool cap).
    let t = Instant::now();
    let big = market(10_000);
    eprintln!(
        "enumerate: {} routes over {} pools in {:?}",
        big.routes.len(),
        big.pools.len(),
        t.elapsed()
    );
    assert!(big.routes.len() < 40 * big.pools.len());
    assert!(
        big.by_pool.iter().all(|r| r.len() <= cantilever::engine::market::MAX_ROUTES_PER_POOL + 3)
    );
}

fn block(n: u64) -> BlockRef {
    let hash = |n: u64| B256::from(U256::from(n + 1_000));
    BlockRef {
        number: n,
        hash: hash(n),
        parent_hash: hash(n.wrapping_sub(1)),
        timestamp: 1_700_000_000 + n,
        ..BlockRef::default()
    }
}

fn state_apply(c: &mut Criterion) {
    let addr = |i: u64| Address::from_word(B256::from(U256::from(i + 1)));
    let mut cache = ForkCache::new(CacheLimits::default());
    let base = StateUpdate {
        head: block(1),
        full: true,
        accounts: (0..200)
            .map(|i| AccountRead {
                address: addr(i),
                balance: U256::from(i),
                nonce: i,
                code: Some(Bytes::new()),
            })
            .collect(),
        slots: (0..4_000u64).map(|i| (addr(i % 200), U256::from(i), U256::from(i))).collect(),
        blocks: 1,
        ..StateUpdate::default()
    };
    cache.apply(&base).unwrap();
    let mut n = 1u64;
    let mut update = StateUpdate {
        accounts: (0..4)
            .map(|i| AccountRead { address: addr(i), ..base.accounts[0].clone() })
            .collect(),
        slots: (0..40u64).map(|i| (addr(i % 10), U256::from(i * 7), U256::ZERO)).collect(),
        blocks: 1,
        touched: (0..10).map(addr).collect(),
        ..StateUpdate::default()
    };
    update.touched.sort();
    bench(c, "state/apply_head_40_slots", || {
        n += 1;
        update.head = block(n);
        for s in &mut update.slots {
            s.2 = U256::from(n);
        }
        cache.apply(&update).unwrap()
    });
    assert_eq!(cache.head().map(|h| h.number), Some(n));
    assert_eq!(cache.storage(&addr(0), &U256::ZERO), Some(U256::from(n)));
    assert_eq!(cache.storage(&addr(150), &U256::from(150u64)), Some(U256::from(150u64)));
}

fn signing(c: &mut Criterion) {
    let signer = TxSigner::new(PrivateKeySigner::random());
    let params = TxParams {
        chain_id: 138,
        nonce: 42,
        to: tok(0xee),
        // An executor call: a route with two hops is ~600 bytes of calldata.
        input: Bytes::from(vec![0x5au8; 612]),
        gas_limit: 420_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        value: U256::ZERO,
    };
    let fast = bench(c, "sign/eip1559/libsecp256k1", || {
        signer.sign_eip1559_with(black_box(&params), SigningBackend::Libsecp256k1).unwrap()
    });
    let reference = bench(c, "sign/eip1559/k256", || {
        signer.sign_eip1559_with(black_box(&params), SigningBackend::K256).unwrap()
    });
    assert_eq!(fast, reference);
    // Byte-identical to what alloy builds on its own.
    let mut tx = TxEip1559 {
        chain_id: params.chain_id,
        nonce: params.nonce,
        gas_limit: params.gas_limit,
        max_fee_per_gas: params.max_fee_per_gas,
        max_priority_fee_per_gas: params.max_priority_fee_per_gas,
        to: TxKind::Call(params.to),
        value: params.value,
        access_list: Default::default(),
        input: params.input.clone(),
    };
    let sig = signer.as_key().sign_transaction_sync(&mut tx).unwrap();
    let envelope = TxEnvelope::from(tx.into_signed(sig));
    assert_eq!(fast.raw.as_ref(), envelope.encoded_2718().as_slice());
    let tf = mean(2_000, || {
        let _ = black_box(signer.sign_eip1559(&params));
    });
    let tk = mean(2_000, || {
        let _ = black_box(signer.sign_eip1559_with(&params, SigningBackend::K256));
    });
    eprintln!(
        "sign: libsecp256k1 {tf:?}, k256 {tk:?}: libsecp256k1 is {:.2}x faster",
        tk.as_secs_f64() / tf.as_secs_f64()
    );
}

criterion_group!(benches, quotes, sizing, screening, state_apply, signing);
criterion_main!(benches);
