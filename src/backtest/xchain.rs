//! Cross-chain backtests: both chains' engines and the cross-chain coordinator replayed together
//! over two recorded chains.
//!
//! ```text
//!  chain A blocks ─┐  merged by timestamp   ┌─▶ ChainRun A (engine + judge) ─┐ snapshots, proofs, leg outcomes
//!  chain B blocks ─┴────────────────────────┴─▶ ChainRun B (engine + judge) ─┴──▶ Coordinator (same code as live)
//!                                                     ▲ Prove / Go / Cancel ◀────────────┘
//! ```
//!
//! Each chain runs exactly as a one-chain backtest ([`super::run_cassette`]): its own engine on
//! the live code path, its own judge on the recorded chain. The blocks of both chains are
//! replayed in timestamp order (chain A first on a tie). After every block the coordinator is
//! pumped until nothing moves: it reads the engines' snapshots, orders legs proven, and on two
//! proofs tells both engines to sign; each signed leg is judged at the top of its chain's next
//! block and its outcome goes back through the engine to the coordinator, as the exec task does
//! live. Everything is handled one step at a time, so a run is deterministic and a cassette replay
//! equals its RPC run.
//!
//! The coordinator runs without providers here: bridge fees are read on the recorded state, and
//! there is no bridge rebalancing (the recorded chains never saw the bot's transfers).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use alloy::primitives::Address;
use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};

use super::{
    BacktestError, BacktestReport, ChainRun, ReplayBlock, RpcOptions, Setup, cassette_blocks,
    default::setup_for, progress_bar,
};
use crate::{
    bench::ConfigFile,
    cassette::Cassette,
    config::{CrossChainConfig, VenueKind},
    engine::{Control, ControlSender, Input},
    state::StateSource,
    xchain::{XChain, XControl, XEvent, XLink, XStats, coordinator::Coordinator},
};

/// Steps of one pump before the coordinator and the engines are declared stuck.
const PUMP_STEPS: usize = 10_000;

/// Two chains' setups and the cross-chain strategy's configuration.
#[derive(Clone, Debug)]
pub struct XSetup {
    /// The chains, in the coordinator's order.
    pub chains: [Setup; 2],
    /// `[strategies.cross_chain]` (its `chains` name the two chains).
    pub cross_chain: CrossChainConfig,
    /// Each chain's bridge to the other (its fee is a cost of the trade).
    pub bridges: [Option<Address>; 2],
}

/// A devnet manifest with a cross-chain episode: its chains, the cross-chain configuration,
/// whether the chains' one-chain strategies are switched off for it and the desk's notional cap.
#[derive(Deserialize)]
struct XManifest {
    #[serde(flatten)]
    devnet: crate::devnet::DevnetManifest,
    cross_chain: CrossChainConfig,
    #[serde(default)]
    only_cross_chain: bool,
    /// Caps one route's notional, one block's volume and the ramp's first size, USD.
    #[serde(default)]
    notional_cap_usd: Option<f64>,
}

fn config_err(file: &str, detail: impl std::fmt::Display) -> BacktestError {
    BacktestError::Config { file: file.to_owned(), detail: detail.to_string() }
}

impl XSetup {
    /// The setup in a devnet manifest (JSON text) holding `cross_chain` (and optionally
    /// `only_cross_chain: true`); `file` names it in errors.
    ///
    /// # Errors
    /// [`BacktestError::Config`] naming the file and the problem.
    pub fn from_manifest_json(text: &str, file: &str) -> Result<Self, BacktestError> {
        let m: XManifest = serde_json::from_str(text).map_err(|e| config_err(file, e))?;
        let cfg = crate::devnet::devnet_config(&m.devnet).map_err(|e| config_err(file, e))?;
        let mut chains = Vec::new();
        for name in &m.cross_chain.chains {
            let c = cfg.chain(name).ok_or_else(|| {
                config_err(file, format!("cross_chain names `{name}`: no such chain"))
            })?;
            let mut s = setup_for(&m.devnet, c.chain_id)?;
            if m.only_cross_chain {
                s.strategies.depeg.enabled = false;
                s.strategies.triangle.enabled = false;
                s.strategies.stabilizer.enabled = false;
                s.strategies.backrun.enabled = false;
            }
            if let Some(cap) = m.notional_cap_usd {
                s.risk.max_notional_per_route_usd = cap;
                s.risk.per_block_volume_cap_usd = cap;
                s.risk.ramp.initial_notional_usd = cap;
            }
            chains.push(s);
        }
        let chains: [Setup; 2] = chains
            .try_into()
            .map_err(|_| config_err(file, "cross_chain.chains must name two chains"))?;
        let bridges =
            [0, 1].map(|i| m.devnet.chain(chains[i].chain.chain_id).and_then(|c| c.bridge));
        Ok(Self { chains, cross_chain: m.cross_chain, bridges })
    }

