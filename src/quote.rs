//! `cantilever quote`: a pool checked before it is traded.
//!
//! Reads the venue's state from a node at one block, quotes a trade with cantilever's native math,
//! executes the venue's own code in revm on the same block's state (forked lazily from the node),
//! and reports both and whether they agree to the wei. A desk runs it on a pool it is about to add.
//!
//! The revm side uses each venue's own answer: the PMM `querySellBase`/`querySellQuote`, the vault's
//! and synthetic swap's quote views, the bridge's `quoteLock`; a V2 pair has no quote view, so its
//! swap is executed: the pair's input-token balance is raised by the input (the token's balance slot
//! is located by probing) and the largest output the pair's K check accepts is found by bisection.

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, U256, keccak256},
    providers::{DynProvider, Provider},
    sol_types::SolCall,
};
use revm::{
    DatabaseRef,
    database::{AlloyDB, CacheDB, WrapDatabaseAsync},
};
use serde::Serialize;

use crate::{
    contracts::{Bridge, PmmPool, ReserveVault, SynthSwap, UniV2Pair},
    evm::{EvmError, LocalEvm},
    venues::Side,
};

alloy::sol! {
    /// The one ERC-20 view the V2 probe needs, for any token.
    interface IBalance {
        function balanceOf(address owner) external view returns (uint256);
    }
}

/// Venue kinds the `quote` command understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum QuoteKind {
    /// DODO V2 stable pool (stored targets).
    DodoDsp,
    /// DODO V2 vending machine (targets re-solved from reserves).
    DodoDvm,
    /// DODO V2 private pool (stored targets).
    DodoDpp,
    /// Uniswap-V2-style pair.
    UniswapV2,
    /// 1:1 reserve vault (base = compliant, quote = official).
    Vault,
    /// Oracle-priced synthetic swap (base = the asset, quote = base currency); needs `--asset`.
    Synth,
}

/// The forked state the revm side runs on.
pub type ForkDb = CacheDB<WrapDatabaseAsync<AlloyDB<alloy::network::Ethereum, DynProvider>>>;

/// A local EVM over a node's state at `block`, fetched lazily. Call from a blocking thread
/// (`tokio::task::spawn_blocking`): state reads block on the runtime `handle`.
pub fn fork_evm(
    provider: DynProvider,
    block: u64,
    timestamp: u64,
    handle: tokio::runtime::Handle,
) -> LocalEvm<WrapDatabaseAsync<AlloyDB<alloy::network::Ethereum, DynProvider>>> {
    let db = WrapDatabaseAsync::with_handle(AlloyDB::new(provider, BlockId::number(block)), handle);
    let mut evm = LocalEvm::new(CacheDB::new(db));
    // Views see the block's own environment.
    evm.set_block(block, timestamp);
    evm
}

/// The venue's own answer for a trade, executed in revm.
///
/// # Errors
/// [`EvmError`] when the venue's code refuses (the refusal is the answer) or the state cannot be read.
pub fn revm_quote<DB: DatabaseRef>(
    evm: &mut LocalEvm<DB>,
    kind: QuoteKind,
    venue: Address,
    side: Side,
    amount: U256,
    trader: Address,
    asset: Option<B256>,
) -> Result<U256, EvmError>
where
    DB::Error: std::fmt::Debug,
{
    match kind {
        QuoteKind::DodoDsp | QuoteKind::DodoDvm | QuoteKind::DodoDpp => match side {
            Side::SellBase => evm
                .view(trader, venue, &PmmPool::querySellBaseCall { trader, payBaseAmount: amount })
                .map(|r| r.receiveQuoteAmount),
            Side::SellQuote => evm
                .view(
                    trader,
                    venue,
                    &PmmPool::querySellQuoteCall { trader, payQuoteAmount: amount },
                )
                .map(|r| r.receiveBaseAmount),
        },
        QuoteKind::Vault => match side {
            Side::SellBase => evm
                .view(trader, venue, &ReserveVault::quoteRedeemCall { amount })
                .map(|r| r.amountOut),
            Side::SellQuote => evm
                .view(trader, venue, &ReserveVault::quoteMintCall { amount })
                .map(|r| r.amountOut),
        },
        QuoteKind::Synth => {
            let asset =
                asset.ok_or_else(|| EvmError::Invalid("a synth quote needs --asset".into()))?;
            match side {
                Side::SellBase => evm
                    .view(trader, venue, &SynthSwap::quoteBurnCall { asset, synthIn: amount })
                    .map(|r| r.baseOut),
                Side::SellQuote => evm
                    .view(trader, venue, &SynthSwap::quoteMintCall { asset, baseIn: amount })
                    .map(|r| r.synthOut),
            }
        }
        QuoteKind::UniswapV2 => v2_max_out(evm, venue, side, amount),
    }
}

