//! RPC faults for state reads (`state::RpcSource` under its `RetryPolicy`) and for submissions
//! (`exec`, never retried), through [`FakeRpc`] in front of a private anvil node.

use std::time::Duration;

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ext::AnvilApi},
    signers::local::PrivateKeySigner,
};
use cantilever::{
    config::{EndpointUrl, RelayConfig},
    devnet::{AnvilNode, AnvilOptions},
    exec::{
        Bundle, BundleSubmitter, RawTxOutcome, RawTxSubmitter, RelayOutcome, TxParams, TxSigner,
    },
    state::{
        AccountRead, MethodStats, ReadRequest, ReadSet, RetryPolicy, RpcSource, SourceError,
        StateSource,
    },
};

use super::fake_rpc::{FakeRpc, Reply};
use crate::harness::reader;

/// A private node with known state at block `head`.
pub struct Fixture {
    pub node: AnvilNode,
    pub head: B256,
    pub request: ReadRequest,
    pub expected: ReadSet,
}

const ALICE: Address = Address::repeat_byte(0x11);
const POOL: Address = Address::repeat_byte(0x22);

/// Sets a balance, a nonce, code and a storage slot, mines, and returns what a read must answer.
pub async fn fixture() -> Fixture {
    let node = AnvilNode::spawn(&AnvilOptions::default()).expect("private anvil node");
    let p = reader(&node.http_url());
    let code = Bytes::from_static(&[0x60, 0x00, 0x60, 0x00, 0xf3]);
    p.anvil_set_balance(ALICE, U256::from(123_456_789u64)).await.unwrap();
    p.anvil_set_nonce(ALICE, 7).await.unwrap();
    p.anvil_set_code(POOL, code.clone()).await.unwrap();
    p.anvil_set_storage_at(POOL, U256::from(5), B256::from(U256::from(99u64))).await.unwrap();
    p.evm_mine(None).await.unwrap();
    let head = p.get_block_by_number(BlockNumberOrTag::Latest).await.unwrap().unwrap().header.hash;
    let request = ReadRequest {
        accounts: vec![(ALICE, false), (POOL, true)],
        slots: vec![(POOL, U256::from(5)), (POOL, U256::from(6))],
    };
    let expected = ReadSet {
        accounts: vec![
            AccountRead {
                address: ALICE,
                balance: U256::from(123_456_789u64),
                nonce: 7,
                code: None,
            },
            AccountRead { address: POOL, balance: U256::ZERO, nonce: 0, code: Some(code) },
        ],
        slots: vec![(POOL, U256::from(5), U256::from(99u64)), (POOL, U256::from(6), U256::ZERO)],
    };
    Fixture { node, head, request, expected }
}

/// A short policy for tests: 800 ms per call (loose enough for a loaded CI machine), 20–100 ms
/// between attempts, 3 s overall.
pub fn short_policy() -> RetryPolicy {
    RetryPolicy {
        call_timeout: Duration::from_millis(800),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        deadline: Duration::from_secs(3),
        max_attempts: 20,
    }
}

fn source(url: &str, policy: RetryPolicy) -> RpcSource {
    let provider: DynProvider = reader(url);
    RpcSource::new(provider, 100).with_policy(policy)
}

fn n(counter: &std::sync::atomic::AtomicU64) -> u64 {
    MethodStats::read(counter)
}

/// 429, a JSON-RPC rate-limit error and a 503 in a row: the batched read retries through them and
/// answers exactly what the node holds.
#[tokio::test]
async fn transient_faults_recover_with_the_right_values() {
    let f = fixture().await;
    let fake = FakeRpc::start(Some(&f.node.http_url())).await;
    let src = source(&fake.url, short_policy());
    fake.script([
        Reply::Status(429),
        Reply::RpcError(-32005, "rate limit exceeded, slow down"),
        Reply::Status(503),
    ]);
    let read = src.read(f.head, &f.request).await.expect("recovered");
    assert_eq!(read, f.expected);
    let s = &src.stats().state_batch;
    assert_eq!((n(&s.attempts), n(&s.retries), n(&s.errors)), (4, 3, 3));
    assert_eq!((n(&s.timeouts), n(&s.failures)), (0, 0));
    assert_eq!(fake.hits(), vec!["batch[7]"; 4], "one batch per attempt, nothing else");

    // Block reads too: a 502 then the block, and its logs after a rate limit.
    fake.script([Reply::Status(502)]);
    let info = src.block(f.head).await.expect("block after a 502");
    assert_eq!(info.block.hash, f.head);
    assert_eq!(n(&src.stats().get_block_by_hash.retries), 1);
    fake.script([Reply::Forward, Reply::RpcError(429, "Too Many Requests")]);
    let latest = src.latest().await.expect("latest after a rate-limited getLogs");
    assert_eq!(latest.block.hash, f.head);
    assert_eq!(n(&src.stats().get_logs.retries), 1);
    assert_eq!(n(&src.stats().get_block_by_number.attempts), 1);
}

