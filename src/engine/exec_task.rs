//! The exec task (tokio): submits what the engine signed, tracks inclusion, books realised PnL
//! and reports each outcome back to the engine. Submissions are never retried blindly.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::primitives::{Address, Bytes, I256};
use crossbeam_channel::Sender;
use tracing::{info, warn};

use super::{Input, market::u256_f64};
use crate::{
    exec::{
        InclusionOutcome, InclusionTracker, ProfitProbe, RawTxOutcome, SignedTx, SubmitReport,
        SubmitRequest, Submitter, Tracked,
    },
    ledger::{self, InclusionStatus, LedgerHandle, SubmissionKind, SubmissionOutcome},
    risk::{RouteKey, StrategyKind},
};

/// One approved, signed opportunity to submit.
#[derive(Clone, Debug)]
pub struct ExecJob {
    /// The opportunity id.
    pub opportunity: u64,
    /// The submission id (ledger).
    pub submission: u64,
    /// Chain.
    pub chain_id: u64,
    /// Others' transactions that must come first (a backrun's victim; bundles only).
    pub leading: Vec<Bytes>,
    /// Our signed transactions.
    pub txs: Vec<SignedTx>,
    /// The block aimed at.
    pub target_block: u64,
    /// The profit token.
    pub profit_token: Address,
    /// The executor (whose profit-token balance measures the realised PnL).
    pub executor: Address,
    /// Simulated profit (raw profit token, before gas).
    pub simulated_profit: I256,
    /// Simulated gas used.
    pub simulated_gas: u64,
    /// Route key (risk book).
    pub route: RouteKey,
    /// Strategy.
    pub strategy: StrategyKind,
    /// USD per raw unit of the profit token.
    pub profit_usd_per_raw: f64,
    /// USD per whole gas token.
    pub native_usd: f64,
    /// Send as a bundle (relay chains) rather than raw transactions.
    pub bundle: bool,
    /// USD value the submission spends from inventory (a one-way leg's input), subtracted from
    /// its realised PnL; 0 for atomic routes, whose profit is already net.
    pub cost_usd: f64,
}

/// What happened to a submission.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecResult {
    /// Mined and succeeded; realised PnL after gas, USD.
    Included {
        /// USD.
        pnl_usd: f64,
    },
    /// Mined and reverted; gas lost, USD.
    Reverted {
        /// USD.
        gas_usd: f64,
    },
    /// Not mined within the window.
    Missed,
    /// Not delivered to any endpoint; `resync` carries the node's nonce when it said ours was off.
    NotDelivered {
        /// The latest nonce to resync to.
        resync: Option<u64>,
    },
}

/// A submission's outcome, back to the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecReport {
    /// The opportunity.
    pub opportunity: u64,
    /// Route key.
    pub route: RouteKey,
    /// Nonce used.
    pub nonce: u64,
    /// Outcome.
    pub result: ExecResult,
    /// The executor's profit-token balance change at inclusion (raw; zero unless mined).
    pub delta: I256,
    /// Gas paid, USD (zero unless mined).
    pub gas_usd: f64,
}

/// Shared pieces of the exec task.
#[derive(Clone, Debug)]
pub(crate) struct ExecCtx {
    pub(crate) submitter: Arc<Submitter>,
    pub(crate) tracker: Arc<InclusionTracker>,
    pub(crate) ledger: Option<LedgerHandle>,
    pub(crate) back: Sender<Input>,
    pub(crate) inflight: Arc<AtomicU64>,
    pub(crate) sent: Arc<AtomicU64>,
    pub(crate) window: u64,
    pub(crate) poll: Duration,
}

