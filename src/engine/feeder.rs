//! The feeder: an OS thread between ingest and the engine that turns each head into the state
//! update bringing the cache to it (RPC reads happen here, off the engine thread) and serves the
//! engine's requests to watch or drop keys.

use std::{
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::Instant,
};

use alloy::primitives::Address;
use crossbeam_channel::{Receiver, Sender};
use tracing::warn;

use super::{BlockMsg, EngineStats, Input};
use crate::{
    ingest::Event,
    state::{Refresher, StateKey, StateSource},
};

/// What the engine asks of the feeder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeederCmd {
    /// Watch these keys from now on (read at the current head right away).
    Watch(Vec<StateKey>),
    /// Stop watching these accounts (evicted).
    Unwatch(Vec<Address>),
    /// Re-read everything with the next head (divergence, refused update).
    Full,
}

/// Spawns the feeder thread. It ends when `heads` closes or the engine drops its inputs.
pub(crate) fn spawn<S: StateSource + 'static>(
    mut refresher: Refresher<S>,
    rt: tokio::runtime::Handle,
    heads: Receiver<Event>,
    cmds: Receiver<FeederCmd>,
    out: Sender<Input>,
    name: String,
    stats: Arc<EngineStats>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("feeder-{name}")).spawn(move || {
        loop {
            crossbeam_channel::select_biased! {
                recv(cmds) -> c => {
                    let Ok(c) = c else { break };
                    match c {
                        FeederCmd::Watch(keys) => {
                            refresher.watch(keys);
                            // The engine counts the watch done once it has handled the answer;
                            // with no answer to hand over, it is done here.
                            match rt.block_on(refresher.prefetch()) {
                                Ok(Some(update)) => {
                                    let msg = BlockMsg::new(update, Instant::now()).answering_watch();
                                    if out.send(Input::Block(Box::new(msg))).is_err() { break }
                                }
                                Ok(None) => {
                                    stats.watches.fetch_sub(1, Ordering::AcqRel);
                                }
                                Err(e) => {
                                    stats.watches.fetch_sub(1, Ordering::AcqRel);
                                    warn!(chain = %name, error = %e, "prefetch failed; retried with the next head");
                                }
                            }
                        }
                        FeederCmd::Unwatch(a) => refresher.unwatch(&a),
                        FeederCmd::Full => refresher.request_full(),
                    }
                }
                recv(heads) -> e => {
                    let Ok(mut event) = e else { break };
                    // A burst of heads: only the newest needs reading (the refresher walks back
                    // over the others by parent hash and covers what they touched).
                    while let Ok(newer) = heads.try_recv() {
                        if matches!(newer, Event::Head(_)) || !matches!(event, Event::Head(_)) {
                            event = newer;
                        }
                    }
                    let Event::Head(head) = event else { continue };
                    match rt.block_on(refresher.on_head(head.hash)) {
                        Ok(Some(update)) => {
                            let msg = BlockMsg::new(update, head.received_at);
                            if out.send(Input::Block(Box::new(msg))).is_err() { break }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let reason = format!("block {}: {e}", head.number);
                            if out.send(Input::Stale { reason }).is_err() { break }
                        }
                    }
                }
            }
        }
    })
}
