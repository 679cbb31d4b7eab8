//! Route and sizing tests on real venue math: route checks, chaining and revisits, the worked
//! examples of DOMAIN §2.1 and §1.11, sizing against a brute-force grid on random mixed routes, and
//! no panic on absurd states and limits.

use alloy::primitives::{Address, I256, U256};
use proptest::prelude::*;

use super::{
    sizing::{SizedTrade, SizingLimits, SizingMethod, size, size_by_search},
    *,
};
use crate::venues::{
    Pool, QuoteCtx, Side, Venue, VenueError,
    bridge::{BridgeLeg, LegEnd},
    pmm::{PmmKind, PmmPool, RState},
    v2::V2Pair,
    vault::ReserveVault,
};

// ------------------------------------------------------------------------------------------------
// Helpers

const CTX: QuoteCtx = QuoteCtx { timestamp: 1_700_000_000 };

fn pow10(n: u32) -> U256 {
    U256::from(10u64).pow(U256::from(n))
}

/// `x·10^n` for a decimal literal `x` with up to 18 fractional digits ("1.5", "3490.82").
fn units(x: &str, n: u32) -> U256 {
    let (int, frac) = x.split_once('.').unwrap_or((x, ""));
    let int: U256 = int.parse().unwrap();
    let frac_digits = frac.len() as u32;
    let frac: U256 = if frac.is_empty() { U256::ZERO } else { frac.parse().unwrap() };
    int * pow10(n) + frac * pow10(n) / pow10(frac_digits)
}

fn e18(x: &str) -> U256 {
    units(x, 18)
}

fn tok(n: u8) -> Address {
    Address::with_last_byte(n)
}

fn hop(pool: usize, side: Side) -> RouteHop {
    RouteHop::new(pool, side)
}

/// A DSP at R = ONE: B = B0 = `b`, Q = Q0 = `q`.
fn dsp(base: Address, quote: Address, i: U256, k: U256, b: U256, q: U256) -> PmmPool {
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
        ..PmmPool::default()
    }
}

/// A DVM holding `b` base and `q` quote.
fn dvm(base: Address, quote: Address, i: U256, k: U256, b: U256, q: U256) -> PmmPool {
    PmmPool {
        kind: PmmKind::Dvm,
        r: RState::AboveOne,
        base_target: U256::ZERO,
        quote_target: U256::ZERO,
        ..dsp(base, quote, i, k, b, q)
    }
}

/// `|a − b| ≤ tol`.
fn close(a: U256, b: U256, tol: U256) -> bool {
    a.abs_diff(b) <= tol
}

fn profit_at(pools: &[Pool], route: &Route, x: U256) -> I256 {
    profit(pools, route, x, &CTX).unwrap()
}

// ------------------------------------------------------------------------------------------------
// Route checks and chaining

fn two_pairs() -> Vec<Pool> {
    let (usdc, x) = (tok(1), tok(2));
    vec![
        Pool::V2(V2Pair::new(usdc, x, 1_000_000_000_000, 1_010_000 * 10u128.pow(18))),
        Pool::V2(V2Pair::new(usdc, x, 1_000_000_000_000, 990_000 * 10u128.pow(18))),
        Pool::V2(V2Pair::new(x, tok(3), 10u128.pow(24), 10u128.pow(24))),
    ]
}

#[test]
fn route_new_checks_length_indices_chain_and_cycle() {
    let pools = two_pairs();
    let ok = Route::new(&pools, &[hop(0, Side::SellBase), hop(1, Side::SellQuote)]).unwrap();
    assert_eq!(ok.hops().len(), 2);
    assert_eq!(ok.token(), tok(1));
    assert!(!ok.revisits_pool());

    assert_eq!(Route::new(&pools, &[hop(0, Side::SellBase)]), Err(RouteError::Length { hops: 1 }));
    assert_eq!(
        Route::new(&pools, &[hop(0, Side::SellBase); 5]),
        Err(RouteError::Length { hops: 5 })
    );
    assert_eq!(Route::new(&[], &[]), Err(RouteError::Length { hops: 0 }));
    assert_eq!(
        Route::new(&pools, &[hop(0, Side::SellBase), hop(7, Side::SellQuote)]),
        Err(RouteError::PoolIndex { hop: 1, pool: 7, pools: 3 })
    );
    // USDC → X, then X must go in: selling USDC on pool 1 breaks the chain.
    assert_eq!(
        Route::new(&pools, &[hop(0, Side::SellBase), hop(1, Side::SellBase)]),
        Err(RouteError::Broken { hop: 0, next: 1 })
    );
    // USDC → X → T3: does not come back to USDC.
    assert_eq!(
        Route::new(&pools, &[hop(0, Side::SellBase), hop(2, Side::SellBase)]),
        Err(RouteError::NotCycle)
    );
    // A route built for three pools, used against one: typed, not a panic.
    assert_eq!(
        size(&pools[..1], &ok, &SizingLimits::default(), &CTX),
        Err(SizingError::Route(RouteError::PoolIndex { hop: 1, pool: 1, pools: 1 }))
    );
    assert_eq!(
        route_output(&pools[..1], &ok, U256::from(5u8), &CTX),
        Err(VenueError::InvalidState("route pool index out of range"))
    );
}

