//! Unit tests: round trips of every record kind, the decoder under hostile bytes, the cassette
//! source, and the event replay into the ingest channels.

use std::{sync::Arc, time::Instant};

use alloy::{
    consensus::{SignableTransaction, TxEip1559, TxEnvelope, transaction::Recovered},
    network::TxSignerSync,
    primitives::{Address, B256, Bytes, TxKind, U256, address, b256},
    signers::local::PrivateKeySigner,
};
use proptest::prelude::*;

use super::*;
use crate::{
    ingest::{self, Head, IngestCounters, PendingTx, ResyncReason},
    state::{AccountRead, BlockRef, SourceError, StateSource},
};

const A: Address = address!("0x00000000000000000000000000000000000000a1");
const B: Address = address!("0x00000000000000000000000000000000000000b2");
const H1: B256 = b256!("0x1111111111111111111111111111111111111111111111111111111111111111");
const H2: B256 = b256!("0x2222222222222222222222222222222222222222222222222222222222222222");

fn meta() -> CassetteMeta {
    CassetteMeta {
        chain_id: 138,
        block_time_ms: 2_000,
        started_unix_ms: 1_700_000_000_000,
        executor: Some(A),
        venues: vec![A, B],
        tokens: vec![B],
        lenders: vec![],
        watched: vec![A],
        note: "unit ✓".into(),
    }
}

fn head(number: u64, hash: B256, parent_hash: B256) -> Head {
    Head {
        chain_id: 138,
        number,
        hash,
        parent_hash,
        timestamp: 1_700_000_000 + number,
        base_fee: Some(7),
        gas_limit: 30_000_000,
        received_at: Instant::now(),
    }
}

fn pending(nonce: u64) -> PendingTx {
    let key = PrivateKeySigner::from_bytes(&B256::repeat_byte(7)).unwrap();
    let mut tx = TxEip1559 {
        chain_id: 138,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1,
        to: TxKind::Call(B),
        value: U256::from(12_345u64),
        input: Bytes::from_static(&[1, 2, 3]),
        ..Default::default()
    };
    let sig = key.sign_transaction_sync(&mut tx).unwrap();
    let envelope = TxEnvelope::from(tx.into_signed(sig));
    PendingTx {
        chain_id: 138,
        tx: alloy::rpc::types::Transaction {
            inner: Recovered::new_unchecked(envelope, key.address()),
            block_hash: None,
            block_number: None,
            transaction_index: None,
            effective_gas_price: Some(5),
            block_timestamp: None,
        },
        received_at: Instant::now(),
    }
}

/// Block 2 names its logs' holders (the kind recorded since they are kept); block 1 is a block
/// recorded before (both kinds round-trip).
fn block_info(number: u64, hash: B256, parent: B256) -> BlockInfo {
    BlockInfo {
        block: BlockRef {
            number,
            hash,
            parent_hash: parent,
            timestamp: 99,
            base_fee: 1_000_000_007,
            gas_limit: 30_000_000,
            gas_used: 21_000,
            coinbase: B,
            prevrandao: H2,
        },
        touched: vec![A, B],
        names_holders: number == 2,
    }
}

fn read_set() -> ReadSet {
    ReadSet {
        accounts: vec![
            AccountRead { address: A, balance: U256::MAX, nonce: u64::MAX, code: None },
            AccountRead {
                address: B,
                balance: U256::ZERO,
                nonce: 0,
                code: Some(Bytes::from_static(&[0x60, 0x00])),
            },
        ],
        slots: vec![(B, U256::ZERO, U256::from(5u64)), (B, U256::MAX, U256::from(1u64) << 200)],
    }
}

