//! Errors of the routes stage: a malformed route, and a route that cannot be sized at all.
//!
//! An unprofitable route is not an error: [`size`](super::size) returns a no-trade
//! [`SizedTrade`](super::SizedTrade) for it. What is left here is what no input size can fix.

use alloy::primitives::U256;

use crate::venues::VenueError;

/// Why a sequence of hops is not a valid route over a pool set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A route has between [`MIN_HOPS`](super::MIN_HOPS) and [`MAX_HOPS`](super::MAX_HOPS) hops.
    #[error("a route has 2 to 4 hops, got {hops}")]
    Length {
        /// The number of hops given.
        hops: usize,
    },
    /// A hop names a pool index outside the pool set.
    #[error("hop {hop} names pool {pool}, but there are {pools} pools")]
    PoolIndex {
        /// Position of the hop in the route.
        hop: usize,
        /// The pool index it names.
        pool: usize,
        /// The number of pools in the set.
        pools: usize,
    },
    /// A hop's output token is not the next hop's input token.
    #[error("hop {hop} pays out a token that hop {next} does not take in")]
    Broken {
        /// Position of the hop whose output does not connect.
        hop: usize,
        /// Position of the hop that should take it in.
        next: usize,
    },
    /// The last hop's output token is not the first hop's input token.
    #[error("the route does not end in the token it starts with")]
    NotCycle,
}

/// Why a route cannot be sized at all (as opposed to sized to "no trade").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizingError {
    /// The route does not fit the pool set it is sized against.
    #[error("route: {0}")]
    Route(#[from] RouteError),
    /// The limits leave no input to try: `min_in > max_in`.
    #[error("empty input range: min_in {min_in} > max_in {max_in}")]
    EmptyRange {
        /// The smallest input allowed.
        min_in: U256,
        /// The largest input allowed.
        max_in: U256,
    },
    /// A venue refused for a reason no input size changes (paused, locked, no liquidity, invalid
    /// state, unsupported direction).
    #[error("hop {hop}: {error}")]
    Venue {
        /// Position of the refusing hop in the route.
        hop: usize,
        /// The venue's refusal.
        error: VenueError,
    },
}

impl SizingError {
    /// Whether the same route may size again later without any change to the route itself (a
    /// paused venue, a settlement lock or an empty pool can change with the next block; a malformed
    /// route or empty limits cannot).
    pub const fn is_retryable(&self) -> bool {
        match self {
            Self::Route(_) | Self::EmptyRange { .. } => false,
            Self::Venue { error, .. } => {
                !matches!(error, VenueError::InvalidState(_) | VenueError::Unsupported)
            }
        }
    }
}
