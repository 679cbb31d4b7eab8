//! The bench's HTML report: one self-contained page, charts as inline SVG, no scripts.

use std::fmt::Write as _;

use super::{BenchReport, KindReport, SweepReport};

const W: f64 = 720.0;
const LABEL: f64 = 110.0;
const ROW: f64 = 16.0;
const COLORS: [(&str, &str); 5] = [
    ("p50", "#2b8a3e"),
    ("p90", "#1971c2"),
    ("p99", "#e67700"),
    ("p99.9", "#c92a2a"),
    ("max", "#495057"),
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// x position of `ns` on a log scale from 100 ns to `top` ns.
fn x_of(ns: u64, top: f64) -> f64 {
    let lo = 100f64.log10();
    let v = (ns.max(100) as f64).log10();
    LABEL + (v - lo) / (top.log10() - lo).max(1e-9) * (W - LABEL - 20.0)
}

/// A latency ladder per stage: one bar per percentile, log scale.
fn kind_svg(k: &KindReport) -> String {
    let top = k.stages.iter().map(|s| s.latency.max).max().unwrap_or(1_000).max(1_000) as f64 * 1.2;
    let h = k.stages.len() as f64 * (ROW * 5.0 + 8.0) + 40.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let mut y = 10.0;
    for st in &k.stages {
        let l = &st.latency;
        let _ =
            write!(s, "<text x=\"0\" y=\"{}\">{} (n={})</text>", y + ROW * 2.5, st.stage, l.count);
        for (i, v) in [l.p50, l.p90, l.p99, l.p999, l.max].iter().enumerate() {
            let (name, color) = COLORS[i];
            let x = if *v == 0 { LABEL } else { x_of(*v, top) };
            let _ = write!(
                s,
                "<rect x=\"{LABEL}\" y=\"{y}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{name} {:.1} µs</title></rect><text x=\"{:.1}\" y=\"{:.1}\">{name} {:.1} µs</text>",
                (x - LABEL).max(1.0),
                ROW - 3.0,
                *v as f64 / 1e3,
                x + 4.0,
                y + ROW - 5.0,
                *v as f64 / 1e3
            );
            y += ROW;
        }
        y += 8.0;
    }
    for decade in [1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8] {
        if decade <= top {
            let x = x_of(decade as u64, top);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{y}\" stroke=\"#ccc\" stroke-dasharray=\"2,3\"/><text x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
                y + 14.0,
                if decade < 1e3 { "100 ns".to_owned() } else { format!("{} µs", decade / 1e3) }
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn table(k: &KindReport) -> String {
    let mut t = String::from(
        "<table><tr><th>stage</th><th>count</th><th>p50 µs</th><th>p90 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>max µs</th></tr>",
    );
    for s in &k.stages {
        let l = &s.latency;
        let _ = write!(t, "<tr><td>{}</td><td>{}</td>", s.stage, l.count);
        for v in [l.p50, l.p90, l.p99, l.p999, l.max] {
            let _ = write!(t, "<td>{:.1}</td>", v as f64 / 1e3);
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

fn report_body(r: &BenchReport) -> String {
    let mut b = format!(
        "<h2>{} — {} pools ({} synthetic), {} routes</h2><p>{} events in {:.3} s ({:.0} events/s), RSS {:.1} MB, peak {:.1} MB, {} profile; {} simulated, {} signed, {} refused.</p>",
        esc(&r.cassette),
        r.venues,
        r.synthetic_pools,
        r.routes,
        r.events,
        r.elapsed_s,
        r.events_per_s,
        r.rss_bytes as f64 / 1e6,
        r.peak_rss_bytes as f64 / 1e6,
        r.profile,
        r.counts.simulated,
        r.counts.approved,
        r.counts.refused,
    );
    for k in [&r.head, &r.pending] {
        let _ = write!(b, "<h3>{} events ({})</h3>{}{}", k.kind, k.events, table(k), kind_svg(k));
    }
    b
}

/// A named, coloured series of a sweep chart with its top value.
type Series = (&'static str, &'static str, f64, Box<dyn Fn(&BenchReport) -> f64>);

/// A scaling curve: head and pending end-to-end p99 (left, µs) and RSS (right, MB) by pools.
fn sweep_svg(s: &SweepReport) -> String {
    let (w, h, pad) = (W, 260.0, 50.0);
    let n = s.runs.len().max(2) as f64 - 1.0;
    let p99 =
        |k: &KindReport| k.stage(crate::telemetry::Stage::EndToEnd).map_or(0, |x| x.latency.p99);
    let max_lat =
        s.runs.iter().map(|r| p99(&r.head).max(p99(&r.pending))).max().unwrap_or(1).max(1) as f64;
    let max_rss = s.runs.iter().map(|r| r.rss_bytes).max().unwrap_or(1).max(1) as f64;
    let x = |i: usize| pad + i as f64 / n * (w - 2.0 * pad);
    let y = |v: f64, top: f64| h - pad - v / top * (h - 2.0 * pad);
    let line = |f: &dyn Fn(&BenchReport) -> f64, top: f64| {
        s.runs
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{:.1},{:.1}", x(i), y(f(r), top)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let series: [Series; 3] = [
        ("head e2e p99", "#1971c2", max_lat, Box::new(move |r: &BenchReport| p99(&r.head) as f64)),
        (
            "pending e2e p99",
            "#e67700",
            max_lat,
            Box::new(move |r: &BenchReport| p99(&r.pending) as f64),
        ),
        ("RSS", "#495057", max_rss, Box::new(|r: &BenchReport| r.rss_bytes as f64)),
    ];
    for (j, (name, color, top, f)) in series.iter().enumerate() {
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/><text x=\"{}\" y=\"{}\" fill=\"{color}\">{name}</text>",
            line(f.as_ref(), *top),
            pad + j as f64 * 150.0,
            20
        );
    }
    for (i, r) in s.runs.iter().enumerate() {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{} pools</text><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#1971c2\">{:.0} µs</text><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#495057\">{:.0} MB</text>",
            x(i),
            h - pad + 20.0,
            r.synthetic_pools,
            x(i),
            y(p99(&r.head) as f64, max_lat) - 4.0,
            p99(&r.head) as f64 / 1e3,
            x(i),
            y(r.rss_bytes as f64, max_rss) + 12.0,
            r.rss_bytes as f64 / 1e6
        );
    }
    out.push_str("</svg>");
    out
}

/// The whole page: every report's tables and latency charts, and the scaling curves when there
/// is more than one report (a sweep).
pub fn render_html(reports: &[BenchReport]) -> String {
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>cantilever bench</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body><h1>cantilever bench</h1>",
    );
    if reports.len() > 1 {
        let sweep = SweepReport { runs: reports.to_vec() };
        let _ = write!(
            page,
            "<h2>Scaling</h2><pre>{}</pre>{}",
            esc(&sweep.to_string()),
            sweep_svg(&sweep)
        );
    }
    for r in reports {
        page.push_str(&report_body(r));
    }
    page.push_str("</body></html>\n");
    page
}
