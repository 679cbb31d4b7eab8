//! The exec task (tokio): submits what the engine signed, tracks inclusion, books realised PnL
//! and reports each outcome back to the engine. Submissions are never retried blindly.
//!
//! Reorgs and shutdown:
//! - a bundle whose parent block (the head it was built on) is replaced before its target block
//!   is mined is cancelled on every relay by its replacement uuid (ledger: submission
//!   `cancelled`), then tracked to its outcome in case a relay included it anyway;
//! - a landed submission is watched for [`ExecSettings::confirmations`] blocks: when a reorg
//!   replaces its block it is *orphaned* (ledger: an inclusion row `orphaned` reversing the
//!   realised PnL booked), the engine gets [`ExecResult::Orphaned`] with the node's `latest`
//!   nonce to resync to, and the submission is tracked again (its transactions may be mined on
//!   the new branch); nothing is ever sent twice;
//! - at shutdown ([`ExecHandle::shutdown`]) no queued job is sent any more, bundles still waiting
//!   for their block are cancelled, raw transactions are tracked until the deadline, and landed
//!   ones stop being watched.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::primitives::{Address, B256, Bytes, I256};
use crossbeam_channel::Sender;
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use super::{Input, market::u256_f64};
use crate::{
    exec::{
        InclusionOutcome, InclusionTracker, Landed, MissReason, ProfitProbe, RawTxOutcome,
        SignedTx, SubmitReport, SubmitRequest, Submitter, Tracked,
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
    /// The head the submission was built on (block `target_block − 1`); `B256::ZERO` when
    /// unknown. A bundle whose parent is replaced by a reorg before it lands is cancelled.
    pub parent_hash: B256,
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
    /// An earlier `Included` or `Reverted` was reorged out: reverse the PnL booked for it, resync
    /// nonces, and count the submission as open again (a later report decides it).
    Orphaned {
        /// The PnL booked by the earlier report (`pnl_usd`, or `−gas_usd`), USD, to reverse.
        pnl_usd: f64,
        /// The node's `latest` nonce of the sender after the reorg, when it answered.
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

/// Settings of the exec task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecSettings {
    /// Blocks after the target a submission may still land in.
    pub window: u64,
    /// How often the node is polled while tracking.
    pub poll: Duration,
    /// Blocks a landed submission is watched for a reorg before it counts as final.
    pub confirmations: u64,
}

impl Default for ExecSettings {
    fn default() -> Self {
        Self { window: 3, poll: Duration::from_millis(25), confirmations: 3 }
    }
}

/// Outcome counters of the exec task (metrics and tests read them).
#[derive(Debug, Default)]
pub struct ExecCounters {
    /// Landed submissions whose block was reorged out.
    pub orphaned: AtomicU64,
    /// Bundles cancelled on the relays (parent replaced by a reorg, or shutdown).
    pub cancelled: AtomicU64,
    /// Jobs dropped unsent because shutdown began.
    pub dropped_at_shutdown: AtomicU64,
    /// Final outcomes per destination: (relay or RPC endpoint name, outcome) → count, where the
    /// outcome is `included`, `reverted` or `missed`. A bundle counts for every relay that
    /// accepted it.
    outcomes: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
}

impl ExecCounters {
    /// A snapshot of the final outcomes per destination: `(destination, outcome, count)`.
    pub fn outcomes(&self) -> Vec<(String, &'static str, u64)> {
        self.outcomes
            .lock()
            .map(|m| m.iter().map(|((d, o), n)| (d.clone(), *o, *n)).collect())
            .unwrap_or_default()
    }

    pub(crate) fn count(&self, destinations: &[String], outcome: &'static str) {
        if let Ok(mut m) = self.outcomes.lock() {
            for d in destinations {
                *m.entry((d.clone(), outcome)).or_default() += 1;
            }
        }
    }
}

/// Shared pieces of the exec task.
#[derive(Clone, Debug)]
struct ExecCtx {
    submitter: Arc<Submitter>,
    tracker: Arc<InclusionTracker>,
    ledger: Option<LedgerHandle>,
    back: Sender<Input>,
    inflight: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    counters: Arc<ExecCounters>,
    settings: ExecSettings,
    shutdown: watch::Receiver<bool>,
}

/// A running exec task: its counters and its shutdown.
#[derive(Debug)]
pub struct ExecHandle {
    /// Submissions handed over whose outcome is not reported yet.
    pub inflight: Arc<AtomicU64>,
    /// Submissions handed to an endpoint (answered or failed).
    pub sent: Arc<AtomicU64>,
    /// Outcome counters.
    pub counters: Arc<ExecCounters>,
    shutdown: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
}

impl ExecHandle {
    /// Begins shutdown without waiting: queued jobs are no longer sent, bundles waiting for their
    /// block are cancelled, landed submissions stop being watched.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// [`begin_shutdown`](Self::begin_shutdown), then waits up to `deadline` for every job to
    /// finish (raw transactions are tracked to their outcome meanwhile). True when all finished.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.begin_shutdown();
        let abort = self.join.abort_handle();
        let done = tokio::time::timeout(deadline, self.join).await.is_ok();
        if !done {
            abort.abort();
        }
        done
    }
}

/// Spawns the exec task on the current tokio runtime: jobs sent on the returned sender are
/// submitted through `submitter`, tracked with `tracker`, booked in `ledger`, and each outcome is
/// sent back on `back` as [`Input::Exec`]. It ends when the sender is dropped (after its jobs
/// finish) or at [`ExecHandle::shutdown`].
pub fn spawn_exec(
    submitter: Submitter,
    tracker: InclusionTracker,
    ledger: Option<LedgerHandle>,
    back: Sender<Input>,
    settings: ExecSettings,
) -> (tokio::sync::mpsc::UnboundedSender<ExecJob>, ExecHandle) {
    let (jobs, rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = ExecCtx {
        submitter: Arc::new(submitter),
        tracker: Arc::new(tracker),
        ledger,
        back,
        inflight: Arc::new(AtomicU64::new(0)),
        sent: Arc::new(AtomicU64::new(0)),
        counters: Arc::new(ExecCounters::default()),
        settings,
        shutdown: stop_rx,
    };
    let handle = ExecHandle {
        inflight: ctx.inflight.clone(),
        sent: ctx.sent.clone(),
        counters: ctx.counters.clone(),
        shutdown: stop_tx,
        join: tokio::spawn(exec_loop(rx, ctx)),
    };
    (jobs, handle)
}

/// Resolves once shutdown began (or the handle is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn is_stopping(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow() || rx.has_changed().is_err()
}

/// Runs until the engine drops its sender, or shutdown.
async fn exec_loop(mut rx: tokio::sync::mpsc::UnboundedReceiver<ExecJob>, ctx: ExecCtx) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut stop = ctx.shutdown.clone();
    loop {
        let job = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            job = rx.recv() => job,
        };
        let Some(job) = job else { break };
        ctx.inflight.fetch_add(1, Ordering::AcqRel);
        let c = ctx.clone();
        tasks.spawn(async move { handle(job, &c).await });
        while tasks.try_join_next().is_some() {}
    }
    // Jobs still queued were decided before shutdown but are not sent any more.
    rx.close();
    while let Some(job) = rx.recv().await {
        ctx.inflight.fetch_add(1, Ordering::AcqRel);
        ctx.counters.dropped_at_shutdown.fetch_add(1, Ordering::Relaxed);
        let nonce = job.txs.first().map_or(0, |t| t.nonce);
        report(&ctx, &job, nonce, ExecResult::NotDelivered { resync: None });
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends `result` to the engine; every result but `Orphaned` closes the job, `Orphaned` opens it
/// again.
fn report(c: &ExecCtx, job: &ExecJob, nonce: u64, result: ExecResult) {
    report_mined(c, job, nonce, result, I256::ZERO, 0.0);
}

/// As [`report`], with the profit-token balance change and the gas paid of a mined submission.
fn report_mined(
    c: &ExecCtx,
    job: &ExecJob,
    nonce: u64,
    result: ExecResult,
    delta: I256,
    gas_usd: f64,
) {
    if matches!(result, ExecResult::Orphaned { .. }) {
        c.inflight.fetch_add(1, Ordering::AcqRel);
    } else {
        c.inflight.fetch_sub(1, Ordering::AcqRel);
    }
    let _ = c.back.send(Input::Exec(ExecReport {
        opportunity: job.opportunity,
        route: job.route,
        nonce,
        result,
        delta,
        gas_usd,
    }));
}

/// How tracking ended.
enum Tracking {
    Decided(Box<InclusionOutcome>),
    /// The bundle's parent block was replaced before the target block was mined.
    ParentReplaced,
    /// Shutdown began while a bundle waited for its block.
    Shutdown,
}

/// Consecutive failed reads after which a tracked submission counts as missed.
const MAX_READ_FAILURES: u32 = 40;

async fn handle(job: ExecJob, c: &ExecCtx) {
    let nonce = job.txs.first().map_or(0, |t| t.nonce);
    if is_stopping(&c.shutdown) {
        c.counters.dropped_at_shutdown.fetch_add(1, Ordering::Relaxed);
        report(c, &job, nonce, ExecResult::NotDelivered { resync: None });
        return;
    }
    let leading = if job.bundle { job.leading.clone() } else { Vec::new() };
    let req = SubmitRequest {
        target_block: job.target_block,
        leading,
        txs: job.txs.clone(),
        replacement_uuid: None,
    };
    let report_ = c.submitter.submit(&req).await;
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
    let mut uuid: Option<Uuid> = None;
    let mut destinations: Vec<String> = Vec::new();
    let delivered = match &report_ {
        SubmitReport::RawTx(results) => {
            let first = results.first();
            destinations.extend(first.map(|r| r.endpoint.clone()));
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
            uuid = Some(b.replacement_uuid);
            destinations.extend(
                b.results.iter().filter(|r| r.outcome.is_accepted()).map(|r| r.relay.clone()),
            );
            sub.relay = destinations.first().cloned();
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
        l.record(sub.clone());
    }
    if !delivered {
        report(c, &job, nonce, ExecResult::NotDelivered { resync });
        return;
    }
    let mut tracked = Tracked::new(&job.txs, job.target_block, c.settings.window)
        .with_profit(ProfitProbe { token: job.profit_token, holder: job.executor });
    let mut stop = c.shutdown.clone();
    let mut cancellable = uuid;
    let mut cancel_reason = None;
    loop {
        let outcome = match track(&job, &tracked, cancellable.is_some(), c, &mut stop).await {
            Tracking::Decided(o) => *o,
            Tracking::ParentReplaced => {
                // The state the bundle was built on is gone: cancel it, then see where it ends
                // (a relay may have included it anyway).
                let why =
                    format!("block {} replaced by a reorg", job.target_block.saturating_sub(1));
                cancel(c, cancellable.take(), &sub, &why).await;
                cancel_reason = Some(why);
                continue;
            }
            Tracking::Shutdown => {
                cancel(c, cancellable.take(), &sub, "shutdown").await;
                report(c, &job, nonce, ExecResult::NotDelivered { resync: None });
                return;
            }
        };
        let (booked_usd, landed) = book(&job, &outcome, c, &destinations, cancel_reason.as_deref());
        let Some(landed) = landed else { return };
        if !orphaned(&landed, c, &mut stop).await {
            return;
        }
        // Reorged out: reverse what was booked, resync, and track again (never re-sent).
        c.counters.orphaned.fetch_add(1, Ordering::Relaxed);
        let delta = landed.pnl.as_ref().map_or(I256::ZERO, |p| p.token_delta());
        warn!(opp = job.opportunity, block = landed.block, "inclusion orphaned by a reorg");
        if let Some(l) = &c.ledger {
            l.record(ledger::Inclusion {
                submission_id: job.submission,
                block: landed.block,
                status: InclusionStatus::Orphaned,
                reason: Some(format!("block {} reorged out", landed.block)),
                gas_used: landed.gas_used,
                pnl_token: job.profit_token,
                realised_pnl: delta.saturating_neg(),
                realised_pnl_usd: Some(-booked_usd),
                at_ms: ledger::now_unix_ms(),
            });
        }
        let resync = latest_nonce(c, &job).await;
        report(c, &job, nonce, ExecResult::Orphaned { pnl_usd: booked_usd, resync });
        let head = c.tracker.head().await.unwrap_or(landed.block);
        tracked.target_block = head.saturating_add(1);
        cancellable = None;
    }
}

/// Polls until `tracked` is decided, its parent is replaced (bundles), or shutdown (bundles).
async fn track(
    job: &ExecJob,
    tracked: &Tracked,
    cancellable: bool,
    c: &ExecCtx,
    stop: &mut watch::Receiver<bool>,
) -> Tracking {
    let mut failures = 0u32;
    loop {
        if cancellable && is_stopping(stop) {
            return Tracking::Shutdown;
        }
        let decided = async {
            let head = c.tracker.head().await?;
            if cancellable
                && head < tracked.target_block
                && job.parent_hash != B256::ZERO
                && let Some(parent) = c.tracker.block_hash(tracked.target_block - 1).await?
                && parent != job.parent_hash
            {
                return Ok(Some(Tracking::ParentReplaced));
            }
            Ok::<_, crate::exec::TrackError>(
                c.tracker.check(tracked, head).await?.map(|o| Tracking::Decided(Box::new(o))),
            )
        }
        .await;
        match decided {
            Ok(Some(t)) => return t,
            Ok(None) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures >= MAX_READ_FAILURES {
                    warn!(opp = job.opportunity, error = %e, "inclusion tracking failed; counted as missed");
                    return Tracking::Decided(Box::new(InclusionOutcome::Missed {
                        reason: MissReason::NotIncluded,
                    }));
                }
            }
        }
        if cancellable {
            tokio::select! {
                () = tokio::time::sleep(c.settings.poll) => {}
                () = stopped(stop) => {}
            }
        } else {
            tokio::time::sleep(c.settings.poll).await;
        }
    }
}

/// Cancels the bundle `uuid` (if any) on every relay and records the submission as cancelled.
async fn cancel(c: &ExecCtx, uuid: Option<Uuid>, sub: &ledger::Submission, why: &str) {
    let Some(uuid) = uuid else { return };
    let results = c.submitter.cancel(uuid).await;
    let acked = results.iter().filter(|r| r.outcome.is_accepted()).count();
    c.counters.cancelled.fetch_add(1, Ordering::Relaxed);
    info!(opp = sub.opportunity_id, why, acked, relays = results.len(), "bundle cancelled");
    if let Some(l) = &c.ledger {
        let mut cancelled = sub.clone();
        cancelled.outcome = SubmissionOutcome::Cancelled;
        cancelled.detail =
            Some(format!("cancelled ({why}): {acked} of {} relay(s) acknowledged", results.len()));
        l.record(cancelled);
    }
}

/// Watches a landed submission for `confirmations` blocks: true when a reorg orphaned it, false
/// once final (or shutdown, or the node stays unreadable).
async fn orphaned(landed: &Landed, c: &ExecCtx, stop: &mut watch::Receiver<bool>) -> bool {
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = tokio::time::sleep(c.settings.poll) => {}
            () = stopped(stop) => return false,
        }
        let seen = async {
            let head = c.tracker.head().await?;
            let canonical = c.tracker.is_canonical(landed).await?;
            Ok::<_, crate::exec::TrackError>((head, canonical))
        }
        .await;
        match seen {
            Ok((_, false)) => return true,
            Ok((head, true)) => {
                if head >= landed.block.saturating_add(c.settings.confirmations) {
                    return false;
                }
                failures = 0;
            }
            Err(_) => {
                failures += 1;
                if failures >= MAX_READ_FAILURES {
                    return false;
                }
            }
        }
    }
}

