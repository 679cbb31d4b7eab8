//! The execution stage (`cantilever::exec`) against private anvil nodes and a loopback relay.
//!
//! The loopback relay below is ours, in the tests only: a hyper server on 127.0.0.1:0 that
//! implements `eth_sendBundle` and `eth_cancelBundle`. It checks `X-Flashbots-Signature` by its
//! own reading of DOMAIN §4.3 (keccak of the exact body, the `0x`-prefixed lowercase hex string
//! personal-signed, the address recovered and compared), answers a missing or bad signature the
//! way a relay does, and otherwise sends the bundle's transactions to an anvil node in order with
//! automine off and mines one block. Each test starts its own anvil (automine is changed), and
//! every server ends with its test's runtime.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use alloy::{
    eips::BlockNumberOrTag,
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, Signature, U256, hex, keccak256},
    providers::{
        DynProvider, Provider, ProviderBuilder, RootProvider, ext::AnvilApi,
        ext::sign_flashbots_payload,
    },
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
    transports::http::reqwest,
};
use cantilever::{
    config::{EndpointUrl, FeePolicy, RelayConfig},
    contracts::TestToken,
    devnet::{AnvilNode, AnvilOptions},
    exec::{
        Bundle, BundleSubmitter, FeeParams, GasMargin, InclusionOutcome, InclusionTracker,
        MissReason, NodeErrorKind, NonceManager, ProfitProbe, RawTxOutcome, RawTxSubmitter,
        RelayOutcome, SignedTx, Tracked, TxParams, TxSigner, resync_from,
    },
};
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const CHAIN_ID: u64 = 31337;
const TIMEOUT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// The loopback relay
// ---------------------------------------------------------------------------------------------

/// How the loopback relay behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayMode {
    /// Verify, forward to anvil, mine.
    Honest,
    /// Never answer.
    Hang,
    /// Change the body in flight (the target block) before verifying, like a tampering proxy.
    Tamper,
    /// Verify and accept, but forward nothing: the bundle waits for its block (until cancelled).
    Hold,
}

#[derive(Default)]
pub(crate) struct RelayLog {
    /// Recovered signers of accepted requests.
    pub(crate) signers: Vec<Address>,
    /// Bundles forwarded (their txs).
    pub(crate) bundles: Vec<Vec<Bytes>>,
    /// Cancelled replacement uuids.
    pub(crate) cancelled: Vec<String>,
    /// Requests rejected, with the message sent back.
    pub(crate) rejected: Vec<String>,
}

pub(crate) struct Relay {
    pub(crate) url: String,
    pub(crate) log: Arc<Mutex<RelayLog>>,
}

/// Starts a loopback relay forwarding to `anvil_url`.
pub(crate) async fn start_relay(anvil_url: &str, mode: RelayMode) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(RelayLog::default()));
    let anvil = RootProvider::new_http(anvil_url.parse().unwrap());
    let state = Arc::new((anvil, log.clone(), mode));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(req, &state).await) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Relay { url: format!("http://{addr}"), log }
}

type RelayState = (RootProvider, Arc<Mutex<RelayLog>>, RelayMode);

