//! Our decoders under random input: no panic, a clear error, and bounded work.
//!
//! - configuration: random bytes through `config::check_file`, and structured mutations of
//!   `config/example-live.toml` (values of the wrong type or range, lines dropped, duplicated or
//!   moved, unknown keys, a pasted private key) through the loader;
//! - `newHeads` notifications: mutated headers through serde into `Head::from_rpc`;
//! - relay answers: random statuses and bodies from a fake relay through `BundleSubmitter`;
//! - state reads: random JSON-RPC batch answers from the fake server through `RpcSource::read`:
//!   a read succeeds only when every answer is well formed, and then with exactly those values.
//!
//! Cases per property: `PROPTEST_CASES` when set, else 64 (CI). The long run, on demand:
//! `PROPTEST_CASES=20000 cargo test --test it faults::fuzz`.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, Bytes, U256, hex},
    signers::local::PrivateKeySigner,
};
use cantilever::{
    config::{self, Config, EndpointUrl, RelayConfig},
    exec::{Bundle, BundleSubmitter, RelayOutcome},
    ingest::Head,
    state::{ReadRequest, RetryPolicy, RpcSource, StateSource},
};
use proptest::{
    prelude::*,
    test_runner::{Config as RunnerConfig, TestRunner},
};
use serde_json::{Value, json};

use super::fake_rpc::{FakeRpc, Reply};
use crate::harness::reader;

const KEY: &str = "SECRETKEY777";

/// Cases per property: `PROPTEST_CASES`, else 64.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(64)
}

fn runner() -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: cases(),
        failure_persistence: None,
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

const EXAMPLE: &str = include_str!("../../../config/example-live.toml");

fn example_env(name: &str) -> Option<String> {
    Some(match name {
        n if n.ends_with("WS_URL") => format!("wss://node.example/{KEY}"),
        _ => format!("https://node.example/{KEY}"),
    })
}

/// A TOML value of any type, some out of range.
fn junk_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,25}",
        "-?[0-9]{1,6}\\.[0-9]{1,4}",
        Just("nan".to_owned()),
        Just("-inf".to_owned()),
        Just("true".to_owned()),
        "\"[ -~]{0,40}\"",
        Just("[]".to_owned()),
        "\\[[0-9]{1,3}, \"[a-z]{0,5}\"\\]",
        "\\{ [a-z]{1,6} = [0-9]{1,4} \\}",
        Just("\"0x\"".to_owned()),
        Just("\"${UNSET_VAR}\"".to_owned()),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the value of the `line`-th `key = value` line.
    Value(usize, String),
    Drop(usize),
    Duplicate(usize),
    Move(usize, usize),
    UnknownKey(usize, String),
    /// Paste a private key as the value of a line.
    PrivateKey(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), junk_value()).prop_map(|(l, v)| Mutation::Value(l, v)),
        1 => any::<usize>().prop_map(Mutation::Drop),
        1 => any::<usize>().prop_map(Mutation::Duplicate),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Move(a, b)),
        1 => (any::<usize>(), "[a-z_]{1,12}").prop_map(|(l, k)| Mutation::UnknownKey(l, k)),
        1 => any::<usize>().prop_map(Mutation::PrivateKey),
    ]
}

const PASTED: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

fn apply(lines: &mut Vec<String>, m: &Mutation) {
    let assignments: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with('#') && l.contains(" = "))
        .map(|(i, _)| i)
        .collect();
    let pick = |i: usize| assignments[i % assignments.len()];
    let set = |lines: &mut Vec<String>, i: usize, v: &str| {
        let key = lines[i].split(" = ").next().unwrap_or("x").to_owned();
        lines[i] = format!("{key} = {v}");
    };
    match m {
        Mutation::Value(i, v) => set(lines, pick(*i), v),
        Mutation::Drop(i) => {
            lines.remove(pick(*i));
        }
        Mutation::Duplicate(i) => {
            let i = pick(*i);
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        Mutation::Move(a, b) => {
            let l = lines.remove(pick(*a));
            let to = b % lines.len();
            lines.insert(to, l);
        }
        Mutation::UnknownKey(i, k) => lines.insert(pick(*i) + 1, format!("{k}_zz = 1")),
        Mutation::PrivateKey(i) => set(lines, pick(*i), &format!("\"0x{PASTED}\"")),
    }
}

