//! The HTTP endpoint: `GET /metrics` (Prometheus text 0.0.4) and `GET /health` (JSON).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::histograms::{EventKind, Stage};
use super::metrics::{family_header, rss_bytes, sample};
use super::{Health, Registry, SharedHistograms, TelemetryError};

/// A client has this long to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (out of file descriptors, say), so errors never spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Everything the endpoint reads: the registry, the health and each chain's published
/// histograms. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Exporter {
    /// Counters and gauges.
    pub registry: Registry,
    /// Readiness.
    pub health: Health,
    /// Stage latencies per chain (chain name, then where its engine publishes them), as each
    /// engine last published them.
    pub histograms: Vec<(String, SharedHistograms)>,
}

impl Exporter {
    /// The `/metrics` body: the registry, then health as gauges (`cantilever_ready`,
    /// `cantilever_halted`, `cantilever_connected{chain}`, `cantilever_head_lag_blocks{chain}`,
    /// `cantilever_cache_stale{chain}`), `cantilever_rss_bytes`, and each chain's stage latencies
    /// as the summary `cantilever_stage_latency_seconds{chain,kind,stage,quantile}`.
    pub fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.registry.render(&mut out);

        let report = self.health.report();
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        family_header(&mut out, "cantilever_ready", "1 when /health answers ready.", "gauge");
        sample(&mut out, "cantilever_ready", &[], flag(report.ready));
        family_header(
            &mut out,
            "cantilever_halted",
            "1 while the kill switch is engaged.",
            "gauge",
        );
        sample(&mut out, "cantilever_halted", &[], flag(report.halted));
        let per_chain: [(&str, &str, ChainValue); 3] = [
            ("cantilever_connected", "1 while the chain's WS subscription is up.", |c| {
                if c.connected { 1.0 } else { 0.0 }
            }),
            (
                "cantilever_head_lag_blocks",
                "Blocks between the node's head and the engine's.",
                |c| c.head_lag_blocks as f64,
            ),
            ("cantilever_cache_stale", "1 while the fork cache is not at the current head.", |c| {
                if c.cache_fresh { 0.0 } else { 1.0 }
            }),
        ];
        for (name, help, value) in per_chain {
            if report.chains.is_empty() {
                continue;
            }
            family_header(&mut out, name, help, "gauge");
            for c in &report.chains {
                sample(&mut out, name, &[("chain", &c.chain)], value(c));
            }
        }
        if let Some(rss) = rss_bytes() {
            family_header(&mut out, "cantilever_rss_bytes", "Resident set size.", "gauge");
            sample(&mut out, "cantilever_rss_bytes", &[], rss as f64);
        }
        if let Some(n) = open_files() {
            family_header(&mut out, "cantilever_open_files", "Open file descriptors.", "gauge");
            sample(&mut out, "cantilever_open_files", &[], n as f64);
        }

        let name = "cantilever_stage_latency_seconds";
        let mut header = false;
        for (chain, shared) in &self.histograms {
            shared.with_latest(|hists| {
                let Some(hists) = hists else { return };
                if !std::mem::replace(&mut header, true) {
                    let help = "Latency per pipeline stage and event kind, per chain.";
                    family_header(&mut out, name, help, "summary");
                }
                for kind in EventKind::ALL {
                    for stage in Stage::ALL {
                        let p = hists.percentiles(kind, stage);
                        let labels = [
                            ("chain", chain.as_str()),
                            ("kind", kind.as_str()),
                            ("stage", stage.as_str()),
                        ];
                        for (q, ns) in
                            [("0.5", p.p50), ("0.9", p.p90), ("0.99", p.p99), ("0.999", p.p999)]
                        {
                            let [c, k, s] = labels;
                            sample(&mut out, name, &[c, k, s, ("quantile", q)], ns as f64 * 1e-9);
                        }
                        let sum = hists.mean(kind, stage) * p.count as f64 * 1e-9;
                        sample(&mut out, &format!("{name}_sum"), &labels, sum);
                        sample(&mut out, &format!("{name}_count"), &labels, p.count as f64);
                    }
                }
            });
        }
        out
    }
}

/// Reads one per-chain gauge out of a health report.
type ChainValue = fn(&super::ChainStatus) -> f64;

/// The bound endpoint. Construct with [`bind`](Self::bind), run with [`serve`](Self::serve).
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
    exporter: Exporter,
}

impl MetricsServer {
    /// Binds `addr`. A non-loopback address (including `0.0.0.0`) is refused unless
    /// `allow_public` is set (`[telemetry] allow_public_metrics`).
    ///
    /// # Errors
    /// [`TelemetryError::PublicBind`] for a public address without `allow_public`;
    /// [`TelemetryError::Bind`] when the socket cannot be bound.
    pub async fn bind(
        addr: SocketAddr,
        allow_public: bool,
        exporter: Exporter,
    ) -> Result<Self, TelemetryError> {
        if !addr.ip().is_loopback() && !allow_public {
            return Err(TelemetryError::PublicBind { addr });
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TelemetryError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| TelemetryError::Bind { addr, source })?;
        tracing::info!(target: "cantilever::telemetry", %addr, "metrics and health listening");
        Ok(Self { listener, addr, exporter })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops accepting and closes open connections.
    /// Cancel-safe: dropping the future closes the listener and every connection.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let exporter = self.exporter.clone();
                        conns.spawn(connection(stream, exporter));
                    }
                    Err(e) => {
                        tracing::warn!(target: "cantilever::telemetry", error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.shutdown().await;
        tracing::info!(target: "cantilever::telemetry", addr = %self.addr, "metrics server stopped");
    }
}

async fn connection(stream: tokio::net::TcpStream, exporter: Exporter) {
    let service = service_fn(move |req: Request<Incoming>| {
        let response = respond(&exporter, req.method(), req.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(target: "cantilever::telemetry", error = %e, "connection ended");
    }
}

fn respond(exporter: &Exporter, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into());
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            exporter.render_metrics(),
        ),
        "/health" => {
            let report = exporter.health.report();
            let status =
                if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let body = serde_json::to_string(&report)
                .unwrap_or_else(|e| format!("{{\"ready\":false,\"reasons\":[\"{e}\"]}}"));
            reply(status, "application/json", body)
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "try /metrics or /health\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Open file descriptors of this process (Linux: entries of `/proc/self/fd`); `None` elsewhere.
fn open_files() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64)
}
