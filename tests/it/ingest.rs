//! Ingest against a private anvil node per test (these tests mine, reorg and stop automine):
//! heads in order, `anvil_reorg`, full pending transactions, and backfill after a restart.

use std::time::Duration;

use alloy::{
    network::TransactionBuilder,
    primitives::{B256, U256},
    providers::{Provider, ext::AnvilApi},
    rpc::types::{
        TransactionRequest,
        anvil::{ReorgOptions, TransactionData},
    },
};
use cantilever::{
    config::EndpointUrl,
    devnet::{AnvilNode, AnvilOptions},
    ingest::{
        self, BlockRef, Event, EventReceiver, Head, IngestCounters, IngestHandle, LiveConfig,
    },
};

use crate::harness::{provider, reader};

/// Safety deadline for any one expected event (not a speed assertion).
const DEADLINE: Duration = Duration::from_secs(30);

fn node() -> AnvilNode {
    AnvilNode::spawn(&AnvilOptions::default()).expect("private anvil node")
}

fn start(node: &AnvilNode, resume_from: Option<BlockRef>) -> (IngestHandle, EventReceiver) {
    let (tx, rx) = ingest::channels(1024, 1024);
    let cfg = LiveConfig::new(
        node.chain_id(),
        EndpointUrl::new(node.ws_url()).unwrap(),
        EndpointUrl::new(node.http_url()).unwrap(),
    );
    (ingest::live::spawn(cfg, tx, resume_from).expect("ingest starts"), rx)
}

