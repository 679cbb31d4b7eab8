//! The devnet's bridge relayer: releases every `Locked` transfer on its destination chain once the
//! bridge delay has passed, with the relayer key (anvil key 1).
//!
//! It polls over HTTP (robust to restarts, no subscription state), remembers what it has released,
//! and asks the destination bridge `released(src, id)` before sending, so a restarted relayer never
//! pays twice (the contract refuses a second release as well).

use std::{collections::BTreeMap, time::Duration};

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider},
    rpc::types::Filter,
    signers::local::PrivateKeySigner,
    sol_types::SolEvent,
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{
    DevnetError,
    deploy::{confirm, signing_provider},
};
use crate::contracts::Bridge;

/// Poll interval of the relayer.
const POLL: Duration = Duration::from_millis(200);

/// One side of the bridge as the relayer sees it.
#[derive(Clone, Debug)]
pub struct BridgeEnd {
    /// Chain id.
    pub chain_id: u64,
    /// HTTP endpoint.
    pub http_url: String,
    /// Bridge contract on this chain.
    pub bridge: Address,
    /// Token symbol → address on this chain.
    pub tokens: BTreeMap<String, Address>,
}

#[derive(Debug)]
struct Pending {
    src: usize,
    dst: usize,
    event: Bridge::Locked,
}

/// Runs the relayer over every ordered pair of `ends` until `stop` turns true.
///
/// # Errors
/// [`DevnetError::Rpc`] only for a bad endpoint at start; runtime RPC errors are logged and retried.
pub async fn run(
    ends: Vec<BridgeEnd>,
    key: PrivateKeySigner,
    mut stop: watch::Receiver<bool>,
) -> Result<(), DevnetError> {
    let providers: Vec<DynProvider> = ends
        .iter()
        .map(|e| signing_provider(&e.http_url, key.clone()))
        .collect::<Result<_, _>>()?;
    let mut next_block: Vec<u64> = vec![0; ends.len()];
    let mut pending: BTreeMap<(usize, U256), Pending> = BTreeMap::new();
    loop {
        for (src, end) in ends.iter().enumerate() {
            if let Err(e) =
                scan(&providers[src], end, src, &ends, &mut next_block[src], &mut pending).await
            {
                debug!(target: "cantilever::devnet", chain = end.chain_id, error = %e, "relayer scan failed; retrying");
            }
        }
        let now = unix_now();
        let mut done = Vec::new();
        for (key, p) in &pending {
            let due = p
                .event
                .timestamp
                .saturating_add(delay_of(&providers[p.dst], &ends[p.dst]).await.unwrap_or(0));
            let dst_ts = latest_timestamp(&providers[p.dst]).await.unwrap_or(0);
            if now.max(dst_ts) < due {
                continue;
            }
            match release(&providers[p.dst], &ends[p.src], &ends[p.dst], &p.event).await {
                Ok(true) => {
                    info!(target: "cantilever::devnet", src = ends[p.src].chain_id, dst = ends[p.dst].chain_id, id = %p.event.id, amount = %p.event.amount, "bridge transfer released");
                    done.push(*key);
                }
                Ok(false) => done.push(*key),
                Err(e) => {
                    warn!(target: "cantilever::devnet", id = %p.event.id, error = %e, "bridge release failed; will retry");
                }
            }
        }
        for k in done {
            pending.remove(&k);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return Ok(());
        }
    }
}

async fn scan(
    provider: &DynProvider,
    end: &BridgeEnd,
    src: usize,
    ends: &[BridgeEnd],
    next_block: &mut u64,
    pending: &mut BTreeMap<(usize, U256), Pending>,
) -> Result<(), DevnetError> {
    let head = provider.get_block_number().await.map_err(|e| DevnetError::Rpc(e.to_string()))?;
    if head < *next_block {
        return Ok(());
    }
    let filter = Filter::new()
        .address(end.bridge)
        .event_signature(Bridge::Locked::SIGNATURE_HASH)
        .from_block(*next_block)
        .to_block(head);
    let logs = provider.get_logs(&filter).await.map_err(|e| DevnetError::Rpc(e.to_string()))?;
    for log in logs {
        let Ok(ev) = Bridge::Locked::decode_log(&log.inner) else {
            warn!(target: "cantilever::devnet", "undecodable Locked log skipped");
            continue;
        };
        let ev = ev.data;
        let dst_id = ev.dstChainId;
        let Some(dst) = ends.iter().position(|e| U256::from(e.chain_id) == dst_id) else {
            warn!(target: "cantilever::devnet", id = %ev.id, dst = %dst_id, "lock to an unknown chain ignored");
            continue;
        };
        pending.entry((src, ev.id)).or_insert(Pending { src, dst, event: ev });
    }
    *next_block = head + 1;
    Ok(())
}

async fn release(
    provider: &DynProvider,
    src: &BridgeEnd,
    dst: &BridgeEnd,
    ev: &Bridge::Locked,
) -> Result<bool, DevnetError> {
    let bridge = Bridge::new(dst.bridge, provider);
    let src_id = U256::from(src.chain_id);
    let done =
        bridge.released(src_id, ev.id).call().await.map_err(|e| DevnetError::Rpc(e.to_string()))?;
    if done {
        return Ok(false);
    }
    let token = dst_token(src, dst, ev.token)?;
    let call = bridge.release(src_id, ev.id, token, ev.recipient, ev.amount, ev.timestamp);
    let pending = call.send().await.map_err(|e| DevnetError::Rpc(e.to_string()))?;
    confirm(provider, pending, "bridge release").await?;
    Ok(true)
}

/// The destination token for a source token, matched by symbol through the devnet's manifest.
fn dst_token(src: &BridgeEnd, dst: &BridgeEnd, src_token: Address) -> Result<Address, DevnetError> {
    let symbol =
        src.tokens.iter().find_map(|(sym, a)| (*a == src_token).then_some(sym)).ok_or_else(
            || DevnetError::Rpc(format!("locked token {src_token} is not a devnet token")),
        )?;
    dst.tokens.get(symbol).copied().ok_or_else(|| {
        DevnetError::Rpc(format!("token {symbol} has no counterpart on chain {}", dst.chain_id))
    })
}

async fn delay_of(provider: &DynProvider, end: &BridgeEnd) -> Result<u64, DevnetError> {
    Bridge::new(end.bridge, provider)
        .delaySeconds()
        .call()
        .await
        .map_err(|e| DevnetError::Rpc(e.to_string()))
}

async fn latest_timestamp(provider: &DynProvider) -> Result<u64, DevnetError> {
    let block = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .map_err(|e| DevnetError::Rpc(e.to_string()))?
        .ok_or_else(|| DevnetError::Rpc("no latest block".into()))?;
    Ok(block.header.timestamp)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