/// A node that never answers: the attempt hits the per-call timeout, the retry gets the answer.
#[tokio::test]
async fn a_hang_hits_the_timeout_then_recovers() {
    let f = fixture().await;
    let fake = FakeRpc::start(Some(&f.node.http_url())).await;
    let src = source(&fake.url, short_policy());
    fake.script([Reply::Hang]);
    assert_eq!(src.read(f.head, &f.request).await.expect("recovered"), f.expected);
    let s = &src.stats().state_batch;
    assert_eq!((n(&s.timeouts), n(&s.attempts), n(&s.failures)), (1, 2, 0));
    fake.script([Reply::Hang, Reply::Hang]);
    assert_eq!(src.block(f.head).await.expect("recovered").block.hash, f.head);
    assert_eq!(n(&src.stats().get_block_by_hash.timeouts), 2);
}

/// A node that keeps failing: the read gives up within the deadline with the last error, which
/// names the method and the cause; it never answers, and is counted as a failure.
#[tokio::test]
async fn an_exhausted_deadline_fails_naming_the_method() {
    let f = fixture().await;
    let fake = FakeRpc::start(Some(&f.node.http_url())).await;
    let src = source(&fake.url, short_policy());
    fake.then(Reply::Status(503));
    let started = std::time::Instant::now();
    let err = src.block(f.head).await.expect_err("503 forever");
    let spent = started.elapsed();
    let text = err.to_string();
    assert!(text.starts_with("eth_getBlockByHash: transport error"), "{text}");
    assert!(text.contains("503"), "{text}");
    assert!(err.is_retryable(), "transient in kind, but the budget is spent");
    let s = &src.stats().get_block_by_hash;
    let attempts = n(&s.attempts);
    assert!(attempts >= 2, "{attempts}");
    assert_eq!(attempts as usize, fake.hits().len());
    assert_eq!((n(&s.failures), n(&s.retries)), (1, attempts - 1));
    // A bound, not a speed check: no retry starts past the deadline, and the last attempt is cut
    // to the time left.
    assert!(spent < short_policy().deadline + short_policy().call_timeout, "{spent:?}");

    let err = src.read(f.head, &f.request).await.expect_err("503 forever");
    assert!(err.to_string().starts_with("state read batch: transport error"), "{err}");
    assert_eq!(n(&src.stats().state_batch.failures), 1);

    // A capped attempt count ends sooner, with the same error.
    fake.clear_hits();
    let one = source(&fake.url, RetryPolicy { max_attempts: 1, ..short_policy() });
    let err = one.latest().await.expect_err("503");
    assert!(err.to_string().starts_with("eth_getBlockByNumber: transport error"), "{err}");
    assert_eq!(fake.hits(), vec!["eth_getBlockByNumber"]);
}

