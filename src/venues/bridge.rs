//! Bridge leg: one direction of the lock-and-release bridge between two chains (Chain 138 and
//! Alltra in the scenarios). A slow, non-atomic leg: the tokens leave on `lock` and arrive when the
//! relayer calls `release` on the destination, at least `delay_seconds` later.
//!
//! Base is the token on the source chain and quote the same token on the destination, so only
//! [`Side::SellBase`] trades (lock → release); [`Side::SellQuote`] is [`VenueError::Unsupported`]
//! (the way back is the other leg). As the contracts compute it:
//! - the source bridge takes fee = ⌊amount·feeBps / 10,000⌋ and emits the net amount to release;
//! - `lock` refuses a token with capacity 0 ("UNSUPPORTED", here [`VenueError::Unsupported`]) and an
//!   amount above the capacity ("CAPACITY", [`VenueError::OverCap`]);
//! - the destination pays from its own balance and refuses a release above it ("RESERVE",
//!   [`VenueError::OverReserves`]), after its own `delaySeconds` since the lock.
//!
//! The destination reserve is the one at the fetched block: it can change before the release,
//! which the strategy accounts for as the risk of a leg in flight.

use alloy::{
    eips::BlockId,
    primitives::{Address, U256},
    providers::Provider,
};

use super::{
    Quote, QuoteCtx, Side, Venue, VenueError,
    fetch::{CallBatch, FetchError},
};
use crate::contracts::{Bridge, TestToken};

const BPS: u64 = 10_000;

/// One end of a bridge leg: the chain, its bridge contract and the token there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LegEnd {
    /// Chain id.
    pub chain_id: u64,
    /// The bridge contract on that chain.
    pub bridge: Address,
    /// The bridged token on that chain.
    pub token: Address,
}

/// The state of one bridge direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeLeg {
    /// Where tokens are locked.
    pub src: LegEnd,
    /// Where tokens are released.
    pub dst: LegEnd,
    /// The source bridge's lock fee, in bps.
    pub fee_bps: u16,
    /// The source bridge's largest gross amount per lock for the token (0: not bridged).
    pub capacity: U256,
    /// The destination bridge's balance of the token, which pays releases.
    pub dst_reserve: U256,
    /// The destination bridge's `delaySeconds`: the least time from lock to release.
    pub delay_seconds: u64,
}

impl BridgeLeg {
    /// `lock(amount)` on the source: the net amount released on the destination; `lp_fee` is the
    /// bridge fee.
    ///
    /// # Errors
    /// [`VenueError::Unsupported`] (token not bridged), [`VenueError::ZeroInput`],
    /// [`VenueError::OverCap`] (above the capacity), [`VenueError::Overflow`],
    /// [`VenueError::ZeroOutput`] (a 100% fee), [`VenueError::OverReserves`] (above the
    /// destination's reserve), [`VenueError::InvalidState`] (a fee above 100%).
    pub fn lock(&self, amount: U256) -> Result<Quote, VenueError> {
        if self.capacity.is_zero() {
            return Err(VenueError::Unsupported);
        }
        if amount.is_zero() {
            return Err(VenueError::ZeroInput);
        }
        if amount > self.capacity {
            return Err(VenueError::OverCap);
        }
        if u64::from(self.fee_bps) > BPS {
            return Err(VenueError::InvalidState("fee above 100%"));
        }
        let fee = amount.checked_mul(U256::from(self.fee_bps)).ok_or(VenueError::Overflow)?
            / U256::from(BPS);
        let net = amount - fee;
        if net.is_zero() {
            return Err(VenueError::ZeroOutput);
        }
        if net > self.dst_reserve {
            return Err(VenueError::OverReserves);
        }
        Ok(Quote { amount_out: net, lp_fee: fee, mt_fee: U256::ZERO })
    }

    /// The earliest timestamp a lock made at `locked_at` can be released on the destination.
    pub const fn arrival(&self, locked_at: u64) -> u64 {
        locked_at.saturating_add(self.delay_seconds)
    }

    /// The source-chain call that locks `amount` for `recipient` on the destination (sent by the
    /// trader after approving the source bridge). The bridge is not an executor hop: its output
    /// arrives on another chain after the delay.
    pub fn lock_call(&self, amount: U256, recipient: Address) -> Bridge::lockCall {
        Bridge::lockCall {
            token: self.src.token,
            amount,
            recipient,
            dstChainId: U256::from(self.dst.chain_id),
        }
    }

