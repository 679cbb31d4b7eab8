//! Deploys a [`Scenario`] onto one chain and records every address in a [`ChainManifest`].

use std::{collections::BTreeMap, time::Duration};

use alloy::{
    network::{Ethereum, EthereumWallet},
    primitives::{Address, B256, U256},
    providers::{DynProvider, PendingTransactionBuilder, Provider, ProviderBuilder},
    rpc::types::TransactionReceipt,
    signers::local::PrivateKeySigner,
};
use serde::{Deserialize, Serialize};

use super::{
    DevnetError,
    scenario::{ChainSpec, Scenario, to_raw},
};
use crate::contracts::{
    Bridge, Executor, FeeRateModel, FlashLender, PmmPool, ReserveVault, SynthSwap, TestToken,
    UniV2Factory, UniV2Pair,
};

/// How long to wait for a receipt (covers interval mining up to a few blocks).
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything deployed on one chain, as written to the devnet's `--out` JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChainManifest {
    /// Scenario chain name.
    pub name: String,
    /// Chain id.
    pub chain_id: u64,
    /// HTTP JSON-RPC endpoint.
    pub http_url: String,
    /// WebSocket endpoint.
    pub ws_url: String,
    /// Role addresses (their keys are anvil's public dev keys, by index; see the scenario file).
    pub accounts: Accounts,
    /// Token symbol → token.
    pub tokens: BTreeMap<String, TokenInfo>,
    /// PMM pools.
    pub pmm_pools: Vec<PmmPoolInfo>,
    /// Uniswap-V2-style factory, when any pair exists.
    pub v2_factory: Option<Address>,
    /// Uniswap-V2-style pairs.
    pub v2_pairs: Vec<V2PairInfo>,
    /// Reserve vaults.
    pub vaults: Vec<VaultInfo>,
    /// Synthetic swaps.
    pub synths: Vec<SynthInfo>,
    /// ERC-3156 lenders.
    pub lenders: Vec<LenderInfo>,
    /// Bridge contract, when the scenario has one.
    pub bridge: Option<Address>,
    /// Executor contract.
    pub executor: Address,
}

/// Role addresses on a chain.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Accounts {
    /// Deployer and owner of every contract (anvil key 0).
    pub deployer: Address,
    /// Bridge relayer (anvil key 1).
    pub relayer: Address,
    /// Executor operator, the hot gas key (anvil key 2).
    pub operator: Address,
    /// Named scenario accounts (anvil keys 3..).
    pub named: BTreeMap<String, Address>,
}

/// A deployed token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Address.
    pub address: Address,
    /// Decimals.
    pub decimals: u8,
}

/// A deployed PMM pool.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PmmPoolInfo {
    /// Pool name.
    pub name: String,
    /// Address.
    pub address: Address,
    /// Base symbol.
    pub base: String,
    /// Quote symbol.
    pub quote: String,
    /// Guide price (raw, 1e18-scaled quote per base raw unit).
    pub i: U256,
    /// k (1e18 = 1).
    pub k: U256,
    /// LP fee rate (1e18 = 100%).
    pub lp_fee_rate: U256,
    /// Maintainer fee-rate model.
    pub mt_fee_model: Address,
}

/// A deployed V2 pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct V2PairInfo {
    /// "A/B" as in the scenario.
    pub name: String,
    /// Address.
    pub address: Address,
    /// token0 symbol (the lower address).
    pub token0: String,
    /// token1 symbol.
    pub token1: String,
}

/// A deployed reserve vault.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VaultInfo {
    /// Address.
    pub address: Address,
    /// Official stable symbol.
    pub official: String,
    /// Compliant twin symbol.
    pub compliant: String,
    /// Fee in bps.
    pub fee_bps: u16,
}

/// A deployed synthetic swap.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SynthInfo {
    /// Address.
    pub address: Address,
    /// Base currency symbol.
    pub base: String,
    /// Asset names.
    pub assets: Vec<String>,
}

/// A deployed flash lender.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LenderInfo {
    /// Address.
    pub address: Address,
    /// Fee in bps.
    pub fee_bps: u64,
    /// Symbols it holds.
    pub tokens: Vec<String>,
}

