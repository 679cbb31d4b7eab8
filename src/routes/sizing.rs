//! Optimal input size of a route: the input that maximises `output − input` within limits.
//!
//! The profit of a cycle of concave venues is concave in its input (each hop's output is concave
//! and increasing in its input, and so is their composition), up to the venues' integer rounding.
//! Where the venues refuse an input (too small to pay anything out, past their reserves or caps),
//! the point is infeasible; since every hop is monotone, the feasible inputs form an interval.
//! [`size`] proceeds in steps:
//!
//! 1. **Mid-price bound.** At size zero each hop pays at most its mid price, and rates only fall
//!    with size, so if the product of the hops' mid prices (with a rounding allowance) is at most
//!    one the route cannot pay, and it is rejected without a single quote.
//! 2. **Closed form** where one exists, on two distinct pools:
//!    - two V2 pairs (DOMAIN §2.1, via [`v2::optimal_two_pool_input`](crate::venues::v2));
//!    - a PMM pool against a constant-price leg (reserve vault, bridge leg, a `k = 0` PMM):
//!      DOMAIN §1.11 via [`PmmPool::optimal_input_vs_price`];
//!    - a V2 pair against a constant-price leg (§2.1 with `E_in = R_in`, `E_out = ρ·R_out`).
//!
//!    The closed-form input is clamped to the limits and checked on the neighbouring integers,
//!    climbing while the profit improves. If its point is refused, or the climb is still
//!    improving after a few steps (a capacity the formula does not see), the search runs instead.
//! 3. **Bracketed search** otherwise:
//!    - find one feasible input among the powers of two in `[min_in, max_in]` (midpoint first,
//!      then quarters, eighths, …);
//!    - integer golden-section search over the exponents (the profit at `2^e` is unimodal in
//!      `e`, so about a dozen quotes bracket the optimum within a factor of four, even from
//!      `max_in = U256::MAX`);
//!    - integer golden-section search inside that bracket, down to the wei (or to
//!      [`SizingLimits::precision_bits`] of the input);
//!    - a local one-wei hill climb.
//!
//!    Equal values move the bracket right (a flat stretch of a concave curve is its top, and a
//!    flat rounded stretch of small inputs lies left of the rise). A refused probe counts as minus
//!    infinity; when both probes are refused, their position relative to a known feasible input
//!    says which end of the bracket moves (not the kind of refusal: a PMM answers "zero output" to
//!    absurdly large inputs as well as to tiny ones).
//!
//! No float decides an amount: every candidate is evaluated by the venues' exact integer quotes,
//! and the answer is the best evaluated input (ties go to the smaller input). Paused, locked and
//! unsupported end the sizing at once with [`SizingError::Venue`]; "no liquidity" and "invalid
//! state" do only when no input at all is feasible (a DVM answers "no liquidity" past its target).
//!
//! Precision: on a non-degenerate route the result is the integer optimum up to the venues' own
//! rounding; when the true profit is of the order of that rounding (a few raw units of the
//! route's coarsest token), the curve is noise and the result is any of its high points.

use alloy::primitives::{I256, U256, U512};

use super::{HopError, ReadyRoute, Route, SizingError, run_route, signed_profit};
use crate::venues::{
    Pool, QuoteCtx, Side, Venue, VenueError,
    pmm::PmmPool,
    v2::{self, V2Pair},
};

/// 1e18, the scale of prices and rates.
const ONE_E18: u64 = 1_000_000_000_000_000_000;

/// What the sizer may trade: the input range and how finely to resolve the optimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizingLimits {
    /// Smallest input worth trading (raw units of the route's token); 0 counts as 1.
    pub min_in: U256,
    /// Largest input allowed (capital, desk limit, flash-loan capacity).
    pub max_in: U256,
    /// The golden-section search stops once its bracket is narrower than
    /// `input >> precision_bits` (a one-wei climb follows; inputs below `2^precision_bits` are
    /// resolved to the wei). Near an interior optimum the profit is flat to second order, so the
    /// default 24 bits (6·10⁻⁸ of the size) cost about 10⁻¹⁴ of the profit, and at most 6·10⁻⁸ of
    /// it when the optimum is a capacity edge; each extra bit costs about 1.44 quotes.
    pub precision_bits: u32,
    /// A fee on the input paid out of the route's output, in bps rounded up (an ERC-3156
    /// lender's `flashFee`): the profit maximised is `output − input − ⌈input·fee/10⁴⌉`. The
    /// constant-price closed forms take it into the rate (a curved leg's marginal rate must pay
    /// `1 + fee`); two V2 pairs with a fee size by search.
    pub input_fee_bps: u32,
}