async fn handle(req: Request<Incoming>, state: &RelayState) -> Response<Full<hyper::body::Bytes>> {
    let (anvil, log, mode) = state;
    if *mode == RelayMode::Hang {
        std::future::pending::<()>().await;
    }
    let header =
        req.headers().get("x-flashbots-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    if *mode == RelayMode::Tamper {
        let text = String::from_utf8(body).unwrap();
        body = text.replacen("\"blockNumber\":\"0x", "\"blockNumber\":\"0x1", 1).into_bytes();
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = request["id"].clone();
    let reject = |status, code: i64, message: &str| {
        log.lock().unwrap().rejected.push(message.to_owned());
        reply(
            status,
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        )
    };
    let Some(header) = header else {
        return reject(StatusCode::FORBIDDEN, -32600, "missing X-Flashbots-Signature header");
    };
    let Some(signer) = verify_flashbots_header(&header, &body) else {
        return reject(StatusCode::FORBIDDEN, -32025, "invalid flashbots signature");
    };
    log.lock().unwrap().signers.push(signer);
    match request["method"].as_str() {
        Some("eth_sendBundle") => {
            let params = &request["params"][0];
            let txs: Vec<Bytes> = serde_json::from_value(params["txs"].clone()).unwrap();
            // Forward in order with automine off, then mine exactly one block.
            for tx in txs.iter().filter(|_| *mode != RelayMode::Hold) {
                // A victim seen in the public mempool is already in the node's pool.
                let sent: Result<B256, _> = anvil
                    .client()
                    .request("eth_sendRawTransaction", (hex::encode_prefixed(tx),))
                    .await;
                if let Err(e) = sent {
                    assert!(e.to_string().contains("already"), "relay forward failed: {e}");
                }
            }
            if *mode != RelayMode::Hold {
                anvil.anvil_mine(Some(1), None).await.unwrap();
            }
            let hash = keccak256(txs.iter().flat_map(|t| keccak256(t).0).collect::<Vec<u8>>());
            log.lock().unwrap().bundles.push(txs);
            reply(
                StatusCode::OK,
                json!({"jsonrpc": "2.0", "id": id, "result": {"bundleHash": hash}}),
            )
        }
        Some("eth_cancelBundle") => {
            let uuid = request["params"][0]["replacementUuid"].as_str().unwrap_or_default();
            log.lock().unwrap().cancelled.push(uuid.to_owned());
            reply(StatusCode::OK, json!({"jsonrpc": "2.0", "id": id, "result": null}))
        }
        _ => reject(StatusCode::OK, -32601, "method not found"),
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<hyper::body::Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(hyper::body::Bytes::from(body.to_string())))
        .unwrap()
}

/// DOMAIN §4.3, independently of alloy's helper: header `"<address>:<0x-signature>"`; h =
/// keccak256(body); msg = "0x" + lowercase hex(h) (66 ASCII chars); the signature is
/// personal_sign(msg) = sign(keccak256("\x19Ethereum Signed Message:\n66" ‖ msg)); v ∈ {0,1,27,28}.
/// Returns the address when the recovered signer equals the claimed one.
fn verify_flashbots_header(header: &str, body: &[u8]) -> Option<Address> {
    let (claimed, sig_hex) = header.split_once(':')?;
    let claimed: Address = claimed.parse().ok()?;
    let sig = hex::decode(sig_hex.strip_prefix("0x")?).ok()?;
    if sig.len() != 65 {
        return None;
    }
    let parity = match sig[64] {
        0 | 27 => false,
        1 | 28 => true,
        _ => return None,
    };
    let msg = format!("0x{}", hex::encode(keccak256(body)));
    assert_eq!(msg.len(), 66);
    let mut prefixed = b"\x19Ethereum Signed Message:\n66".to_vec();
    prefixed.extend_from_slice(msg.as_bytes());
    let digest = keccak256(&prefixed);
    let signature = Signature::from_bytes_and_parity(&sig[..64], parity);
    let recovered = signature.recover_address_from_prehash(&digest).ok()?;
    (recovered == claimed).then_some(recovered)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn anvil() -> AnvilNode {
    AnvilNode::spawn(&AnvilOptions { chain_id: CHAIN_ID, ..AnvilOptions::default() })
        .expect("anvil must be installed (npm install --prefix tools)")
}

fn reader(url: &str) -> RootProvider {
    RootProvider::new_http(url.parse().unwrap())
}

fn endpoint(url: &str) -> EndpointUrl {
    EndpointUrl::new(url).unwrap()
}

fn relay_config(name: &str, url: &str) -> RelayConfig {
    RelayConfig { name: name.into(), url: endpoint(url), builders: vec![] }
}

/// Next-block fees for a small policy from the latest header.
async fn fees(p: &RootProvider) -> (u128, u128) {
    let head = p.get_block_by_number(BlockNumberOrTag::Latest).await.unwrap().unwrap();
    let policy = FeePolicy {
        max_fee_gwei: 100.0,
        priority_fee_gwei: 1.0,
        tip_share_bps: 0,
        native_usd: 2_500.0,
    };
    let q = FeeParams::from_policy(&policy).quote(&head.header, None).unwrap();
    (q.max_fee_per_gas, q.max_priority_fee_per_gas)
}

/// A plain value transfer signed by `key`.
async fn transfer(p: &RootProvider, key: &PrivateKeySigner, nonce: u64, to: Address) -> SignedTx {
    let (max_fee, prio) = fees(p).await;
    TxSigner::new(key.clone())
        .sign_eip1559(&TxParams {
            chain_id: CHAIN_ID,
            nonce,
            to,
            input: Bytes::new(),
            gas_limit: 21_000,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: prio,
            value: U256::from(1_000u64),
        })
        .unwrap()
}

async fn nonce_of(p: &RootProvider, who: Address) -> u64 {
    p.get_transaction_count(who).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------------------------

/// [victim, backrun] signed by an identity key land in order in the target block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_lands_in_order_in_the_target_block() {
    let node = anvil();
    let p = reader(&node.http_url());
    p.anvil_set_auto_mine(false).await.unwrap();
    let relay = start_relay(&node.http_url(), RelayMode::Honest).await;
    let identity = PrivateKeySigner::random();
    let submitter = BundleSubmitter::new(
        "devnet",
        &[relay_config("loopback", &relay.url)],
        identity.clone(),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(submitter.identity(), identity.address());

    let (victim_key, executor_key) = (&node.keys()[1], &node.keys()[2]);
    let victim =
        transfer(&p, victim_key, nonce_of(&p, victim_key.address()).await, Address::repeat_byte(1))
            .await;
    let backrun = transfer(
        &p,
        executor_key,
        nonce_of(&p, executor_key.address()).await,
        Address::repeat_byte(2),
    )
    .await;
    let target = p.get_block_number().await.unwrap() + 1;
    let bundle = Bundle::with_leading(
        std::slice::from_ref(&victim.raw),
        std::slice::from_ref(&backrun),
        target,
    );

    let report = submitter.send(&bundle).await;
    assert_eq!(report.target_block, target);
    assert_eq!(report.replacement_uuid, bundle.replacement_uuid);
    assert_eq!(
        report.relay("loopback").unwrap().outcome,
        RelayOutcome::Accepted { bundle_hash: Some(bundle.bundle_hash()) },
        "the relay's bundle hash equals ours"
    );
    assert_eq!(report.accepted(), 1);
    {
        let log = relay.log.lock().unwrap();
        assert_eq!(log.signers, vec![identity.address()], "the relay saw the identity key");
        assert_eq!(log.bundles, vec![vec![victim.raw.clone(), backrun.raw.clone()]]);
        assert!(log.rejected.is_empty());
    }

    let v = p.get_transaction_receipt(victim.hash).await.unwrap().expect("victim mined");
    let b = p.get_transaction_receipt(backrun.hash).await.unwrap().expect("backrun mined");
    assert_eq!(v.block_number, Some(target));
    assert_eq!(b.block_number, Some(target));
    assert_eq!((v.transaction_index, b.transaction_index), (Some(0), Some(1)), "in bundle order");

    // Inclusion tracking of our backrun: included in the target block with its gas.
    let tracker = InclusionTracker::new("devnet", &endpoint(&node.http_url()), TIMEOUT).unwrap();
    let tracked = Tracked::new(std::slice::from_ref(&backrun), target, 0);
    let outcome = tracker.check(&tracked, target).await.unwrap().expect("decided");
    let InclusionOutcome::Included(landed) = outcome else { panic!("not included: {outcome:?}") };
    assert_eq!(landed.block, target);
    assert_eq!(landed.gas_used, 21_000);
    assert_eq!(landed.txs[0].index, 1);
    assert_eq!(landed.txs[0].effective_gas_price, b.effective_gas_price);
    assert_eq!(landed.gas_cost_wei, U256::from(21_000u64) * U256::from(b.effective_gas_price));

    // Cancel by replacement uuid reaches the relay, signed.
    let cancelled = submitter.cancel(bundle.replacement_uuid).await;
    assert_eq!(cancelled.len(), 1);
    assert!(cancelled[0].outcome.is_accepted(), "{cancelled:?}");
    assert_eq!(relay.log.lock().unwrap().cancelled, vec![bundle.replacement_uuid.to_string()]);
}

/// A body changed in flight, a header from the wrong signer, or no header: rejected as a relay
/// does, and nothing reaches the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_body_and_wrong_signer_are_rejected() {
    let node = anvil();
    let p = reader(&node.http_url());
    p.anvil_set_auto_mine(false).await.unwrap();
    let start_block = p.get_block_number().await.unwrap();
    let key = &node.keys()[3];
    let tx = transfer(&p, key, 0, Address::repeat_byte(3)).await;
    let bundle = Bundle::new(vec![tx.raw.clone()], start_block + 1);

    // Through the submitter, to a relay whose body is tampered with in flight.
    let tamper = start_relay(&node.http_url(), RelayMode::Tamper).await;
    let identity = PrivateKeySigner::random();
    let submitter =
        BundleSubmitter::new("devnet", &[relay_config("tampered", &tamper.url)], identity, TIMEOUT)
            .unwrap();
    let report = submitter.send(&bundle).await;
    assert_eq!(
        report.results[0].outcome,
        RelayOutcome::Rejected {
            code: Some(-32025),
            http_status: None,
            message: "invalid flashbots signature".into()
        }
    );

    // By hand, to an honest relay: the exact body an honest client sends.
    let honest = start_relay(&node.http_url(), RelayMode::Honest).await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendBundle",
        "params": [bundle.to_rpc(&[])]})
    .to_string();
    let signer = PrivateKeySigner::random();
    let other = PrivateKeySigner::random();
    let good = sign_flashbots_payload(body.clone(), &signer).await.unwrap();
    let client = reqwest::Client::new();
    let post = |header: Option<String>, body: String| {
        let mut req =
            client.post(&honest.url).header("content-type", "application/json").body(body);
        if let Some(h) = header {
            req = req.header("X-Flashbots-Signature", h);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };

    // Wrong signer: the header names `other` but `signer` signed.
    let (_, sig) = good.split_once(':').unwrap();
    let (status, answer) = post(Some(format!("{}:{sig}", other.address())), body.clone()).await;
    assert_eq!(status, 403);
    assert_eq!(answer["error"]["code"], -32025);
    assert_eq!(answer["error"]["message"], "invalid flashbots signature");
    // Tampered: a valid header over a different body.
    let tampered = body.replacen("\"id\":1", "\"id\":2", 1);
    assert_ne!(tampered, body);
    let (status, answer) = post(Some(good.clone()), tampered).await;
    assert_eq!((status, answer["error"]["code"].clone()), (403, json!(-32025)));
    // Signed raw 32 bytes instead of the hex string (the rundler PR #1187 mistake).
    let wrong_msg = alloy::signers::SignerSync::sign_message_sync(
        &signer,
        keccak256(body.as_bytes()).as_slice(),
    )
    .unwrap();
    let (status, _) = post(
        Some(format!("{}:{}", signer.address(), hex::encode_prefixed(wrong_msg.as_bytes()))),
        body.clone(),
    )
    .await;
    assert_eq!(status, 403);
    // No header at all.
    let (status, answer) = post(None, body.clone()).await;
    assert_eq!(status, 403);
    assert_eq!(answer["error"]["code"], -32600);
    assert_eq!(answer["error"]["message"], "missing X-Flashbots-Signature header");

    assert_eq!(honest.log.lock().unwrap().rejected.len(), 4);
    assert_eq!(p.get_block_number().await.unwrap(), start_block, "nothing was mined");
    assert!(p.get_transaction_receipt(tx.hash).await.unwrap().is_none());
    assert!(honest.log.lock().unwrap().bundles.is_empty());

    // Sanity: the same verifier accepts the good header, with v as 0/1 and as 27/28.
    let (addr, sig) = good.split_once(':').unwrap();
    let mut raw = hex::decode(sig).unwrap();
    raw[64] += 27;
    let v27 = format!("{addr}:{}", hex::encode_prefixed(&raw));
    assert_eq!(verify_flashbots_header(&good, body.as_bytes()), Some(signer.address()));
    assert_eq!(verify_flashbots_header(&v27, body.as_bytes()), Some(signer.address()));
    let (status, answer) = post(Some(v27), body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["bundleHash"], json!(bundle.bundle_hash()));
    assert_eq!(
        p.get_transaction_receipt(tx.hash).await.unwrap().unwrap().block_number,
        Some(start_block + 1)
    );
}

/// One relay hangs, another accepts: the hang is a per-relay timeout, the other's acceptance
/// stands, and the bundle lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_relay_times_out_while_another_accepts() {
    let node = anvil();
    let p = reader(&node.http_url());
    p.anvil_set_auto_mine(false).await.unwrap();
    let hang = start_relay(&node.http_url(), RelayMode::Hang).await;
    let honest = start_relay(&node.http_url(), RelayMode::Honest).await;
    let submitter = BundleSubmitter::new(
        "devnet",
        &[relay_config("slowpoke", &hang.url), relay_config("loopback", &honest.url)],
        PrivateKeySigner::random(),
        TIMEOUT,
    )
    .unwrap();
    let key = &node.keys()[4];
    let tx = transfer(&p, key, 0, Address::repeat_byte(4)).await;
    let target = p.get_block_number().await.unwrap() + 1;
    let bundle = Bundle::new(vec![tx.raw.clone()], target);

    let report = submitter.send(&bundle).await;
    assert_eq!(report.results.len(), 2);
    assert_eq!(report.results[0].relay, "slowpoke");
    assert_eq!(report.results[0].outcome, RelayOutcome::Timeout);
    assert!(report.results[0].elapsed >= TIMEOUT);
    assert_eq!(report.results[1].relay, "loopback");
    assert!(report.results[1].outcome.is_accepted(), "{:?}", report.results[1]);
    assert_eq!(report.accepted(), 1);
    let r = p.get_transaction_receipt(tx.hash).await.unwrap().expect("mined by the honest relay");
    assert_eq!(r.block_number, Some(target));

    let cancelled = submitter.cancel(bundle.replacement_uuid).await;
    assert_eq!(cancelled[0].outcome, RelayOutcome::Timeout);
    assert!(cancelled[1].outcome.is_accepted());
}

