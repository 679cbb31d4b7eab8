//! The engine's side of cross-chain trading ([`crate::xchain`]): after every head it publishes a
//! [`ChainSnapshot`] (decoded pools, the executor's inventory, gas) to the coordinator; it proves
//! the one-way legs the coordinator orders on its own state, holds them unsigned until the
//! coordinator says go (both legs proven), then signs with the next nonce and hands them to the
//! exec task; bridge transfers (`executor.bridgeOut`) are proven and sent the same way. Every
//! outcome goes back as an [`XEvent`]. Nothing here blocks: the coordinator's channel is unbounded
//! and a missing coordinator is simply not told.

use std::collections::HashMap;

use alloy::primitives::{Address, I256, U256};
use crossbeam_channel::Sender;
use tracing::{info, warn};

use super::{
    Engine, ExecReport, ExecResult,
    position::{LegCall, LegSpec, PreparedLeg},
};
use crate::{
    risk::StrategyKind,
    state::BlockRef,
    venues::Pool,
    xchain::{
        BridgeOrder, ChainSnapshot, Holding, LegOrder, LegOutcome, LegProof, PoolView, XControl,
        XEvent,
    },
};

/// Heads a proven leg stays held before it is dropped unsent.
const HOLD_HEADS: u64 = 3;

/// Cross-chain state of one engine.
#[derive(Debug, Default)]
pub(super) struct XState {
    link: Option<Sender<XEvent>>,
    /// Proven legs awaiting `Go`: (trade id, leg, head proven at).
    held: Vec<(u64, PreparedLeg, u64)>,
    /// Sent submissions by opportunity id: (trade id, is a bridge transfer).
    sent: HashMap<u64, (u64, bool)>,
    /// Legs reported landed, most recent last (opportunity id, trade id), within the reorg
    /// window: a reorg that orphans one reopens its trade.
    landed: std::collections::VecDeque<(u64, u64)>,
    /// Bridge routes whose transfer state is still being read ahead, and the rounds so far.
    warm: Vec<(Address, u64)>,
    /// One-way legs through every pool are still being read ahead (from the link on).
    warm_legs: bool,
    warm_rounds: u8,
    /// The keys the last read-ahead round asked for: a round that finds exactly these still
    /// missing ran before they landed (a head came first) and does not count.
    warm_asked: Vec<crate::state::StateKey>,
    /// Rounds that found the last round's keys still missing.
    warm_stalls: u8,
    /// Bridge transfers waiting for state a cold read is fetching, with their tries.
    bridge_waiting: Vec<(BridgeOrder, u8)>,
}

/// Discovery rounds spent reading ahead a bridge transfer's state (each round reads the keys the
/// last one reached; a transfer's call path is about five deep).
const WARM_ROUNDS: u8 = 8;
/// Rounds that may run before the last round's keys land (heads arriving first) before the
/// read-ahead gives up on them.
const WARM_STALLS: u8 = 16;
/// A transfer of this many USD's worth of each token is what the read-ahead runs: a nominal
/// amount that still pays the bridge's fee (an amount of 1 rounds the fee to zero and skips
/// the fee's state).
const WARM_BRIDGE_USD: f64 = 100.0;

/// Landed legs remembered for a reorg to orphan (far more than land within any reorg window).
const LANDED_KEPT: usize = 256;

impl Engine {
    /// Handles one coordinator command.
    pub(super) fn on_xcontrol(&mut self, c: XControl) {
        match c {
            XControl::Link(l) => {
                self.x.link = Some(l.0);
                // Read ahead what a leg through each pool needs, so the first spread is provable.
                self.x.warm_legs = true;
                self.x.warm_rounds = 0;
                self.x.warm_asked.clear();
                self.x.warm_stalls = 0;
                // The coordinator's first view of this chain: the current head.
                if let Some(head) = self.cache.head().copied() {
                    self.x_publish(&head);
                }
            }
            XControl::Prove(o) => self.x_prove(&o),
            XControl::Go(xid) => self.x_go(xid),
            XControl::Cancel(xid) => self.x.held.retain(|h| h.0 != xid),
            XControl::Bridge(o) => self.x_bridge(&o),
            XControl::Warm(routes) => {
                self.x.warm = routes;
                self.x.warm_rounds = 0;
                self.x.warm_asked.clear();
                self.x.warm_stalls = 0;
                self.x_warm();
            }
        }
    }

