//! WebSocket faults between `ingest::live` and a private anvil node, through [`WsProxy`].
//!
//! Every test asserts the head sequence the engine sees: every block number exactly once, in
//! order, whatever the fault (reset, blackhole, malformed frame, duplicates, reordering, headers
//! that do not decode), and the counters that tell an operator what happened. The deadlines below
//! are safety nets for a hung test, never speed assertions.

use std::{sync::atomic::Ordering, time::Duration};

use alloy::providers::{DynProvider, ext::AnvilApi};
use cantilever::{
    config::EndpointUrl,
    devnet::{AnvilNode, AnvilOptions},
    ingest::{self, Event, EventReceiver, IngestCounters, IngestHandle, LiveConfig},
};

use super::proxy::{Mode, WsProxy};
use crate::harness::reader;

/// Safety deadline for one expected event (not a speed assertion).
const DEADLINE: Duration = Duration::from_secs(30);

struct Feed {
    _node: AnvilNode,
    proxy: WsProxy,
    handle: IngestHandle,
    rx: EventReceiver,
    http: DynProvider,
}

/// A private anvil, a proxy in front of its WS port, and ingest through the proxy (HTTP
/// backfill goes straight to the node), with short fault budgets: alloy gives up after one
/// reconnect try, keepalive 300 ms, our reconnect backoff 100 ms to 1 s, every network step
/// bounded by 1 s, a quiet spell of `stale_after` polls the latest block. Returns once head #0
/// has been emitted.
async fn feed(stale_after: Duration) -> Feed {
    let node = AnvilNode::spawn(&AnvilOptions::default()).expect("private anvil node");
    let proxy = WsProxy::start(&node.ws_url()).await;
    let (tx, rx) = ingest::channels(1024, 1024);
    let mut cfg = LiveConfig::new(
        node.chain_id(),
        EndpointUrl::new(proxy.url.as_str()).unwrap(),
        EndpointUrl::new(node.http_url()).unwrap(),
    );
    cfg.pending = false;
    cfg.ws_max_retries = 1;
    cfg.ws_retry_interval = Duration::from_millis(100);
    cfg.ws_keepalive = Duration::from_millis(300);
    cfg.backoff_initial = Duration::from_millis(100);
    cfg.backoff_max = Duration::from_secs(1);
    cfg.request_timeout = Duration::from_secs(1);
    cfg.stale_after = stale_after;
    let handle = ingest::live::spawn(cfg, tx, None).expect("ingest starts");
    let http = reader(&node.http_url());
    let f = Feed { _node: node, proxy, handle, rx, http };
    let seen = f.until_head(0).await;
    assert_eq!(seen.heads, vec![0]);
    assert_eq!(seen.ups, 1);
    f
}

/// What arrived on the heads channel up to a given head.
#[derive(Debug, Default)]
struct Seen {
    heads: Vec<u64>,
    ups: usize,
    downs: usize,
    /// Whether a `Connection { up: true }` came after the last `up: false`.
    up_after_down: bool,
    others: Vec<String>,
}

