//! The backtest report: per strategy and per route, the peg with and without the bot, as text,
//! JSON and a self-contained HTML page with inline SVG plots.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use crate::config::ChainConfig;

/// One opportunity: what the engine decided and, when it signed, what the judge found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DecisionRow {
    /// Opportunity id (in the engine's order).
    pub opportunity: u64,
    /// The block it was aimed at.
    pub block: u64,
    /// Strategy.
    pub strategy: String,
    /// Route label.
    pub route: String,
    /// Native expected profit, USD.
    pub expected_profit_usd: f64,
    /// Approved by containment and the desk limits.
    pub approved: bool,
    /// The refusal kind when refused.
    pub refusal: Option<String>,
    /// A transaction was signed (what the bot would have sent).
    pub signed: bool,
    /// It executed at its position on the real chain.
    pub landed: bool,
    /// The block it was judged in.
    pub landed_in: u64,
    /// Gas used there.
    pub gas_used: u64,
    /// PnL after gas, USD (gas lost when it reverted; 0 when nothing was signed).
    pub pnl_usd: f64,
    /// Revert reason when it did not land.
    pub failure: Option<String>,
}

/// Totals of one strategy, one route, or the whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GroupReport {
    /// Strategy name or route label (`all` for the totals).
    pub name: String,
    /// Opportunities found.
    pub opportunities: u64,
    /// Approved.
    pub approved: u64,
    /// Refused, by refusal kind.
    pub refusals: BTreeMap<String, u64>,
    /// Transactions signed.
    pub signed: u64,
    /// Of those, landed.
    pub landed: u64,
    /// `landed / signed` (0 when nothing was signed).
    pub landed_rate: f64,
    /// PnL after gas of what was signed, USD.
    pub pnl_usd: f64,
}

impl GroupReport {
    fn add(&mut self, d: &DecisionRow) {
        self.opportunities += 1;
        if d.approved {
            self.approved += 1;
        }
        if let Some(k) = &d.refusal {
            *self.refusals.entry(k.clone()).or_default() += 1;
        }
        if d.signed {
            self.signed += 1;
            self.pnl_usd += d.pnl_usd;
            if d.landed {
                self.landed += 1;
            }
        }
        self.landed_rate =
            if self.signed == 0 { 0.0 } else { self.landed as f64 / self.signed as f64 };
    }
}

/// The peg deviation of one pool at the end of one block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PegRow {
    /// Block.
    pub block: u64,
    /// Pool name.
    pub pool: String,
    /// Deviation from 1 on the recorded chain, bps.
    pub without_bps: f64,
    /// Deviation after the bot's transactions that landed in this block, bps.
    pub with_bps: f64,
}

/// A backtest's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BacktestReport {
    /// What was replayed (`rpc blocks N..=M`, a cassette name).
    pub source: String,
    /// Chain name.
    pub chain: String,
    /// Chain id.
    pub chain_id: u64,
    /// First block.
    pub from: u64,
    /// Last block.
    pub to: u64,
    /// Blocks replayed.
    pub blocks: u64,
    /// Recorded transactions replayed as the pending stream.
    pub transactions: u64,
    /// The whole run.
    pub totals: GroupReport,
    /// Per strategy.
    pub strategies: Vec<GroupReport>,
    /// Per route.
    pub routes: Vec<GroupReport>,
    /// Every opportunity.
    pub decisions: Vec<DecisionRow>,
    /// The peg per block and pool.
    pub peg: Vec<PegRow>,
}

fn groups(decisions: &[DecisionRow], key: impl Fn(&DecisionRow) -> &str) -> Vec<GroupReport> {
    let mut by: BTreeMap<String, GroupReport> = BTreeMap::new();
    for d in decisions {
        let k = key(d);
        by.entry(k.to_owned())
            .or_insert_with(|| GroupReport { name: k.to_owned(), ..GroupReport::default() })
            .add(d);
    }
    by.into_values().collect()
}

impl BacktestReport {
    /// Aggregates `decisions` and `peg`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        source: &str,
        chain: &ChainConfig,
        from: u64,
        to: u64,
        blocks: u64,
        transactions: u64,
        decisions: Vec<DecisionRow>,
        peg: Vec<PegRow>,
    ) -> Self {
        let mut totals = GroupReport { name: "all".into(), ..GroupReport::default() };
        for d in &decisions {
            totals.add(d);
        }
        Self {
            source: source.to_owned(),
            chain: chain.name.clone(),
            chain_id: chain.chain_id,
            from,
            to,
            blocks,
            transactions,
            totals,
            strategies: groups(&decisions, |d| &d.strategy),
            routes: groups(&decisions, |d| &d.route),
            decisions,
            peg,
        }
    }

    /// The largest absolute deviation per block, without and with the bot, bps.
    pub fn peg_by_block(&self) -> Vec<(u64, f64, f64)> {
        let mut by: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for p in &self.peg {
            let e = by.entry(p.block).or_default();
            e.0 = e.0.max(p.without_bps.abs());
            e.1 = e.1.max(p.with_bps.abs());
        }
        by.into_iter().map(|(b, (w0, w1))| (b, w0, w1)).collect()
    }
}