#[test]
fn route_output_chains_quotes_and_revisits_see_the_first_trade() {
    let pools = two_pairs();
    let route = Route::new(&pools, &[hop(0, Side::SellBase), hop(1, Side::SellQuote)]).unwrap();
    let x = U256::from(1_000_000_000u64);
    let mid = pools[0].quote(Side::SellBase, x, &CTX).unwrap().amount_out;
    let out = pools[1].quote(Side::SellQuote, mid, &CTX).unwrap().amount_out;
    assert_eq!(route_output(&pools, &route, x, &CTX), Ok(out));
    assert_eq!(route_amounts(&pools, &route, x, &CTX).unwrap().as_slice(), &[mid, out]);
    assert_eq!(
        profit(&pools, &route, x, &CTX),
        Ok(I256::try_from(out).unwrap() - I256::try_from(x).unwrap())
    );

    // There and back through one pair: the second hop trades the state after the first.
    let back = Route::new(&pools, &[hop(0, Side::SellBase), hop(0, Side::SellQuote)]).unwrap();
    assert!(back.revisits_pool());
    let mut after = pools[0].clone();
    let mid = after.apply(Side::SellBase, x, &CTX).unwrap().amount_out;
    let expect = after.quote(Side::SellQuote, mid, &CTX).unwrap().amount_out;
    let naive = pools[0].quote(Side::SellQuote, mid, &CTX).unwrap().amount_out;
    assert_ne!(expect, naive);
    assert_eq!(route_output(&pools, &back, x, &CTX), Ok(expect));
    // The table is untouched.
    assert_eq!(pools, two_pairs());
    // A round trip never pays.
    let sized = size(&pools, &back, &SizingLimits::default(), &CTX).unwrap();
    assert!(!sized.is_profitable(), "{sized:?}");
}

