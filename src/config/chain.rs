//! `[[chains]]`: endpoints, submission, signer, fees, and the tokens, venues and flash lenders the
//! bot trades on one chain.

use std::fmt;
use std::path::PathBuf;

use alloy::primitives::Address;
use serde::Deserialize;

use super::de;
use super::secrets::{EndpointUrl, EnvVarName};

/// One chain the bot watches and trades (`[[chains]]`).
///
/// `Debug` and `Display` never show a full URL: [`EndpointUrl`] redacts itself, and
/// `Display` prints a one-line summary (`chain138 (id 138, ws ws://127.0.0.1:8546, …)`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Short unique name used in logs, metrics and references from strategies (`chain138`).
    /// Letters, digits, `-` and `_`.
    pub name: String,
    /// EIP-155 chain id; unique across `[[chains]]` and checked against the node at start-up.
    pub chain_id: u64,
    /// WebSocket endpoint for `newHeads`, full pending transactions and logs. May embed an API
    /// key, so write it as `${VAR}` when it does; never logged.
    pub ws_url: EndpointUrl,
    /// HTTP endpoint for state reads and backfill (and for submission in `public-rpc` mode).
    /// Submissions always go over HTTP, never over the WebSocket (a reconnect may resend them).
    pub http_url: EndpointUrl,
    /// Expected block interval in milliseconds. Used for health (a head older than a few blocks
    /// is a stall) and to turn block windows into time; the bot also measures it.
    pub block_time_ms: u64,
    /// How transactions reach the chain (`[chains.submission]`).
    pub submission: SubmissionConfig,
    /// The gas-only executor EOA that signs transactions (`[chains.signer]`). Required when
    /// `engine.dry_run = false`; in dry-run a fixed simulation sender is used.
    #[serde(default)]
    pub signer: Option<SignerRef>,
    /// The deployed executor contract (owner-only entry, flash-loan containment). Required when
    /// `engine.dry_run = false`; in dry-run the simulator places the executor's code itself.
    #[serde(default, deserialize_with = "de::opt_address")]
    pub executor: Option<Address>,
    /// EIP-1559 fee policy (`[chains.fees]`).
    #[serde(default)]
    pub fees: FeePolicy,
    /// The token allow-list of this chain (`[[chains.tokens]]`): the bot never routes through a
    /// token that is not declared here.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// The venues traded on this chain (`[[chains.venues]]`).
    #[serde(default)]
    pub venues: Vec<VenueConfig>,
    /// Flash-loan sources on this chain (`[[chains.flash_lenders]]`).
    #[serde(default)]
    pub flash_lenders: Vec<FlashLenderConfig>,
}

impl ChainConfig {
    /// The declared token with `symbol`, if any.
    pub fn token(&self, symbol: &str) -> Option<&TokenConfig> {
        self.tokens.iter().find(|t| t.symbol == symbol)
    }

    /// The declared venue named `name`, if any.
    pub fn venue(&self, name: &str) -> Option<&VenueConfig> {
        self.venues.iter().find(|v| v.name == name)
    }
}

impl fmt::Display for ChainConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (id {}, ws {}, http {}, {}, {} tokens, {} venues)",
            self.name,
            self.chain_id,
            self.ws_url,
            self.http_url,
            self.submission.mode,
            self.tokens.len(),
            self.venues.len()
        )
    }
}

/// How signed transactions reach the chain (`[chains.submission]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionConfig {
    /// `public-rpc`, `private-rpc` or `flashbots-relay`.
    pub mode: SubmissionMode,
    /// The private transaction endpoint; required for `private-rpc`, refused otherwise.
    #[serde(default)]
    pub private_rpc_url: Option<EndpointUrl>,
    /// The relays and builders a bundle goes to, all at once; required (non-empty) for
    /// `flashbots-relay`, refused otherwise.
    #[serde(default)]
    pub relays: Vec<RelayConfig>,
    /// The fundless identity key that signs `X-Flashbots-Signature`; required for
    /// `flashbots-relay`, refused otherwise. Must differ from the executor signer.
    #[serde(default)]
    pub identity: Option<SignerRef>,
}

/// The submission path of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubmissionMode {
    /// `eth_sendRawTransaction` to the chain's `http_url` (public mempool). Chains without
    /// builders, such as Chain 138 and Alltra.
    PublicRpc,
    /// `eth_sendRawTransaction` to `private_rpc_url` (a private transaction endpoint).
    PrivateRpc,
    /// `eth_sendBundle` to every relay in `relays`, signed with the identity key.
    FlashbotsRelay,
}

