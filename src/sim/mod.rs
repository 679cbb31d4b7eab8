//! The simulator: revm executes an executor route (after any pending transactions it backruns) on
//! the fork cache with the next block's environment, and reports the outcome as data.
//!
//! One [`BlockSim`] per block and chain: the EVM and its read view are built once and reused for
//! every candidate of the block; each candidate's writes are discarded, pending transactions'
//! writes stay in the view's overlay until [`BlockSim::clear_pending`].
//!
//! What a simulation reports ([`SimOutcome`]): success or the decoded revert reason, gas used,
//! logs, per-token balance deltas of every watched holder (the executor, each flash lender, the
//! venues) measured from the token's own storage writes, native balance deltas, allowances the
//! executor left behind, and every contract that called back into the executor. [`containment`]
//! turns that into a verdict before anything is signed.
//!
//! Balances are measured, not trusted: a token's balance slot for each holder is located once
//! ([`TokenLayouts::probe`]) by writing a marker into the candidate slot of the view's overlay and
//! reading `balanceOf` back; a token whose layout cannot be located is unmeasurable and every
//! route through it is refused.

pub mod containment;
mod inspector;
pub mod route;
mod tokens;

use alloy::{
    consensus::TxEip1559,
    eips::eip1559::BaseFeeParams,
    primitives::{Address, B256, Bytes, I256, Log, TxKind, U256},
    sol_types::{SolCall, SolInterface},
};
use revm::{
    Context, Database, ExecuteCommitEvm, InspectEvm, MainBuilder, MainContext,
    context::{
        BlockEnv, TxEnv,
        result::{EVMError, ExecutionResult},
    },
    context_interface::ContextTr,
    handler::MainnetEvm,
    primitives::hardfork::SpecId,
    state::EvmState,
};

use crate::{
    contracts::Executor,
    state::{BlockRef, ForkCache, StateError, StateKey, StateView},
};

pub use containment::{ContainmentError, RoutePlan, check as check_containment};
pub use inspector::CallWatch;
pub use route::{FlashPlan, RouteBuildError, RouteParams, build_route, plan_of};
pub use tokens::{TokenLayout, TokenLayouts};

/// The environment of the block a simulated transaction lands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextBlock {
    /// Block number.
    pub number: u64,
    /// Timestamp (unix seconds).
    pub timestamp: u64,
    /// Base fee per gas (wei).
    pub base_fee: u64,
    /// Fee recipient.
    pub coinbase: Address,
    /// Gas limit.
    pub gas_limit: u64,
    /// `prevrandao`.
    pub prevrandao: B256,
}

impl NextBlock {
    /// The block after `parent`, `block_time` seconds later, with the EIP-1559 base fee that
    /// follows from the parent (Ethereum parameters) and the parent's coinbase.
    pub fn after(parent: &BlockRef, block_time: u64) -> Self {
        let base_fee = if parent.base_fee == 0 {
            0
        } else {
            BaseFeeParams::ethereum().next_block_base_fee(
                parent.gas_used,
                parent.gas_limit,
                parent.base_fee,
            )
        };
        Self {
            number: parent.number + 1,
            timestamp: parent.timestamp + block_time,
            base_fee,
            coinbase: parent.coinbase,
            gas_limit: parent.gas_limit,
            prevrandao: parent.prevrandao,
        }
    }

    fn env(&self) -> BlockEnv {
        BlockEnv {
            number: U256::from(self.number),
            timestamp: U256::from(self.timestamp),
            basefee: self.base_fee,
            beneficiary: self.coinbase,
            gas_limit: self.gas_limit,
            prevrandao: Some(self.prevrandao),
            difficulty: U256::ZERO,
            ..Default::default()
        }
    }
}

/// Why a simulation produced no outcome (as opposed to an outcome that reverted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The cache is not fresh at the block the simulation was asked for.
    #[error("state is stale: the cache is not pinned to head {expected}")]
    Stale {
        /// The head hash asked for.
        expected: B256,
    },
    /// The simulation read keys the cache does not hold; they are listed for the refresher.
    #[error("cold state: {} key(s) not cached", .0.len())]
    Cold(Vec<StateKey>),
    /// revm refused the transaction before executing it (nonce, balance, fee, gas limit).
    #[error("invalid transaction: {0}")]
    Invalid(String),
    /// A state read failed for another reason.
    #[error("state: {0}")]
    State(StateError),
}

