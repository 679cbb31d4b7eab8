//! The eth_call baselines: what a typical bot does per event instead of simulating in process.
//!
//! ```text
//!  engine (taps) ─▶ ProvedCandidate, ScreenedEvent per event ─┐
//!                                                             ▼
//!  Cassette ─▶ CassetteRpc (127.0.0.1, JSON-RPC) ◀─fork── anvil ◀── anvil_reset(block N)
//!                                          ▲ eth_simulateV1 per screened route / candidate (timed)
//! ```
//!
//! Two baselines, both one JSON-RPC call to anvil on loopback per call evaluated, at the same
//! block state: anvil is reset (untimed) to fork the head the engine traded on from
//! [`CassetteRpc`], a small JSON-RPC server answering from the cassette. The call is
//! `eth_simulateV1` (an `eth_call` that can put the backrun's victims ahead of the route, and
//! that reports the gas used) with the engine's block environment as block overrides and the
//! engine's calldata from the operator to the executor.
//!
//! - **Per screened route (a typical bot).** A typical bot has no native venue math: it
//!   evaluates every candidate route the event affects by `eth_call`. Each route the engine
//!   screened for the event is called once, at the size the engine found or at the route's
//!   minimum probe amount when sizing found no profit.
//! - **Sizing by eth_call (a typical bot that sizes).** Without native venue math a bot finds a
//!   route's size by asking the node: our own search, replayed with each input it evaluated
//!   natively sent as the route's call instead (one warm call per evaluation, after the
//!   per-screened-route calls warmed the fork), for every route screened for the event.
//! - **Per proven candidate.** Only the candidates the engine proved in revm (at most four per
//!   event), with the exact calldata it simulated; both sides must agree on status and gas.
//!
//! A baseline event costs the sum of its calls (one after another) plus the engine's own
//! signing time for the event (a bot signs too); the ratio is that against our end to end.
//!
//! State: the server answers a key at block N with the value recorded at the latest block ≤ N
//! that read it (the engine's cache holds exactly that: a value it did not re-read had not
//! changed for it). A key never recorded is a miss: a JSON-RPC error that fails the call (shown
//! as an error and counted, never answered as zero).
//!
//! Each candidate is called twice: the first (cold) call makes anvil fetch the state from the
//! server; the second (warm) call runs on anvil's cached fork, as a node holding the state
//! locally would. The warm call is the baseline (the baseline's best case); both are reported.

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use alloy::{
    consensus::Transaction as _,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder, ext::AnvilApi},
    rpc::types::anvil::Forking,
};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};

use super::BenchError;
use crate::{
    cassette::{Cassette, StateAnswer},
    devnet::{AnvilNode, AnvilOptions},
    engine::tap::{ProvedCandidate, ScreenedEvent, TapOutcome},
    ingest::Event,
    sim::NextBlock,
    state::BlockRef,
    telemetry::{EventKind, Percentiles},
};

/// How many missed keys and disagreements a report lists.
const SAMPLES: usize = 12;

/// Values by block number: the value at N is the one at the greatest recorded number ≤ N.
type Versions<T> = BTreeMap<u64, T>;

fn at<T: Clone>(m: Option<&Versions<T>>, n: u64) -> Option<T> {
    m?.range(..=n).next_back().map(|(_, v)| v.clone())
}

/// The first block that recorded a key.
fn first<T>(m: Option<&Versions<T>>) -> Option<u64> {
    m?.keys().next().copied()
}

/// The cassette's state by key and block number.
#[derive(Debug, Default)]
struct Index {
    chain_id: u64,
    blocks: BTreeMap<u64, BlockRef>,
    numbers: HashMap<B256, u64>,
    accounts: HashMap<Address, Versions<(U256, u64)>>,
    codes: HashMap<Address, Versions<Bytes>>,
    slots: HashMap<(Address, U256), Versions<U256>>,
}

impl Index {
    fn new(c: &Cassette) -> Self {
        let mut ix = Self { chain_id: c.meta.chain_id, ..Self::default() };
        for a in &c.answers {
            if let StateAnswer::Block(i) | StateAnswer::Latest(i) = a {
                ix.blocks.insert(i.block.number, i.block);
            }
        }
        // Heads the state source was never asked about still have headers.
        for t in &c.events {
            if let Event::Head(h) = &t.event {
                ix.blocks.entry(h.number).or_insert(BlockRef {
                    number: h.number,
                    hash: h.hash,
                    parent_hash: h.parent_hash,
                    timestamp: h.timestamp,
                    base_fee: h.base_fee.unwrap_or(0),
                    gas_limit: h.gas_limit,
                    ..BlockRef::default()
                });
            }
        }
        ix.numbers = ix.blocks.values().map(|b| (b.hash, b.number)).collect();
        for a in &c.answers {
            let StateAnswer::Read { at, set } = a else { continue };
            let Some(&n) = ix.numbers.get(at) else { continue };
            for acc in &set.accounts {
                ix.accounts.entry(acc.address).or_default().insert(n, (acc.balance, acc.nonce));
                if let Some(code) = &acc.code {
                    ix.codes.entry(acc.address).or_default().insert(n, code.clone());
                }
            }
            for (addr, slot, v) in &set.slots {
                ix.slots.entry((*addr, *slot)).or_default().insert(n, *v);
            }
        }
        ix
    }

    fn latest(&self) -> u64 {
        self.blocks.keys().next_back().copied().unwrap_or(0)
    }