// ---------------------------------------------------------------------------------------------
// Raw transactions
// ---------------------------------------------------------------------------------------------

/// A signed token transfer lands; the tracker reports it with the receipt's gas and the realised
/// balance delta; the same nonce again is NonceTooLow and the manager resyncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tx_lands_then_reused_nonce_is_too_low() {
    let node = anvil();
    let url = node.http_url();
    let p = reader(&url);
    let owner = node.keys()[0].clone();
    let wallet: DynProvider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(owner.clone()))
        .connect_http(url.parse().unwrap())
        .erased();
    let token = TestToken::deploy(wallet.clone(), "Profit".into(), "PRF".into(), 18).await.unwrap();
    let executor = node.keys()[5].clone();
    token
        .mint(executor.address(), U256::from(1_000_000u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let holder = Address::repeat_byte(0x42);

    let mut nonces = NonceManager::new(CHAIN_ID, executor.address(), 0);
    let resync = resync_from(&mut nonces, &p).await.unwrap();
    assert_eq!(resync.next, 0);
    let nonce = nonces.next().unwrap();

    let head = p.get_block_by_number(BlockNumberOrTag::Latest).await.unwrap().unwrap();
    let fee = FeeParams::from_policy(&FeePolicy::default()).quote(&head.header, None).unwrap();
    let input: Bytes =
        TestToken::transferCall::new((holder, U256::from(12_345u64))).abi_encode().into();
    let simulated = p
        .estimate_gas(
            alloy::rpc::types::TransactionRequest::default()
                .from(executor.address())
                .to(*token.address())
                .input(input.clone().into()),
        )
        .await
        .unwrap();
    let signed = TxSigner::new(executor.clone())
        .sign_eip1559(&TxParams {
            chain_id: CHAIN_ID,
            nonce,
            to: *token.address(),
            input,
            gas_limit: GasMargin::default().gas_limit(simulated),
            max_fee_per_gas: fee.max_fee_per_gas,
            max_priority_fee_per_gas: fee.max_priority_fee_per_gas,
            value: U256::ZERO,
        })
        .unwrap();

    let submitter = RawTxSubmitter::new("devnet", "public-rpc", &endpoint(&url), TIMEOUT).unwrap();
    let sent = submitter.send(&signed).await;
    assert_eq!(sent.outcome, RawTxOutcome::Accepted { hash: signed.hash });
    assert_eq!((sent.endpoint.as_str(), sent.nonce), ("public-rpc", nonce));

    let tracker = InclusionTracker::new("devnet", &endpoint(&url), TIMEOUT).unwrap();
    let target = head.header.number + 1;
    let tracked = Tracked::new(std::slice::from_ref(&signed), target, 2)
        .with_profit(ProfitProbe { token: *token.address(), holder });
    let outcome = tracker.wait(&tracked, Duration::from_millis(100)).await.unwrap();
    let receipt = p.get_transaction_receipt(signed.hash).await.unwrap().unwrap();
    let InclusionOutcome::Included(landed) = outcome else { panic!("{outcome:?}") };
    assert_eq!(Some(landed.block), receipt.block_number);
    assert_eq!(landed.gas_used, receipt.gas_used);
    assert!(landed.gas_used <= signed.gas_limit);
    assert_eq!(landed.txs[0].effective_gas_price, receipt.effective_gas_price);
    let pnl = landed.pnl.unwrap();
    assert_eq!(pnl.token_delta(), alloy::primitives::I256::try_from(12_345).unwrap());
    assert_eq!(
        pnl.gas_cost_wei,
        U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price)
    );
    assert_eq!(
        pnl.net_wei(),
        pnl.token_delta() - alloy::primitives::I256::try_from(pnl.gas_cost_wei).unwrap()
    );
    nonces.confirm(nonce);

    // The same nonce again (a different tx): NonceTooLow, manager goes stale, resync fixes it.
    let again = transfer(&p, &executor, nonce, Address::repeat_byte(9)).await;
    let sent = submitter.send(&again).await;
    let RawTxOutcome::Rejected(err) = &sent.outcome else { panic!("{sent:?}") };
    assert_eq!(err.kind, NodeErrorKind::NonceTooLow, "{err:?}");
    assert!(err.kind.requires_resync());
    nonces.on_rejected(nonce, err.kind);
    assert!(nonces.next().is_err(), "stale until resync");
    let report = resync_from(&mut nonces, &p).await.unwrap();
    assert_eq!(report.next, 1);
    assert_eq!(nonces.next(), Ok(1));

    // A tx whose nonce someone else consumed is a miss of that kind, decided at once.
    let stolen = transfer(&p, &executor, 1, Address::repeat_byte(7)).await;
    let thief = transfer(&p, &executor, 1, Address::repeat_byte(8)).await;
    assert!(submitter.send(&thief).await.outcome.is_delivered());
    let head = p.get_block_number().await.unwrap();
    let tracked = Tracked::new(std::slice::from_ref(&stolen), head, 5);
    assert_eq!(
        tracker.check(&tracked, head).await.unwrap(),
        Some(InclusionOutcome::Missed { reason: MissReason::NonceUsedByOther { nonce: 1 } })
    );
}

