//! DOMAIN §1.10 and §1.11 worked examples.

use alloy::primitives::U256;

use super::{assert_near, dsp, dvm, pow10, raw};
use crate::venues::{
    QuoteCtx, Side, Venue,
    pmm::{PmmPool, RState},
};

const CTX: QuoteCtx = QuoteCtx { timestamp: 0 };

fn e18(text: &str) -> U256 {
    raw(text, 18).0
}

/// The §1.10 setup: i = 1, B = Q = B0 = Q0 = 1,000,000 (18 decimals), R = ONE.
fn setup(k: &str) -> PmmPool {
    dsp(pow10(18), e18(k), e18("1000000"), e18("1000000"))
}

fn out(pool: &PmmPool, side: Side, amount: &str) -> U256 {
    pool.quote(side, e18(amount), &CTX).unwrap().amount_out
}

fn with_lp(pool: &PmmPool, lp: &str) -> PmmPool {
    PmmPool { lp_fee_rate: e18(lp), ..pool.clone() }
}

#[test]
fn table_k_0_1() {
    let pool = setup("0.1");
    assert_near(out(&pool, Side::SellBase, "10000"), "9989.919447032049723473", 18);
    let mut after = pool.clone();
    after.apply(Side::SellBase, e18("10000"), &CTX).unwrap();
    assert_near(after.mid_price().unwrap(), "0.997975778515", 18);
    assert_near(out(&with_lp(&pool, "0.0001"), Side::SellBase, "10000"), "9988.920455", 18);
    assert_near(out(&with_lp(&pool, "0.003"), Side::SellBase, "10000"), "9959.949689", 18);
    // avg price 0.998992
    assert_near(out(&pool, Side::SellBase, "10000") / U256::from(10_000u64), "0.998992", 18);
}

#[test]
fn table_k_0_0005() {
    let pool = setup("0.0005");
    assert_near(out(&pool, Side::SellBase, "10000"), "9999.949495462216980619", 18);
    let mut after = pool.clone();
    after.apply(Side::SellBase, e18("10000"), &CTX).unwrap();
    assert_near(after.mid_price().unwrap(), "0.999989848130", 18);
    assert_near(out(&with_lp(&pool, "0.0001"), Side::SellBase, "10000"), "9998.949501", 18);
    assert_near(out(&with_lp(&pool, "0.003"), Side::SellBase, "10000"), "9969.949647", 18);
}

#[test]
fn table_k_0() {
    let pool = setup("0");
    assert_eq!(out(&pool, Side::SellBase, "10000"), e18("10000"));
    let mut after = pool.clone();
    after.apply(Side::SellBase, e18("10000"), &CTX).unwrap();
    assert_eq!(after.mid_price().unwrap(), pow10(18));
    assert_eq!(out(&with_lp(&pool, "0.0001"), Side::SellBase, "10000"), e18("9999"));
    assert_eq!(out(&with_lp(&pool, "0.003"), Side::SellBase, "10000"), e18("9970"));
}

#[test]
fn selling_quote_mirrors_selling_base_at_par() {
    for k in ["0.1", "0.0005", "0"] {
        let pool = setup(k);
        assert_eq!(out(&pool, Side::SellQuote, "10000"), out(&pool, Side::SellBase, "10000"));
    }
}

