//! Nonces owned by the bot, one [`NonceManager`] per (chain, executor address).
//!
//! alloy's cached nonce manager never resynchronises; ours is explicit: [`NonceManager::next`]
//! reserves, [`release`](NonceManager::release) gives back a nonce whose transaction was never
//! delivered, [`confirm`](NonceManager::confirm) records a mined one, and
//! [`resync`](NonceManager::resync) adopts the node's `latest` transaction count as the truth.
//! A node error is classified by [`NodeErrorKind::classify`]; [`NonceManager::on_rejected`] applies
//! it (release, or mark stale so that `next` refuses until a resync). Pure synchronous state; the
//! only I/O is the [`resync_from`] helper.

use std::collections::BTreeSet;

use alloy::{
    primitives::Address,
    providers::Provider,
    transports::{RpcError, TransportErrorKind},
};

/// What a node's rejection of a transaction means, classified from its error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeErrorKind {
    /// The nonce is already used on chain ("nonce too low", Besu "Nonce too low").
    NonceTooLow,
    /// The nonce leaves a gap above the account's next nonce ("nonce too high", Besu "nonce is
    /// too distant from current sender nonce").
    NonceTooHigh,
    /// A pending transaction with this nonce pays more ("replacement transaction underpriced").
    ReplacementUnderpriced,
    /// The node already has this exact transaction ("already known", "known transaction").
    AlreadyKnown,
    /// The fee cap is below the base fee or the node's minimum ("transaction underpriced",
    /// "max fee per gas less than block base fee", "gas price below configured minimum").
    FeeTooLow,
    /// The sender cannot pay `gas × maxFee + value` ("insufficient funds", Besu "upfront cost
    /// exceeds account balance").
    InsufficientFunds,
    /// The gas limit is below intrinsic gas or above the block gas limit.
    GasLimit,
    /// The node's pool is full.
    PoolFull,
    /// Anything else.
    Other,
}

impl NodeErrorKind {
    /// Classifies a node's error message (case-insensitive; geth, anvil, Besu and Erigon wording).
    pub fn classify(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        NODE_MESSAGES
            .iter()
            .find(|(_, needles)| needles.iter().any(|n| m.contains(n)))
            .map_or(Self::Other, |(kind, _)| *kind)
    }

    /// Whether local nonce state is wrong and must be resynchronised from the node before the
    /// next reservation: the nonce was used by someone else, a gap exists, or a pending
    /// transaction of ours holds it.
    pub fn requires_resync(self) -> bool {
        matches!(self, Self::NonceTooLow | Self::NonceTooHigh | Self::ReplacementUnderpriced)
    }

    /// Whether the transaction nevertheless reached the node (its nonce stays in use).
    pub fn is_delivered(self) -> bool {
        self == Self::AlreadyKnown
    }

    /// Whether the nonce of the rejected transaction is still free and can be released.
    pub fn frees_nonce(self) -> bool {
        matches!(self, Self::FeeTooLow | Self::InsufficientFunds | Self::GasLimit | Self::PoolFull)
    }
}

/// Lowercase fragments of node messages per kind, tried in order (the specific "replacement
/// transaction underpriced" before the general "underpriced").
const NODE_MESSAGES: &[(NodeErrorKind, &[&str])] = &[
    (NodeErrorKind::NonceTooLow, &["nonce too low", "nonce is too low", "oldnonce"]),
    (
        NodeErrorKind::NonceTooHigh,
        &["nonce too high", "too distant from current sender nonce", "nonce gap"],
    ),
    (
        NodeErrorKind::ReplacementUnderpriced,
        &["replacement transaction underpriced", "replacement underpriced"],
    ),
    (
        NodeErrorKind::AlreadyKnown,
        &["already known", "known transaction", "already imported", "already in the pool"],
    ),
    (NodeErrorKind::InsufficientFunds, &["insufficient funds", "exceeds account balance"]),
    (
        NodeErrorKind::FeeTooLow,
        &[
            "underpriced",
            "less than block base fee",
            "below configured minimum",
            "fee cap less than",
            "max fee per gas less than",
        ],
    ),
    (NodeErrorKind::GasLimit, &["intrinsic gas too low", "exceeds block gas limit"]),
    (NodeErrorKind::PoolFull, &["txpool is full", "pool is full"]),
];

