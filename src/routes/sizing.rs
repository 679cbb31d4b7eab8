//! Optimal input size of a route: the input that maximises `output − input` within limits.
//!
//! The profit of a cycle of concave venues is concave in its input (each hop's output is concave
//! and increasing in its input, and so is their composition), up to the venues' integer rounding.
//! Where the venues refuse an input (too small to pay anything out, past their reserves or caps),
//! the point is infeasible; the feasible inputs form an interval. [`size`] proceeds in steps:
//!
//! 1. **Mid-price bound.** At size zero each hop pays at most its mid price, and rates only fall
//!    with size, so if the product of the hops' mid prices (with a rounding allowance) is at most
//!    one the route cannot pay, and it is rejected without a single quote.
//! 2. **Closed form** where one exists, on two distinct pools:
//!    - two V2 pairs (DOMAIN §2.1, via [`v2::optimal_two_pool_input`](crate::venues::v2));
//!    - a PMM pool against a constant-price leg (vault, synth, bridge): DOMAIN §1.11 via the PMM
//!      helper;
//!    - a V2 pair against a constant-price leg (§2.1 with `E_in = R_in`, `E_out = p·R_out`).
//!
//!    The closed-form input is clamped to the limits and then checked on the neighbouring
//!    integers, climbing while the profit improves; if it is infeasible the search runs instead.
//! 3. **Bracketed search** otherwise: an integer golden-section search over the exponents of two
//!    in `[min_in, max_in]` (the profit at `2^e` is unimodal in `e`, so a dozen quotes bracket the
//!    optimum within a factor of four from any range, even `U256::MAX`), then an integer
//!    golden-section search inside that bracket down to the wei (or to
//!    [`SizingLimits::precision_bits`]), then a local integer hill climb. Equal values move the
//!    bracket right (a flat rounded stretch sits left of the rise). An infeasible probe counts as
//!    minus infinity; when both probes are infeasible, the refusal says which way to go: "too
//!    small" (zero input or output) moves the left end up, "too large" (over reserves, overflow,
//!    over cap) shrinks the bracket from the right.
//!
//! No float decides an amount: every candidate is evaluated by the venues' exact integer quotes,
//! and the answer is the best evaluated input. A refusal that no size can change (paused, locked,
//! no liquidity, invalid state, unsupported) ends the sizing with [`SizingError::Venue`].

use alloy::primitives::{I256, U256};

use super::{Route, SizingError, run_route, signed_profit};
use crate::venues::{Pool, QuoteCtx, Side, Venue, VenueError};

/// What the sizer may trade: the input range and how finely to resolve the optimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizingLimits {
    /// Smallest input worth trading (raw units of the route's token); 0 counts as 1.
    pub min_in: U256,
    /// Largest input allowed (capital, desk limit, flash-loan capacity).
    pub max_in: U256,
    /// The search stops once the bracket is narrower than `input >> precision_bits` (and never
    /// above the wei for inputs below `2^precision_bits`). Profit near the optimum is flat to
    /// second order, so 40 bits lose nothing measurable; lower values save quotes.
    pub precision_bits: u32,
}

impl SizingLimits {
    /// Default [`SizingLimits::precision_bits`].
    pub const DEFAULT_PRECISION_BITS: u32 = 40;

    /// Inputs from `min_in` to `max_in`, default precision.
    pub const fn new(min_in: U256, max_in: U256) -> Self {
        Self { min_in, max_in, precision_bits: Self::DEFAULT_PRECISION_BITS }
    }

    /// Inputs from 1 wei to `max_in`, default precision.
    pub const fn up_to(max_in: U256) -> Self {
        Self::new(U256::ONE, max_in)
    }
}

impl Default for SizingLimits {
    /// Any input (1 wei to `U256::MAX`): only the venues' own capacity limits the size.
    fn default() -> Self {
        Self::up_to(U256::MAX)
    }
}

/// How the size was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SizingMethod {
    /// The product of the hops' mid prices is at most one: no size pays.
    MidPriceBound,
    /// Closed form for two V2 pairs (DOMAIN §2.1).
    TwoV2,
    /// Closed form for a PMM pool against a constant-price leg (DOMAIN §1.11).
    PmmVsPrice,
    /// Closed form for a V2 pair against a constant-price leg.
    V2VsPrice,
    /// Golden-section search over powers of two, then linearly, then a local integer climb.
    Search,
}