fn all_events() -> Vec<Event> {
    vec![
        Event::Connection { chain_id: 138, up: true },
        Event::Head(head(1, H1, B256::ZERO)),
        Event::Pending(Box::new(pending(0))),
        Event::Head(Head { base_fee: None, ..head(2, H2, H1) }),
        Event::Reorg {
            chain_id: 138,
            depth: 2,
            common_ancestor: ingest::BlockRef { number: 1, hash: H1 },
        },
        Event::Resync { chain_id: 138, reason: ResyncReason::Lagged { missed: 3 } },
        Event::Resync { chain_id: 138, reason: ResyncReason::DeepReorg { below: 9 } },
        Event::Resync { chain_id: 138, reason: ResyncReason::GapTooLarge { from: 1, to: 500 } },
        Event::Resync { chain_id: 138, reason: ResyncReason::BackfillFailed { hash: H2 } },
        Event::Connection { chain_id: 138, up: false },
    ]
}

fn all_answers() -> Vec<StateAnswer> {
    let failure = |kind, method: &str, detail: &str| RecordedFailure {
        kind,
        method: method.into(),
        detail: detail.into(),
    };
    vec![
        StateAnswer::Latest(block_info(1, H1, B256::ZERO)),
        StateAnswer::Block(block_info(2, H2, H1)),
        StateAnswer::Read { at: H1, set: read_set() },
        StateAnswer::Read { at: H2, set: ReadSet::default() },
        StateAnswer::Failed {
            call: StateCall::Block(H2),
            failure: failure(FailureKind::UnknownBlock, "eth_getBlockByHash", "header not found"),
        },
        StateAnswer::Failed {
            call: StateCall::Latest,
            failure: failure(FailureKind::Transport, "eth_getBlockByNumber", ""),
        },
        StateAnswer::Failed {
            call: StateCall::Read {
                at: H2,
                req: ReadRequest { accounts: vec![(A, true)], slots: vec![(B, U256::from(3u64))] },
            },
            failure: failure(FailureKind::Malformed, "eth_getTransactionCount", "nonce too big"),
        },
    ]
}

/// A finished cassette holding every record kind, as bytes.
fn sample_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.cas");
    let w = CassetteWriter::create(&path, meta()).unwrap();
    for (i, e) in all_events().iter().enumerate() {
        w.append(&Record::Event(TimedEvent { offset_ns: i as u64 * 1_000, event: e.clone() }))
            .unwrap();
    }
    for a in all_answers() {
        w.answer(a).unwrap();
    }
    let stats = w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(stats.bytes, bytes.len() as u64);
    bytes
}

#[test]
fn cassette_every_record_kind_round_trips() {
    let bytes = sample_bytes();
    let c = Cassette::from_bytes(&bytes, "all.cas").unwrap();
    assert!(c.complete);
    assert_eq!(c.meta, meta());
    let events = all_events();
    assert_eq!(c.events.len(), events.len());
    for (i, (got, want)) in c.events.iter().zip(&events).enumerate() {
        assert_eq!(got.offset_ns, i as u64 * 1_000);
        assert!(same_event(&got.event, want), "event {i}: {:?} != {want:?}", got.event);
    }
    assert_eq!(c.answers, all_answers());
    assert_eq!(c.stats.heads.count, 2);
    assert_eq!(c.stats.pending.count, 1);
    assert_eq!(c.stats.markers.count, 7);
    assert_eq!(c.stats.answers.count, 7);
    assert_eq!(c.stats.reads.count, 2);
    assert_eq!(c.stats.records, 1 + 10 + 7 + 1);
    assert_eq!(c.stats.bytes, bytes.len() as u64);
}

#[test]
fn cassette_reader_streams_records_in_order() {
    let bytes = sample_bytes();
    let mut r = CassetteReader::new(&bytes[..], "all.cas").unwrap();
    assert_eq!(r.meta().chain_id, 138);
    let mut kinds = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        kinds.push(match rec {
            Record::Meta(_) => 'm',
            Record::Event(_) => 'e',
            Record::Answer(_) => 'a',
            Record::End { .. } => 'z',
        });
    }
    assert_eq!(kinds.iter().collect::<String>(), "eeeeeeeeeeaaaaaaaz");
    assert!(r.ended());
    assert!(r.next_record().unwrap().is_none());
}

