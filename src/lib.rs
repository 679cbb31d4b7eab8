//! # cantilever
//!
//! A low-latency, in-process arbitrage and MEV bot for EVM chains. It keeps a forked copy of the
//! on-chain state it trades, finds stablecoin-depeg, anchor-triangle and cross-chain routes, proves
//! each one in revm before signing anything, gates it through flash-loan containment and desk risk
//! limits, and submits only profitable, slippage-capped transactions or bundles.
//!
//! ```text
//!  chain nodes ──WS──▶ ingest (tokio) ──Event──▶ engine thread (one per process, owns all mutable state)
//!  (newHeads,          reconnect, gap      crossbeam   1. state: apply head / pending-tx diff to the fork cache
//!   full pending txs,  backfill, decode    bounded     2. venues: re-quote only the pools that changed
//!   logs)                                              3. routes: affected routes → optimal size (native math)
//!                                                      4. sim: prove top candidates in revm on the snapshot
//!                                                      5. risk: containment + desk limits  ──approved──┐
//!                                                                                                     ▼
//!  ledger ◀── exec (tokio): sign, nonce, bundle ──▶ relays (eth_sendBundle, signed) / RPC (raw tx)
//! ```
//!
//! Threading: tokio does I/O only (ingest, submission, telemetry); the decision loop runs on one
//! named OS thread fed by bounded crossbeam channels, never awaits and never blocks on RPC.
//!
//! ## Modules in this build
//! - [`app`]: `cantilever run`, `halt` and `rearm`: configuration, keys, ledger, telemetry and
//!   one engine per chain wired together, signals (graceful SIGINT/SIGTERM shutdown, SIGUSR1
//!   re-reads the halt file).
//! - [`config`]: typed, validated TOML configuration; every error names file, key and reason, and a
//!   secret pasted into the file is refused without being echoed.
//! - [`venues`]: exact native math for every venue family (DODO PMM, Uniswap V2, reserve vault,
//!   synthetic swap, bridge) behind the [`venues::Pool`] enum, state decoding by batched view calls,
//!   executor hop encoding; equal to the contracts to the wei (property-tested against revm).
//! - [`routes`]: cyclic routes over dense pool indices and their sizing (closed forms where they
//!   exist, an integer bracketed search on the concave profit curve otherwise).
//! - [`quote`]: `cantilever quote`, a venue quoted natively and by its own code in revm on the same
//!   block's state.
//! - [`evm`]: a local revm chain (deploy, call, view) used by the tests, benches and `quote`.
//! - [`contracts`]: alloy `sol!` bindings for our own venue contracts (`fixtures/contracts/`), built
//!   from the committed, reproducibly compiled artifacts.
//! - [`exec`]: the execution stage: keys and synchronous EIP-1559 signing, bot-owned nonces,
//!   next-block fees with a gas-spike refusal, raw-transaction and signed-bundle submitters with
//!   per-destination outcomes, inclusion tracking with realised PnL.
//! - [`ingest`]: the chain event feed per chain on tokio (WS heads and full pending transactions,
//!   reconnect with backoff, gap backfill and reorg detection by parent hash) into two bounded
//!   crossbeam channels for the engine thread.
//! - [`risk`]: desk limits checked inline before anything is signed ([`risk::RiskGate`]), refusals
//!   as data, sustained-deviation detection, the persistent halt and the run modes.
//! - [`devnet`]: two anvil chains (138 and 651940) on loopback with a scenario deployed and a bridge
//!   relayer; the harness of the integration tests and `cantilever devnet`.
//! - [`ledger`]: the durable SQLite record (WAL) of opportunities, decisions, simulations,
//!   submissions, inclusions, positions, halts and realised PnL per run; `cantilever ledger`.
//! - [`telemetry`]: tracing setup, per-stage latency histograms, the Prometheus `/metrics` and
//!   `/health` endpoint on loopback.
//! - [`state`]: the fork state cache: a revm database over the chain's state at one block hash,
//!   refreshed per block off the hot path, rolled back on reorgs, checked for divergence.
//! - [`cassette`]: the recording format shared by `record`, `bench` and `backtest`: events with
//!   arrival offsets and every state answer, a recording and a replaying [`state::StateSource`],
//!   the event replay into the ingest channels, and `cantilever record`.
//! - [`backtest`]: `cantilever backtest`, the real engine replayed over history (an archive RPC
//!   behind an on-disk answer cache, or a cassette) and judged in revm against the real blocks:
//!   would-have-landed, PnL after gas, the peg with and without the bot; the embedded default run.
//! - [`bench`]: `cantilever bench`, a cassette replayed through the real engine in shadow mode,
//!   per-stage latency percentiles for head and pending events, synthetic-pool scaling runs, and
//!   `cantilever record --config`, a live session recorded through the engine's own reads.
//! - [`sim`]: revm simulation of executor routes (after the pending transactions they backrun)
//!   on the cache with the next block's environment; outcomes as data; flash-loan containment.
//! - [`engine`]: the decision loop of one chain on its own thread (state apply, venue decoding,
//!   route screening and sizing, proof, containment and desk limits, signing; depeg, triangle,
//!   stabilizer and backrun strategies), the state feeder, the exec task, and [`engine::run_chain`].
//! - [`xchain`]: the cross-chain coordinator above two chain engines: one inventory view with
//!   bridge transfers in flight, spread detection and two-leg sizing net of every cost, legs proven
//!   on both chains before either is sent, leg-failure handling, bridge rebalancing.

pub mod app;
pub mod backtest;
pub mod bench;
pub mod cassette;
pub mod config;
pub mod contracts;
pub mod devnet;
pub mod engine;
pub mod evm;
pub mod exec;
pub mod ingest;
pub mod ledger;
pub mod quote;
pub mod risk;
pub mod routes;
pub mod sim;
pub mod state;
pub mod telemetry;
pub mod venues;
pub mod xchain;