    /// Not an executor hop (see [`BridgeLeg::lock_call`]).
    ///
    /// # Errors
    /// Always [`VenueError::Unsupported`].
    pub const fn hop(
        &self,
        _venue: Address,
        _side: Side,
        _amount_in: U256,
        _min_out: U256,
    ) -> Result<crate::contracts::Executor::Hop, VenueError> {
        Err(VenueError::Unsupported)
    }

    /// Reads the leg: one batch on the source chain at `src_block` (`feeBps()`,
    /// `capacity(token)`) and one on the destination at `dst_block` (`delaySeconds()` and the
    /// token's `balanceOf(bridge)`), sent concurrently.
    ///
    /// Cancel-safe: only view calls are sent; dropping the future abandons them.
    ///
    /// # Errors
    /// A [`FetchError`] naming the bridge (source or destination) and the failing call.
    pub async fn fetch(
        src_provider: &impl Provider,
        src: LegEnd,
        src_block: BlockId,
        dst_provider: &impl Provider,
        dst: LegEnd,
        dst_block: BlockId,
    ) -> Result<Self, FetchError> {
        let source = async {
            let mut b = CallBatch::new(src_provider.client(), src.bridge, src_block);
            let fee = b.add(src.bridge, &Bridge::feeBpsCall {})?;
            let capacity = b.add(src.bridge, &Bridge::capacityCall(src.token))?;
            b.send().await?;
            Ok::<_, FetchError>((fee.get().await?, capacity.get().await?))
        };
        let destination = async {
            let mut b = CallBatch::new(dst_provider.client(), dst.bridge, dst_block);
            let delay = b.add(dst.bridge, &Bridge::delaySecondsCall {})?;
            let reserve = b.add(dst.token, &TestToken::balanceOfCall(dst.bridge))?;
            b.send().await?;
            Ok::<_, FetchError>((delay.get().await?, reserve.get().await?))
        };
        let ((fee_bps, capacity), (delay_seconds, dst_reserve)) =
            futures::try_join!(source, destination)?;
        Ok(Self { src, dst, fee_bps, capacity, dst_reserve, delay_seconds })
    }
}

impl Venue for BridgeLeg {
    /// (the source token, the destination token).
    fn tokens(&self) -> (Address, Address) {
        (self.src.token, self.dst.token)
    }

    /// [`BridgeLeg::lock`] for [`Side::SellBase`]; [`VenueError::Unsupported`] the other way.
    fn quote(&self, side: Side, amount_in: U256, _ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        match side {
            Side::SellBase => self.lock(amount_in),
            Side::SellQuote => Err(VenueError::Unsupported),
        }
    }

    /// Takes the released amount off the destination reserve (the source bridge's balance is not
    /// part of the leg).
    fn apply(&mut self, side: Side, amount_in: U256, ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        let q = self.quote(side, amount_in, ctx)?;
        self.dst_reserve -= q.amount_out;
        Ok(q)
    }