impl fmt::Display for SubmissionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PublicRpc => "public-rpc",
            Self::PrivateRpc => "private-rpc",
            Self::FlashbotsRelay => "flashbots-relay",
        })
    }
}

/// One relay or builder endpoint (`[[chains.submission.relays]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Name for logs and metrics (`flashbots`, `beaverbuild`); unique per chain.
    pub name: String,
    /// The `eth_sendBundle` endpoint; `https` unless on loopback. May embed a key: use `${VAR}`.
    pub url: EndpointUrl,
    /// Registered builder names to share the bundle with (the `builders` field of
    /// `eth_sendBundle`); empty sends to this relay only.
    #[serde(default)]
    pub builders: Vec<String>,
}

/// Where a signing key comes from: an encrypted keystore or an environment variable. The file
/// only ever names the source; the key is read by the signer at start-up.
///
/// In TOML, either `{ keystore = "path", password_env = "NAME" }` or `{ key_env = "NAME" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSignerRef")]
pub enum SignerRef {
    /// An encrypted JSON keystore (alloy `signer-keystore`).
    Keystore {
        /// Path of the keystore file (relative paths: from the working directory).
        path: PathBuf,
        /// The environment variable holding the keystore password.
        password_env: EnvVarName,
    },
    /// A hex private key held in an environment variable.
    Env {
        /// The environment variable holding the key.
        key_env: EnvVarName,
    },
}

impl fmt::Display for SignerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keystore { path, password_env } => {
                write!(f, "keystore {} (password in ${password_env})", path.display())
            }
            Self::Env { key_env } => write!(f, "key in ${key_env}"),
        }
    }
}

/// The TOML shape of a [`SignerRef`], before the either/or check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignerRef {
    #[serde(default)]
    keystore: Option<PathBuf>,
    #[serde(default)]
    password_env: Option<EnvVarName>,
    #[serde(default)]
    key_env: Option<EnvVarName>,
}

impl TryFrom<RawSignerRef> for SignerRef {
    type Error = &'static str;

    fn try_from(raw: RawSignerRef) -> Result<Self, Self::Error> {
        match (raw.keystore, raw.password_env, raw.key_env) {
            (Some(path), Some(password_env), None) => {
                if path.as_os_str().is_empty() {
                    Err("`keystore` is an empty path")
                } else {
                    Ok(Self::Keystore { path, password_env })
                }
            }
            (None, None, Some(key_env)) => Ok(Self::Env { key_env }),
            (Some(_), None, None) => {
                Err("`keystore` needs `password_env`, the variable holding its password")
            }
            (Some(_), _, Some(_)) => {
                Err("set either `keystore` (+ `password_env`) or `key_env`, not both")
            }
            (None, Some(_), _) => Err("`password_env` only goes with `keystore`"),
            (None, None, None) => {
                Err("empty signer: set `keystore` + `password_env`, or `key_env`")
            }
        }
    }
}

/// EIP-1559 fee policy of a chain (`[chains.fees]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeePolicy {
    /// Cap on `maxFeePerGas` in gwei; > 0 and ≤ `risk.max_gas_price_gwei`. Default 50.
    pub max_fee_gwei: f64,
    /// `maxPriorityFeePerGas` in gwei; ≥ 0 and ≤ `max_fee_gwei`. Default 1.
    pub priority_fee_gwei: f64,
    /// Share of the simulated profit paid to the block builder as a coinbase tip, in basis points
    /// (0–10,000). Default 0; relays usually need a tip to include a bundle.
    pub tip_share_bps: u32,
    /// USD price of one whole unit of the chain's gas token, for gas costs in USD (> 0).
    /// Default 2,500.
    pub native_usd: f64,
}

impl Default for FeePolicy {
    fn default() -> Self {
        Self { max_fee_gwei: 50.0, priority_fee_gwei: 1.0, tip_share_bps: 0, native_usd: 2_500.0 }
    }
}

impl FeePolicy {
    /// `max_fee_gwei` in wei.
    pub fn max_fee_wei(&self) -> u128 {
        gwei_to_wei(self.max_fee_gwei)
    }

    /// `priority_fee_gwei` in wei.
    pub fn priority_fee_wei(&self) -> u128 {
        gwei_to_wei(self.priority_fee_gwei)
    }
}

/// Converts gwei to wei, rounding to the nearest wei (negative and NaN become 0).
pub(crate) fn gwei_to_wei(gwei: f64) -> u128 {
    // `as` saturates, so an out-of-range float cannot wrap.
    (gwei * 1e9).round().max(0.0) as u128
}

