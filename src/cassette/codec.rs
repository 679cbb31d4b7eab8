//! The byte-level codec of a cassette: file header, record frames, and every record's body.
//!
//! Primitives: LEB128 varints for integers, fixed 20/32 bytes for addresses and hashes, U256 as a
//! length byte (0..=32) and its minimal big-endian bytes, byte strings and lists as a varint length
//! followed by the items. Decoding checks every length against what is left of the record before
//! it allocates, so a hostile length can never make it allocate more than the record holds.

use std::time::{Duration, Instant};

use alloy::{
    eips::{Decodable2718, Encodable2718},
    primitives::{Address, B256, Bytes, U256},
};

use super::{
    CassetteMeta, FailureKind, Record, RecordedFailure, StateAnswer, StateCall, TimedEvent,
};
use crate::{
    ingest::{self, Event, Head, PendingTx, ResyncReason},
    state::{AccountRead, BlockInfo, BlockRef, ReadRequest, ReadSet},
};

/// The first bytes of every cassette.
pub(crate) const MAGIC: [u8; 8] = *b"CNTLCAS\0";
/// The format version this build writes and reads.
pub(crate) const VERSION: u16 = 1;
/// Header length: magic, version (u16 LE), reserved (u16 LE, zero).
pub(crate) const HEADER_LEN: usize = 12;
/// Frame prefix: payload length (u32 LE) and CRC-32 of the payload (u32 LE).
pub(crate) const FRAME_LEN: usize = 8;
/// Largest payload of one record (a full read with the code of many contracts fits easily).
pub(crate) const MAX_RECORD_LEN: usize = 32 << 20;
/// Longest free-text string (meta note, failure detail).
const MAX_TEXT: usize = 4096;

/// Record kinds on disk.
pub(crate) mod kind {
    pub(crate) const META: u8 = 1;
    pub(crate) const HEAD: u8 = 2;
    pub(crate) const PENDING: u8 = 3;
    pub(crate) const REORG: u8 = 4;
    pub(crate) const CONNECTION: u8 = 5;
    pub(crate) const RESYNC: u8 = 6;
    pub(crate) const BLOCK: u8 = 16;
    pub(crate) const LATEST: u8 = 17;
    pub(crate) const READ: u8 = 18;
    pub(crate) const FAILED: u8 = 19;
    /// A `BLOCK` whose touched addresses include every holder its logs name.
    pub(crate) const BLOCK_NAMED: u8 = 20;
    /// A `LATEST` whose touched addresses include every holder its logs name.
    pub(crate) const LATEST_NAMED: u8 = 21;
    pub(crate) const END: u8 = 31;
}

/// What is wrong with one record's bytes: the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub(crate) field: &'static str,
    pub(crate) detail: String,
}

impl DecodeError {
    pub(crate) fn new(field: &'static str, detail: impl Into<String>) -> Self {
        Self { field, detail: detail.into() }
    }
}

type Res<T> = Result<T, DecodeError>;

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, reflected), table-driven.
// ---------------------------------------------------------------------------------------------

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 of `data`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

// ---------------------------------------------------------------------------------------------
// Encoder.
// ---------------------------------------------------------------------------------------------

