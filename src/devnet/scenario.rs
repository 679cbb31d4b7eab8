//! Devnet scenarios: which chains, tokens, venues and balances a devnet starts with.
//!
//! A scenario is TOML (see `fixtures/scenarios/default.toml`, the documented default). Amounts are
//! human decimal strings ("1000000", "0.0005") converted with each token's decimals, so a scenario
//! reads like a desk's description of a market. Unknown keys are refused.

use std::{collections::BTreeMap, path::Path};

use alloy::primitives::{U256, utils::parse_units};
use serde::{Deserialize, Serialize};

use super::DevnetError;

/// The scenario compiled into the binary (`fixtures/scenarios/default.toml`).
pub const DEFAULT_SCENARIO: &str = include_str!("../../fixtures/scenarios/default.toml");

/// A whole devnet: chains and what is deployed on each.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Scenario name, echoed in the manifest.
    pub name: String,
    /// One anvil node per chain.
    pub chains: Vec<ChainSpec>,
    /// ERC-20 tokens and the chains they are deployed on.
    pub tokens: Vec<TokenSpec>,
    /// DODO-interface PMM pools.
    #[serde(default)]
    pub pmm_pools: Vec<PmmPoolSpec>,
    /// Uniswap-V2-style pairs (one factory per chain).
    #[serde(default)]
    pub v2_pairs: Vec<V2PairSpec>,
    /// 1:1 reserve vaults.
    #[serde(default)]
    pub vaults: Vec<VaultSpec>,
    /// Oracle-priced synthetic swaps.
    #[serde(default)]
    pub synths: Vec<SynthSpec>,
    /// ERC-3156 flash lenders.
    #[serde(default)]
    pub lenders: Vec<LenderSpec>,
    /// The bridge joining the chains (one contract per chain, one relayer task).
    pub bridge: Option<BridgeSpec>,
    /// Executor contract inventory per chain (deployed on every chain).
    #[serde(default)]
    pub executor: ExecutorSpec,
    /// Extra funded accounts (anvil dev keys from index 3 on).
    #[serde(default)]
    pub accounts: Vec<AccountSpec>,
}

/// One chain of the devnet.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    /// Name used by the other sections.
    pub name: String,
    /// Chain id anvil reports (138, 651940, ...).
    pub chain_id: u64,
    /// Loopback port; 0 picks a free one.
    #[serde(default)]
    pub port: u16,
    /// Seconds between blocks; 0 mines a block per transaction.
    #[serde(default)]
    pub block_time_secs: f64,
}

/// An ERC-20 token.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Symbol, also the token's name.
    pub symbol: String,
    /// Decimals (6 for the dollar stables, 18 for XAU and WETH).
    pub decimals: u8,
    /// Chains the token is deployed on.
    pub chains: Vec<String>,
}

/// A PMM pool with the DODO V2 DSP interface.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PmmPoolSpec {
    /// Pool name, e.g. "cUSDT/USDT".
    pub name: String,
    /// Chain name.
    pub chain: String,
    /// Base token symbol.
    pub base: String,
    /// Quote token symbol.
    pub quote: String,
    /// Guide price i as a human price of one base in quote ("1").
    pub i: String,
    /// Curve parameter k in [0, 1] ("0.0005" .. "0.5").
    pub k: String,
    /// LP fee as a fraction ("0.0003" is 3 bps).
    pub lp_fee: String,
    /// Default maintainer fee as a fraction ("0" for none).
    #[serde(default = "zero_str")]
    pub mt_fee: String,
    /// Base deposited at creation (human units).
    pub base_liquidity: String,
    /// Quote deposited at creation (human units).
    pub quote_liquidity: String,
    /// Open the TWAP accumulator.
    #[serde(default)]
    pub twap: bool,
}

/// A Uniswap-V2-style pair.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct V2PairSpec {
    /// Chain name.
    pub chain: String,
    /// First token symbol.
    pub token_a: String,
    /// Second token symbol.
    pub token_b: String,
    /// Liquidity of `token_a` (human units).
    pub amount_a: String,
    /// Liquidity of `token_b` (human units).
    pub amount_b: String,
}