/// How a simulated transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimStatus {
    /// It succeeded.
    Success,
    /// It reverted, with the decoded reason.
    Revert(String),
    /// It halted (out of gas, invalid opcode, ...).
    Halt(String),
}

/// A balance change of one holder in one token (the zero address for native currency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenDelta {
    /// The holder.
    pub holder: Address,
    /// The token, or [`Address::ZERO`] for native currency.
    pub token: Address,
    /// After minus before.
    pub delta: I256,
}

/// An allowance the executor granted and did not reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// The token.
    pub token: Address,
    /// The spender.
    pub spender: Address,
    /// The allowance left.
    pub value: U256,
}

/// The outcome of one simulated transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOutcome {
    /// How it ended.
    pub status: SimStatus,
    /// Gas used (what the receipt reports).
    pub gas_used: u64,
    /// Effective gas price paid (wei).
    pub gas_price: u128,
    /// Logs emitted (empty unless it succeeded).
    pub logs: Vec<Log>,
    /// Balance changes of every watched (token, holder) pair, zero changes included.
    pub deltas: Vec<TokenDelta>,
    /// Tokens whose balances could not be measured (no located layout).
    pub unmeasured: Vec<Address>,
    /// Allowances granted by the executor and left non-zero.
    pub allowances: Vec<Allowance>,
    /// Every address that called into the executor other than the transaction's sender.
    pub callers: Vec<Address>,
}

impl SimOutcome {
    /// Whether it succeeded.
    pub const fn success(&self) -> bool {
        matches!(self.status, SimStatus::Success)
    }

    /// The delta of `holder` in `token`, if watched.
    pub fn delta(&self, holder: Address, token: Address) -> Option<I256> {
        self.deltas.iter().find(|d| d.holder == holder && d.token == token).map(|d| d.delta)
    }

    /// Gas cost in wei (gas used × effective gas price).
    pub fn gas_cost(&self) -> U256 {
        U256::from(self.gas_used) * U256::from(self.gas_price)
    }
}

/// A transaction to simulate and what to measure around it.
#[derive(Clone, Debug)]
pub struct SimTx {
    /// The transaction.
    pub tx: TxEnv,
    /// Tokens whose balances to measure (native currency is always measured).
    pub tokens: Vec<Address>,
    /// Holders to measure.
    pub holders: Vec<Address>,
    /// The contract whose callers are watched (the executor).
    pub watch_calls_to: Address,
}

type SimEvm<'c> = MainnetEvm<revm::handler::MainnetContext<StateView<'c>>, CallWatch>;

/// Builds the revm transaction for an EIP-1559 transaction from `from` (what the chain executes
/// when the signed form of `tx` is mined).
pub fn tx_env(tx: &TxEip1559, from: Address) -> Result<TxEnv, SimError> {
    TxEnv::builder()
        .tx_type(Some(2))
        .caller(from)
        .nonce(tx.nonce)
        .chain_id(Some(tx.chain_id))
        .kind(tx.to)
        .data(tx.input.clone())
        .value(tx.value)
        .gas_limit(tx.gas_limit)
        .gas_price(tx.max_fee_per_gas)
        .gas_priority_fee(Some(tx.max_priority_fee_per_gas))
        .build()
        .map_err(|e| SimError::Invalid(format!("{e:?}")))
}

/// The EIP-1559 transaction calling `execute(route)` on `executor`.
pub fn route_tx(
    chain_id: u64,
    nonce: u64,
    executor: Address,
    route: Executor::Route,
    gas_limit: u64,
    max_fee_per_gas: u128,
    max_priority_fee_per_gas: u128,
) -> TxEip1559 {
    TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas,
        max_priority_fee_per_gas,
        to: TxKind::Call(executor),
        value: U256::ZERO,
        access_list: Default::default(),
        input: Bytes::from(Executor::executeCall { route }.abi_encode()),
    }
}

