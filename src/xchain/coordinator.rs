//! The coordinator thread: one view of both chains, spread trades and bridge rebalancing.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
};

use alloy::{
    primitives::{Address, I256, U256},
    providers::{DynProvider, Provider},
    rpc::types::Filter,
    sol_types::SolEvent,
};
use crossbeam_channel::Receiver;
use tracing::{info, warn};

use super::{
    inventory::{InventoryBook, Transfer, TransferState, rebalance_need},
    msg::{BridgeOrder, ChainSnapshot, LegOrder, LegOutcome, LegProof, XControl, XEvent},
    spread::{self, Bounds, Costs, Plan, Side2},
};
use crate::{
    config::{CrossChainConfig, LegFailurePolicy},
    contracts::Bridge,
    engine::{Control, ControlSender},
    ledger::{self, LedgerHandle, PositionState},
    venues::{QuoteCtx, min_out},
};

/// One chain as the coordinator drives it.
#[derive(Clone, Debug)]
pub struct XChain {
    /// Chain id.
    pub chain_id: u64,
    /// Chain name.
    pub name: String,
    /// The engine.
    pub control: ControlSender,
    /// Reads for bridge tracking (off the engines' threads); `None` in a backtest, where the
    /// coordinator runs on recorded state and never rebalances.
    pub provider: Option<DynProvider>,
    /// The executor contract.
    pub executor: Address,
    /// The bridge contract on this chain, if rebalancing is possible from it (needs `provider`).
    pub bridge: Option<Address>,
}

/// Counters the coordinator publishes (tests, metrics).
#[derive(Debug, Default)]
pub struct XStats {
    /// Snapshots processed.
    pub snapshots: AtomicU64,
    /// Trades whose legs were ordered proven.
    pub trades: AtomicU64,
    /// Trades whose legs both proved and were sent together.
    pub sent: AtomicU64,
    /// Trades with both legs landed.
    pub settled: AtomicU64,
    /// Trades where exactly one leg landed (an open one-way position).
    pub one_leg: AtomicU64,
    /// Candidate trades refused because the spread did not pay every cost.
    pub refused_costs: AtomicU64,
    /// Candidate trades refused because a leg did not prove.
    pub refused_proof: AtomicU64,
    /// Legs ordered (prove requests) in total.
    pub legs_ordered: AtomicU64,
    /// Bridge transfers proven and handed to the source chain's submitter.
    pub transfers: AtomicU64,
    /// Bridge transfers refused before sending (simulation, cold state, mode).
    pub bridge_refused: AtomicU64,
    /// Bridge transfers released on their destination.
    pub arrived: AtomicU64,
    /// Rebalances refused by the bridge capacity rule or the in-flight cap.
    pub refused_capacity: AtomicU64,
    /// Realised PnL of settled trades after gas, micro-USD.
    pub realised_micro_usd: AtomicI64,
    /// Simulated PnL of the same trades after gas, micro-USD.
    pub simulated_micro_usd: AtomicI64,
    /// Bridge fees and lock gas booked, micro-USD.
    pub bridge_cost_micro_usd: AtomicI64,
    /// Value in flight through the bridge, micro-USD.
    pub in_flight_micro_usd: AtomicI64,
    /// Whether a pair is frozen after a leg failure.
    pub frozen: AtomicBool,
}

/// The inventory accounting at one snapshot: per asset, the balance on each chain and in flight
/// (18 decimals), kept for tests and the desk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryPoint {
    /// The chain whose head this is.
    pub chain_id: u64,
    /// Its head.
    pub block: u64,
    /// Asset.
    pub symbol: String,
    /// Balance on each chain (in the coordinator's chain order), 18 decimals.
    pub balances: [U256; 2],
    /// In flight, 18 decimals.
    pub in_flight: U256,
    /// Balances plus in flight.
    pub total: U256,
}

#[derive(Clone, Debug, PartialEq)]
enum LegState {
    Proving,
    Proven(LegProof),
    Refused(String),
    Sent,
    Done(LegOutcome),
}

#[derive(Clone, Debug)]
struct Trade {
    xid: u64,
    pair: (String, String),
    /// Index of the chain the base is bought on (0 or 1); the other sells.
    buy: usize,
    plan: Plan,
    legs: [LegState; 2],
    orders: [LegOrder; 2],
    /// USD value of each leg's input.
    input_usd: [f64; 2],
    /// USD per raw of each leg's output.
    out_per_raw: [f64; 2],
    /// Realised PnL booked when both legs landed, USD.
    realised_usd: f64,
}

/// Settled trades kept for a reorg to reopen (far more than settle within any reorg window).
const SETTLED_KEPT: usize = 64;