impl SizingLimits {
    /// Default [`SizingLimits::precision_bits`].
    pub const DEFAULT_PRECISION_BITS: u32 = 24;

    /// Inputs from `min_in` to `max_in`, default precision.
    pub const fn new(min_in: U256, max_in: U256) -> Self {
        Self { min_in, max_in, precision_bits: Self::DEFAULT_PRECISION_BITS, input_fee_bps: 0 }
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
/// The mid-price bound runs first, so a route that cannot pay sizes to no trade even when one of
/// its venues is paused.
///
/// # Errors
/// - [`SizingError::Route`] when a hop names a pool outside `pools`;
/// - [`SizingError::EmptyRange`] when `min_in > max_in` (and `max_in > 0`);
/// - [`SizingError::Venue`] when a venue is paused, locks the trader or does not trade in the
///   hop's direction (at the first quote), or refuses every input for a reason other than size
///   (no liquidity, invalid state).
pub fn size(
    pools: &[Pool],
    route: &Route,
    limits: &SizingLimits,
    ctx: &QuoteCtx,
) -> Result<SizedTrade, SizingError> {
    size_with(pools, route, limits, ctx, true, None)
}

/// As [`size`], appending every input it evaluated to `trace`, in order (the quotes a sizer
/// without native math would ask a node for: the bench's eth_call baseline replays them).
///
/// # Errors
/// As [`size`].
pub fn size_traced(
    pools: &[Pool],
    route: &Route,
    limits: &SizingLimits,
    ctx: &QuoteCtx,
    trace: &mut Vec<U256>,
) -> Result<SizedTrade, SizingError> {
    size_with(pools, route, limits, ctx, true, Some(trace))
}

/// As [`size`] with the closed forms off (tests and benches compare the two paths).
///
/// # Errors
/// As [`size`].
#[doc(hidden)]
pub fn size_by_search(
    pools: &[Pool],
    route: &Route,
    limits: &SizingLimits,
    ctx: &QuoteCtx,
) -> Result<SizedTrade, SizingError> {
    size_with(pools, route, limits, ctx, false, None)
}

fn size_with(
    pools: &[Pool],
    route: &Route,
    limits: &SizingLimits,
    ctx: &QuoteCtx,
    closed_forms: bool,
    mut trace: Option<&mut Vec<U256>>,
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
    let fee_bps = U256::from(limits.input_fee_bps);
    // The search quotes the same pools dozens of times on one state: per-state work once.
    let ready = ReadyRoute::new(pools, route);
    let mut ev = Evaluator::new(|x: U256| {
        if let Some(t) = trace.as_deref_mut() {
            t.push(x);
        }
        let out = match &ready {
            Some(r) => r.run(x, ctx),
            None => run_route(pools, route, x, ctx, |_, _| ()),
        };
        out.map(|out| {
            if fee_bps.is_zero() {
                return out;
            }
            let num = x.saturating_mul(fee_bps);
            let fee = if num.is_zero() {
                U256::ZERO
            } else {
                (num - U256::ONE) / U256::from(10_000u32) + U256::ONE
            };
            out.saturating_sub(fee)
        })
    });
    if let Some((guess, method)) =
        closed_form(pools, route, limits.input_fee_bps).filter(|_| closed_forms)
        && let Some(sized) = refine_closed_form(&mut ev, guess, lo, hi, method)?
    {
        return Ok(sized);
    }
    search(&mut ev, lo, hi, limits.precision_bits)?;
    ev.finish(SizingMethod::Search)
}

// ------------------------------------------------------------------------------------------------
// Evaluation

/// One evaluated input: its profit, or refused. Which side of the feasible interval a refused
/// input lies on follows from any feasible input (the feasible inputs form an interval), not from
/// the kind of refusal: a venue may answer "zero output" to an absurdly large input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Point {
    /// Feasible, with this profit.
    Value(I256),
    /// Refused by a venue (or the profit does not fit 255 bits).
    Infeasible,
}

impl Point {
    const fn value(self) -> Option<I256> {
        match self {
            Self::Value(v) => Some(v),
            Self::Infeasible => None,
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
/// Most one-wei steps of the final climb in each direction.
const CLIMB_STEPS: u32 = 16;

/// The route as a function of its input: its output, or the refusing hop.
trait RouteFn: FnMut(U256) -> Result<U256, HopError> {}
impl<F: FnMut(U256) -> Result<U256, HopError>> RouteFn for F {}

/// Evaluates the route (`route(amount_in)` gives its output), counts evaluations, remembers the
/// best point, the first refusal that is not about size, and the last few answers.
struct Evaluator<F> {
    route: F,
    evaluations: u32,
    best: Option<Best>,
    /// First refusal of a kind that no size should fix (no liquidity, invalid state), reported
    /// if no input at all turns out feasible.
    stuck: Option<(usize, VenueError)>,
    memo: [(U256, Point); MEMO],
    memo_len: usize,
    memo_next: usize,
}

impl<F: RouteFn> Evaluator<F> {
    fn new(route: F) -> Self {
        Self {
            route,
            evaluations: 0,
            best: None,
            stuck: None,
            memo: [(U256::ZERO, Point::Infeasible); MEMO],
            memo_len: 0,
            memo_next: 0,
        }
    }

    /// Profit at `amount_in`. Ends the sizing on a refusal that holds whatever the size (paused,
    /// locked, unsupported direction).
    fn eval(&mut self, amount_in: U256) -> Result<Point, SizingError> {
        if let Some((_, p)) = self.memo[..self.memo_len].iter().find(|(x, _)| *x == amount_in) {
            return Ok(*p);
        }
        self.evaluations = self.evaluations.saturating_add(1);
        let point = if amount_in.is_zero() {
            Point::Infeasible
        } else {
            match (self.route)(amount_in) {
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
                    None => Point::Infeasible,
                },
                Err(e) => match e.error {
                    VenueError::Paused | VenueError::Locked { .. } | VenueError::Unsupported
                        if !e.revisited =>
                    {
                        return Err(SizingError::Venue { hop: e.hop, error: e.error });
                    }
                    error => {
                        // "No liquidity" can be a size matter too (a DVM past its target), and a
                        // pool traded twice can run dry because of the first visit.
                        if !error.is_size_dependent() && !e.revisited && self.stuck.is_none() {
                            self.stuck = Some((e.hop, error));
                        }
                        Point::Infeasible
                    }
                },
            }
        };
        self.memo[self.memo_next] = (amount_in, point);
        self.memo_next = (self.memo_next + 1) % MEMO;
        self.memo_len = (self.memo_len + 1).min(MEMO);
        Ok(point)
    }

    /// The outcome: the best point if it pays, otherwise no trade; an error when no input was
    /// feasible and a venue refused for a reason other than size.
    fn finish(&self, method: SizingMethod) -> Result<SizedTrade, SizingError> {
        match (self.best, &self.stuck) {
            (Some(b), _) if b.profit > I256::ZERO => Ok(SizedTrade {
                amount_in: b.amount_in,
                amount_out: b.amount_out,
                profit: b.profit.unsigned_abs(),
                method,
                evaluations: self.evaluations,
            }),
            (None, Some((hop, error))) => {
                Err(SizingError::Venue { hop: *hop, error: error.clone() })
            }
            _ => Ok(SizedTrade::no_trade(method, self.evaluations)),
        }
    }

    /// Climbs from the best point by one wei in each direction while the profit strictly improves.
    /// Returns false when a direction was still improving after [`CLIMB_STEPS`] steps.
    fn climb(&mut self, lo: U256, hi: U256) -> Result<bool, SizingError> {
        let mut settled = true;
        for up in [true, false] {
            let mut steps = 0;
            loop {
                let Some(best) = self.best else { return Ok(true) };
                if steps == CLIMB_STEPS {
                    settled = false;
                    break;
                }
                steps += 1;
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
        Ok(settled)
    }
}

// ------------------------------------------------------------------------------------------------
// Search

/// Safety net on golden-section iterations (each shrinks the bracket by at least one; 400 covers a
/// 256-bit range with room to spare).
const MAX_ITERATIONS: u32 = 400;
/// Brackets this narrow are scanned point by point.
const SCAN_WIDTH: u64 = 4;
/// Most probes spent looking for a first feasible exponent.
const MAX_FEASIBILITY_PROBES: u32 = 72;

/// `w × (1 − 1/φ)` ≈ `0.381966·w`, rounded down, without overflow.
fn golden_step(w: U256) -> U256 {
    const NUM: u64 = 381_966;
    const DEN: u64 = 1_000_000;
    let (num, den) = (U256::from(NUM), U256::from(DEN));
    (w / den) * num + (w % den) * num / den
}

/// Integer golden-section search for the maximum of the unimodal `d ↦ profit(map(d))` over the
/// domain `[lo, hi]`, given a feasible domain point `anchor` (refused points left of it are too
/// small, right of it too large), stopping once the bracket is at most `stop(lo)` wide (brackets
/// of [`SCAN_WIDTH`] or less are scanned). Returns the best domain point it evaluated.
fn golden<F: RouteFn>(
    ev: &mut Evaluator<F>,
    mut lo: U256,
    mut hi: U256,
    anchor: U256,
    map: impl Fn(U256) -> U256,
    stop: impl Fn(U256) -> U256,
) -> Result<Option<U256>, SizingError> {
    let mut best: Option<(U256, I256)> = None;
    let probe = |ev: &mut Evaluator<F>, best: &mut Option<(U256, I256)>, d: U256| {
        let p = ev.eval(map(d))?;
        if let Point::Value(v) = p
            && best.is_none_or(|(bd, bv)| v > bv || (v == bv && d < bd))
        {
            *best = Some((d, v));
        }
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
        let fresh = |ev: &mut Evaluator<F>, best: &mut Option<(U256, I256)>| {
            let d = golden_step(w).max(U256::ONE);
            let (a, b) = (lo + d, hi - d);
            let b = if b <= a { a + U256::ONE } else { b };
            let pa = probe(ev, best, a)?;
            let pb = probe(ev, best, b)?;
            Ok::<_, SizingError>((a, pa, b, pb))
        };
        // Reuse the surviving probe: its mirror in the new bracket is the other golden point.
        let fifth = w / U256::from(5u8);
        let (a, pa, b, pb) = match keep.take() {
            Some((c, pc)) if c > lo && c < hi && c - lo >= fifth && hi - c >= fifth => {
                let m = lo + (hi - c);
                if m == c {
                    fresh(ev, &mut best)?
                } else {
                    let pm = probe(ev, &mut best, m)?;
                    if m < c { (m, pm, c, pc) } else { (c, pc, m, pm) }
                }
            }
            _ => fresh(ev, &mut best)?,
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
            // Refused right of a feasible point: past the feasible interval.
            (Some(_), None) => {
                hi = b - U256::ONE;
                keep = Some((a, pa));
            }
            // Refused left of a feasible point: before it.
            (None, Some(_)) => {
                lo = a + U256::ONE;
                keep = Some((b, pb));
            }
            // Both refused: the anchor says on which side the feasible interval lies.
            (None, None) => {
                if b < anchor {
                    lo = b + U256::ONE;
                } else if a > anchor {
                    hi = a - U256::ONE;
                } else {
                    lo = a + U256::ONE;
                    hi = b - U256::ONE;
                }
            }
        }
    }
    if lo <= hi && hi - lo <= scan {
        let mut d = lo;
        loop {
            probe(ev, &mut best, d)?;
            if d >= hi {
                break;
            }
            d += U256::ONE;
        }
    }
    Ok(best.map(|(d, _)| d))
}

/// `2^e` clamped to `[lo, hi]` (`e ≥ 256` gives `hi`).
fn pow2_clamped(e: U256, lo: U256, hi: U256) -> U256 {
    let e = usize::try_from(e).unwrap_or(usize::MAX);
    if e >= 256 {
        return hi;
    }
    (U256::ONE << e).clamp(lo, hi)
}

/// A feasible exponent in `[e_lo, e_hi]`: the midpoint first, then the quarter points, the
/// eighths and so on ([`MAX_FEASIBILITY_PROBES`] at most), then the two ends.
fn feasible_exponent<F: RouteFn>(
    ev: &mut Evaluator<F>,
    e_lo: usize,
    e_hi: usize,
    map: impl Fn(U256) -> U256,
) -> Result<Option<usize>, SizingError> {
    let span = e_hi - e_lo;
    let mut tried = [0u64; 5]; // one bit per exponent offset 0..=256
    let mut probes = 0u32;
    let mut parts = 2usize;
    while probes < MAX_FEASIBILITY_PROBES && parts / 2 <= span.max(1) {
        for j in (1..parts).step_by(2) {
            let e = e_lo + span * j / parts;
            let (word, bit) = ((e - e_lo) / 64, (e - e_lo) % 64);
            if e == e_lo || e == e_hi || tried[word] & (1 << bit) != 0 {
                continue;
            }
            tried[word] |= 1 << bit;
            probes += 1;
            if ev.eval(map(U256::from(e)))?.value().is_some() {
                return Ok(Some(e));
            }
            if probes >= MAX_FEASIBILITY_PROBES {
                break;
            }
        }
        parts *= 2;
    }
    for e in [e_lo, e_hi] {
        if ev.eval(map(U256::from(e)))?.value().is_some() {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

/// Golden section over the exponents of two, then linearly inside the winning bracket, then a
/// local climb; the answer is in `ev.best`.
fn search<F: RouteFn>(
    ev: &mut Evaluator<F>,
    lo: U256,
    hi: U256,
    precision_bits: u32,
) -> Result<(), SizingError> {
    // Exponent range: 2^e_lo ≤ lo and 2^e_hi > hi, so the clamped ends are lo and hi.
    let e_lo = lo.bit_len().saturating_sub(1);
    let e_hi = hi.bit_len();
    let map = |e: U256| pow2_clamped(e, lo, hi);
    // A feasible input anchors the search: known already (a closed form's point) or found.
    let anchor = match ev.best {
        Some(b) => U256::from(b.amount_in.bit_len().saturating_sub(1).clamp(e_lo, e_hi)),
        None => match feasible_exponent(ev, e_lo, e_hi, map)? {
            Some(e) => U256::from(e),
            None => return Ok(()),
        },
    };
    let (e_lo, e_hi) = (U256::from(e_lo), U256::from(e_hi));
    let e = golden(ev, e_lo, e_hi, anchor, map, |_| U256::ZERO)?.unwrap_or(anchor);
    let l = if e > e_lo { map(e - U256::ONE) } else { lo };
    let h = if e < e_hi { map(e + U256::ONE) } else { hi };
    let anchor = ev.best.map_or(map(e), |b| b.amount_in);
    let shift = usize::try_from(precision_bits).unwrap_or(usize::MAX);
    let stop = |x: U256| if shift >= 256 { U256::ZERO } else { x >> shift };
    golden(ev, l, h, anchor, |x| x, stop)?;
    ev.climb(lo, hi)?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Mid-price bound

/// Whether the hops' mid prices alone prove that no size pays: at size zero a hop's rate is at
/// most its mid (base → quote) or the mid's reciprocal (quote → base), and rates fall with size.
/// Each mid gets an allowance for its own rounding (16 raw units plus 2⁻⁴⁰ of itself); a venue
/// without a mid, or a product too large for 256 bits, disables the bound.
fn mid_price_bound_rejects(pools: &[Pool], route: &Route) -> bool {
    let one = U256::from(ONE_E18);
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

/// A closed-form input for a two-hop route over distinct pools (`ZERO`: no size pays), and which
/// closed form gave it. With a fee of `fee_bps` on the input, maximising
/// `out(x) − x·(1 + f)` puts the curved leg's marginal rate at `(1 + f)/ρ` in either order, so
/// the constant-price forms run on `ρ/(1 + f)`; the route's input, when the constant-price leg
/// leads, is still `y*/ρ`.
fn closed_form(pools: &[Pool], route: &Route, fee_bps: u32) -> Option<(U256, SizingMethod)> {
    let [a, b] = route.hops() else { return None };
    if a.pool == b.pool {
        return None;
    }
    let (pa, pb) = (pools.get(a.pool)?, pools.get(b.pool)?);
    if let (Pool::V2(x), Pool::V2(y)) = (pa, pb) {
        if fee_bps > 0 {
            return None;
        }
        let input = v2::optimal_two_pool_input(x, a.side, y, b.side).unwrap_or(U256::ZERO);
        return Some((input, SizingMethod::TwoV2));
    }
    // One curved leg against a constant-price leg, in either order.
    let (curve, curve_side, rate, curve_first) =
        match (linear_rate(pa, a.side), linear_rate(pb, b.side)) {
            (None, Some(rate)) => (pa, a.side, rate, true),
            (Some(rate), None) => (pb, b.side, rate, false),
            _ => return None,
        };
    let net = if fee_bps == 0 {
        rate
    } else {
        let bps = U256::from(10_000u32);
        Rate {
            num: rate.num.checked_mul(bps)?,
            den: rate.den.checked_mul(bps.checked_add(U256::from(fee_bps))?)?,
        }
    };
    let (curve_in, method) = match curve {
        Pool::Pmm(p) => (pmm_vs_rate(p, curve_side, net)?, SizingMethod::PmmVsPrice),
        Pool::V2(p) => (v2_vs_rate(p, curve_side, net)?, SizingMethod::V2VsPrice),
        _ => return None,
    };
    // The curved leg's optimal input is `y*` in either order; led by the constant-price leg, the
    // route's input is `y*/ρ`.
    let input = if curve_first || curve_in.is_zero() {
        curve_in
    } else {
        curve_in.checked_mul(rate.den)? / rate.num
    };
    Some((input, method))
}

/// A constant exchange rate `num/den` (raw out per raw in, fees included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rate {
    num: U256,
    den: U256,
}

/// The rate of a venue that pays a constant price (up to its own rounding and capacity) on
/// `side`: a PMM pool with `k = 0` (a flat fill at `i`, DOMAIN §1.1), the reserve vault (1:1 less
/// its fee), a bridge leg (1:1 less its fee). `None` for curved venues (and for the synthetic
/// swap, whose positions no other venue trades).
fn linear_rate(pool: &Pool, side: Side) -> Option<Rate> {
    let one = U256::from(ONE_E18);
    let less_bps = |fee_bps: u16| {
        let keep = 10_000u64.checked_sub(u64::from(fee_bps)).filter(|k| *k > 0)?;
        Some(Rate { num: U256::from(keep), den: U256::from(10_000u64) })
    };
    match pool {
        Pool::Pmm(p) if p.k.is_zero() => {
            // raw = ⌊δ·i/1e18⌋ selling base, ⌊δ·⌊1e36/i⌋/1e18⌋ selling quote; fees off the output.
            let keep = one.checked_sub(p.lp_fee_rate.checked_add(p.mt_fee_rate)?)?;
            let price = match side {
                Side::SellBase => p.i,
                Side::SellQuote => (one * one).checked_div(p.i)?,
            };
            let num = price.checked_mul(keep)?;
            (!num.is_zero()).then(|| Rate { num, den: one * one })
        }
        Pool::Vault(v) => less_bps(v.fee_bps),
        Pool::Bridge(b) if side == Side::SellBase => less_bps(b.fee_bps),
        _ => None,
    }
}

/// PMM against a constant rate `ρ` closing the cycle: the PMM input that takes its marginal rate
/// (net of fees) to `1/ρ`, DOMAIN §1.11 through [`PmmPool::optimal_input_vs_price`], with the
/// external price `P*` of base in quote (1e18-scaled raw units) being `ρ` when the PMM sells
/// quote (the other leg turns base into quote) and `1/ρ` when it sells base.
fn pmm_vs_rate(pool: &PmmPool, side: Side, rate: Rate) -> Option<U256> {
    let one = U256::from(ONE_E18);
    let p_star = match side {
        Side::SellQuote => rate.num.checked_mul(one)? / rate.den,
        Side::SellBase => rate.den.checked_mul(one)? / rate.num,
    };
    match pool.optimal_input_vs_price(p_star) {
        Some((s, input)) if s == side => Some(input),
        _ => Some(U256::ZERO),
    }
}

/// V2 pair against a constant rate `ρ = n/d` closing the cycle (DOMAIN §2.1 with `E_in = R_in`
/// and `E_out = ρ·R_out`): `y* = (√(ρ·γ·R_in·R_out) − R_in)/γ`, in integers with γ in bps:
/// `y* = ⌊(⌊√(n·γ·R_in·R_out·10⁴/d)⌋ − 10⁴·R_in) / γ⌋`, computed in 512 bits.
fn v2_vs_rate(pair: &V2Pair, side: Side, rate: Rate) -> Option<U256> {
    const DEN_BPS: u64 = v2::FEE_DENOMINATOR_BPS as u64;
    let (r_in, r_out) = match side {
        Side::SellBase => (pair.reserve0, pair.reserve1),
        Side::SellQuote => (pair.reserve1, pair.reserve0),
    };
    let gamma = DEN_BPS.checked_sub(u64::from(pair.fee_bps)).filter(|g| *g > 0)?;
    if r_in == 0 || r_out == 0 || rate.den.is_zero() {
        return None;
    }
    // n·γ·R_in·R_out·10⁴ fits 512 bits unless the rate itself is absurd (n near 2²⁵⁶).
    let product = U512::from(rate.num)
        .checked_mul(U512::from(gamma))?
        .checked_mul(U512::from(r_in))?
        .checked_mul(U512::from(r_out))?
        .checked_mul(U512::from(DEN_BPS))?
        / U512::from(rate.den);
    let lhs = product.root(2);
    let rhs = U512::from(r_in) * U512::from(DEN_BPS);
    if lhs <= rhs {
        return Some(U256::ZERO);
    }
    let y = (lhs - rhs) / U512::from(gamma);
    // y < √product < 2²⁵⁶, but refuse rather than truncate.
    (y.bit_len() <= 256).then(|| U256::saturating_from(y))
}

/// Checks a closed-form input: clamps it to `[lo, hi]`, evaluates it and climbs over the
/// neighbouring integers. `None` when the closed form cannot be trusted here (its point is
/// infeasible, or the climb keeps improving): the caller then searches, keeping the points seen.
fn refine_closed_form<F: RouteFn>(
    ev: &mut Evaluator<F>,
    guess: U256,
    lo: U256,
    hi: U256,
    method: SizingMethod,
) -> Result<Option<SizedTrade>, SizingError> {
    if guess.is_zero() {
        // The closed form says nothing pays; a profit at the smallest input would contradict it.
        return match ev.eval(lo)? {
            Point::Value(v) if v > I256::ZERO => Ok(None),
            _ => ev.finish(method).map(Some),
        };
    }
    let x = guess.clamp(lo, hi);
    if ev.eval(x)?.value().is_none() {
        return Ok(None);
    }
    if ev.climb(lo, hi)? { ev.finish(method).map(Some) } else { Ok(None) }
}

#[cfg(test)]
mod search_tests {
    //! The search on synthetic curves (no venues): exact optimum, flat tops, infeasible tails, a
    //! feasible window between powers of two, rounding noise, huge ranges, hard refusals.

    use super::*;

    fn u(x: u128) -> U256 {
        U256::from(x)
    }

    /// Sizes a synthetic route given as `x ↦ output` (u128, saturating).
    fn run(
        lo: u128,
        hi: U256,
        bits: u32,
        f: impl Fn(u128) -> Result<u128, VenueError>,
    ) -> Result<SizedTrade, SizingError> {
        let mut ev = Evaluator::new(|x: U256| {
            let x = u128::try_from(x).map_err(|_| HopError {
                hop: 0,
                error: VenueError::Overflow,
                revisited: false,
            })?;
            f(x).map(U256::from).map_err(|error| HopError { hop: 0, error, revisited: false })
        });
        search(&mut ev, u(lo.max(1)), hi, bits)?;
        ev.finish(SizingMethod::Search)
    }

    /// Exhaustive maximum of `out(x) − x` over `[lo, hi]`.
    fn brute(lo: u128, hi: u128, f: impl Fn(u128) -> Result<u128, VenueError>) -> i128 {
        (lo..=hi).filter_map(|x| f(x).ok().map(|o| o as i128 - x as i128)).max().unwrap_or(0).max(0)
    }

    /// A V2-like concave curve: `out = x·R·(1+m) / (R + x)`, refused past `cap` and when it pays 0.
    fn curve(r: u128, m_ppm: u128, cap: u128) -> impl Fn(u128) -> Result<u128, VenueError> {
        move |x| {
            if x > cap {
                return Err(VenueError::OverReserves);
            }
            let out = u(x) * u(r) / (u(r) + u(x)) * u(1_000_000 + m_ppm) / u(1_000_000);
            match u128::try_from(out) {
                Ok(0) => Err(VenueError::ZeroOutput),
                Ok(out) => Ok(out),
                Err(_) => Err(VenueError::Overflow),
            }
        }
    }

    #[test]
    fn finds_the_exact_integer_optimum() {
        let f = curve(1_000_000, 20_000, u128::MAX);
        let sized = run(1, u(3_000_000), 256, &f).unwrap();
        // The floors make the integer curve wobble by a wei; the climb ends on a local top.
        assert!(sized.profit + u(2) >= u(brute(1, 3_000_000, &f) as u128), "{sized:?}");
        assert!(sized.evaluations < 80, "{sized:?}");
    }

    #[test]
    fn from_a_full_256_bit_range_in_few_quotes() {
        let r = 10u128.pow(24);
        let f = curve(r, 3_000, u128::MAX);
        let sized = run(1, U256::MAX, 256, &f).unwrap();
        assert!(sized.is_profitable());
        // Optimum of x·r·(1+m)/(r+x) − x: x* = r(√(1+m) − 1).
        let x_star = 1_498_876_684_342_567_116_208u128; // 1e24·(√1.003 − 1)
        let rel = sized.amount_in.abs_diff(u(x_star)) * u(1_000_000) / u(x_star);
        assert!(rel < u(10), "{sized:?}");
        assert!(sized.evaluations < 200, "{sized:?}");
        let coarse = run(1, U256::MAX, 24, &f).unwrap();
        assert!(coarse.evaluations < sized.evaluations, "{coarse:?} {sized:?}");
        assert!(coarse.profit * u(1_000_000) >= sized.profit * u(999_999), "{coarse:?}");
    }

    #[test]
    fn an_increasing_curve_stops_at_the_capacity() {
        // Pays more with size until the venue refuses (over reserves past 987,654).
        let f = |x: u128| if x > 987_654 { Err(VenueError::OverReserves) } else { Ok(x + x / 100) };
        let sized = run(1, u(u128::MAX), 256, f).unwrap();
        assert_eq!(sized.profit, u(9_876), "{sized:?}");
        assert!(sized.amount_in <= u(987_654));
        // Also from max_in well inside the capacity.
        let sized = run(1, u(500_000), 256, f).unwrap();
        assert_eq!(sized.amount_in, u(500_000));
    }

    #[test]
    fn a_flat_top_is_found() {
        // profit = min(x, 1e6) − max(0, x − 5e6): a plateau from 1e6 to 5e6.
        let f = |x: u128| Ok(x + x.min(1_000_000) - x.saturating_sub(5_000_000));
        let sized = run(1, u(100_000_000), 256, f).unwrap();
        assert_eq!(sized.profit, u(1_000_000), "{sized:?}");
    }

    #[test]
    fn a_narrow_feasible_window() {
        // Only 1,000..=1,030 quote (2^10 = 1,024 is inside; 512 and 2,048 are refused).
        let f = |x: u128| match x {
            ..1_000 => Err(VenueError::ZeroOutput),
            1_031.. => Err(VenueError::OverCap),
            _ => Ok(x + 2_000 - x),
        };
        let sized = run(1, u(1 << 40), 256, f).unwrap();
        assert_eq!(sized.amount_in, u(1_000), "{sized:?}");
        assert_eq!(sized.profit, u(1_000));
    }

    #[test]
    fn refusals_are_placed_by_position_not_by_kind() {
        // A venue that answers "zero output" to absurdly large inputs (as a PMM does) and "no
        // liquidity" past its capacity (as a DVM does): the optimum inside is still found.
        let base = curve(10u128.pow(12), 10_000, u128::MAX);
        let f = |x: u128| match x {
            ..100 => Err(VenueError::ZeroOutput),
            0x1_0000_0000_0000_0000.. => Err(VenueError::ZeroOutput),
            0x100_0000_0000..=0xffff_ffff_ffff_ffff => Err(VenueError::NoLiquidity),
            _ => base(x),
        };
        let sized = run(1, U256::MAX, 256, f).unwrap();
        // ≈ 1e12·(√1.01 − 1) = 4.9876e9.
        let x = sized.amount_in.to::<u128>();
        assert!((4_980_000_000..4_995_000_000).contains(&x), "{sized:?}");
        // "No liquidity" everywhere is an error, not "no trade".
        let err = run(1, U256::MAX, 40, |_| Err(VenueError::NoLiquidity)).unwrap_err();
        assert_eq!(err, SizingError::Venue { hop: 0, error: VenueError::NoLiquidity });
    }

    #[test]
    fn rounding_noise_does_not_derail_it() {
        // The curve with a deterministic ±3-wei wobble.
        let base = curve(10u128.pow(12), 5_000, u128::MAX);
        let f = |x: u128| {
            base(x).map(|o| (o + (x.wrapping_mul(0x9e37_79b9) >> 7) % 7).saturating_sub(3))
        };
        let sized = run(1, u(10u128.pow(13)), 256, f).unwrap();
        let best = brute(
            sized.amount_in.to::<u128>().saturating_sub(5_000),
            sized.amount_in.to::<u128>() + 5_000,
            f,
        );
        assert!(sized.profit + u(8) >= u(best as u128), "{sized:?} vs {best}");
        // ≈ 1e12·(√1.005 − 1) = 2.4969e9 in, profit ≈ 6.24e6.
        assert!(sized.profit > u(6_200_000), "{sized:?}");
    }

    #[test]
    fn an_unprofitable_curve_is_no_trade() {
        let f = curve(1_000_000, 0, u128::MAX);
        let sized = run(1, U256::MAX, 40, f).unwrap();
        assert_eq!(sized, SizedTrade::no_trade(SizingMethod::Search, sized.evaluations));
        assert!(!sized.is_profitable());
        assert!(sized.evaluations < 60, "{sized:?}");
        // Refused everywhere: also no trade.
        let sized = run(1, U256::MAX, 40, |_| Err(VenueError::ZeroOutput)).unwrap();
        assert!(!sized.is_profitable());
        let sized = run(1, U256::MAX, 40, |_| Err(VenueError::OverReserves)).unwrap();
        assert!(!sized.is_profitable());
    }

    #[test]
    fn a_refusal_no_size_can_fix_is_an_error() {
        let err = run(1, U256::MAX, 40, |_| Err(VenueError::Paused)).unwrap_err();
        assert_eq!(err, SizingError::Venue { hop: 0, error: VenueError::Paused });
        assert!(err.is_retryable());
    }

    #[test]
    fn min_in_above_the_optimum_takes_min_in_when_it_still_pays() {
        let f = curve(1_000_000, 20_000, u128::MAX);
        // Optimum ≈ 9,950; at 15,000 the profit is still positive.
        let sized = run(15_000, u(3_000_000), 256, &f).unwrap();
        assert_eq!(sized.amount_in, u(15_000));
        // At 40,000 it no longer pays: no trade.
        let sized = run(40_000, u(3_000_000), 256, &f).unwrap();
        assert!(!sized.is_profitable());
    }

    #[test]
    fn golden_step_does_not_overflow() {
        assert!(golden_step(U256::MAX) < U256::MAX);
        assert_eq!(golden_step(u(1_000_000)), u(381_966));
        assert_eq!(pow2_clamped(u(300), u(1), u(7)), u(7));
        assert_eq!(pow2_clamped(u(0), u(3), u(7)), u(3));
    }
}