    /// The setup in `file`: a TOML configuration with an enabled `[strategies.cross_chain]`, or
    /// a devnet manifest holding `cross_chain`.
    ///
    /// # Errors
    /// [`BacktestError::Config`] naming the file and the problem.
    pub fn load(file: &ConfigFile) -> Result<Self, BacktestError> {
        match file {
            ConfigFile::Manifest(p) => {
                let name = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|e| config_err(&name, e))?;
                Self::from_manifest_json(&text, &name)
            }
            ConfigFile::Toml(p) => {
                let name = p.display().to_string();
                let env =
                    |v: &str| std::env::var(v).ok().or_else(|| Some("http://127.0.0.1:9".into()));
                let cfg = crate::config::Config::load_with_env(p, &env)
                    .map_err(|e| config_err(&name, e))?;
                let x =
                    cfg.strategies.cross_chain.clone().filter(|x| x.enabled).ok_or_else(|| {
                        config_err(&name, "no enabled [strategies.cross_chain] section")
                    })?;
                let mut chains = Vec::new();
                for chain_name in &x.chains {
                    let c = cfg.chain(chain_name).ok_or_else(|| {
                        config_err(
                            &name,
                            format!("cross_chain names `{chain_name}`: no such chain"),
                        )
                    })?;
                    chains.push(Setup::load(Some(file), Some(chain_name), c.chain_id, None)?);
                }
                let chains: [Setup; 2] = chains
                    .try_into()
                    .map_err(|_| config_err(&name, "cross_chain.chains must name two chains"))?;
                let bridges = [0, 1].map(|i| bridge_of(&chains[i], &chains[1 - i]));
                Ok(Self { chains, cross_chain: x, bridges })
            }
        }
    }
}

/// The cross-chain spread between the chains' pools of one name, after one replayed block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpreadRow {
    /// The chain whose block was replayed.
    pub chain_id: u64,
    /// That block.
    pub block: u64,
    /// Pool name (the same on both chains).
    pub pool: String,
    /// First chain's deviation minus the second's at their latest replayed blocks, on the
    /// recorded chains (without the bot), bps.
    pub without_bps: f64,
}

/// One settled cross-chain trade: its two legs as judged, and the spread around them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct XTradeRow {
    /// The coordinator's trade id.
    pub xid: u64,
    /// The pair (`base/quote`), the name of the pool it traded on each chain.
    pub pair: String,
    /// The block each leg landed in, in chain order.
    pub blocks: [u64; 2],
    /// The spread (first chain's deviation minus the second's) where the legs landed (the top of
    /// those blocks) on the recorded chains, bps.
    pub before_bps: f64,
    /// The same after this trade's two legs alone, bps.
    pub after_bps: f64,
    /// Both legs' PnL after gas, USD.
    pub pnl_usd: f64,
}

/// What the coordinator did over the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CrossTotals {
    /// Trades whose legs were ordered proven.
    pub trades: u64,
    /// Trades whose two legs proved and were signed together.
    pub sent: u64,
    /// Trades with both legs landed.
    pub settled: u64,
    /// Trades where exactly one leg landed.
    pub one_leg: u64,
    /// Spreads screened and refused for not paying every cost.
    pub refused_costs: u64,
    /// Trades refused because a leg did not prove.
    pub refused_proof: u64,
    /// Simulated PnL of the sent trades after gas, USD.
    pub simulated_usd: f64,
    /// Judged PnL of the settled trades after gas (from the legs' landed outputs), USD.
    pub realised_usd: f64,
    /// The bridge fee of each chain read on the recorded state, bps.
    pub bridge_fee_bps: [u32; 2],
}

