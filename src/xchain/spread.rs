//! Spread detection and two-leg sizing (pure).
//!
//! The same pair (by token symbols) priced on two chains: buy the base where it is cheap (sell the
//! quote into that chain's pool), sell the same amount of base where it is dear, each from the
//! executor's inventory on its own chain. With `x` quote paid on the buy chain, `y(x)` base bought
//! and `z(y)` quote received on the sell chain, the trade is worth
//!
//! ```text
//! net(x) = usd(z(y(x))) − usd(x) − gas_buy − gas_sell − (bridge_fee_bps + risk_margin_bps) · usd(x)
//! ```
//!
//! where the proportional term prices bringing the inventory back through the bridge later and
//! the time both sides are exposed. `net` is concave for PMM and V2 pools, so a golden-section
//! search over `x` finds its maximum; `x` is capped by the buy chain's quote inventory, the base
//! inventory on the sell chain (via `y(x)`) and the desk's notional cap.

use alloy::primitives::U256;

use super::msg::{ChainSnapshot, PoolView};
use crate::venues::{QuoteCtx, Side, Venue};

/// The same pair on two chains: pool `a` on the first chain, pool `b` on the second, oriented so
/// that `base`/`quote` are pool `a`'s base and quote symbols.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairRef {
    /// Base symbol.
    pub base: String,
    /// Quote symbol.
    pub quote: String,
    /// Index into the first chain's `pools`.
    pub a: usize,
    /// Index into the second chain's `pools`.
    pub b: usize,
}

/// Every pair priced on both chains (by symbols; one pool per chain and pair, the first found).
pub fn pairs(a: &ChainSnapshot, b: &ChainSnapshot) -> Vec<PairRef> {
    let mut out: Vec<PairRef> = Vec::new();
    for (ia, pa) in a.pools.iter().enumerate() {
        let (base, quote) = (&pa.base.1, &pa.quote.1);
        if out.iter().any(|p| (&p.base, &p.quote) == (base, quote)) {
            continue;
        }
        if let Some(ib) = b.pools.iter().position(|pb| {
            (&pb.base.1, &pb.quote.1) == (base, quote) || (&pb.base.1, &pb.quote.1) == (quote, base)
        }) {
            out.push(PairRef { base: base.clone(), quote: quote.clone(), a: ia, b: ib });
        }
    }
    out
}

/// Price of `base` in `quote` (whole tokens), at the pool's margin.
pub fn mid(pool: &PoolView, base: &str, decimals: (u8, u8)) -> Option<f64> {
    let m = crate::engine::market::u256_f64(pool.pool.mid_price().ok()?) / 1e18;
    if m <= 0.0 {
        return None;
    }
    // mid is quote raw per base raw of the pool's own orientation.
    if pool.base.1 == base {
        Some(m * 10f64.powi(i32::from(decimals.0) - i32::from(decimals.1)))
    } else {
        Some(1.0 / m * 10f64.powi(i32::from(decimals.0) - i32::from(decimals.1)))
    }
}

/// The side that pays `token_in` on `pool`.
pub fn side_paying(pool: &PoolView, token_in: &str) -> Side {
    if pool.base.1 == token_in { Side::SellBase } else { Side::SellQuote }
}

/// Costs of a two-leg trade.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Costs {
    /// Gas of the buy leg, USD.
    pub gas_buy_usd: f64,
    /// Gas of the sell leg, USD.
    pub gas_sell_usd: f64,
    /// Proportional costs on the notional: bridge fee + risk margin, bps.
    pub proportional_bps: f64,
}

/// One side of a trade: its pool, the quote token's USD value per raw unit, decimals.
#[derive(Clone, Copy, Debug)]
pub struct Side2<'a> {
    /// The pool.
    pub pool: &'a PoolView,
    /// Timestamp for quotes.
    pub ctx: QuoteCtx,
    /// Decimals of (base, quote) on this chain.
    pub decimals: (u8, u8),
    /// USD per whole quote token.
    pub quote_usd: f64,
}

/// Inventory and desk limits bounding the size.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Quote the executor holds on the buy chain, raw.
    pub quote_on_buy: U256,
    /// Base the executor holds on the sell chain, raw.
    pub base_on_sell: U256,
    /// The desk's notional cap, raw quote on the buy chain.
    pub max_in: U256,
}

/// A sized two-leg trade.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Quote paid on the buy chain, raw.
    pub amount_in: U256,
    /// Base bought on the buy chain, raw (that chain's decimals).
    pub base_bought: U256,
    /// Base sold on the sell chain, raw (that chain's decimals).
    pub base_sold: U256,
    /// Quote received on the sell chain, raw.
    pub amount_out: U256,
    /// `usd(out) − usd(in)`.
    pub gross_usd: f64,
    /// After gas, bridge fee and margin.
    pub net_usd: f64,
}