/// Null answers are errors, never zero state: a node that answers `null` for every value makes
/// the read fail (after retries) naming the method, and a single null answer is retried into the
/// right, non-zero values. A block the node does not know is retried only within the deadline.
#[tokio::test]
async fn empty_answers_are_never_zero_state() {
    let f = fixture().await;
    let fake = FakeRpc::start(Some(&f.node.http_url())).await;
    let src = source(&fake.url, short_policy());
    fake.script([Reply::NullResults]);
    assert_eq!(src.read(f.head, &f.request).await.expect("retried"), f.expected);
    assert_eq!(n(&src.stats().state_batch.errors), 1);

    fake.then(Reply::NullResults);
    let err = src.read(f.head, &f.request).await.expect_err("null forever");
    assert!(matches!(err, SourceError::Malformed { method: "eth_getBalance", .. }), "{err:?}");
    assert!(err.to_string().starts_with("eth_getBalance: malformed answer"), "{err}");
    let err = src.block(f.head).await.expect_err("null block forever");
    assert!(matches!(err, SourceError::UnknownBlock { .. }), "{err:?}");
    assert!(n(&src.stats().get_block_by_hash.retries) >= 1, "retried before giving up");

    // An unknown hash straight from the node: retried as a lagging node, within the deadline.
    fake.then(Reply::Forward);
    let before = n(&src.stats().state_batch.attempts);
    let err = src.read(B256::repeat_byte(0xab), &f.request).await.expect_err("unknown block");
    assert!(matches!(err, SourceError::UnknownBlock { .. }), "{err:?}");
    assert!(n(&src.stats().state_batch.attempts) - before >= 2, "retried");
}

/// An error that asking again will not fix (invalid params) fails at once, without retries.
#[tokio::test]
async fn a_refusal_is_not_retried() {
    let f = fixture().await;
    let fake = FakeRpc::start(Some(&f.node.http_url())).await;
    let src = source(&fake.url, short_policy());
    fake.then(Reply::RpcError(-32602, "invalid params"));
    let err = src.block(f.head).await.expect_err("refused");
    assert!(
        matches!(err, SourceError::Rejected { method: "eth_getBlockByHash", code: -32602, .. }),
        "{err:?}"
    );
    assert_eq!(fake.hits().len(), 1);
    assert_eq!(n(&src.stats().get_block_by_hash.retries), 0);
}

/// A transport error never quotes the endpoint (which may embed an API key).
#[tokio::test]
async fn transport_errors_never_show_the_url() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}/v2/SECRETKEY123");
    let src = source(&url, RetryPolicy { max_attempts: 2, ..short_policy() });
    let err = src.latest().await.expect_err("closed port");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("SECRETKEY123"), "{text}");
    assert!(text.contains("eth_getBlockByNumber"), "{text}");
}

fn signed_tx() -> cantilever::exec::SignedTx {
    TxSigner::new(PrivateKeySigner::random())
        .sign_eip1559(&TxParams {
            chain_id: 31337,
            nonce: 0,
            to: Address::repeat_byte(1),
            input: Bytes::new(),
            gas_limit: 21_000,
            max_fee_per_gas: 2,
            max_priority_fee_per_gas: 1,
            value: U256::ZERO,
        })
        .unwrap()
}

/// Submissions are sent once: a 5xx on `eth_sendRawTransaction` or `eth_sendBundle` is reported
/// (unknown outcome / rejected) after exactly one request, while reads through the same fault
/// would retry.
#[tokio::test]
async fn a_5xx_on_a_submission_is_reported_once_not_retried() {
    let fake = FakeRpc::start(None).await;
    fake.then(Reply::Status(503));
    let url = EndpointUrl::new(format!("{}/v2/SECRETKEY123", fake.url)).unwrap();
    let raw = RawTxSubmitter::new("devnet", "private-rpc", &url, Duration::from_secs(3)).unwrap();
    let r = raw.send(&signed_tx()).await;
    let RawTxOutcome::Unknown { timed_out: false, detail } = &r.outcome else { panic!("{r:?}") };
    assert!(detail.contains("503"), "{detail}");
    assert_eq!(fake.hits(), vec!["eth_sendRawTransaction"], "sent exactly once");
    assert!(!format!("{r:?}").contains("SECRETKEY123"));

    fake.clear_hits();
    let relays = [RelayConfig { name: "r1".into(), url, builders: vec![] }];
    let bundles =
        BundleSubmitter::new("devnet", &relays, PrivateKeySigner::random(), Duration::from_secs(3))
            .unwrap();
    let report = bundles.send(&Bundle::new(vec![signed_tx().raw], 5)).await;
    let outcome = &report.relay("r1").unwrap().outcome;
    assert!(
        matches!(outcome, RelayOutcome::Rejected { http_status: Some(503), .. }),
        "{outcome:?}"
    );
    assert_eq!(fake.hits(), vec!["eth_sendBundle"], "sent exactly once");
}
