//! Held depeg positions: when redemption at the reserve vault is closed, a compliant stable trading
//! below peg is bought from inventory and held, with the exit planned at the vault (redeem 1:1 when
//! it reopens). Both legs are one-way executor legs (`executeLeg`), proven in revm, risk-checked
//! (the position's exposure counts) and recorded in the ledger as a position.

use std::sync::atomic::Ordering;

use alloy::primitives::{Address, I256, U256};
use smallvec::SmallVec;
use tracing::info;

use super::{Engine, ExecJob, market};
use crate::{
    contracts::Executor,
    ledger::{self, PositionState},
    risk::{Bucket, Candidate, ChainAddress, StrategyKind},
    sim::{self, NextBlock, SimTx},
    state::BlockRef,
    venues::{Pool, QuoteCtx, Side, Venue, min_out},
};

/// A one-way leg to prove: its hops, tokens (in, out), ledger label, expected result, whether it
/// opens exposure (risk-checked) and the strategy it serves.
pub(super) struct LegSpec<'a> {
    pub(super) call: LegCall,
    pub(super) tokens: (Address, Address),
    pub(super) label: &'a str,
    pub(super) expected: I256,
    pub(super) opening: bool,
    pub(super) strategy: StrategyKind,
}

/// A leg proven in revm and approved by the desk's checks, not yet signed.
#[derive(Clone, Debug)]
pub(super) struct PreparedLeg {
    /// Opportunity id.
    pub(super) id: u64,
    pub(super) call: LegCall,
    pub(super) token_out: Address,
    pub(super) cand: Candidate,
    /// Simulated output (the executor's output-token delta).
    pub(super) got: I256,
    /// Simulated gas used.
    pub(super) gas_used: u64,
    /// Expected gas cost, USD.
    pub(super) gas_usd: f64,
    pub(super) max_fee_per_gas: u128,
    pub(super) max_priority_fee_per_gas: u128,
    pub(super) label: String,
}

/// What a prepared executor call does.
#[derive(Clone, Debug)]
pub(super) enum LegCall {
    /// `executeLeg(hops, deadline)`.
    Hops(Vec<Executor::Hop>),
    /// `bridgeOut(bridge, token, amount, dstChainId)`.
    Bridge {
        /// The bridge.
        bridge: Address,
        /// The token.
        token: Address,
        /// Gross amount.
        amount: U256,
        /// Destination chain.
        dst_chain_id: u64,
    },
}

impl LegCall {
    /// The calldata, with `deadline` for a leg.
    pub(super) fn input(&self, deadline: u64) -> alloy::primitives::Bytes {
        use alloy::sol_types::SolCall;
        match self {
            Self::Hops(hops) => alloy::primitives::Bytes::from(
                Executor::executeLegCall {
                    hops: hops.clone(),
                    deadlineBlock: U256::from(deadline),
                }
                .abi_encode(),
            ),
            Self::Bridge { bridge, token, amount, dst_chain_id } => alloy::primitives::Bytes::from(
                Executor::bridgeOutCall {
                    bridge: *bridge,
                    token: *token,
                    amount: *amount,
                    dstChainId: U256::from(*dst_chain_id),
                }
                .abi_encode(),
            ),
        }
    }
}

/// Where a held position is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PositionStage {
    /// The opening leg was sent (opportunity id).
    Opening(u64),
    /// Held.
    Open,
    /// The exit leg was sent (opportunity id).
    Closing(u64),
}

/// One held position.
#[derive(Clone, Debug)]
pub(super) struct HeldPosition {
    id: String,
    pool: usize,
    vault: usize,
    /// The token held (the compliant stable).
    token: Address,
    /// The peg token paid (the official stable).
    peg: Address,
    /// Peg tokens spent opening it.
    cost: U256,
    /// Tokens held.
    amount: U256,
    stage: PositionStage,
    opened_at_ms: u64,
}