    /// The block a JSON-RPC block parameter names.
    fn block_of(&self, v: Option<&Value>) -> Result<u64, String> {
        let v = match v {
            None | Some(Value::Null) => return Ok(self.latest()),
            Some(Value::Object(o)) => o
                .get("blockNumber")
                .or_else(|| o.get("blockHash"))
                .ok_or("block parameter without blockNumber or blockHash")?,
            Some(v) => v,
        };
        let s = v.as_str().ok_or_else(|| format!("block parameter {v}"))?;
        match s {
            "latest" | "pending" | "safe" | "finalized" => Ok(self.latest()),
            "earliest" => Ok(self.blocks.keys().next().copied().unwrap_or(0)),
            h if h.len() == 66 => {
                let hash: B256 = h.parse().map_err(|_| format!("block hash {h}"))?;
                self.numbers.get(&hash).copied().ok_or_else(|| format!("unknown block {h}"))
            }
            n => u64::from_str_radix(n.trim_start_matches("0x"), 16)
                .map_err(|_| format!("block number {n}")),
        }
    }

    fn header(&self, n: u64) -> Result<Value, String> {
        let Some(b) = self.blocks.get(&n) else { return Ok(Value::Null) };
        let header = alloy::rpc::types::Header {
            hash: b.hash,
            inner: alloy::consensus::Header {
                parent_hash: b.parent_hash,
                number: b.number,
                timestamp: b.timestamp,
                base_fee_per_gas: Some(b.base_fee),
                gas_limit: b.gas_limit,
                gas_used: b.gas_used,
                beneficiary: b.coinbase,
                mix_hash: b.prevrandao,
                blob_gas_used: Some(0),
                excess_blob_gas: Some(0),
                ..Default::default()
            },
            total_difficulty: None,
            size: None,
        };
        let mut v = serde_json::to_value(&header).map_err(|e| e.to_string())?;
        if let Value::Object(o) = &mut v {
            o.insert("transactions".into(), json!([]));
            o.insert("uncles".into(), json!([]));
            o.insert("withdrawals".into(), json!([]));
        }
        Ok(v)
    }
}

fn param<T: serde::de::DeserializeOwned>(p: &[Value], i: usize, what: &str) -> Result<T, String> {
    let v = p.get(i).ok_or_else(|| format!("missing {what}"))?;
    serde_json::from_value(v.clone()).map_err(|e| format!("{what}: {e}"))
}

/// A JSON-RPC endpoint on 127.0.0.1 answering from a cassette's recorded state, for
/// `anvil --fork-url`. It stops when dropped.
#[derive(Debug)]
pub struct CassetteRpc {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    index: Index,
    requests: AtomicU64,
    misses: AtomicU64,
    samples: Mutex<Vec<String>>,
    /// Accounts the engine gave an assumed state (victims it holds no account for): balance and
    /// nonce, no code.
    assumed: Mutex<HashMap<Address, (U256, u64)>>,
    /// Answers taken from `assumed`.
    assumed_answers: AtomicU64,
    /// With synthetic pools, as the bench's state source ([`super::SynthSource`]) answers.
    synthetic: Option<Synthetic>,
    /// Keys never recorded answered as zero (synthetic runs only).
    zero_answers: AtomicU64,
}

/// Synthetic pools: each copy's own state is its original's at the pin block, and a key never
/// recorded reads as zero (as [`super::SynthSource`] answers the engine).
#[derive(Clone, Debug, Default)]
pub struct Synthetic {
    /// Synthetic address → the real pool it copies.
    pub map: HashMap<Address, Address>,
    /// The block the copies' state is read at (the warm-up block).
    pub pin: u64,
}

impl Shared {
    /// The address and block whose recorded state answers `a` at `n`.
    fn source_of(&self, a: Address, n: u64) -> (Address, u64) {
        match self.synthetic.as_ref().and_then(|s| Some((*s.map.get(&a)?, s.pin))) {
            Some(real) => real,
            None => (a, n),
        }
    }

    /// A value never recorded: zero in a synthetic run (counted), else a miss.
    fn unrecorded<T: Default>(&self) -> Option<T> {
        self.synthetic.as_ref()?;
        self.zero_answers.fetch_add(1, Ordering::Relaxed);
        Some(T::default())
    }

    /// An account's balance and nonce at `n`: recorded, else assumed.
    fn account(&self, a: Address, n: u64) -> Option<(U256, u64)> {
        let (real, n) = self.source_of(a, n);
        at(self.index.accounts.get(&real), n)
            .or_else(|| {
                let got = self.assumed.lock().ok()?.get(&a).copied()?;
                self.assumed_answers.fetch_add(1, Ordering::Relaxed);
                Some(got)
            })
            .or_else(|| self.unrecorded())
    }

    /// An account's code at `n`: recorded, else none for an assumed account.
    fn code(&self, a: Address, n: u64) -> Option<Bytes> {
        let (real, n) = self.source_of(a, n);
        at(self.index.codes.get(&real), n)
            .or_else(|| {
                let assumed = self.assumed.lock().ok()?.contains_key(&a);
                assumed.then(Bytes::new)
            })
            .or_else(|| self.unrecorded())
    }

    /// A storage slot at `n`.
    fn slot(&self, a: Address, slot: U256, n: u64) -> Option<U256> {
        let (real, n) = self.source_of(a, n);
        at(self.index.slots.get(&(real, slot)), n).or_else(|| self.unrecorded())
    }

