//! The bench's HTML report: one self-contained page, charts as inline SVG, no scripts.
//!
//! Per event kind: a table, a percentile ladder and one latency histogram per stage. With a
//! baseline: ours against eth_call per kind. With a sweep: scaling curves (pools → p50, p99 and
//! RSS; pending rate → p50, p99 and queue depth).

use std::fmt::Write as _;

use super::{
    BenchReport, KindReport, SweepReport,
    baseline::{BaselineKind, BaselineReport},
    e2e,
};

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

fn svg_open(w: f64, h: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">"
    )
}

/// A duration label: ns, µs, ms or s.
fn dur(ns: f64) -> String {
    match ns {
        n if n < 1e3 => format!("{n:.0} ns"),
        n if n < 1e6 => format!("{:.1} µs", n / 1e3),
        n if n < 1e9 => format!("{:.1} ms", n / 1e6),
        n => format!("{:.2} s", n / 1e9),
    }
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
    let mut s = svg_open(W, h);
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
                "<rect x=\"{LABEL}\" y=\"{y}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{name} {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\">{name} {}</text>",
                (x - LABEL).max(1.0),
                ROW - 3.0,
                dur(*v as f64),
                x + 4.0,
                y + ROW - 5.0,
                dur(*v as f64)
            );
            y += ROW;
        }
        y += 8.0;
    }
    for decade in [1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9] {
        if decade <= top {
            let x = x_of(decade as u64, top);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{y}\" stroke=\"#ccc\" stroke-dasharray=\"2,3\"/><text x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
                y + 14.0,
                dur(decade)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// One stage's latency histogram: a bar per log bucket (4 per decade), count on the y axis.
fn hist_svg(title: &str, buckets: &[(u64, u64)]) -> String {
    let (w, h, pad) = (340.0, 130.0, 28.0);
    let mut s = svg_open(w, h);
    let _ = write!(s, "<text x=\"4\" y=\"12\" font-weight=\"bold\">{}</text>", esc(title));
    let n = buckets.len().max(1) as f64;
    let top = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let bw = (w - 2.0 * pad) / n;
    for (i, (upper, count)) in buckets.iter().enumerate() {
        let bh = *count as f64 / top * (h - 2.0 * pad);
        let x = pad + i as f64 * bw;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#1971c2\"><title>≤ {}: {count}</title></rect>",
            h - pad - bh,
            (bw - 1.0).max(0.5),
            dur(*upper as f64)
        );
        // Label every decade boundary.
        let l = (*upper as f64).log10();
        if (l - l.round()).abs() < 0.01 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + bw,
                h - pad + 14.0,
                dur(*upper as f64)
            );
        }
    }
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#333\"/><text x=\"{1}\" y=\"{2}\" text-anchor=\"end\">max count {top}</text>",
        h - pad,
        w - pad,
        pad - 6.0
    );
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

fn summary(r: &BenchReport) -> String {
    let mut b = format!(
        "<p>{} — {} pools ({} synthetic), {} routes; {} events in {:.3} s ({:.0} events/s), RSS {:.1} MB, peak {:.1} MB, {} profile; {} simulated, {} signed, {} refused.</p>",
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
    if let Some(p) = &r.pacing {
        let _ = write!(
            b,
            "<p>Paced at {:.0} pending/s: {} sent ({:.0}/s achieved), {} examined, queue depth p50 {} p99 {} max {}, {} late.</p>",
            p.rate,
            p.sent,
            p.achieved_rate,
            p.examined,
            p.queue_depth.p50,
            p.queue_depth.p99,
            p.queue_depth.max,
            p.late
        );
    }
    b
}

fn report_body(r: &BenchReport, histograms: bool) -> String {
    let mut b = summary(r);
    for k in [&r.head, &r.pending] {
        let _ = write!(b, "<h3>{} events ({})</h3>{}{}", k.kind, k.events, table(k), kind_svg(k));
        if histograms {
            b.push_str("<div>");
            for s in &k.stages {
                b.push_str(&hist_svg(&format!("{} {}", k.kind, s.stage), &s.histogram));
            }
            b.push_str("</div>");
        }
    }
    b
}

/// Ours (end to end) against the three baselines (RPC per event), p50 and p99, log scale.
fn baseline_svg(b: &BaselineReport) -> String {
    let rows: Vec<(String, u64, &str)> = [
        (&b.sized_head, &b.screened_head, &b.head),
        (&b.sized_pending, &b.screened_pending, &b.pending),
    ]
    .iter()
    .flat_map(|(z, s, k)| {
        [
            (format!("{} ours p50", k.kind), k.ours_p50_ns, "#2b8a3e"),
            (format!("{} eth_call sizing p50", k.kind), z.per_event.p50, "#862e9c"),
            (format!("{} eth_call/route p50", k.kind), s.per_event.p50, "#c92a2a"),
            (format!("{} eth_call/cand. p50", k.kind), k.per_event.p50, "#e8590c"),
            (format!("{} ours p99", k.kind), k.ours_p99_ns, "#2b8a3e"),
            (format!("{} eth_call sizing p99", k.kind), z.per_event.p99, "#862e9c"),
            (format!("{} eth_call/route p99", k.kind), s.per_event.p99, "#c92a2a"),
            (format!("{} eth_call/cand. p99", k.kind), k.per_event.p99, "#e8590c"),
        ]
    })
    .collect();
    let top = rows.iter().map(|r| r.1).max().unwrap_or(1_000).max(1_000) as f64 * 1.5;
    let h = rows.len() as f64 * ROW + 30.0;
    let mut s = svg_open(W, h);
    for (i, (name, v, color)) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * ROW;
        let x = if *v == 0 { LABEL } else { x_of(*v, top) };
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\">{}</text><rect x=\"{LABEL}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y + ROW - 5.0,
            esc(name),
            (x - LABEL).max(1.0),
            ROW - 3.0,
            x + 4.0,
            y + ROW - 5.0,
            dur(*v as f64)
        );
    }
    s.push_str("</svg>");
    s
}