impl Engine {
    /// Exits held positions whose vault reopened, then opens positions on pools where a compliant
    /// stable trades below peg while its vault is closed. Called once per head.
    pub(super) fn manage_positions(&mut self, head: &BlockRef, next: &NextBlock) {
        if !self.p.strategies.depeg.enabled || self.gate.is_halted() {
            return;
        }
        // Exits.
        for k in 0..self.positions.len() {
            let pos = self.positions[k].clone();
            if pos.stage != PositionStage::Open {
                continue;
            }
            let Pool::Vault(v) = &self.market.pools[pos.vault] else { continue };
            if v.check_open().is_err() {
                continue;
            }
            let Ok(q) = v.redeem(pos.amount) else { continue };
            let venue = self.market.venues[pos.vault].address;
            let hop = v.hop(
                venue,
                Side::SellBase,
                pos.amount,
                min_out(q.amount_out, self.p.risk.max_slippage_bps),
            );
            let label =
                format!("exit {}: redeem at {}", pos.id, self.market.venues[pos.vault].name);
            let pnl = I256::from_raw(q.amount_out).saturating_sub(I256::from_raw(pos.cost));
            if let Some(opp) =
                self.send_leg(head, next, vec![hop], (pos.token, pos.peg), &label, pnl, false)
            {
                self.positions[k].stage = PositionStage::Closing(opp);
            }
        }
        // Opens.
        let ctx = QuoteCtx { timestamp: next.timestamp };
        for vi in 0..self.market.pools.len() {
            let Pool::Vault(v) = &self.market.pools[vi] else { continue };
            if v.check_open().is_ok() {
                continue;
            }
            let (token, peg) = (v.compliant, v.official);
            for pi in 0..self.market.pools.len() {
                if self.positions.iter().any(|p| p.pool == pi) {
                    continue;
                }
                let pool = &self.market.pools[pi];
                if !matches!(pool, Pool::Pmm(_) | Pool::V2(_)) {
                    continue;
                }
                let (b, q) = pool.tokens();
                let side = match (b == peg && q == token, b == token && q == peg) {
                    (true, _) => Side::SellBase,
                    (_, true) => Side::SellQuote,
                    _ => continue,
                };
                let Some(dev) = self.peg_deviation_bps(pi) else { continue };
                // The compliant token's price in peg tokens, below parity by more than the minor band?
                let cheap_bps = if b == token { -dev } else { dev };
                if cheap_bps < f64::from(self.p.strategies.depeg.severity.minor_bps) {
                    continue;
                }
                let Some(meta) = self.market.token(&peg).cloned() else { continue };
                let book = self.book(next);
                let probe = self.leg_candidate(&[pi], token, 0.0, 0.0, U256::ZERO, 0);
                let cap = self.gate.notional_cap(&probe, &book).max_notional_usd;
                let amount = meta.raw_for_usd(cap).min(self.inventory(peg));
                if amount.is_zero() {
                    continue;
                }
                let Ok(quote) = pool.quote(side, amount, &ctx) else { continue };
                // Value at the planned exit (1:1 at the vault, less its fee).
                let exit_value =
                    v.redeem(quote.amount_out).map(|r| r.amount_out).unwrap_or(quote.amount_out);
                let expected = I256::from_raw(exit_value).saturating_sub(I256::from_raw(amount));
                if expected <= I256::ZERO {
                    continue;
                }
                let venue = self.market.venues[pi].address;
                let hop = match pool {
                    Pool::Pmm(p) => p.hop(
                        venue,
                        side,
                        amount,
                        min_out(quote.amount_out, self.p.risk.max_slippage_bps),
                    ),
                    Pool::V2(p) => p.hop(
                        venue,
                        side,
                        amount,
                        min_out(quote.amount_out, self.p.risk.max_slippage_bps),
                    ),
                    _ => continue,
                };
                let label = format!(
                    "hold: buy {} on {} while {} is closed",
                    self.market
                        .token(&token)
                        .map_or_else(|| token.to_string(), |t| t.symbol.clone()),
                    self.market.venues[pi].name,
                    self.market.venues[vi].name
                );
                if let Some(opp) =
                    self.send_leg(head, next, vec![hop], (peg, token), &label, expected, true)
                {
                    let id = format!(
                        "{}-{}-{}",
                        self.p.chain.chain_id,
                        self.market.venues[pi].name,
                        head.number + 1
                    );
                    self.positions.push(HeldPosition {
                        id,
                        pool: pi,
                        vault: vi,
                        token,
                        peg,
                        cost: amount,
                        amount: quote.amount_out,
                        stage: PositionStage::Opening(opp),
                        opened_at_ms: ledger::now_unix_ms(),
                    });
                }
                break;
            }
        }
    }

