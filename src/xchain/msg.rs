//! Messages between the chain engines and the cross-chain coordinator.
//!
//! Engines publish a [`ChainSnapshot`] after every head and report each leg's proof and outcome
//! as [`XEvent`]s; the coordinator drives them with [`XControl`] (wrapped in
//! [`Control::Xchain`](crate::engine::Control::Xchain)).

use alloy::primitives::{Address, U256};
use crossbeam_channel::Sender;

use crate::{state::BlockRef, venues::Pool, venues::Side};

/// A pool's state as the coordinator sees it (a copy, decoded at the snapshot's head).
#[derive(Clone, Debug)]
pub struct PoolView {
    /// The venue's address on its chain.
    pub venue: Address,
    /// The venue's configured name.
    pub name: String,
    /// Base token address and symbol.
    pub base: (Address, String),
    /// Quote token address and symbol.
    pub quote: (Address, String),
    /// The decoded venue.
    pub pool: Pool,
}

/// One chain after a head: its tradeable pools, the executor's inventory and the gas price.
#[derive(Clone, Debug)]
pub struct ChainSnapshot {
    /// Chain id.
    pub chain_id: u64,
    /// The head the state is at.
    pub head: BlockRef,
    /// The next block's timestamp (quotes use it).
    pub timestamp: u64,
    /// The next block's base fee, wei.
    pub base_fee: u64,
    /// Expected gas price of a leg, wei.
    pub gas_price_wei: u128,
    /// USD per whole gas token.
    pub native_usd: f64,
    /// Decoded PMM and V2 pools.
    pub pools: Vec<PoolView>,
    /// The executor's balance per token: (address, symbol, raw balance, decimals, USD price).
    pub inventory: Vec<Holding>,
    /// Whether the cache is fresh and the engine not halted (legs may be proven).
    pub tradeable: bool,
}

/// One token the executor holds on a chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Holding {
    /// Token address on the chain.
    pub token: Address,
    /// Symbol (the cross-chain identity of the asset).
    pub symbol: String,
    /// Raw balance at the head.
    pub balance: U256,
    /// Decimals.
    pub decimals: u8,
    /// Reference USD price of one whole token.
    pub usd_price: f64,
}

/// A one-way leg the coordinator asks an engine to prove and hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegOrder {
    /// The cross-chain trade id.
    pub xid: u64,
    /// The pool.
    pub venue: Address,
    /// Direction on the pool.
    pub side: Side,
    /// Token paid and token received.
    pub tokens: (Address, Address),
    /// Exact input, raw.
    pub amount_in: U256,
    /// Limit: the least output accepted (the hop's `minOut`).
    pub min_out: U256,
    /// The whole trade's expected profit after costs, raw input token (ledger and desk checks).
    pub expected_profit: alloy::primitives::I256,
    /// For the ledger.
    pub label: String,
    /// Trades a landed leg back (closes exposure: not gated as a new position).
    pub unwind: bool,
}

/// A rebalancing transfer through the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeOrder {
    /// The transfer id (coordinator).
    pub xid: u64,
    /// The bridge on the source chain.
    pub bridge: Address,
    /// The token.
    pub token: Address,
    /// Gross amount locked.
    pub amount: U256,
    /// Destination chain id.
    pub dst_chain_id: u64,
}

/// The coordinator's commands to one engine.
#[derive(Clone, Debug, PartialEq)]
pub enum XControl {
    /// Where the engine publishes snapshots and leg reports.
    Link(XLink),
    /// Prove a leg on the current head, sign it and hold it for [`XControl::Go`].
    Prove(LegOrder),
    /// Send the held leg of this trade.
    Go(u64),
    /// Drop the held leg of this trade (its nonce is released).
    Cancel(u64),
    /// Prove, sign and send a bridge transfer.
    Bridge(BridgeOrder),
    /// Read ahead the state a bridge transfer through each `(bridge, destination chain)` needs
    /// (so the first rebalance is not refused for cold state).
    Warm(Vec<(Address, u64)>),
}

/// The channel an engine reports on (compared by channel identity).
#[derive(Clone, Debug)]
pub struct XLink(pub Sender<XEvent>);

