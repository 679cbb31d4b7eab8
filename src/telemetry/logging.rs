//! Tracing set-up and the per-opportunity span.

use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{EnvFilter, Registry, filter::filter_fn};

use super::TelemetryError;
use crate::config::LogFormat;

/// Targets whose debug and trace output may carry endpoint URLs, which may embed API keys:
/// alloy's HTTP transport opens a DEBUG span holding the full URL, and the HTTP, TLS and
/// WebSocket stacks below it log requests and connections. [`init_tracing`] and [`subscriber`]
/// cap them (and their submodules) at INFO whatever `RUST_LOG` or the configured filter asks.
pub const URL_TARGETS: &[&str] = &[
    "alloy_transport_http",
    "alloy_transport_ws",
    "alloy_transport",
    "alloy_rpc_client",
    "alloy_pubsub",
    "alloy_provider",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tungstenite",
    "tokio_tungstenite",
];

/// Whether `target` is one of [`URL_TARGETS`] or under one.
fn url_target(target: &str) -> bool {
    URL_TARGETS.iter().any(|t| {
        target.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// Installs the global subscriber: logs on stderr in `format`, filtered by `RUST_LOG` when it is
/// set, else by `filter` (`[telemetry] log_level`: `info`, or `info,cantilever::sim=debug`).
/// An invalid `RUST_LOG` is logged as a warning and `filter` used instead. [`URL_TARGETS`] are
/// capped at INFO either way.
///
/// # Errors
/// [`TelemetryError::Filter`] when `filter` does not parse, [`TelemetryError::TracingInit`]
/// when a global subscriber is already installed.
pub fn init_tracing(format: LogFormat, filter: &str) -> Result<(), TelemetryError> {
    use std::io::IsTerminal as _;
    let (subscriber, ignored) =
        build(format, filter, rust_log(), std::io::stderr, std::io::stderr().is_terminal())?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| TelemetryError::TracingInit(e.to_string()))?;
    if let Some(e) = ignored {
        tracing::warn!(target: "cantilever::telemetry", error = %e, "RUST_LOG ignored");
    }
    Ok(())
}

/// The subscriber [`init_tracing`] installs (with the same cap on [`URL_TARGETS`]), writing to
/// `writer` without colour codes (tests capture logs with it).
///
/// # Errors
/// [`TelemetryError::Filter`] as for [`init_tracing`].
pub fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    Ok(build(format, filter, rust_log(), writer, false)?.0)
}

fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty())
}

pub(super) type Built = (Box<dyn Subscriber + Send + Sync>, Option<TelemetryError>);

/// The subscriber, and the `RUST_LOG` error if `rust_log` was set but invalid (then `filter`
/// is used).
pub(super) fn build<W>(
    format: LogFormat,
    filter: &str,
    rust_log: Option<String>,
    writer: W,
    ansi: bool,
) -> Result<Built, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let parse = |source_name, directives: &str| {
        EnvFilter::try_new(directives).map_err(|e| TelemetryError::Filter {
            source_name,
            filter: directives.to_owned(),
            reason: e.to_string(),
        })
    };
    let (filter, ignored) = match rust_log {
        Some(env) => match parse("RUST_LOG", &env) {
            Ok(f) => (f, None),
            Err(e) => (parse("[telemetry] log_level", filter)?, Some(e)),
        },
        None => (parse("[telemetry] log_level", filter)?, None),
    };
    // A global filter of its own, so no directive (however specific) lifts the cap.
    let cap = filter_fn(|meta| !(*meta.level() > Level::INFO && url_target(meta.target())));
    let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    let base = Registry::default().with(filter).with(cap);
    let subscriber: Box<dyn Subscriber + Send + Sync> = match format {
        LogFormat::Text => Box::new(base.with(layer)),
        LogFormat::Json => Box::new(base.with(layer.json())),
    };
    Ok((subscriber, ignored))
}

/// A span for the work on one opportunity: every log line inside it carries `opp=<id>` (text)
/// or `"span":{"opp":<id>,...}` (JSON), with the chain and strategy. Enter it at the stage
/// boundaries (`let _g = span.enter();`), not per candidate in the inner loop.
pub fn opportunity_span(id: u64, chain: &str, strategy: &str) -> tracing::Span {
    tracing::info_span!(target: "cantilever::engine", "opp", opp = id, chain, strategy)
}