/// The bridge's own answer for a lock of `amount`: the net amount released on the other side.
///
/// # Errors
/// When the bridge's code refuses or the state cannot be read.
pub fn revm_bridge_quote<DB: DatabaseRef>(
    evm: &LocalEvm<DB>,
    bridge: Address,
    amount: U256,
) -> Result<U256, EvmError>
where
    DB::Error: std::fmt::Debug,
{
    evm.view(evm.sender, bridge, &Bridge::quoteLockCall { amount }).map(|r| r.net)
}

/// The largest output a V2 pair's own `swap` accepts for `amount_in`, by bisection over its K check.
fn v2_max_out<DB: DatabaseRef>(
    evm: &mut LocalEvm<DB>,
    pair: Address,
    side: Side,
    amount_in: U256,
) -> Result<U256, EvmError>
where
    DB::Error: std::fmt::Debug,
{
    let caller = evm.sender;
    let token0 = evm.view(caller, pair, &UniV2Pair::token0Call {})?;
    let token1 = evm.view(caller, pair, &UniV2Pair::token1Call {})?;
    let reserves = evm.view(caller, pair, &UniV2Pair::getReservesCall {})?;
    let (token_in, reserve_out) = match side {
        Side::SellBase => (token0, U256::from(reserves._reserve1)),
        Side::SellQuote => (token1, U256::from(reserves._reserve0)),
    };
    let balance = evm.view(caller, token_in, &IBalance::balanceOfCall { owner: pair })?;
    let slot = balance_slot(evm, token_in, pair, balance)?;
    let raised = balance
        .checked_add(amount_in)
        .ok_or_else(|| EvmError::Invalid("input overflows the pair's balance".into()))?;
    evm.set_storage(token_in, slot, raised)?;
    let recipient = Address::with_last_byte(0xee);
    let accepts = |evm: &LocalEvm<DB>, out: U256| -> bool {
        let (a0, a1) = match side {
            Side::SellBase => (U256::ZERO, out),
            Side::SellQuote => (out, U256::ZERO),
        };
        let call = UniV2Pair::swapCall {
            amount0Out: a0,
            amount1Out: a1,
            to: recipient,
            data: Default::default(),
        };
        evm.call_raw(caller, pair, call.abi_encode().into()).is_ok()
    };
    if reserve_out.is_zero() || !accepts(evm, U256::from(1u8)) {
        return Err(EvmError::Reverted {
            reason: "pair accepts no output for this input".into(),
            data: Default::default(),
        });
    }
    // Invariant: accepts(lo), !accepts(hi).
    let (mut lo, mut hi) = (U256::from(1u8), reserve_out);
    while hi - lo > U256::from(1u8) {
        let mid = lo + (hi - lo) / U256::from(2u8);
        if accepts(evm, mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Finds the storage slot holding `holder`'s balance in `token` by probing the usual layouts
/// (a Solidity `mapping(address => uint256)` at slots 0..64, or a Vyper-ordered hash).
fn balance_slot<DB: DatabaseRef>(
    evm: &mut LocalEvm<DB>,
    token: Address,
    holder: Address,
    balance: U256,
) -> Result<U256, EvmError>
where
    DB::Error: std::fmt::Debug,
{
    for index in 0u64..64 {
        let key_sol = keccak256(
            [holder.into_word().as_slice(), &U256::from(index).to_be_bytes::<32>()].concat(),
        );
        let key_vy = keccak256(
            [&U256::from(index).to_be_bytes::<32>()[..], holder.into_word().as_slice()].concat(),
        );
        for key in [key_sol, key_vy] {
            let slot = U256::from_be_bytes(key.0);
            let value =
                evm.db().storage_ref(token, slot).map_err(|e| EvmError::Db(format!("{e:?}")))?;
            if value != balance {
                continue;
            }
            // Confirm by writing a marker and reading balanceOf back.
            let marker = balance ^ U256::from(0x5a5a_u32);
            evm.set_storage(token, slot, marker)?;
            let seen = evm.view(evm.sender, token, &IBalance::balanceOfCall { owner: holder })?;
            evm.set_storage(token, slot, balance)?;
            if seen == marker {
                return Ok(slot);
            }
        }
    }
    Err(EvmError::Invalid(format!(
        "could not locate the balance slot of {holder} in token {token}"
    )))
}

/// One side of a quote report: an amount or the refusal.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuoteSide {
    /// The venue pays this much.
    Out {
        /// Output amount, raw units.
        #[serde(serialize_with = "decimal")]
        amount_out: U256,
        /// LP / venue fee in the output token, when the native math knows it.
        #[serde(skip_serializing_if = "Option::is_none", serialize_with = "decimal_opt")]
        lp_fee: Option<U256>,
        /// Maintainer fee in the output token, when the native math knows it.
        #[serde(skip_serializing_if = "Option::is_none", serialize_with = "decimal_opt")]
        mt_fee: Option<U256>,
    },
    /// The venue refuses the trade.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Raw amounts print as decimal strings, the way a desk reads them.
fn decimal<S: serde::Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

fn decimal_opt<S: serde::Serializer>(v: &Option<U256>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

/// What `cantilever quote` prints.
#[derive(Clone, Debug, Serialize)]
pub struct QuoteReport {
    /// The venue.
    pub pool: Address,
    /// Its kind.
    pub kind: QuoteKind,
    /// Direction.
    pub side: &'static str,
    /// Input, raw units.
    #[serde(serialize_with = "decimal")]
    pub amount_in: U256,
    /// Trader the maintainer fee was read for.
    pub trader: Address,
    /// Block the state was read at.
    pub block: u64,
    /// cantilever's native math.
    pub native: QuoteSide,
    /// The venue's own code executed in revm on the same state.
    pub revm: QuoteSide,
    /// Both sides give the same amount, or both refuse.
    pub agree: bool,
}

impl QuoteReport {
    /// Whether the two sides agree (both the same amount, or both refusing).
    pub fn sides_agree(native: &QuoteSide, revm: &QuoteSide) -> bool {
        match (native, revm) {
            (QuoteSide::Out { amount_out: a, .. }, QuoteSide::Out { amount_out: b, .. }) => a == b,
            (QuoteSide::Refused { .. }, QuoteSide::Refused { .. }) => true,
            _ => false,
        }
    }
}

/// The block to read at: `block` or the node's latest, with its timestamp.
///
/// # Errors
/// When the node does not answer or does not know the block.
pub async fn pin_block(provider: &DynProvider, block: Option<u64>) -> anyhow::Result<(u64, u64)> {
    let number = match block {
        Some(n) => n,
        None => provider.get_block_number().await?,
    };
    let header = provider
        .get_block_by_number(number.into())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the node does not know block {number}"))?;
    Ok((number, header.header.timestamp))
}

/// What to quote.
#[derive(Clone, Debug)]
pub struct QuoteRequest {
    /// HTTP JSON-RPC endpoint of the node to read from.
    pub rpc: String,
    /// The venue.
    pub pool: Address,
    /// Its kind.
    pub kind: QuoteKind,
    /// Direction.
    pub side: Side,
    /// Input, raw units.
    pub amount: U256,
    /// Trader (the PMM maintainer fee and the synth settlement lock depend on it).
    pub trader: Address,
    /// Block to read at; the node's latest when `None`.
    pub block: Option<u64>,
    /// Synthetic asset id (bytes32) for `synth`.
    pub asset: Option<B256>,
}

/// Runs a quote: native math and the venue's code in revm on the same block's state.
///
/// # Errors
/// When the node cannot be reached or the venue's state cannot be read at all; a venue that
/// refuses the trade is a [`QuoteSide::Refused`] in the report, not an error.
pub async fn run(req: QuoteRequest) -> anyhow::Result<QuoteReport> {
    use crate::venues::{
        QuoteCtx, Venue, pmm, synth::SynthMarket, v2::V2Pair, vault::ReserveVault as VaultState,
    };

    let url = req.rpc.parse().map_err(|e| anyhow::anyhow!("--rpc is not a URL: {e}"))?;
    let provider = alloy::providers::ProviderBuilder::new().connect_http(url).erased();
    let (block, timestamp) = pin_block(&provider, req.block).await?;
    let at = BlockId::number(block);
    // Next-block context, as the engine would trade it.
    let ctx = QuoteCtx { timestamp: timestamp + 1 };
    let native = match req.kind {
        QuoteKind::DodoDsp | QuoteKind::DodoDvm | QuoteKind::DodoDpp => {
            let kind = match req.kind {
                QuoteKind::DodoDvm => pmm::PmmKind::Dvm,
                QuoteKind::DodoDpp => pmm::PmmKind::Dpp,
                _ => pmm::PmmKind::Dsp,
            };
            pmm::fetch(&provider, req.pool, kind, req.trader, at)
                .await?
                .quote(req.side, req.amount, &ctx)
        }
        QuoteKind::UniswapV2 => {
            V2Pair::fetch(&provider, req.pool, at).await?.quote(req.side, req.amount, &ctx)
        }
        QuoteKind::Vault => {
            let (compliant, _official) = VaultState::fetch_tokens(&provider, req.pool, at).await?;
            VaultState::fetch(&provider, req.pool, compliant, at)
                .await?
                .quote(req.side, req.amount, &ctx)
        }
        QuoteKind::Synth => {
            let asset = req.asset.ok_or_else(|| anyhow::anyhow!("--kind synth needs --asset"))?;
            SynthMarket::fetch(&provider, req.pool, asset, req.trader, at)
                .await?
                .quote(req.side, req.amount, &ctx)
        }
    };
    let native = match native {
        Ok(q) => QuoteSide::Out {
            amount_out: q.amount_out,
            lp_fee: Some(q.lp_fee),
            mt_fee: Some(q.mt_fee),
        },
        Err(e) => QuoteSide::Refused { reason: e.to_string() },
    };

    let handle = tokio::runtime::Handle::current();
    let (kind, pool, side, amount, trader, asset) =
        (req.kind, req.pool, req.side, req.amount, req.trader, req.asset);
    let revm = tokio::task::spawn_blocking(move || {
        let mut evm = fork_evm(provider, block, timestamp, handle);
        revm_quote(&mut evm, kind, pool, side, amount, trader, asset)
    })
    .await
    .map_err(|e| anyhow::anyhow!("revm task failed: {e}"))?;
    let revm = match revm {
        Ok(amount_out) => QuoteSide::Out { amount_out, lp_fee: None, mt_fee: None },
        Err(EvmError::Reverted { reason, .. }) => QuoteSide::Refused { reason },
        Err(e) => return Err(anyhow::anyhow!("executing the venue in revm: {e}")),
    };
    let agree = QuoteReport::sides_agree(&native, &revm);
    Ok(QuoteReport {
        pool: req.pool,
        kind: req.kind,
        side: match req.side {
            Side::SellBase => "sell-base",
            Side::SellQuote => "sell-quote",
        },
        amount_in: req.amount,
        trader: req.trader,
        block,
        native,
        revm,
        agree,
    })
}
