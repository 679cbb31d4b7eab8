//! The local two-chain devnet: anvil nodes on loopback with cantilever's venue contracts deployed.
//!
//! `cantilever devnet` and the integration tests share this code, so a test starts a whole market
//! in one line ([`Devnet::start`]). A [`Scenario`] says what to deploy; the resulting
//! [`DevnetManifest`] lists every endpoint and address and is what `--out` writes.
//!
//! Threading: everything here is async on the caller's tokio runtime; the bridge relayer is one
//! spawned task that ends when the [`Devnet`] is dropped or [`Devnet::stop`] is called.

pub mod anvil;
pub mod config;
pub mod deploy;
pub mod relayer;
pub mod scenario;

use serde::{Deserialize, Serialize};
use tokio::{sync::watch, task::JoinHandle};

pub use anvil::{AnvilNode, AnvilOptions};
pub use config::devnet_config;
pub use deploy::ChainManifest;
pub use scenario::Scenario;

/// Devnet failures. Each names what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// No anvil binary: install the pinned one with `npm install --prefix tools`.
    #[error(
        "anvil not found (looked at {0}); install the pinned copy with `npm install --prefix tools`"
    )]
    AnvilNotFound(String),
    /// anvil did not start.
    #[error("anvil did not start: {0}")]
    AnvilStart(String),
    /// The scenario is invalid.
    #[error("scenario: {0}")]
    Scenario(String),
    /// A deployment step failed.
    #[error("deploy: {0}")]
    Deploy(String),
    /// An RPC call failed.
    #[error("rpc: {0}")]
    Rpc(String),
}

/// Endpoints and addresses of a running devnet; written as JSON by `cantilever devnet --out`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevnetManifest {
    /// Scenario name.
    pub scenario: String,
    /// One entry per chain, in scenario order.
    pub chains: Vec<ChainManifest>,
}

impl DevnetManifest {
    /// The chain with `chain_id`.
    pub fn chain(&self, chain_id: u64) -> Option<&ChainManifest> {
        self.chains.iter().find(|c| c.chain_id == chain_id)
    }

    /// The chain named `name` in the scenario.
    pub fn chain_named(&self, name: &str) -> Option<&ChainManifest> {
        self.chains.iter().find(|c| c.name == name)
    }
}

/// How to start a devnet.
#[derive(Clone, Debug, Default)]
pub struct DevnetOptions {
    /// Bind every chain to a free port instead of the scenario's ports (tests run in parallel).
    pub any_port: bool,
}

/// A running devnet. Dropping it stops the relayer and the anvil nodes.
#[derive(Debug)]
pub struct Devnet {
    nodes: Vec<AnvilNode>,
    manifest: DevnetManifest,
    stop: watch::Sender<bool>,
    relayer: Option<JoinHandle<Result<(), DevnetError>>>,
}

impl Devnet {
    /// Starts one anvil per scenario chain, deploys the scenario on each (chains in parallel) and
    /// starts the bridge relayer.
    ///
    /// # Errors
    /// Any [`DevnetError`]; nodes already started are stopped.
    pub async fn start(scenario: &Scenario, opts: &DevnetOptions) -> Result<Self, DevnetError> {
        let mut nodes = Vec::with_capacity(scenario.chains.len());
        for c in &scenario.chains {
            let options = AnvilOptions {
                chain_id: c.chain_id,
                port: if opts.any_port { 0 } else { c.port },
                block_time_secs: (c.block_time_secs > 0.0).then_some(c.block_time_secs),
                accounts: u32::try_from(3 + scenario.accounts.len()).unwrap_or(u32::MAX).max(10),
                ..AnvilOptions::default()
            };
            nodes.push(AnvilNode::spawn(&options)?);
        }
        let urls: Vec<(String, String)> =
            nodes.iter().map(|n| (n.http_url(), n.ws_url())).collect();
        let deployments = scenario
            .chains
            .iter()
            .zip(&nodes)
            .zip(&urls)
            .map(|((c, n), (http, ws))| deploy::deploy_chain(scenario, c, http, ws, n.keys()));
        // Chains are independent nodes: deploy them concurrently.
        let chains = futures::future::try_join_all(deployments).await?;
        let owners: Vec<_> = nodes.iter().filter_map(|n| n.keys().first().cloned()).collect();
        deploy::link_bridge_routes(&chains, &owners).await?;
        let manifest = DevnetManifest { scenario: scenario.name.clone(), chains };

        let (stop, stop_rx) = watch::channel(false);
        let ends: Vec<relayer::BridgeEnd> = manifest
            .chains
            .iter()
            .filter_map(|c| {
                c.bridge.map(|bridge| relayer::BridgeEnd {
                    chain_id: c.chain_id,
                    http_url: c.http_url.clone(),
                    bridge,
                    tokens: c.tokens.iter().map(|(s, t)| (s.clone(), t.address)).collect(),
                })
            })
            .collect();
        let relayer = match (ends.len() >= 2, nodes.first().and_then(|n| n.keys().get(1))) {
            (true, Some(key)) => Some(tokio::spawn(relayer::run(ends, key.clone(), stop_rx))),
            _ => None,
        };
        Ok(Self { nodes, manifest, stop, relayer })
    }

    /// Endpoints and addresses.
    pub const fn manifest(&self) -> &DevnetManifest {
        &self.manifest
    }

    /// The anvil node of `chain_id`, for its dev keys.
    pub fn node(&self, chain_id: u64) -> Option<&AnvilNode> {
        self.nodes.iter().find(|n| n.chain_id() == chain_id)
    }

    /// Stops the relayer and waits for it; the nodes stop on drop.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.relayer.take() {
            let _ = h.await;
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.relayer.take() {
            h.abort();
        }
    }
}
