//! The judge: what the bot's signed transactions would have done on the real chain, in revm.
//!
//! It keeps its own fork cache following the recorded chain (a refresher over the same state
//! source as the engine, so every read it makes is cached or recorded too). A backrun is executed
//! after the real block's transactions up to and including its victim, on the block's parent
//! state with the block's own environment; a head trade at the top of its target block, on the
//! state after the block before it. Cold state is read at the block and the run repeated, so the
//! verdict is exact.

use alloy::{
    consensus::{Transaction as _, TxEnvelope},
    eips::eip2718::Decodable2718,
    primitives::{Address, B256, I256, U256},
};
use revm::{context::TxEnv, primitives::hardfork::SpecId};

use crate::{
    config::ChainConfig,
    engine::{ExecJob, Market},
    sim::{self, BlockSim, NextBlock, SimError, SimTx, Simulator},
    state::{BlockRef, ForkCache, Refresher, RefresherConfig, StateSource},
    venues::Venue as _,
};

/// Rounds of "read the cold keys and run again" before a verdict is given up.
const ROUNDS: usize = 64;

/// Why the judge could not give a verdict.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// Reading state failed.
    #[error("judge: {0}")]
    State(String),
}

fn state_err(e: &dyn std::fmt::Display) -> JudgeError {
    JudgeError::State(e.to_string())
}

/// The verdict on one signed transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// It executed without reverting at its position.
    pub landed: bool,
    /// Gas it used there.
    pub gas_used: u64,
    /// Profit-token delta of the executor (raw).
    pub profit_raw: I256,
    /// PnL after gas, USD (gas lost when it reverted).
    pub pnl_usd: f64,
    /// Gas paid, USD.
    pub gas_usd: f64,
    /// The revert reason when it did not land.
    pub failure: Option<String>,
}

/// The judge of one chain (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct Judge<S> {
    refresher: Refresher<S>,
    cache: ForkCache,
    sim: Simulator,
    market: Market,
    executor: Address,
    operator: Address,
    native_usd: f64,
    block_time: u64,
}

/// One transaction of a recorded block, as the judge replays it.
#[derive(Clone, Debug)]
pub(crate) struct BlockTx {
    pub(crate) hash: B256,
    pub(crate) env: TxEnv,
}

/// A peg pool's deviation from 1, basis points.
pub(crate) type PegReading = (String, f64);

impl<S: StateSource> Judge<S> {
    /// A judge at the source's latest block (the backtest's base).
    pub(crate) async fn new(
        source: S,
        chain: &ChainConfig,
        operator: Address,
    ) -> Result<Self, JudgeError> {
        let executor = chain.executor.unwrap_or_default();
        let cfg = RefresherConfig { always: vec![executor, operator], ..Default::default() };
        let mut refresher = Refresher::new(source, cfg);
        let mut cache = ForkCache::new(crate::state::CacheLimits::default());
        let base = refresher.start().await.map_err(|e| state_err(&e))?;
        cache.apply(&base).map_err(|e| state_err(&e))?;
        let sim = Simulator::new(chain.chain_id, SpecId::PRAGUE).with_nonce_check(false);
        let mut j = Self {
            refresher,
            cache,
            sim,
            market: Market::from_config(chain),
            executor,
            operator,
            native_usd: chain.fees.native_usd,
            block_time: (chain.block_time_ms / 1000).max(1),
        };
        let next = j.next_after_head()?;
        for t in j.market.tokens.clone() {
            sim::register_token(&mut j.refresher, &mut j.cache, &mut j.sim, &next, t.address)
                .await
                .map_err(|e| state_err(&e))?;
        }
        Ok(j)
    }

    /// The block the judge's state is at.
    pub(crate) fn head(&self) -> Result<BlockRef, JudgeError> {
        self.cache.head().copied().ok_or_else(|| JudgeError::State("no head".into()))
    }

    fn next_after_head(&self) -> Result<NextBlock, JudgeError> {
        Ok(NextBlock::after(&self.head()?, self.block_time))
    }