    fn call(&self, method: &str, p: &[Value]) -> Result<Value, String> {
        let ix = &self.index;
        let hex = |n: u64| Value::String(format!("{n:#x}"));
        let miss = |what: String, n: u64, later: Option<u64>| {
            let later = later.map_or(String::new(), |l| format!(" (first recorded at block {l})"));
            format!("cassette: {what} not recorded at or before block {n}{later}")
        };
        match method {
            "eth_chainId" => Ok(hex(ix.chain_id)),
            "net_version" => Ok(Value::String(ix.chain_id.to_string())),
            "web3_clientVersion" => Ok(json!("cantilever-cassette")),
            "eth_blockNumber" => Ok(hex(ix.latest())),
            // Not state: the latest recorded base fee (at least 1 gwei).
            "eth_gasPrice" => {
                Ok(hex(ix.blocks.values().next_back().map_or(0, |b| b.base_fee).max(1_000_000_000)))
            }
            "eth_getBlockByNumber" => ix.header(ix.block_of(p.first())?),
            "eth_getBlockByHash" => {
                let h: B256 = param(p, 0, "block hash")?;
                ix.numbers.get(&h).map_or(Ok(Value::Null), |n| ix.header(*n))
            }
            "eth_getBalance" | "eth_getTransactionCount" => {
                let a: Address = param(p, 0, "address")?;
                let n = ix.block_of(p.get(1))?;
                let (balance, nonce) = self
                    .account(a, n)
                    .ok_or_else(|| miss(format!("account {a}"), n, first(ix.accounts.get(&a))))?;
                Ok(if method == "eth_getBalance" { json!(balance) } else { hex(nonce) })
            }
            "eth_getCode" => {
                let a: Address = param(p, 0, "address")?;
                let n = ix.block_of(p.get(1))?;
                let code = self
                    .code(a, n)
                    .ok_or_else(|| miss(format!("code of {a}"), n, first(ix.codes.get(&a))))?;
                Ok(json!(code))
            }
            "eth_getAccountInfo" => {
                let a: Address = param(p, 0, "address")?;
                let n = ix.block_of(p.get(1))?;
                let (balance, nonce) = self
                    .account(a, n)
                    .ok_or_else(|| miss(format!("account {a}"), n, first(ix.accounts.get(&a))))?;
                let code = self
                    .code(a, n)
                    .ok_or_else(|| miss(format!("code of {a}"), n, first(ix.codes.get(&a))))?;
                Ok(json!({ "balance": balance, "nonce": hex(nonce), "code": code }))
            }
            "eth_getStorageAt" => {
                let a: Address = param(p, 0, "address")?;
                let slot: U256 = param(p, 1, "slot")?;
                let n = ix.block_of(p.get(2))?;
                let v = self.slot(a, slot, n).ok_or_else(|| {
                    miss(format!("slot {slot:#x} of {a}"), n, first(ix.slots.get(&(a, slot))))
                })?;
                Ok(json!(B256::from(v.to_be_bytes::<32>())))
            }
            other => Err(format!("cassette: method {other} not served")),
        }
    }

    fn answer(&self, req: &Value) -> Value {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let method = req.get("method").and_then(Value::as_str).unwrap_or("");
        let params = req.get("params").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        let answer = self.call(method, params);
        tracing::debug!(target: "cantilever::bench", method, ?params, ok = answer.is_ok(), "cassette server");
        match answer {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err(message) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut s) = self.samples.lock()
                    && s.len() < SAMPLES
                    && !s.contains(&message)
                {
                    s.push(message.clone());
                }
                json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32000, "message": message } })
            }
        }
    }

    fn respond(&self, body: &[u8]) -> Value {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(reqs)) => Value::Array(reqs.iter().map(|r| self.answer(r)).collect()),
            Ok(req) => self.answer(&req),
            Err(e) => json!({ "jsonrpc": "2.0", "id": null,
                "error": { "code": -32700, "message": format!("parse error: {e}") } }),
        }
    }
}

impl CassetteRpc {
    /// Serves `cassette`'s state on 127.0.0.1 (an OS-chosen port) on the current tokio runtime.
    ///
    /// # Errors
    /// [`BenchError::Baseline`] when the port cannot be bound.
    pub async fn start(cassette: &Cassette) -> Result<Self, BenchError> {
        Self::start_with(cassette, None).await
    }

