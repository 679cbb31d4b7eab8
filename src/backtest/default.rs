//! The embedded default: `cantilever` with no arguments backtests a depeg episode modelled on
//! USDC in March 2023 (DOMAIN §6), recorded from the devnet and shipped in `fixtures/backtest/`.
//!
//! The cassette and its manifest are compiled into the binary (`include_bytes!`), so the main
//! command works from any directory with no network. Regenerate them on purpose with
//! `cargo test --test it backtest::regenerate_default_cassette -- --ignored`, then review and
//! accept the new golden summary with `cargo insta review` (or `INSTA_UPDATE=always`).
//!
//! The manifest is a devnet manifest (`{"scenario", "chains": [...]}`) plus an `episodes` list
//! naming each cassette and the chain it belongs to, so a second chain's episode (a cross-chain
//! spread) is one more entry and one more cassette.

use serde::Deserialize;

use super::{BacktestError, BacktestReport, Setup, run_cassette};
use crate::cassette::Cassette;

/// The default cassette (a backtest recording of the devnet depeg episode).
pub const CASSETTE: &[u8] = include_bytes!("../../fixtures/backtest/usdc-2023.cas");
/// Its manifest: the devnet's chains and addresses, and the episodes.
pub const MANIFEST: &str = include_str!("../../fixtures/backtest/usdc-2023.manifest.json");
/// The cassette's name in reports.
pub const NAME: &str = "usdc-2023 (embedded)";

/// One recorded episode of the default manifest.
#[derive(Clone, Debug, Deserialize)]
pub struct Episode {
    /// What it shows.
    pub name: String,
    /// The cassette file (relative to the manifest).
    pub cassette: String,
    /// The chain it was recorded on.
    pub chain_id: u64,
    /// How it was made.
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(flatten)]
    devnet: crate::devnet::DevnetManifest,
    #[serde(default)]
    episodes: Vec<Episode>,
}

fn bad(detail: String) -> BacktestError {
    BacktestError::Config { file: "embedded default manifest".into(), detail }
}

fn manifest() -> Result<Manifest, BacktestError> {
    serde_json::from_str(MANIFEST).map_err(|e| bad(e.to_string()))
}

/// The episodes of the default manifest.
///
/// # Errors
/// [`BacktestError::Config`] when the embedded manifest does not parse.
pub fn episodes() -> Result<Vec<Episode>, BacktestError> {
    Ok(manifest()?.episodes)
}

/// The setup of the default manifest's first episode's chain.
///
/// # Errors
/// [`BacktestError::Config`] when the embedded manifest does not parse.
pub fn setup() -> Result<Setup, BacktestError> {
    let m = manifest()?;
    let chain_id = m.episodes.first().map_or(138, |e| e.chain_id);
    setup_for(&m.devnet, chain_id)
}

/// The setup of `chain_id` in a devnet manifest: its configuration, backrun evaluated without a
/// relay, the manifest's operator.
///
/// # Errors
/// [`BacktestError::Config`] when the chain is missing or the configuration is invalid.
pub fn setup_for(m: &crate::devnet::DevnetManifest, chain_id: u64) -> Result<Setup, BacktestError> {
    let cfg = crate::devnet::devnet_config(m).map_err(|e| bad(e.to_string()))?;
    let chain = cfg
        .chains
        .iter()
        .find(|c| c.chain_id == chain_id)
        .cloned()
        .ok_or_else(|| bad(format!("no chain with id {chain_id}")))?;
    let operator = m.chain(chain_id).map(|c| c.accounts.operator).unwrap_or_default();
    Ok(Setup {
        chain,
        strategies: crate::bench::bench_strategies(cfg.strategies),
        risk: cfg.risk,
        operator,
    })
}

/// Runs the default backtest: the embedded cassette, no network. Call inside a multi-thread
/// tokio runtime.
///
/// # Errors
/// [`BacktestError`] if the embedded files do not load (a broken build) or the run fails.
pub async fn run_default(progress: bool) -> Result<BacktestReport, BacktestError> {
    let cassette = Cassette::from_bytes(CASSETTE, NAME)?;
    let setup = setup()?;
    run_cassette(&cassette, &setup, NAME, progress).await
}
