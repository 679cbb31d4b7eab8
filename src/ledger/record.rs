//! The record kinds the engine writes, one struct per table.
//!
//! Amounts are exact: `U256` (sizes, fees) and `I256` (profits, which can be negative) are stored
//! as decimal TEXT; a `*_usd` REAL sits beside them where the engine knows a USD value.
//! Timestamps are unix milliseconds from the engine's clock (live or replay), so a backtest's ledger
//! is deterministic. Ids (`Opportunity::id`, `Submission::id`) are the engine's; the ledger scopes
//! them to the current run.

use alloy::primitives::{Address, B256, I256, U256};
use serde::Serialize;

/// A candidate route the engine found (table `opportunities`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Opportunity {
    /// The engine's id, unique within the run; every later record of this candidate carries it.
    pub id: u64,
    /// Chain the route trades on.
    pub chain_id: u64,
    /// Block whose state the candidate was found on.
    pub block: u64,
    /// Strategy name (`depeg`, `triangle`, `stabilizer`, `backrun`, `cross_chain`).
    pub strategy: String,
    /// The route in readable form (`USDC -> pmm:USDC/USDT -> USDT -> v2:USDT/USDC -> USDC`).
    pub route: String,
    /// The input (and profit) token.
    pub token: Address,
    /// Input size in raw token units.
    #[serde(serialize_with = "decimal")]
    pub size: U256,
    /// Expected profit in raw units of `token`, after gas as the engine estimated it.
    #[serde(serialize_with = "decimal")]
    pub expected_profit: I256,
    /// The same in USD, when known.
    pub expected_profit_usd: Option<f64>,
    /// When it was detected (unix ms).
    pub detected_at_ms: u64,
}

/// The risk verdict on an opportunity (table `decisions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The opportunity decided on.
    pub opportunity_id: u64,
    /// Approved for signing.
    pub approved: bool,
    /// For a refusal: a short stable kind (`exposure`, `flash_spike`, `min_profit`, ...), used to
    /// group refusals in the summary.
    pub refusal_kind: Option<String>,
    /// For a refusal: the reason in words, with the numbers.
    pub reason: Option<String>,
    /// When (unix ms).
    pub at_ms: u64,
}

/// A token balance change of the executor measured in simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenDelta {
    /// The token.
    pub token: Address,
    /// Raw units; negative when the executor ends with less.
    #[serde(serialize_with = "decimal")]
    pub delta: I256,
}

/// The revm proof of an opportunity (table `simulations`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulation {
    /// The opportunity simulated.
    pub opportunity_id: u64,
    /// Block the simulation ran on.
    pub block: u64,
    /// The call succeeded.
    pub success: bool,
    /// Profit in raw units of the opportunity's token (negative for a loss).
    #[serde(serialize_with = "decimal")]
    pub profit: I256,
    /// The same in USD, when known.
    pub profit_usd: Option<f64>,
    /// Gas used.
    pub gas_used: u64,
    /// Revert reason, decoded when possible.
    pub revert_reason: Option<String>,
    /// Every token balance change of the executor (stored as JSON).
    pub deltas: Vec<TokenDelta>,
    /// When (unix ms).
    pub at_ms: u64,
}

/// How a submission was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionKind {
    /// `eth_sendRawTransaction` to an RPC.
    Raw,
    /// `eth_sendBundle` to a relay.
    Bundle,
}

/// What the RPC or relay answered to a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionOutcome {
    /// Accepted (a tx hash or bundle hash came back).
    Accepted,
    /// Refused by the endpoint (an error answer).
    Rejected,
    /// No usable answer (timeout, transport error); never retried blindly.
    Failed,
    /// Cancelled by us (a reorg replaced the target block, shutdown).
    Cancelled,
}

/// A signed transaction or bundle sent (table `submissions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submission {
    /// The engine's id, unique within the run; inclusions refer to it.
    pub id: u64,
    /// The opportunity it executes.
    pub opportunity_id: u64,
    /// Chain.
    pub chain_id: u64,
    /// Raw tx or bundle.
    pub kind: SubmissionKind,
    /// Hashes of the transactions sent (stored as a JSON array).
    pub tx_hashes: Vec<B256>,
    /// The relay's configured *name* (never its URL, which may embed a key); `None` for RPC.
    pub relay: Option<String>,
    /// The block the transaction or bundle targets.
    pub target_block: u64,
    /// Nonce of the executor EOA.
    pub nonce: u64,
    /// `maxFeePerGas` in wei.
    pub max_fee_per_gas: u128,
    /// What the endpoint answered.
    pub outcome: SubmissionOutcome,
    /// Error text or bundle hash, when there is one.
    pub detail: Option<String>,
    /// When sent (unix ms).
    pub at_ms: u64,
}

