//! Reorgs and shutdown against the exec task (RELIABILITY.md tests 3 and 11), on private anvil
//! nodes (these tests reorg and roll back) with the loopback relay of `exec.rs`.
//!
//! - A raw transaction that landed, then was reorged out by a block that spends its nonce
//!   differently: the ledger gets an `orphaned` row reversing the realised PnL, the engine is told
//!   to reverse the PnL and resync to the node's `latest` nonce, the final outcome is a miss, and
//!   the transaction was sent once.
//! - A bundle whose parent block is replaced (`anvil_rollback`) before its target block: it is
//!   cancelled on the relay by its replacement uuid, recorded `cancelled`, never re-sent.
//! - Shutdown with a bundle waiting for its block (the exec task alone, and a running engine
//!   stopped as on SIGTERM): cancelled on the relay, the ledger flushed
//!   with the cancel, the task done within the deadline.

use std::time::{Duration, Instant};

use alloy::{
    eips::BlockNumberOrTag,
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, I256, U256},
    providers::{DynProvider, Provider, ProviderBuilder, RootProvider, ext::AnvilApi},
    rpc::types::anvil::{ReorgOptions, TransactionData},
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
};
use cantilever::{
    config::{EndpointUrl, RelayConfig},
    contracts::TestToken,
    devnet::{AnvilNode, AnvilOptions},
    engine::{ExecHandle, ExecJob, ExecReport, ExecResult, ExecSettings, Input, spawn_exec},
    exec::{
        BundleSubmitter, InclusionTracker, RawTxSubmitter, SignedTx, Submitter, TxParams, TxSigner,
    },
    ledger::{InclusionStatus, Ledger, LedgerHandle, Record, SubmissionOutcome, read_records},
    risk::{RouteKey, StrategyKind},
};

use crate::exec::{RelayMode, start_relay};

const CHAIN_ID: u64 = 31337;
const TIMEOUT: Duration = Duration::from_secs(3);
const PROFIT: u64 = 12_345;

struct Rig {
    node: AnvilNode,
    p: RootProvider,
    token: Address,
    executor: PrivateKeySigner,
    holder: Address,
    ledger: LedgerHandle,
    ledger_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let node = AnvilNode::spawn(&AnvilOptions { chain_id: CHAIN_ID, ..AnvilOptions::default() })
        .expect("anvil must be installed (npm install --prefix tools)");
    let url = node.http_url();
    let p = RootProvider::new_http(url.parse().unwrap());
    let owner = node.keys()[0].clone();
    let wallet: DynProvider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(owner))
        .connect_http(url.parse().unwrap())
        .erased();
    let token = TestToken::deploy(wallet, "Profit".into(), "PRF".into(), 18).await.unwrap();
    let executor = node.keys()[5].clone();
    let minted = token.mint(executor.address(), U256::from(1_000_000u64)).send().await.unwrap();
    minted.get_receipt().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("ledger.sqlite");
    let ledger = Ledger::open(&ledger_path, B256::ZERO, "test").unwrap().spawn().unwrap();
    Rig {
        token: *token.address(),
        node,
        p,
        executor,
        holder: Address::repeat_byte(0x42),
        ledger,
        ledger_path,
        _dir: dir,
    }
}

impl Rig {
    fn url(&self) -> EndpointUrl {
        EndpointUrl::new(self.node.http_url()).unwrap()
    }

    async fn head(&self) -> (u64, B256) {
        let b = self.p.get_block_by_number(BlockNumberOrTag::Latest).await.unwrap().unwrap();
        (b.header.number, b.header.hash)
    }

    /// `executor` signs `token.transfer(holder, PROFIT)` with `nonce`: realised profit at the
    /// holder, like a route's.
    async fn profit_tx(&self, nonce: u64) -> SignedTx {
        let input: Bytes =
            TestToken::transferCall::new((self.holder, U256::from(PROFIT))).abi_encode().into();
        self.sign(nonce, self.token, input).await
    }

    async fn sign(&self, nonce: u64, to: Address, input: Bytes) -> SignedTx {
        let base = self.p.get_gas_price().await.unwrap();
        TxSigner::new(self.executor.clone())
            .sign_eip1559(&TxParams {
                chain_id: CHAIN_ID,
                nonce,
                to,
                input,
                gas_limit: 100_000,
                max_fee_per_gas: base * 4 + 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
                value: U256::ZERO,
            })
            .unwrap()
    }

