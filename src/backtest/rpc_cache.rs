//! The on-disk answer cache of an RPC backtest: a transport layer that answers every JSON-RPC
//! request it has seen before from a SQLite file keyed by (method, params), the block being part
//! of the params (a block number or an EIP-1898 hash), and sends the others — throttled to a
//! request rate — to the node, storing each successful answer.
//!
//! Requests for a moving target (`latest`, `pending`, `safe`, `finalized`, `earliest`) and
//! `eth_blockNumber` are never cached; errors and null answers are never stored, so a node that
//! lagged is asked again next time. A re-run over the same blocks is answered entirely from the
//! file and touches no network.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use alloy::{
    rpc::json_rpc::{RequestPacket, Response, ResponsePacket, ResponsePayload, SerializedRequest},
    transports::{TransportError, TransportErrorKind, TransportFut},
};
use rusqlite::{Connection, OptionalExtension};
use serde_json::value::RawValue;
use tower::{Layer, Service};

/// Counters of an [`RpcCache`] (shared by its clones).
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Requests answered from the file.
    pub hits: AtomicU64,
    /// Requests sent to the node (each request of a batch counts).
    pub network: AtomicU64,
    /// Answers stored.
    pub stored: AtomicU64,
}

impl CacheCounters {
    /// Requests sent to the node so far.
    pub fn network(&self) -> u64 {
        self.network.load(Ordering::Relaxed)
    }

    /// Requests answered from the file so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Shared {
    db: Mutex<Connection>,
    counters: Arc<CacheCounters>,
    interval: Duration,
    next_slot: tokio::sync::Mutex<Instant>,
}

/// Why the cache file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("RPC cache {file}: {source}")]
pub struct CacheError {
    /// The file.
    pub file: String,
    /// The SQLite error.
    #[source]
    pub source: rusqlite::Error,
}

/// The cache layer (see the [module docs](self)); clones share the file, the throttle and the
/// counters.
#[derive(Clone, Debug)]
pub struct RpcCache {
    shared: Arc<Shared>,
}

impl RpcCache {
    /// Opens (or creates) the cache at `dir/rpc-cache.sqlite`, sending at most
    /// `requests_per_s` requests per second to the node (0: unthrottled).
    ///
    /// # Errors
    /// [`CacheError`] naming the file.
    pub fn open(dir: &Path, requests_per_s: u32) -> Result<Self, CacheError> {
        let file = dir.join("rpc-cache.sqlite");
        let err = |source| CacheError { file: file.display().to_string(), source };
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))));
        }
        let db = Connection::open(&file).map_err(err)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS answers (
                 key TEXT PRIMARY KEY,
                 method TEXT NOT NULL,
                 block TEXT NOT NULL,
                 params TEXT NOT NULL,
                 result TEXT NOT NULL
             );",
        )
        .map_err(err)?;
        let interval = if requests_per_s == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1) / requests_per_s
        };
        Ok(Self {
            shared: Arc::new(Shared {
                db: Mutex::new(db),
                counters: Arc::default(),
                interval,
                next_slot: tokio::sync::Mutex::new(Instant::now()),
            }),
        })
    }

    /// The counters.
    pub fn counters(&self) -> Arc<CacheCounters> {
        self.shared.counters.clone()
    }
}

impl<S> Layer<S> for RpcCache {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService { inner, shared: self.shared.clone() }
    }
}

/// The service of [`RpcCache`] over the transport `S`.
#[derive(Clone, Debug)]
pub struct CacheService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// Block tags whose answer moves with the chain.
const MOVING: [&str; 5] =
    ["\"latest\"", "\"pending\"", "\"safe\"", "\"finalized\"", "\"earliest\""];

/// The cache key of `req` (method and params) and the block it names, or `None` when its answer
/// may change.
fn key_of(req: &SerializedRequest) -> Option<(String, String, String)> {
    let method = req.method();
    let params = req.params().map_or("[]", RawValue::get);
    if method == "eth_blockNumber" || MOVING.iter().any(|t| params.contains(t)) {
        return None;
    }
    let block = serde_json::from_str::<Vec<serde_json::Value>>(params)
        .ok()
        .and_then(|p| {
            let v = if method.starts_with("eth_getBlockBy") { p.first() } else { p.last() };
            v.map(|v| match v {
                serde_json::Value::Object(o) => {
                    o.get("blockHash").or_else(|| o.get("blockNumber")).map_or_else(
                        || serde_json::Value::Object(o.clone()).to_string(),
                        ToString::to_string,
                    )
                }
                other => other.to_string(),
            })
        })
        .unwrap_or_default();
    Some((format!("{method} {params}"), method.to_owned(), block))
}

