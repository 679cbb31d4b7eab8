//! The engine configuration of a running devnet: the embedded default with every chain's
//! endpoints and the deployed tokens, venues, flash lenders and executor filled in.

use crate::config::{
    ChainConfig, Config, ConfigErrors, EndpointUrl, FlashLenderConfig, FlashLenderKind,
    TokenConfig, VenueConfig, VenueKind,
};

use super::{ChainManifest, DevnetManifest};

/// The embedded default configuration pointed at `manifest`'s chains.
///
/// # Errors
/// [`ConfigErrors`] when the result does not validate (a manifest that lists something the
/// configuration refuses).
pub fn devnet_config(manifest: &DevnetManifest) -> Result<Config, ConfigErrors> {
    let mut cfg = Config::embedded_default()?;
    for chain in &mut cfg.chains {
        if let Some(m) = manifest.chain(chain.chain_id) {
            fill_chain(chain, m);
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Fills one chain's endpoints, tokens, venues, lenders and executor from its manifest.
pub fn fill_chain(chain: &mut ChainConfig, m: &ChainManifest) {
    if let Ok(u) = EndpointUrl::new(m.http_url.clone()) {
        chain.http_url = u;
    }
    if let Ok(u) = EndpointUrl::new(m.ws_url.clone()) {
        chain.ws_url = u;
    }
    chain.executor = Some(m.executor);
    chain.tokens = m
        .tokens
        .iter()
        .map(|(symbol, t)| TokenConfig {
            symbol: symbol.clone(),
            address: t.address,
            decimals: t.decimals,
            usd_price: match symbol.as_str() {
                "XAU" => 2_650.0,
                "WETH" => 3_000.0,
                "cEURT" => 1.08,
                _ => 1.0,
            },
            // The fixture tokens emit `Transfer` on every balance change (mint and burn too).
            balances_in_logs: true,
        })
        .collect();
    let mut venues: Vec<VenueConfig> = m
        .pmm_pools
        .iter()
        .map(|p| VenueConfig {
            name: p.name.clone(),
            kind: VenueKind::DodoDsp,
            address: p.address,
            base: p.base.clone(),
            quote: p.quote.clone(),
            trader: None,
            remote_chain: None,
        })
        .collect();
    venues.extend(m.v2_pairs.iter().map(|p| VenueConfig {
        name: format!("v2-{}", p.name),
        kind: VenueKind::UniswapV2,
        address: p.address,
        base: p.token0.clone(),
        quote: p.token1.clone(),
        trader: None,
        remote_chain: None,
    }));
    venues.extend(m.vaults.iter().map(|v| VenueConfig {
        name: format!("vault-{}/{}", v.compliant, v.official),
        kind: VenueKind::Vault,
        address: v.address,
        base: v.official.clone(),
        quote: v.compliant.clone(),
        trader: None,
        remote_chain: None,
    }));
    chain.venues = venues;
    chain.flash_lenders = m
        .lenders
        .iter()
        .map(|l| FlashLenderConfig {
            kind: FlashLenderKind::Erc3156,
            address: l.address,
            tokens: l.tokens.clone(),
        })
        .collect();
}