#[test]
fn post_trade_state_k_0_1() {
    let mut pool = setup("0.1");
    pool.apply(Side::SellBase, e18("10000"), &CTX).unwrap();
    assert_eq!(pool.base_reserve, e18("1010000"));
    assert_near(pool.quote_reserve, "990010.080552967950276527", 18);
    assert_eq!(pool.r, RState::BelowOne);
    let q0 = pool.adjusted_state().unwrap().q0;
    assert_near(q0, "999999.999999999997536127", 18);

    // Back to one: pay exactly Q0 − Q quote → 10,000.000 base and R = ONE.
    let back = q0 - pool.quote_reserve;
    assert_near(back, "9989.919447032047", 18);
    let mut one = pool.clone();
    let got = one.apply(Side::SellQuote, back, &CTX).unwrap().amount_out;
    assert_near(got, "10000.000", 18);
    assert_eq!(one.r, RState::One);

    assert_near(out(&pool, Side::SellQuote, "5000"), "5007.578", 18);
    let mut above = pool.clone();
    assert_near(
        above.apply(Side::SellQuote, e18("20000"), &CTX).unwrap().amount_out,
        "19999.980",
        18,
    );
    assert_eq!(above.r, RState::AboveOne);
    assert_near(out(&pool, Side::SellBase, "10000"), "9969.432", 18);
}

#[test]
fn larger_sizes() {
    let k1 = setup("0.1");
    assert_near(out(&k1, Side::SellBase, "100000"), "98914.197", 18);
    assert_near(out(&k1, Side::SellBase, "500000"), "460655.337", 18);
    let k5 = setup("0.0005");
    assert_near(out(&k5, Side::SellBase, "100000"), "99994.445", 18);
    assert_near(out(&k5, Side::SellBase, "500000"), "499750.374", 18);
}

#[test]
fn mixed_decimals_18_6() {
    let pool = dsp(pow10(6), e18("0.0005"), e18("1000000"), raw("1000000", 6).0);
    let got = pool.quote(Side::SellBase, e18("10000"), &CTX).unwrap().amount_out;
    assert_eq!(got, U256::from(9_999_949_495u64));
}

#[test]
fn six_six_pool() {
    let reserve = pow10(12);
    let amount = raw("10000", 6).0;
    let k1 = dsp(pow10(18), e18("0.1"), reserve, reserve);
    assert_eq!(
        k1.quote(Side::SellBase, amount, &CTX).unwrap().amount_out,
        U256::from(9_989_919_447u64)
    );
    let k5 = dsp(pow10(18), e18("0.0005"), reserve, reserve);
    assert_eq!(
        k5.quote(Side::SellBase, amount, &CTX).unwrap().amount_out,
        U256::from(9_999_949_495u64)
    );
    let fees = PmmPool { lp_fee_rate: e18("0.002"), mt_fee_rate: e18("0.001"), ..k5 };
    let q = fees.quote(Side::SellBase, amount, &CTX).unwrap();
    assert_eq!(q.amount_out, U256::from(9_969_949_648u64));
    assert_eq!(q.mt_fee, U256::from(9_999_949u64));
    assert_eq!(q.lp_fee, U256::from(19_999_898u64));
}

#[test]
fn dvm_table() {
    for (k, b0, mid, base_out_quote, quote_out_base) in [
        ("0.1", "1916079.783", "1.267136", "12635.012", "7873.707"),
        ("0.0005", "1999500.499", "1.001499", "10014.792", "9984.831"),
    ] {
        let pool = dvm(pow10(18), e18(k), e18("1000000"), e18("1000000"));
        assert_near(pool.adjusted_state().unwrap().b0, b0, 18);
        assert_near(pool.base_target, b0, 18);
        assert_near(pool.mid_price().unwrap(), mid, 18);
        assert_near(out(&pool, Side::SellBase, "10000"), base_out_quote, 18);
        assert_near(out(&pool, Side::SellQuote, "10000"), quote_out_base, 18);
    }
    // Q = 0: B0 = B, mid = i.
    let empty = dvm(pow10(18), e18("0.1"), e18("1000000"), U256::ZERO);
    assert_eq!(empty.adjusted_state().unwrap().b0, e18("1000000"));
    assert_eq!(empty.mid_price().unwrap(), pow10(18));
}

#[test]
fn large_dump() {
    let mut pool = setup("0.0005");
    let got = pool.apply(Side::SellBase, e18("300000"), &CTX).unwrap().amount_out;
    assert_near(got, "299935.748", 18);
    assert_near(pool.mid_price().unwrap(), "0.999480", 18);
}