#[test]
fn cassette_interrupted_file_loads_as_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.cas");
    {
        let w = CassetteWriter::create(&path, meta()).unwrap();
        w.event(&Event::Head(head(1, H1, B256::ZERO))).unwrap();
        // Dropped without finish: flushed, no end record.
    }
    let c = Cassette::load(&path).unwrap();
    assert!(!c.complete);
    assert_eq!(c.events.len(), 1);
}

#[test]
fn cassette_writer_refuses_records_after_finish() {
    let dir = tempfile::tempdir().unwrap();
    let w = CassetteWriter::create(&dir.path().join("x.cas"), meta()).unwrap();
    w.finish().unwrap();
    let e = w.event(&Event::Connection { chain_id: 1, up: true }).unwrap_err();
    assert!(matches!(e, CassetteError::Closed { .. }), "{e}");
    assert!(w.finish().is_err());
}

#[test]
fn cassette_sizes_are_compact() {
    let c = Cassette::from_bytes(&sample_bytes(), "all.cas").unwrap();
    // A head: 8-byte frame, kind, offset, chain id, number, two hashes, timestamp, base fee, gas.
    assert!(c.stats.heads.per_record() <= 100, "{}", c.stats);
    // A signed EIP-1559 transfer with 3 bytes of input is ~115 bytes raw.
    assert!(c.stats.pending.per_record() <= 160, "{}", c.stats);
}