impl CrossTotals {
    fn of(s: &XStats, bridge_fee_bps: [u32; 2]) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        Self {
            trades: s.trades.load(Relaxed),
            sent: s.sent.load(Relaxed),
            settled: s.settled.load(Relaxed),
            one_leg: s.one_leg.load(Relaxed),
            refused_costs: s.refused_costs.load(Relaxed),
            refused_proof: s.refused_proof.load(Relaxed),
            simulated_usd: s.simulated_micro_usd.load(Relaxed) as f64 / 1e6,
            realised_usd: s.realised_micro_usd.load(Relaxed) as f64 / 1e6,
            bridge_fee_bps,
        }
    }
}

/// A cross-chain backtest's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct XBacktestReport {
    /// What was replayed.
    pub source: String,
    /// Each chain's own report (its cross-chain legs are `cross_chain` opportunities).
    pub chains: Vec<BacktestReport>,
    /// The coordinator's totals.
    pub cross: CrossTotals,
    /// The spread per replayed block, per pool traded on both chains.
    pub spread: Vec<SpreadRow>,
    /// Every trade whose two legs landed.
    pub trades: Vec<XTradeRow>,
}

impl XBacktestReport {
    /// Largest and mean absolute spread on the recorded chains over every row, bps.
    pub fn spread_summary(&self) -> (f64, f64) {
        let n = self.spread.len().max(1) as f64;
        let abs = || self.spread.iter().map(|r| r.without_bps.abs());
        (abs().fold(0.0, f64::max), abs().sum::<f64>() / n)
    }
}

/// The trade id and pair in a cross-chain leg's route label (`xchain 7: buy cUSDC on … (cUSDC/USDC
/// spread 51.8 bps)`).
fn leg_of(route: &str) -> Option<(u64, &str)> {
    let xid = route.strip_prefix("xchain ")?.split(':').next()?.parse().ok()?;
    let pair = route.rsplit_once('(')?.1.split_whitespace().next()?;
    Some((xid, pair))
}

/// Peg readings where each landed head trade landed, before it and after it alone, by
/// opportunity id.
type TxPeg = BTreeMap<u64, (Vec<(String, f64)>, Vec<(String, f64)>)>;

/// The trades of `chains` whose two legs landed, with the spread at their blocks without the bot
/// and with only their own legs (`tx_peg`, per chain).
fn trade_rows(chains: &[BacktestReport], tx_peg: &[TxPeg; 2]) -> Vec<XTradeRow> {
    let [a, b] = chains else { return Vec::new() };
    // (trade, pair, block landed in, PnL, the pair's pool's deviation before and after the leg)
    type Leg = (u64, String, u64, f64, (f64, f64));
    let landed = |r: &BacktestReport, peg: &TxPeg| -> Vec<Leg> {
        let find = |v: &[(String, f64)], pair: &str| v.iter().find(|p| p.0 == pair).map(|p| p.1);
        r.decisions
            .iter()
            .filter(|d| d.strategy == "cross_chain" && d.signed && d.landed)
            .filter_map(|d| {
                let (xid, pair) = leg_of(&d.route)?;
                let (before, after) = peg.get(&d.opportunity)?;
                let dev = (find(before, pair)?, find(after, pair)?);
                Some((xid, pair.to_owned(), d.landed_in, d.pnl_usd, dev))
            })
            .collect()
    };
    let legs_b = landed(b, &tx_peg[1]);
    landed(a, &tx_peg[0])
        .into_iter()
        .filter_map(|(xid, pair, block_a, pnl_a, (da, alone_a))| {
            let (_, _, block_b, pnl_b, (db, alone_b)) = legs_b.iter().find(|l| l.0 == xid)?;
            Some(XTradeRow {
                xid,
                pair,
                blocks: [block_a, *block_b],
                before_bps: da - db,
                after_bps: alone_a - alone_b,
                pnl_usd: pnl_a + pnl_b,
            })
        })
        .collect()
}

