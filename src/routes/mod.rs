//! Routes: cycles of 2–4 hops over the venue set, their exact output, and their optimal size.
//!
//! A [`Route`] is a cycle: each hop's output token is the next hop's input token, and the last
//! hop pays out the token the first one takes in, so the profit of a route is measured in its
//! starting token. Hops name pools by dense index into the engine's `&[Pool]` (the interned pool
//! table) and a [`Side`]; [`Route::new`] checks the token chain once, so the inner loop does not.
//!
//! - [`route_output`] chains the venues' native quotes; a route that visits the same pool twice
//!   sees its own first trade (the pool is applied on a scratch copy, the table is never touched).
//! - [`route_amounts`] gives every hop's output, for per-hop minimum outs.
//! - [`profit`] is output minus input, signed.
//! - [`size`] finds the input that maximises profit within [`SizingLimits`]: a closed form where
//!   one exists (two V2 pairs, a PMM or a V2 pair against a constant-price leg), checked on the
//!   neighbouring integers; otherwise an integer golden-section search (first over powers of two,
//!   then linearly), robust to flat stretches and to inputs the venues refuse.
//!
//! Inputs: the pool table and the quote context of the block the trade lands in. Outputs: amounts
//! in raw token units ([`U256`]), never floats. Nothing here panics on input; refusals are typed
//! ([`RouteError`], [`SizingError`], [`VenueError`]), and an unprofitable route sizes to a no-trade
//! [`SizedTrade`], which is an outcome, not an error.
//!
//! Scope: tokens are matched by address, so a route that crosses chains (a bridge leg) relies on
//! the token graph giving each chain's token its own address. Only a pool visited twice sees the
//! route's earlier trades; state shared between *different* pools (two synthetic markets of one
//! contract and trader share its settlement lock and collateral) is not modelled here.

mod error;
pub mod sizing;
#[cfg(test)]
mod tests;

use alloy::primitives::{Address, I256, U256};
use smallvec::SmallVec;

use crate::venues::{Pool, QuoteCtx, Side, Venue, VenueError};

pub use error::{RouteError, SizingError};
pub use sizing::{SizedTrade, SizingLimits, SizingMethod, size, size_traced};

/// Fewest hops in a route.
pub const MIN_HOPS: usize = 2;
/// Most hops in a route.
pub const MAX_HOPS: usize = 4;

/// One hop of a route: a pool of the table and the direction traded through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteHop {
    /// Dense index of the pool in the pool table.
    pub pool: usize,
    /// Which way the hop trades.
    pub side: Side,
}

impl RouteHop {
    /// A hop through `pool` on `side`.
    pub const fn new(pool: usize, side: Side) -> Self {
        Self { pool, side }
    }
}

/// Per-hop amounts of one evaluation of a route (one output per hop).
pub type HopAmounts = SmallVec<[U256; MAX_HOPS]>;

/// A checked cycle of 2–4 hops.
///
/// Invariants (checked by [`Route::new`] against the pool table it is built for): every pool index
/// is in range, each hop's output token is the next hop's input token, and the last hop's output
/// token is the first hop's input token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    hops: SmallVec<[RouteHop; MAX_HOPS]>,
    token: Address,
    revisits: bool,
}

/// Input and output token of a hop.
fn hop_tokens(pool: &Pool, side: Side) -> (Address, Address) {
    let (base, quote) = pool.tokens();
    match side {
        Side::SellBase => (base, quote),
        Side::SellQuote => (quote, base),
    }
}

