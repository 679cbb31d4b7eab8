//! Submitters: raw transactions over `eth_sendRawTransaction`, signed bundles over
//! `eth_sendBundle` to many relays at once, and the [`Submitter`] enum chosen from the chain's
//! `[chains.submission]`.
//!
//! Every call goes over HTTP with a per-call (per-relay) timeout and is sent exactly once: a
//! transport failure or a timeout is an *unknown* outcome (the node or relay may have received
//! it), never a reason to re-send. Outcomes are data, one per destination. URLs may embed API
//! keys, so logs name relays by their configured `name`, and transport errors are rebuilt without
//! the URL.

use std::time::{Duration, Instant};

use alloy::{
    primitives::{B256, Bytes, hex},
    providers::{
        Provider, RootProvider,
        ext::{MevApi, MevBuilder},
    },
    rpc::types::mev::{EthCancelBundle, EthSendBundle},
    signers::local::PrivateKeySigner,
    transports::{RpcError, TransportErrorKind, http::reqwest},
};
use futures::future::join_all;
use uuid::Uuid;

use super::{
    error::SubmitSetupError,
    nonce::{NodeError, bounded},
    signer::{KeyRole, SignedTx, load_signer},
};
use crate::config::{ChainConfig, EndpointUrl, RelayConfig, SubmissionMode};

/// Tracing target of this module.
const TARGET: &str = "cantilever::exec";

/// Default per-call timeout of a submission.
pub const DEFAULT_SUBMIT_TIMEOUT: Duration = Duration::from_secs(2);

/// A failed RPC call, with every trace of the endpoint URL removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RpcFailure {
    /// A JSON-RPC error response (also when sent with an HTTP error status).
    Node { code: i64, message: String },
    /// An HTTP error status with a body that is not a JSON-RPC error.
    Http { status: u16, body: String },
    /// The response could not be decoded.
    Unreadable(String),
    /// Connection, TLS, body or other transport failure; the request may or may not have arrived.
    Transport(String),
}

impl RpcFailure {
    /// Classifies an alloy RPC error; `url` is removed from any message that might quote it.
    pub(crate) fn from_rpc(e: &RpcError<TransportErrorKind>, url: &str) -> Self {
        match e {
            RpcError::ErrorResp(p) => {
                Self::Node { code: p.code, message: bounded(&redact(&p.message, url), 512) }
            }
            RpcError::NullResp => Self::Unreadable("null response".into()),
            RpcError::DeserError { err, text } => {
                Self::Unreadable(bounded(&redact(&format!("{err}: {text}"), url), 512))
            }
            RpcError::Transport(TransportErrorKind::HttpError(h)) => {
                Self::Http { status: h.status, body: bounded(&redact(&h.body, url), 512) }
            }
            RpcError::Transport(TransportErrorKind::HttpErrorWithRetryAfter { error, .. }) => {
                Self::Http { status: error.status, body: bounded(&redact(&error.body, url), 512) }
            }
            RpcError::Transport(TransportErrorKind::Custom(inner)) => {
                let text = match inner.downcast_ref::<reqwest::Error>() {
                    Some(r) => describe_reqwest(r),
                    None => inner.to_string(),
                };
                Self::Transport(bounded(&redact(&text, url), 512))
            }
            other => Self::Transport(bounded(&redact(&other.to_string(), url), 512)),
        }
    }

    /// A one-line description (already free of URLs).
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Node { code, message } => format!("error {code}: {message}"),
            Self::Http { status, body } => format!("HTTP {status}: {body}"),
            Self::Unreadable(s) => format!("unreadable response: {s}"),
            Self::Transport(s) => format!("transport: {s}"),
        }
    }
}

/// A reqwest error described by its kind and source chain; reqwest's own `Display` includes the
/// URL, its sources do not.
fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else if e.is_request() {
        "sending the request failed"
    } else {
        "request failed"
    };
    let mut out = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `text` with `url` (as written and as normalised by the URL parser) replaced by `<url>`.