/// A node's JSON-RPC rejection of a submission: its code and message, and the classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    /// JSON-RPC error code.
    pub code: i64,
    /// The node's message, verbatim (bounded to 512 bytes).
    pub message: String,
    /// [`NodeErrorKind::classify`] of the message.
    pub kind: NodeErrorKind,
}

impl NodeError {
    /// Classifies a node's error response.
    pub fn new(code: i64, message: &str) -> Self {
        Self { code, message: bounded(message, 512), kind: NodeErrorKind::classify(message) }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Why [`NonceManager::next`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// A node error showed local state is wrong; call [`NonceManager::resync`] first.
    #[error("nonces of {address} on chain {chain_id} need a resync from the node")]
    ResyncRequired {
        /// Chain id.
        chain_id: u64,
        /// The account.
        address: Address,
    },
}

/// What a [`NonceManager::resync`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncReport {
    /// The next nonce before the resync.
    pub previous_next: u64,
    /// The next nonce now (the node's `latest` count).
    pub next: u64,
    /// Reservations that were outstanding and are now forgotten.
    pub dropped: usize,
    /// Whether the node is ahead of every nonce handed out: a transaction from this key was
    /// sent by something other than this manager.
    pub out_of_band: bool,
}

/// Nonces of one account on one chain, owned by the bot.
///
/// Invariants: every reserved nonce is `< next`; released nonces are `< next` and not reserved;
/// `confirmed ≤ next`.
#[derive(Debug, Clone)]
pub struct NonceManager {
    chain_id: u64,
    address: Address,
    next: u64,
    confirmed: u64,
    reserved: BTreeSet<u64>,
    released: BTreeSet<u64>,
    stale: bool,
}

impl NonceManager {
    /// A manager starting from the node's `latest` transaction count of `address`.
    pub fn new(chain_id: u64, address: Address, latest_count: u64) -> Self {
        Self {
            chain_id,
            address,
            next: latest_count,
            confirmed: latest_count,
            reserved: BTreeSet::new(),
            released: BTreeSet::new(),
            stale: false,
        }
    }