    fn leg_candidate(
        &self,
        pools: &[usize],
        token: Address,
        notional_usd: f64,
        profit_usd: f64,
        profit_raw: U256,
        gas_price: u128,
    ) -> Candidate {
        let chain = self.p.chain.chain_id;
        let addrs: SmallVec<[ChainAddress; 4]> = pools
            .iter()
            .map(|p| ChainAddress::new(chain, self.market.venues[*p].address))
            .collect();
        Candidate {
            route: crate::risk::RouteKey::from_pools(&addrs),
            strategy: StrategyKind::Depeg,
            bucket: Bucket::A,
            pools: addrs,
            notional_usd,
            slippage_bps: self.p.risk.max_slippage_bps,
            profit_token: ChainAddress::new(chain, token),
            profit_raw,
            profit_usd,
            gas_price_wei: gas_price,
            exposure_change_usd: SmallVec::new(),
        }
    }

    /// Proves, risk-checks, signs and hands over one leg; the opportunity id when sent.
    #[allow(clippy::too_many_arguments)]
    fn send_leg(
        &mut self,
        head: &BlockRef,
        next: &NextBlock,
        hops: Vec<Executor::Hop>,
        tokens: (Address, Address),
        label: &str,
        expected: I256,
        opening: bool,
    ) -> Option<u64> {
        let leg = LegSpec {
            call: LegCall::Hops(hops),
            tokens,
            label,
            expected,
            opening,
            strategy: StrategyKind::Depeg,
        };
        let prepared = self.prove_leg(head, next, leg)?;
        if !self.p.mode.signs() {
            self.decide(prepared.id, Ok(()));
            return None;
        }
        // A leg moves inventory; its realised PnL is booked when the position closes.
        self.sign_and_send_leg(prepared, next.number, 0.0, 0.0)
    }