fn redact(text: &str, url: &str) -> String {
    // The normalised form may extend the written one (a trailing `/`): replace it first.
    let mut out = text.to_owned();
    if let Ok(parsed) = reqwest::Url::parse(url) {
        out = out.replace(parsed.as_str(), "<url>");
    }
    out.replace(url, "<url>")
}

/// An HTTP provider for `url`, with no retry layer (submissions are sent once).
pub(crate) fn http_provider(
    url: &EndpointUrl,
    chain: &str,
    endpoint: &str,
) -> Result<RootProvider, SubmitSetupError> {
    let bad =
        || SubmitSetupError::BadUrl { chain: chain.to_owned(), endpoint: endpoint.to_owned() };
    if !matches!(url.scheme().as_deref(), Some("http" | "https")) {
        return Err(bad());
    }
    let parsed = reqwest::Url::parse(url.expose_secret()).map_err(|_| bad())?;
    Ok(RootProvider::new_http(parsed))
}

// ---------------------------------------------------------------------------------------------
// Raw transactions
// ---------------------------------------------------------------------------------------------

/// What happened to one `eth_sendRawTransaction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawTxOutcome {
    /// The node accepted the transaction and answered with its hash.
    Accepted {
        /// The hash the node returned (equal to ours for a well-behaved node).
        hash: B256,
    },
    /// The node rejected it; [`NodeError::kind`] says whether nonces need a resync
    /// ([`NonceManager::on_rejected`](super::NonceManager::on_rejected)).
    Rejected(NodeError),
    /// The request may or may not have reached the node (timeout, connection or HTTP failure,
    /// unreadable answer). Not re-sent: keep the nonce reserved and let inclusion tracking and
    /// the next resync tell.
    Unknown {
        /// Whether the per-call timeout expired.
        timed_out: bool,
        /// What failed, without the endpoint URL.
        detail: String,
    },
    /// Not sent because an earlier transaction of the same request was not accepted (its nonce
    /// would leave a gap). Release its nonce.
    Skipped,
}

impl RawTxOutcome {
    /// Whether the node has the transaction (accepted, or rejected as already known).
    pub fn is_delivered(&self) -> bool {
        match self {
            Self::Accepted { .. } => true,
            Self::Rejected(e) => e.kind.is_delivered(),
            Self::Unknown { .. } | Self::Skipped => false,
        }
    }

    /// Whether the outcome is unknown (the transaction may be in a mempool).
    pub fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown { .. })
    }
}

/// One transaction's result from a [`RawTxSubmitter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTxResult {
    /// The endpoint's name (`public-rpc`, `private-rpc`, or as given).
    pub endpoint: String,
    /// Our hash of the transaction.
    pub hash: B256,
    /// Its nonce.
    pub nonce: u64,
    /// What happened.
    pub outcome: RawTxOutcome,
    /// Time from send to answer (or timeout).
    pub elapsed: Duration,
}

/// `eth_sendRawTransaction` to one HTTP endpoint (a chain's public RPC or a private endpoint).
#[derive(Debug, Clone)]
pub struct RawTxSubmitter {
    name: String,
    url: EndpointUrl,
    provider: RootProvider,
    timeout: Duration,
}

impl RawTxSubmitter {
    /// A submitter to `url`, named `name` in logs and results, with a per-call `timeout`.
    ///
    /// # Errors
    /// [`SubmitSetupError::BadUrl`] when `url` is not http(s); the URL is not quoted.
    pub fn new(
        chain: &str,
        name: &str,
        url: &EndpointUrl,
        timeout: Duration,
    ) -> Result<Self, SubmitSetupError> {
        Ok(Self {
            name: name.to_owned(),
            provider: http_provider(url, chain, name)?,
            url: url.clone(),
            timeout,
        })
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `tx` once. Never retried.
    ///
    /// Not cancel-safe in effect: dropping the future after the request left may still deliver
    /// the transaction (as with any send).
    pub async fn send(&self, tx: &SignedTx) -> RawTxResult {
        let started = Instant::now();
        let call = self
            .provider
            .client()
            .request::<_, B256>("eth_sendRawTransaction", (hex::encode_prefixed(&tx.raw),));
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => RawTxOutcome::Unknown { timed_out: true, detail: "timed out".into() },
            Ok(Ok(hash)) => RawTxOutcome::Accepted { hash },
            Ok(Err(e)) => match RpcFailure::from_rpc(&e, self.url.expose_secret()) {
                RpcFailure::Node { code, message } => {
                    RawTxOutcome::Rejected(NodeError::new(code, &message))
                }
                other => RawTxOutcome::Unknown { timed_out: false, detail: other.describe() },
            },
        };
        let elapsed = started.elapsed();
        tracing::debug!(
            target: TARGET,
            endpoint = %self.name,
            tx = %tx.hash,
            nonce = tx.nonce,
            outcome = ?outcome,
            elapsed_us = elapsed.as_micros() as u64,
            "raw tx sent"
        );
        RawTxResult {
            endpoint: self.name.clone(),
            hash: tx.hash,
            nonce: tx.nonce,
            outcome,
            elapsed,
        }
    }