/// `raw` of a token with `from` decimals expressed with `to` decimals (rounded down).
pub fn rescale(raw: U256, from: u8, to: u8) -> U256 {
    match from.cmp(&to) {
        std::cmp::Ordering::Equal => raw,
        std::cmp::Ordering::Less => raw * U256::from(10u64).pow(U256::from(to - from)),
        std::cmp::Ordering::Greater => raw / U256::from(10u64).pow(U256::from(from - to)),
    }
}

fn usd(raw: U256, decimals: u8, price: f64) -> f64 {
    crate::engine::market::u256_f64(raw) / 10f64.powi(i32::from(decimals)) * price
}

/// Evaluates buying with `x` quote on `buy` and selling the base on `sell`.
pub fn evaluate(
    buy: &Side2<'_>,
    sell: &Side2<'_>,
    base: &str,
    x: U256,
    costs: &Costs,
) -> Option<Plan> {
    let quote_sym = if buy.pool.base.1 == base { &buy.pool.quote.1 } else { &buy.pool.base.1 };
    let y = buy.pool.pool.quote(side_paying(buy.pool, quote_sym), x, &buy.ctx).ok()?.amount_out;
    let y_sell = rescale(y, buy.decimals.0, sell.decimals.0);
    if y_sell.is_zero() {
        return None;
    }
    let z = sell.pool.pool.quote(side_paying(sell.pool, base), y_sell, &sell.ctx).ok()?.amount_out;
    let paid = usd(x, buy.decimals.1, buy.quote_usd);
    let got = usd(z, sell.decimals.1, sell.quote_usd);
    let gross = got - paid;
    let net =
        gross - costs.gas_buy_usd - costs.gas_sell_usd - costs.proportional_bps / 10_000.0 * paid;
    Some(Plan {
        amount_in: x,
        base_bought: y,
        base_sold: y_sell,
        amount_out: z,
        gross_usd: gross,
        net_usd: net,
    })
}

/// The size maximising the net result within `bounds`; `None` when nothing is worth trading
/// (the best net result is not positive).
pub fn size(
    buy: &Side2<'_>,
    sell: &Side2<'_>,
    base: &str,
    bounds: &Bounds,
    costs: &Costs,
) -> Option<Plan> {
    let mut hi = bounds.quote_on_buy.min(bounds.max_in);
    if hi.is_zero() {
        return None;
    }
    // The base bought must not exceed what can be sold from inventory on the other chain.
    let fits = |x: U256| {
        evaluate(buy, sell, base, x, costs).is_some_and(|p| p.base_sold <= bounds.base_on_sell)
    };
    if !fits(hi) {
        let (mut lo, mut top) = (U256::ZERO, hi);
        for _ in 0..128 {
            if top - lo <= U256::from(1u8) {
                break;
            }
            let m = (lo + top) >> 1;
            if fits(m) { lo = m } else { top = m }
        }
        hi = lo;
    }
    if hi.is_zero() {
        return None;
    }
    let net =
        |x: U256| evaluate(buy, sell, base, x, costs).map_or(f64::NEG_INFINITY, |p| p.net_usd);
    // Golden-section search on a concave function over [1, hi], in integers.
    let (mut lo, mut top) = (U256::from(1u8), hi);
    let phi = |a: U256, b: U256| (b - a) * U256::from(382u32) / U256::from(1000u32);
    let mut m1 = lo + phi(lo, top);
    let mut m2 = top - phi(lo, top);
    let (mut f1, mut f2) = (net(m1), net(m2));
    for _ in 0..200 {
        if top - lo <= U256::from(3u8) {
            break;
        }
        if f1 < f2 {
            lo = m1;
            m1 = m2;
            f1 = f2;
            m2 = top - phi(lo, top);
            if m2 <= m1 {
                m2 = m1 + U256::from(1u8);
            }
            f2 = net(m2);
        } else {
            top = m2;
            m2 = m1;
            f2 = f1;
            m1 = lo + phi(lo, top);
            if m1 >= m2 {
                m1 = m2 - U256::from(1u8);
            }
            f1 = net(m1);
        }
    }
    let best = [lo, m1, m2, top, hi]
        .into_iter()
        .filter_map(|x| evaluate(buy, sell, base, x, costs))
        .filter(|p| p.base_sold <= bounds.base_on_sell)
        .max_by(|a, b| a.net_usd.total_cmp(&b.net_usd))?;
    (best.net_usd > 0.0).then_some(best)
}
