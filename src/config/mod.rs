//! Configuration: one TOML file, typed, validated, with every error reported at once.
//!
//! **Input**: a TOML file (`cantilever run --config FILE`, `cantilever check-config FILE`) or the
//! embedded default ([`DEFAULT_CONFIG_TOML`], `config/default.toml`), plus the environment for
//! `${VAR}` references in URL fields. **Output**: a [`Config`] whose invariants hold (below), or a
//! [`ConfigErrors`] listing every problem, each naming file, key path, line and reason.
//!
//! # Layout
//! ```toml
//! [engine]            # ledger, halt file, dry_run (default true), shadow
//! [telemetry]         # metrics_addr (loopback only), log_format, log_level
//! [[chains]]          # name, chain_id, ws_url, http_url, block_time_ms, executor
//! [chains.submission] # mode = public-rpc | private-rpc | flashbots-relay, relays, identity
//! [chains.signer]     # { keystore = "path", password_env = "NAME" } or { key_env = "NAME" }
//! [chains.fees]       # max_fee_gwei, priority_fee_gwei, tip_share_bps
//! [[chains.tokens]]   # symbol, address, decimals — the token allow-list
//! [[chains.venues]]   # name, kind, address, base, quote, trader, remote_chain
//! [[chains.flash_lenders]] # kind, address, tokens
//! [strategies.depeg | triangle | stabilizer | backrun | cross_chain]
//! [risk]              # nav_usd, slippage, min profit, exposure, buckets A–E, caps, ramp
//! ```
//! `config/README.md` is the one-page guide; the rustdoc of each field is the reference.
//!
//! # Invariants of a loaded `Config`
//! - Every table rejects unknown keys; every limit is finite and positive; percentages are within
//!   0–100 and buckets A–E sum to at most 100.
//! - Chain names and ids are unique; token symbols and addresses are unique per chain; every
//!   venue, lender, strategy and `min_profit` reference names a declared chain, token or venue.
//! - No secret is in the file: signing keys are [`SignerRef`]s (keystore path or env variable
//!   name) and URLs with API keys use `${VAR}`, resolved here. [`EndpointUrl`] redacts itself in
//!   `Display`/`Debug`, so a `Config` can be logged with `{:?}`.
//! - Metrics bind to loopback unless `allow_public_metrics = true`.
//! - With `engine.dry_run = false`, every chain has a signer and an executor.
//!
//! # Errors
//! Loading collects all problems instead of stopping at the first (see `loader.rs` for how):
//! secrets first, then syntax, then schema, environment and semantic errors in file order.
//! `check_config_command` prints them as `file:line: key: reason`, one per line.

mod chain;
mod de;
mod engine;
mod error;
mod loader;
mod path;
mod risk;
mod secrets;
mod strategy;
mod validate;

#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

pub use chain::{
    ChainConfig, FeePolicy, FlashLenderConfig, FlashLenderKind, RelayConfig, SignerRef,
    SubmissionConfig, SubmissionMode, TokenConfig, VenueConfig, VenueKind,
};
pub use engine::{EngineConfig, LogFormat, TelemetryConfig};
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors};
pub use risk::{CapitalBuckets, RawAmount, RiskConfig, SizeRamp};
pub use secrets::{EndpointUrl, EnvVarName, InvalidEndpoint};
pub use strategy::{
    BackrunConfig, CrossChainConfig, DepegConfig, InventoryTarget, LegFailurePolicy, PegConfig,
    PegReference, Severity, SeverityThresholds, StabilizerConfig, StrategiesConfig, TriangleConfig,
    VenueRef,
};

/// The documented default configuration (`config/default.toml`), embedded in the binary: two
/// local devnet chains (138 and 651940), public-RPC submission, dry-run. It declares no tokens or
/// venues: `cantilever devnet --out` prints the deployed addresses to add.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/default.toml");

/// The name the embedded default is reported under.
pub const DEFAULT_CONFIG_NAME: &str = "config/default.toml (embedded)";

/// The whole configuration. See the [module docs](self) for the layout and invariants.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[engine]`: ledger, halt file, dry-run and shadow modes.
    pub engine: EngineConfig,
    /// `[telemetry]`: logs, metrics and health.
    pub telemetry: TelemetryConfig,
    /// `[[chains]]`: at least one.
    pub chains: Vec<ChainConfig>,
    /// `[strategies]`.
    pub strategies: StrategiesConfig,
    /// `[risk]`: desk limits (required, at least `nav_usd`).
    pub risk: RiskConfig,
}

