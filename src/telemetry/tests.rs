use std::io::Write;
use std::sync::{Arc, Mutex};

use super::*;
use crate::config::LogFormat;

/// Within hdrhistogram's 3-significant-digit resolution.
fn close(actual: u64, expected: u64) -> bool {
    actual.abs_diff(expected) <= expected / 1000 + 1
}

#[test]
fn percentiles_of_known_data() {
    let mut h = StageHistograms::new().unwrap();
    for ns in 1..=10_000u64 {
        h.record(EventKind::Head, Stage::Sim, ns);
    }
    let p = h.percentiles(EventKind::Head, Stage::Sim);
    assert_eq!(p.count, 10_000);
    for (got, want) in
        [(p.p50, 5_000), (p.p90, 9_000), (p.p99, 9_900), (p.p999, 9_990), (p.max, 10_000)]
    {
        assert!(close(got, want), "{got} vs {want}: {p:?}");
    }
    // Other kinds and stages are untouched.
    assert_eq!(h.percentiles(EventKind::Pending, Stage::Sim), Percentiles::default());
    assert_eq!(h.percentiles(EventKind::Head, Stage::Risk).count, 0);

    // Beyond 60 s saturates instead of failing; zero is recordable.
    h.record(EventKind::Pending, Stage::EndToEnd, u64::MAX);
    h.record(EventKind::Pending, Stage::EndToEnd, 0);
    let p = h.percentiles(EventKind::Pending, Stage::EndToEnd);
    assert_eq!(p.count, 2);
    assert!(close(p.max, 60_000_000_000), "{p:?}");

    // Merge adds counts; a skewed second half moves the median.
    let mut other = StageHistograms::new().unwrap();
    for _ in 0..10_000 {
        other.record(EventKind::Head, Stage::Sim, 1_000_000);
    }
    h.merge(&other).unwrap();
    let p = h.percentiles(EventKind::Head, Stage::Sim);
    assert_eq!(p.count, 20_000);
    assert!(close(p.p90, 1_000_000) && close(p.p50, 10_000), "{p:?}");
    h.reset();
    assert_eq!(h.percentiles(EventKind::Head, Stage::Sim).count, 0);
}

#[test]
fn publish_hands_over_and_never_waits_on_a_reader() {
    let shared = SharedHistograms::new();
    let mut h = StageHistograms::new().unwrap();
    h.record(EventKind::Head, Stage::Decode, 5);
    assert!(shared.with_latest(|l| l.is_none()));
    assert!(shared.publish(&mut h, false));
    assert_eq!(h.percentiles(EventKind::Head, Stage::Decode).count, 0, "handed over whole");
    // While a reader holds the total, a publish still hands over at once; the merger adds it
    // once the reader is done.
    shared.with_latest(|latest| {
        assert_eq!(latest.unwrap().percentiles(EventKind::Head, Stage::Decode).count, 1);
        h.record(EventKind::Head, Stage::Decode, 7);
        let t = std::time::Instant::now();
        assert!(shared.publish(&mut h, false));
        assert!(t.elapsed() < std::time::Duration::from_millis(100), "never waits");
    });
    assert_eq!(
        shared.with_latest(|l| l.unwrap().percentiles(EventKind::Head, Stage::Decode).count),
        2
    );
    // Spares come back from the merger: publishing goes on.
    for _ in 0..10 {
        h.record(EventKind::Head, Stage::Decode, 9);
        assert!(shared.publish(&mut h, false));
        shared.with_latest(|_| ());
    }
    assert_eq!(h.percentiles(EventKind::Head, Stage::Decode).count, 0);
    assert_eq!(
        shared.with_latest(|l| l.unwrap().percentiles(EventKind::Head, Stage::Decode).count),
        12
    );
}

#[test]
fn registry_refuses_bad_names_and_clashes() {
    let r = Registry::new();
    let c = r.counter("x_total", "x", &[("chain", "a")]).unwrap();
    c.inc();
    // The same series is the same handle.
    assert_eq!(r.counter("x_total", "x", &[("chain", "a")]).unwrap().get(), 1);
    let bad = [
        r.counter("1x", "", &[]).map(drop),
        r.counter("x-y", "", &[]).map(drop),
        r.counter("ok", "", &[("bad-label", "v")]).map(drop),
        r.counter("ok", "", &[("quantile", "v")]).map(drop),
        r.gauge("x_total", "x", &[("chain", "b")]).map(drop),
        r.counter("x_total", "x", &[("relay", "b")]).map(drop),
    ];
    for (i, e) in bad.into_iter().enumerate() {
        assert!(matches!(e, Err(TelemetryError::Metric(_))), "case {i}: {e:?}");
    }
}