/// An HTTP provider that signs with `signer`.
///
/// # Errors
/// [`DevnetError::Rpc`] when the URL does not parse.
pub fn signing_provider(url: &str, signer: PrivateKeySigner) -> Result<DynProvider, DevnetError> {
    let url = url.parse().map_err(|e| DevnetError::Rpc(format!("bad endpoint {url}: {e}")))?;
    Ok(ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(url).erased())
}

/// Waits for a sent transaction's receipt and requires success.
///
/// # Errors
/// [`DevnetError::Deploy`] naming `what` when the transaction reverts or no receipt arrives.
pub async fn confirm(
    provider: &DynProvider,
    pending: PendingTransactionBuilder<Ethereum>,
    what: &str,
) -> Result<TransactionReceipt, DevnetError> {
    let hash = *pending.tx_hash();
    let started = std::time::Instant::now();
    loop {
        let receipt = provider
            .get_transaction_receipt(hash)
            .await
            .map_err(|e| DevnetError::Deploy(format!("{what}: receipt: {e}")))?;
        if let Some(r) = receipt {
            if !r.status() {
                return Err(DevnetError::Deploy(format!("{what}: transaction {hash} reverted")));
            }
            return Ok(r);
        }
        if started.elapsed() > RECEIPT_TIMEOUT {
            return Err(DevnetError::Deploy(format!("{what}: no receipt for {hash}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a contract call and waits for its successful receipt.
macro_rules! send {
    ($provider:expr, $call:expr, $what:expr) => {{
        let pending =
            $call.send().await.map_err(|e| DevnetError::Deploy(format!("{}: {}", $what, e)))?;
        confirm($provider, pending, &$what).await?
    }};
}

/// Deploys a contract and returns its address.
macro_rules! deploy {
    ($provider:expr, $builder:expr, $what:expr) => {{
        let receipt = send!($provider, $builder, $what);
        receipt
            .contract_address
            .ok_or_else(|| DevnetError::Deploy(format!("{}: no contract address", $what)))?
    }};
}

/// Deploys everything the scenario puts on `chain`.
///
/// `keys` are the node's dev keys: 0 deployer, 1 relayer, 2 operator, 3.. the scenario accounts.
///
/// # Errors
/// [`DevnetError::Deploy`] naming the step that failed.
pub async fn deploy_chain(
    scenario: &Scenario,
    chain: &ChainSpec,
    http_url: &str,
    ws_url: &str,
    keys: &[PrivateKeySigner],
) -> Result<ChainManifest, DevnetError> {
    let needed = 3 + scenario.accounts.len();
    if keys.len() < needed {
        return Err(DevnetError::Deploy(format!("{} needs {needed} dev keys", chain.name)));
    }
    let deployer = keys[0].address();
    let p = signing_provider(http_url, keys[0].clone())?;
    let p = &p;
    let mut m = ChainManifest {
        name: chain.name.clone(),
        chain_id: chain.chain_id,
        http_url: http_url.to_string(),
        ws_url: ws_url.to_string(),
        accounts: Accounts {
            deployer,
            relayer: keys[1].address(),
            operator: keys[2].address(),
            named: scenario
                .accounts
                .iter()
                .zip(&keys[3..])
                .map(|(a, k)| (a.name.clone(), k.address()))
                .collect(),
        },
        ..Default::default()
    };
    let here = |chain_name: &str| chain_name == chain.name;
    let raw = |sym: &str, v: &str| -> Result<U256, DevnetError> {
        let d = scenario
            .token(sym)
            .ok_or_else(|| DevnetError::Deploy(format!("unknown token {sym}")))?
            .decimals;
        to_raw(v, d).map_err(|e| DevnetError::Deploy(format!("{sym}: {e}")))
    };

    // 1. Tokens.
    for t in scenario.tokens.iter().filter(|t| t.chains.iter().any(|c| here(c))) {
        let what = format!("{}: deploy token {}", chain.name, t.symbol);
        let address = deploy!(
            p,
            TestToken::deploy_builder(p, t.symbol.clone(), t.symbol.clone(), t.decimals),
            what
        );
        m.tokens.insert(t.symbol.clone(), TokenInfo { address, decimals: t.decimals });
    }
    let token = |sym: &str| -> Result<Address, DevnetError> {
        m.tokens
            .get(sym)
            .map(|t| t.address)
            .ok_or_else(|| DevnetError::Deploy(format!("{}: token {sym} not deployed", chain.name)))
    };

    // 2. What the deployer hands out, per token, so direct mints and vault mints cover it.
    let mut need: BTreeMap<String, U256> = BTreeMap::new();
    let mut add = |sym: &str, v: U256| *need.entry(sym.to_string()).or_default() += v;
    for pool in scenario.pmm_pools.iter().filter(|x| here(&x.chain)) {
        add(&pool.base, raw(&pool.base, &pool.base_liquidity)?);
        add(&pool.quote, raw(&pool.quote, &pool.quote_liquidity)?);
    }
    for pair in scenario.v2_pairs.iter().filter(|x| here(&x.chain)) {
        add(&pair.token_a, raw(&pair.token_a, &pair.amount_a)?);
        add(&pair.token_b, raw(&pair.token_b, &pair.amount_b)?);
    }
    for s in scenario.synths.iter().filter(|x| here(&x.chain)) {
        add(&s.base, raw(&s.base, &s.collateral)?);
    }
    for l in scenario.lenders.iter().filter(|x| here(&x.chain)) {
        for (sym, v) in &l.liquidity {
            add(sym, raw(sym, v)?);
        }
    }
    let on_chain = |sym: &str| scenario.token_on(sym, &chain.name);
    if let Some(b) = &scenario.bridge {
        for (sym, v) in b.reserve.iter().filter(|(s, _)| on_chain(s)) {
            add(sym, raw(sym, v)?);
        }
    }
    for (sym, v) in scenario.executor.inventory.iter().filter(|(s, _)| on_chain(s)) {
        add(sym, raw(sym, v)?);
    }
    for a in &scenario.accounts {
        for (sym, v) in a.balances.iter().filter(|(s, _)| on_chain(s)) {
            add(sym, raw(sym, v)?);
        }
    }

    // 3. Vaults first: compliant supply is minted through them against official reserve.
    let vaults: Vec<_> = scenario.vaults.iter().filter(|v| here(&v.chain)).collect();
    for v in &vaults {
        let official = token(&v.official)?;
        let compliant = token(&v.compliant)?;
        let amount = raw(&v.compliant, &v.initial_mint)?;
        let wanted = need.get(&v.compliant).copied().unwrap_or_default();
        if amount < wanted {
            return Err(DevnetError::Deploy(format!(
                "{}: vault {}/{} initial_mint is less than the {} the scenario hands out",
                chain.name, v.official, v.compliant, v.compliant
            )));
        }
        let what = format!("{}: deploy vault {}/{}", chain.name, v.official, v.compliant);
        let vault = deploy!(p, ReserveVault::deploy_builder(p, official, compliant, 0), what);
        let c = TestToken::new(compliant, p);
        let o = TestToken::new(official, p);
        send!(p, c.setMinter(vault, true), format!("{what}: setMinter"));
        send!(p, o.mint(deployer, amount), format!("{what}: mint official"));
        send!(p, o.approve(vault, amount), format!("{what}: approve"));
        let rv = ReserveVault::new(vault, p);
        send!(p, rv.mint(amount), format!("{what}: initial mint"));
        if v.fee_bps > 0 {
            send!(p, rv.setFeeBps(v.fee_bps), format!("{what}: setFeeBps"));
        }
        m.vaults.push(VaultInfo {
            address: vault,
            official: v.official.clone(),
            compliant: v.compliant.clone(),
            fee_bps: v.fee_bps,
        });
    }
    for (sym, amount) in &need {
        if vaults.iter().any(|v| &v.compliant == sym) {
            continue;
        }
        let t = TestToken::new(token(sym)?, p);
        send!(p, t.mint(deployer, *amount), format!("{}: mint {sym}", chain.name));
    }
    let transfer = |sym: String, to: Address, amount: U256| async move {
        let t = TestToken::new(token(&sym)?, p);
        send!(p, t.transfer(to, amount), format!("{}: transfer {sym} to {to}", chain.name));
        Ok::<_, DevnetError>(())
    };

    // 4. PMM pools, each with its own maintainer fee model.
    for pool in scenario.pmm_pools.iter().filter(|x| here(&x.chain)) {
        let what = format!("{}: pool {}", chain.name, pool.name);
        let bd = m.tokens[&pool.base].decimals;
        let qd = m.tokens[&pool.quote].decimals;
        let i = pool.i_raw(bd, qd).map_err(|e| DevnetError::Deploy(format!("{what}: i: {e}")))?;
        let k = to_raw(&pool.k, 18).map_err(|e| DevnetError::Deploy(format!("{what}: k: {e}")))?;
        let lp =
            to_raw(&pool.lp_fee, 18).map_err(|e| DevnetError::Deploy(format!("{what}: {e}")))?;
        let mt =
            to_raw(&pool.mt_fee, 18).map_err(|e| DevnetError::Deploy(format!("{what}: {e}")))?;
        let model = deploy!(p, FeeRateModel::deploy_builder(p, mt), format!("{what}: fee model"));
        let (base, quote) = (token(&pool.base)?, token(&pool.quote)?);
        let address = deploy!(
            p,
            PmmPool::deploy_builder(p, deployer, base, quote, lp, model, i, k, pool.twap),
            what
        );
        transfer(pool.base.clone(), address, raw(&pool.base, &pool.base_liquidity)?).await?;
        transfer(pool.quote.clone(), address, raw(&pool.quote, &pool.quote_liquidity)?).await?;
        // Explicit gas: the TWAP accumulator's writes depend on the mined block's timestamp, which
        // a node's estimate (made at the latest block's timestamp) can undercount.
        send!(
            p,
            PmmPool::new(address, p).buyShares(deployer).gas(1_500_000),
            format!("{what}: buyShares")
        );
        m.pmm_pools.push(PmmPoolInfo {
            name: pool.name.clone(),
            address,
            base: pool.base.clone(),
            quote: pool.quote.clone(),
            i,
            k,
            lp_fee_rate: lp,
            mt_fee_model: model,
        });
    }

    // 5. V2 factory and pairs.
    let pairs: Vec<_> = scenario.v2_pairs.iter().filter(|x| here(&x.chain)).collect();
    if !pairs.is_empty() {
        let what = format!("{}: v2 factory", chain.name);
        let factory = deploy!(p, UniV2Factory::deploy_builder(p), what);
        let f = UniV2Factory::new(factory, p);
        for pair in pairs {
            let what = format!("{}: v2 pair {}/{}", chain.name, pair.token_a, pair.token_b);
            let (a, b) = (token(&pair.token_a)?, token(&pair.token_b)?);
            send!(p, f.createPair(a, b), what);
            let address = f
                .getPair(a, b)
                .call()
                .await
                .map_err(|e| DevnetError::Deploy(format!("{what}: getPair: {e}")))?;
            transfer(pair.token_a.clone(), address, raw(&pair.token_a, &pair.amount_a)?).await?;
            transfer(pair.token_b.clone(), address, raw(&pair.token_b, &pair.amount_b)?).await?;
            // Explicit gas for the same reason (the price accumulators' first write).
            send!(
                p,
                UniV2Pair::new(address, p).mint(deployer).gas(1_000_000),
                format!("{what}: mint")
            );
            let (t0, t1) = if a < b {
                (pair.token_a.clone(), pair.token_b.clone())
            } else {
                (pair.token_b.clone(), pair.token_a.clone())
            };
            m.v2_pairs.push(V2PairInfo {
                name: format!("{}/{}", pair.token_a, pair.token_b),
                address,
                token0: t0,
                token1: t1,
            });
        }
        m.v2_factory = Some(factory);
    }

    // 6. Synthetic swaps.
    for s in scenario.synths.iter().filter(|x| here(&x.chain)) {
        let what = format!("{}: synth {}", chain.name, s.base);
        let address = deploy!(p, SynthSwap::deploy_builder(p, token(&s.base)?), what);
        let synth = SynthSwap::new(address, p);
        for a in &s.assets {
            let price =
                to_raw(&a.price, 18).map_err(|e| DevnetError::Deploy(format!("{what}: {e}")))?;
            let cap = raw(&s.base, &a.debt_cap)?;
            send!(p, synth.addAsset(asset_id(&a.name), price, cap), format!("{what}: {}", a.name));
        }
        transfer(s.base.clone(), address, raw(&s.base, &s.collateral)?).await?;
        m.synths.push(SynthInfo {
            address,
            base: s.base.clone(),
            assets: s.assets.iter().map(|a| a.name.clone()).collect(),
        });
    }

    // 7. Flash lenders.
    for l in scenario.lenders.iter().filter(|x| here(&x.chain)) {
        let what = format!("{}: lender", chain.name);
        let address = deploy!(p, FlashLender::deploy_builder(p, U256::from(l.fee_bps)), what);
        for (sym, v) in &l.liquidity {
            transfer(sym.clone(), address, raw(sym, v)?).await?;
        }
        m.lenders.push(LenderInfo {
            address,
            fee_bps: l.fee_bps,
            tokens: l.liquidity.keys().cloned().collect(),
        });
    }

    // 8. Bridge.
    if let Some(b) = &scenario.bridge {
        let what = format!("{}: bridge", chain.name);
        let address =
            deploy!(p, Bridge::deploy_builder(p, keys[1].address(), b.fee_bps, b.delay_secs), what);
        let bridge = Bridge::new(address, p);
        for (sym, cap) in b.capacity.iter().filter(|(s, _)| on_chain(s)) {
            send!(p, bridge.setCapacity(token(sym)?, raw(sym, cap)?), format!("{what}: {sym}"));
        }
        for (sym, v) in b.reserve.iter().filter(|(s, _)| on_chain(s)) {
            transfer(sym.clone(), address, raw(sym, v)?).await?;
        }
        m.bridge = Some(address);
    }

    // 9. Executor, owned by the deployer and driven by the operator key.
    let what = format!("{}: executor", chain.name);
    m.executor = deploy!(p, Executor::deploy_builder(p, keys[2].address()), what);
    for (sym, v) in scenario.executor.inventory.iter().filter(|(s, _)| on_chain(s)) {
        transfer(sym.clone(), m.executor, raw(sym, v)?).await?;
    }

    // 10. Named accounts.
    for (a, key) in scenario.accounts.iter().zip(&keys[3..]) {
        for (sym, v) in a.balances.iter().filter(|(s, _)| on_chain(s)) {
            transfer(sym.clone(), key.address(), raw(sym, v)?).await?;
        }
    }
    Ok(m)
}

/// A synthetic asset's id: its name right-padded to 32 bytes.
pub fn asset_id(name: &str) -> B256 {
    let mut out = [0u8; 32];
    let bytes = name.as_bytes();
    let n = bytes.len().min(32);
    out[..n].copy_from_slice(&bytes[..n]);
    B256::from(out)
}

/// Lets every chain's executor move inventory to every other chain's executor through its bridge:
/// the owner (key 0 of each node) calls `setBridgeRoute(bridge, otherChainId, otherExecutor)`.
/// Runs after all chains are deployed, since each route names the other chain's executor.
///
/// # Errors
/// [`DevnetError::Deploy`] naming the chain whose route could not be set.
pub async fn link_bridge_routes(
    chains: &[ChainManifest],
    owners: &[PrivateKeySigner],
) -> Result<(), DevnetError> {
    for (c, owner) in chains.iter().zip(owners) {
        let Some(bridge) = c.bridge else { continue };
        let p = signing_provider(&c.http_url, owner.clone())?;
        let executor = Executor::new(c.executor, &p);
        for other in chains.iter().filter(|o| o.chain_id != c.chain_id && o.bridge.is_some()) {
            let what = format!("{}: bridge route to {}", c.name, other.name);
            send!(
                &p,
                executor.setBridgeRoute(bridge, U256::from(other.chain_id), other.executor),
                what
            );
        }
    }
    Ok(())
}