    /// The environment of the recorded block `b`.
    pub(crate) fn env_of(b: &BlockRef) -> NextBlock {
        NextBlock {
            number: b.number,
            timestamp: b.timestamp,
            base_fee: b.base_fee,
            coinbase: b.coinbase,
            gas_limit: b.gas_limit,
            prevrandao: b.prevrandao,
        }
    }

    /// The environment after the judge's head when the next block is not known.
    pub(crate) fn env_after_head(&self) -> Result<NextBlock, JudgeError> {
        self.next_after_head()
    }

    /// Moves the state to the recorded block `hash`.
    pub(crate) async fn advance(&mut self, hash: B256) -> Result<(), JudgeError> {
        if let Some(u) = self.refresher.on_head(hash).await.map_err(|e| state_err(&e))? {
            self.cache.apply(&u).map_err(|e| state_err(&e))?;
        }
        Ok(())
    }

    /// Runs `f` on the state at the head with environment `env`, reading cold keys and running
    /// again until it needs none.
    async fn with_state<T>(
        &mut self,
        env: &NextBlock,
        mut f: impl FnMut(&mut BlockSim<'_>) -> Result<T, SimError>,
    ) -> Result<T, JudgeError> {
        for _ in 0..ROUNDS {
            let r = {
                let mut bs = self.sim.block_unchecked(&self.cache, env);
                f(&mut bs)
            };
            match r {
                Err(SimError::Cold(keys)) => {
                    self.refresher.watch(keys);
                    if let Some(u) = self.refresher.prefetch().await.map_err(|e| state_err(&e))? {
                        self.cache.apply(&u).map_err(|e| state_err(&e))?;
                    }
                }
                Err(e) => return Err(state_err(&e)),
                Ok(v) => return Ok(v),
            }
        }
        Err(JudgeError::State(format!("state still cold after {ROUNDS} rounds")))
    }

    /// The fee of the bridge at `bridge` (its `feeBps()`), on the state at the head.
    pub(crate) async fn bridge_fee_bps(&mut self, bridge: Address) -> Result<u32, JudgeError> {
        let env = self.next_after_head()?;
        let r = self
            .with_state(&env, |bs| bs.call(bridge, &crate::contracts::Bridge::feeBpsCall {}))
            .await?;
        r.map(u32::from)
            .map_err(|_| JudgeError::State(format!("bridge {bridge}: feeBps() reverted")))
    }

    /// Executes `job`'s transaction after `before` (the recorded transactions ahead of it) in a
    /// block with environment `env`, on the judge's current state.
    pub(crate) async fn judge(
        &mut self,
        job: &ExecJob,
        before: &[BlockTx],
        env: &NextBlock,
    ) -> Result<Verdict, JudgeError> {
        let Some(signed) = job.txs.first() else {
            return Ok(Verdict {
                landed: false,
                gas_used: 0,
                profit_raw: I256::ZERO,
                pnl_usd: 0.0,
                gas_usd: 0.0,
                failure: Some("no transaction".into()),
            });
        };
        let tx = bot_env(&signed.raw, self.operator)?;
        let sim_tx = SimTx {
            tx,
            tokens: vec![job.profit_token],
            holders: vec![self.executor],
            watch_calls_to: self.executor,
        };
        let outcome = self
            .with_state(env, |bs| {
                for t in before {
                    bs.apply_pending(t.env.clone())?;
                }
                bs.simulate(&sim_tx)
            })
            .await?;
        let profit_raw = outcome.delta(self.executor, job.profit_token).unwrap_or_default();
        let gas_price = signed
            .max_fee_per_gas
            .min(u128::from(env.base_fee).saturating_add(signed.max_priority_fee_per_gas));
        let gas_usd =
            crate::engine::market::u256_f64(U256::from(outcome.gas_used) * U256::from(gas_price))
                / 1e18
                * self.native_usd;
        let token_usd = |v: I256| {
            let m = job.profit_usd_per_raw;
            if v.is_negative() {
                -(crate::engine::market::u256_f64(v.unsigned_abs()) * m)
            } else {
                crate::engine::market::u256_f64(v.into_raw()) * m
            }
        };
        let landed = outcome.success();
        Ok(Verdict {
            landed,
            gas_used: outcome.gas_used,
            profit_raw: if landed { profit_raw } else { I256::ZERO },
            pnl_usd: if landed { token_usd(profit_raw) - gas_usd - job.cost_usd } else { -gas_usd },
            gas_usd,
            failure: match outcome.status {
                sim::SimStatus::Success => None,
                sim::SimStatus::Revert(r) | sim::SimStatus::Halt(r) => Some(r),
            },
        })
    }

    /// The deviation from 1 (bps) of every pool between two tokens of the same reference price,
    /// at the head after `extra` (the bot's landed transactions) ran on it.
    pub(crate) async fn peg(
        &mut self,
        extra: &[TxEnv],
        env: &NextBlock,
    ) -> Result<Vec<PegReading>, JudgeError> {
        let pegged: Vec<usize> = (0..self.market.venues.len())
            .filter(|&i| {
                let v = &self.market.venues[i];
                match (self.market.token(&v.base), self.market.token(&v.quote)) {
                    (Some(b), Some(q)) => (b.usd_price - q.usd_price).abs() < 1e-9,
                    _ => false,
                }
            })
            .collect();
        let market = self.market.clone();
        let operator = self.operator;
        let pools = self
            .with_state(env, |bs| {
                for t in extra {
                    // A bot transaction that reverts here changes nothing.
                    let _ = bs.apply_pending(t.clone())?;
                }
                let mut out = Vec::new();
                for &i in &pegged {
                    match market.decode(bs, i, operator) {
                        Ok(p) => out.push((i, p)),
                        Err(crate::engine::market::DecodeError::Sim(SimError::Cold(k))) => {
                            return Err(SimError::Cold(k));
                        }
                        Err(_) => {}
                    }
                }
                Ok(out)
            })
            .await?;
        let mut readings = Vec::new();
        for (i, pool) in pools {
            let v = &self.market.venues[i];
            let (Some(tb), Some(tq)) = (self.market.token(&v.base), self.market.token(&v.quote))
            else {
                continue;
            };
            let Ok(mid) = pool.mid_price() else { continue };
            let scale = 10f64.powi(i32::from(tb.decimals) - i32::from(tq.decimals));
            let price = crate::engine::market::u256_f64(mid) / 1e18 * scale;
            readings.push((v.name.clone(), (price - 1.0) * 10_000.0));
        }
        Ok(readings)
    }
}

/// The recorded transaction `tx` as revm runs it.
pub(crate) fn recorded_env(tx: &alloy::rpc::types::Transaction) -> Result<BlockTx, JudgeError> {
    let env = TxEnv::builder()
        .tx_type(Some(tx.inner.inner().tx_type() as u8))
        .caller(tx.inner.signer())
        .nonce(tx.nonce())
        .chain_id(tx.chain_id())
        .kind(tx.kind())
        .data(tx.input().clone())
        .value(tx.value())
        .gas_limit(tx.gas_limit())
        .gas_price(tx.max_fee_per_gas())
        .gas_priority_fee(tx.max_priority_fee_per_gas())
        .build()
        .map_err(|e| JudgeError::State(format!("recorded transaction: {e:?}")))?;
    Ok(BlockTx { hash: *tx.inner.tx_hash(), env })
}

/// The bot's signed transaction (`raw`, EIP-2718) as revm runs it, sent by `operator` (the key
/// the live bot signs with; the backtest signs with a throwaway one).
pub(crate) fn bot_env(raw: &[u8], operator: Address) -> Result<TxEnv, JudgeError> {
    let env = TxEnvelope::decode_2718(&mut &raw[..])
        .map_err(|e| JudgeError::State(format!("bot transaction does not decode: {e}")))?;
    let TxEnvelope::Eip1559(signed) = env else {
        return Err(JudgeError::State("bot transaction is not EIP-1559".into()));
    };
    sim::tx_env(signed.tx(), operator).map_err(|e| state_err(&e))
}