/// Books a decided outcome (ledger, counters, report): the PnL booked in USD, and what landed.
fn book(
    job: &ExecJob,
    outcome: &InclusionOutcome,
    c: &ExecCtx,
    destinations: &[String],
    cancelled: Option<&str>,
) -> (f64, Option<Landed>) {
    let nonce = job.txs.first().map_or(0, |t| t.nonce);
    let (status, block, gas_used, pnl, pnl_usd, reason, result) = match outcome {
        InclusionOutcome::Included(l) | InclusionOutcome::Reverted(l) => {
            let gas_usd = u256_f64(l.gas_cost_wei) / 1e18 * job.native_usd;
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
            Some(match cancelled {
                Some(why) => format!("cancelled: {why}"),
                None => format!("{reason:?}"),
            }),
            ExecResult::Missed,
        ),
    };
    info!(opp = job.opportunity, ?status, block, gas_used, realised = %pnl, pnl_usd, "inclusion");
    c.counters.count(
        destinations,
        match status {
            InclusionStatus::Included => "included",
            InclusionStatus::Reverted => "reverted",
            InclusionStatus::Missed | InclusionStatus::Orphaned => "missed",
        },
    );
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
    let paid_usd = match outcome {
        InclusionOutcome::Included(l) | InclusionOutcome::Reverted(l) => {
            u256_f64(l.gas_cost_wei) / 1e18 * job.native_usd
        }
        InclusionOutcome::Missed { .. } => 0.0,
    };
    report_mined(c, job, nonce, result, pnl, paid_usd);
    let landed = match outcome {
        InclusionOutcome::Included(l) | InclusionOutcome::Reverted(l) => Some(l.clone()),
        InclusionOutcome::Missed { .. } => None,
    };
    (pnl_usd, landed)
}

fn signed(v: I256) -> f64 {
    let f = u256_f64(v.unsigned_abs());
    if v < I256::ZERO { -f } else { f }
}

async fn latest_nonce(c: &ExecCtx, job: &ExecJob) -> Option<u64> {
    let from = job.txs.first()?.from;
    c.tracker.nonce_at_latest(from).await.ok()
}