impl Feed {
    /// Collects events until head `n`; panics past the safety deadline.
    async fn until_head(&self, n: u64) -> Seen {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut seen = Seen::default();
        loop {
            match self.rx.heads.try_recv() {
                Ok(Event::Head(h)) => {
                    seen.heads.push(h.number);
                    if h.number == n {
                        return seen;
                    }
                }
                Ok(Event::Connection { up: true, .. }) => {
                    seen.ups += 1;
                    seen.up_after_down = seen.downs > 0;
                }
                Ok(Event::Connection { up: false, .. }) => {
                    seen.downs += 1;
                    seen.up_after_down = false;
                }
                Ok(other) => seen.others.push(format!("{other:?}")),
                Err(_) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "head #{n} not seen within {DEADLINE:?}; so far {seen:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// Collects events until `Connection { up: false }`; panics on a head or past the deadline.
    async fn until_down(&self) -> Seen {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut seen = Seen::default();
        loop {
            match self.rx.heads.try_recv() {
                Ok(Event::Connection { up: false, .. }) => {
                    seen.downs += 1;
                    return seen;
                }
                Ok(other) => seen.others.push(format!("{other:?}")),
                Err(_) => {
                    assert!(tokio::time::Instant::now() < deadline, "never went down: {seen:?}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// Mines `n` blocks, one `evm_mine` each.
    async fn mine(&self, n: usize) {
        for _ in 0..n {
            self.http.evm_mine(None).await.expect("evm_mine");
        }
    }

    fn counter(&self, pick: fn(&IngestCounters) -> &std::sync::atomic::AtomicU64) -> u64 {
        IngestCounters::read(pick(self.handle.counters()))
    }
}

fn range(from: u64, to: u64) -> Vec<u64> {
    (from..=to).collect()
}

/// The connection drops and reconnects are refused while 3 blocks are mined: alloy gives up, the
/// session ends (`up: false`), and after the proxy recovers the feed reconnects and backfills
/// #1–#3 by hash, once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_for_three_blocks_backfills_every_block_once_in_order() {
    let f = feed(Duration::from_secs(30)).await;
    f.proxy.set(Mode::Refuse);
    f.proxy.reset();
    let down = f.until_down().await;
    assert!(down.others.is_empty(), "nothing but the drop: {down:?}");
    assert!(!f.handle.counters().connected.load(Ordering::Relaxed));
    f.mine(3).await;
    f.proxy.set(Mode::Forward);
    let seen = f.until_head(3).await;
    assert_eq!(seen.heads, range(1, 3), "{seen:?}");
    assert!(seen.up_after_down || seen.ups >= 1, "{seen:?}");
    assert!(seen.others.is_empty(), "no reorg or resync: {seen:?}");
    f.mine(1).await;
    assert_eq!(f.until_head(4).await.heads, vec![4], "no duplicate after the backfill");
    assert!(f.counter(|c| &c.reconnects) >= 1);
    assert_eq!(f.counter(|c| &c.backfilled), 2, "#1 and #2 fetched by hash before #3");
    assert_eq!(f.counter(|c| &c.heads), 5);
    assert_eq!(f.counter(|c| &c.resyncs), 0);
    assert!(f.handle.counters().connected.load(Ordering::Relaxed));
}

/// The live socket goes silent (no notification, no pong) while new connections work: alloy's
/// keepalive finds the missing pong and reconnects, silently and without replaying; the blocks
/// mined meanwhile are backfilled (by the next head or the quiet-spell poll), once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_socket_is_detected_and_missed_blocks_backfilled() {
    let f = feed(Duration::from_secs(2)).await;
    let sessions = f.proxy.sessions();
    f.proxy.freeze();
    f.mine(2).await;
    let seen = f.until_head(2).await;
    assert_eq!(seen.heads, range(1, 2), "{seen:?}");
    assert!(f.proxy.sessions() > sessions, "the silent socket was replaced");
    f.mine(1).await;
    let seen = f.until_head(3).await;
    assert_eq!(seen.heads, vec![3], "{seen:?}");
    assert!(f.counter(|c| &c.backfilled) >= 1, "a missed block was fetched by hash");
    assert_eq!(f.counter(|c| &c.heads), 4);
    assert_eq!(f.counter(|c| &c.duplicates), 0);
}

/// Every connection, old and new, is black-holed (accepted, never answered): the reconnect
/// attempts time out instead of hanging, the quiet-spell poll emits the blocks the node has and
/// ends the stale session (`up: false`), and the feed comes back when the network does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_of_every_connection_ends_the_stale_session_and_recovers() {
    let f = feed(Duration::from_millis(1500)).await;
    f.proxy.set(Mode::Blackhole);
    f.mine(2).await;
    let seen = f.until_head(2).await;
    assert_eq!(seen.heads, range(1, 2), "{seen:?}");
    if seen.downs == 0 {
        f.until_down().await;
    }
    assert!(f.counter(|c| &c.stale_sessions) >= 1);
    assert!(f.counter(|c| &c.backfilled) >= 1);
    f.proxy.set(Mode::Forward);
    f.mine(1).await;
    let seen = f.until_head(3).await;
    assert_eq!(seen.heads, vec![3], "{seen:?}");
    assert!(seen.ups >= 1, "reconnected: {seen:?}");
    assert!(f.counter(|c| &c.reconnects) >= 1);
}

/// One undecodable text frame tears alloy's connection down; it reconnects, and the blocks mined
/// straight after arrive once each, in order (missed ones backfilled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frame_reconnects_without_losing_a_block() {
    let f = feed(Duration::from_secs(2)).await;
    let sessions = f.proxy.sessions();
    f.proxy.inject(r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscr"#);
    f.mine(3).await;
    let seen = f.until_head(3).await;
    assert_eq!(seen.heads, range(1, 3), "{seen:?}");
    f.mine(1).await;
    assert_eq!(f.until_head(4).await.heads, vec![4]);
    assert!(f.proxy.sessions() > sessions, "the malformed frame forced a new connection");
    assert_eq!(f.counter(|c| &c.heads), 5);
    assert_eq!(f.counter(|c| &c.duplicates), 0);
}

/// Every notification twice: each duplicate is dropped and counted, no Head is emitted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_heads_emit_each_block_once() {
    let f = feed(Duration::from_secs(30)).await;
    f.proxy.set(Mode::Duplicate);
    f.mine(3).await;
    assert_eq!(f.until_head(3).await.heads, range(1, 3));
    f.proxy.set(Mode::Forward);
    f.mine(1).await;
    let seen = f.until_head(4).await;
    assert_eq!(seen.heads, vec![4], "the second copy of #3 emitted nothing: {seen:?}");
    assert_eq!(f.counter(|c| &c.duplicates), 3);
    assert_eq!(f.counter(|c| &c.heads), 5);
    assert_eq!(f.counter(|c| &c.reorgs) + f.counter(|c| &c.resyncs), 0);
}

/// Notifications pairwise out of order (2, 1, 4, 3): the early child makes the feed fetch its
/// parent, so the engine still sees 1, 2, 3, 4; the late parent is a counted duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_heads_are_put_in_order_without_duplicates() {
    let f = feed(Duration::from_secs(30)).await;
    f.proxy.set(Mode::Swap);
    f.mine(4).await;
    assert_eq!(f.until_head(4).await.heads, range(1, 4));
    f.proxy.set(Mode::Forward);
    f.mine(1).await;
    assert_eq!(f.until_head(5).await.heads, vec![5]);
    assert_eq!(f.counter(|c| &c.duplicates), 2, "#1 and #3 arrived late");
    assert_eq!(f.counter(|c| &c.backfilled), 2, "#1 and #3 fetched by hash");
    assert_eq!(f.counter(|c| &c.heads), 6);
    assert_eq!(f.counter(|c| &c.reorgs) + f.counter(|c| &c.resyncs), 0);
}

/// Notifications whose header does not decode are skipped by alloy without a word; the blocks
/// are backfilled by the next good head (or the quiet-spell poll), never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_headers_are_backfilled() {
    let f = feed(Duration::from_secs(2)).await;
    f.proxy.set(Mode::CorruptHeads);
    let before = f.proxy.heads();
    f.mine(2).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while f.proxy.heads() < before + 2 {
        assert!(tokio::time::Instant::now() < deadline, "the node never notified");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f.proxy.set(Mode::Forward);
    f.mine(1).await;
    let seen = f.until_head(3).await;
    assert_eq!(seen.heads, range(1, 3), "{seen:?}");
    assert!(f.counter(|c| &c.backfilled) >= 1);
    assert_eq!(f.counter(|c| &c.heads), 4);
}

/// Reconnects refused for good: alloy's budget runs out, `up: false` is emitted once, and our
/// own reconnects keep trying without spinning: the attempts counted over a 3 s window stay
/// within what the 100 ms–1 s backoff allows (a hot loop would make thousands). No head is
/// invented meanwhile, and the feed recovers when the proxy does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_reconnects_go_down_once_and_never_spin() {
    let f = feed(Duration::from_secs(30)).await;
    f.proxy.set(Mode::Refuse);
    f.proxy.reset();
    f.until_down().await;
    let before = f.proxy.attempts();
    let failures_before = f.counter(|c| &c.connect_failures);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = f.proxy.attempts() - before;
    // Delays of at least 75, 150, 300, 600, 750, 750 … ms: at most 7 attempts in 3 s.
    assert!((1..=10).contains(&attempts), "{attempts} connection attempts in 3 s");
    assert!(f.counter(|c| &c.connect_failures) > failures_before);
    assert!(!f.handle.counters().connected.load(Ordering::Relaxed));
    assert!(f.rx.heads.try_recv().is_err(), "nothing emitted while down");
    f.proxy.set(Mode::Forward);
    f.mine(1).await;
    let seen = f.until_head(1).await;
    assert_eq!(seen.heads, vec![1]);
    assert_eq!((seen.ups, seen.downs), (1, 0), "{seen:?}");
}
