//! Shared test harness: one devnet (two anvil chains, default scenario) per test binary.
//!
//! The devnet lives on a dedicated thread with its own tokio runtime, so it outlives any single
//! `#[tokio::test]` runtime; the anvil processes end with the test binary (see `AnvilNode`).
//! Tests that change shared state use fresh random accounts or contracts they deploy themselves;
//! anything signed by the deployer goes through [`deployer_lock`] so nonces never collide.
//! No anvil means these tests fail with the reason; they never skip.

use std::sync::OnceLock;

use alloy::{
    network::EthereumWallet,
    primitives::{Address, U256},
    providers::{DynProvider, Provider, ProviderBuilder, ext::AnvilApi},
    signers::local::PrivateKeySigner,
};
use cantilever::{
    contracts::TestToken,
    devnet::{ChainManifest, Devnet, DevnetManifest, DevnetOptions, Scenario, deploy::confirm},
};

/// Bridge delay used by the shared devnet (the default scenario's 30 s is too slow for tests).
pub const TEST_BRIDGE_DELAY_SECS: u64 = 2;

/// The running shared devnet.
pub struct Shared {
    /// Endpoints and addresses.
    pub manifest: DevnetManifest,
    /// anvil dev keys (identical on both chains).
    pub keys: Vec<PrivateKeySigner>,
}

/// Starts the shared devnet on first use.
pub fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("it-devnet".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("devnet runtime");
                rt.block_on(async move {
                    let mut scenario = Scenario::default_scenario().expect("default scenario");
                    if let Some(b) = scenario.bridge.as_mut() {
                        b.delay_secs = TEST_BRIDGE_DELAY_SECS;
                    }
                    match Devnet::start(&scenario, &DevnetOptions { any_port: true }).await {
                        Ok(devnet) => {
                            let keys = devnet.node(138).expect("chain 138").keys().to_vec();
                            tx.send(Ok((devnet.manifest().clone(), keys))).expect("send");
                            // Keep the devnet (and its relayer) alive for the whole test binary.
                            std::future::pending::<()>().await;
                            drop(devnet);
                        }
                        Err(e) => tx.send(Err(e.to_string())).expect("send"),
                    }
                });
            })
            .expect("devnet thread");
        match rx.recv().expect("devnet thread answered") {
            Ok((manifest, keys)) => Shared { manifest, keys },
            Err(e) => panic!("the shared devnet did not start: {e}"),
        }
    })
}

impl Shared {
    /// Chain 138.
    pub fn c138(&self) -> &ChainManifest {
        self.manifest.chain(138).expect("chain 138 in the manifest")
    }

    /// Alltra (651940).
    pub fn alltra(&self) -> &ChainManifest {
        self.manifest.chain(651940).expect("chain 651940 in the manifest")
    }
}

/// An HTTP provider for `url` signing with `key`.
pub fn provider(url: &str, key: &PrivateKeySigner) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(key.clone()))
        .connect_http(url.parse().expect("url"))
        .erased()
}

/// A read-only provider.
pub fn reader(url: &str) -> DynProvider {
    ProviderBuilder::new().connect_http(url.parse().expect("url")).erased()
}

/// A fresh random account with 1,000 ETH on `chain`, and a provider signing with it.
pub async fn fresh_account(chain: &ChainManifest) -> (PrivateKeySigner, DynProvider) {
    let key = PrivateKeySigner::random();
    let p = provider(&chain.http_url, &key);
    p.anvil_set_balance(key.address(), U256::from(10u64).pow(U256::from(21)))
        .await
        .expect("anvil_setBalance");
    (key, p)
}

/// Serialises everything the deployer key signs across tests.
pub fn deployer_lock() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// Mints `amount` raw units of scenario token `symbol` on `chain` to `to` (the deployer owns every
/// scenario token).
pub async fn fund(chain: &ChainManifest, symbol: &str, to: Address, amount: U256) {
    let _guard = deployer_lock().lock().await;
    let deployer = &shared().keys[0];
    let p = ProviderBuilder::new()
        .with_simple_nonce_management()
        .wallet(EthereumWallet::from(deployer.clone()))
        .connect_http(chain.http_url.parse().expect("url"))
        .erased();
    let token = TestToken::new(chain.tokens[symbol].address, &p);
    let pending = token.mint(to, amount).send().await.expect("mint sent");
    confirm(&p, pending, "fund").await.expect("mint mined");
}

/// Current balance of `symbol` for `who` on `chain`.
pub async fn balance(chain: &ChainManifest, symbol: &str, who: Address) -> U256 {
    let p = reader(&chain.http_url);
    TestToken::new(chain.tokens[symbol].address, &p).balanceOf(who).call().await.expect("balanceOf")
}

/// Deploys a [`TestToken`] named and symbolised `symbol` with `decimals`, signed by `provider`'s
/// wallet, which becomes its owner (and may mint).
pub async fn deploy_token(provider: &DynProvider, symbol: &str, decimals: u8) -> Address {
    let pending =
        TestToken::deploy_builder(provider.clone(), symbol.into(), symbol.into(), decimals)
            .send()
            .await
            .expect("token deploy sent");
    let receipt = confirm(provider, pending, "token deploy").await.expect("token deployed");
    receipt.contract_address.expect("token address")
}