/// Runs until the engine drops its sender.
pub(crate) async fn exec_loop(mut rx: tokio::sync::mpsc::UnboundedReceiver<ExecJob>, ctx: ExecCtx) {
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(job) = rx.recv().await {
        ctx.inflight.fetch_add(1, Ordering::AcqRel);
        let c = ctx.clone();
        tasks.spawn(async move {
            handle(job, &c).await;
            c.inflight.fetch_sub(1, Ordering::AcqRel);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn handle(job: ExecJob, c: &ExecCtx) {
    let nonce = job.txs.first().map_or(0, |t| t.nonce);
    let leading = if job.bundle { job.leading.clone() } else { Vec::new() };
    let req = SubmitRequest {
        target_block: job.target_block,
        leading,
        txs: job.txs.clone(),
        replacement_uuid: None,
    };
    let report = c.submitter.submit(&req).await;
    c.sent.fetch_add(1, Ordering::AcqRel);
    let at_ms = ledger::now_unix_ms();
    let hashes: Vec<_> = job.txs.iter().map(|t| t.hash).collect();
    let max_fee = job.txs.first().map_or(0, |t| t.max_fee_per_gas);
    let mut sub = ledger::Submission {
        id: job.submission,
        opportunity_id: job.opportunity,
        chain_id: job.chain_id,
        kind: if job.bundle { SubmissionKind::Bundle } else { SubmissionKind::Raw },
        tx_hashes: hashes,
        relay: None,
        target_block: job.target_block,
        nonce,
        max_fee_per_gas: max_fee,
        outcome: SubmissionOutcome::Failed,
        detail: None,
        at_ms,
    };
    let mut resync = None;
    let delivered = match &report {
        SubmitReport::RawTx(results) => {
            let first = results.first();
            match first.map(|r| &r.outcome) {
                Some(RawTxOutcome::Accepted { .. }) => {
                    sub.outcome = SubmissionOutcome::Accepted;
                    true
                }
                Some(RawTxOutcome::Rejected(e)) => {
                    sub.outcome = SubmissionOutcome::Rejected;
                    sub.detail = Some(e.message.clone());
                    if e.kind.requires_resync() {
                        resync = latest_nonce(c, &job).await;
                    }
                    e.kind.is_delivered()
                }
                Some(RawTxOutcome::Unknown { detail, .. }) => {
                    // May have reached the node: keep the nonce and let tracking decide.
                    sub.detail = Some(detail.clone());
                    true
                }
                Some(RawTxOutcome::Skipped) | None => false,
            }
        }
        SubmitReport::Bundle(b) => {
            sub.relay = b.results.iter().find(|r| r.outcome.is_accepted()).map(|r| r.relay.clone());
            sub.detail = Some(format!(
                "bundle {} to {} relay(s), {} accepted",
                b.bundle_hash,
                b.results.len(),
                b.accepted()
            ));
            if b.accepted() > 0 {
                sub.outcome = SubmissionOutcome::Accepted;
                true
            } else {
                sub.outcome = SubmissionOutcome::Rejected;
                false
            }
        }
        SubmitReport::Refused { reason } => {
            sub.outcome = SubmissionOutcome::Rejected;
            sub.detail = Some((*reason).to_owned());
            false
        }
    };
    if let Some(l) = &c.ledger {
        l.record(sub);
    }
    if !delivered {
        let _ = c.back.send(Input::Exec(ExecReport {
            opportunity: job.opportunity,
            route: job.route,
            nonce,
            result: ExecResult::NotDelivered { resync },
            delta: I256::ZERO,
            gas_usd: 0.0,
        }));
        return;
    }
    let tracked = Tracked::new(&job.txs, job.target_block, c.window)
        .with_profit(ProfitProbe { token: job.profit_token, holder: job.executor });
    let outcome = match c.tracker.wait(&tracked, c.poll).await {
        Ok(o) => o,
        Err(e) => {
            warn!(opp = job.opportunity, error = %e, "inclusion tracking failed; counted as missed");
            InclusionOutcome::Missed { reason: crate::exec::MissReason::NotIncluded }
        }
    };
    let paid_usd = match &outcome {
        InclusionOutcome::Included(l) | InclusionOutcome::Reverted(l) => {
            u256_f64(l.gas_cost_wei) / 1e18 * job.native_usd
        }
        InclusionOutcome::Missed { .. } => 0.0,
    };
    let (status, block, gas_used, pnl, pnl_usd, reason, result) = match &outcome {
        InclusionOutcome::Included(l) | InclusionOutcome::Reverted(l) => {
            let gas_usd = paid_usd;
            let delta = l.pnl.as_ref().map_or(I256::ZERO, |p| p.token_delta());
            let token_usd = signed(delta) * job.profit_usd_per_raw;
            let pnl_usd = token_usd - gas_usd - job.cost_usd;
            if matches!(outcome, InclusionOutcome::Included(_)) {
                (
                    InclusionStatus::Included,
                    l.block,
                    l.gas_used,
                    delta,
                    pnl_usd,
                    None,
                    ExecResult::Included { pnl_usd },
                )
            } else {
                (
                    InclusionStatus::Reverted,
                    l.block,
                    l.gas_used,
                    delta,
                    -gas_usd,
                    Some("reverted".to_owned()),
                    ExecResult::Reverted { gas_usd },
                )
            }
        }
        InclusionOutcome::Missed { reason } => (
            InclusionStatus::Missed,
            job.target_block,
            0,
            I256::ZERO,
            0.0,
            Some(format!("{reason:?}")),
            ExecResult::Missed,
        ),
    };
    info!(opp = job.opportunity, ?status, block, gas_used, realised = %pnl, pnl_usd, "inclusion");
    if let Some(l) = &c.ledger {
        l.record(ledger::Inclusion {
            submission_id: job.submission,
            block,
            status,
            reason,
            gas_used,
            pnl_token: job.profit_token,
            realised_pnl: pnl,
            realised_pnl_usd: Some(pnl_usd),
            at_ms: ledger::now_unix_ms(),
        });
    }
    let _ = c.back.send(Input::Exec(ExecReport {
        opportunity: job.opportunity,
        route: job.route,
        nonce,
        result,
        delta: pnl,
        gas_usd: paid_usd,
    }));
}

fn signed(v: I256) -> f64 {
    let f = u256_f64(v.unsigned_abs());
    if v < I256::ZERO { -f } else { f }
}

async fn latest_nonce(c: &ExecCtx, job: &ExecJob) -> Option<u64> {
    let from = job.txs.first()?.from;
    c.tracker.nonce_at_latest(from).await.ok()
}