    /// One discovery round over a nominal transfer of every token through every bridge route
    /// being warmed, and (from the link on) a nominal one-way leg both ways through every PMM
    /// and V2 pool: the keys it misses are asked of the feeder (the next supplement runs the
    /// next round), until nothing is missing or the rounds are spent.
    fn x_warm(&mut self) {
        if self.x.warm.is_empty() && !self.x.warm_legs {
            return;
        }
        let Some(next) = self.next_block() else { return };
        let mut calls = Vec::new();
        for (bridge, dst) in &self.x.warm {
            for t in &self.market.tokens {
                calls.push(LegCall::Bridge {
                    bridge: *bridge,
                    token: t.address,
                    amount: t.raw_for_usd(WARM_BRIDGE_USD).max(U256::ONE),
                    dst_chain_id: *dst,
                });
            }
        }
        if self.x.warm_legs {
            for (i, pool) in self.market.pools.iter().enumerate() {
                if !self.market.decoded[i] {
                    continue;
                }
                let venue = self.market.venues[i].address;
                for side in [crate::venues::Side::SellBase, crate::venues::Side::SellQuote] {
                    let hop = match pool {
                        Pool::Pmm(p) => p.hop(venue, side, U256::from(1_000u32), U256::ZERO),
                        Pool::V2(p) => p.hop(venue, side, U256::from(1_000u32), U256::ZERO),
                        _ => continue,
                    };
                    calls.push(LegCall::Hops(vec![hop]));
                }
            }
        }
        let mut txs = Vec::new();
        for call in calls {
            let tx = alloy::consensus::TxEip1559 {
                chain_id: self.p.chain.chain_id,
                nonce: 0,
                gas_limit: 1_500_000,
                max_fee_per_gas: u128::from(next.base_fee) * 2 + 1,
                max_priority_fee_per_gas: 1,
                to: alloy::primitives::TxKind::Call(self.p.executor),
                value: U256::ZERO,
                access_list: Default::default(),
                input: call.input(next.number),
            };
            if let Ok(env) = crate::sim::tx_env(&tx, self.p.operator) {
                txs.push(env);
            }
        }
        let missing = {
            let mut bs = self.sim.block_unchecked(&self.cache, &next);
            bs.view().set_discovery(true);
            for tx in txs {
                // Only the misses count in discovery mode.
                let _ = bs.raw(tx);
                bs.clear_pending();
            }
            bs.view().take_misses()
        };
        if !missing.is_empty() && missing == self.x.warm_asked {
            // The last round's keys have not landed yet: wait for them (a few heads at most).
            self.x.warm_stalls += 1;
            if self.x.warm_stalls >= WARM_STALLS {
                self.x.warm.clear();
                self.x.warm_legs = false;
            }
            return;
        }
        self.x.warm_rounds += 1;
        if missing.is_empty() || self.x.warm_rounds >= WARM_ROUNDS {
            self.x.warm.clear();
            self.x.warm_legs = false;
        }
        if !missing.is_empty() {
            self.x.warm_asked.clone_from(&missing);
            self.watch(missing);
        }
    }

    fn x_send(&self, e: XEvent) {
        if let Some(l) = &self.x.link {
            let _ = l.send(e);
        }
    }

    /// Publishes the chain's state at `head` (called after every processed head).
    pub(super) fn x_publish(&mut self, head: &BlockRef) {
        if self.x.link.is_none() {
            return;
        }
        self.x.held.retain(|h| head.number <= h.2 + HOLD_HEADS);
        self.x_warm();
        for (o, tries) in std::mem::take(&mut self.x.bridge_waiting) {
            self.x_bridge_try(&o, tries);
        }
        let Some(next) = self.next_block() else { return };
        let gas_price_wei = self
            .fees
            .quote_for_base_fee(u128::from(next.base_fee), None)
            .map_or(0, |f| f.expected_gas_price_wei());
        let sym = |a: &Address| self.market.token(a).map(|t| t.symbol.clone());
        let pools = (0..self.market.venues.len())
            .filter(|i| self.market.decoded[*i])
            .filter_map(|i| {
                let pool = &self.market.pools[i];
                if !matches!(pool, Pool::Pmm(_) | Pool::V2(_)) {
                    return None;
                }
                let (b, q) = crate::venues::Venue::tokens(pool);
                Some(PoolView {
                    venue: self.market.venues[i].address,
                    name: self.market.venues[i].name.clone(),
                    base: (b, sym(&b)?),
                    quote: (q, sym(&q)?),
                    pool: pool.clone(),
                })
            })
            .collect();
        let inventory = self
            .market
            .tokens
            .iter()
            .map(|t| Holding {
                token: t.address,
                symbol: t.symbol.clone(),
                balance: self.inventory(t.address),
                decimals: t.decimals,
                usd_price: t.usd_price,
            })
            .collect();
        let snap = ChainSnapshot {
            chain_id: self.p.chain.chain_id,
            head: *head,
            timestamp: next.timestamp,
            base_fee: next.base_fee,
            gas_price_wei,
            native_usd: self.p.chain.fees.native_usd,
            pools,
            inventory,
            tradeable: self.cache.is_fresh() && !self.gate.is_halted(),
        };
        self.x_send(XEvent::Head(Box::new(snap)));
    }

