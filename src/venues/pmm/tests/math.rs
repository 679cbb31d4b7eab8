//! The math primitives on their own: the fast square root equals the contract's iteration, and the
//! DecimalMath helpers round the way the contract does.

use alloy::primitives::U256;
use proptest::prelude::*;

use super::cases;
use crate::venues::{
    VenueError,
    pmm::math::{
        ONE, ONE2, div_ceil, div_floor, div_one, mul, mul_ceil, mul_floor, reciprocal_floor,
        solve_quadratic_for_trade, sqrt, sqrt_babylonian,
    },
};

/// U256 values spread over every bit length.
fn any_bits() -> impl Strategy<Value = U256> {
    (0usize..=256, any::<[u64; 4]>()).prop_map(|(bits, limbs)| {
        if bits == 0 { U256::ZERO } else { U256::from_limbs(limbs) >> (256 - bits) }
    })
}

#[test]
fn constants() {
    assert_eq!(ONE, U256::from(10u64).pow(U256::from(18)));
    assert_eq!(ONE2, U256::from(10u64).pow(U256::from(36)));
}

#[test]
fn sqrt_edges_match_the_contract() {
    let mut xs: Vec<U256> = (0u64..=1_000).map(U256::from).collect();
    for bits in [64usize, 127, 128, 129, 130, 200, 255, 256] {
        let p = if bits == 256 { U256::MAX } else { (U256::ONE << bits) - U256::ONE };
        xs.extend([p, p >> 1usize, p - U256::from(1u64)]);
        let r = sqrt_babylonian(p);
        xs.extend([r * r, r * r - U256::ONE, r * r + U256::ONE]);
    }
    for x in xs {
        assert_eq!(sqrt(x), sqrt_babylonian(x), "x = {x}");
    }
    assert_eq!(sqrt(U256::from(2u64)), U256::from(2u64), "the contract's sqrt(2) quirk");
    assert_eq!(sqrt(U256::MAX), (U256::ONE << 128usize) - U256::ONE);
}

#[test]
fn sqrt_matches_the_contract_iteration() {
    let config =
        ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(x in any_bits())| {
        prop_assert_eq!(sqrt(x), sqrt_babylonian(x));
        let y = sqrt(x);
        if x != U256::from(2u64) {
            prop_assert!(y * y <= x);
            prop_assert!((y + U256::ONE).checked_mul(y + U256::ONE).is_none_or(|s| s > x));
        }
    });
}

#[test]
fn fast_paths_equal_ruint() {
    for x in [
        U256::ZERO,
        U256::ONE,
        ONE - U256::ONE,
        ONE,
        ONE + U256::ONE,
        ONE2,
        U256::MAX,
        U256::MAX - ONE,
    ] {
        assert_eq!(div_one(x), x / ONE, "x = {x}");
    }
    let config =
        ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(x in any_bits(), y in any_bits(), m in 0u64..3)| {
        // Multiples of 1e18 and their neighbours too.
        let x = match m {
            0 => x,
            1 => (x / ONE) * ONE,
            _ => ((x / ONE) * ONE).saturating_sub(U256::ONE),
        };
        prop_assert_eq!(div_one(x), x / ONE);
        prop_assert_eq!(mul(x, y).ok(), x.checked_mul(y));
        let (a, b) = (x >> 128usize, y >> 128usize);
        prop_assert_eq!(mul(a, b).ok(), a.checked_mul(b));
    });
}

#[test]
fn decimal_math_rounding() {
    let three = U256::from(3u64);
    assert_eq!(mul_floor(ONE + U256::ONE, three).unwrap(), three);
    assert_eq!(mul_ceil(ONE + U256::ONE, three).unwrap(), three + U256::ONE);
    assert_eq!(div_floor(U256::ONE, three).unwrap(), U256::from(333_333_333_333_333_333u64));
    assert_eq!(div_ceil(U256::ONE, three).unwrap(), U256::from(333_333_333_333_333_334u64));
    assert_eq!(reciprocal_floor(three).unwrap(), ONE2 / three);
    assert_eq!(reciprocal_floor(U256::ZERO), Err(VenueError::Overflow));
    assert_eq!(mul_floor(U256::MAX, three), Err(VenueError::Overflow));
    assert_eq!(div_floor(U256::MAX, three), Err(VenueError::Overflow));
}

#[test]
fn quadratic_special_cases() {
    let v = U256::from(1_000_000u64) * ONE;
    // k = 0: flat, capped at V1.
    assert_eq!(solve_quadratic_for_trade(v, v, ONE, ONE, U256::ZERO).unwrap(), ONE);
    assert_eq!(solve_quadratic_for_trade(v, v, v * U256::from(2u64), ONE, U256::ZERO).unwrap(), v);
    // k = 1: V1·t/(t+1), t = i·δ·V1/V0².
    let got = solve_quadratic_for_trade(v, v, v, ONE, ONE).unwrap();
    assert_eq!(got, v / U256::from(2u64));
    // Zero target.
    assert_eq!(
        solve_quadratic_for_trade(U256::ZERO, v, ONE, ONE, ONE),
        Err(VenueError::NoLiquidity)
    );
    // Zero delta.
    assert_eq!(
        solve_quadratic_for_trade(v, v, U256::ZERO, ONE, ONE / U256::from(2u64)).unwrap(),
        U256::ZERO
    );
}

#[test]
fn should_not_be_zero_guard() {
    // b > 0 and sqrt(b² + 4ac) = b: a tiny k·V0 makes 4ac vanish, so the numerator is 0.
    let k = U256::ONE;
    let v0 = U256::ONE;
    let got = solve_quadratic_for_trade(v0, U256::ONE, ONE * U256::from(10u64), ONE, k);
    assert_eq!(got, Err(VenueError::ZeroOutput));
}