/// The EIP-1559 transaction calling `executeLeg(hops, deadline)` on `executor`: a one-way trade
/// from inventory (opening or closing a held position).
#[allow(clippy::too_many_arguments)]
pub fn leg_tx(
    chain_id: u64,
    nonce: u64,
    executor: Address,
    hops: Vec<Executor::Hop>,
    deadline_block: u64,
    gas_limit: u64,
    max_fee_per_gas: u128,
    max_priority_fee_per_gas: u128,
) -> TxEip1559 {
    TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas,
        max_priority_fee_per_gas,
        to: TxKind::Call(executor),
        value: U256::ZERO,
        access_list: Default::default(),
        input: Bytes::from(
            Executor::executeLegCall { hops, deadlineBlock: U256::from(deadline_block) }
                .abi_encode(),
        ),
    }
}

/// Chain-wide simulation settings.
#[derive(Clone, Debug)]
pub struct Simulator {
    chain_id: u64,
    spec: SpecId,
    layouts: TokenLayouts,
    nonce_check: bool,
}

impl Simulator {
    /// A simulator for `chain_id` under `spec` (match the chain's hardfork; the devnet runs
    /// Prague).
    pub fn new(chain_id: u64, spec: SpecId) -> Self {
        Self { chain_id, spec, layouts: TokenLayouts::default(), nonce_check: true }
    }

    /// Turns the sender-nonce check off (on by default). The engine simulates candidates while
    /// its own earlier transactions may still be in flight, so the nonce it will sign with can be
    /// ahead of the cached state; gas and effects do not depend on the nonce.
    #[must_use]
    pub const fn with_nonce_check(mut self, on: bool) -> Self {
        self.nonce_check = on;
        self
    }

    /// The chain id.
    pub const fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The located token layouts.
    pub const fn layouts(&self) -> &TokenLayouts {
        &self.layouts
    }

    /// The token layouts, to register tokens ([`TokenLayouts::probe`]).
    pub const fn layouts_mut(&mut self) -> &mut TokenLayouts {
        &mut self.layouts
    }

    /// A block simulation on `cache`, which must be fresh and pinned to `head` (the block the
    /// simulated transactions build on).
    ///
    /// # Errors
    /// [`SimError::Stale`] when the cache is stale or at another block: no simulation ever runs on
    /// state that is not exactly `head`'s.
    pub fn block<'c>(
        &'c self,
        cache: &'c ForkCache,
        head: B256,
        next: &NextBlock,
    ) -> Result<BlockSim<'c>, SimError> {
        if !cache.is_fresh_at(head) {
            return Err(SimError::Stale { expected: head });
        }
        Ok(self.block_unchecked(cache, next))
    }

    /// A block simulation on whatever `cache` holds (registration probes and discovery).
    pub fn block_unchecked<'c>(&'c self, cache: &'c ForkCache, next: &NextBlock) -> BlockSim<'c> {
        let spec = self.spec;
        let chain_id = self.chain_id;
        let nonce_check = self.nonce_check;
        let evm = Context::mainnet()
            .modify_cfg_chained(|c| {
                c.set_spec_and_mainnet_gas_params(spec);
                c.chain_id = chain_id;
                c.disable_nonce_check = !nonce_check;
            })
            .with_block(next.env())
            .with_db(cache.view())
            .build_mainnet_with_inspector(CallWatch::default());
        BlockSim { evm, layouts: &self.layouts, next: *next }
    }
}

/// One block's simulations: an EVM over the cache plus the pending overlay, reused per candidate.
pub struct BlockSim<'c> {
    evm: SimEvm<'c>,
    layouts: &'c TokenLayouts,
    next: NextBlock,
}

impl std::fmt::Debug for BlockSim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockSim").field("next", &self.next).finish_non_exhaustive()
    }
}

impl<'c> BlockSim<'c> {
    /// The block simulated into.
    pub const fn next(&self) -> &NextBlock {
        &self.next
    }

