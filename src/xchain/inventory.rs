//! The executor's inventory per token per chain, with bridge transfers in flight (pure).
//!
//! Balances come from each chain's latest snapshot (the executor's balance at that head). A
//! transfer is counted in flight from the source block whose `Locked` event shows it (the source
//! balance already lacks it there) until the destination block whose `Released` event pays it (the
//! destination balance includes it from there). So at any pair of heads every unit is counted
//! once: `total = Σ balances + in flight`, and the only change a transfer makes to the total is
//! the bridge fee.

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};

use super::msg::{ChainSnapshot, Holding};

/// Where a bridge transfer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferState {
    /// Handed to the source engine; not yet seen locked.
    Sending,
    /// Locked on the source chain; not yet released on the destination.
    InFlight,
    /// Released on the destination chain.
    Arrived,
    /// The lock transaction failed or was refused; nothing moved.
    Failed,
}

/// One rebalancing transfer.
#[derive(Clone, Debug, PartialEq)]
pub struct Transfer {
    /// Coordinator id.
    pub xid: u64,
    /// Source chain id.
    pub src: u64,
    /// Destination chain id.
    pub dst: u64,
    /// Asset symbol.
    pub symbol: String,
    /// Token address on the source chain.
    pub token: Address,
    /// Gross amount locked, raw (source decimals).
    pub gross: U256,
    /// Net amount to be released, raw (known once locked; source decimals).
    pub net: U256,
    /// Bridge fee, raw.
    pub fee: U256,
    /// Bridge lock id, once locked.
    pub lock_id: Option<U256>,
    /// State.
    pub state: TransferState,
    /// Source block of the lock.
    pub locked_block: Option<u64>,
    /// Destination block of the release.
    pub arrived_block: Option<u64>,
    /// When it was sent (unix ms).
    pub sent_at_ms: u64,
    /// Gas of the lock transaction, USD (once mined).
    pub gas_usd: f64,
}

/// Balances per chain and transfers.
#[derive(Clone, Debug, Default)]
pub struct InventoryBook {
    /// Latest holdings per chain: (head number, holdings).
    chains: BTreeMap<u64, (u64, Vec<Holding>)>,
    /// Every transfer of this run.
    pub transfers: Vec<Transfer>,
}

/// `raw` with `decimals` as an 18-decimal amount.
pub fn to18(raw: U256, decimals: u8) -> U256 {
    super::spread::rescale(raw, decimals, 18)
}

impl InventoryBook {
    /// Takes a chain's holdings at its head.
    pub fn update(&mut self, snap: &ChainSnapshot) {
        self.chains.insert(snap.chain_id, (snap.head.number, snap.inventory.clone()));
    }

    /// The executor's holding of `symbol` on `chain`.
    pub fn holding(&self, chain: u64, symbol: &str) -> Option<&Holding> {
        self.chains.get(&chain)?.1.iter().find(|h| h.symbol == symbol)
    }

    /// Head the chain's holdings are at.
    pub fn head(&self, chain: u64) -> Option<u64> {
        self.chains.get(&chain).map(|c| c.0)
    }

    /// Net amount of `symbol` locked and not yet released, 18 decimals.
    pub fn in_flight18(&self, symbol: &str) -> U256 {
        self.transfers
            .iter()
            .filter(|t| t.symbol == symbol && t.state == TransferState::InFlight)
            .map(|t| {
                let d = self.holding(t.src, symbol).map_or(18, |h| h.decimals);
                to18(t.net, d)
            })
            .fold(U256::ZERO, |a, b| a + b)
    }

    /// Whether a transfer of `symbol` is being sent or is in flight.
    pub fn moving(&self, symbol: &str) -> bool {
        self.transfers.iter().any(|t| {
            t.symbol == symbol
                && matches!(t.state, TransferState::Sending | TransferState::InFlight)
        })
    }

    /// Value in flight, USD.
    pub fn in_flight_usd(&self) -> f64 {
        self.transfers
            .iter()
            .filter(|t| matches!(t.state, TransferState::Sending | TransferState::InFlight))
            .filter_map(|t| {
                let h = self.holding(t.src, &t.symbol)?;
                Some(
                    crate::engine::market::u256_f64(t.gross) / 10f64.powi(i32::from(h.decimals))
                        * h.usd_price,
                )
            })
            .sum()
    }

    /// Every unit of `symbol` the executor owns: balances on every chain plus in flight, 18
    /// decimals.
    pub fn total18(&self, symbol: &str) -> U256 {
        let held = self
            .chains
            .values()
            .flat_map(|(_, hs)| hs.iter().filter(|h| h.symbol == symbol))
            .map(|h| to18(h.balance, h.decimals))
            .fold(U256::ZERO, |a, b| a + b);
        held + self.in_flight18(symbol)
    }

