//! Execution: sign, own nonces, price gas, submit, and track inclusion.
//!
//! ```text
//!  engine thread (sync)                          tokio (async, HTTP only)
//!  ───────────────────                           ────────────────────────
//!  NonceManager::next ─┐                         Submitter::submit ──▶ relays: eth_sendBundle, signed
//!  FeeParams::quote ───┼─▶ TxSigner::sign_eip1559 ──SignedTx──▶        X-Flashbots-Signature
//!  GasMargin::gas_limit┘                            │                   RPC: eth_sendRawTransaction
//!                                                   ▼
//!                                     InclusionTracker::check ──▶ InclusionOutcome (+ realised PnL)
//! ```
//!
//! - [`signer`]: keys from the configuration ([`load_signer`]) and synchronous EIP-1559 signing
//!   ([`TxSigner`]); no secret ever reaches an error, a log or `Debug`.
//! - [`nonce`]: [`NonceManager`] per (chain, address): reserve, release, confirm, resync; node
//!   errors classified by [`NodeErrorKind`].
//! - [`fees`]: [`FeeParams::quote`] for the next block, [`FeeRefusal`] in a gas spike,
//!   [`GasMargin`] for gas limits, worst-case cost for the profit-after-gas check.
//! - [`submit`]: [`RawTxSubmitter`], [`BundleSubmitter`] and the [`Submitter`] enum chosen from
//!   the chain's `[chains.submission]`. Outcomes per destination are data. Submissions go over
//!   HTTP and are never retried: a transport failure is an unknown outcome.
//! - [`inclusion`]: [`InclusionTracker`] polls receipts for a submission's target block and a
//!   few after, and measures realised PnL from balances.
//!
//! Relay and RPC URLs may embed API keys: this module logs relay *names* only, and strips URLs
//! from transport errors before returning them.

pub mod error;
pub mod fees;
pub mod inclusion;
pub mod nonce;
pub mod signer;
pub mod submit;

pub use error::{SignError, SignerError, SignerErrorKind, SubmitSetupError, TrackError};
pub use fees::{
    FeeParams, FeeQuote, FeeRefusal, GasMargin, ProfitTip, next_base_fee, worst_case_gas_cost_wei,
};
pub use inclusion::{
    InclusionOutcome, InclusionTracker, Landed, MissReason, ProfitProbe, RealisedPnl, Tracked,
    TrackedTx, TxReceiptSummary,
};
pub use nonce::{NodeError, NodeErrorKind, NonceError, NonceManager, ResyncReport, resync_from};
pub use signer::{
    KeyRole, SignedTx, SigningBackend, TxParams, TxSigner, load_signer, load_signer_with,
};
pub use submit::{
    Bundle, BundleReport, BundleSubmitter, DEFAULT_SUBMIT_TIMEOUT, RawTxOutcome, RawTxResult,
    RawTxSubmitter, RelayOutcome, RelayResult, SubmitReport, SubmitRequest, Submitter,
};