/// Random bytes as a configuration file: refused with errors that name the file, never a panic.
#[test]
fn random_bytes_as_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.toml");
    let name = path.display().to_string();
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 0..2048), |bytes| {
            std::fs::write(&path, &bytes).unwrap();
            if let Err(errs) = config::check_file(&path) {
                prop_assert!(!errs.is_empty());
                for e in &errs {
                    prop_assert_eq!(e.file(), name.as_str());
                    prop_assert!(!e.reason().is_empty());
                }
            }
            Ok(())
        })
        .unwrap();
    // A file over the 1 MiB cap is refused without being parsed.
    std::fs::write(&path, "#".repeat((1 << 20) + 10)).unwrap();
    let errs = config::check_file(&path).expect_err("too large");
    assert!(errs.to_string().contains("fuzz.toml"), "{errs}");
}

/// Mutations of the example configuration: each either loads or is refused with errors naming the
/// file and a reason; a pasted private key is always refused and never echoed; the endpoints
/// (which embed a key here) never appear in an error.
#[test]
fn mutated_example_config() {
    let base: Vec<String> = EXAMPLE.lines().map(str::to_owned).collect();
    Config::from_toml_str_with_env(EXAMPLE, "example-live.toml", &example_env)
        .expect("the example loads as shipped");
    runner()
        .run(&proptest::collection::vec(mutation(), 1..4), |muts| {
            let mut lines = base.clone();
            for m in &muts {
                apply(&mut lines, m);
            }
            let text = lines.join("\n");
            let result = Config::from_toml_str_with_env(&text, "example-live.toml", &example_env);
            let pasted = muts.iter().any(|m| matches!(m, Mutation::PrivateKey(_)));
            match result {
                Ok(cfg) => {
                    prop_assert!(!pasted, "a pasted private key was accepted");
                    let shown = format!("{cfg:?}");
                    prop_assert!(!shown.contains(KEY));
                }
                Err(errs) => {
                    for e in &errs {
                        prop_assert_eq!(e.file(), "example-live.toml");
                        prop_assert!(!e.reason().is_empty());
                    }
                    let all = errs.to_string();
                    prop_assert!(!all.contains(PASTED), "the key was echoed: {}", all);
                    prop_assert!(!all.contains(KEY), "an endpoint was echoed: {}", all);
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// newHeads notifications
// ---------------------------------------------------------------------------------------------

/// A header as anvil sends it in a `newHeads` notification.
fn header_json() -> Value {
    json!({
        "hash": format!("0x{}", "ab".repeat(32)),
        "parentHash": format!("0x{}", "cd".repeat(32)),
        "sha3Uncles": format!("0x{}", "1d".repeat(32)),
        "miner": format!("0x{}", "00".repeat(20)),
        "stateRoot": format!("0x{}", "11".repeat(32)),
        "transactionsRoot": format!("0x{}", "22".repeat(32)),
        "receiptsRoot": format!("0x{}", "33".repeat(32)),
        "logsBloom": format!("0x{}", "00".repeat(256)),
        "difficulty": "0x0",
        "number": "0x10",
        "gasLimit": "0x1c9c380",
        "gasUsed": "0x5208",
        "timestamp": "0x65f0a1b2",
        "extraData": "0x",
        "mixHash": format!("0x{}", "44".repeat(32)),
        "nonce": "0x0000000000000000",
        "baseFeePerGas": "0x3b9aca00",
        "withdrawalsRoot": format!("0x{}", "55".repeat(32)),
        "blobGasUsed": "0x0",
        "excessBlobGas": "0x0",
        "parentBeaconBlockRoot": format!("0x{}", "66".repeat(32)),
    })
}

fn json_junk() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "[ -~]{0,30}".prop_map(Value::from),
        "0x[0-9a-f]{0,80}".prop_map(Value::from),
        "0x[0-9a-zA-Z]{1,8}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({"a": 1})),
        Just(Value::from(format!("0x{}", "f".repeat(4096)))),
    ]
}

/// Mutated headers decode or fail cleanly; a decoded one becomes a `Head` with its fields.
#[test]
fn mutated_new_heads_headers() {
    let base = header_json();
    let keys: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
    let decoded: alloy::rpc::types::Header = serde_json::from_value(base.clone()).unwrap();
    assert_eq!(Head::from_rpc(1, &decoded, Instant::now()).number, 16);
    let edit = (any::<usize>(), prop_oneof![json_junk().prop_map(Some), Just(None)]);
    runner()
        .run(&proptest::collection::vec(edit, 1..5), |edits| {
            let mut v = base.clone();
            for (k, new) in edits {
                let key = &keys[k % keys.len()];
                match new {
                    Some(x) => v[key] = x,
                    None => {
                        v.as_object_mut().unwrap().remove(key);
                    }
                }
            }
            let envelope = json!({"jsonrpc": "2.0", "method": "eth_subscription",
                "params": {"subscription": "0x1", "result": v}});
            let text = envelope.to_string();
            let parsed: Value = serde_json::from_str(&text).unwrap();
            match serde_json::from_value::<alloy::rpc::types::Header>(
                parsed["params"]["result"].clone(),
            ) {
                Ok(h) => {
                    let head = Head::from_rpc(7, &h, Instant::now());
                    prop_assert_eq!(head.number, h.inner.number);
                    prop_assert_eq!(head.hash, h.hash);
                    prop_assert_eq!(head.parent_hash, h.inner.parent_hash);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Relay answers
// ---------------------------------------------------------------------------------------------

fn relay_body() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,200}",
        Just(String::new()),
        "0x[0-9a-f]{64}".prop_map(|h| json!({"jsonrpc": "2.0", "id": 0,
            "result": {"bundleHash": h}})
        .to_string()),
        json_junk().prop_map(|r| json!({"jsonrpc": "2.0", "id": 0, "result": r}).to_string()),
        json_junk().prop_map(|r| json!({"jsonrpc": "2.0", "id": 0,
            "result": {"bundleHash": r}})
        .to_string()),
        (any::<i64>(), "[ -~]{0,3000}").prop_map(|(c, m)| json!({"jsonrpc": "2.0", "id": 0,
            "error": {"code": c, "message": m}})
        .to_string()),
        json_junk().prop_map(|e| json!({"jsonrpc": "2.0", "id": 0, "error": e}).to_string()),
        Just(format!("[{}]", "[".repeat(10_000))),
    ]
}

/// Whatever a relay answers, the submitter reports one bounded outcome per relay, after one
/// request, never quoting its URL; only a 200 with a JSON-RPC result counts as accepted.
#[test]
fn random_relay_answers() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let next: Arc<Mutex<(u16, String)>> = Arc::new(Mutex::new((200, String::new())));
    let (fake, submitter) = rt.block_on(async {
        let fake = FakeRpc::start(None).await;
        let n = next.clone();
        fake.then(Reply::Custom(Arc::new(move |req: &Value| {
            let (status, body) = n.lock().unwrap().clone();
            (status, body.replace("\"id\":0", &format!("\"id\":{}", req["id"])))
        })));
        let url = EndpointUrl::new(format!("{}/v2/{KEY}", fake.url)).unwrap();
        let relays = [RelayConfig { name: "fuzz".into(), url, builders: vec![] }];
        let s = BundleSubmitter::new(
            "devnet",
            &relays,
            PrivateKeySigner::random(),
            Duration::from_secs(5),
        )
        .unwrap();
        (fake, s)
    });
    let status = prop_oneof![Just(200u16), Just(400), Just(403), Just(429), Just(500), Just(503)];
    runner()
        .run(&(status, relay_body()), |(status, body)| {
            *next.lock().unwrap() = (status, body.clone());
            fake.clear_hits();
            let bundle = Bundle::new(vec![Bytes::from_static(&[2, 1])], 9);
            let report = rt.block_on(submitter.send(&bundle));
            prop_assert_eq!(fake.hits(), vec!["eth_sendBundle"]);
            prop_assert_eq!(report.results.len(), 1);
            let outcome = &report.results[0].outcome;
            let shown = format!("{report:?}");
            prop_assert!(!shown.contains(KEY));
            match outcome {
                RelayOutcome::Accepted { .. } => {
                    prop_assert_eq!(status, 200);
                    let v: Value = serde_json::from_str(&body).unwrap();
                    prop_assert!(v.get("result").is_some(), "accepted without a result: {}", body);
                }
                RelayOutcome::Rejected { message, .. } => prop_assert!(message.len() <= 520),
                RelayOutcome::Transport { detail } => prop_assert!(detail.len() <= 560),
                RelayOutcome::Timeout => prop_assert!(false, "the fake always answers"),
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// State reads
// ---------------------------------------------------------------------------------------------

/// One answer of the fake to one request of a batch.
#[derive(Clone, Debug)]
enum Item {
    /// A well-formed value (u64, so it fits every method).
    Good(u64),
    Null,
    Missing,
    Object,
    BadHex,
    Overflow,
    Error,
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        6 => any::<u64>().prop_map(Item::Good),
        1 => Just(Item::Null),
        1 => Just(Item::Missing),
        1 => Just(Item::Object),
        1 => Just(Item::BadHex),
        1 => Just(Item::Overflow),
        1 => Just(Item::Error),
    ]
}

/// The well-formed encoding of `v` for `method`.
fn encode(method: &str, v: u64) -> Value {
    match method {
        "eth_getStorageAt" => Value::from(B256::from(U256::from(v)).to_string()),
        "eth_getCode" => Value::from(hex::encode_prefixed(v.to_be_bytes())),
        _ => Value::from(format!("{v:#x}")),
    }
}

/// Random batch answers: a read succeeds only when every answer is well formed, and then returns
/// exactly the encoded values; a null, missing, mistyped, overflowing or error answer is an
/// error naming its method, never zero.
#[test]
fn random_batch_answers_into_a_read_set() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plan: Arc<Mutex<VecDeque<Item>>> = Arc::default();
    let (_fake, source) = rt.block_on(async {
        let fake = FakeRpc::start(None).await;
        let p = plan.clone();
        fake.then(Reply::Custom(Arc::new(move |req: &Value| {
            let mut plan = p.lock().unwrap();
            let items = req.as_array().cloned().unwrap_or_default();
            let answers: Vec<Value> = items
                .iter()
                .filter_map(|r| {
                    let id = r["id"].clone();
                    let method = r["method"].as_str().unwrap_or_default();
                    let ok =
                        |result: Value| Some(json!({"jsonrpc": "2.0", "id": id, "result": result}));
                    match plan.pop_front().unwrap_or(Item::Null) {
                        Item::Good(v) => ok(encode(method, v)),
                        Item::Null => ok(Value::Null),
                        Item::Missing => None,
                        Item::Object => ok(json!({"value": "0x1"})),
                        Item::BadHex => ok(Value::from("0xzz")),
                        Item::Overflow => ok(Value::from(format!("0x1{}", "0".repeat(64)))),
                        Item::Error => Some(json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": -32000, "message": "boom"}})),
                    }
                })
                .collect();
            (200, Value::Array(answers).to_string())
        })));
        let policy = RetryPolicy {
            call_timeout: Duration::from_secs(2),
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let source = RpcSource::new(reader(&fake.url), 100).with_policy(policy);
        (fake, source)
    });
    let a = Address::repeat_byte(1);
    let b = Address::repeat_byte(2);
    let req = ReadRequest {
        accounts: vec![(a, true), (b, false)],
        slots: vec![(b, U256::from(1)), (b, U256::from(2))],
    };
    // Batch order: balance, nonce, code of `a`; balance, nonce of `b`; two slots.
    runner()
        .run(&proptest::collection::vec(item(), 7), |items| {
            *plan.lock().unwrap() = items.iter().cloned().collect();
            let result = rt.block_on(source.read(B256::repeat_byte(9), &req));
            let good: Option<Vec<u64>> =
                items.iter().map(|i| if let Item::Good(v) = i { Some(*v) } else { None }).collect();
            match (good, result) {
                (Some(v), Ok(read)) => {
                    prop_assert_eq!(read.accounts[0].balance, U256::from(v[0]));
                    prop_assert_eq!(read.accounts[0].nonce, v[1]);
                    prop_assert_eq!(
                        read.accounts[0].code.clone(),
                        Some(Bytes::from(v[2].to_be_bytes().to_vec()))
                    );
                    prop_assert_eq!(read.accounts[1].balance, U256::from(v[3]));
                    prop_assert_eq!(read.accounts[1].nonce, v[4]);
                    prop_assert_eq!(read.accounts[1].code.clone(), None);
                    prop_assert_eq!(read.slots[0].2, U256::from(v[5]));
                    prop_assert_eq!(read.slots[1].2, U256::from(v[6]));
                }
                (Some(_), Err(e)) => prop_assert!(false, "well-formed answers refused: {}", e),
                (None, Ok(read)) => prop_assert!(false, "a bad answer was accepted: {:?}", read),
                (None, Err(e)) => {
                    let text = e.to_string();
                    prop_assert!(
                        text.contains("eth_get") || text.contains("state read batch"),
                        "{}",
                        text
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}