/// One allow-listed token (`[[chains.tokens]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Symbol used by venues, lenders and strategies (`cUSDT`); unique per chain.
    pub symbol: String,
    /// ERC-20 contract address; unique per chain. Mixed case must be a valid EIP-55 checksum.
    #[serde(deserialize_with = "de::address")]
    pub address: Address,
    /// `decimals()` of the token (0–36); checked against the chain at start-up.
    pub decimals: u8,
    /// Reference USD price of one whole token, used to express notionals, exposure and profit in
    /// USD for the desk limits (> 0). Default 1.0 (a USD stable).
    #[serde(default = "one_usd")]
    pub usd_price: f64,
    /// Whether every change of a holder's balance comes with a log naming the holder (ERC-20
    /// `Transfer`, WETH `Deposit`/`Withdrawal`). Then a block that touches the token re-reads only
    /// the balances of the holders its logs name, not every balance the bot watches (with
    /// thousands of pools in one token, that is the difference between a few slots and
    /// thousands per head). Set `false` for rebasing tokens and any token that moves balances
    /// without a log: each of its watched balances is then re-read whenever the token is
    /// touched. Default `true`.
    #[serde(default = "yes")]
    pub balances_in_logs: bool,
}

fn yes() -> bool {
    true
}

fn one_usd() -> f64 {
    1.0
}

/// One venue (`[[chains.venues]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueConfig {
    /// Name unique on its chain (`cUSDT/USDT`), used by strategies and in logs.
    pub name: String,
    /// The venue family, which decides the math and the call encoding.
    pub kind: VenueKind,
    /// The pool, pair, vault, synth or bridge contract.
    #[serde(deserialize_with = "de::address")]
    pub address: Address,
    /// Base token symbol (declared in this chain's tokens). For a vault: the official stable;
    /// for a bridge: the token locked on this chain.
    pub base: String,
    /// Quote token symbol. For a vault: the compliant twin; for a bridge: the token released on
    /// `remote_chain` (declared there).
    pub quote: String,
    /// DODO only: the `trader` passed to `querySellBase`/`querySellQuote`, which selects the
    /// maintainer fee. Defaults to the executor.
    #[serde(default, deserialize_with = "de::opt_address")]
    pub trader: Option<Address>,
    /// Bridge only (required there): the `name` of the chain the bridge releases on.
    #[serde(default)]
    pub remote_chain: Option<String>,
}

/// The family of a venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VenueKind {
    /// DODO V2 stable pool (DSP).
    DodoDsp,
    /// DODO V2 vending machine (DVM).
    DodoDvm,
    /// DODO V2 private pool (DPP).
    DodoDpp,
    /// Uniswap-V2-style constant-product pair.
    UniswapV2,
    /// Reserve vault: 1:1 mint/redeem between an official stable and its compliant twin.
    Vault,
    /// Oracle-priced synthetic swap.
    Synth,
    /// Lock-and-release bridge to another chain (a slow, non-atomic leg).
    Bridge,
}

impl VenueKind {
    /// Whether this is a DODO PMM pool (DSP, DVM or DPP).
    pub fn is_dodo(self) -> bool {
        matches!(self, Self::DodoDsp | Self::DodoDvm | Self::DodoDpp)
    }
}

impl fmt::Display for VenueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DodoDsp => "dodo-dsp",
            Self::DodoDvm => "dodo-dvm",
            Self::DodoDpp => "dodo-dpp",
            Self::UniswapV2 => "uniswap-v2",
            Self::Vault => "vault",
            Self::Synth => "synth",
            Self::Bridge => "bridge",
        })
    }
}

/// One flash-loan source (`[[chains.flash_lenders]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashLenderConfig {
    /// The lender interface.
    pub kind: FlashLenderKind,
    /// The lender contract (for `dodo` and `uniswap-v2`: the pool or pair that lends).
    #[serde(deserialize_with = "de::address")]
    pub address: Address,
    /// Symbols of the tokens it lends (declared in this chain's tokens); at least one.
    pub tokens: Vec<String>,
}

/// A flash-loan interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlashLenderKind {
    /// ERC-3156 `flashLoan(receiver, token, amount, data)`.
    Erc3156,
    /// DODO V2 pool `flashLoan(baseAmount, quoteAmount, to, data)`.
    Dodo,
    /// Uniswap V2 flash swap (`swap` with non-empty data).
    UniswapV2,
}

impl fmt::Display for FlashLenderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Erc3156 => "erc3156",
            Self::Dodo => "dodo",
            Self::UniswapV2 => "uniswap-v2",
        })
    }
}