    /// Proves a one-way leg in revm on the head state and runs the desk's checks; records the
    /// opportunity, simulation and any refusal. `None` when refused (the reason is recorded).
    pub(super) fn prove_leg(
        &mut self,
        head: &BlockRef,
        next: &NextBlock,
        leg: LegSpec<'_>,
    ) -> Option<PreparedLeg> {
        let LegSpec { call, tokens: (token_in, token_out), label, expected, opening, strategy } =
            leg;
        let chain_id = self.p.chain.chain_id;
        let fee = self.fees.quote_for_base_fee(u128::from(next.base_fee), None).ok()?;
        let id = self.next_id;
        self.next_id += 1;
        let meta_in = self.market.token(&token_in).cloned()?;
        let meta_out = self.market.token(&token_out).cloned()?;
        let (amount_in, pools): (U256, Vec<usize>) = match &call {
            LegCall::Hops(hops) => (
                hops.first().map_or(U256::ZERO, |h| h.amountIn),
                hops.iter().filter_map(|h| self.market.venue_index(&h.venue)).collect(),
            ),
            LegCall::Bridge { amount, .. } => (*amount, Vec::new()),
        };
        if let Some(l) = &self.p.ledger {
            l.record(ledger::Opportunity {
                id,
                chain_id,
                block: head.number + 1,
                strategy: strategy.as_str().to_owned(),
                route: label.to_owned(),
                token: token_out,
                size: amount_in,
                expected_profit: expected,
                expected_profit_usd: Some(meta_in.usd(expected.unsigned_abs())),
                detected_at_ms: ledger::now_unix_ms(),
            });
        }
        let nonce = self.nonce.peek_next();
        let probe = alloy::consensus::TxEip1559 {
            chain_id,
            nonce,
            gas_limit: 1_500_000,
            max_fee_per_gas: fee.max_fee_per_gas,
            max_priority_fee_per_gas: fee.max_priority_fee_per_gas,
            to: alloy::primitives::TxKind::Call(self.p.executor),
            value: U256::ZERO,
            access_list: Default::default(),
            input: call.input(next.number),
        };
        let env = sim::tx_env(&probe, self.p.operator).ok()?;
        let sim_tx = SimTx {
            tx: env,
            tokens: vec![token_in, token_out],
            holders: vec![self.p.executor],
            watch_calls_to: self.p.executor,
        };
        let outcome = {
            let mut bs = self.sim.block(&self.cache, head.hash, next).ok()?;
            bs.simulate(&sim_tx)
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(sim::SimError::Cold(keys)) => {
                // Read off the hot path; the leg is tried again when the state lands.
                self.stats.cold_skips.fetch_add(1, Ordering::Relaxed);
                self.watch(keys);
                self.decide(
                    id,
                    Err(("cold_state".into(), "state not cached yet; fetched now".into())),
                );
                return None;
            }
            Err(e) => {
                self.decide(id, Err(("simulation".into(), e.to_string())));
                return None;
            }
        };
        let got = outcome.delta(self.p.executor, token_out).unwrap_or_default();
        self.record_simulation(id, next.number, &outcome, got, meta_out.usd(got.unsigned_abs()));
        // A swap leg must deliver output; a bridge transfer must move exactly its amount out.
        let moved = match &call {
            LegCall::Hops(_) => got > I256::ZERO,
            LegCall::Bridge { amount, .. } => got == -I256::from_raw(*amount),
        };
        if !outcome.success() || !outcome.callers.is_empty() || !moved {
            self.decide(
                id,
                Err((
                    "containment:leg".into(),
                    format!("{:?}, {} caller(s), out {got}", outcome.status, outcome.callers.len()),
                )),
            );
            return None;
        }
        let gas_usd = market::u256_f64(
            U256::from(outcome.gas_used) * U256::from(fee.expected_gas_price_wei()),
        ) / 1e18
            * self.p.chain.fees.native_usd;
        let expected_usd =
            meta_in.usd(expected.unsigned_abs()) * if expected < I256::ZERO { -1.0 } else { 1.0 };
        let notional = meta_in.usd(amount_in);
        let mut cand = self.leg_candidate(
            &pools,
            token_out,
            notional,
            expected_usd - gas_usd,
            expected.max(I256::ZERO).into_raw(),
            fee.max_fee_per_gas,
        );
        cand.strategy = strategy;
        let exposure = if opening { notional } else { -notional };
        cand.exposure_change_usd.push((
            ChainAddress::new(chain_id, if opening { token_out } else { token_in }),
            exposure,
        ));
        if opening && let Err(r) = self.gate.check(&cand, &self.book(next)) {
            self.refuse(id, &r);
            return None;
        }
        Some(PreparedLeg {
            id,
            call,
            token_out,
            cand,
            got,
            gas_used: outcome.gas_used,
            gas_usd,
            max_fee_per_gas: fee.max_fee_per_gas,
            max_priority_fee_per_gas: fee.max_priority_fee_per_gas,
            label: label.to_owned(),
        })
    }