#[test]
fn absurd_amounts_are_typed_errors() {
    let pools = two_pairs();
    let route = Route::new(&pools, &[hop(0, Side::SellBase), hop(1, Side::SellQuote)]).unwrap();
    assert_eq!(route_output(&pools, &route, U256::ZERO, &CTX), Err(VenueError::ZeroInput));
    assert_eq!(route_output(&pools, &route, U256::MAX, &CTX), Err(VenueError::Overflow));
    assert_eq!(profit(&pools, &route, U256::MAX, &CTX), Err(VenueError::Overflow));
    assert_eq!(
        size(&pools, &route, &SizingLimits::new(U256::from(10u8), U256::from(9u8)), &CTX),
        Err(SizingError::EmptyRange { min_in: U256::from(10u8), max_in: U256::from(9u8) })
    );
    let none = size(&pools, &route, &SizingLimits::up_to(U256::ZERO), &CTX).unwrap();
    assert!(!none.is_profitable());
    // An empty pair refuses whatever the size: an error, not "no trade".
    let mut empty = pools.clone();
    empty[1] = Pool::V2(V2Pair::new(tok(1), tok(2), 0, 0));
    let err = size(&empty, &route, &SizingLimits::default(), &CTX).unwrap_err();
    assert!(
        matches!(err, SizingError::Venue { hop: 1, error: VenueError::NoLiquidity }),
        "{err:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// DOMAIN §2.1: two V2 pairs

#[test]
fn domain_2_1_two_pool_example() {
    // A = (1,000,000 USDC; 1,010,000 X), B = (990,000 X; 1,000,000 USDC); USDC 6 dec, X 18 dec.
    let pools = two_pairs();
    let route = Route::new(&pools, &[hop(0, Side::SellBase), hop(1, Side::SellQuote)]).unwrap();
    let sized = size(&pools, &route, &SizingLimits::default(), &CTX).unwrap();
    assert_eq!(sized.method, SizingMethod::TwoV2);
    assert!(close(sized.amount_in, units("3490.82", 6), units("0.01", 6)), "{sized:?}");
    assert!(close(sized.profit, units("24.507", 6), units("0.001", 6)), "{sized:?}");
    assert_eq!(route_output(&pools, &route, sized.amount_in, &CTX), Ok(sized.amount_out));
    assert_eq!(sized.amount_out - sized.amount_in, sized.profit);
    // ±10% of the size gives ≈ 24.26.
    for x in [
        sized.amount_in * U256::from(9u8) / U256::from(10u8),
        sized.amount_in * U256::from(11u8) / U256::from(10u8),
    ] {
        let p = profit_at(&pools, &route, x);
        assert!(
            p > I256::try_from(units("24.25", 6)).unwrap()
                && p < I256::try_from(units("24.27", 6)).unwrap(),
            "{p}"
        );
    }
    // The search agrees with the closed form to a few wei.
    let searched = size_by_search(&pools, &route, &SizingLimits::default(), &CTX).unwrap();
    assert_eq!(searched.method, SizingMethod::Search);
    assert!(close(searched.profit, sized.profit, U256::from(2u8)), "{searched:?} vs {sized:?}");
    // The reverse direction does not pay.
    let reverse = Route::new(&pools, &[hop(1, Side::SellBase), hop(0, Side::SellQuote)]).unwrap();
    let sized = size(&pools, &reverse, &SizingLimits::default(), &CTX).unwrap();
    assert!(!sized.is_profitable(), "{sized:?}");
    // Limits cap the size (concave profit: the cap is the best point below the optimum).
    let capped = size(&pools, &route, &SizingLimits::up_to(units("1000", 6)), &CTX).unwrap();
    // (The same profit with a wei less capital wins a tie.)
    assert!(close(capped.amount_in, units("1000", 6), U256::from(16u8)), "{capped:?}");
    assert_eq!(I256::try_from(capped.profit).unwrap(), profit_at(&pools, &route, units("1000", 6)));
    let floored =
        size(&pools, &route, &SizingLimits::new(units("5000", 6), units("6000", 6)), &CTX).unwrap();
    assert_eq!(floored.amount_in, units("5000", 6));
}

// ------------------------------------------------------------------------------------------------
// DOMAIN §1.11: PMM against an external price (a flat k = 0 pool at i = 1, no fee, as the leg
// that closes the cycle at P* = 1)

fn flat_leg(base: Address, quote: Address) -> PmmPool {
    let deep = e18("1000000000000");
    dsp(base, quote, pow10(18), U256::ZERO, deep, deep)
}

/// The constant-price legs that close a §1.11 cycle at P* = 1: a flat PMM and a fee-free vault
/// (base = compliant, quote = official).
fn price_legs(base: Address, quote: Address) -> [Pool; 2] {
    let deep = e18("1000000000000");
    [
        Pool::Pmm(flat_leg(base, quote)),
        Pool::Vault(ReserveVault {
            compliant: base,
            official: quote,
            official_reserve: deep,
            compliant_supply: deep,
            fee_bps: 0,
            paused: false,
        }),
    ]
}

#[test]
fn domain_1_11_example_1_buy_base_after_a_dump() {
    let (b, q) = (tok(1), tok(2));
    let mut pool = dsp(b, q, pow10(18), e18("0.0005"), e18("1000000"), e18("1000000"));
    pool.apply(Side::SellBase, e18("300000"), &CTX).unwrap();
    assert_eq!(pool.r, RState::BelowOne);
    pool.lp_fee_rate = e18("0.0001");
    for leg in price_legs(b, q) {
        let pools = vec![Pool::Pmm(pool.clone()), leg];
        // Pay quote for base on the PMM, sell the base at P* = 1.
        let route = Route::new(&pools, &[hop(0, Side::SellQuote), hop(1, Side::SellBase)]).unwrap();
        let sized = size(&pools, &route, &SizingLimits::default(), &CTX).unwrap();
        assert_eq!(sized.method, SizingMethod::PmmVsPrice);
        assert!(close(sized.amount_in, e18("212799.069"), e18("0.001")), "{sized:?}");
        assert!(close(sized.amount_out, e18("212837.877"), e18("0.001")), "{sized:?}");
        assert!(close(sized.profit, e18("38.808"), e18("0.001")), "{sized:?}");
        for (f, expect) in
            [("0.95", "38.73"), ("0.99", "38.80"), ("1.01", "38.80"), ("1.05", "38.73")]
        {
            let x = sized.amount_in * e18(f) / pow10(18);
            let p = profit_at(&pools, &route, x);
            assert!(close(p.unsigned_abs(), e18(expect), e18("0.006")), "{f}: {p}");
            assert!(p.unsigned_abs() < sized.profit);
        }
        let searched = size_by_search(&pools, &route, &SizingLimits::default(), &CTX).unwrap();
        assert!(close(searched.profit, sized.profit, e18("0.000001")), "{searched:?} vs {sized:?}");
    }
}

#[test]
fn domain_1_11_example_2_sell_base_to_a_dvm() {
    let (b, q) = (tok(1), tok(2));
    let mut pool = dvm(b, q, pow10(18), e18("0.0005"), e18("1000000"), e18("1000000"));
    pool.lp_fee_rate = e18("0.0001");
    for leg in price_legs(b, q) {
        let pools = vec![Pool::Pmm(pool.clone()), leg];
        // Sell base to the DVM (its mid is above 1), buy it back at P* = 1.
        let route = Route::new(&pools, &[hop(0, Side::SellBase), hop(1, Side::SellQuote)]).unwrap();
        let sized = size(&pools, &route, &SizingLimits::default(), &CTX).unwrap();
        assert_eq!(sized.method, SizingMethod::PmmVsPrice);
        assert!(close(sized.amount_in, e18("825270.667"), e18("0.001")), "{sized:?}");
        assert!(close(sized.profit, e18("408.609"), e18("0.001")), "{sized:?}");
        let searched = size_by_search(&pools, &route, &SizingLimits::default(), &CTX).unwrap();
        assert!(close(searched.profit, sized.profit, e18("0.000001")), "{searched:?} vs {sized:?}");
        // Led by the constant-price leg instead (buy base at 1, sell it to the DVM): same trade.
        let led = Route::new(&pools, &[hop(1, Side::SellQuote), hop(0, Side::SellBase)]).unwrap();
        let sized_led = size(&pools, &led, &SizingLimits::default(), &CTX).unwrap();
        assert_eq!(sized_led.method, SizingMethod::PmmVsPrice);
        assert!(close(sized_led.profit, e18("408.609"), e18("0.001")), "{sized_led:?}");
    }
}

#[test]
fn v2_against_a_vault_closed_form_matches_the_search() {
    // The compliant twin is 2% cheap on a pair (6/6): buy it there, redeem it at the vault (10 bps).
    let (twin, usdc) = (tok(1), tok(2));
    let m = 10u128.pow(6);
    let pools = vec![
        Pool::V2(V2Pair::new(twin, usdc, 1_020_000 * m, 1_000_000 * m)),
        Pool::Vault(ReserveVault {
            compliant: twin,
            official: usdc,
            official_reserve: U256::from(5_000_000 * m),
            compliant_supply: U256::from(5_000_000 * m),
            fee_bps: 10,
            paused: false,
        }),
    ];
    for hops in [
        [hop(0, Side::SellQuote), hop(1, Side::SellBase)],
        [hop(1, Side::SellQuote), hop(0, Side::SellBase)],
    ] {
        let route = Route::new(&pools, &hops).unwrap();
        let sized = size(&pools, &route, &SizingLimits::default(), &CTX).unwrap();
        let searched = size_by_search(&pools, &route, &SizingLimits::default(), &CTX).unwrap();
        if hops[0].pool == 0 {
            assert_eq!(sized.method, SizingMethod::V2VsPrice);
            // (√(0.999·0.997·1.02e12·1e12) − 1e12)/0.997 ≈ 7,954 USDC in, ≈ 63.08 USDC profit.
            assert!(close(sized.amount_in, U256::from(7_954 * m), U256::from(m)), "{sized:?}");
            assert!(
                close(sized.profit, U256::from(63_075_000u64), U256::from(10_000u64)),
                "{sized:?}"
            );
            assert!(
                close(sized.profit, searched.profit, U256::from(2u8)),
                "{sized:?} {searched:?}"
            );
        } else {
            // Minting the twin to sell it on the pair, where it is cheap, does not pay.
            assert!(!sized.is_profitable() && !searched.is_profitable(), "{sized:?} {searched:?}");
        }
    }
    // A paused vault is an error, whatever the size.
    let mut paused = pools.clone();
    if let Pool::Vault(v) = &mut paused[1] {
        v.paused = true;
    }
    let route = Route::new(&paused, &[hop(0, Side::SellQuote), hop(1, Side::SellBase)]).unwrap();
    let err = size(&paused, &route, &SizingLimits::default(), &CTX).unwrap_err();
    assert_eq!(err, SizingError::Venue { hop: 1, error: VenueError::Paused });
    assert!(err.is_retryable());
}

#[test]
fn constant_price_closed_forms_take_a_flash_fee_into_the_rate() {
    // The §1.11 example-2 DVM and a V2 pair against the vault (2 bps), funded by a lender that
    // charges 5 bps on the input: the closed form (rate ρ/(1 + fee)) must match the search, in
    // either order of the legs, and the fee must shrink the size.
    let (b, q) = (tok(1), tok(2));
    let mut pmm = dvm(b, q, pow10(18), e18("0.0005"), e18("1000000"), e18("1000000"));
    pmm.lp_fee_rate = e18("0.0001");
    let deep = e18("1000000000000");
    let vault = Pool::Vault(ReserveVault {
        compliant: b,
        official: q,
        official_reserve: deep,
        compliant_supply: deep,
        fee_bps: 2,
        paused: false,
    });
    let pair = Pool::V2(V2Pair::new(b, q, 990_000 * 10u128.pow(18), 1_010_000 * 10u128.pow(18)));
    for (curve, method) in
        [(Pool::Pmm(pmm), SizingMethod::PmmVsPrice), (pair, SizingMethod::V2VsPrice)]
    {
        let pools = vec![curve, vault.clone()];
        for hops in [
            [hop(0, Side::SellBase), hop(1, Side::SellQuote)],
            [hop(1, Side::SellQuote), hop(0, Side::SellBase)],
        ] {
            let route = Route::new(&pools, &hops).unwrap();
            let free = size(&pools, &route, &SizingLimits::default(), &CTX).unwrap();
            for fee in [1u32, 2, 3] {
                let limits = SizingLimits { input_fee_bps: fee, ..SizingLimits::default() };
                let sized = size(&pools, &route, &limits, &CTX).unwrap();
                let searched = size_by_search(&pools, &route, &limits, &CTX).unwrap();
                let ctx = format!("{method:?} {hops:?} fee {fee}: {sized:?} vs {searched:?}");
                assert!(sized.is_profitable(), "{ctx}");
                assert_eq!(sized.method, method, "{ctx}");
                assert!(sized.amount_in < free.amount_in && sized.profit < free.profit, "{ctx}");
                // Same optimum to 10⁻⁹ of the profit, in fewer quotes.
                let tol = searched.profit / U256::from(1_000_000_000u64) + U256::from(2u8);
                assert!(sized.profit + tol >= searched.profit, "{ctx}");
                assert!(sized.evaluations * 3 < searched.evaluations, "{ctx}");
                // The reported profit is output − input; the fee is charged on top.
                assert_eq!(sized.amount_out - sized.amount_in, sized.profit, "{ctx}");
            }
        }
    }
}

#[test]
fn coarser_precision_keeps_the_profit_in_fewer_quotes() {
    // The engine's 16-bit stop against the 24-bit default on random routes (search and closed
    // forms alike): the profit is within 10⁻⁵ (or the route's dust) and it costs fewer quotes.
    let (mut fine_quotes, mut coarse_quotes) = (0u64, 0u64);
    let mut worst_ppb = 0u64;
    for seed in 0..300u64 {
        let mut rng = Rng(0xc0a7_0000 + seed);
        let (pools, route, dust) = random_route(&mut rng);
        let max_in = twice_entry_reserve(&pools, &route);
        let fine = SizingLimits::up_to(max_in);
        let coarse = SizingLimits { precision_bits: 16, ..fine };
        let (Ok(a), Ok(b)) =
            (size(&pools, &route, &fine, &CTX), size(&pools, &route, &coarse, &CTX))
        else {
            continue;
        };
        fine_quotes += u64::from(a.evaluations);
        coarse_quotes += u64::from(b.evaluations);
        let tol = a.profit / U256::from(100_000u64) + dust;
        assert!(b.profit + tol >= a.profit, "seed {seed}: {a:?} vs {b:?}");
        if a.profit > dust * U256::from(1_000u64) && a.profit > b.profit {
            let ppb = (a.profit - b.profit) * U256::from(1_000_000_000u64) / a.profit;
            worst_ppb = worst_ppb.max(ppb.saturating_to());
        }
    }
    eprintln!("16 vs 24 bits: {coarse_quotes} vs {fine_quotes} quotes, worst loss {worst_ppb} ppb");
    assert!(coarse_quotes * 10 < fine_quotes * 9, "{coarse_quotes} vs {fine_quotes}");
}

// ------------------------------------------------------------------------------------------------
// Random mixed routes against a brute-force grid

/// SplitMix64: a small seeded generator, so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// A factor around one in parts per million: 1e6 ± `spread_ppm`.
    fn around_one_ppm(&mut self, spread_ppm: u64) -> u64 {
        1_000_000 - spread_ppm + self.below(2 * spread_ppm + 1)
    }
}

#[derive(Clone, Copy, Debug)]
struct Token {
    addr: Address,
    dec: u32,
}

/// Four dollar-ish tokens: two with 6 decimals, two with 18.
const TOKENS: [Token; 4] = [
    Token { addr: Address::with_last_byte(0x10), dec: 6 },
    Token { addr: Address::with_last_byte(0x20), dec: 18 },
    Token { addr: Address::with_last_byte(0x30), dec: 6 },
    Token { addr: Address::with_last_byte(0x40), dec: 18 },
];

/// A random venue between `base` and `quote` at a human price near one, with random depth, fees
/// and (for PMM) kind, k and R state; between tokens of equal decimals, sometimes a reserve vault
/// (1:1 less a fee, with a random backing).
fn random_pool(rng: &mut Rng, base: Token, quote: Token) -> Pool {
    let price_ppm = U256::from(rng.around_one_ppm(30_000));
    let depth = U256::from(rng.pick(&[1_000u64, 50_000, 1_000_000, 20_000_000]));
    let b = depth * pow10(base.dec);
    let q = depth * price_ppm * pow10(quote.dec) / U256::from(1_000_000u64);
    match rng.below(if base.dec == quote.dec { 3 } else { 2 }) {
        2 => Pool::Vault(ReserveVault {
            compliant: base.addr,
            official: quote.addr,
            official_reserve: b,
            // Backed 97% or more: open.
            compliant_supply: b * U256::from(rng.around_one_ppm(30_000)) / U256::from(1_000_000u64),
            fee_bps: rng.pick(&[0u16, 1, 5, 10, 30]),
            paused: false,
        }),
        0 => {
            let fee = rng.pick(&[30u16, 5, 25, 100]);
            Pool::V2(V2Pair::new(base.addr, quote.addr, b.to(), q.to()).with_fee_bps(fee))
        }
        _ => {
            let i = price_ppm * pow10(18 + quote.dec - base.dec) / U256::from(1_000_000u64);
            let k = e18(rng.pick(&["0", "0.0005", "0.01", "0.1", "0.5", "1"]));
            let mut pool = match rng.below(3) {
                0 => dvm(base.addr, quote.addr, i, k, b, q / U256::from(1 + rng.below(4))),
                1 => dsp(base.addr, quote.addr, i, k, b, b * i / pow10(18)),
                _ => PmmPool {
                    kind: PmmKind::Dpp,
                    ..dsp(base.addr, quote.addr, i, k, b, b * i / pow10(18))
                },
            };
            // Move it off R = ONE: a random trade of up to 40% of a reserve.
            let side = rng.pick(&[Side::SellBase, Side::SellQuote]);
            let reserve =
                if side == Side::SellBase { pool.base_reserve } else { pool.quote_reserve };
            let amount = reserve * U256::from(rng.below(400)) / U256::from(1_000u64);
            let _ = pool.apply(side, amount, &CTX);
            pool.lp_fee_rate = e18(rng.pick(&["0", "0.0001", "0.001", "0.003"]));
            pool.mt_fee_rate = e18(rng.pick(&["0", "0", "0.0001"]));
            Pool::Pmm(pool)
        }
    }
}

/// The hop that trades `from` into the other token of `pool`.
fn side_from(pool: &Pool, from: Address) -> Side {
    if pool.tokens().0 == from { Side::SellBase } else { Side::SellQuote }
}

/// A random 2- or 3-hop cycle over fresh random pools; either orientation of each pool. Also
/// returns the route's rounding dust in its own token: a few raw units of its coarsest token
/// (venues round by whole raw units, and PMM rounding can hand a tiny trade a unit or two, so
/// profits at this level are noise, not a curve to maximise).
fn random_route(rng: &mut Rng) -> (Vec<Pool>, Route, U256) {
    let hops = 2 + rng.below(2) as usize;
    let mut idx = [0usize, 1, 2, 3];
    for n in (1..4).rev() {
        idx.swap(n, rng.below(n as u64 + 1) as usize);
    }
    let path: Vec<Token> = if hops == 2 {
        vec![TOKENS[idx[0]], TOKENS[idx[1]], TOKENS[idx[0]]]
    } else {
        vec![TOKENS[idx[0]], TOKENS[idx[1]], TOKENS[idx[2]], TOKENS[idx[0]]]
    };
    let mut pools = Vec::new();
    let mut route_hops = Vec::new();
    for w in path.windows(2) {
        let (from, to) = (w[0], w[1]);
        let pool =
            if rng.below(2) == 0 { random_pool(rng, from, to) } else { random_pool(rng, to, from) };
        route_hops.push(hop(pools.len(), side_from(&pool, from.addr)));
        pools.push(pool);
    }
    let route = Route::new(&pools, &route_hops).unwrap();
    let coarsest = path.iter().map(|t| t.dec).min().unwrap_or(18);
    let dust = U256::from(8u8) * pow10(path[0].dec - coarsest);
    (pools, route, dust)
}

/// Best profit over a grid: 600 geometric points from 1 to `max_in`, 600 evenly spaced, then 400
/// evenly spaced between the neighbours of the best point so far.
fn brute_force(pools: &[Pool], route: &Route, max_in: U256) -> (U256, I256) {
    let eval = |x: U256| profit(pools, route, x, &CTX).ok();
    let mut grid: Vec<U256> = Vec::with_capacity(1_200);
    let bits = max_in.bit_len() as f64;
    for n in 0..600 {
        let x = U256::from(2f64.powf(bits * f64::from(n) / 599.0).min(1e70) as u128);
        grid.push(x.max(U256::ONE).min(max_in));
    }
    for n in 1..=600u64 {
        grid.push(max_in * U256::from(n) / U256::from(600u64));
    }
    grid.sort();
    grid.dedup();
    let mut best = (U256::ZERO, I256::ZERO);
    let mut best_at = 0;
    for (n, x) in grid.iter().enumerate() {
        if let Some(p) = eval(*x)
            && p > best.1
        {
            best = (*x, p);
            best_at = n;
        }
    }
    if best.0.is_zero() {
        return best;
    }
    let lo = grid[best_at.saturating_sub(1)];
    let hi = grid[(best_at + 1).min(grid.len() - 1)];
    for n in 0..=400u64 {
        let x = lo + (hi - lo) * U256::from(n) / U256::from(400u64);
        if let Some(p) = eval(x)
            && p > best.1
        {
            best = (x, p);
        }
    }
    best
}

/// Twice the first hop's reserve of the route's token: past the useful size of most cycles.
fn twice_entry_reserve(pools: &[Pool], route: &Route) -> U256 {
    let first = route.hops()[0];
    let reserve = match &pools[first.pool] {
        Pool::V2(p) => {
            U256::from(if first.side == Side::SellBase { p.reserve0 } else { p.reserve1 })
        }
        Pool::Pmm(p) => {
            if first.side == Side::SellBase {
                p.base_reserve
            } else {
                p.quote_reserve
            }
        }
        Pool::Vault(v) => {
            if first.side == Side::SellBase {
                v.compliant_supply
            } else {
                v.official_reserve
            }
        }
        other => panic!("no generator for {other:?}"),
    };
    (reserve * U256::from(2u8)).max(U256::from(1_000u64))
}

/// What the random-route check saw.
#[derive(Debug, Default)]
struct Stats {
    routes: u64,
    profitable: u64,
    /// Closed forms used: two V2 pairs, PMM against a price, V2 against a price.
    closed_form: [u64; 3],
    with_vault: u64,
    three_hops: u64,
    rejected_by_mid_price: u64,
    /// Routes whose grid best is above the dust and where the 0.1% bound alone held.
    strict: u64,
    /// Routes where only the dust allowance held (profits at the rounding level).
    dust_only: u64,
    evaluations: u64,
    /// Largest shortfall against the grid, in parts per billion of the grid's best, over routes
    /// whose best is a thousand times the dust (negative: sizing beat the grid).
    worst_shortfall_ppb: i64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.routes += o.routes;
        self.profitable += o.profitable;
        for (a, b) in self.closed_form.iter_mut().zip(o.closed_form) {
            *a += b;
        }
        self.with_vault += o.with_vault;
        self.three_hops += o.three_hops;
        self.rejected_by_mid_price += o.rejected_by_mid_price;
        self.strict += o.strict;
        self.dust_only += o.dust_only;
        self.evaluations += o.evaluations;
        self.worst_shortfall_ppb = self.worst_shortfall_ppb.max(o.worst_shortfall_ppb);
    }
}