impl Route {
    /// Checks `hops` against `pools` and builds the route.
    ///
    /// # Errors
    /// [`RouteError`] when the route has fewer than 2 or more than 4 hops, names a pool outside
    /// `pools`, breaks the token chain, or does not end in the token it starts with.
    pub fn new(pools: &[Pool], hops: &[RouteHop]) -> Result<Self, RouteError> {
        if !(MIN_HOPS..=MAX_HOPS).contains(&hops.len()) {
            return Err(RouteError::Length { hops: hops.len() });
        }
        let mut tokens: SmallVec<[(Address, Address); MAX_HOPS]> = SmallVec::new();
        for (hop, h) in hops.iter().enumerate() {
            let pool = pools.get(h.pool).ok_or(RouteError::PoolIndex {
                hop,
                pool: h.pool,
                pools: pools.len(),
            })?;
            tokens.push(hop_tokens(pool, h.side));
        }
        for (hop, pair) in tokens.windows(2).enumerate() {
            if pair[0].1 != pair[1].0 {
                return Err(RouteError::Broken { hop, next: hop + 1 });
            }
        }
        let (first, last) = (tokens[0], tokens[tokens.len() - 1]);
        if last.1 != first.0 {
            return Err(RouteError::NotCycle);
        }
        let revisits =
            hops.iter().enumerate().any(|(i, h)| hops[i + 1..].iter().any(|g| g.pool == h.pool));
        Ok(Self { hops: hops.iter().copied().collect(), token: first.0, revisits })
    }

    /// The hops, in trading order.
    pub fn hops(&self) -> &[RouteHop] {
        &self.hops
    }

    /// The token the route starts and ends in (the profit token).
    pub const fn token(&self) -> Address {
        self.token
    }

    /// Whether some pool is traded more than once (later visits see the earlier trades).
    pub const fn revisits_pool(&self) -> bool {
        self.revisits
    }

    /// Checks that every pool index is inside a table of `pools` pools (a route is built for one
    /// table; this guards its use against another).
    ///
    /// # Errors
    /// [`RouteError::PoolIndex`] for the first hop outside the table.
    pub fn check_indices(&self, pools: usize) -> Result<(), RouteError> {
        match self.hops.iter().position(|h| h.pool >= pools) {
            Some(hop) => Err(RouteError::PoolIndex { hop, pool: self.hops[hop].pool, pools }),
            None => Ok(()),
        }
    }
}

/// A venue refusal at one hop of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HopError {
    /// Position of the hop.
    pub(crate) hop: usize,
    /// The refusal.
    pub(crate) error: VenueError,
    /// Whether the hop trades a pool an earlier hop already traded (its state depends on size).
    pub(crate) revisited: bool,
}

const INDEX_OUT_OF_RANGE: VenueError = VenueError::InvalidState("route pool index out of range");

