//! From a sized route over the pool table to the executor's `Route` argument: per-hop minimum
//! outputs from the slippage cap, the flash loan that funds it, the deadline.

use alloy::primitives::{Address, U256};

use crate::{
    contracts::Executor,
    routes::{Route, route_amounts},
    venues::{Pool, QuoteCtx, VenueError, min_out},
};

/// Where a route's input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashPlan {
    /// The executor's own inventory.
    Inventory,
    /// An ERC-3156 lender.
    Erc3156(Address),
    /// A DODO V2 pool's `flashLoan`.
    Dodo(Address),
    /// A Uniswap V2 flash swap.
    UniV2(Address),
}

impl FlashPlan {
    /// The lender, pool or pair lent from.
    pub const fn source(&self) -> Option<Address> {
        match self {
            Self::Inventory => None,
            Self::Erc3156(a) | Self::Dodo(a) | Self::UniV2(a) => Some(*a),
        }
    }

    const fn kind(&self) -> u8 {
        match self {
            Self::Inventory => 0,
            Self::Erc3156(_) => 1,
            Self::Dodo(_) => 2,
            Self::UniV2(_) => 3,
        }
    }
}

/// Why a route cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteBuildError {
    /// A venue refuses the sized trade.
    #[error("hop quote: {0}")]
    Venue(#[from] VenueError),
    /// The pool table and the address table differ.
    #[error("pool {0} has no address")]
    NoAddress(usize),
    /// The venue kind cannot be traded by the executor.
    #[error("pool {0}: the executor cannot trade this venue kind")]
    Unsupported(usize),
}

/// Settings of one encoded route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteParams {
    /// Input of the first hop (and the flash loan amount when borrowing).
    pub amount_in: U256,
    /// Funding.
    pub flash: FlashPlan,
    /// Minimum profit in the route token.
    pub min_profit: U256,
    /// Maximum slippage per hop, bps (turned into each hop's minimum output).
    pub max_slippage_bps: u32,
    /// Last block the route may land in (0 for none).
    pub deadline_block: u64,
    /// Coinbase tip in wei (0 for none).
    pub coinbase_tip: U256,
}

/// Encodes `route` over `pools` (at `addresses`) with `params`.
///
/// # Errors
/// [`RouteBuildError`] when a venue refuses the size or cannot be traded by the executor.
pub fn build_route(
    pools: &[Pool],
    addresses: &[Address],
    route: &Route,
    params: &RouteParams,
    ctx: &QuoteCtx,
) -> Result<Executor::Route, RouteBuildError> {
    let outs = route_amounts(pools, route, params.amount_in, ctx)?;
    let mut hops = Vec::with_capacity(route.hops().len());
    for (i, (h, out)) in route.hops().iter().zip(outs.iter()).enumerate() {
        let venue = *addresses.get(h.pool).ok_or(RouteBuildError::NoAddress(h.pool))?;
        let amount = if i == 0 { params.amount_in } else { U256::ZERO };
        let min = min_out(*out, params.max_slippage_bps);
        let hop = match &pools[h.pool] {
            Pool::Pmm(p) => p.hop(venue, h.side, amount, min),
            Pool::V2(p) => p.hop(venue, h.side, amount, min),
            Pool::Vault(p) => p.hop(venue, h.side, amount, min),
            Pool::Synth(_) | Pool::Bridge(_) => return Err(RouteBuildError::Unsupported(h.pool)),
        };
        hops.push(hop);
    }
    let (source, amount) = match params.flash.source() {
        Some(s) => (s, params.amount_in),
        None => (Address::ZERO, U256::ZERO),
    };
    Ok(Executor::Route {
        flash: Executor::Flash {
            kind: params.flash.kind(),
            source,
            token: if params.flash.source().is_some() { route.token() } else { Address::ZERO },
            amount,
        },
        hops,
        profitToken: route.token(),
        minProfit: params.min_profit,
        deadlineBlock: U256::from(params.deadline_block),
        coinbaseTip: params.coinbase_tip,
    })
}

/// The [`super::RoutePlan`] containment checks a route against.
pub fn plan_of(executor: Address, route: &Executor::Route) -> super::RoutePlan {
    let mut tokens: Vec<Address> = Vec::new();
    let mut venues: Vec<Address> = Vec::new();
    for h in &route.hops {
        for t in [h.tokenIn, h.tokenOut] {
            if !tokens.contains(&t) {
                tokens.push(t);
            }
        }
        if !venues.contains(&h.venue) {
            venues.push(h.venue);
        }
    }
    super::RoutePlan {
        executor,
        profit_token: route.profitToken,
        min_profit: route.minProfit,
        flash_source: (route.flash.kind != 0).then_some(route.flash.source),
        venues,
        tokens,
    }
}
