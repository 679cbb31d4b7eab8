//! The application: `cantilever run`, `halt` and `rearm` as a desk operates them. This is the
//! wiring between the configuration, the keys, the ledger, telemetry and one engine per chain;
//! `main.rs` only parses the command line and calls in here.
//!
//! ```text
//!  config (validated, hashed) ──▶ keys (executor, relay identity; never printed)
//!        │                         │
//!        ▼                         ▼
//!  ledger (SQLite, WAL) ◀──── run_chain × N (one engine per chain with an executor)
//!        ▲                         │ EngineStats, inflight (atomics)
//!        │                         ▼
//!  shutdown: stop, wait      250 ms sync task ──▶ Health (/health) + Registry (/metrics)
//!  in-flight, close ledger   signals: INT/TERM → graceful stop (second one: exit at once)
//!                                     USR1     → re-read the halt file → Control::Halt/Rearm
//! ```
//!
//! - [`run`]: the whole life of a running bot (start-up, the sync loop, signals, shutdown).
//! - [`halt`] / [`rearm`]: engage or clear the persistent halt file and record it in the ledger;
//!   they read only the `[engine]` table, so a halt works even when the environment the RPC URLs
//!   need is missing.
//! - [`check_key_roles`]: before an engine starts, the keys' roles are checked on chain (a
//!   fundless identity, an executor key that does not own the executor contract, two distinct
//!   hot keys); a mixed set-up refuses to start with [`KeyRoleError`].
//! - [`ChainTelemetry`]: copies one chain's [`EngineStats`](crate::engine::EngineStats) into
//!   [`Health`](crate::telemetry::Health) and the metric registry.
//!
//! Secrets: keys are loaded here and handed to the engine; nothing in this module prints a key,
//! a password or an endpoint URL (errors that may quote a URL pass through [`redact_urls`]).

mod halt;
mod keys;
mod run;
mod telemetry;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{B256, keccak256};

use crate::config::{Config, ConfigErrors, LogFormat};

pub use halt::{HaltChange, HaltOutcome, halt, rearm};
pub use keys::{KeyRoleError, KeyRoles, check_key_roles};
pub use run::run;
pub use telemetry::ChainTelemetry;

/// Default time a graceful shutdown may take (`--shutdown-deadline-secs`).
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// What `cantilever run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The configuration file.
    pub config: PathBuf,
    /// `--dry-run`: decide and record, sign nothing (overrides `[engine] dry_run`).
    pub dry_run: bool,
    /// `--shadow`: sign and simulate, never send (implies dry-run; overrides the config).
    pub shadow: bool,
    /// `--chain NAME`: run only this chain.
    pub chain: Option<String>,
    /// `--log-format`: overrides `[telemetry] log_format`.
    pub log_format: Option<LogFormat>,
    /// How long a graceful shutdown may take before the process exits anyway.
    pub shutdown_deadline: Duration,
}

impl RunArgs {
    /// Arguments for `config` with every override off and the default deadline.
    pub fn new(config: impl Into<PathBuf>) -> Self {
        Self {
            config: config.into(),
            dry_run: false,
            shadow: false,
            chain: None,
            log_format: None,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
        }
    }
}

/// Why a command failed. The text names what and where and never holds a key, a password or a
/// full endpoint URL.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration did not load or validate (print with [`print_config_errors`]).
    #[error("{file}: invalid configuration:\n{errors}")]
    Config {
        /// The file.
        file: String,
        /// Every problem.
        errors: ConfigErrors,
    },
    /// The configuration loaded but cannot be run as asked.
    #[error("{0}")]
    Setup(String),
    /// A file could not be read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A key could not be loaded (names the role and the variable or keystore path only).
    #[error(transparent)]
    Signer(#[from] crate::exec::SignerError),
    /// The ledger could not be opened, written or closed.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// Telemetry (metrics server, log set-up, a metric) failed.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    /// The halt file could not be written or removed.
    #[error(transparent)]
    Halt(#[from] crate::risk::HaltError),
    /// A chain's engine could not start (endpoint URLs redacted).
    #[error("chain `{chain}` did not start: {reason}")]
    Start {
        /// The chain.
        chain: String,
        /// Why.
        reason: String,
    },
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

/// The config hash recorded with every ledger run: keccak-256 of the file's bytes.
pub fn config_hash(bytes: &[u8]) -> B256 {
    keccak256(bytes)
}

/// Reads `path` and returns its bytes and their [`config_hash`].
///
/// # Errors
/// [`AppError::Io`] when the file cannot be read.
pub fn hash_file(path: &Path) -> Result<(Vec<u8>, B256), AppError> {
    let bytes = std::fs::read(path).map_err(|source| AppError::Io {
        what: "reading",
        path: path.to_owned(),
        source,
    })?;
    let hash = config_hash(&bytes);
    Ok((bytes, hash))
}

/// Loads and validates the configuration for `run`, applies the mode overrides (`--shadow`
/// implies dry-run; `--dry-run` turns shadow off) and re-validates. Returns the configuration
/// and the hash of the file's bytes.
///
/// # Errors
/// [`AppError::Config`] with every problem, [`AppError::Io`] when the file cannot be hashed.
pub fn load_for_run(args: &RunArgs) -> Result<(Config, B256), AppError> {
    let file = args.config.display().to_string();
    let mut cfg = Config::load(&args.config)
        .map_err(|errors| AppError::Config { file: file.clone(), errors })?;
    if args.shadow {
        cfg.engine.dry_run = true;
        cfg.engine.shadow = true;
    } else if args.dry_run {
        cfg.engine.dry_run = true;
        cfg.engine.shadow = false;
    }
    if args.shadow || args.dry_run {
        cfg.validate().map_err(|errors| AppError::Config { file, errors })?;
    }
    let (_, hash) = hash_file(&args.config)?;
    Ok((cfg, hash))
}

/// Prints configuration errors exactly as `cantilever check-config` does: one per line
/// (`file:line: key: reason`), then a count. Prints no secret.
pub fn print_config_errors(file: &str, errors: &ConfigErrors) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    for e in errors {
        let _ = writeln!(err, "{e}");
    }
    let n = errors.len();
    let _ = writeln!(
        err,
        "{file}: {n} error{}; refusing this configuration",
        if n == 1 { "" } else { "s" }
    );
}

/// `text` with every endpoint URL of `cfg` (WS, HTTP, private RPC, relays) replaced by its
/// redacted form. For error texts from lower layers that may quote the URL they failed on.
pub fn redact_urls(text: &str, cfg: &Config) -> String {
    let mut out = text.to_owned();
    for c in &cfg.chains {
        let urls = [Some(&c.ws_url), Some(&c.http_url), c.submission.private_rpc_url.as_ref()]
            .into_iter()
            .flatten()
            .chain(c.submission.relays.iter().map(|r| &r.url));
        for u in urls {
            let raw = u.expose_secret();
            if !raw.is_empty() && out.contains(raw) {
                out = out.replace(raw, &u.redacted());
            }
        }
    }
    out
}