/// One baseline's per-kind table.
fn baseline_table(kinds: [&BaselineKind; 2]) -> String {
    let mut t = String::from(
        "<table><tr><th>kind</th><th>events</th><th>calls</th><th>RPC per event p50 µs</th><th>p99 µs</th><th>cold p50 µs</th><th>ours e2e p50 µs</th><th>p99 µs</th><th>× p50</th><th>× p99</th></tr>",
    );
    for k in kinds {
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            k.kind,
            k.events,
            k.calls,
            k.per_event.p50 as f64 / 1e3,
            k.per_event.p99 as f64 / 1e3,
            k.per_event_cold.p50 as f64 / 1e3,
            k.ours_p50_ns as f64 / 1e3,
            k.ours_p99_ns as f64 / 1e3,
            k.speedup_p50,
            k.speedup_p99
        );
    }
    t.push_str("</table>");
    t
}

fn baseline_section(b: &BaselineReport) -> String {
    let mut t = format!(
        "<h2>Baseline: eth_call to anvil on loopback</h2><p>An event's baseline costs its calls, one after another, plus our own signing time for the event.</p><h3>Per screened route (a typical bot)</h3><p>{}. {} screened routes called ({} sized profitable, the rest at their minimum amount), {} RPC errors, {} cassette misses.</p>{}<h3>Sizing by eth_call (a typical bot that sizes)</h3><p>{}. {} calls, {} RPC errors.</p>{}<h3>Per proven candidate</h3><p>{}. {} candidates: {} agree on status and gas, {} disagree, {} RPC errors, {} not simulated in process; the cassette server answered {} requests, missed {}.</p>{}",
        esc(b.screened_method),
        b.screened_routes,
        b.screened_profitable,
        b.screened_errors,
        b.screened_misses,
        baseline_table([&b.screened_head, &b.screened_pending]),
        esc(b.sized_method),
        b.sized_calls,
        b.sized_errors,
        baseline_table([&b.sized_head, &b.sized_pending]),
        esc(b.method),
        b.candidates,
        b.agree,
        b.disagree,
        b.errors,
        b.not_simulated,
        b.server_requests,
        b.server_misses,
        baseline_table([&b.head, &b.pending])
    );
    for m in b.miss_samples.iter().chain(&b.problems) {
        let _ = write!(t, "<p><code>{}</code></p>", esc(m));
    }
    t.push_str(&baseline_svg(b));
    t
}

/// One series of a line chart: name, colour, a value per x, and whether it uses the right axis.
type Series = (&'static str, &'static str, Vec<f64>, bool);