/// A closed port and a server that drops the connection: unknown outcome, sent exactly once, no
/// URL in the result.
#[tokio::test]
async fn transport_failure_is_unknown_and_not_retried() {
    let key = PrivateKeySigner::random();
    let tx = TxSigner::new(key)
        .sign_eip1559(&TxParams {
            chain_id: CHAIN_ID,
            nonce: 0,
            to: Address::repeat_byte(1),
            input: Bytes::new(),
            gas_limit: 21_000,
            max_fee_per_gas: 2,
            max_priority_fee_per_gas: 1,
            value: U256::ZERO,
        })
        .unwrap();

    // A closed port.
    let closed: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}/v2/SECRETKEY123");
    let s = RawTxSubmitter::new("devnet", "private-rpc", &endpoint(&url), TIMEOUT).unwrap();
    let r = s.send(&tx).await;
    let RawTxOutcome::Unknown { timed_out, detail } = &r.outcome else { panic!("{r:?}") };
    assert!(!timed_out);
    assert!(detail.contains("connection"), "{detail}");
    assert!(r.outcome.is_unknown() && !r.outcome.is_delivered());
    assert!(!format!("{r:?}").contains("SECRETKEY123"));

    // A server that reads the request and hangs up without answering: counted, never re-sent.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
            drop(stream);
        }
    });
    let url = format!("http://{addr}/v2/SECRETKEY123");
    let s = RawTxSubmitter::new("devnet", "private-rpc", &endpoint(&url), TIMEOUT).unwrap();
    let results = s.send_all(&[tx.clone(), tx.clone()]).await;
    assert!(results[0].outcome.is_unknown(), "{results:?}");
    assert_eq!(results[1].outcome, RawTxOutcome::Skipped, "nothing after an unknown outcome");
    assert!(!format!("{results:?}").contains("SECRETKEY123"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "one connection, one request: not retried");
}