    fn job(&self, tx: SignedTx, target_block: u64, parent_hash: B256, bundle: bool) -> ExecJob {
        ExecJob {
            opportunity: 7,
            submission: 7,
            chain_id: CHAIN_ID,
            leading: Vec::new(),
            txs: vec![tx],
            target_block,
            parent_hash,
            profit_token: self.token,
            executor: self.holder,
            simulated_profit: I256::try_from(PROFIT).unwrap(),
            simulated_gas: 50_000,
            route: RouteKey(1),
            strategy: StrategyKind::Triangle,
            profit_usd_per_raw: 0.001,
            native_usd: 0.0,
            bundle,
            cost_usd: 0.0,
        }
    }

    fn spawn(
        &self,
        submitter: Submitter,
        confirmations: u64,
    ) -> (tokio::sync::mpsc::UnboundedSender<ExecJob>, ExecHandle, crossbeam_channel::Receiver<Input>)
    {
        let (back, reports) = crossbeam_channel::unbounded();
        let tracker = InclusionTracker::new("devnet", &self.url(), TIMEOUT).unwrap();
        let settings = ExecSettings { window: 2, poll: Duration::from_millis(20), confirmations };
        let (jobs, handle) =
            spawn_exec(submitter, tracker, Some(self.ledger.clone()), back, settings);
        (jobs, handle, reports)
    }

    fn records(&self) -> Vec<Record> {
        self.ledger.flush().unwrap();
        read_records(&self.ledger_path, self.ledger.run_id()).unwrap()
    }

    fn bundles(&self, relay_url: &str, identity: &PrivateKeySigner) -> Submitter {
        let relays = [RelayConfig {
            name: "loopback".into(),
            url: EndpointUrl::new(relay_url).unwrap(),
            builders: vec![],
        }];
        Submitter::Bundle(
            BundleSubmitter::new("devnet", &relays, identity.clone(), TIMEOUT).unwrap(),
        )
    }
}

/// The next exec report (blocking on the channel from async code, on a blocking thread).
async fn next_report(rx: &crossbeam_channel::Receiver<Input>) -> ExecReport {
    let rx = rx.clone();
    tokio::task::spawn_blocking(move || match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Input::Exec(r)) => r,
        other => panic!("expected an exec report, got {other:?}"),
    })
    .await
    .unwrap()
}

fn inclusions(records: &[Record]) -> Vec<(InclusionStatus, I256)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Inclusion(i) => Some((i.status, i.realised_pnl)),
            _ => None,
        })
        .collect()
}

fn submissions(records: &[Record]) -> Vec<(SubmissionOutcome, Option<String>)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Submission(s) => Some((s.outcome, s.detail.clone())),
            _ => None,
        })
        .collect()
}