    /// As [`CassetteRpc::start`], answering synthetic pools as the bench's state source does.
    ///
    /// # Errors
    /// As [`CassetteRpc::start`].
    pub async fn start_with(
        cassette: &Cassette,
        synthetic: Option<Synthetic>,
    ) -> Result<Self, BenchError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| BenchError::Baseline(format!("binding the cassette server: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BenchError::Baseline(format!("cassette server address: {e}")))?;
        let shared = Arc::new(Shared {
            index: Index::new(cassette),
            requests: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
            assumed: Mutex::new(HashMap::new()),
            assumed_answers: AtomicU64::new(0),
            synthetic,
            zero_answers: AtomicU64::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let s = s.clone();
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let reply = match body {
                                Ok(b) => s.respond(&b),
                                Err(e) => json!({ "jsonrpc": "2.0", "id": null,
                                    "error": { "code": -32700, "message": e.to_string() } }),
                            };
                            let mut r = Response::new(Full::new(hyper::body::Bytes::from(
                                reply.to_string(),
                            )));
                            r.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far (batch members counted one by one).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Requests that could not be answered from the cassette.
    pub fn misses(&self) -> u64 {
        self.shared.misses.load(Ordering::Relaxed)
    }

    /// The first distinct misses.
    pub fn miss_samples(&self) -> Vec<String> {
        self.shared.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Serves `address` with `balance`, `nonce` and no code wherever the cassette holds no
    /// account for it: the state the engine assumes for a victim whose account it does not hold
    /// (see `BlockSim::apply_pending`). Answers given so are counted, not missed.
    pub fn assume_account(&self, address: Address, balance: U256, nonce: u64) {
        if let Ok(mut a) = self.shared.assumed.lock() {
            a.entry(address).or_insert((balance, nonce));
        }
    }

    /// Answers taken from assumed accounts.
    pub fn assumed_answers(&self) -> u64 {
        self.shared.assumed_answers.load(Ordering::Relaxed)
    }

    /// Keys never recorded answered as zero (synthetic runs only).
    pub fn zero_answers(&self) -> u64 {
        self.shared.zero_answers.load(Ordering::Relaxed)
    }
}

impl Drop for CassetteRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One candidate evaluated by the baseline.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineCall {
    /// Index of the event in the replay.
    pub event: usize,
    /// `head` or `pending`.
    pub kind: &'static str,
    /// Block the state was forked at.
    pub block: u64,
    /// Route index.
    pub route: usize,
    /// Victims ahead of the route.
    pub leading: usize,
    /// First call after the reset (anvil fetched the state from the cassette server), ns.
    pub cold_ns: u64,
    /// The same call again on anvil's cached fork (the baseline), ns.
    pub warm_ns: u64,
    /// In process: success and gas (`None`: cold or failed, see `ours_detail`).
    pub ours: Option<(bool, u64)>,
    /// What the in-process simulation said when it did not simulate.
    pub ours_detail: Option<String>,
    /// Over RPC: success and gas.
    pub theirs: Option<(bool, u64)>,
    /// The RPC error (a miss of the cassette server shows here).
    pub error: Option<String>,
}

impl BaselineCall {
    /// Whether both sides simulated and agree on status and gas.
    pub fn agrees(&self) -> bool {
        self.ours.is_some() && self.ours == self.theirs
    }
}

/// Baseline latencies of one event kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BaselineKind {
    /// `head` or `pending`.
    pub kind: &'static str,
    /// Events with at least one call.
    pub events: u64,
    /// Calls made for them.
    pub calls: u64,
    /// Per event: the sum of its warm calls (evaluated one after another) plus the engine's
    /// signing time for the event, ns.
    pub per_event: Percentiles,
    /// Per event, cold (state fetched from the cassette server), ns.
    pub per_event_cold: Percentiles,
    /// Per call (warm), ns.
    pub per_call: Percentiles,
    /// Ours: the engine's end-to-end p50 for this kind, ns.
    pub ours_p50_ns: u64,
    /// Ours: end-to-end p99, ns.
    pub ours_p99_ns: u64,
    /// Baseline per-event p50 / ours end-to-end p50 (how many times faster in process).
    pub speedup_p50: f64,
    /// Baseline per-event p99 / ours end-to-end p99.
    pub speedup_p99: f64,
}

/// One screened route evaluated by the typical-bot baseline.
#[derive(Clone, Debug, Serialize)]
pub struct ScreenedCall {
    /// Index of the event in the replay.
    pub event: usize,
    /// `head` or `pending`.
    pub kind: &'static str,
    /// Block the state was forked at.
    pub block: u64,
    /// Route index.
    pub route: usize,
    /// Whether the engine's sizing found it profitable (else called at its minimum amount).
    pub profitable: bool,
    /// First call after the reset, ns.
    pub cold_ns: u64,
    /// The same call again on anvil's cached fork (the baseline), ns.
    pub warm_ns: u64,
    /// Over RPC: success and gas.
    pub theirs: Option<(bool, u64)>,
    /// The RPC error (a miss of the cassette server shows here).
    pub error: Option<String>,
}

/// The baseline's findings.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BaselineReport {
    /// What each screened route costs the typical-bot baseline.
    pub screened_method: &'static str,
    /// Screened routes evaluated (calls).
    pub screened_routes: u64,
    /// Of them, routes the engine's sizing found profitable.
    pub screened_profitable: u64,
    /// Screened routes whose RPC call failed (cassette misses included).
    pub screened_errors: u64,
    /// Screened routes left out because their call could not be encoded at their amount.
    pub screened_unencodable: u64,
    /// Requests of the screened calls the cassette server could not answer.
    pub screened_misses: u64,
    /// Per screened route (a typical bot), head events.
    pub screened_head: BaselineKind,
    /// Per screened route (a typical bot), pending events.
    pub screened_pending: BaselineKind,
    /// Every screened call.
    pub screened_calls: Vec<ScreenedCall>,
    /// What sizing a screened route costs the sizing-by-eth_call baseline.
    pub sized_method: &'static str,
    /// Calls made: one per input the engine's sizing evaluated.
    pub sized_calls: u64,
    /// Of them, calls whose RPC failed.
    pub sized_errors: u64,
    /// Sizing by eth_call, head events.
    pub sized_head: BaselineKind,
    /// Sizing by eth_call, pending events.
    pub sized_pending: BaselineKind,
    /// What each proven candidate costs the per-candidate baseline.
    pub method: &'static str,
    /// Candidates evaluated.
    pub candidates: u64,
    /// Candidates both sides simulated with the same status and gas.
    pub agree: u64,
    /// Candidates both sides simulated with a different status or gas.
    pub disagree: u64,
    /// Candidates whose RPC call failed (cassette misses included).
    pub errors: u64,
    /// Candidates the engine did not simulate (cold state or a failed simulation).
    pub not_simulated: u64,
    /// Requests the cassette server answered.
    pub server_requests: u64,
    /// Requests it could not answer from the cassette (both baselines).
    pub server_misses: u64,
    /// Requests answered with the state the engine assumes for a victim it holds no account
    /// for (ample balance, the victim's nonce, no code).
    pub assumed_answers: u64,
    /// With synthetic pools: keys never recorded answered as zero, as the bench's state source
    /// answers the engine (without synthetic pools such a key is a miss).
    pub zero_answers: u64,
    /// The first distinct misses.
    pub miss_samples: Vec<String>,
    /// The first disagreements and errors.
    pub problems: Vec<String>,
    /// Per proven candidate, head events.
    pub head: BaselineKind,
    /// Per proven candidate, pending events.
    pub pending: BaselineKind,
    /// Every proven candidate's call.
    pub calls: Vec<BaselineCall>,
}

/// What the engine reported for one replayed event.
#[derive(Clone, Debug, Default)]
pub struct EventTap {
    /// Index of the event in the replay.
    pub event: usize,
    /// The candidates it proved.
    pub proved: Vec<ProvedCandidate>,
    /// The routes it screened (one entry per evaluation: a deferred backrun may add one).
    pub screened: Vec<ScreenedEvent>,
}

/// The executor call of a route: sender, executor, calldata, gas and fees.
struct CallSpec<'a> {
    from: Address,
    to: Address,
    input: &'a Bytes,
    gas: u64,
    max_fee: u128,
    priority: u128,
}

impl CallSpec<'_> {
    fn json(&self) -> Value {
        json!({
            "from": self.from,
            "to": self.to,
            "input": self.input,
            "gas": format!("{:#x}", self.gas),
            "maxFeePerGas": format!("{:#x}", self.max_fee),
            "maxPriorityFeePerGas": format!("{:#x}", self.priority),
        })
    }
}

fn payload(
    leading: &[alloy::rpc::types::Transaction],
    n: &NextBlock,
    call: &CallSpec<'_>,
) -> Value {
    // Victims without their fees: the route's outcome does not depend on what a victim paid,
    // and without validation a call without a gas price pays nothing (the engine gives a victim
    // it holds no account for an ample balance instead).
    let mut calls: Vec<Value> = leading
        .iter()
        .map(|t| {
            json!({
                "from": t.inner.signer(),
                "to": t.to(),
                "input": t.input(),
                "value": t.value(),
                "gas": format!("{:#x}", t.gas_limit()),
            })
        })
        .collect();
    calls.push(call.json());
    json!({
        "blockStateCalls": [{
            "blockOverrides": {
                "number": format!("{:#x}", n.number),
                "time": format!("{:#x}", n.timestamp),
                "baseFeePerGas": format!("{:#x}", n.base_fee),
                "feeRecipient": n.coinbase,
                "gasLimit": format!("{:#x}", n.gas_limit),
                "prevRandao": n.prevrandao,
            },
            "calls": calls,
        }],
        "validation": false,
    })
}

/// Runs one candidate; the route's (last) call's status and gas.
async fn simulate(p: &DynProvider, payload: &Value) -> Result<(bool, u64), String> {
    let r: Value = p
        .raw_request("eth_simulateV1".into(), (payload, "latest"))
        .await
        .map_err(|e| e.to_string())?;
    let last = r
        .get(0)
        .and_then(|b| b.get("calls"))
        .and_then(Value::as_array)
        .and_then(|c| c.last())
        .ok_or_else(|| format!("eth_simulateV1 answered without calls: {r}"))?;
    let num = |k: &str| {
        last.get(k)
            .and_then(Value::as_str)
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
    };
    let status = num("status").ok_or_else(|| format!("no status in {last}"))?;
    let gas = num("gasUsed").ok_or_else(|| format!("no gasUsed in {last}"))?;
    Ok((status == 1, gas))
}

fn percentiles(values: &[u64]) -> Percentiles {
    let Ok(mut h) = hdrhistogram::Histogram::<u64>::new(3) else {
        return Percentiles::default();
    };
    for v in values {
        let _ = h.record(*v);
    }
    percentiles_of(&h)
}

/// p50, p90, p99, p99.9, max and count of `h`.
pub(super) fn percentiles_of(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
    Percentiles {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        count: h.len(),
    }
}

/// Latencies of one event kind, ns.
#[derive(Clone, Debug, Default)]
struct Samples {
    /// Per event, warm calls summed plus signing.
    warm: Vec<u64>,
    /// Per event, cold calls summed plus signing.
    cold: Vec<u64>,
    /// Per warm call.
    calls: Vec<u64>,
}

impl Samples {
    fn event(&mut self, timed: &[(u64, u64)], sign_ns: u64) {
        if timed.is_empty() {
            return;
        }
        self.cold.push(timed.iter().map(|t| t.0).sum::<u64>() + sign_ns);
        self.warm.push(timed.iter().map(|t| t.1).sum::<u64>() + sign_ns);
        self.calls.extend(timed.iter().map(|t| t.1));
    }