/// A 1:1 reserve vault between an official stable and its compliant twin.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSpec {
    /// Chain name.
    pub chain: String,
    /// Official stable symbol (held as reserve).
    pub official: String,
    /// Compliant twin symbol (minted and burned by the vault).
    pub compliant: String,
    /// Mint and redeem fee in basis points.
    pub fee_bps: u16,
    /// Compliant supply minted through the vault at start (human units); backs every compliant token
    /// the scenario hands out on this chain.
    pub initial_mint: String,
}

/// An oracle-priced synthetic swap.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    /// Chain name.
    pub chain: String,
    /// The dollar stable used as collateral and base currency.
    pub base: String,
    /// Collateral deposited at start (human units of `base`).
    pub collateral: String,
    /// Virtual assets.
    pub assets: Vec<SynthAssetSpec>,
}

/// One virtual asset of a synthetic swap.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SynthAssetSpec {
    /// Asset name (stored as a right-padded bytes32).
    pub name: String,
    /// Oracle price of one unit in base currency ("2650.5").
    pub price: String,
    /// Debt cap in base currency (human units).
    pub debt_cap: String,
}

/// An ERC-3156 flash lender.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LenderSpec {
    /// Chain name.
    pub chain: String,
    /// Flash fee in basis points.
    pub fee_bps: u64,
    /// Liquidity per token symbol (human units).
    pub liquidity: BTreeMap<String, String>,
}

/// The bridge between the chains.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSpec {
    /// Fee in basis points, taken on lock.
    pub fee_bps: u16,
    /// Seconds between a lock and its release.
    pub delay_secs: u64,
    /// Maximum amount per transfer, per token symbol (human units); tokens not named are refused.
    pub capacity: BTreeMap<String, String>,
    /// Release reserve held by the bridge on every chain, per token symbol (human units).
    pub reserve: BTreeMap<String, String>,
}

/// Executor inventory.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSpec {
    /// Token inventory per token symbol (human units), given on every chain the token exists on.
    #[serde(default)]
    pub inventory: BTreeMap<String, String>,
}

/// A funded account.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    /// Account name in the manifest.
    pub name: String,
    /// Token balances per symbol (human units), on every chain the token exists on.
    pub balances: BTreeMap<String, String>,
}

fn zero_str() -> String {
    "0".into()
}