impl Config {
    /// Reads, checks and returns the configuration at `path`, resolving `${VAR}` in URL fields
    /// from the process environment.
    ///
    /// # Errors
    /// Every problem found: unreadable file, secrets, syntax, unknown keys, wrong types, missing
    /// keys, out-of-range values, cross-reference and security errors, unset variables.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        Self::load_with_env(path, &|name| std::env::var(name).ok())
    }

    /// [`load`](Self::load) with an explicit environment lookup (for tests and tools).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        let file = path.display().to_string();
        let text = read_bounded(path).map_err(|reason| {
            ConfigErrors::single(ConfigError::new(&file, None, "", ConfigErrorKind::Io, reason))
        })?;
        loader::load_str(&text, &file, env)
    }

    /// Parses and checks TOML `text`; `file` names it in errors. `${VAR}` references are resolved
    /// from the process environment.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, ConfigErrors> {
        loader::load_str(text, file, &|name| std::env::var(name).ok())
    }

    /// [`from_toml_str`](Self::from_toml_str) with an explicit environment lookup.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_toml_str_with_env(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        loader::load_str(text, file, env)
    }

    /// The embedded default ([`DEFAULT_CONFIG_TOML`]).
    ///
    /// # Errors
    /// Never for the shipped file (a unit test loads it); the `Result` guards against an edit.
    pub fn embedded_default() -> Result<Self, ConfigErrors> {
        loader::load_str(DEFAULT_CONFIG_TOML, DEFAULT_CONFIG_NAME, &|_| None)
    }

    /// Re-runs the semantic checks on a configuration built or changed in code (for instance after
    /// the devnet added the addresses it deployed). Errors name the file `<config>` and no line.
    ///
    /// # Errors
    /// Every semantic problem, including URLs whose `${VAR}` references are unresolved.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let url_fields = self.chains.iter().enumerate().flat_map(|(i, c)| {
            let base = format!("chains[{i}]");
            let mut urls = vec![
                (format!("{base}.ws_url"), &c.ws_url),
                (format!("{base}.http_url"), &c.http_url),
            ];
            if let Some(u) = &c.submission.private_rpc_url {
                urls.push((format!("{base}.submission.private_rpc_url"), u));
            }
            for (j, r) in c.submission.relays.iter().enumerate() {
                urls.push((format!("{base}.submission.relays[{j}].url"), &r.url));
            }
            urls
        });
        for (key, url) in url_fields {
            if !url.is_resolved() {
                errors.push(ConfigError::new(
                    "<config>",
                    None,
                    key,
                    ConfigErrorKind::Environment,
                    "URL has unresolved ${VAR} references",
                ));
            }
        }
        for issue in validate::validate(self, None, true) {
            let mut reason = issue.reason;
            if let Some(related) = issue.related {
                reason.push_str(&format!(" (see {related})"));
            }
            errors.push(ConfigError::new(
                "<config>",
                None,
                issue.path.to_string(),
                issue.kind,
                reason,
            ));
        }
        if errors.is_empty() { Ok(()) } else { Err(ConfigErrors::new(errors)) }
    }

    /// The chain named `name`, if configured.
    pub fn chain(&self, name: &str) -> Option<&ChainConfig> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The chain with EIP-155 id `chain_id`, if configured.
    pub fn chain_by_id(&self, chain_id: u64) -> Option<&ChainConfig> {
        self.chains.iter().find(|c| c.chain_id == chain_id)
    }

    /// A one-line, secret-free summary: chains, counts and mode.
    pub fn summary(&self) -> String {
        let chains: Vec<String> = self
            .chains
            .iter()
            .map(|c| format!("{} #{} ({})", c.name, c.chain_id, c.submission.mode))
            .collect();
        let count = |f: fn(&ChainConfig) -> usize| self.chains.iter().map(f).sum::<usize>();
        let mode = match (self.engine.dry_run, self.engine.shadow) {
            (true, true) => "dry-run + shadow",
            (true, false) => "dry-run",
            (false, _) => "LIVE",
        };
        format!(
            "{} chain(s): {}; {} tokens, {} venues, {} flash lenders; {mode}",
            self.chains.len(),
            chains.join(", "),
            count(|c| c.tokens.len()),
            count(|c| c.venues.len()),
            count(|c| c.flash_lenders.len()),
        )
    }
}

/// Reads a file of at most [`loader::MAX_BYTES`]; the error text never contains file content.
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {}", e.kind()))?;
    let mut text = String::new();
    let limit = u64::try_from(loader::MAX_BYTES).unwrap_or(u64::MAX) + 1;
    file.take(limit).read_to_string(&mut text).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => "not UTF-8 text".to_owned(),
        kind => format!("cannot read: {kind}"),
    })?;
    Ok(text)
}

/// Loads and checks the configuration at `path`, exactly as [`Config::load`] does (the same
/// parsing, validation and `${VAR}` resolution from the process environment). This is what
/// `cantilever check-config` runs; a file that passes it loads.
///
/// # Errors
/// As [`Config::load`].
pub fn check_file(path: &Path) -> Result<Config, ConfigErrors> {
    Config::load(path)
}

/// The `check-config` command: on success prints a one-line summary to stdout and returns
/// success; otherwise prints every error to stderr, one per line (`file:line: key: reason`),
/// then a count, and returns exit code 1. Prints no secret.
pub fn check_config_command(path: &Path) -> ExitCode {
    match check_file(path) {
        Ok(config) => {
            let mut out = std::io::stdout().lock();
            // A closed stdout is not a configuration error.
            let _ = writeln!(out, "{}: ok: {}", path.display(), config.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            for e in &errors {
                let _ = writeln!(err, "{e}");
            }
            let n = errors.len();
            let _ = writeln!(
                err,
                "{}: {n} error{}; refusing this configuration",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}