    /// The kind's report against ours (end-to-end p50, p99).
    fn report(&self, kind: EventKind, (p50, p99): (u64, u64)) -> BaselineKind {
        let per_event = percentiles(&self.warm);
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        BaselineKind {
            kind: kind.as_str(),
            events: self.warm.len() as u64,
            calls: self.calls.len() as u64,
            per_event,
            per_event_cold: percentiles(&self.cold),
            per_call: percentiles(&self.calls),
            ours_p50_ns: p50,
            ours_p99_ns: p99,
            speedup_p50: ratio(per_event.p50, p50),
            speedup_p99: ratio(per_event.p99, p99),
        }
    }
}

/// anvil forked from the cassette server, reset to a block only when it changes.
struct Fork<'a> {
    server: &'a CassetteRpc,
    provider: DynProvider,
    at: Option<u64>,
}

impl Fork<'_> {
    /// Forks block `n` (untimed) unless already there.
    async fn at(&mut self, n: u64) -> Result<(), BenchError> {
        if self.at != Some(n) {
            let forking = Forking { json_rpc_url: Some(self.server.url()), block_number: Some(n) };
            self.provider
                .anvil_reset(Some(forking))
                .await
                .map_err(|e| BenchError::Baseline(format!("anvil_reset to {n}: {e}")))?;
            self.at = Some(n);
        }
        Ok(())
    }

    /// Runs `payload` twice: cold (anvil fetches the state), then warm. Returns both times and
    /// the warm outcome (else the cold one).
    async fn call(&self, payload: &Value) -> (u64, u64, Result<(bool, u64), String>) {
        let t = Instant::now();
        let cold = simulate(&self.provider, payload).await;
        let cold_ns = t.elapsed().as_nanos() as u64;
        let t = Instant::now();
        let warm = simulate(&self.provider, payload).await;
        let warm_ns = t.elapsed().as_nanos() as u64;
        (cold_ns, warm_ns, warm.or(cold))
    }
}