impl Scenario {
    /// Parses and validates a scenario.
    ///
    /// # Errors
    /// [`DevnetError::Scenario`] naming the source, the key and the reason.
    pub fn from_toml(text: &str, source: &str) -> Result<Self, DevnetError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| DevnetError::Scenario(format!("{source}: {e}")))?;
        let scenario: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            DevnetError::Scenario(format!("{source}: {}: {}", e.path(), e.inner().message()))
        })?;
        scenario.validate().map_err(|e| DevnetError::Scenario(format!("{source}: {e}")))?;
        Ok(scenario)
    }

    /// Reads a scenario file.
    ///
    /// # Errors
    /// [`DevnetError::Scenario`] when the file cannot be read or is invalid.
    pub fn from_file(path: &Path) -> Result<Self, DevnetError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DevnetError::Scenario(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The embedded default scenario.
    ///
    /// # Errors
    /// Only if the embedded file is broken, which a unit test rules out.
    pub fn default_scenario() -> Result<Self, DevnetError> {
        Self::from_toml(DEFAULT_SCENARIO, "fixtures/scenarios/default.toml")
    }

    /// The token spec for `symbol`.
    pub fn token(&self, symbol: &str) -> Option<&TokenSpec> {
        self.tokens.iter().find(|t| t.symbol == symbol)
    }

    /// Whether `symbol` is deployed on `chain`.
    pub fn token_on(&self, symbol: &str, chain: &str) -> bool {
        self.token(symbol).is_some_and(|t| t.chains.iter().any(|c| c == chain))
    }

    fn validate(&self) -> Result<(), String> {
        if self.chains.is_empty() {
            return Err("chains: at least one chain is required".into());
        }
        let mut ids = std::collections::BTreeSet::new();
        for (n, c) in self.chains.iter().enumerate() {
            if !ids.insert(c.chain_id) {
                return Err(format!("chains[{n}].chain_id: {} appears twice", c.chain_id));
            }
            if !(c.block_time_secs >= 0.0 && c.block_time_secs.is_finite()) {
                return Err(format!("chains[{n}].block_time_secs: must be >= 0"));
            }
        }
        let chain_known = |name: &str| self.chains.iter().any(|c| c.name == name);
        for (n, t) in self.tokens.iter().enumerate() {
            if t.decimals > 36 {
                return Err(format!("tokens[{n}].decimals: {} is more than 36", t.decimals));
            }
            for c in &t.chains {
                if !chain_known(c) {
                    return Err(format!("tokens[{n}].chains: unknown chain {c:?}"));
                }
            }
        }
        let need = |key: String, sym: &str, chain: &str| -> Result<u8, String> {
            if !chain_known(chain) {
                return Err(format!("{key}: unknown chain {chain:?}"));
            }
            match self.token(sym) {
                Some(t) if t.chains.iter().any(|c| c == chain) => Ok(t.decimals),
                Some(_) => Err(format!("{key}: token {sym} is not deployed on {chain}")),
                None => Err(format!("{key}: unknown token {sym:?}")),
            }
        };
        let amount = |key: String, v: &str, dec: u8| -> Result<U256, String> {
            to_raw(v, dec).map_err(|e| format!("{key}: {e}"))
        };
        for (n, p) in self.pmm_pools.iter().enumerate() {
            let bd = need(format!("pmm_pools[{n}].base"), &p.base, &p.chain)?;
            let qd = need(format!("pmm_pools[{n}].quote"), &p.quote, &p.chain)?;
            amount(format!("pmm_pools[{n}].base_liquidity"), &p.base_liquidity, bd)?;
            amount(format!("pmm_pools[{n}].quote_liquidity"), &p.quote_liquidity, qd)?;
            let k = amount(format!("pmm_pools[{n}].k"), &p.k, 18)?;
            if k > U256::from(10u64).pow(U256::from(18)) {
                return Err(format!("pmm_pools[{n}].k: must be between 0 and 1"));
            }
            p.i_raw(bd, qd).map_err(|e| format!("pmm_pools[{n}].i: {e}"))?;
            amount(format!("pmm_pools[{n}].lp_fee"), &p.lp_fee, 18)?;
            amount(format!("pmm_pools[{n}].mt_fee"), &p.mt_fee, 18)?;
        }
        for (n, p) in self.v2_pairs.iter().enumerate() {
            let ad = need(format!("v2_pairs[{n}].token_a"), &p.token_a, &p.chain)?;
            let bd = need(format!("v2_pairs[{n}].token_b"), &p.token_b, &p.chain)?;
            amount(format!("v2_pairs[{n}].amount_a"), &p.amount_a, ad)?;
            amount(format!("v2_pairs[{n}].amount_b"), &p.amount_b, bd)?;
        }
        for (n, v) in self.vaults.iter().enumerate() {
            need(format!("vaults[{n}].official"), &v.official, &v.chain)?;
            let cd = need(format!("vaults[{n}].compliant"), &v.compliant, &v.chain)?;
            amount(format!("vaults[{n}].initial_mint"), &v.initial_mint, cd)?;
            if v.fee_bps > 100 {
                return Err(format!("vaults[{n}].fee_bps: at most 100"));
            }
        }
        for (n, s) in self.synths.iter().enumerate() {
            let d = need(format!("synths[{n}].base"), &s.base, &s.chain)?;
            amount(format!("synths[{n}].collateral"), &s.collateral, d)?;
            for (m, a) in s.assets.iter().enumerate() {
                if a.name.is_empty() || a.name.len() > 32 {
                    return Err(format!("synths[{n}].assets[{m}].name: 1 to 32 bytes"));
                }
                amount(format!("synths[{n}].assets[{m}].price"), &a.price, 18)?;
                amount(format!("synths[{n}].assets[{m}].debt_cap"), &a.debt_cap, d)?;
            }
        }
        for (n, l) in self.lenders.iter().enumerate() {
            for (sym, v) in &l.liquidity {
                let d = need(format!("lenders[{n}].liquidity.{sym}"), sym, &l.chain)?;
                amount(format!("lenders[{n}].liquidity.{sym}"), v, d)?;
            }
        }
        if let Some(b) = &self.bridge {
            for (sym, v) in b.capacity.iter().chain(b.reserve.iter()) {
                let t = self.token(sym).ok_or_else(|| format!("bridge: unknown token {sym:?}"))?;
                amount(format!("bridge.{sym}"), v, t.decimals)?;
            }
        }
        let balances =
            self.executor.inventory.iter().map(|kv| ("executor.inventory".to_string(), kv)).chain(
                self.accounts.iter().enumerate().flat_map(|(n, a)| {
                    a.balances.iter().map(move |kv| (format!("accounts[{n}].balances"), kv))
                }),
            );
        for (key, (sym, v)) in balances {
            let t = self.token(sym).ok_or_else(|| format!("{key}: unknown token {sym:?}"))?;
            amount(format!("{key}.{sym}"), v, t.decimals)?;
        }
        Ok(())
    }
}

