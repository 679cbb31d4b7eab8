//! A loopback WebSocket fault proxy, ours, for tests only: it accepts on 127.0.0.1:0, opens one
//! upstream connection to an anvil node's WS port per client, and forwards text frames both ways,
//! frame by frame (tokio-tungstenite, the version alloy's WS transport already uses). Pings are
//! answered by each side's own WebSocket layer, so a proxy that stops reading also stops ponging.
//!
//! Faults, switched at any time:
//! - [`Mode::Refuse`]: every new TCP connection is closed at once (the handshake fails);
//! - [`Mode::Blackhole`]: every connection, old and new, goes silent (accepted, nothing read,
//!   nothing forwarded, no pong) until the mode changes;
//! - [`Mode::Duplicate`]: each `newHeads` notification is sent twice;
//! - [`Mode::Swap`]: `newHeads` notifications are sent pairwise out of order (2, 1, 4, 3 …);
//! - [`Mode::CorruptHeads`]: each `newHeads` notification keeps its envelope but carries a header
//!   that does not decode;
//! - [`WsProxy::reset`]: every live connection is dropped (TCP closed);
//! - [`WsProxy::freeze`]: the live connections go silent for good, new ones are served;
//! - [`WsProxy::inject`]: a raw text frame is pushed to every live client.
//!
//! The accept loop and every connection end when the proxy is dropped (its tasks are aborted).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{broadcast, watch},
    task::JoinHandle,
};
use tokio_tungstenite::{accept_async, connect_async, tungstenite::Message};

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Forward,
    /// Close every new connection at once.
    Refuse,
    /// Every connection goes silent until the mode changes.
    Blackhole,
    /// Send each `newHeads` notification twice.
    Duplicate,
    /// Send `newHeads` notifications pairwise out of order.
    Swap,
    /// Replace each `newHeads` header by one that does not decode.
    CorruptHeads,
}

struct Ctl {
    upstream: String,
    mode: watch::Sender<Mode>,
    /// Bumped to drop every live connection.
    kill: watch::Sender<u64>,
    /// Bumped to silence every live connection for good.
    freeze: watch::Sender<u64>,
    inject: broadcast::Sender<String>,
    /// TCP connections accepted.
    attempts: AtomicUsize,
    /// Connections forwarded to the upstream node (handshakes completed on both sides).
    sessions: AtomicUsize,
    /// `newHeads` notifications received from the node.
    heads: AtomicUsize,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// A running proxy; dropping it stops it.
pub struct WsProxy {
    /// `ws://127.0.0.1:PORT` to give the client.
    pub url: String,
    ctl: Arc<Ctl>,
    accept: JoinHandle<()>,
}

impl WsProxy {
    /// Starts a proxy in front of `upstream` (a `ws://` URL).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let url = format!("ws://{}", listener.local_addr().expect("proxy address"));
        let ctl = Arc::new(Ctl {
            upstream: upstream.to_owned(),
            mode: watch::channel(Mode::Forward).0,
            kill: watch::channel(0).0,
            freeze: watch::channel(0).0,
            inject: broadcast::channel(16).0,
            attempts: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            heads: AtomicUsize::new(0),
            tasks: std::sync::Mutex::new(Vec::new()),
        });
        let c = ctl.clone();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.attempts.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(serve(tcp, c.clone()));
                let mut tasks = c.tasks.lock().unwrap();
                tasks.retain(|t| !t.is_finished());
                tasks.push(task);
            }
        });
        Self { url, ctl, accept }
    }

    /// Switches the mode (applies to live and new connections).
    pub fn set(&self, mode: Mode) {
        self.ctl.mode.send_replace(mode);
    }

    /// Drops every live connection.
    pub fn reset(&self) {
        self.ctl.kill.send_modify(|g| *g += 1);
    }

    /// Silences every live connection for good (new connections are served normally).
    pub fn freeze(&self) {
        self.ctl.freeze.send_modify(|g| *g += 1);
    }

    /// Pushes a raw text frame to every live client.
    pub fn inject(&self, text: &str) {
        let _ = self.ctl.inject.send(text.to_owned());
    }

    /// TCP connections accepted so far.
    pub fn attempts(&self) -> usize {
        self.ctl.attempts.load(Ordering::SeqCst)
    }

    /// Connections forwarded to the node so far.
    pub fn sessions(&self) -> usize {
        self.ctl.sessions.load(Ordering::SeqCst)
    }

    /// `newHeads` notifications received from the node so far (and handled in the mode of the
    /// moment).
    pub fn heads(&self) -> usize {
        self.ctl.heads.load(Ordering::SeqCst)
    }
}