/// The sized trade: the best input, its exact output and profit. An input of zero means "do not
/// trade" (no input in the limits makes a profit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizedTrade {
    /// Input in raw units of the route's token; zero for no trade.
    pub amount_in: U256,
    /// Exact route output for `amount_in` (the venues' own quotes), same token.
    pub amount_out: U256,
    /// `amount_out − amount_in`, positive when trading, zero for no trade.
    pub profit: U256,
    /// How the size was decided.
    pub method: SizingMethod,
    /// Route evaluations (quotes of the whole route) spent.
    pub evaluations: u32,
}

impl SizedTrade {
    /// The no-trade outcome.
    pub const fn no_trade(method: SizingMethod, evaluations: u32) -> Self {
        Self {
            amount_in: U256::ZERO,
            amount_out: U256::ZERO,
            profit: U256::ZERO,
            method,
            evaluations,
        }
    }

    /// Whether the route pays at its best size (otherwise do not trade).
    pub fn is_profitable(&self) -> bool {
        !self.amount_in.is_zero()
    }
}

/// The input to `route` that maximises its profit within `limits`.
///
/// An unprofitable route is an outcome, not an error: it returns [`SizedTrade::no_trade`]
/// (`is_profitable()` is false). A profitable one returns the best input found, its exact output
/// (equal to [`route_output`](super::route_output) at that input) and its profit.
///
/// # Errors
/// - [`SizingError::Route`] when a hop names a pool outside `pools`;
/// - [`SizingError::EmptyRange`] when `min_in > max_in` (and `max_in > 0`);
/// - [`SizingError::Venue`] when a venue refuses for a reason no size changes (paused, locked,
///   empty, invalid state, unsupported direction).
pub fn size(
    pools: &[Pool],
    route: &Route,
    limits: &SizingLimits,
    ctx: &QuoteCtx,
) -> Result<SizedTrade, SizingError> {
    route.check_indices(pools.len())?;
    if limits.max_in.is_zero() {
        return Ok(SizedTrade::no_trade(SizingMethod::Search, 0));
    }
    let lo = limits.min_in.max(U256::ONE);
    let hi = limits.max_in;
    if lo > hi {
        return Err(SizingError::EmptyRange { min_in: limits.min_in, max_in: limits.max_in });
    }
    if mid_price_bound_rejects(pools, route) {
        return Ok(SizedTrade::no_trade(SizingMethod::MidPriceBound, 0));
    }
    let mut ev = Evaluator::new(pools, route, ctx);
    if let Some((guess, method)) = closed_form(pools, route) {
        if let Some(sized) = refine_closed_form(&mut ev, guess, lo, hi, method)? {
            return Ok(sized);
        }
    }
    search(&mut ev, lo, hi, limits.precision_bits)?;
    Ok(ev.finish(SizingMethod::Search))
}

// ------------------------------------------------------------------------------------------------
// Evaluation

/// One evaluated input: its profit, or which side of the feasible interval it lies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Point {
    /// Feasible, with this profit.
    Value(I256),
    /// Refused as too small (zero input or output somewhere on the route).
    TooSmall,
    /// Refused as too large (over reserves, over a cap, overflow).
    TooLarge,
}

impl Point {
    const fn value(self) -> Option<I256> {
        match self {
            Self::Value(v) => Some(v),
            Self::TooSmall | Self::TooLarge => None,
        }
    }
}

/// The best feasible input seen so far.
#[derive(Clone, Copy, Debug)]
struct Best {
    amount_in: U256,
    amount_out: U256,
    profit: I256,
}

const MEMO: usize = 8;

/// Evaluates the route, counts evaluations, remembers the best point and the last few answers.
struct Evaluator<'a> {
    pools: &'a [Pool],
    route: &'a Route,
    ctx: &'a QuoteCtx,
    evaluations: u32,
    best: Option<Best>,
    memo: [(U256, Point); MEMO],
    memo_len: usize,
    memo_next: usize,
}