fn check_random_route(seed: u64, stats: &mut Stats) {
    let mut rng = Rng(0x5eed_0000 + seed);
    let (pools, route, dust) = random_route(&mut rng);
    let max_in = twice_entry_reserve(&pools, &route);
    let sized = match size(&pools, &route, &SizingLimits::up_to(max_in), &CTX) {
        Ok(s) => s,
        Err(e) => panic!("seed {seed}: {e:?}\n{pools:#?}"),
    };
    let (bx, bp) = brute_force(&pools, &route, max_in);
    let ctx =
        || format!("seed {seed}: sized {sized:?}, brute force {bp} at {bx}\n{pools:#?}\n{route:?}");
    stats.routes += 1;
    stats.evaluations += u64::from(sized.evaluations);
    match sized.method {
        SizingMethod::Search => {}
        SizingMethod::MidPriceBound => stats.rejected_by_mid_price += 1,
        SizingMethod::TwoV2 => stats.closed_form[0] += 1,
        SizingMethod::PmmVsPrice => stats.closed_form[1] += 1,
        SizingMethod::V2VsPrice => stats.closed_form[2] += 1,
    }
    stats.with_vault += u64::from(pools.iter().any(|p| matches!(p, Pool::Vault(_))));
    stats.three_hops += u64::from(route.hops().len() == 3);
    if sized.is_profitable() {
        stats.profitable += 1;
        assert_eq!(
            route_output(&pools, &route, sized.amount_in, &CTX),
            Ok(sized.amount_out),
            "{}",
            ctx()
        );
        assert_eq!(sized.amount_out - sized.amount_in, sized.profit, "{}", ctx());
        assert!(sized.amount_in <= max_in, "{}", ctx());
    }
    // Within 0.1% of the grid's best, or (for profits at the rounding level) within the dust.
    let bp = bp.max(I256::ZERO).unsigned_abs();
    if bp > dust * U256::from(1_000u64) {
        let diff = I256::try_from(bp).unwrap() - I256::try_from(sized.profit).unwrap();
        let ppb = diff * I256::try_from(1_000_000_000u64).unwrap() / I256::try_from(bp).unwrap();
        stats.worst_shortfall_ppb = stats.worst_shortfall_ppb.max(ppb.as_i64());
    }
    let floor = bp - bp / U256::from(1_000u64);
    if sized.profit >= floor {
        if bp > dust {
            stats.strict += 1;
        }
    } else {
        assert!(sized.profit + dust >= floor, "{}", ctx());
        stats.dust_only += 1;
    }
}