    /// The read view (overlay, misses, touched accounts).
    pub fn view(&mut self) -> &mut StateView<'c> {
        self.evm.ctx.db_mut()
    }

    /// Executes a pending transaction and keeps its writes in the overlay, so later simulations
    /// run on top of it. A sender the cache does not hold is assumed able to pay (the node
    /// accepted the transaction), with the transaction's own nonce.
    ///
    /// # Errors
    /// [`SimError`] when it cannot run; the overlay is unchanged then.
    pub fn apply_pending(&mut self, tx: TxEnv) -> Result<SimStatus, SimError> {
        let view = self.evm.ctx.db_mut();
        if view.cache().account(&tx.caller).is_none() && !view.has_account_override(&tx.caller) {
            view.set_account_override(tx.caller, U256::MAX >> 8, tx.nonce);
        }
        self.evm.inspector = CallWatch::default();
        match self.evm.transact_commit(tx) {
            Ok(r) => Ok(status(&r)),
            Err(e) => Err(self.map_err(e)),
        }
    }

    /// Executes `tx` and discards its writes; the output when it succeeded, `None` when it
    /// reverted or halted (probes and view calls).
    ///
    /// # Errors
    /// [`SimError`] when it cannot run.
    pub fn raw(&mut self, tx: TxEnv) -> Result<Option<Bytes>, SimError> {
        self.evm.inspector = CallWatch::default();
        let out = self.evm.inspect_tx(tx).map_err(|e| self.map_err(e))?;
        Ok(match out.result {
            ExecutionResult::Success { output, .. } => Some(output.into_data()),
            _ => None,
        })
    }

    /// Runs the view `call` on `to` from a throwaway caller (no state needed for it) and decodes
    /// the answer; `Ok(Err(revert data))` when the call reverted.
    ///
    /// # Errors
    /// [`SimError`] when it cannot run, or [`SimError::Invalid`] when the answer does not decode.
    pub fn call<C: SolCall>(
        &mut self,
        to: Address,
        call: &C,
    ) -> Result<Result<C::Return, Bytes>, SimError> {
        const VIEW_CALLER: Address =
            alloy::primitives::address!("c0ffee000000000000000000000000000000ca11");
        self.evm.ctx.db_mut().set_account_override(VIEW_CALLER, U256::MAX >> 8, 0);
        let tx = TxEnv::builder()
            .caller(VIEW_CALLER)
            .nonce(0)
            .chain_id(None)
            .kind(TxKind::Call(to))
            .data(call.abi_encode().into())
            .gas_limit(5_000_000)
            .gas_price(u128::from(self.next.base_fee))
            .build()
            .map_err(|e| SimError::Invalid(format!("{e:?}")))?;
        self.evm.inspector = CallWatch::default();
        let out = self.evm.inspect_tx(tx).map_err(|e| self.map_err(e))?;
        match out.result {
            ExecutionResult::Success { output, .. } => {
                C::abi_decode_returns(output.data()).map(Ok).map_err(|e| {
                    SimError::Invalid(format!("{}: undecodable answer: {e}", C::SIGNATURE))
                })
            }
            ExecutionResult::Revert { output, .. } => Ok(Err(output)),
            ExecutionResult::Halt { reason, .. } => {
                Err(SimError::Invalid(format!("{}: halted: {reason:?}", C::SIGNATURE)))
            }
        }
    }

    /// Drops every pending transaction applied so far.
    pub fn clear_pending(&mut self) {
        self.evm.ctx.db_mut().clear_overlay();
    }

    /// Simulates `sim` on the current state (cache + pending overlay) and discards its writes.
    ///
    /// # Errors
    /// [`SimError`] when there is no outcome: cold state (the keys are listed), an invalid
    /// transaction, a failed read.
    pub fn simulate(&mut self, sim: &SimTx) -> Result<SimOutcome, SimError> {
        // Native balances before, read through the view (cache + overlay).
        let mut native_before = Vec::with_capacity(sim.holders.len() + 2);
        {
            let view = self.evm.ctx.db_mut();
            let coinbase = self.next.coinbase;
            for h in sim.holders.iter().chain([&sim.tx.caller, &coinbase]) {
                if let Ok(info) = view.basic(*h) {
                    native_before.push((*h, info.map_or(U256::ZERO, |i| i.balance)));
                }
            }
            if !view.misses().is_empty() {
                return Err(SimError::Cold(view.take_misses()));
            }
        }
        let basefee = u128::from(self.next.base_fee);
        let price = sim
            .tx
            .gas_priority_fee
            .map_or(sim.tx.gas_price, |tip| sim.tx.gas_price.min(basefee.saturating_add(tip)));
        self.evm.inspector = CallWatch::new(sim.watch_calls_to, sim.tx.caller);
        let out = self.evm.inspect_tx(sim.tx.clone()).map_err(|e| self.map_err(e))?;
        let callers = std::mem::take(&mut self.evm.inspector.callers);
        let result = out.result;
        let state = out.state;

        let mut deltas = Vec::with_capacity(sim.tokens.len() * sim.holders.len() + 2);
        let mut unmeasured = Vec::new();
        for token in &sim.tokens {
            let Some(layout) = self.layouts.get(token) else {
                unmeasured.push(*token);
                continue;
            };
            for holder in &sim.holders {
                let slot = layout.balance_slot(*holder);
                let delta = state
                    .get(token)
                    .and_then(|a| a.storage.get(&slot))
                    .map_or(I256::ZERO, |s| signed_diff(s.present_value, s.original_value));
                deltas.push(TokenDelta { holder: *holder, token: *token, delta });
            }
        }
        for (h, before) in native_before {
            let after = state.get(&h).map_or(before, |a| a.info.balance);
            if !deltas.iter().any(|d| d.holder == h && d.token == Address::ZERO) {
                deltas.push(TokenDelta {
                    holder: h,
                    token: Address::ZERO,
                    delta: signed_diff(after, before),
                });
            }
        }
        let allowances = self.allowances_left(&result, &state, sim.watch_calls_to);
        Ok(SimOutcome {
            status: status(&result),
            gas_used: result.tx_gas_used(),
            gas_price: price,
            logs: result.logs().to_vec(),
            deltas,
            unmeasured,
            allowances,
            callers,
        })
    }

    /// Allowances the executor granted in this transaction (by its `Approval` logs) and left
    /// non-zero, read from the token's storage after the transaction.
    fn allowances_left(
        &self,
        result: &ExecutionResult,
        state: &EvmState,
        owner: Address,
    ) -> Vec<Allowance> {
        let mut out: Vec<Allowance> = Vec::new();
        for log in result.logs() {
            let Some((token, spender)) = tokens::approval_by(log, owner) else { continue };
            if out.iter().any(|a| a.token == token && a.spender == spender) {
                continue;
            }
            let value =
                match self.layouts.get(&token).and_then(|l| l.allowance_slot(owner, spender)) {
                    Some(slot) => state
                        .get(&token)
                        .and_then(|a| a.storage.get(&slot))
                        .map(|s| s.present_value)
                        .or_else(|| {
                            self.evm.ctx.journaled_state.database.storage_value(&token, &slot)
                        })
                        .unwrap_or(U256::MAX),
                    // Unknown layout: the last Approval value the token emitted.
                    None => tokens::last_approval(result.logs(), token, owner, spender),
                };
            if !value.is_zero() {
                out.push(Allowance { token, spender, value });
            }
        }
        out
    }

    fn map_err(&mut self, e: EVMError<StateError>) -> SimError {
        match e {
            EVMError::Database(StateError::Cold(_)) => {
                SimError::Cold(self.evm.ctx.db_mut().take_misses())
            }
            EVMError::Database(other) => SimError::State(other),
            other => SimError::Invalid(other.to_string()),
        }
    }
}

