//! Tests of the PMM venue.
//!
//! - `examples`: every worked number of DOMAIN §1.10 and §1.11, to the wei where DOMAIN gives all
//!   digits, else to its last printed digit.
//! - `math`: the fast square root against the contract's Babylonian iteration, helpers' edges.
//! - `revm`: property tests of the native math against the fixture contracts (`PmmPool.sol` for
//!   DSP/DPP, `DvmPool.sol` for DVM) executed in revm, equal to the wei, errors included.
//! - `absurd`: no panic on any input; typed errors for broken states.
//! - `fetch`: the one-batch JSON-RPC read against a real anvil.
//!
//! Property tests run [`cases`] cases each (10,000 by default, `PROPTEST_CASES` overrides); the
//! long run is `PROPTEST_CASES=1000000 cargo test --release venues::pmm`.

use alloy::primitives::{Address, U256};

use super::{PmmKind, PmmPool, RState};

mod absurd;
mod examples;
mod fetch;
mod math;
mod revm;

/// Property-test cases per test: `PROPTEST_CASES` when set, else 10,000.
pub(super) fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(10_000)
}

/// 10^n.
pub(super) fn pow10(n: u32) -> U256 {
    U256::from(10u64).pow(U256::from(n))
}

/// A decimal string ("9989.919447032049723473") as raw units with `decimals` decimals, truncated
/// past them. Returns the value and the number of fractional digits given.
pub(super) fn raw(text: &str, decimals: u32) -> (U256, u32) {
    let clean: String = text.chars().filter(|c| *c != ',' && *c != '_').collect();
    let (int, frac) = clean.split_once('.').unwrap_or((&clean, ""));
    let digits = frac.len() as u32;
    assert!(digits <= decimals, "{text}: more digits than {decimals} decimals");
    let int = U256::from_str_radix(int, 10).unwrap();
    let frac = if frac.is_empty() { U256::ZERO } else { U256::from_str_radix(frac, 10).unwrap() };
    (int * pow10(decimals) + frac * pow10(decimals - digits), digits)
}

/// Asserts `actual` equals the decimal `expected` to its last printed digit (rounded or
/// truncated), or exactly when `expected` has all `decimals` digits.
#[track_caller]
pub(super) fn assert_near(actual: U256, expected: &str, decimals: u32) {
    let (want, digits) = raw(expected, decimals);
    let unit = pow10(decimals - digits);
    let diff = if actual > want { actual - want } else { want - actual };
    if digits == decimals {
        assert_eq!(actual, want, "expected exactly {expected}");
    } else {
        assert!(diff < unit, "got {actual}, expected {expected} (±1 in its last digit)");
    }
}

/// A DSP at R = ONE with targets equal to the reserves and no fees.
pub(super) fn dsp(i: U256, k: U256, b: U256, q: U256) -> PmmPool {
    PmmPool {
        kind: PmmKind::Dsp,
        base: Address::with_last_byte(0xb1),
        quote: Address::with_last_byte(0xb2),
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

/// A DVM with no fees.
pub(super) fn dvm(i: U256, k: U256, b: U256, q: U256) -> PmmPool {
    let mut pool = PmmPool { kind: PmmKind::Dvm, ..dsp(i, k, b, q) };
    pool.set_dvm_targets();
    pool
}
