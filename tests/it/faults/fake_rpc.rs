//! A fake JSON-RPC HTTP server, ours, for tests only (hyper on 127.0.0.1:0). Each HTTP request
//! takes the next [`Reply`] from a script; when the script is empty it forwards to a real node
//! (or answers `503` when it has none). Every request is logged (its method, or `batch[n]`).
//! The server ends with the test's runtime.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use alloy::transports::http::reqwest;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Builds an answer `(HTTP status, body)` from the request's JSON.
pub type Answer = Arc<dyn Fn(&Value) -> (u16, String) + Send + Sync>;

/// How the fake answers one HTTP request.
#[derive(Clone)]
pub enum Reply {
    /// Forward to the node and return its answer.
    Forward,
    /// This HTTP status with a plain-text body.
    Status(u16),
    /// HTTP 200 with a JSON-RPC error (code, message) for every request in the body.
    RpcError(i64, &'static str),
    /// Never answer.
    Hang,
    /// Forward, then replace every `result` by `null`.
    NullResults,
    /// Whatever the function says.
    Custom(Answer),
}

struct State {
    node: Option<String>,
    script: Mutex<VecDeque<Reply>>,
    /// Repeated forever once the script is empty (default: forward).
    then: Mutex<Reply>,
    hits: Mutex<Vec<String>>,
    client: reqwest::Client,
}

/// A running fake server.
pub struct FakeRpc {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<State>,
}

impl FakeRpc {
    /// Starts a fake in front of `node` (an `http://` URL), or in front of nothing.
    pub async fn start(node: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake");
        let url = format!("http://{}", listener.local_addr().expect("fake address"));
        let state = Arc::new(State {
            node: node.map(str::to_owned),
            script: Mutex::new(VecDeque::new()),
            then: Mutex::new(if node.is_some() { Reply::Forward } else { Reply::Status(503) }),
            hits: Mutex::new(Vec::new()),
            client: reqwest::Client::new(),
        });
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, &s).await) }
                    });
                    let _ =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { url, state }
    }

    /// Queues replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// What every request gets once the script is empty.
    pub fn then(&self, reply: Reply) {
        *self.state.then.lock().unwrap() = reply;
    }

    /// The requests so far (method, or `batch[n]`), in order.
    pub fn hits(&self) -> Vec<String> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Forgets the requests so far.
    pub fn clear_hits(&self) {
        self.state.hits.lock().unwrap().clear();
    }
}

fn describe(request: &Value) -> String {
    match request {
        Value::Array(items) => format!("batch[{}]", items.len()),
        one => one["method"].as_str().unwrap_or("?").to_owned(),
    }
}

async fn handle(req: Request<Incoming>, s: &State) -> Response<Full<hyper::body::Bytes>> {
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.hits.lock().unwrap().push(describe(&request));
    let reply = s.script.lock().unwrap().pop_front();
    let reply = reply.unwrap_or_else(|| s.then.lock().unwrap().clone());
    let (status, text) = match reply {
        Reply::Forward => forward(s, &body).await,
        Reply::Status(code) => (code, format!("status {code}")),
        Reply::RpcError(code, message) => {
            let error = |r: &Value| json!({"jsonrpc": "2.0", "id": r["id"], "error": {"code": code, "message": message}});
            let out = match &request {
                Value::Array(items) => Value::Array(items.iter().map(error).collect()),
                one => error(one),
            };
            (200, out.to_string())
        }
        Reply::Hang => std::future::pending().await,
        Reply::NullResults => {
            let (status, text) = forward(s, &body).await;
            let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let nullify = |r: &mut Value| {
                if r.get("result").is_some() {
                    r["result"] = Value::Null;
                }
            };
            match &mut v {
                Value::Array(items) => items.iter_mut().for_each(nullify),
                one => nullify(one),
            }
            (status, v.to_string())
        }
        Reply::Custom(f) => f(&request),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(hyper::body::Bytes::from(text)))
        .unwrap()
}

async fn forward(s: &State, body: &[u8]) -> (u16, String) {
    let Some(node) = &s.node else { return (503, "no node".into()) };
    let resp = s
        .client
        .post(node)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("the node answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("the node's body"))
}
