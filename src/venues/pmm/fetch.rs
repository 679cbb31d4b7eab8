//! Reading a PMM pool's state with view calls: one JSON-RPC batch of `eth_call`s at one block,
//! through the public DODO V2 interface, so any DSP, DVM or DPP deployment decodes.

use alloy::{
    eips::BlockId,
    primitives::{Address, U256},
    providers::Provider,
};

use super::{PmmKind, PmmPool, RState, math::fits_u112};
use crate::venues::fetch::{CallBatch, FetchError};

alloy::sol! {
    /// The DODO V2 pool views [`fetch`] reads (common to DSP, DVM and DPP).
    #[allow(missing_docs)]
    interface IDodoV2Pool {
        function getPMMStateForCall() external view returns (uint256 i, uint256 K, uint256 B, uint256 Q, uint256 B0, uint256 Q0, uint256 R);
        function _LP_FEE_RATE_() external view returns (uint256);
        function getUserFeeRate(address user) external view returns (uint256 lpFeeRate, uint256 mtFeeRate);
        function _BASE_TOKEN_() external view returns (address);
        function _QUOTE_TOKEN_() external view returns (address);
        function _IS_OPEN_TWAP_() external view returns (bool);
        function _BLOCK_TIMESTAMP_LAST_() external view returns (uint32);
    }
}

/// Reads the pool at `address` as of `block` with one JSON-RPC batch: `getPMMStateForCall()`,
/// `_LP_FEE_RATE_()`, `getUserFeeRate(trader)` (the maintainer rate the contract applies to
/// `trader` as tx.origin: pass the EOA that will sign), `_BASE_TOKEN_()`, `_QUOTE_TOKEN_()`, and
/// the TWAP fields `_IS_OPEN_TWAP_()` / `_BLOCK_TIMESTAMP_LAST_()` (a pool without them is taken
/// to keep no TWAP).
///
/// The targets come back re-solved (the view runs the target regression), which prices exactly
/// as the stored ones. Cancel-safe: dropping the future drops the request and changes nothing.
///
/// # Errors
/// A [`FetchError`] naming the pool and the failing call: transport failures (retryable), a
/// reverted or undecodable call, or an inconsistent answer (R out of range, a reserve or target
/// past `uint112`, a DVM whose state is not a DVM's).
pub async fn fetch(
    provider: &impl Provider,
    address: Address,
    kind: PmmKind,
    trader: Address,
    block: BlockId,
) -> Result<PmmPool, FetchError> {
    let mut batch = CallBatch::new(provider.client(), address, block);
    let state = batch.add(address, &IDodoV2Pool::getPMMStateForCallCall {})?;
    let lp = batch.add(address, &IDodoV2Pool::_LP_FEE_RATE_Call {})?;
    let fees = batch.add(address, &IDodoV2Pool::getUserFeeRateCall { user: trader })?;
    let base = batch.add(address, &IDodoV2Pool::_BASE_TOKEN_Call {})?;
    let quote = batch.add(address, &IDodoV2Pool::_QUOTE_TOKEN_Call {})?;
    let twap_open = batch.add(address, &IDodoV2Pool::_IS_OPEN_TWAP_Call {})?;
    let twap_last = batch.add(address, &IDodoV2Pool::_BLOCK_TIMESTAMP_LAST_Call {})?;
    batch.send().await?;

    let state = state.get().await?;
    let lp_fee_rate = lp.get().await?;
    let fees = fees.get().await?;
    let base = base.get().await?;
    let quote = quote.get().await?;
    let twap_timestamp_last = match twap_open.get().await {
        Ok(true) => Some(twap_last.get().await?),
        Ok(false) | Err(FetchError::Reverted { .. }) => None,
        Err(e) => return Err(e),
    };

    assemble(kind, address, &state, lp_fee_rate, fees.mtFeeRate, base, quote, twap_timestamp_last)
}

/// Builds a [`PmmPool`] from the answers of the views [`fetch`] reads (also used by the engine,
/// which runs the same views in revm on its state cache).
///
/// # Errors
/// [`FetchError::Inconsistent`] when the answers cannot be a pool's state.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    kind: PmmKind,
    address: Address,
    state: &IDodoV2Pool::getPMMStateForCallReturn,
    lp_fee_rate: U256,
    mt_fee_rate: U256,
    base: Address,
    quote: Address,
    twap_timestamp_last: Option<u32>,
) -> Result<PmmPool, FetchError> {
    let inconsistent = |reason: &'static str| FetchError::Inconsistent {
        venue: address,
        call: "getPMMStateForCall()",
        reason,
    };
    let r = RState::try_from_u256(state.R).map_err(|_| inconsistent("R state out of range"))?;
    if ![state.B, state.Q, state.B0, state.Q0].into_iter().all(fits_u112) {
        return Err(inconsistent("reserve or target wider than uint112"));
    }
    if kind == PmmKind::Dvm && (r != RState::AboveOne || state.Q0 != U256::ZERO) {
        return Err(inconsistent("not a DVM: R must be ABOVE_ONE and Q0 zero"));
    }
    Ok(PmmPool {
        kind,
        base,
        quote,
        i: state.i,
        k: state.K,
        base_reserve: state.B,
        quote_reserve: state.Q,
        base_target: state.B0,
        quote_target: state.Q0,
        r,
        lp_fee_rate,
        mt_fee_rate,
        twap_timestamp_last,
    })
}