impl std::fmt::Display for XBacktestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .chains
            .iter()
            .map(|c| format!("{} ({}) blocks {}..={}", c.chain, c.chain_id, c.from, c.to))
            .collect();
        writeln!(f, "backtest {}: cross-chain, {}", self.source, names.join(" + "))?;
        let x = &self.cross;
        writeln!(
            f,
            "cross-chain: {} trades ordered, {} sent with both legs proven, {} settled (both legs landed), {} one-leg | refused: costs {}, proof {}",
            x.trades, x.sent, x.settled, x.one_leg, x.refused_costs, x.refused_proof
        )?;
        writeln!(
            f,
            "  PnL after gas: simulated {:.2} USD, judged {:.2} USD (bridge fee {} / {} bps read on the recorded chains)",
            x.simulated_usd, x.realised_usd, x.bridge_fee_bps[0], x.bridge_fee_bps[1]
        )?;
        writeln!(f, "per chain:")?;
        for c in &self.chains {
            let mut g = c.totals.clone();
            g.name = c.chain.clone();
            super::report::group_line(f, &g)?;
            for s in &c.strategies {
                let mut g = s.clone();
                g.name = format!("  {}", s.name);
                super::report::group_line(f, &g)?;
            }
        }
        if !self.spread.is_empty() {
            let (max, mean) = self.spread_summary();
            writeln!(
                f,
                "cross-chain spread on the recorded chains: max {max:.1} bps, mean {mean:.1} bps"
            )?;
        }
        if !self.trades.is_empty() {
            let n = self.trades.len() as f64;
            let mean = |g: fn(&XTradeRow) -> f64| self.trades.iter().map(g).sum::<f64>() / n;
            writeln!(
                f,
                "settled trades: {} (PnL {:.2} USD); spread at their blocks {:.1} bps without the bot, {:.1} bps with each trade's two legs (mean |bps|)",
                self.trades.len(),
                self.trades.iter().map(|t| t.pnl_usd).sum::<f64>(),
                mean(|t| t.before_bps.abs()),
                mean(|t| t.after_bps.abs()),
            )?;
        }
        writeln!(
            f,
            "note: legs are judged on the recorded chains, which never saw the bot's earlier trades: consecutive blocks can take the same spread (PnL is an upper bound); no bridge transfers are replayed"
        )
    }
}