    /// The account.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Reserves a nonce: the lowest released one (filling a gap first), else the next new one.
    ///
    /// # Errors
    /// [`NonceError::ResyncRequired`] after a nonce error, until [`resync`](Self::resync).
    #[allow(
        clippy::should_implement_trait,
        reason = "fallible reservation, not an iterator: it refuses while stale"
    )]
    pub fn next(&mut self) -> Result<u64, NonceError> {
        if self.stale {
            return Err(NonceError::ResyncRequired {
                chain_id: self.chain_id,
                address: self.address,
            });
        }
        let nonce = match self.released.pop_first() {
            Some(n) => n,
            None => {
                let n = self.next;
                self.next += 1;
                n
            }
        };
        self.reserved.insert(nonce);
        Ok(nonce)
    }

    /// Gives back a reserved nonce whose transaction never reached any node (not signed, refused
    /// before sending, or rejected with a reason that frees it). Unknown nonces are ignored.
    pub fn release(&mut self, nonce: u64) {
        if !self.reserved.remove(&nonce) {
            return;
        }
        self.released.insert(nonce);
        // Shrink `next` over released nonces at the top, so no gap is left behind.
        while self.next > self.confirmed && self.released.remove(&(self.next - 1)) {
            self.next -= 1;
        }
    }

    /// Records that the transaction with `nonce` was mined.
    pub fn confirm(&mut self, nonce: u64) {
        self.reserved.remove(&nonce);
        self.released.remove(&nonce);
        self.confirmed = self.confirmed.max(nonce + 1);
        if self.next < self.confirmed {
            self.next = self.confirmed;
        }
        self.released.retain(|&n| n >= self.confirmed);
        self.reserved.retain(|&n| n >= self.confirmed);
    }

    /// Applies a node's rejection of the transaction with `nonce`: a nonce error marks the state
    /// stale (the next [`next`](Self::next) fails until a resync); a rejection that frees the
    /// nonce releases it; an already-known transaction keeps it reserved.
    pub fn on_rejected(&mut self, nonce: u64, kind: NodeErrorKind) {
        if kind.requires_resync() {
            self.stale = true;
        } else if kind.frees_nonce() {
            self.release(nonce);
        }
    }

    /// Adopts the node's `latest` transaction count as the truth. Every outstanding reservation
    /// and released gap is forgotten: call it when no transaction of this key should still be
    /// pending (bundles: each block; raw transactions: after inclusion tracking settles), after
    /// a nonce error, and after a reorg.
    pub fn resync(&mut self, latest_count: u64) -> ResyncReport {
        let report = ResyncReport {
            previous_next: self.next,
            next: latest_count,
            dropped: self.reserved.len(),
            out_of_band: latest_count > self.next,
        };
        self.next = latest_count;
        self.confirmed = latest_count;
        self.reserved.clear();
        self.released.clear();
        self.stale = false;
        report
    }

    /// Whether a resync is needed before the next reservation.
    pub fn needs_resync(&self) -> bool {
        self.stale
    }

    /// The nonce a fresh reservation would get if no gap is released.
    pub fn peek_next(&self) -> u64 {
        self.next
    }

    /// Reserved nonces not yet confirmed or released, ascending.
    pub fn reserved(&self) -> impl Iterator<Item = u64> + '_ {
        self.reserved.iter().copied()
    }
}