    /// The holding of `symbol` on `chain` in USD.
    pub fn usd(&self, chain: u64, symbol: &str) -> Option<f64> {
        let h = self.holding(chain, symbol)?;
        Some(
            crate::engine::market::u256_f64(h.balance) / 10f64.powi(i32::from(h.decimals))
                * h.usd_price,
        )
    }
}

/// A rebalancing need: move `usd` worth of the asset from `src` to `dst`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rebalance {
    /// Source chain.
    pub src: u64,
    /// Destination chain.
    pub dst: u64,
    /// Value to move, USD.
    pub usd: f64,
    /// The source holding's drift from its share of the total, percent.
    pub skew_pct: f64,
}

/// Whether holdings `(chain, usd, target_usd)` on two chains are skewed past `threshold_pct`: each
/// chain's share of the total should match its share of the targets; the chain above its share
/// sends the excess to the other.
pub fn rebalance_need(
    a: (u64, f64, f64),
    b: (u64, f64, f64),
    threshold_pct: f64,
) -> Option<Rebalance> {
    let (total, targets) = (a.1 + b.1, a.2 + b.2);
    if total <= 0.0 || targets <= 0.0 {
        return None;
    }
    let want_a = total * a.2 / targets;
    let excess = a.1 - want_a;
    let (src, dst, want) =
        if excess > 0.0 { (a.0, b.0, want_a) } else { (b.0, a.0, total - want_a) };
    let skew_pct = excess.abs() / want.max(f64::MIN_POSITIVE) * 100.0;
    (skew_pct > threshold_pct).then_some(Rebalance { src, dst, usd: excess.abs(), skew_pct })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_moves_the_excess_to_the_other_chain() {
        // 90k vs 50k with equal targets: each should hold 70k; move 20k from chain 1.
        let r = rebalance_need((1, 90_000.0, 50_000.0), (2, 50_000.0, 50_000.0), 20.0).unwrap();
        assert_eq!((r.src, r.dst), (1, 2));
        assert!((r.usd - 20_000.0).abs() < 1e-6);
        assert!((r.skew_pct - 20_000.0 / 70_000.0 * 100.0).abs() < 1e-9);
        // Under the threshold: nothing.
        assert!(rebalance_need((1, 55_000.0, 50_000.0), (2, 50_000.0, 50_000.0), 20.0).is_none());
        // The other way round, with unequal targets (1:3).
        let r = rebalance_need((1, 10_000.0, 25_000.0), (2, 90_000.0, 75_000.0), 5.0).unwrap();
        assert_eq!((r.src, r.dst), (2, 1));
        assert!((r.usd - 15_000.0).abs() < 1e-6);
    }

    #[test]
    fn a_transfer_is_counted_once_from_lock_to_release() {
        let h = |b: u64| Holding {
            token: Address::ZERO,
            symbol: "cUSDC".into(),
            balance: U256::from(b),
            decimals: 6,
            usd_price: 1.0,
        };
        let snap = |chain: u64, n: u64, b: u64| ChainSnapshot {
            chain_id: chain,
            head: crate::state::BlockRef { number: n, ..Default::default() },
            timestamp: 0,
            base_fee: 0,
            gas_price_wei: 0,
            native_usd: 0.0,
            pools: Vec::new(),
            inventory: vec![h(b)],
            tradeable: true,
        };
        let mut book = InventoryBook::default();
        book.update(&snap(1, 10, 90));
        book.update(&snap(2, 10, 50));
        assert_eq!(book.total18("cUSDC"), to18(U256::from(140u64), 6));
        book.transfers.push(Transfer {
            xid: 1,
            src: 1,
            dst: 2,
            symbol: "cUSDC".into(),
            token: Address::ZERO,
            gross: U256::from(20u64),
            net: U256::from(19u64),
            fee: U256::from(1u64),
            lock_id: Some(U256::from(1u64)),
            state: TransferState::InFlight,
            locked_block: Some(11),
            arrived_block: None,
            sent_at_ms: 0,
            gas_usd: 0.0,
        });
        book.update(&snap(1, 11, 70));
        assert_eq!(book.total18("cUSDC"), to18(U256::from(139u64), 6), "fee left the books");
        book.transfers[0].state = TransferState::Arrived;
        book.update(&snap(2, 12, 69));
        assert_eq!(book.total18("cUSDC"), to18(U256::from(139u64), 6));
        assert!(!book.moving("cUSDC"));
    }
}