/// One cross-chain backtest over two state sources whose `latest()` are the parents of their
/// first blocks.
async fn drive_x<S: StateSource + Clone + 'static>(
    sources: [S; 2],
    blocks: [&[ReplayBlock]; 2],
    setup: &XSetup,
    label: &str,
    progress: bool,
) -> Result<XBacktestReport, BacktestError> {
    let [s0, s1] = sources;
    let mut runs = [
        ChainRun::start(s0, &setup.chains[0]).await?,
        ChainRun::start(s1, &setup.chains[1]).await?,
    ];
    for r in &mut runs {
        r.peg_per_tx = true;
    }
    let mut fees = [0u32; 2];
    for (i, r) in runs.iter_mut().enumerate() {
        if let Some(bridge) = setup.bridges[i] {
            fees[i] = r.judge.bridge_fee_bps(bridge).await?;
        }
    }
    let (x_tx, x_rx) = crossbeam_channel::unbounded();
    let mut controls = Vec::new();
    let mut chains = Vec::new();
    for s in &setup.chains {
        let (tx, rx) = crossbeam_channel::unbounded();
        controls.push(rx);
        chains.push(XChain {
            chain_id: s.chain.chain_id,
            name: s.chain.name.clone(),
            control: ControlSender(tx),
            provider: None,
            executor: s.chain.executor.unwrap_or_default(),
            bridge: None,
        });
    }
    let chains: [XChain; 2] =
        chains.try_into().map_err(|_| BacktestError::Engine("two chains".into()))?;
    let controls: [Receiver<Input>; 2] =
        controls.try_into().map_err(|_| BacktestError::Engine("two chains".into()))?;
    let stats = Arc::new(XStats::default());
    let risk = &setup.chains[0].risk;
    let mut co = Coordinator::new(
        setup.cross_chain.clone(),
        risk.max_slippage_bps,
        crate::xchain::max_notional(risk),
        chains,
        None,
        stats.clone(),
        Arc::new(Mutex::new(Vec::new())),
        tokio::runtime::Handle::current(),
    );
    co.set_bridge_fees(fees);
    for r in &mut runs {
        let link = Control::Xchain(XControl::Link(XLink(x_tx.clone())));
        r.driver.handle(Input::Control(link)).await;
    }
    drop(x_tx);
    pump(&mut co, &x_rx, &controls, &mut runs).await?;
    let bar = progress_bar((blocks[0].len() + blocks[1].len()) as u64, progress);
    let mut at = [0usize; 2];
    let mut spread = Vec::new();
    loop {
        let c = match (blocks[0].get(at[0]), blocks[1].get(at[1])) {
            (Some(a), Some(b)) => usize::from(b.timestamp < a.timestamp),
            (Some(_), None) => 0,
            (None, Some(_)) => 1,
            (None, None) => break,
        };
        let b = &blocks[c][at[c]];
        bar.set_message(format!("{} block {}", setup.chains[c].chain.name, b.number));
        runs[c].block(b, blocks[c].get(at[c] + 1)).await?;
        at[c] += 1;
        pump(&mut co, &x_rx, &controls, &mut runs).await?;
        spread.extend(spread_rows(&runs, setup.chains[c].chain.chain_id, b.number));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let cross = CrossTotals::of(&stats, fees);
    drop(co);
    let [mut r0, mut r1] = runs;
    let tx_peg = [std::mem::take(&mut r0.tx_peg), std::mem::take(&mut r1.tx_peg)];
    let chains = vec![r0.finish(label, blocks[0])?, r1.finish(label, blocks[1])?];
    let trades = trade_rows(&chains, &tx_peg);
    Ok(XBacktestReport { source: label.to_owned(), chains, cross, spread, trades })
}

/// The bridge venue of `a` whose remote chain is `b`.
fn bridge_of(a: &Setup, b: &Setup) -> Option<Address> {
    a.chain
        .venues
        .iter()
        .find(|v| v.kind == VenueKind::Bridge && v.remote_chain.as_deref() == Some(&b.chain.name))
        .map(|v| v.address)
}

/// Hands the coordinator's commands to the engines and the engines' events to the coordinator,
/// judging every leg signed on the way, until nothing moves.
async fn pump<S: StateSource + Clone + 'static>(
    co: &mut Coordinator,
    events: &Receiver<XEvent>,
    controls: &[Receiver<Input>; 2],
    runs: &mut [ChainRun<S>; 2],
) -> Result<(), BacktestError> {
    for _ in 0..PUMP_STEPS {
        let mut moved = false;
        while let Ok(ev) = events.try_recv() {
            co.on_event(ev);
            moved = true;
        }
        for (rx, run) in controls.iter().zip(runs.iter_mut()) {
            while let Ok(input) = rx.try_recv() {
                run.driver.handle(input).await;
                moved = true;
            }
            moved |= run.settle_head_jobs().await?;
        }
        if !moved {
            return Ok(());
        }
    }
    Err(BacktestError::Engine(format!(
        "the coordinator and the engines were still exchanging commands after {PUMP_STEPS} steps"
    )))
}

/// The spread of every pool both chains have a reading of, after `block` of `chain_id`.
fn spread_rows<S>(runs: &[ChainRun<S>; 2], chain_id: u64, block: u64) -> Vec<SpreadRow> {
    let last = |r: &ChainRun<S>| {
        let Some(b) = r.peg.last().map(|p| p.block) else { return Vec::new() };
        r.peg.iter().rev().take_while(|p| p.block == b).cloned().collect::<Vec<_>>()
    };
    let (a, b) = (last(&runs[0]), last(&runs[1]));
    let mut out: Vec<SpreadRow> = a
        .iter()
        .filter_map(|pa| {
            let pb = b.iter().find(|pb| pb.pool == pa.pool)?;
            Some(SpreadRow {
                chain_id,
                block,
                pool: pa.pool.clone(),
                without_bps: pa.without_bps - pb.without_bps,
            })
        })
        .collect();
    out.sort_by(|x, y| x.pool.cmp(&y.pool));
    out
}