/// One parsed sample line.
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict line-by-line parser of the text format 0.0.4: every sample belongs to the family
/// of the last `# TYPE` (summaries may add `_sum` and `_count`), label values are unescaped.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut family: Option<(String, String)> = None;
    let mut seen_types = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "line {n}: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(valid_name(name), "line {n}: {line}");
            assert!(["counter", "gauge", "summary"].contains(&kind), "line {n}: {line}");
            assert!(seen_types.insert(name.to_owned()), "line {n}: family declared twice");
            family = Some((name.to_owned(), kind.to_owned()));
        } else {
            let (fam, kind) = family.as_ref().unwrap_or_else(|| panic!("line {n}: no TYPE"));
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            let ok = name == fam
                || (kind == "summary"
                    && (name == format!("{fam}_sum") || name == format!("{fam}_count")));
            assert!(ok, "line {n}: {name} outside family {fam}");
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if let Some(body) = rest.strip_prefix('{') {
                let mut chars = body.char_indices();
                let end;
                loop {
                    let (start, c) = chars.next().unwrap();
                    if c == '}' {
                        end = start + 1;
                        break;
                    }
                    let eq = body[start..].find("=\"").unwrap() + start;
                    let label = &body[start..eq];
                    assert!(valid_name(label), "line {n}: label {label}");
                    while chars.next().unwrap().0 < eq + 1 {}
                    let mut value = String::new();
                    loop {
                        match chars.next().unwrap().1 {
                            '\\' => value.push(match chars.next().unwrap().1 {
                                'n' => '\n',
                                c => c,
                            }),
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.push((label.to_owned(), value));
                    if let Some((i, '}')) = chars.clone().next() {
                        end = i + 1;
                        break;
                    }
                    assert_eq!(chars.next().unwrap().1, ',', "line {n}");
                }
                rest = &body[end..];
            }
            let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("line {n}: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("line {n}: {v:?}: {e}")),
            };
            samples.push(Sample { name: name.to_owned(), labels, value });
        }
    }
    samples
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.iter().any(|(l, w)| l == k && w == v))
        })
        .unwrap_or_else(|| panic!("{name}{labels:?} not exported"))
}

#[test]
fn exposition_parses_line_by_line() {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    let chain = metrics.chain("chain138").unwrap();
    chain.reconnects.add(3);
    chain.gaps_backfilled.add(7);
    metrics.candidates.add(42);
    metrics.refusals("exposure").unwrap().add(2);
    metrics.refusals("odd \"reason\"\\with\nnewline").unwrap().inc();
    metrics.submissions("chain138", "bundle").unwrap().inc();
    metrics.inclusions("flashbots", "included").unwrap().add(4);
    metrics.realised_pnl_usd.add(12.5);
    metrics.realised_pnl_usd.add(-0.25);
    metrics.ledger_queue_depth.set(9);

    let health = Health::new([("chain138", 2), ("alltra", 3)]);
    health.chain("chain138").unwrap().set_head_lag_blocks(4);
    health.set_halted(true);
    // Two chains' engines, each publishing its own stage histograms.
    let (h138, alltra) = (SharedHistograms::new(), SharedHistograms::new());
    let mut h = StageHistograms::new().unwrap();
    for ns in [1_000, 2_000, 3_000] {
        h.record(EventKind::Head, Stage::EndToEnd, ns);
    }
    assert!(h138.publish(&mut h, true));
    let mut h = StageHistograms::new().unwrap();
    h.record(EventKind::Pending, Stage::Sim, 7_000);
    assert!(alltra.publish(&mut h, true));
    let histograms = vec![("chain138".to_owned(), h138), ("alltra".to_owned(), alltra)];
    let exporter = Exporter { registry, health, histograms };
    let text = exporter.render_metrics();
    let s = parse_exposition(&text);

    assert_eq!(find(&s, "cantilever_reconnects_total", &[("chain", "chain138")]).value, 3.0);
    assert_eq!(find(&s, "cantilever_gaps_backfilled_total", &[("chain", "chain138")]).value, 7.0);
    assert_eq!(find(&s, "cantilever_candidates_total", &[]).value, 42.0);
    assert_eq!(find(&s, "cantilever_refusals_total", &[("reason", "exposure")]).value, 2.0);
    let odd = [("reason", "odd \"reason\"\\with\nnewline")];
    assert_eq!(find(&s, "cantilever_refusals_total", &odd).value, 1.0);
    let sub = [("chain", "chain138"), ("kind", "bundle")];
    assert_eq!(find(&s, "cantilever_submissions_total", &sub).value, 1.0);
    let inc = [("relay", "flashbots"), ("outcome", "included")];
    assert_eq!(find(&s, "cantilever_inclusions_total", &inc).value, 4.0);
    assert_eq!(find(&s, "cantilever_realised_pnl_usd", &[]).value, 12.25);
    assert_eq!(find(&s, "cantilever_ledger_queue_depth", &[]).value, 9.0);
    assert_eq!(find(&s, "cantilever_halted", &[]).value, 1.0);
    assert_eq!(find(&s, "cantilever_ready", &[]).value, 0.0);
    assert_eq!(find(&s, "cantilever_head_lag_blocks", &[("chain", "chain138")]).value, 4.0);
    assert_eq!(find(&s, "cantilever_connected", &[("chain", "alltra")]).value, 0.0);
    assert_eq!(find(&s, "cantilever_cache_stale", &[("chain", "alltra")]).value, 1.0);
    assert!(find(&s, "cantilever_rss_bytes", &[]).value > 1e6);

    let e2e = [("chain", "chain138"), ("kind", "head"), ("stage", "end_to_end")];
    let q = |quantile| {
        let labels = [e2e[0], e2e[1], e2e[2], ("quantile", quantile)];
        find(&s, "cantilever_stage_latency_seconds", &labels).value
    };
    assert!((q("0.5") - 2e-6).abs() < 1e-8, "{}", q("0.5"));
    assert!((q("0.999") - 3e-6).abs() < 1e-8);
    assert_eq!(find(&s, "cantilever_stage_latency_seconds_count", &e2e).value, 3.0);
    assert!((find(&s, "cantilever_stage_latency_seconds_sum", &e2e).value - 6e-6).abs() < 1e-8);
    // The other chain's latencies are its own.
    let sim = [("chain", "alltra"), ("kind", "pending"), ("stage", "sim")];
    assert_eq!(find(&s, "cantilever_stage_latency_seconds_count", &sim).value, 1.0);
    let e2e_alltra = [("chain", "alltra"), ("kind", "head"), ("stage", "end_to_end")];
    assert_eq!(find(&s, "cantilever_stage_latency_seconds_count", &e2e_alltra).value, 0.0);
    // Every kind and stage of every chain is exported, even when empty; one family header.
    let counts = s.iter().filter(|x| x.name == "cantilever_stage_latency_seconds_count").count();
    assert_eq!(counts, 2 * EventKind::ALL.len() * Stage::ALL.len());
    assert_eq!(text.matches("# TYPE cantilever_stage_latency_seconds summary").count(), 1);
}

