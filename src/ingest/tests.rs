//! Unit tests of the head tracker: a fake node (blocks by hash) and a synchronous driver.

use std::collections::HashMap;
use std::time::Instant;

use alloy::primitives::{B256, keccak256};

use super::*;

const CHAIN: u64 = 138;

/// Hash of block `n` on branch `fork` (branch 0 is the original chain). A branch `f` shares
/// blocks below its fork point with branch 0: see [`Node::fork`].
fn h(n: u64, fork: u8) -> B256 {
    let mut b = [0u8; 9];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[8] = fork;
    keccak256(b)
}

/// A fake node: every block it ever produced, by hash, and its canonical chain.
#[derive(Default)]
struct Node {
    blocks: HashMap<B256, Head>,
    canonical: Vec<Head>,
}

impl Node {
    /// A chain of blocks 0..=tip on branch 0.
    fn new(tip: u64) -> Self {
        let mut node = Self::default();
        for n in 0..=tip {
            node.mine(0);
            assert_eq!(node.canonical.last().unwrap().number, n);
        }
        node
    }

    fn mine(&mut self, fork: u8) -> Head {
        let (number, parent_hash) = match self.canonical.last() {
            Some(p) => (p.number + 1, p.hash),
            None => (0, B256::ZERO),
        };
        let head = Head {
            chain_id: CHAIN,
            number,
            hash: h(number, fork),
            parent_hash,
            timestamp: 1_700_000_000 + number * 2,
            base_fee: Some(1_000_000_000),
            gas_limit: 30_000_000,
            received_at: Instant::now(),
        };
        self.blocks.insert(head.hash, head.clone());
        self.canonical.push(head.clone());
        head
    }

    /// Replaces the last `depth` blocks with `len` new ones on branch `fork`; returns the new tip.
    fn fork(&mut self, depth: u64, len: u64, fork: u8) -> Head {
        for _ in 0..depth {
            self.canonical.pop();
        }
        let mut tip = None;
        for _ in 0..len {
            tip = Some(self.mine(fork));
        }
        tip.unwrap()
    }

    fn at(&self, n: u64) -> Head {
        self.canonical[n as usize].clone()
    }
}

/// Feeds `head` and performs every fetch against `node`; returns the events and the fetch count.
fn feed(t: &mut HeadTracker, node: &Node, head: Head) -> (Vec<Event>, u32) {
    let mut step = t.on_head(head);
    let mut events = Vec::new();
    let mut fetches = 0;
    loop {
        events.append(&mut step.events);
        let Some(hash) = step.fetch else {
            return (events, fetches);
        };
        fetches += 1;
        step = t.on_fetched(node.blocks.get(&hash).cloned());
    }
}

/// Events summarised: `H<n>` heads, `R<depth>@<ancestor>` reorgs, `S` resyncs.
fn summary(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Head(h) => format!("H{}", h.number),
            Event::Reorg { depth, common_ancestor, .. } => {
                format!("R{depth}@{}", common_ancestor.number)
            }
            Event::Resync { .. } => "S".into(),
            Event::Connection { .. } | Event::Pending(_) => "?".into(),
        })
        .collect()
}

fn tracker_at(node: &Node, n: u64) -> HeadTracker {
    let mut t = HeadTracker::new(CHAIN, 128);
    let (ev, _) = feed(&mut t, node, node.at(n));
    assert_eq!(summary(&ev), ["H".to_string() + &n.to_string()]);
    t
}

#[test]
fn heads_in_order_pass_through() {
    let node = Node::new(10);
    let mut t = tracker_at(&node, 5);
    for n in 6..=10 {
        let (ev, fetches) = feed(&mut t, &node, node.at(n));
        assert_eq!(summary(&ev), [format!("H{n}")]);
        assert_eq!(fetches, 0);
    }
    assert_eq!(t.tip(), Some(node.at(10).block_ref()));
}

#[test]
fn duplicates_are_dropped() {
    let node = Node::new(6);
    let mut t = tracker_at(&node, 5);
    let step = t.on_head(node.at(5));
    assert!(step.duplicate && step.events.is_empty() && step.fetch.is_none());
    feed(&mut t, &node, node.at(6));
    // An older head seen again.
    assert!(t.on_head(node.at(5)).duplicate);
    assert!(t.on_head(node.at(6)).duplicate);
}