#[test]
fn sizing_matches_brute_force_on_random_mixed_routes() {
    const ROUTES: u64 = 1_000;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8) as u64;
    let mut stats = Stats { worst_shortfall_ppb: i64::MIN, ..Stats::default() };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut stats = Stats { worst_shortfall_ppb: i64::MIN, ..Stats::default() };
                    for seed in (t..ROUTES).step_by(threads as usize) {
                        check_random_route(seed, &mut stats);
                    }
                    stats
                })
            })
            .collect();
        for h in handles {
            stats.add(&h.join().unwrap());
        }
    });
    eprintln!("random routes: {stats:?}");
    assert_eq!(stats.routes, ROUTES);
    // The generator must give both outcomes and exercise every path, and most profitable routes
    // must be held to the 0.1% bound, not the dust.
    assert!(stats.profitable > ROUTES / 10 && stats.profitable < ROUTES * 9 / 10, "{stats:?}");
    assert!(stats.closed_form.iter().all(|n| *n > 0), "{stats:?}");
    assert!(stats.with_vault > ROUTES / 10 && stats.three_hops > ROUTES / 3, "{stats:?}");
    assert!(stats.rejected_by_mid_price > ROUTES / 20, "{stats:?}");
    assert!(stats.strict > stats.profitable / 2, "{stats:?}");
}