    fn x_prove(&mut self, o: &LegOrder) {
        let chain_id = self.p.chain.chain_id;
        let result = self.x_prove_inner(o);
        let result = result.map(|(leg, head)| {
            let proof = LegProof {
                amount_out: leg.got.into_raw(),
                gas_used: leg.gas_used,
                gas_usd: leg.gas_usd,
                head,
            };
            self.x.held.retain(|h| h.0 != o.xid);
            self.x.held.push((o.xid, leg, head));
            proof
        });
        if let Err(e) = &result {
            info!(xid = o.xid, chain_id, reason = %e, "cross-chain leg refused");
        }
        self.x_send(XEvent::Proven { xid: o.xid, chain_id, result });
    }

    fn x_prove_inner(&mut self, o: &LegOrder) -> Result<(PreparedLeg, u64), String> {
        if !self.cache.is_fresh() {
            return Err("state cache stale".into());
        }
        if self.gate.is_halted() {
            return Err("halted".into());
        }
        let head = *self.cache.head().ok_or("no head yet")?;
        let next = self.next_block().ok_or("no head yet")?;
        let i = self.market.venue_index(&o.venue).ok_or("unknown venue")?;
        let hop = match &self.market.pools[i] {
            Pool::Pmm(p) => p.hop(o.venue, o.side, o.amount_in, o.min_out),
            Pool::V2(p) => p.hop(o.venue, o.side, o.amount_in, o.min_out),
            _ => return Err("not a PMM or V2 pool".into()),
        };
        if hop.tokenIn != o.tokens.0 || hop.tokenOut != o.tokens.1 {
            return Err("side does not match the tokens".into());
        }
        let spec = LegSpec {
            call: LegCall::Hops(vec![hop]),
            tokens: o.tokens,
            label: &o.label,
            expected: o.expected_profit,
            opening: !o.unwind,
            strategy: StrategyKind::CrossChain,
        };
        let leg = self
            .prove_leg(&head, &next, spec)
            .ok_or("refused in simulation or by the desk's limits (see the ledger)")?;
        if leg.got.into_raw() < o.min_out {
            return Err(format!("simulated output {} below the limit {}", leg.got, o.min_out));
        }
        Ok((leg, head.number))
    }

    fn x_go(&mut self, xid: u64) {
        let chain_id = self.p.chain.chain_id;
        let Some(k) = self.x.held.iter().position(|h| h.0 == xid) else {
            warn!(xid, chain_id, "go for a leg not held (expired or cancelled)");
            self.x_send(XEvent::Leg { xid, chain_id, outcome: LegOutcome::Missed });
            return;
        };
        let (_, leg, _) = self.x.held.swap_remove(k);
        let sent = self.x_sign_send(leg);
        match sent {
            Some(opp) => {
                self.x.sent.insert(opp, (xid, false));
            }
            None => self.x_send(XEvent::Leg { xid, chain_id, outcome: LegOutcome::Missed }),
        }
    }

    /// Signs and hands over; the realised PnL of the leg values its output and input at the
    /// tokens' reference prices.
    fn x_sign_send(&mut self, leg: PreparedLeg) -> Option<u64> {
        let next = self.next_block()?;
        if !self.p.mode.signs() {
            self.decide(leg.id, Ok(()));
            return None;
        }
        let (per_raw, cost) = match &leg.call {
            LegCall::Hops(h) => {
                let out = self.market.token(&leg.token_out)?;
                let per_raw = out.usd_price / 10f64.powi(i32::from(out.decimals));
                let input = h.first()?;
                let cost = self.market.token(&input.tokenIn)?.usd(input.amountIn);
                (per_raw, cost)
            }
            LegCall::Bridge { .. } => (0.0, 0.0),
        };
        self.sign_and_send_leg(leg, next.number, per_raw, cost)
    }