#[test]
fn out_of_order_heads_are_emitted_once_in_order() {
    let node = Node::new(12);
    let mut t = tracker_at(&node, 10);
    // 12 arrives before 11: 11 is fetched and emitted first; the late 11 is a duplicate.
    let (ev, fetches) = feed(&mut t, &node, node.at(12));
    assert_eq!(summary(&ev), ["H11", "H12"]);
    assert_eq!(fetches, 1);
    let (ev, _) = feed(&mut t, &node, node.at(11));
    assert!(ev.is_empty());
}

#[test]
fn gaps_are_backfilled_in_order() {
    let node = Node::new(30);
    let mut t = tracker_at(&node, 10);
    let mut step = t.on_head(node.at(15));
    let mut backfilled = 0;
    let mut events = Vec::new();
    while let Some(hash) = step.fetch {
        events.append(&mut step.events);
        step = t.on_fetched(node.blocks.get(&hash).cloned());
    }
    backfilled += step.backfilled;
    events.append(&mut step.events);
    assert_eq!(summary(&events), ["H11", "H12", "H13", "H14", "H15"]);
    assert_eq!(backfilled, 4);
    // Parent links hold across the emitted heads.
    let heads: Vec<&Head> =
        events.iter().filter_map(|e| if let Event::Head(h) = e { Some(h) } else { None }).collect();
    for w in heads.windows(2) {
        assert_eq!(w[1].parent_hash, w[0].hash);
    }
}

#[test]
fn resume_backfills_after_the_last_seen_head() {
    let node = Node::new(20);
    let mut t = HeadTracker::resume(CHAIN, 128, node.at(14).block_ref());
    let (ev, fetches) = feed(&mut t, &node, node.at(20));
    assert_eq!(summary(&ev), ["H15", "H16", "H17", "H18", "H19", "H20"]);
    assert_eq!(fetches, 5);
}