impl Drop for WsProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.ctl.tasks.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default() {
            t.abort();
        }
    }
}

/// Waits while the mode is [`Mode::Blackhole`]; `false` when the connection was killed meanwhile.
async fn wait_out_blackhole(
    mode: &mut watch::Receiver<Mode>,
    kill: &mut watch::Receiver<u64>,
) -> bool {
    while *mode.borrow_and_update() == Mode::Blackhole {
        tokio::select! {
            r = mode.changed() => if r.is_err() { return false },
            _ = kill.changed() => return false,
        }
    }
    true
}

async fn serve(tcp: TcpStream, ctl: Arc<Ctl>) {
    let mut mode = ctl.mode.subscribe();
    let mut kill = ctl.kill.subscribe();
    let mut freeze = ctl.freeze.subscribe();
    kill.mark_unchanged();
    freeze.mark_unchanged();
    if *mode.borrow() == Mode::Refuse {
        return; // closes the socket before the handshake
    }
    // A black-holed connection is accepted and left hanging before the handshake.
    if !wait_out_blackhole(&mut mode, &mut kill).await {
        return;
    }
    let Ok(client) = accept_async(tcp).await else { return };
    let Ok((upstream, _)) = connect_async(ctl.upstream.as_str()).await else { return };
    ctl.sessions.fetch_add(1, Ordering::SeqCst);
    let (mut to_client, mut from_client) = client.split();
    let (mut to_node, mut from_node) = upstream.split();
    let mut inject = ctl.inject.subscribe();
    let mut held: Option<String> = None;
    loop {
        if !wait_out_blackhole(&mut mode, &mut kill).await {
            return;
        }
        let current = *mode.borrow();
        tokio::select! {
            _ = kill.changed() => return,
            _ = freeze.changed() => {
                // Silent for good: read nothing, send nothing, until killed or dropped.
                let _ = kill.changed().await;
                return;
            }
            _ = mode.changed() => {}
            m = from_client.next() => match m {
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    if to_node.send(msg).await.is_err() {
                        return;
                    }
                }
                // Pings and pongs are answered by each side's WebSocket layer.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            },
            m = from_node.next() => match m {
                Some(Ok(Message::Text(text))) => {
                    let head = is_new_head(text.as_str());
                    for out in transform(current, head, text.as_str(), &mut held) {
                        if to_client.send(Message::text(out)).await.is_err() {
                            return;
                        }
                    }
                    if head {
                        ctl.heads.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            t = inject.recv() => {
                if let Ok(t) = t
                    && to_client.send(Message::text(t)).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Whether `text` is a `newHeads` notification.
fn is_new_head(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|v| {
        v["method"] == "eth_subscription" && v["params"]["result"].get("parentHash").is_some()
    })
}

/// The frames to send the client for one frame from the node.
fn transform(mode: Mode, head: bool, text: &str, held: &mut Option<String>) -> Vec<String> {
    if !head {
        return vec![text.to_owned()];
    }
    match mode {
        Mode::Duplicate => vec![text.to_owned(), text.to_owned()],
        Mode::Swap => match held.take() {
            None => {
                *held = Some(text.to_owned());
                Vec::new()
            }
            Some(earlier) => vec![text.to_owned(), earlier],
        },
        Mode::CorruptHeads => {
            let mut v: Value = serde_json::from_str(text).expect("a notification");
            v["params"]["result"] =
                serde_json::json!({"number": "0xzz", "hash": 7, "parentHash": []});
            vec![v.to_string()]
        }
        _ => {
            // A head held by an earlier Swap goes out before anything newer.
            let mut out: Vec<String> = held.take().into_iter().collect();
            out.push(text.to_owned());
            out
        }
    }
}