    fn x_bridge(&mut self, o: &BridgeOrder) {
        self.x_bridge_try(o, 0);
    }

    /// Tries a bridge transfer; one refused only for cold state is retried when the state it
    /// lacked lands (up to [`WARM_ROUNDS`] times) instead of being reported refused.
    fn x_bridge_try(&mut self, o: &BridgeOrder, tries: u8) {
        let chain_id = self.p.chain.chain_id;
        let cold_before = self.stats.cold_skips.load(std::sync::atomic::Ordering::Relaxed);
        let result = (|| {
            if !self.cache.is_fresh() || self.gate.is_halted() {
                return Err("state cache stale or halted".to_owned());
            }
            let head = *self.cache.head().ok_or("no head yet")?;
            let next = self.next_block().ok_or("no head yet")?;
            let label = format!("bridge {} of {} to chain {}", o.amount, o.token, o.dst_chain_id);
            let spec = LegSpec {
                call: LegCall::Bridge {
                    bridge: o.bridge,
                    token: o.token,
                    amount: o.amount,
                    dst_chain_id: o.dst_chain_id,
                },
                tokens: (o.token, o.token),
                label: &label,
                expected: I256::ZERO,
                opening: false,
                strategy: StrategyKind::CrossChain,
            };
            let leg = self
                .prove_leg(&head, &next, spec)
                .ok_or("refused in simulation (see the ledger)".to_owned())?;
            self.x_sign_send(leg).ok_or_else(|| "not sent (mode or signer)".to_owned())
        })();
        match result {
            Ok(opp) => {
                self.x.sent.insert(opp, (o.xid, true));
                self.x_send(XEvent::BridgeSent { xid: o.xid, chain_id, result: Ok(()) });
            }
            Err(_)
                if tries < WARM_ROUNDS
                    && self.stats.cold_skips.load(std::sync::atomic::Ordering::Relaxed)
                        > cold_before =>
            {
                self.x.bridge_waiting.push((o.clone(), tries + 1));
            }
            Err(e) => self.x_send(XEvent::BridgeSent { xid: o.xid, chain_id, result: Err(e) }),
        }
    }

    /// Routes a submission's outcome to the coordinator when it was a cross-chain submission.
    pub(super) fn x_on_exec(&mut self, r: &ExecReport) {
        let chain_id = self.p.chain.chain_id;
        if matches!(r.result, ExecResult::Orphaned { .. }) {
            // A landed leg's block was reorged out: its trade is reopened until the exec task,
            // which keeps tracking the submission, reports where it ends.
            if let Some(k) = self.x.landed.iter().position(|l| l.0 == r.opportunity) {
                let (opp, xid) = self.x.landed.remove(k).unwrap_or_default();
                warn!(
                    opp,
                    xid,
                    chain_id,
                    "a reorg orphaned a landed cross-chain leg; its trade is reopened"
                );
                self.x.sent.insert(opp, (xid, false));
                self.x_send(XEvent::Orphaned { xid, chain_id });
            } else if self.x.sent.contains_key(&r.opportunity) {
                // A bridge transfer's lock: tracked by its events, not reopened (noted for the desk).
                warn!(opp = r.opportunity, "a reorg orphaned a bridge transfer's lock");
            }
            return;
        }
        let Some((xid, bridge)) = self.x.sent.remove(&r.opportunity) else { return };
        let outcome = match &r.result {
            ExecResult::Included { .. } => {
                let amount_out = if r.delta > I256::ZERO { r.delta.into_raw() } else { U256::ZERO };
                if !bridge {
                    if self.x.landed.len() >= LANDED_KEPT {
                        self.x.landed.pop_front();
                    }
                    self.x.landed.push_back((r.opportunity, xid));
                }
                LegOutcome::Landed { amount_out, gas_usd: r.gas_usd }
            }
            ExecResult::Reverted { gas_usd } => LegOutcome::Reverted { gas_usd: *gas_usd },
            ExecResult::Missed | ExecResult::NotDelivered { .. } | ExecResult::Orphaned { .. } => {
                LegOutcome::Missed
            }
        };
        let e = if bridge {
            XEvent::Bridge { xid, chain_id, outcome }
        } else {
            XEvent::Leg { xid, chain_id, outcome }
        };
        self.x_send(e);
    }
}
