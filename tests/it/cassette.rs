//! Cassettes against private anvil nodes (these tests mine, reorg and stop automine): a live
//! session replays as the same events in order, a cassette source answers exactly what the RPC
//! source answered, and `cantilever record` writes a cassette that replays.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    network::TransactionBuilder,
    primitives::{Address, B256, U256},
    providers::{Provider, ext::AnvilApi},
    rpc::types::{
        TransactionRequest,
        anvil::{ReorgOptions, TransactionData},
    },
};
use cantilever::{
    cassette::{
        Cassette, CassetteMeta, CassetteSource, CassetteWriter, RecordingSource, ReplayClock,
        same_event,
    },
    config::EndpointUrl,
    contracts::TestToken,
    devnet::{AnvilNode, AnvilOptions, deploy::confirm},
    ingest::{self, Event, EventReceiver, LiveConfig},
    state::{
        ReadRequest, Refresher, RefresherConfig, RpcSource, StateKey, StateSource, StateUpdate,
    },
};

use crate::harness::{deploy_token, provider, reader};

/// Safety deadline for anything awaited (not a speed assertion).
const DEADLINE: Duration = Duration::from_secs(60);

fn node() -> AnvilNode {
    AnvilNode::spawn(&AnvilOptions::default()).expect("private anvil node")
}

fn meta(node: &AnvilNode) -> CassetteMeta {
    CassetteMeta { chain_id: node.chain_id(), note: "it".into(), ..CassetteMeta::default() }
}

/// Moves every queued event into `seen` and the cassette, heads channel first.
fn drain(rx: &EventReceiver, writer: &CassetteWriter, seen: &mut Vec<Event>) {
    while let Ok(e) = rx.heads.try_recv().or_else(|_| rx.pending.try_recv()) {
        writer.event(&e).unwrap();
        seen.push(e);
    }
}