/// Profit in quote units (P* = 1) of `side` with `amount` on `pool`.
fn profit_at_par(pool: &PmmPool, side: Side, amount: U256) -> i128 {
    let got = pool.quote(side, amount, &CTX).unwrap().amount_out;
    i128::try_from(got).unwrap() - i128::try_from(amount).unwrap()
}

/// A positive profit as a raw amount, for `assert_near`.
fn as_amount(p: i128) -> U256 {
    U256::try_from(p).unwrap()
}

#[test]
fn sizing_example_1_buy_base_after_dump() {
    let mut pool = setup("0.0005");
    pool.apply(Side::SellBase, e18("300000"), &CTX).unwrap();
    let pool = with_lp(&pool, "0.0001");
    let (side, pay) = pool.optimal_input_vs_price(pow10(18)).unwrap();
    assert_eq!(side, Side::SellQuote);
    assert_near(pay, "212799.069", 18);
    let got = pool.quote(side, pay, &CTX).unwrap().amount_out;
    assert_near(got, "212837.877", 18);
    let best = profit_at_par(&pool, side, pay);
    // Swapped sides: we receive base and pay quote; P* = 1 makes profit = base − quote.
    assert_near(as_amount(best), "38.808", 18);
    for (pct, expected) in [(95u64, "38.73"), (99, "38.80"), (101, "38.80"), (105, "38.73")] {
        let p = profit_at_par(&pool, side, pay * U256::from(pct) / U256::from(100u64));
        assert!(p < best, "{pct}%: {p} ≥ {best}");
        assert_near(as_amount(p), expected, 18);
    }
}

#[test]
fn sizing_example_2_dvm_sell_base() {
    let pool = PmmPool {
        lp_fee_rate: e18("0.0001"),
        ..dvm(pow10(18), e18("0.0005"), e18("1000000"), e18("1000000"))
    };
    let (side, amount) = pool.optimal_input_vs_price(pow10(18)).unwrap();
    assert_eq!(side, Side::SellBase);
    assert_near(amount, "825270.667", 18);
    let best = profit_at_par(&pool, side, amount);
    assert_near(as_amount(best), "408.609", 18);
    for pct in [95u64, 99, 101, 105] {
        let p = profit_at_par(&pool, side, amount * U256::from(pct) / U256::from(100u64));
        assert!(p < best, "{pct}%: {p} ≥ {best}");
    }
}

#[test]
fn sizing_none_at_fair_price_and_crossing_one() {
    let pool = with_lp(&setup("0.0005"), "0.0001");
    assert_eq!(pool.optimal_input_vs_price(pow10(18)), None);
    // A 5% higher external price makes buying base pay, through R = ONE into ABOVE_ONE.
    let p_star = e18("1.05");
    let (side, pay) = pool.optimal_input_vs_price(p_star).unwrap();
    assert_eq!(side, Side::SellQuote);
    let mut after = pool.clone();
    after.apply(side, pay, &CTX).unwrap();
    assert_eq!(after.r, RState::AboveOne);
    // The curve's marginal price has reached P*(1 − f) (fee-free copy: retained LP fees would
    // move the post-trade mid).
    let mut curve = with_lp(&pool, "0");
    curve.apply(side, pay, &CTX).unwrap();
    assert_near(curve.mid_price().unwrap(), "1.049895", 18);
    // Locally optimal: value of base at P* minus quote paid.
    let value = |amount: U256| {
        let base = pool.quote(side, amount, &CTX).unwrap().amount_out;
        i128::try_from(base * p_star / pow10(18)).unwrap() - i128::try_from(amount).unwrap()
    };
    let best = value(pay);
    for pct in [99u64, 101] {
        assert!(value(pay * U256::from(pct) / U256::from(100u64)) < best);
    }
}