/// Appends primitives to a buffer.
pub(crate) struct Enc<'a>(pub(crate) &'a mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }

    fn var(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn len(&mut self, n: usize) {
        self.var(n as u64);
    }

    fn addr(&mut self, a: &Address) {
        self.0.extend_from_slice(a.as_slice());
    }

    fn b256(&mut self, h: &B256) {
        self.0.extend_from_slice(h.as_slice());
    }

    fn u256(&mut self, v: &U256) {
        let bytes = v.to_be_bytes::<32>();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        self.u8((32 - skip) as u8);
        self.0.extend_from_slice(&bytes[skip..]);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    fn text(&mut self, s: &str) {
        // Longer text is cut at a char boundary so the decoder's cap always holds.
        let mut end = s.len().min(MAX_TEXT);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes(&s.as_bytes()[..end]);
    }

    fn opt_var(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.var(v);
            }
            None => self.u8(0),
        }
    }

    fn addrs(&mut self, list: &[Address]) {
        self.len(list.len());
        for a in list {
            self.addr(a);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoder.
// ---------------------------------------------------------------------------------------------

/// Reads primitives from one record's payload, every read bounds-checked.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    const fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, field: &'static str) -> Res<&'a [u8]> {
        if n > self.remaining() {
            return Err(DecodeError::new(
                field,
                format!("needs {n} bytes, the record has {} left", self.remaining()),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, field: &'static str) -> Res<u8> {
        Ok(self.take(1, field)?[0])
    }

    fn bool(&mut self, field: &'static str) -> Res<bool> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::new(field, format!("{b} is not a boolean (0 or 1)"))),
        }
    }

    fn var(&mut self, field: &'static str) -> Res<u64> {
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8(field)?;
            let bits = u64::from(b & 0x7F);
            if i == 9 && bits > 1 {
                return Err(DecodeError::new(field, "varint overflows 64 bits"));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::new(field, "varint longer than 10 bytes"))
    }

    /// A list length whose items take at least `min_item` bytes each: never more than the record
    /// could hold, so a hostile count cannot make the caller allocate.
    fn count(&mut self, field: &'static str, min_item: usize) -> Res<usize> {
        let n = self.var(field)?;
        let most = self.remaining() / min_item.max(1);
        if n > most as u64 {
            return Err(DecodeError::new(
                field,
                format!("{n} items cannot fit in the {} bytes left", self.remaining()),
            ));
        }
        Ok(n as usize)
    }

    fn addr(&mut self, field: &'static str) -> Res<Address> {
        Ok(Address::from_slice(self.take(20, field)?))
    }

    fn b256(&mut self, field: &'static str) -> Res<B256> {
        Ok(B256::from_slice(self.take(32, field)?))
    }

    fn u256(&mut self, field: &'static str) -> Res<U256> {
        let n = self.u8(field)? as usize;
        if n > 32 {
            return Err(DecodeError::new(field, format!("a 256-bit integer has {n} bytes")));
        }
        let bytes = self.take(n, field)?;
        let mut full = [0u8; 32];
        full[32 - n..].copy_from_slice(bytes);
        Ok(U256::from_be_bytes(full))
    }

    fn bytes(&mut self, field: &'static str) -> Res<&'a [u8]> {
        let n = self.count(field, 1)?;
        self.take(n, field)
    }

    fn text(&mut self, field: &'static str) -> Res<String> {
        let b = self.bytes(field)?;
        if b.len() > MAX_TEXT {
            return Err(DecodeError::new(
                field,
                format!("text of {} bytes (max {MAX_TEXT})", b.len()),
            ));
        }
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::new(field, "not UTF-8"))
    }

    fn opt_var(&mut self, field: &'static str) -> Res<Option<u64>> {
        Ok(if self.bool(field)? { Some(self.var(field)?) } else { None })
    }

    fn addrs(&mut self, field: &'static str) -> Res<Vec<Address>> {
        let n = self.count(field, 20)?;
        (0..n).map(|_| self.addr(field)).collect()
    }

    fn end(&self) -> Res<()> {
        if self.remaining() != 0 {
            return Err(DecodeError::new(
                "record",
                format!("{} bytes left over after the last field", self.remaining()),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Records.
// ---------------------------------------------------------------------------------------------

/// The file header.
pub(crate) fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Checks a file header.
pub(crate) fn check_header(h: &[u8; HEADER_LEN]) -> Res<()> {
    if h[..8] != MAGIC {
        return Err(DecodeError::new("magic", "not a cantilever cassette"));
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != VERSION {
        return Err(DecodeError::new(
            "version",
            format!("format version {version}; this build reads version {VERSION}"),
        ));
    }
    if h[10..12] != [0, 0] {
        return Err(DecodeError::new("reserved", "reserved header bytes are not zero"));
    }
    Ok(())
}

/// Appends the frame (length, CRC, payload) of `rec` to `out`; returns the record's kind.
pub(crate) fn encode_frame(rec: &Record, out: &mut Vec<u8>) -> u8 {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_LEN]);
    let kind = encode_record(rec, out);
    let payload = &out[start + FRAME_LEN..];
    let len = payload.len() as u32;
    let crc = crc32(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    kind
}

/// Appends the payload (kind byte and body) of `rec`; returns the kind.
pub(crate) fn encode_record(rec: &Record, out: &mut Vec<u8>) -> u8 {
    let mut e = Enc(out);
    match rec {
        Record::Meta(m) => {
            e.u8(kind::META);
            e.var(m.chain_id);
            e.var(m.block_time_ms);
            e.var(m.started_unix_ms);
            match &m.executor {
                Some(a) => {
                    e.u8(1);
                    e.addr(a);
                }
                None => e.u8(0),
            }
            e.addrs(&m.venues);
            e.addrs(&m.tokens);
            e.addrs(&m.lenders);
            e.addrs(&m.watched);
            e.text(&m.note);
            kind::META
        }
        Record::Event(t) => encode_event(&mut e, t),
        Record::Answer(a) => encode_answer(&mut e, a),
        Record::End { records } => {
            e.u8(kind::END);
            e.var(*records);
            kind::END
        }
    }
}

fn encode_event(e: &mut Enc<'_>, t: &TimedEvent) -> u8 {
    let k = match &t.event {
        Event::Head(_) => kind::HEAD,
        Event::Pending(_) => kind::PENDING,
        Event::Reorg { .. } => kind::REORG,
        Event::Connection { .. } => kind::CONNECTION,
        Event::Resync { .. } => kind::RESYNC,
    };
    e.u8(k);
    e.var(t.offset_ns);
    e.var(t.event.chain_id());
    match &t.event {
        Event::Head(h) => {
            e.var(h.number);
            e.b256(&h.hash);
            e.b256(&h.parent_hash);
            e.var(h.timestamp);
            e.opt_var(h.base_fee);
            e.var(h.gas_limit);
        }
        Event::Pending(p) => {
            let tx = &p.tx;
            e.addr(&tx.inner.signer());
            e.opt_var(tx.block_number);
            e.opt_var(tx.transaction_index);
            e.opt_var(tx.block_timestamp);
            match &tx.block_hash {
                Some(h) => {
                    e.u8(1);
                    e.b256(h);
                }
                None => e.u8(0),
            }
            match tx.effective_gas_price {
                Some(p) => {
                    e.u8(1);
                    e.u256(&U256::from(p));
                }
                None => e.u8(0),
            }
            e.bytes(&tx.inner.inner().encoded_2718());
        }
        Event::Reorg { depth, common_ancestor, .. } => {
            e.var(*depth);
            e.var(common_ancestor.number);
            e.b256(&common_ancestor.hash);
        }
        Event::Connection { up, .. } => e.bool(*up),
        Event::Resync { reason, .. } => match reason {
            ResyncReason::Lagged { missed } => {
                e.u8(0);
                e.var(*missed);
            }
            ResyncReason::DeepReorg { below } => {
                e.u8(1);
                e.var(*below);
            }
            ResyncReason::GapTooLarge { from, to } => {
                e.u8(2);
                e.var(*from);
                e.var(*to);
            }
            ResyncReason::BackfillFailed { hash } => {
                e.u8(3);
                e.b256(hash);
            }
        },
    }
    k
}

fn encode_block_info(e: &mut Enc<'_>, info: &BlockInfo) {
    let b = &info.block;
    e.var(b.number);
    e.b256(&b.hash);
    e.b256(&b.parent_hash);
    e.var(b.timestamp);
    e.var(b.base_fee);
    e.var(b.gas_limit);
    e.var(b.gas_used);
    e.addr(&b.coinbase);
    e.b256(&b.prevrandao);
    e.addrs(&info.touched);
}

fn encode_answer(e: &mut Enc<'_>, a: &StateAnswer) -> u8 {
    match a {
        StateAnswer::Block(info) => {
            let k = if info.names_holders { kind::BLOCK_NAMED } else { kind::BLOCK };
            e.u8(k);
            encode_block_info(e, info);
            k
        }
        StateAnswer::Latest(info) => {
            let k = if info.names_holders { kind::LATEST_NAMED } else { kind::LATEST };
            e.u8(k);
            encode_block_info(e, info);
            k
        }
        StateAnswer::Read { at, set } => {
            e.u8(kind::READ);
            e.b256(at);
            e.len(set.accounts.len());
            for acc in &set.accounts {
                e.addr(&acc.address);
                e.u256(&acc.balance);
                e.var(acc.nonce);
                match &acc.code {
                    Some(code) => {
                        e.u8(1);
                        e.bytes(code);
                    }
                    None => e.u8(0),
                }
            }
            e.len(set.slots.len());
            for (addr, slot, value) in &set.slots {
                e.addr(addr);
                e.u256(slot);
                e.u256(value);
            }
            kind::READ
        }
        StateAnswer::Failed { call, failure } => {
            e.u8(kind::FAILED);
            match call {
                StateCall::Block(h) => {
                    e.u8(0);
                    e.b256(h);
                }
                StateCall::Latest => e.u8(1),
                StateCall::Read { at, req } => {
                    e.u8(2);
                    e.b256(at);
                    e.len(req.accounts.len());
                    for (a, code) in &req.accounts {
                        e.addr(a);
                        e.bool(*code);
                    }
                    e.len(req.slots.len());
                    for (a, s) in &req.slots {
                        e.addr(a);
                        e.u256(s);
                    }
                }
            }
            e.u8(match failure.kind {
                FailureKind::UnknownBlock => 0,
                FailureKind::Transport => 1,
                FailureKind::Malformed => 2,
            });
            e.text(&failure.method);
            e.text(&failure.detail);
            kind::FAILED
        }
    }
}

/// Decodes one record's payload. Events get `received_at = epoch + offset`.
pub(crate) fn decode_record(payload: &[u8], epoch: Instant) -> Res<Record> {
    let mut d = Dec::new(payload);
    let k = d.u8("kind")?;
    let rec = match k {
        kind::META => Record::Meta(CassetteMeta {
            chain_id: d.var("meta.chain_id")?,
            block_time_ms: d.var("meta.block_time_ms")?,
            started_unix_ms: d.var("meta.started_unix_ms")?,
            executor: if d.bool("meta.executor")? { Some(d.addr("meta.executor")?) } else { None },
            venues: d.addrs("meta.venues")?,
            tokens: d.addrs("meta.tokens")?,
            lenders: d.addrs("meta.lenders")?,
            watched: d.addrs("meta.watched")?,
            note: d.text("meta.note")?,
        }),
        kind::HEAD | kind::PENDING | kind::REORG | kind::CONNECTION | kind::RESYNC => {
            Record::Event(decode_event(&mut d, k, epoch)?)
        }
        kind::BLOCK | kind::BLOCK_NAMED => {
            let info = decode_block_info(&mut d, k == kind::BLOCK_NAMED)?;
            Record::Answer(StateAnswer::Block(info))
        }
        kind::LATEST | kind::LATEST_NAMED => {
            let info = decode_block_info(&mut d, k == kind::LATEST_NAMED)?;
            Record::Answer(StateAnswer::Latest(info))
        }
        kind::READ => {
            let at = d.b256("read.at")?;
            let n = d.count("read.accounts", 20 + 1 + 1 + 1)?;
            let mut accounts = Vec::with_capacity(n);
            for _ in 0..n {
                let address = d.addr("read.account.address")?;
                let balance = d.u256("read.account.balance")?;
                let nonce = d.var("read.account.nonce")?;
                let code = if d.bool("read.account.code")? {
                    Some(Bytes::copy_from_slice(d.bytes("read.account.code")?))
                } else {
                    None
                };
                accounts.push(AccountRead { address, balance, nonce, code });
            }
            let n = d.count("read.slots", 20 + 1 + 1)?;
            let mut slots = Vec::with_capacity(n);
            for _ in 0..n {
                slots.push((
                    d.addr("read.slot.address")?,
                    d.u256("read.slot.key")?,
                    d.u256("read.slot.value")?,
                ));
            }
            Record::Answer(StateAnswer::Read { at, set: ReadSet { accounts, slots } })
        }
        kind::FAILED => {
            let call = match d.u8("failed.call")? {
                0 => StateCall::Block(d.b256("failed.block")?),
                1 => StateCall::Latest,
                2 => {
                    let at = d.b256("failed.read.at")?;
                    let n = d.count("failed.read.accounts", 21)?;
                    let mut accounts = Vec::with_capacity(n);
                    for _ in 0..n {
                        accounts.push((
                            d.addr("failed.read.account")?,
                            d.bool("failed.read.with_code")?,
                        ));
                    }
                    let n = d.count("failed.read.slots", 21)?;
                    let mut slots = Vec::with_capacity(n);
                    for _ in 0..n {
                        slots.push((d.addr("failed.read.slot")?, d.u256("failed.read.slot")?));
                    }
                    StateCall::Read { at, req: ReadRequest { accounts, slots } }
                }
                c => return Err(DecodeError::new("failed.call", format!("unknown call tag {c}"))),
            };
            let kind = match d.u8("failed.kind")? {
                0 => FailureKind::UnknownBlock,
                1 => FailureKind::Transport,
                2 => FailureKind::Malformed,
                c => {
                    return Err(DecodeError::new(
                        "failed.kind",
                        format!("unknown failure tag {c}"),
                    ));
                }
            };
            let failure = RecordedFailure {
                kind,
                method: d.text("failed.method")?,
                detail: d.text("failed.detail")?,
            };
            Record::Answer(StateAnswer::Failed { call, failure })
        }
        kind::END => Record::End { records: d.var("end.records")? },
        other => return Err(DecodeError::new("kind", format!("unknown record kind {other}"))),
    };
    d.end()?;
    Ok(rec)
}

fn decode_event(d: &mut Dec<'_>, k: u8, epoch: Instant) -> Res<TimedEvent> {
    let offset_ns = d.var("event.offset_ns")?;
    let chain_id = d.var("event.chain_id")?;
    let received_at = epoch.checked_add(Duration::from_nanos(offset_ns)).unwrap_or(epoch);
    let event = match k {
        kind::HEAD => Event::Head(Head {
            chain_id,
            number: d.var("head.number")?,
            hash: d.b256("head.hash")?,
            parent_hash: d.b256("head.parent_hash")?,
            timestamp: d.var("head.timestamp")?,
            base_fee: d.opt_var("head.base_fee")?,
            gas_limit: d.var("head.gas_limit")?,
            received_at,
        }),
        kind::PENDING => {
            let sender = d.addr("pending.sender")?;
            let block_number = d.opt_var("pending.block_number")?;
            let transaction_index = d.opt_var("pending.transaction_index")?;
            let block_timestamp = d.opt_var("pending.block_timestamp")?;
            let block_hash = if d.bool("pending.block_hash")? {
                Some(d.b256("pending.block_hash")?)
            } else {
                None
            };
            let effective_gas_price = if d.bool("pending.effective_gas_price")? {
                let v = d.u256("pending.effective_gas_price")?;
                Some(u128::try_from(v).map_err(|_| {
                    DecodeError::new("pending.effective_gas_price", "does not fit 128 bits")
                })?)
            } else {
                None
            };
            let raw = d.bytes("pending.raw")?;
            let envelope = alloy::consensus::TxEnvelope::decode_2718_exact(raw).map_err(|e| {
                DecodeError::new("pending.raw", format!("not a signed transaction: {e}"))
            })?;
            let tx = alloy::rpc::types::Transaction {
                inner: alloy::consensus::transaction::Recovered::new_unchecked(envelope, sender),
                block_hash,
                block_number,
                transaction_index,
                effective_gas_price,
                block_timestamp,
            };
            Event::Pending(Box::new(PendingTx { chain_id, tx, received_at }))
        }
        kind::REORG => Event::Reorg {
            chain_id,
            depth: d.var("reorg.depth")?,
            common_ancestor: ingest::BlockRef {
                number: d.var("reorg.ancestor.number")?,
                hash: d.b256("reorg.ancestor.hash")?,
            },
        },
        kind::CONNECTION => Event::Connection { chain_id, up: d.bool("connection.up")? },
        _ => {
            let reason = match d.u8("resync.reason")? {
                0 => ResyncReason::Lagged { missed: d.var("resync.missed")? },
                1 => ResyncReason::DeepReorg { below: d.var("resync.below")? },
                2 => ResyncReason::GapTooLarge {
                    from: d.var("resync.from")?,
                    to: d.var("resync.to")?,
                },
                3 => ResyncReason::BackfillFailed { hash: d.b256("resync.hash")? },
                c => {
                    return Err(DecodeError::new(
                        "resync.reason",
                        format!("unknown reason tag {c}"),
                    ));
                }
            };
            Event::Resync { chain_id, reason }
        }
    };
    Ok(TimedEvent { offset_ns, event })
}

fn decode_block_info(d: &mut Dec<'_>, names_holders: bool) -> Res<BlockInfo> {
    let block = BlockRef {
        number: d.var("block.number")?,
        hash: d.b256("block.hash")?,
        parent_hash: d.b256("block.parent_hash")?,
        timestamp: d.var("block.timestamp")?,
        base_fee: d.var("block.base_fee")?,
        gas_limit: d.var("block.gas_limit")?,
        gas_used: d.var("block.gas_used")?,
        coinbase: d.addr("block.coinbase")?,
        prevrandao: d.b256("block.prevrandao")?,
    };
    Ok(BlockInfo { block, touched: d.addrs("block.touched")?, names_holders })
}