/// Why warming the cache for a set of transactions failed.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// Reading the missing keys failed.
    #[error(transparent)]
    Refresh(#[from] crate::state::RefreshError),
    /// The read could not be applied to the cache.
    #[error(transparent)]
    Apply(#[from] crate::state::ApplyError),
    /// Keys were still missing after the last round.
    #[error("{0} key(s) still missing after {1} rounds")]
    Unresolved(usize, usize),
}

/// Registration-time prefetch (off the hot path): runs `txs` in discovery mode on `cache`,
/// watches every key they read that the cache does not hold, reads those at the cache's head,
/// and repeats until a round misses nothing. Returns the number of keys added.
///
/// # Errors
/// [`WarmError`] when the source fails or keys are still missing after `rounds` rounds.
pub async fn warm<S: crate::state::StateSource>(
    refresher: &mut crate::state::Refresher<S>,
    cache: &mut ForkCache,
    sim: &Simulator,
    next: &NextBlock,
    txs: &[TxEnv],
    rounds: usize,
) -> Result<usize, WarmError> {
    let mut added = 0;
    for _ in 0..rounds {
        let missing = {
            let mut bs = sim.block_unchecked(cache, next);
            bs.view().set_discovery(true);
            for tx in txs {
                // The outcome is meaningless in discovery mode; only the misses count.
                let _ = bs.raw(tx.clone());
                bs.clear_pending();
            }
            bs.view().take_misses()
        };
        if missing.is_empty() {
            return Ok(added);
        }
        added += missing.len();
        refresher.watch(missing);
        if let Some(update) = refresher.prefetch().await? {
            cache.apply(&update)?;
        }
    }
    Err(WarmError::Unresolved(added, rounds))
}

/// Registration-time: locates `token`'s balance layout ([`TokenLayouts::probe`]), reading
/// whatever the probe needs into the cache first. `Ok(false)` when the token is unmeasurable.
///
/// # Errors
/// [`WarmError`] when the source fails or the probe keeps missing state.
pub async fn register_token<S: crate::state::StateSource>(
    refresher: &mut crate::state::Refresher<S>,
    cache: &mut ForkCache,
    sim: &mut Simulator,
    next: &NextBlock,
    token: Address,
) -> Result<bool, WarmError> {
    const ROUNDS: usize = 16;
    for _ in 0..ROUNDS {
        let probed = {
            let mut bs = sim.block_unchecked(cache, next);
            TokenLayouts::probe(&mut bs, token)
        };
        match probed {
            Ok(Some(layout)) => {
                sim.layouts_mut().insert(token, layout);
                return Ok(true);
            }
            Ok(None) | Err(SimError::Invalid(_) | SimError::State(_) | SimError::Stale { .. }) => {
                return Ok(false);
            }
            Err(SimError::Cold(keys)) => {
                refresher.watch(keys);
                if let Some(update) = refresher.prefetch().await? {
                    cache.apply(&update)?;
                }
            }
        }
    }
    Err(WarmError::Unresolved(0, ROUNDS))
}

fn status(r: &ExecutionResult) -> SimStatus {
    match r {
        ExecutionResult::Success { .. } => SimStatus::Success,
        ExecutionResult::Revert { output, .. } => SimStatus::Revert(revert_reason(output)),
        ExecutionResult::Halt { reason, .. } => SimStatus::Halt(format!("{reason:?}")),
    }
}

/// A revert payload as text: the executor's custom errors with their numbers, `Error(string)`,
/// panics, or the raw bytes.
pub fn revert_reason(data: &[u8]) -> String {
    if let Ok(e) = Executor::ExecutorErrors::abi_decode(data) {
        return match e {
            Executor::ExecutorErrors::HopMinOut(h) => {
                format!("HopMinOut(hop {}, out {}, min {})", h.index, h.out, h.minOut)
            }
            Executor::ExecutorErrors::NoProfit(p) => {
                format!("NoProfit(before {}, after {}, min {})", p.before, p.after_, p.minProfit)
            }
        };
    }
    alloy::sol_types::decode_revert_reason(data).unwrap_or_else(|| {
        if data.is_empty() {
            "no revert data".into()
        } else {
            format!("0x{}", alloy::hex::encode(data))
        }
    })
}

fn signed_diff(after: U256, before: U256) -> I256 {
    if after >= before { I256::from_raw(after - before) } else { -I256::from_raw(before - after) }
}