impl<'a> Evaluator<'a> {
    fn new(pools: &'a [Pool], route: &'a Route, ctx: &'a QuoteCtx) -> Self {
        Self {
            pools,
            route,
            ctx,
            evaluations: 0,
            best: None,
            memo: [(U256::ZERO, Point::TooSmall); MEMO],
            memo_len: 0,
            memo_next: 0,
        }
    }

    fn eval(&mut self, amount_in: U256) -> Result<Point, SizingError> {
        if let Some((_, p)) = self.memo[..self.memo_len].iter().find(|(x, _)| *x == amount_in) {
            return Ok(*p);
        }
        self.evaluations = self.evaluations.saturating_add(1);
        let point = if amount_in.is_zero() {
            Point::TooSmall
        } else {
            match run_route(self.pools, self.route, amount_in, self.ctx, |_, _| ()) {
                Ok(amount_out) => match signed_profit(amount_in, amount_out) {
                    Some(profit) => {
                        let better = self.best.is_none_or(|b| {
                            profit > b.profit || (profit == b.profit && amount_in < b.amount_in)
                        });
                        if better {
                            self.best = Some(Best { amount_in, amount_out, profit });
                        }
                        Point::Value(profit)
                    }
                    None => Point::TooLarge,
                },
                Err(e) => match e.error {
                    VenueError::ZeroInput | VenueError::ZeroOutput => Point::TooSmall,
                    VenueError::OverReserves | VenueError::Overflow | VenueError::OverCap => {
                        Point::TooLarge
                    }
                    // A pool traded twice can run dry (or otherwise refuse) because of the first
                    // visit: that depends on size.
                    _ if e.revisited => Point::TooLarge,
                    error => return Err(SizingError::Venue { hop: e.hop, error }),
                },
            }
        };
        self.memo[self.memo_next] = (amount_in, point);
        self.memo_next = (self.memo_next + 1) % MEMO;
        self.memo_len = (self.memo_len + 1).min(MEMO);
        Ok(point)
    }

    /// The outcome: the best point if it pays, otherwise no trade.
    fn finish(&self, method: SizingMethod) -> SizedTrade {
        match self.best {
            Some(b) if b.profit > I256::ZERO => SizedTrade {
                amount_in: b.amount_in,
                amount_out: b.amount_out,
                profit: b.profit.unsigned_abs(),
                method,
                evaluations: self.evaluations,
            },
            _ => SizedTrade::no_trade(method, self.evaluations),
        }
    }