    /// Sends `txs` one after another in the given (nonce) order; after the first one that is
    /// not delivered, the rest are [`RawTxOutcome::Skipped`].
    pub async fn send_all(&self, txs: &[SignedTx]) -> Vec<RawTxResult> {
        let mut results = Vec::with_capacity(txs.len());
        let mut stop = false;
        for tx in txs {
            if stop {
                results.push(RawTxResult {
                    endpoint: self.name.clone(),
                    hash: tx.hash,
                    nonce: tx.nonce,
                    outcome: RawTxOutcome::Skipped,
                    elapsed: Duration::ZERO,
                });
                continue;
            }
            let r = self.send(tx).await;
            stop = !r.outcome.is_delivered();
            results.push(r);
        }
        results
    }
}

// ---------------------------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------------------------

/// A Flashbots-style bundle for one target block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Signed 2718-encoded transactions, executed atomically in this order (others' txs first,
    /// e.g. `[victim, backrun]`).
    pub txs: Vec<Bytes>,
    /// The one block the bundle targets (resubmit every block).
    pub target_block: u64,
    /// UUID v4 for replacement and `eth_cancelBundle`.
    pub replacement_uuid: Uuid,
    /// Transactions allowed to revert without dropping the bundle.
    pub reverting_tx_hashes: Vec<B256>,
    /// Earliest unix time (seconds) the bundle is valid.
    pub min_timestamp: Option<u64>,
    /// Latest unix time (seconds) the bundle is valid.
    pub max_timestamp: Option<u64>,
}

impl Bundle {
    /// A bundle of `txs` for `target_block` with a fresh replacement UUID.
    pub fn new(txs: Vec<Bytes>, target_block: u64) -> Self {
        Self {
            txs,
            target_block,
            replacement_uuid: Uuid::new_v4(),
            reverting_tx_hashes: Vec::new(),
            min_timestamp: None,
            max_timestamp: None,
        }
    }

    /// A bundle of others' raw transactions (`leading`) followed by ours.
    pub fn with_leading(leading: &[Bytes], ours: &[SignedTx], target_block: u64) -> Self {
        let txs = leading.iter().cloned().chain(ours.iter().map(|t| t.raw.clone())).collect();
        Self::new(txs, target_block)
    }

    /// keccak256 of the concatenated transaction hashes, as relays compute it.
    pub fn bundle_hash(&self) -> B256 {
        self.to_rpc(&[]).bundle_hash()
    }

    /// The `eth_sendBundle` parameter, sharing with `builders` when not empty.
    pub fn to_rpc(&self, builders: &[String]) -> EthSendBundle {
        let mut rpc = EthSendBundle {
            txs: self.txs.clone(),
            block_number: self.target_block,
            min_timestamp: self.min_timestamp,
            max_timestamp: self.max_timestamp,
            reverting_tx_hashes: self.reverting_tx_hashes.clone(),
            replacement_uuid: Some(self.replacement_uuid.to_string()),
            ..Default::default()
        };
        if !builders.is_empty() {
            rpc.extra_fields.insert("builders".into(), serde_json::Value::from(builders.to_vec()));
        }
        rpc
    }
}