/// A readied route (PMM target regressions done once) gives exactly `run_route`'s output or
/// refusal for every input, on random mixed routes from dust to past the reserves.
#[test]
fn a_readied_route_equals_the_plain_one() {
    let mut rng = Rng(0x5eed);
    let mut compared = 0u32;
    for _ in 0..300 {
        let (pools, route, _) = random_route(&mut rng);
        let ready = super::ReadyRoute::new(&pools, &route).expect("no revisits");
        for bits in [1usize, 20, 40, 60, 70, 80, 90, 100, 128, 200, 255] {
            let x = (U256::ONE << bits) - U256::from(rng.below(1_000));
            let plain =
                super::run_route(&pools, &route, x, &CTX, |_, _| ()).map_err(|e| (e.hop, e.error));
            assert_eq!(ready.run(x, &CTX).map_err(|e| (e.hop, e.error)), plain, "at {x}");
            compared += 1;
        }
    }
    assert_eq!(compared, 300 * 11);
}

// ------------------------------------------------------------------------------------------------
// No panic on absurd input

fn any_u256() -> BoxedStrategy<U256> {
    prop_oneof![
        Just(U256::ZERO),
        Just(U256::ONE),
        Just(U256::MAX),
        Just((U256::ONE << 112usize) - U256::ONE),
        any::<u64>().prop_map(U256::from),
        any::<u128>().prop_map(U256::from),
        any::<[u64; 4]>().prop_map(U256::from_limbs),
    ]
    .boxed()
}