    /// Climbs from the best point by one wei in each direction while the profit strictly improves.
    fn climb(&mut self, lo: U256, hi: U256) -> Result<(), SizingError> {
        const STEPS: usize = 16;
        for up in [true, false] {
            for _ in 0..STEPS {
                let Some(best) = self.best else { return Ok(()) };
                let next = if up {
                    if best.amount_in >= hi {
                        break;
                    }
                    best.amount_in + U256::ONE
                } else {
                    if best.amount_in <= lo {
                        break;
                    }
                    best.amount_in - U256::ONE
                };
                match self.eval(next)? {
                    Point::Value(v) if v > best.profit => {}
                    _ => break,
                }
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// Search

/// Safety net on golden-section iterations (each shrinks the bracket by at least one; 400 covers a
/// 256-bit range with room to spare).
const MAX_ITERATIONS: u32 = 400;
/// Brackets this narrow are scanned point by point.
const SCAN_WIDTH: u64 = 4;

/// What one golden-section run saw, in its own domain.
#[derive(Clone, Copy, Debug, Default)]
struct Golden {
    /// Best feasible domain point and its profit.
    best: Option<(U256, I256)>,
    /// Largest domain point refused as too small.
    small_max: Option<U256>,
    /// Smallest domain point refused as too large.
    large_min: Option<U256>,
}

impl Golden {
    fn record(&mut self, d: U256, p: Point) {
        match p {
            Point::Value(v) => {
                if self.best.is_none_or(|(bd, bv)| v > bv || (v == bv && d < bd)) {
                    self.best = Some((d, v));
                }
            }
            Point::TooSmall => self.small_max = Some(self.small_max.map_or(d, |s| s.max(d))),
            Point::TooLarge => self.large_min = Some(self.large_min.map_or(d, |s| s.min(d))),
        }
    }
}

/// `w × (1 − 1/φ)` ≈ `0.381966·w`, rounded down, without overflow.
fn golden_step(w: U256) -> U256 {
    const NUM: u64 = 381_966;
    const DEN: u64 = 1_000_000;
    let (num, den) = (U256::from(NUM), U256::from(DEN));
    (w / den) * num + (w % den) * num / den
}

/// Integer golden-section search for the maximum of the unimodal `d ↦ profit(map(d))` over the
/// domain `[lo, hi]`, stopping once the bracket is at most `stop(lo)` wide (brackets of
/// [`SCAN_WIDTH`] or less are scanned).
fn golden(
    ev: &mut Evaluator<'_>,
    mut lo: U256,
    mut hi: U256,
    map: impl Fn(U256) -> U256,
    stop: impl Fn(U256) -> U256,
) -> Result<Golden, SizingError> {
    let mut seen = Golden::default();
    let probe = |ev: &mut Evaluator<'_>, seen: &mut Golden, d: U256| {
        let p = ev.eval(map(d))?;
        seen.record(d, p);
        Ok::<_, SizingError>(p)
    };
    let scan = U256::from(SCAN_WIDTH);
    let mut keep: Option<(U256, Point)> = None;
    let mut iterations = 0u32;
    while lo <= hi {
        let w = hi - lo;
        if w <= scan || w <= stop(lo) || iterations >= MAX_ITERATIONS {
            break;
        }
        iterations += 1;
        let fresh = |ev: &mut Evaluator<'_>, seen: &mut Golden| {
            let d = golden_step(w).max(U256::ONE);
            let (a, b) = (lo + d, hi - d);
            let b = if b <= a { a + U256::ONE } else { b };
            let pa = probe(ev, seen, a)?;
            let pb = probe(ev, seen, b)?;
            Ok::<_, SizingError>((a, pa, b, pb))
        };
        // Reuse the surviving probe: its mirror in the new bracket is the other golden point.
        let fifth = w / U256::from(5u8);
        let (a, pa, b, pb) = match keep.take() {
            Some((c, pc)) if c > lo && c < hi && c - lo >= fifth && hi - c >= fifth => {
                let m = lo + (hi - c);
                if m == c {
                    fresh(ev, &mut seen)?
                } else {
                    let pm = probe(ev, &mut seen, m)?;
                    if m < c { (m, pm, c, pc) } else { (c, pc, m, pm) }
                }
            }
            _ => fresh(ev, &mut seen)?,
        };
        match (pa.value(), pb.value()) {
            (Some(va), Some(vb)) => {
                if va > vb {
                    hi = b;
                    keep = Some((a, pa));
                } else {
                    // Ties move right: a flat stretch of a concave curve is its top, and a flat
                    // rounded stretch of small inputs lies left of the rise.
                    lo = a;
                    keep = Some((b, pb));
                }
            }
            (Some(_), None) => {
                hi = b - U256::ONE;
                keep = Some((a, pa));
            }
            (None, Some(_)) => {
                lo = a + U256::ONE;
                keep = Some((b, pb));
            }
            (None, None) => match (pa, pb) {
                (Point::TooLarge, _) => hi = a - U256::ONE,
                (_, Point::TooSmall) => lo = b + U256::ONE,
                _ => {
                    lo = a + U256::ONE;
                    hi = b - U256::ONE;
                }
            },
        }
    }
    if lo <= hi && hi - lo <= scan {
        let mut d = lo;
        loop {
            probe(ev, &mut seen, d)?;
            if d >= hi {
                break;
            }
            d += U256::ONE;
        }
    }
    Ok(seen)
}

/// `2^e` clamped to `[lo, hi]` (`e ≥ 256` gives `hi`).
fn pow2_clamped(e: U256, lo: U256, hi: U256) -> U256 {
    let e = usize::try_from(e).unwrap_or(usize::MAX);
    if e >= 256 {
        return hi;
    }
    (U256::ONE << e).clamp(lo, hi)
}

/// Golden section over the exponents of two, then linearly inside the winning bracket, then a
/// local climb; the answer is in `ev.best`.
fn search(ev: &mut Evaluator<'_>, lo: U256, hi: U256, precision_bits: u32) -> Result<(), SizingError> {
    // Exponent range: 2^e_lo ≤ lo and 2^e_hi > hi, so the clamped ends are lo and hi.
    let e_lo = U256::from(lo.bit_len().saturating_sub(1));
    let e_hi = U256::from(hi.bit_len());
    let map = |e: U256| pow2_clamped(e, lo, hi);
    let coarse = golden(ev, e_lo, e_hi, map, |_| U256::ZERO)?;
    let (l, h) = match coarse.best {
        Some((e, _)) => {
            let l = if e > e_lo { map(e - U256::ONE) } else { lo };
            let h = if e < e_hi { map(e + U256::ONE) } else { hi };
            (l, h)
        }
        // Nothing feasible at a power of two: the feasible inputs, if any, lie strictly between
        // the largest "too small" and the smallest "too large" exponent.
        None => match (coarse.small_max, coarse.large_min) {
            (Some(s), Some(t)) if s < t => {
                let (l, h) = (map(s) + U256::ONE, map(t).saturating_sub(U256::ONE));
                if l > h {
                    return Ok(());
                }
                (l, h)
            }
            _ => return Ok(()),
        },
    };
    let shift = usize::try_from(precision_bits).unwrap_or(usize::MAX);
    let stop = |x: U256| if shift >= 256 { U256::ZERO } else { x >> shift };
    golden(ev, l, h, |x| x, stop)?;
    ev.climb(lo, hi)
}

// ------------------------------------------------------------------------------------------------
// Mid-price bound

/// Whether the hops' mid prices alone prove that no size pays: at size zero a hop's rate is at
/// most its mid (base → quote) or the mid's reciprocal (quote → base), and rates fall with size.
/// Each mid gets an allowance for its own rounding (16 raw units plus 2⁻⁴⁰ of itself); a venue
/// without a mid, or a product too large for 256 bits, disables the bound.
fn mid_price_bound_rejects(pools: &[Pool], route: &Route) -> bool {
    let one = U256::from(10u64).pow(U256::from(18u8));
    let mut num = U256::ONE;
    let mut den = U256::ONE;
    for h in route.hops() {
        let Some(Ok(mid)) = pools.get(h.pool).map(Venue::mid_price) else { return false };
        let slack = U256::from(16u8) + (mid >> 40usize);
        let (n, d) = match h.side {
            Side::SellBase => (mid.saturating_add(slack), one),
            Side::SellQuote => {
                if mid <= slack {
                    return false;
                }
                (one, mid - slack)
            }
        };
        match (num.checked_mul(n), den.checked_mul(d)) {
            (Some(a), Some(b)) => (num, den) = (a, b),
            _ => return false,
        }
    }
    num <= den
}

// ------------------------------------------------------------------------------------------------
// Closed forms

/// A closed-form optimal input for the route, when one applies (`Some(ZERO)`: no size pays).
fn closed_form(_pools: &[Pool], _route: &Route) -> Option<(U256, SizingMethod)> {
    None
}

/// Checks a closed-form input: clamps it to `[lo, hi]`, evaluates it and climbs over neighbouring
/// integers. `None` when the closed-form point is infeasible (the caller then searches).
fn refine_closed_form(
    ev: &mut Evaluator<'_>,
    guess: U256,
    lo: U256,
    hi: U256,
    method: SizingMethod,
) -> Result<Option<SizedTrade>, SizingError> {
    if guess.is_zero() {
        // The closed form says nothing pays; a profit at the smallest input would contradict it.
        return Ok(match ev.eval(lo)? {
            Point::Value(v) if v > I256::ZERO => None,
            _ => Some(ev.finish(method)),
        });
    }
    let x = guess.clamp(lo, hi);
    match ev.eval(x)? {
        Point::Value(_) => {}
        Point::TooSmall | Point::TooLarge => return Ok(None),
    }
    ev.climb(lo, hi)?;
    Ok(Some(ev.finish(method)))
}