/// Drains until `done(seen)` holds.
async fn drain_until(
    rx: &EventReceiver,
    writer: &CassetteWriter,
    seen: &mut Vec<Event>,
    what: &str,
    done: impl Fn(&[Event]) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        drain(rx, writer, seen);
        if done(seen) {
            return;
        }
        assert!(Instant::now() < deadline, "no {what} within {DEADLINE:?}; saw {seen:#?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn head_numbered(n: u64) -> impl Fn(&[Event]) -> bool {
    move |seen| seen.iter().any(|e| matches!(e, Event::Head(h) if h.number == n))
}

/// Splits events by channel: (heads channel, pending channel).
fn by_channel(events: &[Event]) -> (Vec<&Event>, Vec<&Event>) {
    let (p, h): (Vec<&Event>, Vec<&Event>) =
        events.iter().partition(|e| matches!(e, Event::Pending(_)));
    (h, p)
}

/// Replays `cassette` at full speed and returns what a consumer receives.
async fn replay_all(cassette: &Cassette) -> Vec<Event> {
    let (tx, rx) = ingest::channels(1024, 1024);
    let handle =
        cassette.replay().lossless(rx.pending.clone()).spawn(tx, ReplayClock::full_speed());
    let mut out = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        match rx.heads.try_recv().or_else(|_| rx.pending.try_recv()) {
            Ok(e) => out.push(e),
            // Both channels close once the replay has sent everything.
            Err(_) if rx.heads.is_empty() && rx.pending.is_empty() && handle.is_finished() => break,
            Err(_) => {
                assert!(Instant::now() < deadline, "replay did not finish");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    handle.wait().await.expect("the replay finished");
    out
}

fn assert_same_per_channel(got: &[Event], want: &[Event]) {
    let (gh, gp) = by_channel(got);
    let (wh, wp) = by_channel(want);
    assert_eq!(gh.len(), wh.len(), "heads-channel events");
    assert_eq!(gp.len(), wp.len(), "pending events");
    for (i, (g, w)) in gh.iter().zip(&wh).chain(gp.iter().zip(&wp)).enumerate() {
        assert!(same_event(g, w), "event {i}: replayed {g:?}, recorded {w:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassette_live_session_replays_the_same_events_in_order() {
    let node = node();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.cas");
    let writer = CassetteWriter::create(&path, meta(&node)).unwrap();
    let (tx, rx) = ingest::channels(1024, 1024);
    let cfg = LiveConfig::new(
        node.chain_id(),
        EndpointUrl::new(node.ws_url()).unwrap(),
        EndpointUrl::new(node.http_url()).unwrap(),
    );
    let handle = ingest::live::spawn(cfg, tx, None).unwrap();
    let mut seen = Vec::new();
    drain_until(&rx, &writer, &mut seen, "first head", head_numbered(0)).await;

    let http = node.http_url();
    let p = reader(&http);
    p.anvil_mine(Some(3), None).await.unwrap();
    drain_until(&rx, &writer, &mut seen, "head 3", head_numbered(3)).await;

    // A pending transaction, then mined.
    p.anvil_set_auto_mine(false).await.unwrap();
    let keys = node.keys();
    let sent = provider(&http, &keys[3])
        .send_transaction(
            TransactionRequest::default().with_to(keys[4].address()).with_value(U256::from(7)),
        )
        .await
        .unwrap();
    let hash: B256 = *sent.tx_hash();
    drain_until(&rx, &writer, &mut seen, "pending tx", |s| {
        s.iter().any(|e| matches!(e, Event::Pending(t) if t.hash() == hash))
    })
    .await;
    p.anvil_mine(Some(1), None).await.unwrap();
    drain_until(&rx, &writer, &mut seen, "head 4", head_numbered(4)).await;

    // A reorg of depth 2 (a transaction makes the new block 3 differ for sure).
    let tx = TransactionRequest::default()
        .with_from(keys[0].address())
        .with_to(keys[1].address())
        .with_value(U256::from(1));
    p.anvil_reorg(ReorgOptions { depth: 2, tx_block_pairs: vec![(TransactionData::JSON(tx), 0)] })
        .await
        .unwrap();
    p.anvil_mine(Some(1), None).await.unwrap();
    drain_until(&rx, &writer, &mut seen, "reorg and new head 5", |s| {
        s.iter().any(|e| matches!(e, Event::Reorg { depth: 2, .. })) && head_numbered(5)(s)
    })
    .await;
    handle.stop().await;
    drain(&rx, &writer, &mut seen);
    let stats = writer.finish().unwrap();

    let cassette = Cassette::load(&path).unwrap();
    assert!(cassette.complete);
    assert_eq!(cassette.meta.chain_id, node.chain_id());
    assert_eq!(cassette.events.len(), seen.len());
    for (i, (c, s)) in cassette.events.iter().zip(&seen).enumerate() {
        assert!(same_event(&c.event, s), "record {i}");
    }
    assert!(cassette.events.windows(2).all(|w| {
        // Arrival offsets never go backwards within a channel's stamped events.
        !(matches!(w[0].event, Event::Head(_)) && matches!(w[1].event, Event::Head(_)))
            || w[0].offset_ns <= w[1].offset_ns
    }));
    assert_eq!(cassette.stats, stats);
    let replayed = replay_all(&cassette).await;
    assert_same_per_channel(&replayed, &seen);
    eprintln!("live session cassette: {stats}");
}

fn fields(u: &StateUpdate) -> String {
    format!(
        "{:?} {:?} {} {:?} {:?} {:?} {} {:?}",
        u.head, u.ancestor, u.full, u.accounts, u.slots, u.samples, u.blocks, u.touched
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassette_source_answers_exactly_what_the_rpc_source_answered() {
    let node = node();
    let http = node.http_url();
    let keys = node.keys();
    let owner = provider(&http, &keys[0]);
    let token = deploy_token(&owner, "CAS", 6).await;
    let t = TestToken::new(token, &owner);
    confirm(
        &owner,
        t.mint(keys[1].address(), U256::from(1_000_000u64)).send().await.unwrap(),
        "mint",
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.cas");
    let writer = Arc::new(CassetteWriter::create(&path, meta(&node)).unwrap());
    let rpc = RpcSource::new(reader(&http), 500);
    let cfg = || RefresherConfig { always: vec![keys[0].address()], ..RefresherConfig::default() };
    let watch: Vec<StateKey> = [token, keys[1].address(), keys[2].address()]
        .into_iter()
        .map(StateKey::Account)
        .chain((0u64..8).map(|s| StateKey::Slot(token, U256::from(s))))
        .collect();
    let mut live = Refresher::new(RecordingSource::new(rpc.clone(), writer.clone()), cfg());
    live.watch(watch.clone());
    let u0 = live.start().await.unwrap();

    // A transfer touches the token and both holders.
    let t1 = TestToken::new(token, provider(&http, &keys[1]));
    let r = confirm(
        &owner,
        t1.transfer(keys[2].address(), U256::from(250u64)).send().await.unwrap(),
        "transfer",
    )
    .await
    .unwrap();
    let h1 = r.block_hash.unwrap();
    let u1 = live.on_head(h1).await.unwrap().expect("an update for the new head");
    let late = StateKey::Slot(token, U256::from(99u64));
    live.watch([late]);
    let u2 = live.prefetch().await.unwrap().expect("the new key is read");
    let unknown = B256::repeat_byte(0xab);
    assert!(live.source().block(unknown).await.is_err());
    writer.finish().unwrap();

    // The same calls on the cassette give the same updates, with no node involved.
    let cassette = Cassette::load(&path).unwrap();
    let src: CassetteSource = cassette.source();
    let mut replay = Refresher::new(src.clone(), cfg());
    replay.watch(watch);
    assert_eq!(fields(&replay.start().await.unwrap()), fields(&u0));
    assert_eq!(fields(&replay.on_head(h1).await.unwrap().unwrap()), fields(&u1));
    replay.watch([late]);
    assert_eq!(fields(&replay.prefetch().await.unwrap().unwrap()), fields(&u2));

    // Direct calls equal the node's answers now.
    assert_eq!(src.block(h1).await.unwrap(), rpc.block(h1).await.unwrap());
    // (The transfer touched the sender and the token, not the recipient; code is read once.)
    let req = ReadRequest {
        accounts: vec![(keys[1].address(), false), (token, false)],
        slots: (0u64..8).map(|s| (token, U256::from(s))).collect(),
    };
    assert_eq!(src.read(h1, &req).await.unwrap(), rpc.read(h1, &req).await.unwrap());
    let code = ReadRequest { accounts: vec![(token, true)], slots: vec![] };
    let want = rpc.read(u0.head.hash, &code).await.unwrap();
    assert_eq!(src.read(u0.head.hash, &code).await.unwrap(), want);
    assert!(want.accounts[0].code.as_ref().is_some_and(|c| !c.is_empty()));
    let e = src.read(h1, &code).await.unwrap_err();
    assert!(e.to_string().contains("not recorded: code of"), "{e}");

    // Misses and recorded failures.
    let e = src.block(unknown).await.unwrap_err();
    assert!(e.to_string().contains("does not know block"), "{e}");
    let miss = ReadRequest { accounts: vec![], slots: vec![(token, U256::from(1234u64))] };
    let e = src.read(h1, &miss).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("not recorded: slot 0x4d2"), "{e}");
    let e = src.block(B256::repeat_byte(0xcd)).await.unwrap_err();
    assert!(e.to_string().contains("cassette"), "{e}");
    eprintln!("state cassette: {}", cassette.stats);
}

fn wait_exit(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn recorded_heads(c: &Cassette) -> Vec<u64> {
    c.events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Head(h) => Some(h.number),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassette_record_command_writes_a_cassette_that_replays() {
    let node = node();
    let http = node.http_url();
    let keys = node.keys();
    let (from, to) = (keys[3].address(), keys[4].address());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec.cas");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .args(["record", "--ws", &node.ws_url(), "--http", &http, "--blocks", "3"])
        .args(["--watch", &from.to_string(), "--watch", &to.to_string()])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(DEADLINE).expect("record started");
    assert!(first.starts_with("recording chain 31337 from block 0"), "{first}");

    // A pending transaction, mined in block 1; then blocks 2 and 3 end the recording.
    let p = reader(&http);
    p.anvil_set_auto_mine(false).await.unwrap();
    let sent = provider(&http, &keys[3])
        .send_transaction(TransactionRequest::default().with_to(to).with_value(U256::from(7)))
        .await
        .unwrap();
    let hash: B256 = *sent.tx_hash();
    // Let the pending notification arrive before the block is mined.
    let t0 = Instant::now();
    while p.get_transaction_by_hash(hash).await.unwrap().is_none() {
        assert!(t0.elapsed() < DEADLINE);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        p.anvil_mine(Some(1), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = wait_exit(&mut child, "cantilever record");
    assert!(status.success(), "record exited with {status}");
    let summary: Vec<String> = rx.try_iter().collect();
    assert!(summary.iter().any(|l| l.contains("3 heads") || l.contains("4 heads")), "{summary:?}");

    let cassette = Cassette::load(Path::new(&out)).unwrap();
    assert!(cassette.complete);
    assert_eq!(cassette.meta.chain_id, 31337);
    assert_eq!(cassette.meta.watched, vec![from, to]);
    let heads = recorded_heads(&cassette);
    assert_eq!(heads.last(), Some(&3), "{heads:?}");
    assert!(heads.windows(2).all(|w| w[1] == w[0] + 1), "{heads:?}");
    let pending: Vec<_> = cassette
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Pending(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].hash(), pending[0].from(), pending[0].to()), (hash, from, Some(to)));

    // The state answers of block 1 are the node's.
    let rpc = RpcSource::new(reader(&http), 500);
    let b1 = p.get_block_by_number(1.into()).await.unwrap().unwrap().header.hash;
    let src = cassette.source();
    assert_eq!(src.block(b1).await.unwrap(), rpc.block(b1).await.unwrap());
    let req = ReadRequest { accounts: vec![(from, false), (to, false)], slots: vec![] };
    let got = src.read(b1, &req).await.unwrap();
    assert_eq!(got, rpc.read(b1, &req).await.unwrap());
    assert_eq!(got.accounts[0].nonce, 1, "the sender's nonce after the mined transfer");
    let miss = ReadRequest { accounts: vec![(Address::repeat_byte(7), false)], slots: vec![] };
    assert!(src.read(b1, &miss).await.is_err());

    // And it replays as recorded.
    let recorded: Vec<Event> = cassette.events.iter().map(|e| e.event.clone()).collect();
    assert_same_per_channel(&replay_all(&cassette).await, &recorded);
    eprintln!("record command cassette: {}", cassette.stats);
}