fn refusals(r: &BTreeMap<String, u64>) -> String {
    if r.is_empty() {
        return "-".into();
    }
    r.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

pub(super) fn group_line(f: &mut std::fmt::Formatter<'_>, g: &GroupReport) -> std::fmt::Result {
    writeln!(
        f,
        "  {:<28} {:>5} opp {:>5} approved {:>4}/{:<4} landed ({:>5.1}%) PnL {:>12.2} USD | refused: {}",
        g.name,
        g.opportunities,
        g.approved,
        g.landed,
        g.signed,
        g.landed_rate * 100.0,
        g.pnl_usd,
        refusals(&g.refusals)
    )
}

impl std::fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "backtest {}: chain {} ({}), blocks {}..={} ({} blocks, {} transactions replayed)",
            self.source,
            self.chain,
            self.chain_id,
            self.from,
            self.to,
            self.blocks,
            self.transactions
        )?;
        writeln!(f, "totals:")?;
        group_line(f, &self.totals)?;
        writeln!(f, "per strategy:")?;
        for g in &self.strategies {
            group_line(f, g)?;
        }
        writeln!(f, "per route:")?;
        for g in &self.routes {
            group_line(f, g)?;
        }
        let by = self.peg_by_block();
        if !by.is_empty() {
            let worst =
                |i: usize| by.iter().map(|r| if i == 0 { r.1 } else { r.2 }).fold(0.0f64, f64::max);
            let mean = |i: usize| {
                by.iter().map(|r| if i == 0 { r.1 } else { r.2 }).sum::<f64>() / by.len() as f64
            };
            writeln!(
                f,
                "peg deviation (worst pool per block): without the bot max {:.1} bps, mean {:.1} bps; with the bot max {:.1} bps, mean {:.1} bps",
                worst(0),
                mean(0),
                worst(1),
                mean(1)
            )?;
        }
        writeln!(
            f,
            "note: each trade is judged on the recorded chain, which never saw the bot's earlier trades; trades in consecutive blocks can take the same dislocation"
        )
    }
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One line of a plot: label, colour, points.
pub(super) type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// An SVG line plot of `series` over x.
pub(super) fn plot(title: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let (w, h, m) = (720.0, 260.0, 48.0);
    let pts = series.iter().flat_map(|s| s.2.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if (x1 - x0).abs() < f64::EPSILON {
        x1 = x0 + 1.0;
    }
    if (y1 - y0).abs() < f64::EPSILON {
        y1 = y0 + 1.0;
    }
    let sx = |x: f64| m + (x - x0) / (x1 - x0) * (w - 2.0 * m);
    let sy = |y: f64| h - m - (y - y0) / (y1 - y0) * (h - 2.0 * m);
    let mut s = format!(
        r##"<h3>{}</h3><svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"##,
        esc(title)
    );
    let _ = write!(
        s,
        r##"<rect x="{m}" y="{m}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        w - 2.0 * m,
        h - 2.0 * m
    );
    let _ = write!(
        s,
        r##"<text x="{m}" y="{}">{:.1}</text><text x="{m}" y="{}">{:.1}</text><text x="4" y="{}">{}</text>"##,
        m - 4.0,
        y1,
        h - m + 14.0,
        y0,
        h / 2.0,
        esc(y_label)
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}">block {x0:.0}</text><text x="{}" y="{}" text-anchor="end">block {x1:.0}</text>"##,
        m,
        h - 8.0,
        w - m,
        h - 8.0
    );
    for (i, (label, colour, points)) in series.iter().enumerate() {
        let path: Vec<String> =
            points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(
            s,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/><text x="{}" y="{}" fill="{colour}">{}</text>"##,
            path.join(" "),
            w - m - 200.0,
            m + 14.0 * (i as f64 + 1.0),
            esc(label)
        );
    }
    s.push_str("</svg>");
    s
}

/// A self-contained HTML page around `body` (inline SVG, no script, no external resource).
pub(super) fn page(body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>cantilever backtest</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:first-child{{text-align:left}}</style>\
         </head><body>{body}</body></html>\n"
    )
}

/// A self-contained HTML page of `r` (inline SVG, no script, no external resource).
pub fn render_html(r: &BacktestReport) -> String {
    page(&html_body(r))
}

/// The body of `r`'s page: its text, the peg and PnL plots, the per-group table.
pub(super) fn html_body(r: &BacktestReport) -> String {
    let mut s = String::new();
    let _ = write!(s, "<h1>cantilever backtest</h1><pre>{}</pre>", esc(&r.to_string()));
    let by = r.peg_by_block();
    let without: Vec<(f64, f64)> = by.iter().map(|b| (b.0 as f64, b.1)).collect();
    let with: Vec<(f64, f64)> = by.iter().map(|b| (b.0 as f64, b.2)).collect();
    s.push_str(&plot(
        "Peg deviation, worst pool per block",
        "|bps|",
        &[("without the bot", "#c33", without), ("with the bot", "#36c", with)],
    ));
    let mut cum = 0.0;
    let mut pnl = Vec::new();
    let mut by_block: BTreeMap<u64, f64> = BTreeMap::new();
    for d in &r.decisions {
        *by_block.entry(d.block).or_default() += d.pnl_usd;
    }
    for (b, p) in by_block {
        cum += p;
        pnl.push((b as f64, cum));
    }
    s.push_str(&plot("Cumulative PnL after gas", "USD", &[("PnL", "#393", pnl)]));
    s.push_str("<h2>Per strategy and route</h2><table><tr><th>group</th><th>opportunities</th><th>approved</th><th>signed</th><th>landed</th><th>landed rate</th><th>PnL USD</th><th>refusals</th></tr>");
    for g in std::iter::once(&r.totals).chain(&r.strategies).chain(&r.routes) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.2}</td><td>{}</td></tr>",
            esc(&g.name),
            g.opportunities,
            g.approved,
            g.signed,
            g.landed,
            g.landed_rate * 100.0,
            g.pnl_usd,
            esc(&refusals(&g.refusals))
        );
    }
    s.push_str("</table>");
    s
}