/// Where a submission ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InclusionStatus {
    /// Mined and succeeded.
    Included,
    /// Mined and reverted (gas spent, no profit).
    Reverted,
    /// Not in the target block (outbid, dropped, expired).
    Missed,
    /// Was included, but the block was reorged out; a later row gives the final status.
    Orphaned,
}

/// The on-chain result of a submission (table `inclusions`). A submission may get several rows
/// (included, then orphaned by a reorg, then included again); the summary uses the latest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inclusion {
    /// The submission.
    pub submission_id: u64,
    /// The block it landed in, or the target block for a miss.
    pub block: u64,
    /// Outcome.
    pub status: InclusionStatus,
    /// Why it missed or reverted, when known.
    pub reason: Option<String>,
    /// Gas used (0 for a miss).
    pub gas_used: u64,
    /// The profit token.
    pub pnl_token: Address,
    /// Realised PnL in raw units of `pnl_token`, from balance deltas, net of gas.
    #[serde(serialize_with = "decimal")]
    pub realised_pnl: I256,
    /// The same in USD, when known.
    pub realised_pnl_usd: Option<f64>,
    /// When observed (unix ms).
    pub at_ms: u64,
}

/// Open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionState {
    /// Inventory held (a cross-chain leg awaiting its other side).
    Open,
    /// Unwound.
    Closed,
}

/// Inventory held across blocks or chains (table `positions`). Written again with the same `id`
/// to update it (close it, change the amount); positions outlive runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Position {
    /// Stable id chosen by the engine (a uuid, or `bridge:<tx hash>`), unique across runs.
    pub id: String,
    /// Chain the inventory sits on.
    pub chain_id: u64,
    /// Token.
    pub token: Address,
    /// Raw units.
    #[serde(serialize_with = "decimal")]
    pub amount: U256,
    /// Value in USD, when known.
    pub amount_usd: Option<f64>,
    /// Open or closed.
    pub state: PositionState,
    /// When opened (unix ms).
    pub opened_at_ms: u64,
    /// When closed (unix ms).
    pub closed_at_ms: Option<u64>,
    /// Free text (the route, the bridge transfer).
    pub notes: Option<String>,
}

/// The kill switch engaged or re-armed (table `halts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Halt {
    /// `true`: engaged (sign nothing); `false`: re-armed by an operator.
    pub engaged: bool,
    /// Why.
    pub reason: String,
    /// When (unix ms).
    pub at_ms: u64,
}

/// Anything the engine records. [`LedgerHandle::record`](super::LedgerHandle::record) takes one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// A candidate found.
    Opportunity(Opportunity),
    /// The risk verdict.
    Decision(Decision),
    /// The revm proof.
    Simulation(Simulation),
    /// A transaction or bundle sent.
    Submission(Submission),
    /// Its on-chain outcome.
    Inclusion(Inclusion),
    /// Inventory opened, changed or closed.
    Position(Position),
    /// Kill switch engaged or re-armed.
    Halt(Halt),
}

macro_rules! record_from {
    ($($t:ident),*) => {$(
        impl From<$t> for Record {
            fn from(r: $t) -> Self {
                Self::$t(r)
            }
        }
    )*};
}
record_from!(Opportunity, Decision, Simulation, Submission, Inclusion, Position, Halt);

impl Record {
    /// The record's kind and id for logs (`opportunity 17`, `inclusion of submission 3`).
    pub fn describe(&self) -> String {
        match self {
            Self::Opportunity(r) => format!("opportunity {}", r.id),
            Self::Decision(r) => format!("decision on opportunity {}", r.opportunity_id),
            Self::Simulation(r) => format!("simulation of opportunity {}", r.opportunity_id),
            Self::Submission(r) => format!("submission {}", r.id),
            Self::Inclusion(r) => format!("inclusion of submission {}", r.submission_id),
            Self::Position(r) => format!("position {}", r.id),
            Self::Halt(r) => format!("halt (engaged = {})", r.engaged),
        }
    }
}

impl SubmissionKind {
    /// The tag stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Bundle => "bundle",
        }
    }
}

impl SubmissionOutcome {
    /// The tag stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl InclusionStatus {
    /// The tag stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Included => "included",
            Self::Reverted => "reverted",
            Self::Missed => "missed",
            Self::Orphaned => "orphaned",
        }
    }
}

impl PositionState {
    /// The tag stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// Amounts serialize as exact decimal strings, as they are stored.
fn decimal<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Milliseconds since the unix epoch by the system clock (0 if the clock is before 1970).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