/// Evaluates, over RPC on an anvil forked from the cassette, every route the engine screened
/// (the typical-bot baseline) and every candidate it proved (compared with the in-process
/// outcomes). `ours` gives the engine's end-to-end (p50, p99) of a kind. Call inside a
/// multi-thread tokio runtime.
///
/// # Errors
/// [`BenchError::Baseline`] when anvil or the cassette server cannot start, or anvil cannot be
/// reset to a recorded block.
pub async fn run_baseline(
    cassette: &Cassette,
    events: &[EventTap],
    synthetic: Option<Synthetic>,
    ours: impl Fn(EventKind) -> (u64, u64),
) -> Result<BaselineReport, BenchError> {
    let server = CassetteRpc::start_with(cassette, synthetic).await?;
    let first = events
        .iter()
        .flat_map(|e| {
            e.proved.iter().map(|c| c.head.number).chain(e.screened.iter().map(|s| s.head.number))
        })
        .min();
    let mut report = BaselineReport {
        screened_method: "eth_simulateV1 per screened route (a typical bot: every route the event affects, no native math), warm fork",
        sized_method: "eth_simulateV1 per input our sizing evaluated, for every screened route (a typical bot that sizes by asking the node), warm fork",
        method: "eth_simulateV1 per proven candidate (an eth_call with the victims ahead), warm fork",
        ..BaselineReport::default()
    };
    let Some(first) = first else {
        report.head = BaselineKind { kind: "head", ..Default::default() };
        report.pending = BaselineKind { kind: "pending", ..Default::default() };
        report.screened_head = report.head.clone();
        report.screened_pending = report.pending.clone();
        report.sized_head = report.head.clone();
        report.sized_pending = report.pending.clone();
        return Ok(report);
    };
    let opts = AnvilOptions {
        chain_id: cassette.meta.chain_id,
        // No dev accounts: anvil would fetch them from the fork to fund them.
        accounts: 0,
        fork: Some((server.url(), first)),
        ..AnvilOptions::default()
    };
    let node = tokio::task::spawn_blocking(move || AnvilNode::spawn(&opts))
        .await
        .map_err(|e| BenchError::Baseline(e.to_string()))?
        .map_err(|e| BenchError::Baseline(format!("anvil: {e}")))?;
    let url = node.http_url().parse().map_err(|_| BenchError::Baseline("anvil's url".into()))?;
    let provider = ProviderBuilder::new().connect_http(url).erased();
    let mut fork = Fork { server: &server, provider, at: None };
    let mut proved: HashMap<EventKind, Samples> = HashMap::new();
    let mut screened: HashMap<EventKind, Samples> = HashMap::new();
    let mut sized: HashMap<EventKind, Samples> = HashMap::new();
    for e in events {
        let victims = e.proved.iter().flat_map(|c| &c.leading);
        for t in victims.chain(e.screened.iter().flat_map(|s| &s.leading)) {
            // As the engine's simulation: an ample balance and the victim's nonce.
            server.assume_account(t.inner.signer(), U256::MAX >> 8, t.nonce());
        }
        let sign_ns = e.screened.iter().map(|s| s.sign_ns).sum::<u64>();
        // Per screened route (a typical bot). Each evaluation runs on its own head's state.
        let misses = server.misses();
        let mut timed = Vec::new();
        let mut sizing = Vec::new();
        for s in &e.screened {
            fork.at(s.head.number).await?;
            report.screened_unencodable += s.unencodable as u64;
            for r in &s.routes {
                let spec = CallSpec {
                    from: s.from,
                    to: s.to,
                    input: &r.input,
                    gas: s.gas_limit,
                    max_fee: s.max_fee_per_gas,
                    priority: s.max_priority_fee_per_gas,
                };
                let (cold_ns, warm_ns, got) = fork.call(&payload(&s.leading, &s.next, &spec)).await;
                timed.push((cold_ns, warm_ns));
                report.screened_routes += 1;
                report.screened_profitable += u64::from(r.profitable);
                let (theirs, error) = match got {
                    Ok(t) => (Some(t), None),
                    Err(err) => {
                        report.screened_errors += 1;
                        (None, Some(err))
                    }
                };
                report.screened_calls.push(ScreenedCall {
                    event: e.event,
                    kind: s.kind.as_str(),
                    block: s.head.number,
                    route: r.route,
                    profitable: r.profitable,
                    cold_ns,
                    warm_ns,
                    theirs,
                    error,
                });
                // The same route sized by asking the node: one call per input evaluated.
                for input in &r.probes {
                    let spec = CallSpec { input, ..spec };
                    let t = Instant::now();
                    let got = simulate(&fork.provider, &payload(&s.leading, &s.next, &spec)).await;
                    let ns = t.elapsed().as_nanos() as u64;
                    sizing.push((ns, ns));
                    report.sized_calls += 1;
                    report.sized_errors += u64::from(got.is_err());
                }
            }
        }
        report.screened_misses += server.misses() - misses;
        if let Some(s) = e.screened.first() {
            screened.entry(s.kind).or_default().event(&timed, sign_ns);
            sized.entry(s.kind).or_default().event(&sizing, sign_ns);
        }
        // Per proven candidate.
        let mut timed = Vec::new();
        for c in &e.proved {
            fork.at(c.head.number).await?;
            let spec = CallSpec {
                from: c.from,
                to: c.to,
                input: &c.input,
                gas: c.gas_limit,
                max_fee: c.max_fee_per_gas,
                priority: c.max_priority_fee_per_gas,
            };
            let (cold_ns, warm_ns, got) = fork.call(&payload(&c.leading, &c.next, &spec)).await;
            timed.push((cold_ns, warm_ns));
            let (ours, ours_detail) = match &c.outcome {
                TapOutcome::Simulated { success, gas_used } => (Some((*success, *gas_used)), None),
                TapOutcome::Cold => (None, Some("cold state".to_owned())),
                TapOutcome::Failed(e) => (None, Some(e.clone())),
            };
            let (theirs, error) = match got {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(e)),
            };
            report.calls.push(BaselineCall {
                event: e.event,
                kind: c.kind.as_str(),
                block: c.head.number,
                route: c.route,
                leading: c.leading.len(),
                cold_ns,
                warm_ns,
                ours,
                ours_detail,
                theirs,
                error,
            });
        }
        if let Some(c) = e.proved.first() {
            proved.entry(c.kind).or_default().event(&timed, sign_ns);
        }
    }
    drop(node);
    for call in &report.calls {
        report.candidates += 1;
        let problem = if call.ours.is_none() {
            report.not_simulated += 1;
            None
        } else if let Some(e) = &call.error {
            report.errors += 1;
            Some(format!("event {} route {}: RPC error: {e}", call.event, call.route))
        } else if call.agrees() {
            report.agree += 1;
            None
        } else {
            report.disagree += 1;
            Some(format!(
                "event {} route {}: in process {:?}, over RPC {:?} (status, gas)",
                call.event, call.route, call.ours, call.theirs
            ))
        };
        if let Some(p) = problem
            && report.problems.len() < SAMPLES
        {
            report.problems.push(p);
        }
    }
    for c in &report.screened_calls {
        if let Some(err) = &c.error
            && report.problems.len() < SAMPLES
        {
            report
                .problems
                .push(format!("screened event {} route {}: RPC error: {err}", c.event, c.route));
        }
    }
    report.server_requests = server.requests();
    report.server_misses = server.misses();
    report.assumed_answers = server.assumed_answers();
    report.zero_answers = server.zero_answers();
    report.miss_samples = server.miss_samples();
    let kind = |m: &HashMap<EventKind, Samples>, k: EventKind| {
        m.get(&k).cloned().unwrap_or_default().report(k, ours(k))
    };
    report.head = kind(&proved, EventKind::Head);
    report.pending = kind(&proved, EventKind::Pending);
    report.screened_head = kind(&screened, EventKind::Head);
    report.screened_pending = kind(&screened, EventKind::Pending);
    report.sized_head = kind(&sized, EventKind::Head);
    report.sized_pending = kind(&sized, EventKind::Pending);
    Ok(report)
}

