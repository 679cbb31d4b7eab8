//! The embedded default: `cantilever` with no arguments backtests two episodes recorded from the
//! devnet and shipped in `fixtures/backtest/`:
//!
//! - a depeg modelled on USDC in March 2023 (DOMAIN §6) on chain 138 (`usdc-2023.*`);
//! - a cross-chain spread between chain 138 and Alltra (`xchain-spread.*`, one cassette per
//!   chain), replayed with both engines and the coordinator ([`super::xchain`]).
//!
//! The cassettes and their manifests are compiled into the binary (`include_bytes!`), so the
//! main command works from any directory with no network. Regenerate them on purpose with
//! `cargo test --test it backtest::regenerate_default_cassette -- --ignored` and
//! `cargo test --test it xbacktest::regenerate_xchain_episode -- --ignored`, then review and
//! accept the new golden summary with `cargo insta review` (or `INSTA_UPDATE=always`).
//!
//! Each manifest is a devnet manifest (`{"scenario", "chains": [...]}`) plus an `episodes` list
//! naming each cassette and the chain it belongs to; the cross-chain one also holds the
//! `cross_chain` configuration it runs with.

use serde::Deserialize;

use super::{BacktestError, BacktestReport, Setup, run_cassette};
use crate::cassette::Cassette;

/// The default cassette (a backtest recording of the devnet depeg episode).
pub const CASSETTE: &[u8] = include_bytes!("../../fixtures/backtest/usdc-2023.cas");
/// Its manifest: the devnet's chains and addresses, and the episodes.
pub const MANIFEST: &str = include_str!("../../fixtures/backtest/usdc-2023.manifest.json");
/// The cassette's name in reports.
pub const NAME: &str = "usdc-2023 (embedded)";
/// The cross-chain episode's cassettes, chain 138's then Alltra's.
pub const XCHAIN_CASSETTES: [&[u8]; 2] = [
    include_bytes!("../../fixtures/backtest/xchain-spread.138.cas"),
    include_bytes!("../../fixtures/backtest/xchain-spread.651940.cas"),
];
/// The cross-chain episode's manifest (both chains, the cross-chain configuration).
pub const XCHAIN_MANIFEST: &str =
    include_str!("../../fixtures/backtest/xchain-spread.manifest.json");
/// The cross-chain episode's name in reports.
pub const XCHAIN_NAME: &str = "xchain-spread (embedded)";

/// The embedded default's result: the depeg episode, then the cross-chain episode.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DefaultReport {
    /// The depeg episode on chain 138.
    pub depeg: BacktestReport,
    /// The cross-chain spread episode.
    pub xchain: super::xchain::XBacktestReport,
}

impl std::fmt::Display for DefaultReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}", self.depeg, self.xchain)
    }
}

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

/// A self-contained HTML page of the default report: both episodes.
pub fn render_html(r: &DefaultReport) -> String {
    super::report::page(
        &(super::report::html_body(&r.depeg) + &super::xchain::html_body(&r.xchain)),
    )
}

/// Runs the default backtest: both embedded episodes, no network. Call inside a multi-thread
/// tokio runtime.
///
/// # Errors
/// [`BacktestError`] if the embedded files do not load (a broken build) or a run fails.
pub async fn run_default(progress: bool) -> Result<DefaultReport, BacktestError> {
    let cassette = Cassette::from_bytes(CASSETTE, NAME)?;
    let setup = setup()?;
    let depeg = run_cassette(&cassette, &setup, NAME, progress).await?;
    let xsetup = super::xchain::XSetup::from_manifest_json(
        XCHAIN_MANIFEST,
        "embedded cross-chain manifest",
    )?;
    let [a, b] = XCHAIN_CASSETTES;
    let a = Cassette::from_bytes(a, "xchain-spread.138.cas")?;
    let b = Cassette::from_bytes(b, "xchain-spread.651940.cas")?;
    let xchain = super::xchain::run_cassettes([&a, &b], &xsetup, XCHAIN_NAME, progress).await?;
    Ok(DefaultReport { depeg, xchain })
}