fn err_of(bytes: &[u8]) -> String {
    match Cassette::from_bytes(bytes, "t.cas") {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn cassette_decoder_names_file_record_and_field() {
    let good = sample_bytes();
    assert!(
        err_of(&good[..5]).contains("t.cas: record 0, field `header`"),
        "{}",
        err_of(&good[..5])
    );
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(err_of(&bad).contains("field `magic`"), "{}", err_of(&bad));
    let mut bad = good.clone();
    bad[8] = 9;
    assert!(err_of(&bad).contains("format version 9"), "{}", err_of(&bad));
    // Cut in the middle of the third record.
    let cut = good.len() - 40;
    let e = err_of(&good[..cut]);
    assert!(e.contains("t.cas: record ") && e.contains("cut short"), "{e}");
    // A flipped payload byte fails the checksum of record 1 (meta).
    let mut bad = good.clone();
    bad[codec::HEADER_LEN + codec::FRAME_LEN + 2] ^= 0x40;
    assert!(err_of(&bad).contains("record 1, field `frame.crc`"), "{}", err_of(&bad));
    // A hostile length.
    let mut bad = good.clone();
    bad[codec::HEADER_LEN..codec::HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(err_of(&bad).contains("field `frame.length`"), "{}", err_of(&bad));
    // Data after the end record.
    let mut bad = good;
    bad.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(err_of(&bad).contains("after the end record"), "{}", err_of(&bad));
}

/// A frame with a valid checksum around `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&codec::crc32(payload).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header, a valid meta record and `frames`.
fn file_with(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = codec::header().to_vec();
    codec::encode_frame(&Record::Meta(CassetteMeta::default()), &mut out);
    for f in frames {
        out.extend_from_slice(f);
    }
    out
}

#[test]
fn cassette_hostile_counts_never_allocate() {
    // A read claiming 2^62 accounts in a 40-byte record.
    let mut p = vec![codec::kind::READ];
    p.extend_from_slice(&[0u8; 32]);
    p.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    let e = err_of(&file_with(&[frame(&p)]));
    assert!(e.contains("record 2, field `read.accounts`") && e.contains("cannot fit"), "{e}");
    // An overlong varint.
    let p = [codec::kind::END, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    let e = err_of(&file_with(&[frame(&p)]));
    assert!(e.contains("field `end.records`"), "{e}");
    // A U256 of 33 bytes.
    let mut p = vec![codec::kind::READ];
    p.extend_from_slice(&[0u8; 32]);
    p.extend_from_slice(&[1]);
    p.extend_from_slice(&[0u8; 20]);
    p.push(33);
    p.extend_from_slice(&[0u8; 40]);
    let e = err_of(&file_with(&[frame(&p)]));
    assert!(e.contains("field `read.account.balance`") && e.contains("33 bytes"), "{e}");
    // An unknown kind, a bad boolean, a transaction that does not decode.
    let e = err_of(&file_with(&[frame(&[200])]));
    assert!(e.contains("unknown record kind 200"), "{e}");
    let e = err_of(&file_with(&[frame(&[codec::kind::CONNECTION, 0, 1, 7])]));
    assert!(e.contains("field `connection.up`"), "{e}");
    let mut p = vec![codec::kind::PENDING, 0, 1];
    p.extend_from_slice(&[0u8; 20]);
    p.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0x02, 0xc0, 0x80]);
    let e = err_of(&file_with(&[frame(&p)]));
    assert!(e.contains("field `pending.raw`"), "{e}");
    // Trailing bytes.
    let e = err_of(&file_with(&[frame(&[codec::kind::END, 1, 0])]));
    assert!(e.contains("left over"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn cassette_decoder_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Cassette::from_bytes(&bytes, "r.cas");
        let mut with_header = codec::header().to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = Cassette::from_bytes(&with_header, "r.cas");
    }

    #[test]
    fn cassette_decoder_survives_random_payloads(payload in proptest::collection::vec(any::<u8>(), 1..512)) {
        // Valid frames, so the body decoders themselves see the garbage.
        let e = err_of(&file_with(&[frame(&payload)]));
        prop_assert!(e == "ok" || e.starts_with("t.cas: record 2, field `"), "{}", e);
    }

    #[test]
    fn cassette_decoder_reports_truncation(cut in 0usize..10_000) {
        let good = sample_bytes();
        let cut = cut % good.len();
        let e = err_of(&good[..cut]);
        prop_assert!(e == "ok" || e.starts_with("t.cas: record "), "{}", e);
    }

    #[test]
    fn cassette_decoder_reports_mutation(at in 0usize..10_000, xor in 1u8..=255) {
        let mut bytes = sample_bytes();
        let at = at % bytes.len();
        bytes[at] ^= xor;
        let e = err_of(&bytes);
        prop_assert!(e.starts_with("t.cas: record "), "a flipped byte at {} went unnoticed: {}", at, e);
    }
}

// ---------------------------------------------------------------------------------------------
// Sources.
// ---------------------------------------------------------------------------------------------

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn cassette_source_answers_recorded_calls_and_names_misses() {
    let src = CassetteSource::new(&all_answers()[..4]);
    block_on(async {
        assert_eq!(src.latest().await.unwrap(), block_info(1, H1, B256::ZERO));
        assert_eq!(src.latest().await.unwrap().block.hash, H1, "the last latest() repeats");
        // With a recorded failure after it: the same sequence again.
        let seq = CassetteSource::new(&all_answers());
        assert!(seq.latest().await.is_ok());
        assert!(seq.latest().await.is_err());
        assert!(seq.latest().await.is_err());
        assert_eq!(src.block(H2).await.unwrap(), block_info(2, H2, H1));
        assert_eq!(src.block(H1).await.unwrap().block.number, 1, "latest() answers index blocks");

        // Any subset of what was read at a block, in any order.
        let req = ReadRequest {
            accounts: vec![(B, true), (A, false)],
            slots: vec![(B, U256::MAX), (B, U256::ZERO)],
        };
        let got = src.read(H1, &req).await.unwrap();
        assert_eq!(got.accounts[0], read_set().accounts[1]);
        assert_eq!(got.accounts[1], read_set().accounts[0]);
        assert_eq!(got.slots, vec![read_set().slots[1], read_set().slots[0]]);

        // Misses name the call and the key; never retryable.
        let e = src.read(H1, &ReadRequest { accounts: vec![(A, true)], slots: vec![] }).await;
        let e = e.unwrap_err();
        assert!(!e.is_retryable());
        assert!(
            e.to_string()
                .contains("not recorded: code of 0x00000000000000000000000000000000000000A1"),
            "{e}"
        );
        let e = src
            .read(H1, &ReadRequest { accounts: vec![], slots: vec![(A, U256::from(9u64))] })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("slot 0x9 of"), "{e}");
        let e = src.block(B256::repeat_byte(9)).await.unwrap_err();
        assert!(
            e.to_string().contains("cassette") && e.to_string().contains("block(0x0909"),
            "{e}"
        );

        // Recorded failures fail the same way.
        let e = CassetteSource::new(&[]).latest().await.unwrap_err();
        assert!(e.to_string().contains("latest(): not recorded"), "{e}");
        let only_failures: Vec<StateAnswer> = all_answers().into_iter().skip(4).collect();
        let f = CassetteSource::new(&only_failures);
        assert!(matches!(f.block(H2).await, Err(SourceError::UnknownBlock { .. })));
        let e = f.latest().await.unwrap_err();
        assert!(e.to_string().contains("recorded failure"), "{e}");
        let req = ReadRequest { accounts: vec![(A, true)], slots: vec![(B, U256::from(3u64))] };
        let e = f.read(H2, &req).await.unwrap_err();
        assert!(e.to_string().contains("nonce too big"), "{e}");
    });
}

/// A source answering from fixed data, failing on an unknown hash.
#[derive(Clone)]
struct Fixed;

impl StateSource for Fixed {
    async fn block(&self, hash: B256) -> Result<BlockInfo, SourceError> {
        if hash == H2 {
            Ok(block_info(2, H2, H1))
        } else {
            Err(SourceError::UnknownBlock {
                block: hash.to_string(),
                detail: "header not found".into(),
            })
        }
    }

    async fn latest(&self) -> Result<BlockInfo, SourceError> {
        Ok(block_info(1, H1, B256::ZERO))
    }

    async fn read(&self, at: B256, req: &ReadRequest) -> Result<ReadSet, SourceError> {
        Ok(ReadSet {
            accounts: req
                .accounts
                .iter()
                .map(|(a, code)| AccountRead {
                    address: *a,
                    balance: U256::from(at.0[0]),
                    nonce: 3,
                    code: code.then(|| Bytes::from_static(&[0xfe])),
                })
                .collect(),
            slots: req.slots.iter().map(|(a, s)| (*a, *s, *s + U256::from(1u64))).collect(),
        })
    }
}

#[test]
fn cassette_recording_source_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.cas");
    let writer = Arc::new(CassetteWriter::create(&path, meta()).unwrap());
    let rec = RecordingSource::new(Fixed, writer.clone());
    let req = ReadRequest {
        accounts: vec![(A, true), (B, false)],
        slots: vec![(A, U256::from(1u64)), (B, U256::from(2u64))],
    };
    let live = block_on(async {
        (
            rec.latest().await.unwrap(),
            rec.block(H2).await.unwrap(),
            rec.block(H1).await.unwrap_err(),
            rec.read(H2, &req).await.unwrap(),
        )
    });
    writer.finish().unwrap();
    let c = Cassette::load(&path).unwrap();
    assert_eq!(c.answers.len(), 4);
    let src = c.source();
    block_on(async {
        assert_eq!(src.latest().await.unwrap(), live.0);
        assert_eq!(src.block(H2).await.unwrap(), live.1);
        match src.block(H1).await.unwrap_err() {
            SourceError::UnknownBlock { detail, .. } => assert_eq!(detail, "header not found"),
            other => panic!("{other}"),
        }
        assert_eq!(src.read(H2, &req).await.unwrap(), live.3);
    });
}

// ---------------------------------------------------------------------------------------------
// Replay.
// ---------------------------------------------------------------------------------------------

fn replayed(replay: EventReplay, clock: ReplayClock, cap: usize) -> Vec<Event> {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async move {
        let (tx, rx) = ingest::channels(cap, cap);
        let replay = replay.lossless(rx.pending.clone());
        let handle = replay.spawn(tx, clock);
        let mut out = Vec::new();
        // The engine's way: heads channel first, until both channels close.
        loop {
            if let Ok(e) = rx.heads.try_recv() {
                out.push(e);
            } else if let Ok(e) = rx.pending.try_recv() {
                out.push(e);
            } else if handle.is_finished() && rx.heads.is_empty() && rx.pending.is_empty() {
                break;
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        let c = handle.counters().clone();
        let stats = handle.wait().await.unwrap();
        assert_eq!(stats.pending, IngestCounters::read(&c.pending));
        assert_eq!(IngestCounters::read(&c.dropped_pending), 0);
        out
    })
}

#[test]
fn cassette_replay_sends_every_event_in_order() {
    let c = Cassette::from_bytes(&sample_bytes(), "all.cas").unwrap();
    let before = Instant::now();
    let got = replayed(c.replay(), ReplayClock::full_speed(), 1024);
    // Two channels: order is kept within each (the consumer drains heads first).
    let is_pending = |e: &&Event| matches!(e, Event::Pending(_));
    let want = all_events();
    let (want_p, want_h): (Vec<&Event>, Vec<&Event>) = want.iter().partition(is_pending);
    let (got_p, got_h): (Vec<&Event>, Vec<&Event>) = got.iter().partition(is_pending);
    assert_eq!((got_h.len(), got_p.len()), (want_h.len(), want_p.len()));
    for (g, w) in got_h.iter().zip(&want_h).chain(got_p.iter().zip(&want_p)) {
        assert!(same_event(g, w), "{g:?} != {w:?}");
        if let Event::Head(h) = g {
            assert!(h.received_at >= before, "stamped when sent");
        }
    }
}

#[test]
fn cassette_replay_lossless_never_drops_pending() {
    let events: Vec<TimedEvent> = (0..200)
        .map(|i| TimedEvent { offset_ns: i * 10, event: Event::Pending(Box::new(pending(i))) })
        .collect();
    let got = replayed(EventReplay::new(events), ReplayClock::scaled(1_000.0), 4);
    assert_eq!(got.len(), 200);
    for (i, e) in got.iter().enumerate() {
        let Event::Pending(p) = e else { panic!("{e:?}") };
        assert_eq!(alloy::consensus::Transaction::nonce(&p.tx), i as u64);
    }
}

#[test]
fn cassette_replay_clock_positions() {
    let full = ReplayClock::full_speed();
    assert!(full.is_full_speed() && full.due(5).is_none());
    let c = ReplayClock::scaled(2.0).starting_at_unix_ms(1_000);
    let start = c.due(0).unwrap();
    assert_eq!(c.due(2_000_000_000).unwrap() - start, std::time::Duration::from_secs(1));
    assert!(ReplayClock::scaled(f64::NAN).is_full_speed());
    assert!(ReplayClock::scaled(1e-300).due(u64::MAX).is_some(), "clamped, no overflow");
    c.advance(5_000_000);
    assert_eq!(c.clone().position_ns(), 5_000_000);
    assert_eq!(c.unix_ms(), 1_005);
}

#[test]
fn cassette_record_parses_watch_slots() {
    assert_eq!(
        record::parse_slot("0x00000000000000000000000000000000000000a1:0x10").unwrap(),
        (A, U256::from(16u64))
    );
    assert_eq!(record::parse_slot(&format!("{B}:7")).unwrap(), (B, U256::from(7u64)));
    assert!(record::parse_slot("0xa1").unwrap_err().contains("ADDRESS:SLOT"));
    assert!(record::parse_slot("nope:1").unwrap_err().contains("not an address"));
    assert!(record::parse_slot(&format!("{B}:x")).unwrap_err().contains("not a slot"));
}

#[test]
fn cassette_record_options_never_show_endpoints() {
    let opts = record::RecordOptions::new(
        crate::config::EndpointUrl::new("wss://node.example/v2/SECRETKEY").unwrap(),
        crate::config::EndpointUrl::new("https://node.example/v2/SECRETKEY").unwrap(),
        "x.cas".into(),
    );
    let s = format!("{opts:?}");
    assert!(!s.contains("SECRETKEY"), "{s}");
}