#[test]
fn forks_of_depth_1_to_3_emit_reorg_then_the_new_branch() {
    for depth in 1..=3u64 {
        let mut node = Node::new(20);
        let mut t = tracker_at(&node, 0);
        for n in 1..=20 {
            feed(&mut t, &node, node.at(n));
        }
        // Same length: the last `depth` blocks replaced.
        let tip = node.fork(depth, depth, depth as u8);
        assert_eq!(tip.number, 20);
        let (ev, fetches) = feed(&mut t, &node, tip);
        let ancestor = 20 - depth;
        let mut want = vec![format!("R{depth}@{ancestor}")];
        want.extend((ancestor + 1..=20).map(|n| format!("H{n}")));
        assert_eq!(summary(&ev), want, "depth {depth}");
        assert_eq!(fetches, depth as u32 - 1);
        match &ev[0] {
            Event::Reorg { common_ancestor, chain_id, .. } => {
                assert_eq!(*chain_id, CHAIN);
                assert_eq!(*common_ancestor, node.at(ancestor).block_ref());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.tip(), Some(node.at(20).block_ref()));
        assert_eq!(t.hash_at(ancestor + 1), Some(h(ancestor + 1, depth as u8)));
    }
}

#[test]
fn longer_and_shorter_branches() {
    // A rollback of 2 then one block: the new head is below the old tip.
    let mut node = Node::new(10);
    let mut t = tracker_at(&node, 0);
    for n in 1..=10 {
        feed(&mut t, &node, node.at(n));
    }
    let tip = node.fork(2, 1, 7);
    let (ev, _) = feed(&mut t, &node, tip);
    assert_eq!(summary(&ev), ["R2@8", "H9"]);
    // A fork of depth 1 that is 3 blocks longer, reported only by its tip.
    let tip = node.fork(1, 4, 8);
    let (ev, fetches) = feed(&mut t, &node, tip);
    assert_eq!(summary(&ev), ["R1@8", "H9", "H10", "H11", "H12"]);
    assert_eq!(fetches, 3);
}

#[test]
fn fork_beyond_the_window_resyncs() {
    let mut node = Node::new(40);
    let mut t = HeadTracker::new(CHAIN, 8);
    for n in 0..=40 {
        feed(&mut t, &node, node.at(n));
    }
    // The tracker remembers 33..=40; a branch forking at 30 cannot join.
    let tip = node.fork(10, 10, 9);
    let (ev, _) = feed(&mut t, &node, tip.clone());
    assert_eq!(summary(&ev), ["S", "H40"]);
    assert!(matches!(ev[0], Event::Resync { reason: ResyncReason::DeepReorg { below: 33 }, .. }));
    assert_eq!(t.tip(), Some(tip.block_ref()));
    // It then follows the new branch normally.
    let next = node.mine(9);
    let (ev, _) = feed(&mut t, &node, next);
    assert_eq!(summary(&ev), ["H41"]);
}

#[test]
fn gap_larger_than_the_window_resyncs() {
    let node = Node::new(60);
    let mut t = HeadTracker::new(CHAIN, 8);
    feed(&mut t, &node, node.at(10));
    let (ev, fetches) = feed(&mut t, &node, node.at(60));
    assert_eq!(summary(&ev), ["S", "H60"]);
    assert_eq!(fetches, 0);
    assert!(matches!(
        ev[0],
        Event::Resync { reason: ResyncReason::GapTooLarge { from: 10, to: 60 }, .. }
    ));
}

#[test]
fn unfetchable_parent_resyncs() {
    let node = Node::new(20);
    let mut t = tracker_at(&node, 10);
    let step = t.on_head(node.at(13));
    assert!(step.fetch.is_some());
    let step = t.on_fetched(None);
    assert_eq!(summary(&step.events), ["S", "H13"]);
    // A block with the wrong hash is treated the same way.
    let mut t = tracker_at(&node, 10);
    let step = t.on_head(node.at(13));
    assert!(step.fetch.is_some());
    let step = t.on_fetched(Some(node.at(5)));
    assert_eq!(summary(&step.events), ["S", "H13"]);
}

#[test]
fn a_new_head_abandons_an_unfinished_walk() {
    let node = Node::new(20);
    let mut t = tracker_at(&node, 10);
    let step = t.on_head(node.at(13));
    assert!(t.is_resolving() && step.fetch.is_some());
    let (ev, _) = feed(&mut t, &node, node.at(14));
    assert_eq!(summary(&ev), ["H11", "H12", "H13", "H14"]);
    // A stray fetch result after that is ignored.
    assert!(t.on_fetched(Some(node.at(3))).events.is_empty());
}

#[test]
fn window_is_bounded() {
    let node = Node::new(300);
    let mut t = tracker_at(&node, 0);
    for n in 1..=300 {
        feed(&mut t, &node, node.at(n));
    }
    assert_eq!(t.hash_at(300 - 127), Some(node.at(173).hash));
    assert_eq!(t.hash_at(300 - 128), None);
}

fn dummy_tx() -> alloy::rpc::types::Transaction {
    use alloy::consensus::{Signed, TxEnvelope, TxLegacy};
    use alloy::primitives::{Address, Signature};
    let signed =
        Signed::new_unchecked(TxLegacy::default(), Signature::test_signature(), B256::ZERO);
    alloy::rpc::types::Transaction {
        inner: alloy::consensus::transaction::Recovered::new_unchecked(
            TxEnvelope::Legacy(signed),
            Address::ZERO,
        ),
        block_hash: None,
        block_number: None,
        transaction_index: None,
        effective_gas_price: None,
        block_timestamp: None,
    }
}

#[test]
fn pending_channel_drops_oldest_and_heads_wait() {
    let (tx, rx) = channels(2, 2);
    let counters = IngestCounters::default();
    let pending = |n: u64| PendingTx { chain_id: n, tx: dummy_tx(), received_at: Instant::now() };
    for n in 1..=5 {
        tx.send_pending(pending(n), &counters).unwrap();
    }
    assert_eq!(IngestCounters::read(&counters.dropped_pending), 3);
    let kept: Vec<u64> = rx.pending.try_iter().map(|e| e.chain_id()).collect();
    assert_eq!(kept, [4, 5], "the newest are kept");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let up = |chain_id| Event::Connection { chain_id, up: true };
        tx.send_head(up(1), &counters).await.unwrap();
        tx.send_head(up(2), &counters).await.unwrap();
        // Full: the third send waits until the engine reads.
        let reader = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let got: Vec<u64> = (0..3).map(|_| rx.heads.recv().unwrap().chain_id()).collect();
            (got, rx)
        });
        tx.send_head(up(3), &counters).await.unwrap();
        let (got, rx) = reader.join().unwrap();
        assert_eq!(got, [1, 2, 3], "no head is dropped, order kept");
        assert_eq!(IngestCounters::read(&counters.head_send_stalls), 1);
        drop(rx);
        assert_eq!(tx.send_head(up(4), &counters).await, Err(SendError));
    });
}
