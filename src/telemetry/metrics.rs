//! Counters and gauges: a small registry of atomics, and the Prometheus text exposition.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::TelemetryError;

/// A monotonically increasing count. Cloning shares the value; updates are one relaxed atomic add.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An integer that goes up and down (a depth, a lag, a flag).
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `d` (negative to subtract).
    #[inline]
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A float gauge (USD amounts), stored as the bits of an `f64`.
#[derive(Debug, Clone, Default)]
pub struct FloatGauge(Arc<AtomicU64>);

impl FloatGauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Adds `d`.
    pub fn add(&self, d: f64) {
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + d).to_bits())
        });
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Clone)]
enum Value {
    Counter(Counter),
    Gauge(Gauge),
    Float(FloatGauge),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Counter(_) => "counter",
            Self::Gauge(_) | Self::Float(_) => "gauge",
        }
    }
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    label_names: Vec<String>,
    series: Vec<(Vec<String>, Value)>,
}

/// The registry: metric families with their help text, each series fixed at registration.
/// Registering takes a lock (do it at start-up, or once per new label value, and keep the
/// handle); updating a handle is a relaxed atomic operation. Cloning shares the registry.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<Vec<Family>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter `name{labels}`, registered on first use (the same handle afterwards).
    ///
    /// # Errors
    /// [`TelemetryError::Metric`] for an invalid metric or label name, a family registered with
    /// another type or other label names.
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, TelemetryError> {
        match self.series(name, help, labels, || Value::Counter(Counter::default()))? {
            Value::Counter(c) => Ok(c),
            other => Err(type_clash(name, &other)),
        }
    }

    /// The integer gauge `name{labels}`, registered on first use.
    ///
    /// # Errors
    /// As [`counter`](Self::counter).
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, TelemetryError> {
        match self.series(name, help, labels, || Value::Gauge(Gauge::default()))? {
            Value::Gauge(g) => Ok(g),
            other => Err(type_clash(name, &other)),
        }
    }

    /// The float gauge `name{labels}`, registered on first use.
    ///
    /// # Errors
    /// As [`counter`](Self::counter).
    pub fn float_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<FloatGauge, TelemetryError> {
        match self.series(name, help, labels, || Value::Float(FloatGauge::default()))? {
            Value::Float(g) => Ok(g),
            other => Err(type_clash(name, &other)),
        }
    }

    fn series(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Value,
    ) -> Result<Value, TelemetryError> {
        check_name(name, name)?;
        for (label, _) in labels {
            check_name(name, label)?;
            if label.starts_with("__") || *label == "quantile" {
                return Err(TelemetryError::Metric(format!("{name}: label {label:?} is reserved")));
            }
        }
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let label_names: Vec<String> = labels.iter().map(|(l, _)| (*l).to_owned()).collect();
        let values: Vec<String> = labels.iter().map(|(_, v)| (*v).to_owned()).collect();
        let family = match families.iter().position(|f| f.name == name) {
            Some(i) => &mut families[i],
            None => {
                families.push(Family {
                    name: name.to_owned(),
                    help: help.to_owned(),
                    label_names: label_names.clone(),
                    series: Vec::new(),
                });
                let last = families.len() - 1;
                &mut families[last]
            }
        };
        if family.label_names != label_names {
            return Err(TelemetryError::Metric(format!(
                "{name}: registered with labels {:?}, not {label_names:?}",
                family.label_names
            )));
        }
        if let Some((_, v)) = family.series.iter().find(|(l, _)| *l == values) {
            return Ok(v.clone());
        }
        let value = make();
        if let Some((_, first)) = family.series.first()
            && first.type_name() != value.type_name()
        {
            return Err(type_clash(name, first));
        }
        family.series.push((values, value.clone()));
        Ok(value)
    }

    /// Appends every family in the Prometheus text format 0.0.4 (`# HELP`, `# TYPE`, one line
    /// per series).
    pub fn render(&self, out: &mut String) {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        for f in families.iter() {
            let Some((_, first)) = f.series.first() else { continue };
            family_header(out, &f.name, &f.help, first.type_name());
            for (values, value) in &f.series {
                let labels: Vec<(&str, &str)> = f
                    .label_names
                    .iter()
                    .map(String::as_str)
                    .zip(values.iter().map(String::as_str))
                    .collect();
                match value {
                    Value::Counter(c) => sample(out, &f.name, &labels, c.get() as f64),
                    Value::Gauge(g) => sample(out, &f.name, &labels, g.get() as f64),
                    Value::Float(g) => sample(out, &f.name, &labels, g.get()),
                }
            }
        }
    }
}

fn type_clash(name: &str, existing: &Value) -> TelemetryError {
    TelemetryError::Metric(format!("{name}: already registered as a {}", existing.type_name()))
}