/// A hop's venue readied for many quotes on one unchanged state: a PMM pool's target regression
/// and `1/i` done once ([`PmmPool::quoter`](crate::venues::pmm::PmmPool::quoter)).
#[allow(
    clippy::large_enum_variant,
    reason = "a few per sizing, on the stack: boxing the quoter would allocate on the hot path"
)]
enum Ready<'a> {
    Pmm(crate::venues::pmm::PmmQuoter<'a>),
    Other(&'a Pool),
}

/// A route whose venues are readied for the many evaluations of a size search: exactly
/// [`run_route`] for every input, without redoing per-state work on each. Only for routes that
/// visit each pool once (a revisit must see the earlier trade).
pub(crate) struct ReadyRoute<'a> {
    hops: SmallVec<[(Ready<'a>, Side); MAX_HOPS]>,
}

impl<'a> ReadyRoute<'a> {
    /// `route` over `pools` readied; `None` when it revisits a pool or names one outside `pools`.
    pub(crate) fn new(pools: &'a [Pool], route: &Route) -> Option<Self> {
        if route.revisits {
            return None;
        }
        let hops = route
            .hops
            .iter()
            .map(|h| {
                let ready = match pools.get(h.pool)? {
                    Pool::Pmm(p) => Ready::Pmm(p.quoter()),
                    other => Ready::Other(other),
                };
                Some((ready, h.side))
            })
            .collect::<Option<_>>()?;
        Some(Self { hops })
    }

    /// The route's output for `amount_in` (as [`run_route`]).
    pub(crate) fn run(&self, amount_in: U256, ctx: &QuoteCtx) -> Result<U256, HopError> {
        let mut amount = amount_in;
        for (hop, (venue, side)) in self.hops.iter().enumerate() {
            let quote = match venue {
                Ready::Pmm(q) => q.quote(*side, amount, ctx),
                Ready::Other(p) => p.quote(*side, amount, ctx),
            };
            amount = quote.map_err(|error| HopError { hop, error, revisited: false })?.amount_out;
        }
        Ok(amount)
    }
}

/// Runs the route on `amount_in`, calling `on_hop(hop, amount_out)` after every hop.
pub(crate) fn run_route(
    pools: &[Pool],
    route: &Route,
    amount_in: U256,
    ctx: &QuoteCtx,
    mut on_hop: impl FnMut(usize, U256),
) -> Result<U256, HopError> {
    let mut amount = amount_in;
    if !route.revisits {
        for (hop, h) in route.hops.iter().enumerate() {
            let fail = |error| HopError { hop, error, revisited: false };
            let pool = pools.get(h.pool).ok_or(fail(INDEX_OUT_OF_RANGE))?;
            amount = pool.quote(h.side, amount, ctx).map_err(fail)?.amount_out;
            on_hop(hop, amount);
        }
        return Ok(amount);
    }
    // A pool traded again later is applied on a scratch copy, so the later visit sees the trade.
    let mut scratch: SmallVec<[(usize, Pool); 2]> = SmallVec::new();
    for (hop, h) in route.hops.iter().enumerate() {
        let revisited = scratch.iter().any(|(i, _)| *i == h.pool);
        let fail = |error| HopError { hop, error, revisited };
        let quote = if let Some((_, pool)) = scratch.iter_mut().find(|(i, _)| *i == h.pool) {
            pool.apply(h.side, amount, ctx)
        } else {
            let pool = pools.get(h.pool).ok_or(fail(INDEX_OUT_OF_RANGE))?;
            if route.hops[hop + 1..].iter().any(|g| g.pool == h.pool) {
                let mut copy = pool.clone();
                let quote = copy.apply(h.side, amount, ctx);
                scratch.push((h.pool, copy));
                quote
            } else {
                pool.quote(h.side, amount, ctx)
            }
        };
        amount = quote.map_err(fail)?.amount_out;
        on_hop(hop, amount);
    }
    Ok(amount)
}

/// The exact output of `route` for `amount_in` of its starting token, in the same token.
///
/// # Errors
/// The first hop's [`VenueError`] (a pool index outside `pools` is
/// [`VenueError::InvalidState`]).
pub fn route_output(
    pools: &[Pool],
    route: &Route,
    amount_in: U256,
    ctx: &QuoteCtx,
) -> Result<U256, VenueError> {
    run_route(pools, route, amount_in, ctx, |_, _| ()).map_err(|e| e.error)
}

/// The output of every hop of `route` for `amount_in` (the last one is the route's output).
///
/// # Errors
/// As [`route_output`].
pub fn route_amounts(
    pools: &[Pool],
    route: &Route,
    amount_in: U256,
    ctx: &QuoteCtx,
) -> Result<HopAmounts, VenueError> {
    let mut amounts = HopAmounts::new();
    run_route(pools, route, amount_in, ctx, |_, out| amounts.push(out)).map_err(|e| e.error)?;
    Ok(amounts)
}

/// `amount_out − amount_in` as a signed number, or `None` when either does not fit in 255 bits.
pub(crate) fn signed_profit(amount_in: U256, amount_out: U256) -> Option<I256> {
    let out = I256::try_from(amount_out).ok()?;
    let inp = I256::try_from(amount_in).ok()?;
    out.checked_sub(inp)
}

/// Profit of `route` at `amount_in`: output minus input, in the starting token, signed.
///
/// # Errors
/// As [`route_output`]; [`VenueError::Overflow`] when an amount does not fit in 255 bits.
pub fn profit(
    pools: &[Pool],
    route: &Route,
    amount_in: U256,
    ctx: &QuoteCtx,
) -> Result<I256, VenueError> {
    let out = route_output(pools, route, amount_in, ctx)?;
    signed_profit(amount_in, out).ok_or(VenueError::Overflow)
}