/// What one relay did with a bundle (or a cancel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Accepted; the relay's bundle hash when it returned one.
    Accepted {
        /// `bundleHash` from the relay's answer.
        bundle_hash: Option<B256>,
    },
    /// Rejected with a JSON-RPC error or an HTTP error status.
    Rejected {
        /// JSON-RPC error code, when the answer was a JSON-RPC error.
        code: Option<i64>,
        /// HTTP status, when the answer was a non-JSON-RPC HTTP error.
        http_status: Option<u16>,
        /// The relay's message or body (bounded).
        message: String,
    },
    /// No answer within the per-relay timeout; the relay may have the bundle.
    Timeout,
    /// Connection or transport failure, or an unreadable answer; the relay may have the bundle.
    Transport {
        /// What failed, without the relay URL.
        detail: String,
    },
}

impl RelayOutcome {
    /// Whether the relay accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted { .. })
    }

    fn from_failure(f: RpcFailure) -> Self {
        match f {
            RpcFailure::Node { code, message } => {
                Self::Rejected { code: Some(code), http_status: None, message }
            }
            RpcFailure::Http { status, body } => {
                Self::Rejected { code: None, http_status: Some(status), message: body }
            }
            other @ (RpcFailure::Unreadable(_) | RpcFailure::Transport(_)) => {
                Self::Transport { detail: other.describe() }
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "accepted",
            Self::Rejected { .. } => "rejected",
            Self::Timeout => "timeout",
            Self::Transport { .. } => "transport",
        }
    }
}

/// One relay's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayResult {
    /// The relay's configured name (never its URL).
    pub relay: String,
    /// What happened.
    pub outcome: RelayOutcome,
    /// Time from send to answer (or timeout).
    pub elapsed: Duration,
}

/// The answers of every relay to one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    /// The target block.
    pub target_block: u64,
    /// The bundle's replacement UUID (for [`BundleSubmitter::cancel`]).
    pub replacement_uuid: Uuid,
    /// The bundle hash computed locally.
    pub bundle_hash: B256,
    /// One result per relay, in configuration order.
    pub results: Vec<RelayResult>,
}

impl BundleReport {
    /// How many relays accepted.
    pub fn accepted(&self) -> usize {
        self.results.iter().filter(|r| r.outcome.is_accepted()).count()
    }

    /// The result of the relay named `name`.
    pub fn relay(&self, name: &str) -> Option<&RelayResult> {
        self.results.iter().find(|r| r.relay == name)
    }
}

/// One configured relay.
#[derive(Debug, Clone)]
struct Relay {
    name: String,
    url: EndpointUrl,
    builders: Vec<String>,
    provider: RootProvider,
}

/// `eth_sendBundle` / `eth_cancelBundle` to every configured relay at once, each request signed
/// with the identity key (`X-Flashbots-Signature`, through alloy's MEV API `with_auth`).
#[derive(Debug, Clone)]
pub struct BundleSubmitter {
    relays: Vec<Relay>,
    identity: PrivateKeySigner,
    timeout: Duration,
}

impl BundleSubmitter {
    /// A submitter to `relays` of chain `chain`, signing with `identity`, with a per-relay
    /// `timeout`.
    ///
    /// # Errors
    /// [`SubmitSetupError::Missing`] with no relays, [`SubmitSetupError::BadUrl`] naming the
    /// relay whose URL is not http(s).
    pub fn new(
        chain: &str,
        relays: &[RelayConfig],
        identity: PrivateKeySigner,
        timeout: Duration,
    ) -> Result<Self, SubmitSetupError> {
        if relays.is_empty() {
            return Err(SubmitSetupError::Missing {
                chain: chain.to_owned(),
                mode: SubmissionMode::FlashbotsRelay.to_string(),
                what: "at least one relay",
            });
        }
        let relays = relays
            .iter()
            .map(|r| {
                Ok(Relay {
                    name: r.name.clone(),
                    url: r.url.clone(),
                    builders: r.builders.clone(),
                    provider: http_provider(&r.url, chain, &format!("relay {}", r.name))?,
                })
            })
            .collect::<Result<Vec<_>, SubmitSetupError>>()?;
        Ok(Self { relays, identity, timeout })
    }