impl PmmPoolSpec {
    /// The guide price in DODO units: quote raw per base raw × 1e18, i.e. P × 10^(18 − dec_base + dec_quote).
    ///
    /// # Errors
    /// When the price does not parse or the decimals make the scale negative.
    pub fn i_raw(&self, base_decimals: u8, quote_decimals: u8) -> Result<U256, String> {
        let scale = 18i32 - i32::from(base_decimals) + i32::from(quote_decimals);
        let scale =
            u8::try_from(scale).map_err(|_| "decimals give a negative price scale".to_string())?;
        let i = to_raw(&self.i, scale)?;
        if i.is_zero() || i > U256::from(10u64).pow(U256::from(36)) {
            return Err("i must be in (0, 1e36] once scaled".into());
        }
        Ok(i)
    }
}

/// Converts a human decimal string to raw units with `decimals` places.
///
/// # Errors
/// When the string is not a non-negative decimal or has more places than `decimals`.
pub fn to_raw(value: &str, decimals: u8) -> Result<U256, String> {
    let v = value.trim().replace('_', "");
    if v.is_empty() || v.starts_with('-') || v.starts_with('+') {
        return Err(format!("{value:?} is not a non-negative decimal amount"));
    }
    let places = v.split_once('.').map_or(0, |(_, f)| f.len());
    if places > usize::from(decimals) {
        return Err(format!("{value:?} has more than {decimals} decimal places"));
    }
    parse_units(&v, decimals)
        .map(Into::into)
        .map_err(|e| format!("{value:?} is not a decimal amount: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scenario_parses() {
        let s = Scenario::default_scenario().unwrap();
        assert!(s.chains.iter().any(|c| c.chain_id == 138));
        assert!(s.chains.iter().any(|c| c.chain_id == 651940));
    }

    #[test]
    fn raw_amounts() {
        assert_eq!(to_raw("1000000", 6).unwrap(), U256::from(1_000_000_000_000u64));
        assert_eq!(to_raw("0.0005", 18).unwrap(), U256::from(500_000_000_000_000u64));
        assert!(to_raw("0.1234567", 6).is_err());
        assert!(to_raw("-1", 6).is_err());
        assert!(to_raw("abc", 6).is_err());
    }

    #[test]
    fn i_scaling_matches_domain() {
        let p = PmmPoolSpec {
            name: "x".into(),
            chain: "c".into(),
            base: "XAU".into(),
            quote: "USDT".into(),
            i: "1".into(),
            k: "0".into(),
            lp_fee: "0".into(),
            mt_fee: "0".into(),
            base_liquidity: "1".into(),
            quote_liquidity: "1".into(),
            twap: false,
        };
        // 18-decimal base against 6-decimal quote at par: i = 1e6 (DOMAIN §1.1).
        assert_eq!(p.i_raw(18, 6).unwrap(), U256::from(1_000_000u64));
        assert_eq!(p.i_raw(6, 6).unwrap(), U256::from(10u64).pow(U256::from(18)));
    }

    #[test]
    fn unknown_keys_and_bad_refs_are_refused() {
        let bad = "name='x'\nbogus=1\n[[chains]]\nname='a'\nchain_id=1\n[[tokens]]\nsymbol='T'\ndecimals=6\nchains=['a']\n";
        let e = Scenario::from_toml(bad, "s.toml").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let bad = "name='x'\n[[chains]]\nname='a'\nchain_id=1\n[[tokens]]\nsymbol='T'\ndecimals=6\nchains=['b']\n";
        let e = Scenario::from_toml(bad, "s.toml").unwrap_err().to_string();
        assert!(e.contains("tokens[0].chains"), "{e}");
    }
}