#[test]
fn health_transitions_give_reasons() {
    let health = Health::new([("chain138", 2)]);
    let c = health.chain("chain138").unwrap();
    assert!(health.chain("nope").is_none());
    let r = health.report();
    assert!(!r.ready);
    assert_eq!(r.reasons, ["chain138: not connected", "chain138: state cache stale"]);

    c.set_connected(true);
    c.set_cache_fresh(true);
    c.set_head_lag_blocks(2);
    let r = health.report();
    assert!(r.ready && r.reasons.is_empty() && r.chains[0].ready, "{r:?}");

    c.set_head_lag_blocks(3);
    assert_eq!(health.report().reasons, ["chain138: 3 blocks behind head (budget 2)"]);
    c.set_head_lag_blocks(0);
    health.set_halted(true);
    let r = health.report();
    assert!(!r.ready && r.halted && r.chains[0].ready);
    assert_eq!(r.reasons, ["halted: the kill switch is engaged"]);

    assert_eq!(Health::new([]).report().reasons, ["no chains registered"]);
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture(format: LogFormat) -> String {
    let buf = Buf::default();
    let writer = buf.clone();
    let (sub, _) = logging::build(format, "info", None, move || writer.clone(), false).unwrap();
    tracing::subscriber::with_default(sub, || {
        let span = opportunity_span(42, "chain138", "depeg");
        let _g = span.enter();
        tracing::info!(target: "cantilever::sim", profit = 7, "simulated");
        tracing::warn!(target: "cantilever::risk", "refused");
    });
    String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
}

#[test]
fn every_line_inside_an_opportunity_span_carries_its_id() {
    let text = capture(LogFormat::Text);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        assert!(line.contains("opp=42") && line.contains("strategy=\"depeg\""), "{line}");
    }

    let json = capture(LogFormat::Json);
    let lines: Vec<serde_json::Value> =
        json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{json}");
    for line in &lines {
        assert_eq!(line["span"]["opp"], 42, "{line}");
        assert_eq!(line["span"]["chain"], "chain138");
    }
    assert_eq!(lines[0]["fields"]["message"], "simulated");
}

#[test]
fn an_invalid_filter_is_refused_and_an_invalid_rust_log_ignored() {
    let bad = logging::build(LogFormat::Text, "info,=[", None, std::io::sink, false);
    let Err(TelemetryError::Filter { source_name, .. }) = bad else { panic!("accepted") };
    assert_eq!(source_name, "[telemetry] log_level");
    let (_, ignored) =
        logging::build(LogFormat::Json, "info", Some("=[".into()), std::io::sink, false).unwrap();
    assert!(matches!(ignored, Some(TelemetryError::Filter { source_name: "RUST_LOG", .. })));
}