    /// The identity address relays see.
    pub fn identity(&self) -> alloy::primitives::Address {
        self.identity.address()
    }

    /// Sends `bundle` to every relay concurrently, each once, each under the timeout.
    pub async fn send(&self, bundle: &Bundle) -> BundleReport {
        let calls = self.relays.iter().map(|relay| {
            let call = relay
                .provider
                .send_bundle(bundle.to_rpc(&relay.builders))
                .with_auth(self.identity.clone());
            self.timed(relay, call, |hash| RelayOutcome::Accepted {
                bundle_hash: hash.map(|h| h.bundle_hash),
            })
        });
        let results = join_all(calls).await;
        let report = BundleReport {
            target_block: bundle.target_block,
            replacement_uuid: bundle.replacement_uuid,
            bundle_hash: bundle.bundle_hash(),
            results,
        };
        tracing::debug!(
            target: TARGET,
            target_block = report.target_block,
            bundle = %report.bundle_hash,
            accepted = report.accepted(),
            relays = report.results.len(),
            "bundle sent"
        );
        report
    }

    /// `eth_cancelBundle` by replacement UUID to every relay concurrently. Any non-error answer
    /// counts as accepted. Bids already in flight are not lowered (DOMAIN §4.1).
    pub async fn cancel(&self, replacement_uuid: Uuid) -> Vec<RelayResult> {
        let calls = self.relays.iter().map(|relay| {
            let params = (EthCancelBundle { replacement_uuid: replacement_uuid.to_string() },);
            let call: MevBuilder<_, serde_json::Value> =
                MevBuilder::new_rpc(relay.provider.client().request("eth_cancelBundle", params));
            self.timed(relay, call.with_auth(self.identity.clone()), |_| RelayOutcome::Accepted {
                bundle_hash: None,
            })
        });
        join_all(calls).await
    }

    /// Awaits one relay call under the timeout and turns it into a [`RelayResult`].
    async fn timed<T>(
        &self,
        relay: &Relay,
        call: impl std::future::IntoFuture<Output = Result<T, RpcError<TransportErrorKind>>>,
        accepted: impl FnOnce(T) -> RelayOutcome,
    ) -> RelayResult {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, call.into_future()).await {
            Err(_) => RelayOutcome::Timeout,
            Ok(Ok(v)) => accepted(v),
            Ok(Err(e)) => {
                RelayOutcome::from_failure(RpcFailure::from_rpc(&e, relay.url.expose_secret()))
            }
        };
        let elapsed = started.elapsed();
        tracing::debug!(
            target: TARGET,
            relay = %relay.name,
            outcome = outcome.kind(),
            elapsed_us = elapsed.as_micros() as u64,
            "relay answered"
        );
        RelayResult { relay: relay.name.clone(), outcome, elapsed }
    }
}

// ---------------------------------------------------------------------------------------------
// The submitter of a chain
// ---------------------------------------------------------------------------------------------

/// What to submit for one opportunity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitRequest {
    /// The block the submission aims at (head + 1).
    pub target_block: u64,
    /// Others' signed transactions that must come first (a backrun's victim). Bundles only.
    pub leading: Vec<Bytes>,
    /// Our signed transactions, in nonce order.
    pub txs: Vec<SignedTx>,
    /// Replace an earlier bundle with this UUID instead of using a fresh one. Bundles only.
    pub replacement_uuid: Option<Uuid>,
}

/// The per-destination outcomes of one [`Submitter::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitReport {
    /// Raw-transaction mode: one result per transaction.
    RawTx(Vec<RawTxResult>),
    /// Bundle mode: one result per relay.
    Bundle(BundleReport),
    /// Nothing was sent: the request cannot be carried by this chain's submission mode.
    Refused {
        /// Why.
        reason: &'static str,
    },
}

/// The submission path of one chain, chosen from `[chains.submission]`.
#[derive(Debug, Clone)]
pub enum Submitter {
    /// `public-rpc` or `private-rpc`: `eth_sendRawTransaction`.
    RawTx(RawTxSubmitter),
    /// `flashbots-relay`: signed `eth_sendBundle` to every relay.
    Bundle(BundleSubmitter),
}