/// The per-kind table of one baseline.
fn kind_table(f: &mut std::fmt::Formatter<'_>, kinds: [&BaselineKind; 2]) -> std::fmt::Result {
    let us = |ns: u64| ns as f64 / 1e3;
    writeln!(
        f,
        "{:<8} {:>7} {:>7} {:>14} {:>14} {:>16} {:>14} {:>14} {:>10} {:>10}",
        "kind",
        "events",
        "calls",
        "rpc/event p50",
        "rpc/event p99",
        "cold/event p50",
        "ours e2e p50",
        "ours e2e p99",
        "× p50",
        "× p99"
    )?;
    for k in kinds {
        writeln!(
            f,
            "{:<8} {:>7} {:>7} {:>12.1}µs {:>12.1}µs {:>14.1}µs {:>12.1}µs {:>12.1}µs {:>9.1}× {:>9.1}×",
            k.kind,
            k.events,
            k.calls,
            us(k.per_event.p50),
            us(k.per_event.p99),
            us(k.per_event_cold.p50),
            us(k.ours_p50_ns),
            us(k.ours_p99_ns),
            k.speedup_p50,
            k.speedup_p99
        )?;
    }
    Ok(())
}

impl std::fmt::Display for BaselineReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "\nbaseline per screened route (a typical bot): {}; an event costs its calls plus our signing time",
            self.screened_method
        )?;
        writeln!(
            f,
            "{} screened routes called ({} sized profitable, the rest at their minimum amount), {} RPC errors, {} cassette misses, {} not encodable",
            self.screened_routes,
            self.screened_profitable,
            self.screened_errors,
            self.screened_misses,
            self.screened_unencodable
        )?;
        if self.zero_answers > 0 {
            writeln!(
                f,
                "synthetic pools: {} keys never recorded answered as zero, as the bench's state source answers the engine",
                self.zero_answers
            )?;
        }
        kind_table(f, [&self.screened_head, &self.screened_pending])?;
        writeln!(
            f,
            "\nbaseline sizing by eth_call (a typical bot that sizes): {}",
            self.sized_method
        )?;
        writeln!(
            f,
            "{} calls (the inputs our sizing evaluated natively for the screened routes), {} RPC errors",
            self.sized_calls, self.sized_errors
        )?;
        kind_table(f, [&self.sized_head, &self.sized_pending])?;
        writeln!(f, "\nbaseline per proven candidate: {}", self.method)?;
        writeln!(
            f,
            "{} candidates: {} agree (status, gas), {} disagree, {} RPC errors, {} not simulated in process; cassette server {} requests, {} misses, {} assumed victim accounts",
            self.candidates,
            self.agree,
            self.disagree,
            self.errors,
            self.not_simulated,
            self.server_requests,
            self.server_misses,
            self.assumed_answers
        )?;
        kind_table(f, [&self.head, &self.pending])?;
        for m in &self.miss_samples {
            writeln!(f, "  miss: {m}")?;
        }
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cassette::CassetteMeta,
        state::{AccountRead, BlockInfo, ReadSet},
    };

    fn block(n: u8) -> BlockInfo {
        BlockInfo {
            block: BlockRef {
                number: u64::from(n),
                hash: B256::repeat_byte(n),
                base_fee: 7,
                ..BlockRef::default()
            },
            touched: vec![],
            names_holders: true,
        }
    }

    /// Blocks 10, 11 and 12; a slot read at 10 and at 12, an account (with code) at 10 only.
    fn shared() -> Shared {
        let (pool, slot) = (Address::repeat_byte(0xaa), U256::from(3));
        let read = |n: u8, v: u64, account: bool| StateAnswer::Read {
            at: B256::repeat_byte(n),
            set: ReadSet {
                accounts: if account {
                    vec![AccountRead {
                        address: pool,
                        balance: U256::from(5),
                        nonce: 1,
                        code: Some(Bytes::from_static(&[0x60, 0x00])),
                    }]
                } else {
                    vec![]
                },
                slots: vec![(pool, slot, U256::from(v))],
            },
        };
        let cassette = Cassette {
            meta: CassetteMeta { chain_id: 138, ..CassetteMeta::default() },
            events: vec![],
            answers: vec![
                StateAnswer::Latest(block(10)),
                StateAnswer::Block(block(11)),
                StateAnswer::Block(block(12)),
                read(10, 100, true),
                read(12, 120, false),
            ],
            complete: true,
            stats: Default::default(),
        };
        Shared {
            index: Index::new(&cassette),
            requests: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
            assumed: Mutex::new(HashMap::new()),
            assumed_answers: AtomicU64::new(0),
            synthetic: None,
            zero_answers: AtomicU64::new(0),
        }
    }

    fn ask(s: &Shared, method: &str, params: Value) -> Value {
        s.respond(
            json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params })
                .to_string()
                .as_bytes(),
        )
    }

    #[test]
    fn cassette_server_carries_values_forward_and_shows_misses() {
        let s = shared();
        let pool = "0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert_eq!(ask(&s, "eth_chainId", json!([]))["result"], "0x8a");
        assert_eq!(ask(&s, "eth_blockNumber", json!([]))["result"], "0xc");
        let slot = |n: &str| ask(&s, "eth_getStorageAt", json!([pool, "0x3", n]));
        // Read at 10 and 12: block 11 holds block 10's value (the engine did not re-read it).
        assert_eq!(slot("0xa")["result"], format!("{:#066x}", 100));
        assert_eq!(slot("0xb")["result"], format!("{:#066x}", 100));
        assert_eq!(slot("0xc")["result"], format!("{:#066x}", 120));
        // Before any read, a miss: an error naming the key and the first block that read it.
        let miss = slot("0x9");
        assert!(miss["result"].is_null(), "{miss}");
        let msg = miss["error"]["message"].as_str().unwrap();
        assert!(msg.contains("slot 0x3") && msg.contains("first recorded at block 10"), "{msg}");
        // A slot never read is a miss, never a zero.
        let never = ask(&s, "eth_getStorageAt", json!([pool, "0x4", "0xc"]));
        assert!(never["error"]["message"].as_str().unwrap().contains("not recorded"));
        assert_eq!(s.misses.load(Ordering::Relaxed), 2);
        // Accounts and code carry forward too; a header is served by number and by hash.
        assert_eq!(ask(&s, "eth_getBalance", json!([pool, "0xc"]))["result"], "0x5");
        assert_eq!(ask(&s, "eth_getTransactionCount", json!([pool, "latest"]))["result"], "0x1");
        assert_eq!(ask(&s, "eth_getCode", json!([pool, "0xb"]))["result"], "0x6000");
        let by_number = ask(&s, "eth_getBlockByNumber", json!(["0xb", false]));
        assert_eq!(by_number["result"]["number"], "0xb");
        assert_eq!(by_number["result"]["baseFeePerGas"], "0x7");
        let hash = format!("{}", B256::repeat_byte(11));
        assert_eq!(ask(&s, "eth_getBlockByHash", json!([hash, false]))["result"]["number"], "0xb");
        // An unknown method is an error; a batch is answered member by member.
        assert!(ask(&s, "eth_sendRawTransaction", json!(["0x00"]))["error"].is_object());
        let batch = s.respond(
            json!([
                { "jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": [] },
                { "jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": [] },
            ])
            .to_string()
            .as_bytes(),
        );
        assert_eq!(batch[1]["id"], 2);
        assert_eq!(batch[1]["result"], "0xc");
    }

    #[test]
    fn synthetic_pools_are_answered_as_their_original_at_the_pin() {
        let mut s = shared();
        let (pool, copy) = (Address::repeat_byte(0xaa), Address::repeat_byte(0xbb));
        s.synthetic = Some(Synthetic { map: HashMap::from([(copy, pool)]), pin: 10 });
        let slot = |a: Address, n: &str| ask(&s, "eth_getStorageAt", json!([a, "0x3", n]));
        // The copy holds the original's value at the pin, whatever block is asked.
        assert_eq!(slot(copy, "0xc")["result"], format!("{:#066x}", 100));
        assert_eq!(slot(pool, "0xc")["result"], format!("{:#066x}", 120));
        assert_eq!(ask(&s, "eth_getCode", json!([copy, "0xc"]))["result"], "0x6000");
        // A key never recorded reads as zero, counted (the bench's state source does the same).
        let never = ask(&s, "eth_getStorageAt", json!([pool, "0x4", "0xc"]));
        assert_eq!(never["result"], format!("{:#066x}", 0));
        assert_eq!(s.zero_answers.load(Ordering::Relaxed), 1);
        assert_eq!(s.misses.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn assumed_victim_accounts_are_served_and_counted() {
        let s = shared();
        let victim = Address::repeat_byte(0x11);
        let balance = |s: &Shared| ask(s, "eth_getBalance", json!([victim, "0xc"]));
        assert!(balance(&s)["error"].is_object(), "not recorded: a miss");
        s.assumed.lock().unwrap().insert(victim, (U256::from(9), 4));
        assert_eq!(balance(&s)["result"], "0x9");
        assert_eq!(ask(&s, "eth_getCode", json!([victim, "0xc"]))["result"], "0x");
        assert_eq!(s.assumed_answers.load(Ordering::Relaxed), 1);
    }
}
