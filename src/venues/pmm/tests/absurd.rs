//! No panic on any input: absurd states (zero or huge values, k > 1, i = 0, targets on the wrong
//! side) and absurd amounts give typed errors, and a refused `apply` leaves the state unchanged.

use alloy::primitives::{Address, U256};
use proptest::prelude::*;

use super::{cases, dsp, dvm, pow10};
use crate::venues::{
    QuoteCtx, Side, Venue, VenueError,
    pmm::{PmmKind, PmmPool, RState, math::ONE},
};

const CTX: QuoteCtx = QuoteCtx { timestamp: 1_750_000_000 };

/// Values over every bit length, with the edges over-represented.
fn wild() -> impl Strategy<Value = U256> {
    prop_oneof![
        1 => Just(U256::ZERO),
        1 => Just(U256::ONE),
        1 => Just(U256::MAX),
        1 => Just(ONE),
        1 => (0u64..=4).prop_map(|d| ONE + U256::from(d)), // k just above one
        6 => (0usize..=256, any::<[u64; 4]>()).prop_map(|(bits, limbs)| {
            if bits == 0 { U256::ZERO } else { U256::from_limbs(limbs) >> (256 - bits) }
        }),
    ]
}

fn any_pool() -> impl Strategy<Value = PmmPool> {
    (
        (0u8..3, 0u8..3, wild(), wild(), wild(), wild()),
        (wild(), wild(), wild(), wild(), proptest::option::of(any::<u32>())),
    )
        .prop_map(|((kind, r, i, k, b, q), (b0, q0, lp, mt, twap))| PmmPool {
            kind: [PmmKind::Dsp, PmmKind::Dvm, PmmKind::Dpp][kind as usize],
            base: Address::with_last_byte(1),
            quote: Address::with_last_byte(2),
            i,
            k,
            base_reserve: b,
            quote_reserve: q,
            base_target: b0,
            quote_target: q0,
            r: [RState::One, RState::AboveOne, RState::BelowOne][r as usize],
            lp_fee_rate: lp,
            mt_fee_rate: mt,
            twap_timestamp_last: twap,
        })
}

#[test]
fn nothing_panics() {
    let config =
        ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(pool in any_pool(), amount in wild(), base in any::<bool>(), ts in any::<u64>(), p in wild())| {
        let side = if base { Side::SellBase } else { Side::SellQuote };
        let ctx = QuoteCtx { timestamp: ts };
        let _ = pool.adjusted_state();
        let _ = pool.mid_price();
        let _ = pool.query_sell_base(amount);
        let _ = pool.query_sell_quote(amount);
        let _ = pool.optimal_input_vs_price(p);
        let quoted = pool.quote(side, amount, &ctx);
        let mut after = pool.clone();
        let applied = after.apply(side, amount, &ctx);
        prop_assert_eq!(&quoted, &applied);
        prop_assert_eq!(&pool.quoter().quote(side, amount, &ctx), &quoted);
        if applied.is_err() {
            prop_assert_eq!(&after, &pool, "a refused trade changed the state");
        } else if let Ok(q) = applied {
            // Whatever is paid out came out of the output reserve; what stays fits uint112.
            let out_reserve = if base { pool.quote_reserve } else { pool.base_reserve };
            prop_assert!(q.amount_out + q.mt_fee <= out_reserve);
            prop_assert!(after.base_reserve < (U256::ONE << 112usize));
            prop_assert!(after.quote_reserve < (U256::ONE << 112usize));
        }
        let _ = pool.hop(Address::ZERO, side, amount, U256::ZERO);
        let slots = [pool.base_reserve, pool.quote_reserve, pool.base_target, pool.i, p, amount];
        let _ = PmmPool::from_storage(pool.kind, pool.mt_fee_rate, |n| slots[(n as usize) % slots.len()]);
    });
}

