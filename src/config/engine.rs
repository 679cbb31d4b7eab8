//! `[engine]` and `[telemetry]`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

/// Process-wide engine settings (`[engine]`). Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// SQLite ledger of opportunities, decisions, submissions, inclusions and realised PnL.
    /// Relative paths are taken from the working directory. Default `cantilever.db`.
    pub ledger_path: PathBuf,
    /// The manual halt file: while it exists the engine signs nothing. The kill switch writes it,
    /// so a halt survives restart until an operator removes it. Default `cantilever.halt`.
    pub halt_file: PathBuf,
    /// Run the whole pipeline, prove and risk-check routes, record them, but sign and submit
    /// nothing. Default `true`: going live is an explicit `dry_run = false`.
    pub dry_run: bool,
    /// Shadow mode (requires `dry_run = true`): additionally follow every approved candidate on
    /// chain and record whether someone else took it and what it would have earned.
    /// Default `false`.
    pub shadow: bool,
    /// Keep each engine thread running between events, polling its inputs, instead of parking
    /// it: an event is taken up within a microsecond on a warm core rather than after the
    /// thread is woken (tens to hundreds of microseconds on a virtual machine whose idle vCPU the
    /// host deschedules). Costs one core per chain at 100%: for hosts with cores to spare.
    /// Default `false`.
    pub busy_poll: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ledger_path: PathBuf::from("cantilever.db"),
            halt_file: PathBuf::from("cantilever.halt"),
            dry_run: true,
            shadow: false,
            busy_poll: false,
        }
    }
}

/// Logs, metrics and health (`[telemetry]`). Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `IP:port` serving Prometheus `/metrics` and `/health`. Must be a loopback address unless
    /// `allow_public_metrics = true`. Default `127.0.0.1:9464`.
    pub metrics_addr: SocketAddr,
    /// Allow `metrics_addr` on a non-loopback address. Default `false`; put a proxy with
    /// authentication in front rather than setting this.
    pub allow_public_metrics: bool,
    /// `text` (human) or `json` (one object per line). Default `text`.
    pub log_format: LogFormat,
    /// A tracing filter: a level (`info`) or directives (`info,cantilever::sim=debug`).
    /// `RUST_LOG` overrides it. Default `info`.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9464)),
            allow_public_metrics: false,
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}