/// A landed transaction's block is replaced by one that spends the same nonce otherwise: the
/// inclusion is orphaned (PnL reversed in the ledger and for the engine), nonces resync to the
/// node's `latest`, the final outcome is a miss, and nothing was sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorged_inclusion_is_orphaned_with_pnl_reversed_and_nonce_resynced() {
    let r = rig().await;
    let raw = RawTxSubmitter::new("devnet", "public-rpc", &r.url(), TIMEOUT).unwrap();
    let (jobs, handle, reports) = r.spawn(Submitter::RawTx(raw), 50);
    let (head, hash) = r.head().await;
    let nonce = r.p.get_transaction_count(r.executor.address()).await.unwrap();
    let tx = r.profit_tx(nonce).await;
    jobs.send(r.job(tx.clone(), head + 1, hash, false)).unwrap();

    let first = next_report(&reports).await;
    let ExecResult::Included { pnl_usd } = first.result else { panic!("{first:?}") };
    assert!((pnl_usd - PROFIT as f64 * 0.001).abs() < 1e-9, "{pnl_usd}");
    let landed_in = r.p.get_transaction_receipt(tx.hash).await.unwrap().unwrap();
    assert_eq!(landed_in.block_number, Some(head + 1));

    // Replace that block: its new version carries another use of the same nonce (a plain
    // transfer by the same key), so ours can never land again.
    let other = r.sign(nonce, Address::repeat_byte(0x77), Bytes::new()).await;
    r.p.anvil_reorg(ReorgOptions {
        depth: 1,
        tx_block_pairs: vec![(TransactionData::Raw(other.raw.clone()), 0)],
    })
    .await
    .unwrap();

    let second = next_report(&reports).await;
    assert_eq!(
        second.result,
        ExecResult::Orphaned { pnl_usd, resync: Some(nonce + 1) },
        "the booked PnL is reversed and nonces follow the new branch"
    );
    // The window after the reorg passes without our transaction.
    r.p.anvil_mine(Some(4), None).await.unwrap();
    let third = next_report(&reports).await;
    assert_eq!(third.result, ExecResult::Missed);
    assert!(r.p.get_transaction_receipt(tx.hash).await.unwrap().is_none());
    assert_eq!(handle.counters.orphaned.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(handle.sent.load(std::sync::atomic::Ordering::Relaxed), 1, "sent once");
    drop(jobs);
    assert!(handle.shutdown(Duration::from_secs(5)).await);

    let records = r.records();
    let story = inclusions(&records);
    let profit = I256::try_from(PROFIT).unwrap();
    assert_eq!(
        story,
        vec![
            (InclusionStatus::Included, profit),
            (InclusionStatus::Orphaned, -profit),
            (InclusionStatus::Missed, I256::ZERO),
        ]
    );
    assert_eq!(submissions(&records).len(), 1, "one submission row, never re-sent");
}

/// A bundle whose parent block is rolled back before its target block is cancelled on the relay
/// by its replacement uuid, recorded `cancelled`, and never sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_aimed_past_a_replaced_block_is_cancelled_not_resent() {
    let r = rig().await;
    let relay = start_relay(&r.node.http_url(), RelayMode::Hold).await;
    let identity = PrivateKeySigner::random();
    let (jobs, handle, reports) = r.spawn(r.bundles(&relay.url, &identity), 3);
    let (head, hash) = r.head().await;
    let nonce = r.p.get_transaction_count(r.executor.address()).await.unwrap();
    jobs.send(r.job(r.profit_tx(nonce).await, head + 1, hash, true)).unwrap();
    wait_for(|| relay.log.lock().unwrap().bundles.len() == 1).await;

    // Roll the parent back; its replacement (automine) carries a stranger's transfer, so it
    // differs for sure.
    r.p.anvil_rollback(Some(1)).await.unwrap();
    let stranger = TxSigner::new(r.node.keys()[1].clone());
    let nonce1 = r.p.get_transaction_count(r.node.keys()[1].address()).await.unwrap();
    let base = r.p.get_gas_price().await.unwrap();
    let transfer = stranger
        .sign_eip1559(&TxParams {
            chain_id: CHAIN_ID,
            nonce: nonce1,
            to: Address::repeat_byte(0x55),
            input: Bytes::new(),
            gas_limit: 21_000,
            max_fee_per_gas: base * 4 + 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            value: U256::from(1u64),
        })
        .unwrap();
    let _: B256 = r.p.client().request("eth_sendRawTransaction", (transfer.raw,)).await.unwrap();
    for _ in 0..500 {
        if r.p.get_transaction_receipt(transfer.hash).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (new_head, new_hash) = r.head().await;
    assert_eq!(new_head, head);
    assert_ne!(new_hash, hash, "the bundle's parent was replaced");
    wait_for(|| relay.log.lock().unwrap().cancelled.len() == 1).await;

    // Its target block and the window pass; it never lands and is never sent again.
    r.p.anvil_mine(Some(4), None).await.unwrap();
    let report = next_report(&reports).await;
    assert_eq!(report.result, ExecResult::Missed);
    {
        let log = relay.log.lock().unwrap();
        assert_eq!(log.bundles.len(), 1, "never re-sent");
        assert_eq!(log.cancelled.len(), 1);
        assert_eq!(log.signers, vec![identity.address(); 2]);
    }
    assert_eq!(handle.counters.cancelled.load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(jobs);
    assert!(handle.shutdown(Duration::from_secs(5)).await);

    let records = r.records();
    let subs = submissions(&records);
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].0, SubmissionOutcome::Cancelled);
    assert!(subs[0].1.as_deref().unwrap().contains("replaced by a reorg"), "{subs:?}");
    assert_eq!(inclusions(&records), vec![(InclusionStatus::Missed, I256::ZERO)]);
}