#[test]
fn typed_errors_for_broken_states() {
    let m = pow10(24);
    let x = pow10(21);
    let k = ONE / U256::from(10u64);

    // Zero input is refused (the contract would accept it and pay nothing).
    assert_eq!(
        dsp(ONE, k, m, m).quote(Side::SellBase, U256::ZERO, &CTX),
        Err(VenueError::ZeroInput)
    );

    // An empty pool: the quote target is 0 → "TARGET_IS_ZERO".
    let empty = dsp(ONE, k, U256::ZERO, U256::ZERO);
    assert_eq!(empty.quote(Side::SellBase, x, &CTX), Err(VenueError::NoLiquidity));
    assert_eq!(empty.quote(Side::SellQuote, x, &CTX), Err(VenueError::NoLiquidity));
    assert_eq!(empty.mid_price(), Err(VenueError::NoLiquidity));

    // A DVM sold past B0 − B: Q0 = 0 → "TARGET_IS_ZERO".
    let v = dvm(ONE, k, m, m);
    let past = v.adjusted_state().unwrap().b0 - m + U256::ONE;
    assert_eq!(v.quote(Side::SellBase, past, &CTX), Err(VenueError::NoLiquidity));

    // i = 0: the reciprocal divides by zero.
    assert_eq!(dsp(U256::ZERO, k, m, m).quote(Side::SellQuote, x, &CTX), Err(VenueError::Overflow));

    // k > 1: 1 − k underflows.
    assert_eq!(
        dsp(ONE, ONE + U256::ONE, m, m).quote(Side::SellBase, x, &CTX),
        Err(VenueError::Overflow)
    );

    // R = BELOW_ONE with B < B0: the regression underflows.
    let broken = PmmPool { r: RState::BelowOne, base_target: m + U256::ONE, ..dsp(ONE, k, m, m) };
    assert_eq!(broken.quote(Side::SellBase, x, &CTX), Err(VenueError::Overflow));
    assert_eq!(broken.mid_price(), Err(VenueError::Overflow));

    // Targets above the reserves at R = ONE: the curve pays more than the pool holds.
    let thin = PmmPool { quote_reserve: pow10(18), ..dsp(ONE, U256::ZERO, m, m) };
    assert_eq!(thin.quote(Side::SellBase, x, &CTX), Err(VenueError::OverReserves));

    // A reserve past uint112 after the trade.
    let full = dsp(ONE, k, (U256::ONE << 112usize) - U256::ONE, m);
    assert_eq!(full.quote(Side::SellBase, U256::ONE, &CTX), Err(VenueError::Overflow));

    // Fee rates adding up to more than one.
    let greedy = PmmPool { lp_fee_rate: ONE, mt_fee_rate: U256::ONE, ..dsp(ONE, k, m, m) };
    assert_eq!(greedy.quote(Side::SellBase, x, &CTX), Err(VenueError::Overflow));

    // A positive input whose output rounds to zero is not an error (the contract pays 0).
    let q = dsp(pow10(6), U256::ZERO, m, m).quote(Side::SellBase, U256::ONE, &CTX).unwrap();
    assert_eq!(q.amount_out, U256::ZERO);
}

#[test]
fn hop_encoding() {
    let pool = dsp(ONE, U256::ZERO, pow10(24), pow10(24));
    let at = Address::with_last_byte(9);
    let sell_base = pool.hop(at, Side::SellBase, U256::from(5u64), U256::from(4u64));
    assert_eq!(
        (sell_base.kind, sell_base.venue, sell_base.tokenIn, sell_base.tokenOut),
        (0, at, pool.base, pool.quote)
    );
    assert_eq!((sell_base.amountIn, sell_base.minOut), (U256::from(5u64), U256::from(4u64)));
    let sell_quote = pool.hop(at, Side::SellQuote, U256::from(5u64), U256::ZERO);
    assert_eq!(
        (sell_quote.kind, sell_quote.tokenIn, sell_quote.tokenOut),
        (1, pool.quote, pool.base)
    );
    // min_out from the shared slippage rule.
    let quote = pool.quote(Side::SellBase, pow10(21), &CTX).unwrap();
    let min = crate::venues::min_out(quote.amount_out, 30);
    assert_eq!(min, quote.amount_out * U256::from(9_970u64) / U256::from(10_000u64));
}