impl ChainSnapshot {
    /// Renames token symbols by `assets` (`[strategies.cross_chain.assets]`: a symbol declared on
    /// this chain → the symbol the same asset is matched by on the other chain).
    pub fn rename_assets(&mut self, assets: &std::collections::BTreeMap<String, String>) {
        if assets.is_empty() {
            return;
        }
        let rename = |s: &mut String| {
            if let Some(n) = assets.get(s.as_str()) {
                s.clone_from(n);
            }
        };
        for p in &mut self.pools {
            rename(&mut p.base.1);
            rename(&mut p.quote.1);
        }
        for h in &mut self.inventory {
            rename(&mut h.symbol);
        }
    }
}

impl PartialEq for XLink {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_channel(&other.0)
    }
}

/// What a proven leg is expected to do.
#[derive(Clone, Debug, PartialEq)]
pub struct LegProof {
    /// Output in revm on the head state, raw.
    pub amount_out: U256,
    /// Gas used in revm.
    pub gas_used: u64,
    /// Expected gas cost, USD.
    pub gas_usd: f64,
    /// The head it was proven on.
    pub head: u64,
}

/// What happened to a sent leg or bridge transfer on chain.
#[derive(Clone, Debug, PartialEq)]
pub enum LegOutcome {
    /// Mined and succeeded: the executor's output-token balance rose by `amount_out`.
    Landed {
        /// Realised output, raw (the executor's balance change).
        amount_out: U256,
        /// Gas paid, USD.
        gas_usd: f64,
    },
    /// Mined and reverted (gas lost).
    Reverted {
        /// Gas paid, USD.
        gas_usd: f64,
    },
    /// Not mined in its window, or not delivered.
    Missed,
}

/// An engine's report to the coordinator.
#[derive(Clone, Debug)]
pub enum XEvent {
    /// A head was processed.
    Head(Box<ChainSnapshot>),
    /// A leg was proven and is held, or refused (with the reason).
    Proven {
        /// Trade id.
        xid: u64,
        /// Chain.
        chain_id: u64,
        /// The proof, or why not.
        result: Result<LegProof, String>,
    },
    /// A sent leg's outcome.
    Leg {
        /// Trade id.
        xid: u64,
        /// Chain.
        chain_id: u64,
        /// What happened.
        outcome: LegOutcome,
    },
    /// A leg reported landed was reorged out of its block. Its submission is tracked again; its
    /// final outcome follows as another [`XEvent::Leg`].
    Orphaned {
        /// Trade id.
        xid: u64,
        /// Chain.
        chain_id: u64,
    },
    /// A bridge transfer was sent (or refused before sending).
    BridgeSent {
        /// Transfer id.
        xid: u64,
        /// Source chain.
        chain_id: u64,
        /// `Ok` when handed to the submitter.
        result: Result<(), String>,
    },
    /// A bridge transfer's lock transaction outcome on the source chain.
    Bridge {
        /// Transfer id.
        xid: u64,
        /// Source chain.
        chain_id: u64,
        /// What happened (`amount_out` is unused: the lock moves tokens out).
        outcome: LegOutcome,
    },
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, U256};

    use super::*;
    use crate::venues::{Pool, v2::V2Pair};

    #[test]
    fn renamed_assets_are_matched_across_chains() {
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let holding = |token, symbol: &str| Holding {
            token,
            symbol: symbol.into(),
            balance: U256::from(5u8),
            decimals: 6,
            usd_price: 1.0,
        };
        let pair = V2Pair { token0: a, token1: b, reserve0: 1, reserve1: 1, fee_bps: 30 };
        let mut s = ChainSnapshot {
            chain_id: 651_940,
            head: BlockRef::default(),
            timestamp: 0,
            base_fee: 0,
            gas_price_wei: 0,
            native_usd: 1.0,
            pools: vec![PoolView {
                venue: Address::repeat_byte(3),
                name: "AUSDC/USDT".into(),
                base: (a, "AUSDC".into()),
                quote: (b, "USDT".into()),
                pool: Pool::V2(pair),
            }],
            inventory: vec![holding(a, "AUSDC"), holding(b, "USDT")],
            tradeable: true,
        };
        let assets = [("AUSDC".to_owned(), "cUSDC".to_owned())].into();
        s.rename_assets(&assets);
        assert_eq!(s.pools[0].base.1, "cUSDC");
        assert_eq!(s.pools[0].quote.1, "USDT", "other symbols keep their names");
        let names: Vec<_> = s.inventory.iter().map(|h| h.symbol.as_str()).collect();
        assert_eq!(names, ["cUSDC", "USDT"]);
        assert_eq!(s.inventory[0].token, a, "addresses are untouched");
    }
}