/// Reads `latest` transaction count of the manager's account from `provider` and resyncs.
///
/// Cancel-safe: nothing changes until the count has arrived.
///
/// # Errors
/// The provider's error when the count cannot be read (the manager is unchanged).
pub async fn resync_from<P: Provider>(
    manager: &mut NonceManager,
    provider: &P,
) -> Result<ResyncReport, RpcError<TransportErrorKind>> {
    let count = provider.get_transaction_count(manager.address()).latest().await?;
    Ok(manager.resync(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mgr(start: u64) -> NonceManager {
        NonceManager::new(1, Address::repeat_byte(0xaa), start)
    }

    #[test]
    fn reserves_in_order_and_confirms() {
        let mut m = mgr(5);
        assert_eq!(m.next(), Ok(5));
        assert_eq!(m.next(), Ok(6));
        assert_eq!(m.reserved().collect::<Vec<_>>(), vec![5, 6]);
        m.confirm(5);
        assert_eq!(m.reserved().collect::<Vec<_>>(), vec![6]);
        assert_eq!(m.peek_next(), 7);
        m.confirm(6);
        assert_eq!(m.next(), Ok(7));
    }

    #[test]
    fn release_of_the_top_nonce_shrinks_next() {
        let mut m = mgr(0);
        let a = m.next().unwrap();
        let b = m.next().unwrap();
        m.release(b);
        assert_eq!(m.peek_next(), 1);
        assert_eq!(m.next(), Ok(1));
        m.release(a);
        // `a` is below a reserved nonce: it becomes a gap, filled by the next reservation.
        assert_eq!(m.peek_next(), 2);
        assert_eq!(m.next(), Ok(0));
        assert_eq!(m.next(), Ok(2));
    }

    #[test]
    fn release_of_unknown_nonce_is_ignored() {
        let mut m = mgr(3);
        m.release(1);
        m.release(9);
        assert_eq!(m.next(), Ok(3));
    }

    #[test]
    fn release_cascades_over_lower_released_nonces() {
        let mut m = mgr(10);
        let (a, b, c) = (m.next().unwrap(), m.next().unwrap(), m.next().unwrap());
        m.release(b);
        m.release(a);
        assert_eq!(m.peek_next(), 13);
        m.release(c);
        assert_eq!(m.peek_next(), 10, "all three released: back to the start");
        assert_eq!(m.next(), Ok(10));
    }

    #[test]
    fn confirm_above_next_moves_next() {
        let mut m = mgr(0);
        m.confirm(4);
        assert_eq!(m.next(), Ok(5));
    }

    #[test]
    fn nonce_error_blocks_until_resync() {
        let mut m = mgr(2);
        let n = m.next().unwrap();
        m.on_rejected(n, NodeErrorKind::NonceTooLow);
        assert!(m.needs_resync());
        assert!(matches!(m.next(), Err(NonceError::ResyncRequired { chain_id: 1, .. })));
        let r = m.resync(7);
        assert_eq!(r, ResyncReport { previous_next: 3, next: 7, dropped: 1, out_of_band: true });
        assert!(!m.needs_resync());
        assert_eq!(m.next(), Ok(7));
    }

    #[test]
    fn resync_down_after_dropped_tx() {
        let mut m = mgr(0);
        m.next().unwrap();
        m.next().unwrap();
        let r = m.resync(1);
        assert_eq!(r, ResyncReport { previous_next: 2, next: 1, dropped: 2, out_of_band: false });
        assert_eq!(m.next(), Ok(1));
    }

    #[test]
    fn rejection_that_frees_the_nonce_releases_it() {
        let mut m = mgr(0);
        let n = m.next().unwrap();
        m.on_rejected(n, NodeErrorKind::FeeTooLow);
        assert!(!m.needs_resync());
        assert_eq!(m.next(), Ok(0));
        m.on_rejected(0, NodeErrorKind::AlreadyKnown);
        assert_eq!(m.reserved().collect::<Vec<_>>(), vec![0], "already known keeps it");
    }

    #[test]
    fn classifies_node_messages() {
        use NodeErrorKind as K;
        let cases = [
            ("nonce too low", K::NonceTooLow),
            ("nonce too low: address 0xabc, tx: 0 state: 1", K::NonceTooLow),
            ("Nonce too low", K::NonceTooLow),
            ("nonce too high", K::NonceTooHigh),
            ("Transaction nonce is too distant from current sender nonce", K::NonceTooHigh),
            ("replacement transaction underpriced", K::ReplacementUnderpriced),
            ("Replacement transaction underpriced", K::ReplacementUnderpriced),
            ("already known", K::AlreadyKnown),
            ("Known transaction", K::AlreadyKnown),
            ("transaction already imported", K::AlreadyKnown),
            ("transaction underpriced", K::FeeTooLow),
            (
                "max fee per gas less than block base fee: address 0x1, maxFeePerGas: 1",
                K::FeeTooLow,
            ),
            ("Gas price below configured minimum gas price", K::FeeTooLow),
            ("insufficient funds for gas * price + value", K::InsufficientFunds),
            ("Upfront cost exceeds account balance", K::InsufficientFunds),
            ("intrinsic gas too low", K::GasLimit),
            ("exceeds block gas limit", K::GasLimit),
            ("txpool is full", K::PoolFull),
            ("execution reverted", K::Other),
        ];
        for (msg, want) in cases {
            assert_eq!(K::classify(msg), want, "{msg}");
        }
        for k in [K::NonceTooLow, K::NonceTooHigh, K::ReplacementUnderpriced] {
            assert!(k.requires_resync() && !k.frees_nonce(), "{k:?}");
        }
        for k in [K::AlreadyKnown, K::FeeTooLow, K::InsufficientFunds, K::GasLimit, K::Other] {
            assert!(!k.requires_resync(), "{k:?}");
        }
        assert!(K::AlreadyKnown.is_delivered() && !K::AlreadyKnown.frees_nonce());
        assert!(!K::Other.frees_nonce(), "unknown rejections keep the nonce reserved");
    }

    #[test]
    fn bounded_cuts_on_char_boundary() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("aéb", 2), "a…");
    }
}