    /// 1e18: one raw unit arrives as one raw unit (fees and the delay apart).
    fn mid_price(&self) -> Result<U256, VenueError> {
        Ok(U256::from(1_000_000_000_000_000_000u128))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use alloy::{primitives::address, sol_types::SolConstructor};
    use proptest::prelude::*;

    use super::*;
    use crate::venues::testkit::{
        Chain, Tally, addr_key, amount_against, log_uniform, mapping_slot, pow10, runner,
    };

    const CTX: QuoteCtx = QuoteCtx { timestamp: 0 };
    const TRADER: Address = address!("0x00000000000000000000000000000000000d0d00");
    const RELAYER: Address = address!("0x0000000000000000000000000000000000000e1a");
    const RECIPIENT: Address = address!("0x0000000000000000000000000000000000000ecc");

    fn leg(fee_bps: u16, capacity: U256, dst_reserve: U256) -> BridgeLeg {
        BridgeLeg {
            src: LegEnd {
                chain_id: 138,
                bridge: Address::with_last_byte(1),
                token: Address::with_last_byte(2),
            },
            dst: LegEnd {
                chain_id: 651_940,
                bridge: Address::with_last_byte(3),
                token: Address::with_last_byte(4),
            },
            fee_bps,
            capacity,
            dst_reserve,
            delay_seconds: 30,
        }
    }

    #[test]
    fn lock_and_release() {
        let e6 = |n: u64| U256::from(n) * pow10(6);
        let mut l = leg(5, e6(100_000), e6(1_000_000));
        let q = l.quote(Side::SellBase, e6(10_000), &CTX).unwrap();
        assert_eq!((q.amount_out, q.lp_fee), (e6(9_995), e6(5)));
        // ⌊19,999·5/10⁴⌋ = 9: the fee rounds down.
        assert_eq!(l.lock(U256::from(19_999u64)).unwrap().lp_fee, U256::from(9u64));
        l.apply(Side::SellBase, e6(10_000), &CTX).unwrap();
        assert_eq!(l.dst_reserve, e6(990_005));
        assert_eq!(l.arrival(1_000), 1_030);
        assert_eq!(l.mid_price().unwrap(), pow10(18));
        let call = l.lock_call(e6(1), RECIPIENT);
        assert_eq!(
            (call.token, call.dstChainId, call.recipient),
            (l.src.token, U256::from(651_940u64), RECIPIENT)
        );
    }

    #[test]
    fn refusals_are_typed() {
        let l = leg(5, U256::from(1_000u64), U256::from(500u64));
        assert_eq!(l.quote(Side::SellQuote, U256::ONE, &CTX), Err(VenueError::Unsupported));
        assert_eq!(l.lock(U256::ZERO), Err(VenueError::ZeroInput));
        assert_eq!(l.lock(U256::from(1_001u64)), Err(VenueError::OverCap));
        assert_eq!(l.lock(U256::from(1_000u64)), Err(VenueError::OverReserves));
        assert!(l.lock(U256::from(500u64)).is_ok());
        assert_eq!(leg(5, U256::ZERO, U256::MAX).lock(U256::ONE), Err(VenueError::Unsupported));
        assert_eq!(leg(10_000, U256::MAX, U256::MAX).lock(U256::ONE), Err(VenueError::ZeroOutput));
        assert_eq!(leg(2, U256::MAX, U256::MAX).lock(U256::MAX), Err(VenueError::Overflow));
        assert!(matches!(
            leg(10_001, U256::MAX, U256::MAX).lock(U256::ONE),
            Err(VenueError::InvalidState(_))
        ));
        assert!(l.hop(l.src.bridge, Side::SellBase, U256::ONE, U256::ZERO).is_err());
        let mut same = l.clone();
        assert!(same.apply(Side::SellBase, U256::from(1_000u64), &CTX).is_err());
        assert_eq!(same, l);
    }

    #[test]
    fn no_panic_on_any_input() {
        let strat =
            (any::<u16>(), log_uniform(256), log_uniform(256), log_uniform(256), any::<bool>());
        runner()
            .run(&strat, |(fee, cap, reserve, x, base)| {
                let side = if base { Side::SellBase } else { Side::SellQuote };
                let mut l = leg(fee, cap, reserve);
                let before = l.clone();
                match l.apply(side, x, &CTX) {
                    Ok(q) => prop_assert_eq!(q.amount_out + q.lp_fee, x),
                    Err(_) => prop_assert_eq!(&l, &before),
                }
                Ok(())
            })
            .unwrap();
    }

    // ------------------------------------------------------------ against the fixture contract

    /// Source and destination bridges (the two chains' contracts on one local EVM) and the token
    /// on each side, for 6- and 18-decimal tokens.
    struct Fixture {
        chain: Chain,
        src: Address,
        dst: Address,
        /// (source token, destination token, decimals).
        tokens: Vec<(Address, Address, u32)>,
    }

    fn fixture() -> Fixture {
        let mut chain = Chain::new();
        let args = Bridge::constructorCall { relayer_: RELAYER, feeBps_: 0, delaySeconds_: 0 }
            .abi_encode();
        let src = chain.deploy(&Bridge::BYTECODE, args.clone());
        let dst = chain.deploy(&Bridge::BYTECODE, args);
        let mut tokens = Vec::new();
        for decimals in [6u8, 18] {
            let a = chain.token("cUSDT", decimals);
            let b = chain.token("cUSDT", decimals);
            chain.approve_max(a, TRADER, src);
            tokens.push((a, b, u32::from(decimals)));
        }
        Fixture { chain, src, dst, tokens }
    }

    /// Lock on the source (the contract's own `quoteLock` gives the net it emits for the relayer)
    /// and release on the destination after the delay: the recipient gets exactly the native
    /// amount, the destination reserve after equals `apply`, and refusals agree both ways.
    #[test]
    fn lock_and_release_match_the_bridges() {
        let fx = RefCell::new(fixture());
        let fee = prop_oneof![6 => 0u16..=100, 2 => 0u16..=10_000, 1 => Just(10_000u16)];
        let strat = (0usize..2, fee, 0u64..=7_200)
            .prop_flat_map(|(i, fee, delay)| {
                let bits = pow10(if i == 0 { 15 } else { 27 }).bit_len() as u32;
                (Just((i, fee, delay)), log_uniform(bits), log_uniform(bits))
            })
            .prop_flat_map(|(head, cap, reserve)| {
                (
                    Just(head),
                    Just(cap),
                    Just(reserve),
                    amount_against(cap.min(reserve).max(U256::ONE)),
                )
            });
        let tally = Tally::default();
        runner()
            .run(&strat, |((i, fee, delay), cap, reserve, x)| {
                let mut fx = fx.borrow_mut();
                let (src, dst) = (fx.src, fx.dst);
                let (ta, tb, _) = fx.tokens[i];
                // Slot 1: relayer (20 bytes) | feeBps (2) << 160 | delaySeconds (8) << 176.
                let relayer = U256::from_be_slice(RELAYER.as_slice());
                let word = relayer | (U256::from(fee) << 160) | (U256::from(delay) << 176);
                fx.chain.store(src, U256::ONE, word);
                fx.chain.store(dst, U256::ONE, word);
                fx.chain.store(src, mapping_slot(addr_key(ta), U256::from(3u64)), cap);
                fx.chain.set_balance(tb, dst, reserve);
                fx.chain.set_balance(tb, RECIPIENT, U256::ZERO);
                fx.chain.set_balance(ta, TRADER, x);
                let mut native = BridgeLeg {
                    src: LegEnd { chain_id: 138, bridge: src, token: ta },
                    dst: LegEnd { chain_id: 651_940, bridge: dst, token: tb },
                    fee_bps: fee,
                    capacity: cap,
                    dst_reserve: reserve,
                    delay_seconds: delay,
                };
                let t0 = 1_750_000_000u64;
                fx.chain.evm.set_block(1, t0);
                let locked = fx.chain.send(TRADER, src, &native.lock_call(x, RECIPIENT));
                let released = locked.and_then(|id| {
                    let net = fx.chain.view(src, &Bridge::quoteLockCall { amount: x })?.net;
                    fx.chain.evm.set_block(2, native.arrival(t0));
                    let release = Bridge::releaseCall {
                        srcChainId: U256::from(138u64),
                        id,
                        token: tb,
                        recipient: RECIPIENT,
                        amount: net,
                        lockedAt: t0,
                    };
                    fx.chain.send(RELAYER, dst, &release).map(|_| net)
                });
                let quoted = native.quote(Side::SellBase, x, &CTX);
                tally.add(&quoted);
                match (quoted, released) {
                    (Ok(q), Ok(net)) => {
                        prop_assert_eq!(net, q.amount_out);
                        prop_assert_eq!(fx.chain.balance(tb, RECIPIENT), net);
                        native.apply(Side::SellBase, x, &CTX).unwrap();
                        prop_assert_eq!(fx.chain.balance(tb, dst), native.dst_reserve);
                    }
                    (Err(_), Err(_)) => {}
                    // A 100% fee: the bridges lock and release nothing.
                    (Err(VenueError::ZeroOutput), Ok(net)) => prop_assert!(net.is_zero()),
                    (Ok(q), Err(e)) => prop_assert!(false, "native {q:?}, bridge refused {e}"),
                    (Err(e), Ok(net)) => prop_assert!(false, "native {e:?}, bridge released {net}"),
                }
                Ok(())
            })
            .unwrap();
        tally.check(
            30,
            &["ok", "ZeroInput", "ZeroOutput", "Unsupported", "OverCap", "OverReserves"],
        );
    }

    /// The release is refused one second before the delay is over.
    #[test]
    fn release_waits_for_the_delay() {
        let mut fx = fixture();
        let (ta, tb, _) = fx.tokens[0];
        let (src, dst) = (fx.src, fx.dst);
        let owner = fx.chain.owner();
        fx.chain
            .send(owner, src, &Bridge::setCapacityCall { token: ta, maxPerTransfer: U256::MAX })
            .unwrap();
        fx.chain.send(owner, dst, &Bridge::setDelayCall { delaySeconds_: 30 }).unwrap();
        fx.chain.set_balance(tb, dst, U256::from(1_000u64));
        fx.chain.set_balance(ta, TRADER, U256::from(1_000u64));
        let l = BridgeLeg {
            src: LegEnd { chain_id: 138, bridge: src, token: ta },
            dst: LegEnd { chain_id: 651_940, bridge: dst, token: tb },
            fee_bps: 0,
            capacity: U256::MAX,
            dst_reserve: U256::from(1_000u64),
            delay_seconds: 30,
        };
        let t0 = fx.chain.evm.timestamp();
        let id = fx.chain.send(TRADER, src, &l.lock_call(U256::from(1_000u64), RECIPIENT)).unwrap();
        let release = Bridge::releaseCall {
            srcChainId: U256::from(138u64),
            id,
            token: tb,
            recipient: RECIPIENT,
            amount: U256::from(1_000u64),
            lockedAt: t0,
        };
        fx.chain.evm.set_block(9, l.arrival(t0) - 1);
        let early = fx.chain.send(RELAYER, dst, &release).unwrap_err();
        assert_eq!(early.revert_reason(), Some("revert: TOO_EARLY"));
        fx.chain.evm.set_block(10, l.arrival(t0));
        fx.chain.send(RELAYER, dst, &release).unwrap();
    }

    // ------------------------------------------------------------ state decoding over JSON-RPC

    /// `fetch` reads the source side on one node and the destination on another (two chains),
    /// one batch each, and a lock on the source then quotes as the contract's `quoteLock`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetch_reads_both_chains() {
        use crate::venues::{fetch::FetchError, testkit::Node};
        let (a, b) = (Node::spawn(), Node::spawn());
        let e6 = |n: u64| U256::from(n) * pow10(6);
        let args = |delay: u64| {
            Bridge::constructorCall { relayer_: RELAYER, feeBps_: 5, delaySeconds_: delay }
                .abi_encode()
        };
        let src_bridge = a.deploy(&Bridge::BYTECODE, args(3_600)).await;
        let dst_bridge = b.deploy(&Bridge::BYTECODE, args(30)).await;
        let src_token = a.token("cUSDT", 6).await;
        let dst_token = b.token("cUSDT", 6).await;
        a.send(
            src_bridge,
            &Bridge::setCapacityCall { token: src_token, maxPerTransfer: e6(50_000) },
        )
        .await;
        b.send(dst_token, &TestToken::mintCall { to: dst_bridge, amount: e6(1_000_000) }).await;
        let src = LegEnd { chain_id: 138, bridge: src_bridge, token: src_token };
        let dst = LegEnd { chain_id: 651_940, bridge: dst_bridge, token: dst_token };
        let (sb, db) = (a.block().await, b.block().await);

        let leg = BridgeLeg::fetch(&a.p, src, sb, &b.p, dst, db).await.unwrap();
        assert_eq!(
            leg,
            BridgeLeg {
                src,
                dst,
                fee_bps: 5,
                capacity: e6(50_000),
                dst_reserve: e6(1_000_000),
                delay_seconds: 30
            }
        );
        let quoted = a.view(src_bridge, &Bridge::quoteLockCall { amount: e6(12_345) }).await;
        assert_eq!(leg.lock(e6(12_345)).unwrap().amount_out, quoted.net);
        assert_eq!(leg.lock(e6(50_001)), Err(VenueError::OverCap));

        // The destination's failures name the destination bridge.
        let e = BridgeLeg::fetch(&a.p, src, sb, &Node::dead_provider(), dst, db).await.unwrap_err();
        assert!(matches!(e, FetchError::Transport { call: "batch", .. }), "{e}");
        assert_eq!(e.venue(), dst_bridge);
        let wrong = LegEnd { bridge: dst_token, ..dst };
        let e = BridgeLeg::fetch(&a.p, src, sb, &b.p, wrong, db).await.unwrap_err();
        assert!(matches!(e, FetchError::Reverted { call: "delaySeconds()", .. }), "{e}");
    }
}