fn any_pool(base: Address, quote: Address) -> BoxedStrategy<Pool> {
    prop_oneof![
        (any::<u128>(), any::<u128>(), any::<u16>())
            .prop_map(move |(r0, r1, fee)| {
                Pool::V2(
                    V2Pair::new(base, quote, r0 >> (r0 % 17), r1 >> (r1 % 17))
                        .with_fee_bps(fee % 10_100),
                )
            })
            .boxed(),
        (
            (any_u256(), any_u256(), any_u256(), any_u256()),
            (any_u256(), any_u256(), 0u8..3, 0u8..3),
            (any_u256(), any_u256())
        )
            .prop_map(move |((i, k, b, q), (b0, q0, r, kind), (lp, mt))| {
                Pool::Pmm(PmmPool {
                    kind: [PmmKind::Dsp, PmmKind::Dvm, PmmKind::Dpp][kind as usize],
                    base,
                    quote,
                    i,
                    // k = 0 (a flat pool, a constant-price leg) about a third of the time.
                    k: if k.bit_len() % 3 == 0 {
                        U256::ZERO
                    } else {
                        k % (pow10(18) + U256::from(2u8))
                    },
                    base_reserve: b,
                    quote_reserve: q,
                    base_target: b0,
                    quote_target: q0,
                    r: [RState::One, RState::AboveOne, RState::BelowOne][r as usize],
                    lp_fee_rate: lp,
                    mt_fee_rate: mt,
                    twap_timestamp_last: None,
                })
            })
            .boxed(),
        (any_u256(), any_u256(), any::<u16>(), any::<bool>())
            .prop_map(move |(official_reserve, compliant_supply, fee, paused)| {
                Pool::Vault(ReserveVault {
                    compliant: base,
                    official: quote,
                    official_reserve,
                    compliant_supply,
                    fee_bps: fee % 10_100,
                    paused: paused && fee % 7 == 0,
                })
            })
            .boxed(),
        (any_u256(), any_u256(), any::<u16>())
            .prop_map(move |(capacity, dst_reserve, fee)| {
                Pool::Bridge(BridgeLeg {
                    src: LegEnd { chain_id: 138, bridge: tok(0xb1), token: base },
                    dst: LegEnd { chain_id: 651_940, bridge: tok(0xb2), token: quote },
                    fee_bps: fee % 10_100,
                    capacity,
                    dst_reserve,
                    delay_seconds: 60,
                })
            })
            .boxed(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_panic_on_absurd_states_and_limits(
        p0 in any_pool(tok(1), tok(2)),
        p1 in any_pool(tok(1), tok(2)),
        p2 in any_pool(tok(2), tok(1)),
        shape in 0u8..4,
        min_in in any_u256(),
        max_in in any_u256(),
        bits in 0u32..300,
        amount in any_u256(),
    ) {
        let pools = vec![p0, p1, p2];
        let hops: &[RouteHop] = match shape {
            0 => &[hop(0, Side::SellBase), hop(1, Side::SellQuote)],
            1 => &[hop(0, Side::SellQuote), hop(2, Side::SellQuote)],
            2 => &[hop(0, Side::SellBase), hop(0, Side::SellQuote)],
            _ => &[hop(0, Side::SellBase), hop(2, Side::SellBase), hop(1, Side::SellBase), hop(2, Side::SellBase)],
        };
        let route = Route::new(&pools, hops).unwrap();
        let _ = route_output(&pools, &route, amount, &CTX);
        let _ = profit(&pools, &route, amount, &CTX);
        let limits = SizingLimits { min_in, max_in, precision_bits: bits, input_fee_bps: 0 };
        if let Ok(sized) = size(&pools, &route, &limits, &CTX)
            && sized.is_profitable()
        {
            prop_assert!(sized.amount_in >= min_in && sized.amount_in <= max_in);
            prop_assert_eq!(route_output(&pools, &route, sized.amount_in, &CTX), Ok(sized.amount_out));
        }
    }
}

#[test]
fn sized_trade_no_trade_is_not_profitable() {
    let t = SizedTrade::no_trade(SizingMethod::Search, 3);
    assert!(!t.is_profitable());
    assert_eq!(t.evaluations, 3);
}