/// Shutdown with a bundle waiting for its block: cancelled on the relay by its replacement uuid,
/// the cancel is in the flushed ledger, and the task ends well within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_waiting_bundles_and_flushes_the_ledger() {
    let r = rig().await;
    let relay = start_relay(&r.node.http_url(), RelayMode::Hold).await;
    let identity = PrivateKeySigner::random();
    let (jobs, handle, reports) = r.spawn(r.bundles(&relay.url, &identity), 3);
    let (head, hash) = r.head().await;
    let nonce = r.p.get_transaction_count(r.executor.address()).await.unwrap();
    jobs.send(r.job(r.profit_tx(nonce).await, head + 1, hash, true)).unwrap();
    wait_for(|| relay.log.lock().unwrap().bundles.len() == 1).await;

    let deadline = Duration::from_secs(5);
    let t0 = Instant::now();
    assert!(handle.shutdown(deadline).await, "the exec task ends within its deadline");
    assert!(t0.elapsed() < deadline);
    let report = next_report(&reports).await;
    assert_eq!(report.result, ExecResult::NotDelivered { resync: None });
    // A job decided after shutdown began is never sent.
    assert!(jobs.send(r.job(r.profit_tx(nonce + 1).await, head + 1, hash, true)).is_err());

    let log = relay.log.lock().unwrap();
    assert_eq!(log.bundles.len(), 1);
    assert_eq!(log.cancelled.len(), 1, "cancelled by replacement uuid");
    uuid::Uuid::parse_str(&log.cancelled[0]).expect("a uuid");
    drop(log);
    let subs = submissions(&r.records());
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].0, SubmissionOutcome::Cancelled);
    assert!(subs[0].1.as_deref().unwrap().contains("shutdown"), "{subs:?}");
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in 10 s");
}

/// The running engine's graceful stop (the SIGTERM path of `cantilever run`): a bundle the engine
/// sent for a depeg is waiting at the relay; `RunHandle::stop` cancels it by replacement uuid,
/// records the cancel, and returns within its deadline with the ledger closable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_stop_cancels_its_waiting_bundle_within_the_deadline() {
    let mut bot = crate::engine::devnet_bot("0.05").await;
    let relay = start_relay(&bot.chain.http_url, RelayMode::Hold).await;
    let chain = bot.cfg.chains.iter_mut().find(|c| c.chain_id == 138).expect("138");
    chain.submission.mode = cantilever::config::SubmissionMode::FlashbotsRelay;
    chain.submission.relays = vec![RelayConfig {
        name: "loopback".into(),
        url: EndpointUrl::new(relay.url.clone()).unwrap(),
        builders: vec![],
    }];
    bot.identity = Some(PrivateKeySigner::random());
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    bot.dump(bot.pool("cUSDT/USDT"), true, crate::engine::e6(200_000)).await;
    wait_for(|| relay.log.lock().unwrap().bundles.len() == 1).await;
    assert_eq!(run.inflight.load(std::sync::atomic::Ordering::Acquire), 1, "bundle in flight");

    let deadline = Duration::from_secs(5);
    let t0 = Instant::now();
    run.stop(deadline).await;
    assert!(t0.elapsed() < deadline, "stopped in {:?}", t0.elapsed());
    {
        let log = relay.log.lock().unwrap();
        assert_eq!(log.bundles.len(), 1, "nothing sent after the stop");
        assert_eq!(log.cancelled.len(), 1, "the waiting bundle was cancelled");
    }
    let recs = crate::engine::records(&ledger, &bot.db());
    let subs = submissions(&recs);
    assert_eq!(subs.len(), 1, "{recs:#?}");
    assert_eq!(subs[0].0, SubmissionOutcome::Cancelled);
    assert!(subs[0].1.as_deref().unwrap().contains("shutdown"), "{subs:?}");
    ledger.close().expect("the ledger closes after the stop");
}