    /// Signs a proven leg with the next nonce and hands it to the exec task; the opportunity id
    /// when handed over. `profit_usd_per_raw` values the output token and `cost_usd` the input
    /// for the realised PnL (both 0 for a position leg, booked when the position closes).
    pub(super) fn sign_and_send_leg(
        &mut self,
        leg: PreparedLeg,
        next_number: u64,
        profit_usd_per_raw: f64,
        cost_usd: f64,
    ) -> Option<u64> {
        let chain_id = self.p.chain.chain_id;
        let id = leg.id;
        let signer = self.p.signer.as_ref()?;
        let nonce = self.nonce.next().ok()?;
        let gas_limit = self.margin.gas_limit(leg.gas_used);
        let params = crate::exec::TxParams {
            chain_id,
            nonce,
            to: self.p.executor,
            input: leg.call.input(next_number + 2),
            gas_limit,
            max_fee_per_gas: leg.max_fee_per_gas,
            max_priority_fee_per_gas: leg.max_priority_fee_per_gas,
            value: U256::ZERO,
        };
        let Ok(signed) = signer.sign_eip1559(&params) else {
            self.nonce.release(nonce);
            return None;
        };
        self.decide(id, Ok(()));
        self.gate.record_submission(&leg.cand, next_number);
        info!(opp = id, label = %leg.label, "leg approved");
        let Some(exec) = &self.exec else {
            self.nonce.release(nonce);
            return None;
        };
        if !self.p.mode.sends() {
            self.nonce.release(nonce);
            return None;
        }
        let job = ExecJob {
            opportunity: id,
            submission: id,
            chain_id,
            leading: Vec::new(),
            txs: vec![signed],
            target_block: next_number,
            parent_hash: self.cache.head().map_or(alloy::primitives::B256::ZERO, |h| h.hash),
            profit_token: leg.token_out,
            executor: self.p.executor,
            simulated_profit: leg.got,
            simulated_gas: leg.gas_used,
            route: leg.cand.route,
            strategy: leg.cand.strategy,
            profit_usd_per_raw,
            native_usd: self.p.chain.fees.native_usd,
            bundle: false,
            cost_usd,
        };
        if exec.send(job).is_ok() {
            self.outstanding += 1;
            self.stats.submitted.fetch_add(1, Ordering::Relaxed);
            self.stats.approved.fetch_add(1, Ordering::Relaxed);
            Some(id)
        } else {
            None
        }
    }

    /// A leg's outcome moves its position along; `landed` whether it was mined successfully.
    pub(super) fn on_leg_outcome(&mut self, opportunity: u64, landed: bool) {
        let Some(k) = self.positions.iter().position(|p| {
            matches!(p.stage, PositionStage::Opening(o) | PositionStage::Closing(o) if o == opportunity)
        }) else {
            return;
        };
        let pos = self.positions[k].clone();
        let (state, notes) = match (pos.stage, landed) {
            (PositionStage::Opening(_), true) => {
                self.positions[k].stage = PositionStage::Open;
                (PositionState::Open, "exit plan: redeem 1:1 at the vault when it reopens")
            }
            (PositionStage::Opening(_), false) => {
                self.positions.remove(k);
                return;
            }
            (PositionStage::Closing(_), true) => {
                self.positions.remove(k);
                (PositionState::Closed, "closed: redeemed at the vault")
            }
            (PositionStage::Closing(_), false) => {
                self.positions[k].stage = PositionStage::Open;
                return;
            }
            (PositionStage::Open, _) => return,
        };
        if let Some(l) = &self.p.ledger {
            let usd = self.market.token(&pos.token).map(|t| t.usd(pos.amount));
            l.record(ledger::Position {
                id: pos.id.clone(),
                chain_id: self.p.chain.chain_id,
                token: pos.token,
                amount: pos.amount,
                amount_usd: usd,
                state,
                opened_at_ms: pos.opened_at_ms,
                closed_at_ms: (state == PositionState::Closed).then(ledger::now_unix_ms),
                notes: Some(format!("{notes}; cost {} of {}", pos.cost, pos.peg)),
            });
        }
        info!(position = %pos.id, ?state, "position");
    }
}