/// A line chart over categorical x values; the left axis in ns (durations), the right in `right`
/// units (each axis scaled to its own maximum).
fn line_chart(xs: &[String], series: &[Series], right: &str) -> String {
    let (w, h, pad) = (W, 260.0, 60.0);
    let n = xs.len().max(2) as f64 - 1.0;
    let top = |r: bool| {
        series
            .iter()
            .filter(|s| s.3 == r)
            .flat_map(|s| s.2.iter().copied())
            .fold(0.0f64, f64::max)
            .max(1.0)
    };
    let (left_top, right_top) = (top(false) * 1.1, top(true) * 1.1);
    let x = |i: usize| pad + i as f64 / n * (w - 2.0 * pad);
    let y = |v: f64, t: f64| h - pad - v / t * (h - 2.0 * pad);
    let mut out = svg_open(w, h);
    let _ = write!(
        out,
        "<line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#333\"/><text x=\"4\" y=\"{2}\">{3}</text><text x=\"{4}\" y=\"{2}\" text-anchor=\"end\">{5} {6}</text>",
        h - pad,
        w - pad,
        pad - 8.0,
        dur(left_top),
        w - 4.0,
        if right_top > 1.0 { format!("{right_top:.0}") } else { String::new() },
        esc(right)
    );
    for (j, (name, color, values, r)) in series.iter().enumerate() {
        let t = if *r { right_top } else { left_top };
        let points = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v, t)))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{} points=\"{points}\"/><text x=\"{:.1}\" y=\"16\" fill=\"{color}\">{name}</text>",
            if *r { " stroke-dasharray=\"5,3\"" } else { "" },
            pad + j as f64 * 140.0,
        );
        for (i, v) in values.iter().enumerate() {
            let label = if *r { format!("{v:.0}") } else { dur(*v) };
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{name}: {label}</title></circle><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\" font-size=\"9\">{label}</text>",
                x(i),
                y(*v, t),
                x(i) + 4.0,
                y(*v, t) - 4.0
            );
        }
    }
    for (i, label) in xs.iter().enumerate() {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(i),
            h - pad + 18.0,
            esc(label)
        );
    }
    out.push_str("</svg>");
    out
}

fn sweep_section(s: &SweepReport) -> String {
    let mut out = format!("<h2>Scaling</h2><pre>{}</pre>", esc(&sweep_tables(s)));
    if !s.runs.is_empty() {
        let xs: Vec<String> =
            s.runs.iter().map(|r| format!("{} pools", r.synthetic_pools)).collect();
        let f = |g: &dyn Fn(&BenchReport) -> f64| s.runs.iter().map(g).collect::<Vec<_>>();
        out.push_str("<h3>Pools → latency and memory</h3>");
        out.push_str(&line_chart(
            &xs,
            &[
                ("head e2e p50", "#2b8a3e", f(&|r| e2e(&r.head).p50 as f64), false),
                ("head e2e p99", "#1971c2", f(&|r| e2e(&r.head).p99 as f64), false),
                ("pending e2e p99", "#e67700", f(&|r| e2e(&r.pending).p99 as f64), false),
                ("RSS MB", "#495057", f(&|r| r.rss_bytes as f64 / 1e6), true),
            ],
            "MB",
        ));
    }
    if !s.rates.is_empty() {
        let xs: Vec<String> = s
            .rates
            .iter()
            .map(|r| format!("{:.0}/s", r.pacing.as_ref().map_or(0.0, |p| p.rate)))
            .collect();
        let f = |g: &dyn Fn(&BenchReport) -> f64| s.rates.iter().map(g).collect::<Vec<_>>();
        out.push_str("<h3>Pending rate → latency and queueing</h3>");
        out.push_str(&line_chart(
            &xs,
            &[
                ("pending e2e p50", "#2b8a3e", f(&|r| e2e(&r.pending).p50 as f64), false),
                ("pending e2e p99", "#e67700", f(&|r| e2e(&r.pending).p99 as f64), false),
                (
                    "queue depth p99",
                    "#495057",
                    f(&|r| r.pacing.as_ref().map_or(0.0, |p| p.queue_depth.p99 as f64)),
                    true,
                ),
            ],
            "queued",
        ));
    }
    for e in &s.failures {
        let _ = write!(out, "<p>failed: {}</p>", esc(e));
    }
    for r in s.runs.iter().chain(&s.rates) {
        let what = match &r.pacing {
            Some(p) => format!("{:.0} pending/s", p.rate),
            None => format!("{} synthetic pools", r.synthetic_pools),
        };
        let _ =
            write!(out, "<details><summary>{what}</summary>{}</details>", report_body(r, false));
    }
    out
}

/// The sweep's pools and rates tables as text.
fn sweep_tables(s: &SweepReport) -> String {
    struct T<'a>(&'a SweepReport);
    impl std::fmt::Display for T<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            super::pools_table(f, &self.0.runs)?;
            writeln!(f)?;
            super::rates_table(f, &self.0.rates)
        }
    }
    T(s).to_string()
}

/// The whole page: the main run's tables, ladders and per-stage histograms, the baseline, and
/// the scaling curves of a sweep.
pub fn render_html(main: &BenchReport, sweep: Option<&SweepReport>) -> String {
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>cantilever bench</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}svg{margin:4px}</style></head><body><h1>cantilever bench</h1>",
    );
    page.push_str(&report_body(main, true));
    if let Some(b) = &main.baseline {
        page.push_str(&baseline_section(b));
    }
    if let Some(s) = sweep {
        page.push_str(&sweep_section(s));
    }
    page.push_str("</body></html>\n");
    page
}