/// The coordinator's state.
pub(crate) struct Coordinator {
    cfg: CrossChainConfig,
    slippage_bps: u32,
    max_notional_usd: f64,
    chains: [XChain; 2],
    snaps: [Option<ChainSnapshot>; 2],
    book: InventoryBook,
    trade: Option<Trade>,
    next_xid: u64,
    frozen: Vec<(String, String)>,
    /// Unwind legs in flight: (unwind id, the open position it closes, its pair, its row).
    unwinds: Vec<(u64, (String, String), ledger::Position)>,
    /// Recently settled trades, most recent last.
    settled: std::collections::VecDeque<Trade>,
    /// Settled trades a reorg reopened (one leg orphaned, its final outcome awaited); their
    /// pairs are frozen meanwhile.
    reopened: Vec<Trade>,
    ledger: Option<LedgerHandle>,
    stats: Arc<XStats>,
    history: Arc<Mutex<Vec<InventoryPoint>>>,
    rt: tokio::runtime::Handle,
    /// Bridge fee per chain, bps (read from each bridge at start).
    bridge_fee_bps: [u32; 2],
    /// Last head whose bridge logs were read, per chain.
    scanned: [u64; 2],
}

const HISTORY_CAP: usize = 100_000;

impl Coordinator {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: CrossChainConfig,
        slippage_bps: u32,
        max_notional_usd: f64,
        chains: [XChain; 2],
        ledger: Option<LedgerHandle>,
        stats: Arc<XStats>,
        history: Arc<Mutex<Vec<InventoryPoint>>>,
        rt: tokio::runtime::Handle,
    ) -> Self {
        Self {
            cfg,
            slippage_bps,
            max_notional_usd,
            chains,
            snaps: [None, None],
            book: InventoryBook::default(),
            trade: None,
            next_xid: 1,
            frozen: Vec::new(),
            unwinds: Vec::new(),
            settled: std::collections::VecDeque::new(),
            reopened: Vec::new(),
            ledger,
            stats,
            history,
            rt,
            bridge_fee_bps: [0, 0],
            scanned: [0, 0],
        }
    }

    /// The bridge of chain `i` and the provider that reads it, when both are known.
    fn bridge_io(&self, i: usize) -> Option<(Address, DynProvider)> {
        Some((self.chains[i].bridge?, self.chains[i].provider.clone()?))
    }

    /// Sets the bridge fee of each chain (bps) when it is known without reading the chain (a
    /// backtest reads it on the recorded state).
    pub(crate) fn set_bridge_fees(&mut self, fees: [u32; 2]) {
        self.bridge_fee_bps = fees;
    }

    fn idx(&self, chain_id: u64) -> Option<usize> {
        self.chains.iter().position(|c| c.chain_id == chain_id)
    }

    /// Runs until every engine has dropped its sender.
    pub(crate) fn run(mut self, rx: &Receiver<XEvent>) {
        for i in 0..2 {
            if let Some((b, provider)) = self.bridge_io(i) {
                let bridge = Bridge::new(b, provider);
                match self.rt.block_on(async { bridge.feeBps().call().await }) {
                    Ok(f) => self.bridge_fee_bps[i] = u32::from(f),
                    Err(e) => {
                        warn!(chain = %self.chains[i].name, error = %e, "bridge fee unreadable; rebalancing disabled from this chain")
                    }
                }
            }
        }
        while let Ok(ev) = rx.recv() {
            self.on_event(ev);
        }
    }

    /// Handles one event from an engine (the thread's loop, or a backtest driving both engines
    /// and the coordinator one step at a time).
    pub(crate) fn on_event(&mut self, ev: XEvent) {
        match ev {
            XEvent::Head(s) => self.on_head(*s),
            XEvent::Proven { xid, chain_id, result } => self.on_proven(xid, chain_id, result),
            XEvent::Leg { xid, chain_id, outcome } => self.on_leg(xid, chain_id, outcome),
            XEvent::Orphaned { xid, chain_id } => self.on_orphaned(xid, chain_id),
            XEvent::BridgeSent { xid, result, .. } => {
                if result.is_ok() {
                    self.stats.transfers.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = result {
                    self.stats.bridge_refused.fetch_add(1, Ordering::Relaxed);
                    warn!(xid, reason = %e, "bridge transfer not sent");
                    if let Some(t) = self.book.transfers.iter_mut().find(|t| t.xid == xid) {
                        t.state = TransferState::Failed;
                    }
                }
            }
            XEvent::Bridge { xid, outcome, .. } => {
                if let Some(t) = self.book.transfers.iter_mut().find(|t| t.xid == xid) {
                    match outcome {
                        LegOutcome::Landed { gas_usd, .. } => t.gas_usd = gas_usd,
                        LegOutcome::Reverted { gas_usd } => {
                            t.gas_usd = gas_usd;
                            t.state = TransferState::Failed;
                        }
                        LegOutcome::Missed => t.state = TransferState::Failed,
                    }
                    self.stats
                        .bridge_cost_micro_usd
                        .fetch_add((t.gas_usd * 1e6) as i64, Ordering::Relaxed);
                }
            }
        }
    }

    fn on_head(&mut self, mut s: ChainSnapshot) {
        let Some(i) = self.idx(s.chain_id) else { return };
        s.rename_assets(&self.cfg.assets);
        self.track_transfers(i, &s);
        self.book.update(&s);
        self.snaps[i] = Some(s);
        self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        self.record_points(i);
        self.stats
            .in_flight_micro_usd
            .store((self.book.in_flight_usd() * 1e6) as i64, Ordering::Relaxed);
        if self.trade.is_none() && self.cfg.enabled {
            self.look_for_trade();
        }
        if self.trade.is_none() {
            self.rebalance();
        }
    }

    /// The name `symbol` (as declared on its chain) is matched by across the chains.
    fn canonical<'s>(&'s self, symbol: &'s str) -> &'s str {
        self.cfg.assets.get(symbol).map_or(symbol, String::as_str)
    }

    fn symbols(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.cfg.inventory.iter().map(|t| self.canonical(&t.token).to_owned()).collect();
        v.sort();
        v.dedup();
        v
    }

    fn record_points(&self, i: usize) {
        // Totals need both chains.
        if self.snaps.iter().any(Option::is_none) {
            return;
        }
        let Some(s) = &self.snaps[i] else { return };
        let mut h = self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for sym in self.symbols() {
            let bal = |c: usize| {
                self.book
                    .holding(self.chains[c].chain_id, &sym)
                    .map_or(U256::ZERO, |x| super::inventory::to18(x.balance, x.decimals))
            };
            let balances = [bal(0), bal(1)];
            let in_flight = self.book.in_flight18(&sym);
            if h.len() >= HISTORY_CAP {
                h.drain(..HISTORY_CAP / 2);
            }
            h.push(InventoryPoint {
                chain_id: s.chain_id,
                block: s.head.number,
                symbol: sym,
                balances,
                in_flight,
                total: balances[0] + balances[1] + in_flight,
            });
        }
    }

    // ------------------------------------------------------------------------- spread trades

    fn look_for_trade(&mut self) {
        let (Some(a), Some(b)) = (&self.snaps[0], &self.snaps[1]) else { return };
        if !a.tradeable || !b.tradeable {
            return;
        }
        let mut best: Option<(Plan, usize, spread::PairRef, f64)> = None;
        for pair in spread::pairs(a, b) {
            if self.frozen.contains(&(pair.base.clone(), pair.quote.clone())) {
                continue;
            }
            let views = [&a.pools[pair.a], &b.pools[pair.b]];
            let snaps = [a, b];
            let dec = |c: usize| -> Option<(u8, u8)> {
                let hb = snaps[c].inventory.iter().find(|h| h.symbol == pair.base)?;
                let hq = snaps[c].inventory.iter().find(|h| h.symbol == pair.quote)?;
                Some((hb.decimals, hq.decimals))
            };
            let (Some(da), Some(db)) = (dec(0), dec(1)) else { continue };
            let (Some(ma), Some(mb)) =
                (spread::mid(views[0], &pair.base, da), spread::mid(views[1], &pair.base, db))
            else {
                continue;
            };
            let spread_bps = (ma - mb).abs() / ma.min(mb) * 10_000.0;
            if spread_bps < f64::from(self.cfg.min_spread_bps) {
                continue;
            }
            // Buy where the base is cheaper.
            let buy = usize::from(mb < ma);
            let sell = 1 - buy;
            let decs = [da, db];
            let quote_usd = |c: usize| {
                snaps[c]
                    .inventory
                    .iter()
                    .find(|h| h.symbol == pair.quote)
                    .map_or(1.0, |h| h.usd_price)
            };
            let side = |c: usize| Side2 {
                pool: views[c],
                ctx: QuoteCtx { timestamp: snaps[c].timestamp },
                decimals: decs[c],
                quote_usd: quote_usd(c),
            };
            let gas = |c: usize| {
                // A one-hop leg uses about 150k gas; the proof replaces this estimate.
                150_000.0 * snaps[c].gas_price_wei as f64 / 1e18 * snaps[c].native_usd
            };
            let costs = Costs {
                gas_buy_usd: gas(buy),
                gas_sell_usd: gas(sell),
                proportional_bps: f64::from(
                    self.bridge_fee_bps[buy].max(self.bridge_fee_bps[sell]),
                ) + f64::from(self.cfg.risk_margin_bps),
            };
            let bal = |c: usize, sym: &str| {
                snaps[c]
                    .inventory
                    .iter()
                    .find(|h| h.symbol == sym)
                    .map_or(U256::ZERO, |h| h.balance)
            };
            let qmeta = snaps[buy].inventory.iter().find(|h| h.symbol == pair.quote);
            let max_in = qmeta.map_or(U256::ZERO, |h| {
                let whole = self.max_notional_usd / h.usd_price.max(1e-12);
                U256::from((whole * 10f64.powi(i32::from(h.decimals))) as u128)
            });
            let bounds = Bounds {
                quote_on_buy: bal(buy, &pair.quote),
                base_on_sell: bal(sell, &pair.base),
                max_in,
            };
            match spread::size(&side(buy), &side(sell), &pair.base, &bounds, &costs) {
                Some(plan) => {
                    if best.as_ref().is_none_or(|b| plan.net_usd > b.0.net_usd) {
                        best = Some((plan, buy, pair, spread_bps));
                    }
                }
                None => {
                    self.stats.refused_costs.fetch_add(1, Ordering::Relaxed);
                    info!(pair = %format!("{}/{}", pair.base, pair.quote), spread_bps, "cross-chain spread does not pay its costs");
                }
            }
        }
        let Some((plan, buy, pair, spread_bps)) = best else { return };
        self.open_trade(plan, buy, &pair, spread_bps);
    }

    fn open_trade(&mut self, plan: Plan, buy: usize, pair: &spread::PairRef, spread_bps: f64) {
        let (Some(a), Some(b)) = (&self.snaps[0], &self.snaps[1]) else { return };
        let snaps = [a, b];
        let sell = 1 - buy;
        let view = |c: usize| if c == 0 { &a.pools[pair.a] } else { &b.pools[pair.b] };
        let token = |c: usize, sym: &str| {
            snaps[c]
                .inventory
                .iter()
                .find(|h| h.symbol == sym)
                .map(|h| (h.token, h.decimals, h.usd_price))
        };
        let (Some(q_buy), Some(b_buy), Some(b_sell), Some(q_sell)) = (
            token(buy, &pair.quote),
            token(buy, &pair.base),
            token(sell, &pair.base),
            token(sell, &pair.quote),
        ) else {
            return;
        };
        let xid = self.next_xid;
        self.next_xid += 1;
        let profit_raw = I256::try_from(
            (plan.net_usd.max(0.0) / q_buy.2.max(1e-12) * 10f64.powi(i32::from(q_buy.1))) as u128,
        )
        .unwrap_or(I256::ZERO);
        let label = |what: &str, c: usize| {
            format!(
                "xchain {xid}: {what} {} on {} ({}/{} spread {spread_bps:.1} bps)",
                pair.base, self.chains[c].name, pair.base, pair.quote
            )
        };
        let orders = [
            LegOrder {
                xid,
                venue: view(buy).venue,
                side: spread::side_paying(view(buy), &pair.quote),
                tokens: (q_buy.0, b_buy.0),
                amount_in: plan.amount_in,
                min_out: min_out(plan.base_bought, self.slippage_bps),
                expected_profit: profit_raw,
                label: label("buy", buy),
                unwind: false,
            },
            LegOrder {
                xid,
                venue: view(sell).venue,
                side: spread::side_paying(view(sell), &pair.base),
                tokens: (b_sell.0, q_sell.0),
                amount_in: plan.base_sold,
                min_out: min_out(plan.amount_out, self.slippage_bps),
                expected_profit: profit_raw,
                label: label("sell", sell),
                unwind: false,
            },
        ];
        let usd = |raw: U256, d: u8, p: f64| {
            crate::engine::market::u256_f64(raw) / 10f64.powi(i32::from(d)) * p
        };
        // Leg k of `orders` runs on chain `chain_of[k]`.
        let trade = Trade {
            xid,
            pair: (pair.base.clone(), pair.quote.clone()),
            buy,
            input_usd: [
                usd(plan.amount_in, q_buy.1, q_buy.2),
                usd(plan.base_sold, b_sell.1, b_sell.2),
            ],
            out_per_raw: [
                b_buy.2 / 10f64.powi(i32::from(b_buy.1)),
                q_sell.2 / 10f64.powi(i32::from(q_sell.1)),
            ],
            plan,
            legs: [LegState::Proving, LegState::Proving],
            orders: orders.clone(),
            realised_usd: 0.0,
        };
        info!(xid, pair = %format!("{}/{}", pair.base, pair.quote), buy_chain = %self.chains[buy].name, amount_in = %trade.plan.amount_in, net_usd = trade.plan.net_usd, spread_bps, "cross-chain trade: proving both legs");
        self.stats.trades.fetch_add(1, Ordering::Relaxed);
        self.stats.legs_ordered.fetch_add(2, Ordering::Relaxed);
        self.chains[buy].control.send(Control::Xchain(XControl::Prove(orders[0].clone())));
        self.chains[sell].control.send(Control::Xchain(XControl::Prove(orders[1].clone())));
        self.trade = Some(trade);
    }

    /// Leg index (0 = buy, 1 = sell) of a report from `chain_id`.
    fn leg_of(&self, t: &Trade, chain_id: u64) -> Option<usize> {
        let c = self.idx(chain_id)?;
        Some(usize::from(c != t.buy))
    }

    fn on_proven(&mut self, xid: u64, chain_id: u64, result: Result<LegProof, String>) {
        let Some(mut t) = self.trade.take().filter(|t| t.xid == xid) else { return };
        let Some(k) = self.leg_of(&t, chain_id) else { return };
        t.legs[k] = match result {
            Ok(p) => LegState::Proven(p),
            Err(e) => LegState::Refused(e),
        };
        let chain = |k: usize| if k == 0 { t.buy } else { 1 - t.buy };
        match (&t.legs[0], &t.legs[1]) {
            (LegState::Proven(p0), LegState::Proven(p1)) => {
                // Re-check the trade on the proven figures before sending anything.
                let out_usd = crate::engine::market::u256_f64(p1.amount_out) * t.out_per_raw[1];
                let net = out_usd
                    - t.input_usd[0]
                    - p0.gas_usd
                    - p1.gas_usd
                    - t.input_usd[0] * f64::from(self.cfg.risk_margin_bps) / 10_000.0;
                if net <= 0.0 || p0.amount_out < t.orders[1].amount_in {
                    info!(
                        xid,
                        net, "cross-chain trade no longer pays on the proven legs; cancelled"
                    );
                    self.stats.refused_proof.fetch_add(1, Ordering::Relaxed);
                    for k in 0..2 {
                        self.chains[chain(k)].control.send(Control::Xchain(XControl::Cancel(xid)));
                    }
                    return;
                }
                self.stats.simulated_micro_usd.fetch_add(
                    ((out_usd - t.input_usd[0] - p0.gas_usd - p1.gas_usd) * 1e6) as i64,
                    Ordering::Relaxed,
                );
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                for k in 0..2 {
                    t.legs[k] = LegState::Sent;
                    self.chains[chain(k)].control.send(Control::Xchain(XControl::Go(xid)));
                }
                info!(xid, "cross-chain trade: both legs proven; sent together");
                self.trade = Some(t);
            }
            (LegState::Refused(e), _) | (_, LegState::Refused(e)) => {
                info!(xid, reason = %e, "cross-chain trade refused: a leg did not prove");
                self.stats.refused_proof.fetch_add(1, Ordering::Relaxed);
                for k in 0..2 {
                    self.chains[chain(k)].control.send(Control::Xchain(XControl::Cancel(xid)));
                }
            }
            _ => self.trade = Some(t),
        }
    }

    fn on_leg(&mut self, xid: u64, chain_id: u64, outcome: LegOutcome) {
        if let Some(k) = self.unwinds.iter().position(|u| u.0 == xid) {
            let (_, pair, mut row) = self.unwinds.swap_remove(k);
            if let LegOutcome::Landed { amount_out, .. } = outcome {
                // Traded back: the position is closed and the pair trades again.
                info!(xid, position = %row.id, %amount_out, "landed leg unwound; position closed");
                row.state = PositionState::Closed;
                row.closed_at_ms = Some(ledger::now_unix_ms());
                row.notes = Some(format!(
                    "{}; unwound on its own chain for {amount_out}",
                    row.notes.unwrap_or_default()
                ));
                if let Some(l) = &self.ledger {
                    l.record(row);
                }
                self.unfreeze(&pair);
            } else {
                warn!(xid, position = %row.id, "unwind did not land; the position stays open and the pair frozen");
            }
            return;
        }
        let reopened = self.reopened.iter().position(|t| t.xid == xid);
        let mut t = match reopened {
            Some(i) => self.reopened.swap_remove(i),
            None => match self.trade.take() {
                Some(t) if t.xid == xid => t,
                other => {
                    self.trade = other;
                    return;
                }
            },
        };
        let Some(k) = self.leg_of(&t, chain_id) else { return };
        t.legs[k] = LegState::Done(outcome);
        if !matches!((&t.legs[0], &t.legs[1]), (LegState::Done(_), LegState::Done(_))) {
            if reopened.is_some() {
                self.reopened.push(t);
            } else {
                self.trade = Some(t);
            }
            return;
        }
        if reopened.is_some() {
            // The orphaned leg's fate is known: the pair is released (or frozen again below).
            self.unfreeze(&t.pair);
        }
        self.finish(t);
    }

    /// Books a trade whose two legs have both ended.
    fn finish(&mut self, mut t: Trade) {
        let (LegState::Done(o0), LegState::Done(o1)) = (&t.legs[0], &t.legs[1]) else { return };
        let xid = t.xid;
        let landed = |o: &LegOutcome| matches!(o, LegOutcome::Landed { .. });
        let gas = |o: &LegOutcome| match o {
            LegOutcome::Landed { gas_usd, .. } | LegOutcome::Reverted { gas_usd } => *gas_usd,
            LegOutcome::Missed => 0.0,
        };
        match (landed(o0), landed(o1)) {
            (true, true) => {
                let out = |o: &LegOutcome| match o {
                    LegOutcome::Landed { amount_out, .. } => *amount_out,
                    _ => U256::ZERO,
                };
                let realised = crate::engine::market::u256_f64(out(o1)) * t.out_per_raw[1]
                    - t.input_usd[0]
                    - gas(o0)
                    - gas(o1);
                self.stats.settled.fetch_add(1, Ordering::Relaxed);
                self.stats.realised_micro_usd.fetch_add((realised * 1e6) as i64, Ordering::Relaxed);
                info!(xid, realised_usd = realised, "cross-chain trade settled: both legs landed");
                t.realised_usd = realised;
                if self.settled.len() >= SETTLED_KEPT {
                    self.settled.pop_front();
                }
                self.settled.push_back(t);
            }
            (false, false) => {
                info!(xid, "cross-chain trade: neither leg landed; nothing held");
            }
            (l0, _) => {
                let k = if l0 { 0 } else { 1 };
                let o = if l0 { o0.clone() } else { o1.clone() };
                self.one_leg(&t, k, o);
            }
        }
    }

    /// A settled trade's leg on `chain_id` was reorged out: its realised PnL is reversed, the
    /// trade waits for that leg's final outcome with its pair frozen, then is booked again
    /// (settled, or one-legged under the policy). Never re-sends anything.
    fn on_orphaned(&mut self, xid: u64, chain_id: u64) {
        let Some(i) = self.settled.iter().position(|t| t.xid == xid) else {
            warn!(
                xid,
                chain_id,
                "an orphaned cross-chain leg of no settled trade (an unwind leg?): its position is not reopened"
            );
            return;
        };
        let Some(mut t) = self.settled.remove(i) else { return };
        let Some(k) = self.leg_of(&t, chain_id) else { return };
        self.stats.settled.fetch_sub(1, Ordering::Relaxed);
        self.stats.realised_micro_usd.fetch_sub((t.realised_usd * 1e6) as i64, Ordering::Relaxed);
        t.realised_usd = 0.0;
        t.legs[k] = LegState::Sent;
        warn!(xid, chain = %self.chains[self.idx(chain_id).unwrap_or_default()].name, "cross-chain trade reopened: a reorg orphaned one of its legs; the pair is frozen until that leg ends");
        self.frozen.push(t.pair.clone());
        self.stats.frozen.store(true, Ordering::Relaxed);
        self.reopened.push(t);
    }

    /// Drops one freeze of `pair`.
    fn unfreeze(&mut self, pair: &(String, String)) {
        if let Some(i) = self.frozen.iter().position(|p| p == pair) {
            self.frozen.remove(i);
        }
        self.stats.frozen.store(!self.frozen.is_empty(), Ordering::Relaxed);
    }

    /// Exactly leg `k` landed: record the one-way position and apply the policy. Never chases
    /// the failed leg.
    fn one_leg(&mut self, t: &Trade, k: usize, landed: LegOutcome) {
        self.stats.one_leg.fetch_add(1, Ordering::Relaxed);
        let chain = if k == 0 { t.buy } else { 1 - t.buy };
        let order = &t.orders[k];
        let amount = match landed {
            LegOutcome::Landed { amount_out, .. } => amount_out,
            _ => U256::ZERO,
        };
        let policy = self.cfg.on_leg_failure;
        warn!(xid = t.xid, chain = %self.chains[chain].name, ?policy, "cross-chain trade: one leg landed, the other did not");
        let row = ledger::Position {
            id: format!("xchain:{}:{}", self.chains[chain].chain_id, t.xid),
            chain_id: self.chains[chain].chain_id,
            token: order.tokens.1,
            amount,
            amount_usd: Some(crate::engine::market::u256_f64(amount) * t.out_per_raw[k]),
            state: PositionState::Open,
            opened_at_ms: ledger::now_unix_ms(),
            closed_at_ms: None,
            notes: Some(format!(
                "cross-chain {} {}/{}: the {} leg landed, the other did not; policy {:?}; paid {} of {}",
                t.xid,
                t.pair.0,
                t.pair.1,
                if k == 0 { "buy" } else { "sell" },
                policy,
                order.amount_in,
                order.tokens.0
            )),
        };
        if let Some(l) = &self.ledger {
            l.record(row.clone());
        }
        match policy {
            LegFailurePolicy::Hold => {
                self.frozen.push(t.pair.clone());
                self.stats.frozen.store(true, Ordering::Relaxed);
            }
            LegFailurePolicy::Unwind => {
                // Trade the landed leg back on its own chain, bounded by the loss cap.
                let xid = self.next_xid;
                self.next_xid += 1;
                let floor = order.amount_in
                    * U256::from(10_000 - self.cfg.unwind_max_loss_bps.min(10_000))
                    / U256::from(10_000u32);
                let back = LegOrder {
                    xid,
                    venue: order.venue,
                    side: order.side.flip(),
                    tokens: (order.tokens.1, order.tokens.0),
                    amount_in: amount,
                    min_out: floor,
                    expected_profit: I256::ZERO,
                    label: format!("xchain {}: unwind the landed leg", t.xid),
                    unwind: true,
                };
                self.frozen.push(t.pair.clone());
                self.stats.frozen.store(true, Ordering::Relaxed);
                self.stats.legs_ordered.fetch_add(1, Ordering::Relaxed);
                self.unwinds.push((xid, t.pair.clone(), row));
                self.chains[chain].control.send(Control::Xchain(XControl::Prove(back)));
                self.chains[chain].control.send(Control::Xchain(XControl::Go(xid)));
            }
        }
    }

    // ------------------------------------------------------------------------- rebalancing

    /// Reads the bridge events of blocks up to the snapshot's head: locks by our executor on this
    /// chain, releases of our transfers on it.
    fn track_transfers(&mut self, i: usize, s: &ChainSnapshot) {
        let from = self.scanned[i].saturating_add(1).max(s.head.number.saturating_sub(256));
        self.scanned[i] = s.head.number;
        let watching = self.book.transfers.iter().any(|t| {
            (t.src == s.chain_id && t.state == TransferState::Sending)
                || (t.dst == s.chain_id && t.state == TransferState::InFlight)
        });
        let Some((bridge, provider)) = self.bridge_io(i) else { return };
        if !watching || from > s.head.number {
            return;
        }
        let filter = Filter::new().address(bridge).from_block(from).to_block(s.head.number);
        let logs = match self.rt.block_on(async { provider.get_logs(&filter).await }) {
            Ok(l) => l,
            Err(e) => {
                // Retried over the same range at the next head.
                warn!(chain = %self.chains[i].name, error = %e, "bridge logs unreadable");
                self.scanned[i] = from.saturating_sub(1);
                return;
            }
        };
        let executor = self.chains[i].executor;
        for log in logs {
            let block = log.block_number.unwrap_or(s.head.number);
            if let Ok(ev) = Bridge::Locked::decode_log(&log.inner) {
                if ev.sender != executor {
                    continue;
                }
                let fee_usd = self
                    .book
                    .holding(s.chain_id, &self.token_symbol(i, ev.token))
                    .map_or(0.0, |h| {
                        crate::engine::market::u256_f64(ev.fee) / 10f64.powi(i32::from(h.decimals))
                            * h.usd_price
                    });
                if let Some(t) = self.book.transfers.iter_mut().find(|t| {
                    t.src == s.chain_id
                        && t.state == TransferState::Sending
                        && t.token == ev.token
                        && U256::from(t.dst) == ev.dstChainId
                }) {
                    t.state = TransferState::InFlight;
                    t.net = ev.amount;
                    t.fee = ev.fee;
                    t.lock_id = Some(ev.id);
                    t.locked_block = Some(block);
                    self.stats
                        .bridge_cost_micro_usd
                        .fetch_add((fee_usd * 1e6) as i64, Ordering::Relaxed);
                    info!(xid = t.xid, lock = %ev.id, block, net = %ev.amount, fee = %ev.fee, "bridge transfer locked: in flight");
                    let t = t.clone();
                    self.record_transfer(&t, PositionState::Open);
                }
            } else if let Ok(ev) = Bridge::Released::decode_log(&log.inner)
                && let Some(t) = self.book.transfers.iter_mut().find(|t| {
                    t.dst == s.chain_id
                        && t.state == TransferState::InFlight
                        && U256::from(t.src) == ev.srcChainId
                        && t.lock_id == Some(ev.id)
                })
            {
                t.state = TransferState::Arrived;
                t.arrived_block = Some(block);
                self.stats.arrived.fetch_add(1, Ordering::Relaxed);
                info!(xid = t.xid, block, "bridge transfer released: arrived");
                let t = t.clone();
                self.record_transfer(&t, PositionState::Closed);
            }
        }
    }

    fn token_symbol(&self, i: usize, token: Address) -> String {
        self.snaps[i]
            .as_ref()
            .and_then(|s| s.inventory.iter().find(|h| h.token == token))
            .map(|h| h.symbol.clone())
            .unwrap_or_default()
    }

    fn record_transfer(&self, t: &Transfer, state: PositionState) {
        let Some(l) = &self.ledger else { return };
        let usd = self.book.holding(t.src, &t.symbol).map(|h| {
            crate::engine::market::u256_f64(t.net) / 10f64.powi(i32::from(h.decimals)) * h.usd_price
        });
        l.record(ledger::Position {
            id: format!("bridge:{}:{}", t.src, t.lock_id.unwrap_or_default()),
            chain_id: t.src,
            token: t.token,
            amount: t.net,
            amount_usd: usd,
            state,
            opened_at_ms: t.sent_at_ms,
            closed_at_ms: (state == PositionState::Closed).then(ledger::now_unix_ms),
            notes: Some(format!(
                "bridge transfer {} {} → chain {}: gross {}, fee {}, lock gas ${:.4}, locked in block {:?}, released in block {:?}",
                t.xid, t.symbol, t.dst, t.gross, t.fee, t.gas_usd, t.locked_block, t.arrived_block
            )),
        });
    }

    fn rebalance(&mut self) {
        if self.snaps.iter().any(Option::is_none) {
            return;
        }
        for sym in self.symbols() {
            if self.book.moving(&sym) {
                continue;
            }
            let target = |c: usize| {
                self.cfg
                    .inventory
                    .iter()
                    .find(|t| self.canonical(&t.token) == sym && t.chain == self.chains[c].name)
                    .map(|t| t.target_usd)
            };
            let (Some(t0), Some(t1)) = (target(0), target(1)) else { continue };
            let (Some(h0), Some(h1)) = (
                self.book.usd(self.chains[0].chain_id, &sym),
                self.book.usd(self.chains[1].chain_id, &sym),
            ) else {
                continue;
            };
            let Some(need) = rebalance_need(
                (self.chains[0].chain_id, h0, t0),
                (self.chains[1].chain_id, h1, t1),
                self.cfg.skew_threshold_pct,
            ) else {
                continue;
            };
            self.send_transfer(&sym, &need);
        }
    }

    fn send_transfer(&mut self, sym: &str, need: &super::inventory::Rebalance) {
        let (Some(src), Some(dst)) = (self.idx(need.src), self.idx(need.dst)) else { return };
        let Some((bridge, src_provider)) = self.bridge_io(src) else { return };
        let Some((dst_bridge, dst_provider)) = self.bridge_io(dst) else { return };
        let (Some(h), Some(hd)) =
            (self.book.holding(need.src, sym).cloned(), self.book.holding(need.dst, sym).cloned())
        else {
            return;
        };
        let room = self.cfg.max_in_flight_usd - self.book.in_flight_usd();
        let usd = need.usd.min(room);
        if usd <= 0.0 {
            self.stats.refused_capacity.fetch_add(1, Ordering::Relaxed);
            warn!(symbol = sym, "rebalance refused: the in-flight cap is used up");
            return;
        }
        let amount =
            U256::from((usd / h.usd_price.max(1e-12) * 10f64.powi(i32::from(h.decimals))) as u128)
                .min(h.balance);
        // Capacity rule (seed 000): the destination's reserve must cover the peak outflow over
        // the bridge latency; the outflow we can cause in one latency window is this transfer
        // plus everything already in flight to that chain.
        let pending: U256 = self
            .book
            .transfers
            .iter()
            .filter(|t| t.dst == need.dst && t.state == TransferState::InFlight)
            .map(|t| t.net)
            .fold(U256::ZERO, |a, b| a + b);
        let needed = super::spread::rescale(amount, h.decimals, hd.decimals) + pending;
        let Some(dst_head) = self.snaps[dst].as_ref().map(|s| s.head.hash) else { return };
        let reserve = {
            let token = crate::contracts::TestToken::new(hd.token, dst_provider);
            self.rt
                .block_on(async { token.balanceOf(dst_bridge).block(dst_head.into()).call().await })
        };
        let cap = {
            let b = Bridge::new(bridge, src_provider);
            self.rt.block_on(async { b.capacity(h.token).call().await })
        };
        match (reserve, cap) {
            (Ok(r), Ok(c)) if r >= needed && !c.is_zero() => {
                let amount = amount.min(c);
                let xid = self.next_xid;
                self.next_xid += 1;
                info!(xid, symbol = sym, from = %self.chains[src].name, to = %self.chains[dst].name, %amount, skew_pct = need.skew_pct, "rebalance through the bridge");
                self.book.transfers.push(Transfer {
                    xid,
                    src: need.src,
                    dst: need.dst,
                    symbol: sym.to_owned(),
                    token: h.token,
                    gross: amount,
                    net: U256::ZERO,
                    fee: U256::ZERO,
                    lock_id: None,
                    state: TransferState::Sending,
                    locked_block: None,
                    arrived_block: None,
                    sent_at_ms: ledger::now_unix_ms(),
                    gas_usd: 0.0,
                });
                self.chains[src].control.send(Control::Xchain(XControl::Bridge(BridgeOrder {
                    xid,
                    bridge,
                    token: h.token,
                    amount,
                    dst_chain_id: need.dst,
                })));
            }
            (Ok(r), Ok(c)) => {
                self.stats.refused_capacity.fetch_add(1, Ordering::Relaxed);
                warn!(symbol = sym, reserve = %r, needed = %needed, capacity = %c, "rebalance refused: the destination bridge reserve is below the peak outflow over its latency, or the token is not bridgeable");
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!(symbol = sym, error = %e, "rebalance deferred: bridge reserve or capacity unreadable");
            }
        }
    }
}