impl Submitter {
    /// Builds the chain's submitter; in `flashbots-relay` mode loads the identity key from
    /// `submission.identity` (process environment).
    ///
    /// # Errors
    /// [`SubmitSetupError`] naming the chain and the endpoint or key that is missing or bad.
    pub fn from_config(chain: &ChainConfig, timeout: Duration) -> Result<Self, SubmitSetupError> {
        let identity = match (&chain.submission.mode, &chain.submission.identity) {
            (SubmissionMode::FlashbotsRelay, Some(r)) => {
                Some(load_signer(r, KeyRole::Identity).map_err(|source| {
                    SubmitSetupError::Identity { chain: chain.name.clone(), source }
                })?)
            }
            _ => None,
        };
        Self::from_config_with_identity(chain, identity, timeout)
    }

    /// [`from_config`](Self::from_config) with the identity key supplied by the caller.
    ///
    /// # Errors
    /// As [`from_config`](Self::from_config).
    pub fn from_config_with_identity(
        chain: &ChainConfig,
        identity: Option<PrivateKeySigner>,
        timeout: Duration,
    ) -> Result<Self, SubmitSetupError> {
        let sub = &chain.submission;
        let missing = |what| SubmitSetupError::Missing {
            chain: chain.name.clone(),
            mode: sub.mode.to_string(),
            what,
        };
        match sub.mode {
            SubmissionMode::PublicRpc => Ok(Self::RawTx(RawTxSubmitter::new(
                &chain.name,
                "public-rpc",
                &chain.http_url,
                timeout,
            )?)),
            SubmissionMode::PrivateRpc => {
                let url = sub.private_rpc_url.as_ref().ok_or_else(|| missing("private_rpc_url"))?;
                Ok(Self::RawTx(RawTxSubmitter::new(&chain.name, "private-rpc", url, timeout)?))
            }
            SubmissionMode::FlashbotsRelay => {
                let identity = identity.ok_or_else(|| missing("an identity key"))?;
                Ok(Self::Bundle(BundleSubmitter::new(&chain.name, &sub.relays, identity, timeout)?))
            }
        }
    }

    /// Submits `req`: in raw mode our transactions one by one (leading transactions refused);
    /// in bundle mode `leading ‖ txs` as one bundle for `target_block` to every relay.
    pub async fn submit(&self, req: &SubmitRequest) -> SubmitReport {
        match self {
            Self::RawTx(s) => {
                if !req.leading.is_empty() {
                    return SubmitReport::Refused {
                        reason: "raw-transaction submission cannot place others' transactions first",
                    };
                }
                SubmitReport::RawTx(s.send_all(&req.txs).await)
            }
            Self::Bundle(s) => {
                let mut bundle = Bundle::with_leading(&req.leading, &req.txs, req.target_block);
                if let Some(uuid) = req.replacement_uuid {
                    bundle.replacement_uuid = uuid;
                }
                SubmitReport::Bundle(s.send(&bundle).await)
            }
        }
    }

