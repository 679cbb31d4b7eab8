//! Placeholder being replaced by the venue's native math (work in progress).

use alloy::primitives::{Address, U256};

use super::{Quote, QuoteCtx, Side, Venue, VenueError};

/// Placeholder state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthMarket {
    /// Base token.
    pub base: Address,
    /// Quote token.
    pub quote: Address,
}

impl Venue for SynthMarket {
    fn tokens(&self) -> (Address, Address) {
        (self.base, self.quote)
    }

    fn quote(&self, _side: Side, _amount_in: U256, _ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        Err(VenueError::Unsupported)
    }

    fn apply(
        &mut self,
        _side: Side,
        _amount_in: U256,
        _ctx: &QuoteCtx,
    ) -> Result<Quote, VenueError> {
        Err(VenueError::Unsupported)
    }

    fn mid_price(&self) -> Result<U256, VenueError> {
        Err(VenueError::Unsupported)
    }
}