impl Shared {
    fn get(&self, key: &str) -> Result<Option<Box<RawValue>>, TransportError> {
        let db =
            self.db.lock().map_err(|_| TransportErrorKind::custom_str("RPC cache poisoned"))?;
        let text: Option<String> = db
            .query_row("SELECT result FROM answers WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| TransportErrorKind::custom_str(&format!("RPC cache read: {e}")))?;
        Ok(text.and_then(|t| RawValue::from_string(t).ok()))
    }

    fn put(&self, (key, method, block): &(String, String, String), params: &str, result: &str) {
        let Ok(db) = self.db.lock() else { return };
        let stored = db.execute(
            "INSERT OR REPLACE INTO answers (key, method, block, params, result)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![key, method, block, params, result],
        );
        match stored {
            Ok(_) => {
                self.counters.stored.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "RPC cache: answer not stored"),
        }
    }

    /// Waits for the next request slot of the throttle.
    async fn throttle(&self, requests: u32) {
        if self.interval.is_zero() {
            return;
        }
        let at = {
            let mut next = self.next_slot.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + self.interval * requests.max(1);
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

impl<S> Service<RequestPacket> for CacheService<S>
where
    S: Service<RequestPacket, Response = ResponsePacket, Error = TransportError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: RequestPacket) -> Self::Future {
        let mut inner = self.inner.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let reqs: Vec<&SerializedRequest> = match &req {
                RequestPacket::Single(r) => vec![r],
                RequestPacket::Batch(b) => b.iter().collect(),
            };
            let keys: Vec<_> = reqs.iter().map(|r| key_of(r)).collect();
            let mut cached = Vec::with_capacity(reqs.len());
            for k in &keys {
                cached.push(match k {
                    Some(k) => shared.get(&k.0)?,
                    None => None,
                });
            }
            if !reqs.is_empty() && cached.iter().all(Option::is_some) {
                shared.counters.hits.fetch_add(reqs.len() as u64, Ordering::Relaxed);
                let answers: Vec<Response> = reqs
                    .iter()
                    .zip(cached)
                    .filter_map(|(r, c)| {
                        c.map(|c| Response {
                            id: r.id().clone(),
                            payload: ResponsePayload::Success(c),
                        })
                    })
                    .collect();
                return Ok(match req {
                    RequestPacket::Single(_) => {
                        ResponsePacket::Single(answers.into_iter().next().ok_or_else(|| {
                            TransportErrorKind::custom_str("RPC cache: empty answer")
                        })?)
                    }
                    RequestPacket::Batch(_) => ResponsePacket::Batch(answers),
                });
            }
            // What to store once answered: id → (key, params).
            let wanted: Vec<_> = reqs
                .iter()
                .zip(keys)
                .filter_map(|(r, k)| {
                    k.map(|k| {
                        (r.id().clone(), k, r.params().map_or("[]", RawValue::get).to_owned())
                    })
                })
                .collect();
            let n = reqs.len() as u32;
            shared.throttle(n).await;
            shared.counters.network.fetch_add(u64::from(n), Ordering::Relaxed);
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            let resp = inner.call(req).await?;
            let answers: Vec<&Response> = match &resp {
                ResponsePacket::Single(r) => vec![r],
                ResponsePacket::Batch(b) => b.iter().collect(),
            };
            for a in answers {
                let ResponsePayload::Success(v) = &a.payload else { continue };
                if v.get() == "null" {
                    continue;
                }
                if let Some((_, k, params)) = wanted.iter().find(|(id, _, _)| *id == a.id) {
                    shared.put(k, params, v.get());
                }
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &'static str, params: &str) -> SerializedRequest {
        let params = RawValue::from_string(params.to_owned()).unwrap();
        alloy::rpc::json_rpc::Request::new(method, alloy::rpc::json_rpc::Id::Number(1), params)
            .serialize()
            .unwrap()
    }

    #[test]
    fn pinned_requests_are_keyed_with_their_block_and_moving_ones_are_not() {
        let (key, method, block) =
            key_of(&req("eth_getStorageAt", r#"["0x01","0x02",{"blockHash":"0xab"}]"#)).unwrap();
        assert_eq!(method, "eth_getStorageAt");
        assert_eq!(block, r#""0xab""#);
        assert!(key.starts_with("eth_getStorageAt ["));
        let (_, _, block) = key_of(&req("eth_getBlockByNumber", r#"["0x10",true]"#)).unwrap();
        assert_eq!(block, r#""0x10""#);
        assert!(key_of(&req("eth_getBlockByNumber", r#"["latest",true]"#)).is_none());
        assert!(key_of(&req("eth_blockNumber", "[]")).is_none());
    }

    #[tokio::test]
    async fn answers_are_stored_and_served_without_the_node() {
        let dir =
            std::env::temp_dir().join(format!("cantilever-rpc-cache-{}", uuid::Uuid::new_v4()));
        let cache = RpcCache::open(&dir, 0).unwrap();
        let k = key_of(&req("eth_chainId", "[]")).unwrap();
        cache.shared.put(&k, "[]", "\"0x8a\"");
        assert_eq!(cache.shared.get(&k.0).unwrap().unwrap().get(), "\"0x8a\"");
        // Reopened: still there.
        drop(cache);
        let cache = RpcCache::open(&dir, 0).unwrap();
        assert!(cache.shared.get(&k.0).unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