/// Metric and label names: `[a-zA-Z_:][a-zA-Z0-9_:]*` (labels without `:`; close enough here).
fn check_name(metric: &str, name: &str) -> Result<(), TelemetryError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(TelemetryError::Metric(format!(
            "{metric}: {name:?} is not a valid metric or label name"
        )))
    }
}

/// `# HELP` and `# TYPE` lines of a family.
pub(super) fn family_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line: `name{l="v",...} value`.
pub(super) fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (l, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(l);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = if value.is_nan() {
        writeln!(out, " NaN")
    } else if value.is_infinite() {
        writeln!(out, " {}Inf", if value > 0.0 { "+" } else { "-" })
    } else {
        writeln!(out, " {value}")
    };
}

/// Per-chain ingest counters.
#[derive(Debug, Clone)]
pub struct ChainMetrics {
    /// `cantilever_reconnects_total{chain}`: WS reconnects.
    pub reconnects: Counter,
    /// `cantilever_gaps_backfilled_total{chain}`: blocks fetched by number after a gap.
    pub gaps_backfilled: Counter,
}

/// The standard metrics of the bot, registered in one [`Registry`]. Per-chain head lag, cache
/// staleness, readiness and the halt flag are exported from [`Health`](super::Health), and RSS is
/// read at each scrape, so they are not here.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `cantilever_candidates_total`: routes sized and screened profitable.
    pub candidates: Counter,
    /// `cantilever_realised_pnl_usd`: realised PnL since start, USD.
    pub realised_pnl_usd: FloatGauge,
    /// `cantilever_ledger_queue_depth`: records waiting for the ledger writer.
    pub ledger_queue_depth: Gauge,
}

impl Metrics {
    /// Registers the standard metrics in `registry`.
    ///
    /// # Errors
    /// [`TelemetryError::Metric`] if `registry` already holds one of these names with another
    /// type or labels.
    pub fn new(registry: &Registry) -> Result<Self, TelemetryError> {
        Ok(Self {
            registry: registry.clone(),
            candidates: registry.counter(
                "cantilever_candidates_total",
                "Routes sized and screened profitable.",
                &[],
            )?,
            realised_pnl_usd: registry.float_gauge(
                "cantilever_realised_pnl_usd",
                "Realised PnL since start, USD.",
                &[],
            )?,
            ledger_queue_depth: registry.gauge(
                "cantilever_ledger_queue_depth",
                "Records waiting for the ledger writer.",
                &[],
            )?,
        })
    }

    /// The registry these live in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Reconnect and backfill counters of `chain` (its configured name).
    ///
    /// # Errors
    /// As [`Metrics::new`].
    pub fn chain(&self, chain: &str) -> Result<ChainMetrics, TelemetryError> {
        Ok(ChainMetrics {
            reconnects: self.registry.counter(
                "cantilever_reconnects_total",
                "WebSocket reconnects per chain.",
                &[("chain", chain)],
            )?,
            gaps_backfilled: self.registry.counter(
                "cantilever_gaps_backfilled_total",
                "Blocks backfilled by number after a gap in the head stream.",
                &[("chain", chain)],
            )?,
        })
    }

    /// `cantilever_refusals_total{reason}`: candidates refused by risk, by refusal kind.
    ///
    /// # Errors
    /// As [`Metrics::new`].
    pub fn refusals(&self, reason: &str) -> Result<Counter, TelemetryError> {
        self.registry.counter(
            "cantilever_refusals_total",
            "Candidates refused by containment or desk limits, by reason.",
            &[("reason", reason)],
        )
    }

    /// `cantilever_submissions_total{chain,kind}`: raw txs and bundles sent.
    ///
    /// # Errors
    /// As [`Metrics::new`].
    pub fn submissions(&self, chain: &str, kind: &str) -> Result<Counter, TelemetryError> {
        self.registry.counter(
            "cantilever_submissions_total",
            "Transactions (kind=raw) and bundles (kind=bundle) submitted.",
            &[("chain", chain), ("kind", kind)],
        )
    }

    /// `cantilever_inclusions_total{relay,outcome}`: outcomes per relay (`included`,
    /// `reverted`, `missed`); the inclusion rate per relay is `included / sum`.
    ///
    /// # Errors
    /// As [`Metrics::new`].
    pub fn inclusions(&self, relay: &str, outcome: &str) -> Result<Counter, TelemetryError> {
        self.registry.counter(
            "cantilever_inclusions_total",
            "Submission outcomes per relay (rpc for public or private RPC).",
            &[("relay", relay), ("outcome", outcome)],
        )
    }
}

/// Resident set size of this process in bytes (Linux: `VmRSS` of `/proc/self/status`, exact
/// without knowing the page size); `None` elsewhere.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