/// Runs a cross-chain backtest on two cassettes (one per chain, in `setup`'s chain order)
/// written by a cross-chain RPC run with recording; no network. Call inside a multi-thread
/// tokio runtime.
///
/// # Errors
/// [`BacktestError`] naming what could not be read or run.
pub async fn run_cassettes(
    cassettes: [&Cassette; 2],
    setup: &XSetup,
    label: &str,
    progress: bool,
) -> Result<XBacktestReport, BacktestError> {
    for (c, s) in cassettes.iter().zip(&setup.chains) {
        if c.meta.chain_id != s.chain.chain_id {
            return Err(BacktestError::Config {
                file: label.to_owned(),
                detail: format!(
                    "cassette of chain {} given for chain {} ({})",
                    c.meta.chain_id, s.chain.name, s.chain.chain_id
                ),
            });
        }
    }
    let blocks = cassettes.map(cassette_blocks);
    let sources = cassettes.map(Cassette::source);
    drive_x(sources, [&blocks[0], &blocks[1]], setup, label, progress).await
}

/// A cross-chain RPC backtest: one [`RpcOptions`] per chain (in `setup`'s chain order; their
/// `config`, `chain` and `operator` are not used: `setup` says them), each recording its own
/// cassette when `record` is set. Call inside a multi-thread tokio runtime.
///
/// # Errors
/// [`BacktestError`] naming what could not be read or run.
pub async fn run_rpc(
    opts: [&RpcOptions; 2],
    setup: &XSetup,
    progress: bool,
) -> Result<XBacktestReport, BacktestError> {
    let label =
        format!("rpc blocks {}..={} + {}..={}", opts[0].from, opts[0].to, opts[1].from, opts[1].to);
    let a = super::open_rpc(opts[0]).await?;
    let b = super::open_rpc(opts[1]).await?;
    for ((o, s), r) in opts.iter().zip(&setup.chains).zip([&a, &b]) {
        if r.chain_id != s.chain.chain_id {
            return Err(BacktestError::Config {
                file: label.clone(),
                detail: format!(
                    "the node for {} answers chain id {} (expected {}); blocks {}..={}",
                    s.chain.name, r.chain_id, s.chain.chain_id, o.from, o.to
                ),
            });
        }
    }
    match (&opts[0].record, &opts[1].record) {
        (Some(pa), Some(pb)) => {
            let (wa, sa) = super::recording(pa, &setup.chains[0], &a)?;
            let (wb, sb) = super::recording(pb, &setup.chains[1], &b)?;
            let r = drive_x([sa, sb], [&a.blocks, &b.blocks], setup, &label, progress).await;
            wa.finish()?;
            wb.finish()?;
            r
        }
        (None, None) => {
            drive_x([a.source, b.source], [&a.blocks, &b.blocks], setup, &label, progress).await
        }
        _ => Err(BacktestError::Config {
            file: "--record".into(),
            detail: "a cross-chain run records both chains or neither".into(),
        }),
    }
}

/// A self-contained HTML page of `r`: its text, the spread per replayed block with and without
/// the bot, and each chain's own report.
pub fn render_html(r: &XBacktestReport) -> String {
    super::report::page(&html_body(r))
}

/// The body of `r`'s page.
pub(super) fn html_body(r: &XBacktestReport) -> String {
    use super::report::{esc, plot};
    let mut s =
        format!("<h1>cantilever cross-chain backtest</h1><pre>{}</pre>", esc(&r.to_string()));
    let mut pools: Vec<&str> = r.spread.iter().map(|p| p.pool.as_str()).collect();
    pools.sort_unstable();
    pools.dedup();
    for pool in pools {
        let rows: Vec<&SpreadRow> = r.spread.iter().filter(|p| p.pool == pool).collect();
        let series = rows.iter().enumerate().map(|(i, p)| (i as f64, p.without_bps)).collect();
        s.push_str(&plot(
            &format!("{pool}: spread between the chains per replayed block (x: step)"),
            "bps",
            &[("recorded chains", "#c33", series)],
        ));
    }
    s.push_str("<h2>Settled trades</h2><table><tr><th>trade</th><th>pair</th><th>blocks</th><th>spread without the bot, bps</th><th>after its legs, bps</th><th>PnL USD</th></tr>");
    for t in &r.trades {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{} / {}</td><td>{:.1}</td><td>{:.1}</td><td>{:.2}</td></tr>",
            t.xid,
            esc(&t.pair),
            t.blocks[0],
            t.blocks[1],
            t.before_bps,
            t.after_bps,
            t.pnl_usd
        );
    }
    s.push_str("</table>");
    for c in &r.chains {
        s.push_str(&super::report::html_body(c));
    }
    s
}
