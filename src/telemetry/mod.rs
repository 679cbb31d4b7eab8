//! Telemetry: tracing set-up, per-stage latency histograms, counters and gauges, and the
//! Prometheus `/metrics` and `/health` endpoint.
//!
//! **Inputs**: the engine records stage latencies in its own [`StageHistograms`] (no locks) and
//! publishes a copy every few hundred ms to a [`SharedHistograms`]; every stage bumps
//! [`Counter`]s and [`Gauge`]s from a [`Registry`] (relaxed atomics; the standard ones are in
//! [`Metrics`]); ingest and the engine set [`Health`]. **Output**: [`MetricsServer`] serves
//! `GET /metrics` (Prometheus text format 0.0.4) and `GET /health` (JSON) on tokio.
//!
//! # Binding
//! The server binds `[telemetry] metrics_addr`, `127.0.0.1:9464` by default. A non-loopback
//! address (`0.0.0.0` included) is refused with [`TelemetryError::PublicBind`] unless
//! `allow_public` is set; put an authenticating proxy in front instead.
//!
//! # Readiness rules (`/health`)
//! `/health` answers `200 {"ready":true,...}` only when **all** hold:
//! 1. at least one chain is registered;
//! 2. the kill switch is not engaged ([`Health::set_halted`]);
//! 3. for **every** chain: the WS subscription is connected ([`ChainHealth::set_connected`]),
//!    the engine's applied head is at most `max_head_lag_blocks` behind the node's head
//!    ([`ChainHealth::set_head_lag_blocks`]; default budget [`DEFAULT_MAX_HEAD_LAG_BLOCKS`]),
//!    and the fork cache holds the current head's state ([`ChainHealth::set_cache_fresh`]).
//!
//! Otherwise it answers `503` with the same JSON, `ready: false` and one line per failing rule in
//! `reasons` (`"chain138: not connected"`, `"chain138: 5 blocks behind head (budget 2)"`,
//! `"chain138: state cache stale"`, `"halted: the kill switch is engaged"`). A chain starts
//! disconnected and stale, so a process is not ready until ingest has caught up.
//!
//! # Metrics worth alerting on
//! `cantilever_ready == 0` for longer than a few blocks; `cantilever_halted == 1`;
//! `cantilever_head_lag_blocks{chain}` above budget; `rate(cantilever_reconnects_total[5m])` and
//! `rate(cantilever_gaps_backfilled_total[5m])` rising; the inclusion rate per relay,
//! `cantilever_inclusions_total{outcome="included"} / sum by (relay)`, falling;
//! `cantilever_realised_pnl_usd` falling; `cantilever_ledger_queue_depth` growing;
//! `cantilever_rss_bytes` growing without bound; `cantilever_stage_latency_seconds` p99 of
//! `end_to_end` over its budget.
//!
//! # Logs
//! [`init_tracing`] installs text or JSON logs on stderr; [`opportunity_span`] tags every line
//! of an opportunity's work with `opp=<id>`.

mod health;
mod histograms;
mod logging;
mod metrics;
mod server;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use health::{ChainHealth, ChainStatus, DEFAULT_MAX_HEAD_LAG_BLOCKS, Health, HealthReport};
pub use histograms::{EventKind, Percentiles, SharedHistograms, Stage, StageHistograms};
pub use logging::{URL_TARGETS, init_tracing, opportunity_span, subscriber};
pub use metrics::{ChainMetrics, Counter, FloatGauge, Gauge, Metrics, Registry, rss_bytes};
pub use server::{Exporter, MetricsServer};

/// What went wrong in telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The metrics address is not loopback and public binding was not allowed.
    #[error(
        "metrics address {addr} is not a loopback address; bind 127.0.0.1 or [::1], or set \
         [telemetry] allow_public_metrics = true behind an authenticating proxy"
    )]
    PublicBind {
        /// The refused address.
        addr: SocketAddr,
    },
    /// Binding the socket failed.
    #[error("binding the metrics server to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A metric was registered with an invalid name, or clashes with an earlier registration.
    #[error("metric {0}")]
    Metric(String),
    /// hdrhistogram refused an operation.
    #[error("latency histogram: {0}")]
    Histogram(String),
    /// A log filter did not parse.
    #[error("log filter from {source_name} ({filter:?}) is invalid: {reason}")]
    Filter {
        /// Where it came from (`RUST_LOG` or `[telemetry] log_level`).
        source_name: &'static str,
        /// The filter text.
        filter: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A global tracing subscriber was already installed.
    #[error("installing the log subscriber: {0}")]
    TracingInit(String),
}