/// The next event on the heads channel.
async fn next(rx: &EventReceiver) -> Event {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(e) = rx.heads.try_recv() {
            return e;
        }
        assert!(tokio::time::Instant::now() < deadline, "no event within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The next head, skipping connection events; panics on a reorg or resync.
async fn next_head(rx: &EventReceiver) -> Head {
    loop {
        match next(rx).await {
            Event::Head(h) => return h,
            Event::Connection { up: true, .. } => {}
            other => panic!("expected a head, got {other:?}"),
        }
    }
}

/// Starts ingest and returns once the node's current head has been emitted.
async fn started(node: &AnvilNode) -> (IngestHandle, EventReceiver, Head) {
    let (handle, rx) = start(node, None);
    assert!(matches!(next(&rx).await, Event::Connection { up: true, .. }));
    let head = next_head(&rx).await;
    (handle, rx, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_heads_arrive_in_order() {
    let node = node();
    let (handle, rx, first) = started(&node).await;
    assert_eq!(first.number, 0);
    assert_eq!(first.chain_id, node.chain_id());
    let p = reader(&node.http_url());
    p.anvil_mine(Some(3), None).await.unwrap();
    let mut prev = first;
    for n in 1..=3 {
        let h = next_head(&rx).await;
        assert_eq!(h.number, n);
        assert_eq!(h.parent_hash, prev.hash, "parent link of #{n}");
        let block = p.get_block_by_number(n.into()).await.unwrap().unwrap();
        assert_eq!(h.hash, block.header.hash);
        assert_eq!(h.timestamp, block.header.timestamp);
        assert!(h.base_fee.is_some() && h.gas_limit > 0);
        prev = h;
    }
    let c = handle.counters();
    assert_eq!(IngestCounters::read(&c.heads), 4);
    assert_eq!(IngestCounters::read(&c.reorgs), 0);
    assert_eq!(IngestCounters::read(&c.resyncs), 0);
    assert!(rx.heads.try_recv().is_err(), "nothing else was emitted");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_anvil_reorg_depth_2_emits_reorg_and_the_new_branch() {
    let node = node();
    let (handle, rx, _) = started(&node).await;
    let p = reader(&node.http_url());
    p.anvil_mine(Some(5), None).await.unwrap();
    let mut old: Vec<Head> = Vec::new();
    for _ in 0..5 {
        old.push(next_head(&rx).await);
    }
    assert_eq!(old[4].number, 5);

    // Replace blocks 4 and 5; a transaction in the new block 4 makes its hash differ for sure.
    let keys = node.keys();
    let tx = TransactionRequest::default()
        .with_from(keys[0].address())
        .with_to(keys[1].address())
        .with_value(U256::from(1));
    p.anvil_reorg(ReorgOptions { depth: 2, tx_block_pairs: vec![(TransactionData::JSON(tx), 0)] })
        .await
        .unwrap();

    let ancestor = &old[2];
    assert_eq!(ancestor.number, 3);
    match next(&rx).await {
        Event::Reorg { chain_id, depth, common_ancestor } => {
            assert_eq!(chain_id, node.chain_id());
            assert_eq!(depth, 2);
            assert_eq!(common_ancestor, ancestor.block_ref());
        }
        other => panic!("expected a reorg, got {other:?}"),
    }
    let new4 = next_head(&rx).await;
    assert_eq!(new4.number, 4);
    assert_eq!(new4.parent_hash, ancestor.hash);
    assert_ne!(new4.hash, old[3].hash);
    let new5 = next_head(&rx).await;
    assert_eq!(new5.number, 5);
    assert_eq!(new5.parent_hash, new4.hash);
    let canonical = p.get_block_by_number(5.into()).await.unwrap().unwrap();
    assert_eq!(new5.hash, canonical.header.hash);
    assert_eq!(IngestCounters::read(&handle.counters().reorgs), 1);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_pending_tx_arrives_with_hash_and_sender() {
    let node = node();
    let (handle, rx, _) = started(&node).await;
    let http = node.http_url();
    reader(&http).anvil_set_auto_mine(false).await.unwrap();
    let key = &node.keys()[3];
    let p = provider(&http, key);
    let tx =
        TransactionRequest::default().with_to(node.keys()[4].address()).with_value(U256::from(7));
    let sent = p.send_transaction(tx).await.unwrap();
    let hash: B256 = *sent.tx_hash();

    let deadline = tokio::time::Instant::now() + DEADLINE;
    let pending = loop {
        if let Ok(Event::Pending(tx)) = rx.pending.try_recv() {
            break tx;
        }
        assert!(tokio::time::Instant::now() < deadline, "no pending tx within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(pending.hash(), hash);
    assert_eq!(pending.from(), key.address());
    assert_eq!(pending.to(), Some(node.keys()[4].address()));
    assert_eq!(pending.chain_id, node.chain_id());
    assert_eq!(IngestCounters::read(&handle.counters().pending), 1);

    // Mined, it shows up as the next head.
    reader(&http).anvil_mine(Some(1), None).await.unwrap();
    let h = next_head(&rx).await;
    assert_eq!(h.number, 1);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_restart_from_an_old_head_backfills_the_gap_in_order() {
    let node = node();
    let p = reader(&node.http_url());
    let (handle, rx, _) = started(&node).await;
    p.anvil_mine(Some(1), None).await.unwrap();
    let last = next_head(&rx).await;
    assert_eq!(last.number, 1);
    handle.stop().await;
    drop(rx);

    // Four blocks while ingest is down.
    p.anvil_mine(Some(4), None).await.unwrap();

    let (handle, rx) = start(&node, Some(last.block_ref()));
    assert!(matches!(next(&rx).await, Event::Connection { up: true, .. }));
    let mut prev = last;
    for n in 2..=5 {
        let h = next_head(&rx).await;
        assert_eq!(h.number, n, "backfilled in order");
        assert_eq!(h.parent_hash, prev.hash);
        prev = h;
    }
    let c = handle.counters();
    assert_eq!(IngestCounters::read(&c.backfilled), 3, "#2–#4 fetched by hash before #5");
    assert_eq!(IngestCounters::read(&c.resyncs), 0);
    // And it keeps following the chain.
    p.anvil_mine(Some(1), None).await.unwrap();
    assert_eq!(next_head(&rx).await.number, 6);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_slow_engine_lag_is_counted_and_resynced_without_losing_heads() {
    let node = node();
    // A tiny heads channel and subscription buffer: while the engine does not read, the ingest
    // task waits on the full channel and alloy's subscription buffer overflows.
    let (tx, rx) = ingest::channels(1, 1024);
    let mut cfg = LiveConfig::new(
        node.chain_id(),
        EndpointUrl::new(node.ws_url()).unwrap(),
        EndpointUrl::new(node.http_url()).unwrap(),
    );
    cfg.head_subscription_capacity = 2;
    cfg.pending = false;
    let handle = ingest::live::spawn(cfg, tx, None).unwrap();
    let c = handle.counters().clone();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !c.connected.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reader(&node.http_url()).anvil_mine(Some(12), None).await.unwrap();
    while IngestCounters::read(&c.head_send_stalls) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the heads channel never filled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the 12 notifications reach alloy's 2-slot buffer while the ingest task waits (a settle
    // time on loopback, not a speed assertion); the lag is seen on its next `recv()`.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The engine catches up: every block from 0 to 12 exactly once, in order, with a resync.
    let mut numbers = Vec::new();
    let mut resyncs = 0;
    while numbers.last() != Some(&12) {
        match next(&rx).await {
            Event::Head(h) => numbers.push(h.number),
            Event::Resync { reason: ingest::ResyncReason::Lagged { missed }, .. } => {
                assert!(missed > 0);
                resyncs += 1;
            }
            Event::Connection { up: true, .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(numbers, (0..=12).collect::<Vec<u64>>());
    assert!(resyncs >= 1);
    assert!(IngestCounters::read(&c.lagged_heads) > 0);
    assert!(IngestCounters::read(&c.head_send_stalls) >= 1);
    assert!(IngestCounters::read(&c.backfilled) >= 1, "missed heads were fetched");
    handle.stop().await;
}