    /// Cancels a bundle by replacement UUID on every relay; nothing to do in raw mode.
    pub async fn cancel(&self, replacement_uuid: Uuid) -> Vec<RelayResult> {
        match self {
            Self::RawTx(_) => Vec::new(),
            Self::Bundle(s) => s.cancel(replacement_uuid).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_both_url_forms() {
        let url = "http://127.0.0.1:9/v2/SECRETKEY";
        let text = "error sending request for url (http://127.0.0.1:9/v2/SECRETKEY)";
        assert!(!redact(text, url).contains("SECRETKEY"));
        let bare = "http://relay.example:8545";
        let text = "error for url (http://relay.example:8545/)";
        assert_eq!(redact(text, bare), "error for url (<url>)");
    }

    fn chain(mode: SubmissionMode) -> ChainConfig {
        ChainConfig {
            name: "c".into(),
            chain_id: 1,
            ws_url: EndpointUrl::new("ws://127.0.0.1:1").unwrap(),
            http_url: EndpointUrl::new("http://127.0.0.1:1").unwrap(),
            block_time_ms: 1_000,
            submission: crate::config::SubmissionConfig {
                mode,
                private_rpc_url: None,
                relays: vec![],
                identity: None,
            },
            signer: None,
            executor: None,
            fees: Default::default(),
            tokens: vec![],
            venues: vec![],
            flash_lenders: vec![],
        }
    }

    #[test]
    fn submitter_follows_the_submission_mode() {
        let t = DEFAULT_SUBMIT_TIMEOUT;
        let public = Submitter::from_config(&chain(SubmissionMode::PublicRpc), t).unwrap();
        assert!(matches!(&public, Submitter::RawTx(s) if s.name() == "public-rpc"));

        let mut private = chain(SubmissionMode::PrivateRpc);
        let err = Submitter::from_config(&private, t).unwrap_err();
        assert_eq!(err.to_string(), "chain c: submission mode private-rpc needs private_rpc_url");
        private.submission.private_rpc_url =
            Some(EndpointUrl::new("https://rpc.example/v2/SECRETKEY").unwrap());
        let s = Submitter::from_config(&private, t).unwrap();
        assert!(matches!(&s, Submitter::RawTx(s) if s.name() == "private-rpc"));
        assert!(!format!("{s:?}").contains("SECRETKEY"), "Debug never shows the URL");

        let mut relay = chain(SubmissionMode::FlashbotsRelay);
        let err = Submitter::from_config_with_identity(&relay, None, t).unwrap_err();
        assert!(err.to_string().contains("needs an identity key"), "{err}");
        let id = PrivateKeySigner::random();
        let err = Submitter::from_config_with_identity(&relay, Some(id.clone()), t).unwrap_err();
        assert!(err.to_string().contains("needs at least one relay"), "{err}");
        relay.submission.relays = vec![RelayConfig {
            name: "flashbots".into(),
            url: EndpointUrl::new("ws://relay.example/SECRETKEY").unwrap(),
            builders: vec![],
        }];
        let err = Submitter::from_config_with_identity(&relay, Some(id.clone()), t).unwrap_err();
        assert_eq!(err.to_string(), "chain c: relay flashbots: not a valid http(s) URL");
        relay.submission.relays[0].url = EndpointUrl::new("https://relay.example").unwrap();
        let s = Submitter::from_config_with_identity(&relay, Some(id), t).unwrap();
        assert!(matches!(s, Submitter::Bundle(_)));
    }

    #[tokio::test]
    async fn raw_mode_refuses_leading_transactions() {
        let s = Submitter::from_config(&chain(SubmissionMode::PublicRpc), DEFAULT_SUBMIT_TIMEOUT)
            .unwrap();
        let req = SubmitRequest { leading: vec![Bytes::from_static(&[1])], ..Default::default() };
        assert!(matches!(s.submit(&req).await, SubmitReport::Refused { .. }));
        assert!(s.cancel(Uuid::new_v4()).await.is_empty());
    }

    #[test]
    fn bundle_rpc_shape() {
        let b = Bundle::new(vec![Bytes::from_static(&[1]), Bytes::from_static(&[2])], 0x10);
        let v = serde_json::to_value(b.to_rpc(&["flashbots".into(), "Titan".into()])).unwrap();
        assert_eq!(v["blockNumber"], "0x10");
        assert_eq!(v["txs"], serde_json::json!(["0x01", "0x02"]));
        assert_eq!(v["builders"], serde_json::json!(["flashbots", "Titan"]));
        assert_eq!(v["replacementUuid"], b.replacement_uuid.to_string());
        assert_eq!(b.replacement_uuid.get_version_num(), 4);
        let v = serde_json::to_value(b.to_rpc(&[])).unwrap();
        assert!(v.get("builders").is_none());
        let expected = alloy::primitives::keccak256(
            [alloy::primitives::keccak256([1u8]).0, alloy::primitives::keccak256([2u8]).0].concat(),
        );
        assert_eq!(b.bundle_hash(), expected);
    }
}
