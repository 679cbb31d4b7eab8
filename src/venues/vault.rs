//! Reserve vault (seed 001): 1:1 mint and redeem between an official stable and its compliant twin,
//! with a fee in bps, an owner pause and an automatic pause when the backing ratio falls below 95%.
//! The peg anchor of depeg routes.
//!
//! Base is the **compliant** token and quote the **official** one (same decimals), so
//! [`Side::SellBase`] is `redeem` (pay compliant, receive official) and [`Side::SellQuote`] is
//! `mint` (pay official, receive compliant). As the contract computes them:
//! - fee = ⌊amount·feeBps / 10,000⌋ on both sides, kept by the vault as official reserve;
//! - redeem(x): burns x compliant, pays x − fee official; refused when the official reserve is
//!   below x − fee;
//! - mint(y): takes y official, mints y − fee compliant;
//! - both refused while `paused` or while the backing ratio ⌊officialReserve·10,000 / compliant
//!   supply⌋ (10,000 with no supply), read before the operation, is below 9,500.

use alloy::{
    eips::BlockId,
    primitives::{Address, U256},
    providers::Provider,
    sol_types::SolCall,
};

use super::{
    Quote, QuoteCtx, Side, Venue, VenueError,
    fetch::{CallBatch, FetchError},
};
use crate::contracts::{Executor, ReserveVault as VaultContract, TestToken};

/// Backing ratio (bps) below which mint and redeem stop.
pub const PAUSE_THRESHOLD_BPS: u64 = 9_500;
/// The executor's hop kind for a vault mint (official → compliant).
pub const HOP_KIND_VAULT_MINT: u8 = 3;
/// The executor's hop kind for a vault redeem (compliant → official).
pub const HOP_KIND_VAULT_REDEEM: u8 = 4;

const BPS: u64 = 10_000;

/// The state of one reserve vault.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReserveVault {
    /// The compliant token the vault mints and burns (base).
    pub compliant: Address,
    /// The official token the vault holds (quote).
    pub official: Address,
    /// The vault's official balance.
    pub official_reserve: U256,
    /// The compliant token's total supply.
    pub compliant_supply: U256,
    /// Fee on mint and redeem, in bps (the contract caps it at 100).
    pub fee_bps: u16,
    /// The owner's (or `poke`'s) pause flag.
    pub paused: bool,
}

impl ReserveVault {
    /// ⌊officialReserve·10,000 / compliantSupply⌋, or 10,000 when the supply is 0.
    ///
    /// # Errors
    /// [`VenueError::Overflow`] when the reserve times 10,000 passes 256 bits (the contract
    /// reverts every operation then).
    pub fn backing_ratio_bps(&self) -> Result<U256, VenueError> {
        if self.compliant_supply.is_zero() {
            return Ok(U256::from(BPS));
        }
        let scaled =
            self.official_reserve.checked_mul(U256::from(BPS)).ok_or(VenueError::Overflow)?;
        Ok(scaled / self.compliant_supply)
    }

    /// Whether mint and redeem are open: not paused and backed at least 95%.
    ///
    /// # Errors
    /// [`VenueError::Paused`] when paused or under-backed, [`VenueError::Overflow`] as
    /// [`ReserveVault::backing_ratio_bps`].
    pub fn check_open(&self) -> Result<(), VenueError> {
        if self.paused || self.backing_ratio_bps()? < U256::from(PAUSE_THRESHOLD_BPS) {
            return Err(VenueError::Paused);
        }
        Ok(())
    }

    /// ⌊amount·feeBps / 10,000⌋ and amount − fee.
    fn split(&self, amount: U256) -> Result<(U256, U256), VenueError> {
        if u64::from(self.fee_bps) > BPS {
            return Err(VenueError::InvalidState("fee above 100%"));
        }
        let fee = amount.checked_mul(U256::from(self.fee_bps)).ok_or(VenueError::Overflow)?
            / U256::from(BPS);
        Ok((amount - fee, fee))
    }

    /// `redeem(amount)`: compliant in, official out.
    ///
    /// # Errors
    /// [`VenueError::Paused`], [`VenueError::ZeroInput`], [`VenueError::Overflow`],
    /// [`VenueError::OverReserves`] when the official reserve cannot pay or the amount exceeds the
    /// whole compliant supply (nobody can hold it), [`VenueError::ZeroOutput`] when it would pay
    /// nothing, [`VenueError::InvalidState`] for a fee above 100%.
    pub fn redeem(&self, amount: U256) -> Result<Quote, VenueError> {
        self.check_open()?;
        if amount.is_zero() {
            return Err(VenueError::ZeroInput);
        }
        let (paid, fee) = self.split(amount)?;
        if paid > self.official_reserve || amount > self.compliant_supply {
            return Err(VenueError::OverReserves);
        }
        if paid.is_zero() {
            return Err(VenueError::ZeroOutput);
        }
        Ok(Quote { amount_out: paid, lp_fee: fee, mt_fee: U256::ZERO })
    }

    /// `mint(amount)`: official in, compliant out.
    ///
    /// # Errors
    /// [`VenueError::Paused`], [`VenueError::ZeroInput`], [`VenueError::Overflow`] (a balance or
    /// the supply would pass 256 bits), [`VenueError::ZeroOutput`], [`VenueError::InvalidState`].
    pub fn mint(&self, amount: U256) -> Result<Quote, VenueError> {
        self.check_open()?;
        if amount.is_zero() {
            return Err(VenueError::ZeroInput);
        }
        let (minted, fee) = self.split(amount)?;
        if self.official_reserve.checked_add(amount).is_none()
            || self.compliant_supply.checked_add(minted).is_none()
        {
            return Err(VenueError::Overflow);
        }
        if minted.is_zero() {
            return Err(VenueError::ZeroOutput);
        }
        Ok(Quote { amount_out: minted, lp_fee: fee, mt_fee: U256::ZERO })
    }

    /// The executor hop through the vault at `venue`: kind 4 (`redeem`) for
    /// [`Side::SellBase`], kind 3 (`mint`) for [`Side::SellQuote`].
    pub fn hop(&self, venue: Address, side: Side, amount_in: U256, min_out: U256) -> Executor::Hop {
        let (kind, token_in, token_out) = match side {
            Side::SellBase => (HOP_KIND_VAULT_REDEEM, self.compliant, self.official),
            Side::SellQuote => (HOP_KIND_VAULT_MINT, self.official, self.compliant),
        };
        Executor::Hop {
            kind,
            venue,
            tokenIn: token_in,
            tokenOut: token_out,
            amountIn: amount_in,
            minOut: min_out,
        }
    }

    /// Reads the vault at `address` whose compliant token is `compliant`, in one batch at
    /// `block`: `official()`, `compliant()`, `feeBps()`, `paused()`, `officialReserve()` on the
    /// vault and `totalSupply()` on the compliant token. The two token addresses are immutable:
    /// read them once with [`ReserveVault::fetch_tokens`] when only the vault is known.
    ///
    /// Cancel-safe: only view calls are sent; dropping the future abandons them.
    ///
    /// # Errors
    /// A [`FetchError`] naming the vault and the failing call; [`FetchError::Inconsistent`] when
    /// the vault's compliant token is not `compliant`.
    pub async fn fetch(
        provider: &impl Provider,
        address: Address,
        compliant: Address,
        block: BlockId,
    ) -> Result<Self, FetchError> {
        let mut batch = CallBatch::new(provider.client(), address, block);
        let official = batch.add(address, &VaultContract::officialCall {})?;
        let vault_compliant = batch.add(address, &VaultContract::compliantCall {})?;
        let fee = batch.add(address, &VaultContract::feeBpsCall {})?;
        let paused = batch.add(address, &VaultContract::pausedCall {})?;
        let reserve = batch.add(address, &VaultContract::officialReserveCall {})?;
        let supply = batch.add(compliant, &TestToken::totalSupplyCall {})?;
        batch.send().await?;
        let official = official.get().await?;
        if vault_compliant.get().await? != compliant {
            return Err(FetchError::Inconsistent {
                venue: address,
                call: VaultContract::compliantCall::SIGNATURE,
                reason: "the vault's compliant token is not the one given",
            });
        }
        Ok(Self {
            compliant,
            official,
            official_reserve: reserve.get().await?,
            compliant_supply: supply.get().await?,
            fee_bps: fee.get().await?,
            paused: paused.get().await?,
        })
    }

    /// The vault's (compliant, official) tokens, in one batch at `block`.
    ///
    /// # Errors
    /// A [`FetchError`] naming the vault and the failing call.
    pub async fn fetch_tokens(
        provider: &impl Provider,
        address: Address,
        block: BlockId,
    ) -> Result<(Address, Address), FetchError> {
        let mut batch = CallBatch::new(provider.client(), address, block);
        let compliant = batch.add(address, &VaultContract::compliantCall {})?;
        let official = batch.add(address, &VaultContract::officialCall {})?;
        batch.send().await?;
        Ok((compliant.get().await?, official.get().await?))
    }
}

impl Venue for ReserveVault {
    fn tokens(&self) -> (Address, Address) {
        (self.compliant, self.official)
    }

    /// [`ReserveVault::redeem`] or [`ReserveVault::mint`]; `lp_fee` is the vault's fee (the
    /// same number in either token, 1:1).
    fn quote(&self, side: Side, amount_in: U256, _ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        match side {
            Side::SellBase => self.redeem(amount_in),
            Side::SellQuote => self.mint(amount_in),
        }
    }

    fn apply(&mut self, side: Side, amount_in: U256, ctx: &QuoteCtx) -> Result<Quote, VenueError> {
        let q = self.quote(side, amount_in, ctx)?;
        // The quote checked every bound: paid ≤ reserve, amount ≤ supply, no sum overflows.
        match side {
            Side::SellBase => {
                self.official_reserve -= q.amount_out;
                self.compliant_supply -= amount_in;
            }
            Side::SellQuote => {
                self.official_reserve += amount_in;
                self.compliant_supply += q.amount_out;
            }
        }
        Ok(q)
    }

    /// 1e18: one compliant raw unit is one official raw unit (fees apart). The price is given
    /// even while the vault is closed; [`Venue::quote`] reports the pause.
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
    use crate::venues::testkit::{Chain, Tally, amount_against, log_uniform, pow10, runner};

    const CTX: QuoteCtx = QuoteCtx { timestamp: 0 };
    const TRADER: Address = address!("0x00000000000000000000000000000000000b0b00");

    fn e6(n: u64) -> U256 {
        U256::from(n) * pow10(6)
    }

    fn vault(reserve: U256, supply: U256, fee_bps: u16) -> ReserveVault {
        ReserveVault {
            compliant: Address::with_last_byte(1),
            official: Address::with_last_byte(2),
            official_reserve: reserve,
            compliant_supply: supply,
            fee_bps,
            paused: false,
        }
    }

    #[test]
    fn redeem_and_mint_with_a_fee() {
        let mut v = vault(e6(1_000_000), e6(1_000_000), 4);
        let q = v.quote(Side::SellBase, e6(10_000), &CTX).unwrap();
        assert_eq!((q.amount_out, q.lp_fee), (e6(9_996), e6(4)));
        // ⌊9,999·4/10,000⌋ = 3: the fee rounds down.
        let q = v.quote(Side::SellQuote, U256::from(9_999u64), &CTX).unwrap();
        assert_eq!((q.amount_out, q.lp_fee), (U256::from(9_996u64), U256::from(3u64)));
        v.apply(Side::SellBase, e6(10_000), &CTX).unwrap();
        assert_eq!((v.official_reserve, v.compliant_supply), (e6(990_004), e6(990_000)));
        v.apply(Side::SellQuote, e6(10_000), &CTX).unwrap();
        assert_eq!((v.official_reserve, v.compliant_supply), (e6(1_000_004), e6(999_996)));
        assert_eq!(v.mid_price().unwrap(), pow10(18));
        assert_eq!(v.tokens(), (v.compliant, v.official));
    }

    #[test]
    fn refusals_are_typed() {
        let v = vault(e6(950), e6(1_000), 0);
        assert!(v.redeem(e6(1)).is_ok());
        // 94.99% backing pauses both sides.
        let under = vault(e6(950) - U256::ONE, e6(1_000), 0);
        assert_eq!(under.redeem(e6(1)), Err(VenueError::Paused));
        assert_eq!(under.mint(e6(1)), Err(VenueError::Paused));
        let paused = ReserveVault { paused: true, ..vault(e6(1), U256::ZERO, 0) };
        assert_eq!(paused.mint(e6(1)), Err(VenueError::Paused));
        assert_eq!(v.redeem(U256::ZERO), Err(VenueError::ZeroInput));
        // 100% backed but redeem more than the reserve.
        let v = vault(e6(1_000), e6(1_000), 0);
        assert_eq!(v.redeem(e6(1_001)), Err(VenueError::OverReserves));
        // An empty vault mints (ratio 10,000 with no supply) but cannot redeem.
        let empty = vault(U256::ZERO, U256::ZERO, 100);
        assert_eq!(empty.mint(e6(1)).unwrap().amount_out, U256::from(990_000u64));
        assert_eq!(empty.redeem(U256::ONE), Err(VenueError::OverReserves));
        assert_eq!(vault(U256::MAX, U256::ONE, 0).redeem(U256::ONE), Err(VenueError::Overflow));
        assert_eq!(vault(e6(1), e6(1), 100).mint(U256::MAX), Err(VenueError::Overflow));
        assert!(matches!(
            vault(e6(1), e6(1), 10_001).mint(U256::ONE),
            Err(VenueError::InvalidState(_))
        ));
        let mut same = v.clone();
        assert!(same.apply(Side::SellBase, e6(2_000), &CTX).is_err());
        assert_eq!(same, v);
    }

    #[test]
    fn hops_carry_the_executor_kinds() {
        let v = vault(e6(1), e6(1), 0);
        let venue = Address::with_last_byte(9);
        let redeem = v.hop(venue, Side::SellBase, e6(5), e6(4));
        assert_eq!((redeem.kind, redeem.tokenIn, redeem.tokenOut), (4, v.compliant, v.official));
        let mint = v.hop(venue, Side::SellQuote, U256::ZERO, U256::ZERO);
        assert_eq!((mint.kind, mint.tokenIn, mint.tokenOut), (3, v.official, v.compliant));
        assert_eq!((redeem.venue, redeem.amountIn, redeem.minOut), (venue, e6(5), e6(4)));
    }

    #[test]
    fn no_panic_on_any_input() {
        let strat = (
            log_uniform(256),
            log_uniform(256),
            any::<u16>(),
            any::<bool>(),
            log_uniform(256),
            any::<bool>(),
        );
        runner()
            .run(&strat, |(reserve, supply, fee, paused, x, base)| {
                let side = if base { Side::SellBase } else { Side::SellQuote };
                let mut v = ReserveVault { paused, ..vault(reserve, supply, fee) };
                let before = v.clone();
                match v.apply(side, x, &CTX) {
                    Ok(q) => prop_assert!(q.amount_out + q.lp_fee == x),
                    Err(_) => prop_assert_eq!(&v, &before),
                }
                Ok(())
            })
            .unwrap();
    }

    // ------------------------------------------------------------ against the fixture contract

    /// Two vaults on a local EVM: one over 6-decimal tokens, one over 18-decimal tokens.
    struct Fixture {
        chain: Chain,
        /// (vault, official, compliant, decimals).
        vaults: Vec<(Address, Address, Address, u32)>,
    }

    fn fixture() -> Fixture {
        let mut chain = Chain::new();
        let owner = chain.owner();
        let mut vaults = Vec::new();
        for decimals in [6u8, 18] {
            let official = chain.token("USDT", decimals);
            let compliant = chain.token("cUSDT", decimals);
            let args = VaultContract::constructorCall {
                official_: official,
                compliant_: compliant,
                feeBps_: 0,
            }
            .abi_encode();
            let vault = chain.deploy(&VaultContract::BYTECODE, args);
            let minter = TestToken::setMinterCall { account: vault, allowed: true };
            chain.send(owner, compliant, &minter).unwrap();
            chain.approve_max(official, TRADER, vault);
            chain.approve_max(compliant, TRADER, vault);
            vaults.push((vault, official, compliant, u32::from(decimals)));
        }
        Fixture { chain, vaults }
    }

    /// (vault index, official reserve, compliant supply, fee bps, paused, side, amount): the
    /// supply is the reserve scaled by a backing ratio around 95–105% (sometimes anything).
    fn case() -> impl Strategy<Value = (usize, U256, U256, u16, bool, Side, U256)> {
        (0usize..2, any::<bool>())
            .prop_flat_map(|(i, base)| {
                let dec = if i == 0 { 6 } else { 18 };
                let bits = pow10(12 + dec).bit_len() as u32;
                let ratio = prop_oneof![
                    6 => 9_400u64..=12_000,
                    2 => 1u64..=20_000,
                    1 => Just(9_500u64),
                    1 => Just(0u64),
                ];
                let fee = prop_oneof![0u16..=100, Just(0u16), Just(100u16), Just(4u16)];
                let paused = prop::bool::weighted(0.05);
                let side = if base { Side::SellBase } else { Side::SellQuote };
                (Just(i), log_uniform(bits), ratio, fee, paused, Just(side))
            })
            .prop_flat_map(|(i, reserve, ratio_bps, fee, paused, side)| {
                // supply = reserve·10⁴/ratio (ratio 0: no supply).
                let supply = if ratio_bps == 0 {
                    U256::ZERO
                } else {
                    reserve * U256::from(BPS) / U256::from(ratio_bps)
                };
                let against = if side == Side::SellBase { supply.max(reserve) } else { reserve };
                (
                    Just(i),
                    Just(reserve),
                    Just(supply),
                    Just(fee),
                    Just(paused),
                    Just(side),
                    amount_against(against),
                )
            })
    }

    /// Redeem and mint through the contract equal the native quote (the trader's balance
    /// change), `apply` gives the vault's reserve and supply after, and every native refusal is a
    /// contract revert and the other way round.
    #[test]
    fn quote_and_apply_match_the_vault() {
        let fx = RefCell::new(fixture());
        let tally = Tally::default();
        runner()
            .run(&case(), |(i, reserve, supply, fee, paused, side, x)| {
                let mut fx = fx.borrow_mut();
                if side == Side::SellQuote && reserve.checked_add(x).is_none() {
                    // Nobody holds that much official token: its supply bounds reserve + x.
                    return Ok(());
                }
                let (vault, official, compliant, _) = fx.vaults[i];
                // Slot 0: owner (20 bytes) | feeBps (2) << 160 | paused (1) << 176.
                let owner = U256::from_be_slice(fx.chain.owner().as_slice());
                let word = owner | (U256::from(fee) << 160) | (U256::from(u8::from(paused)) << 176);
                fx.chain.store(vault, U256::ZERO, word);
                fx.chain.set_balance(official, vault, reserve);
                fx.chain.set_supply(compliant, supply);
                let mut native = ReserveVault {
                    compliant,
                    official,
                    official_reserve: reserve,
                    compliant_supply: supply,
                    fee_bps: fee,
                    paused,
                };
                let (tin, tout) = match side {
                    Side::SellBase => (compliant, official),
                    Side::SellQuote => (official, compliant),
                };
                // The trader holds the input (at most the whole supply when redeeming).
                let held = if side == Side::SellBase { x.min(supply) } else { x };
                fx.chain.set_balance(tin, TRADER, held);
                fx.chain.set_balance(tout, TRADER, U256::ZERO);
                let got = match side {
                    Side::SellBase => {
                        fx.chain.send(TRADER, vault, &VaultContract::redeemCall { amount: x })
                    }
                    Side::SellQuote => {
                        fx.chain.send(TRADER, vault, &VaultContract::mintCall { amount: x })
                    }
                };
                let quoted = native.quote(side, x, &CTX);
                tally.add(&quoted);
                match (quoted, got) {
                    (Ok(q), Ok(out)) => {
                        prop_assert_eq!(out, q.amount_out);
                        prop_assert_eq!(fx.chain.balance(tout, TRADER), q.amount_out);
                        prop_assert_eq!(native.apply(side, x, &CTX).unwrap(), q);
                        let r =
                            fx.chain.view(vault, &VaultContract::officialReserveCall {}).unwrap();
                        let s = fx.chain.view(compliant, &TestToken::totalSupplyCall {}).unwrap();
                        prop_assert_eq!((r, s), (native.official_reserve, native.compliant_supply));
                    }
                    (Err(_), Err(_)) => {}
                    (Ok(q), Err(e)) => prop_assert!(false, "native {q:?}, vault reverted {e}"),
                    (Err(e), Ok(out)) => {
                        // The contract lets a zero-output trade through (it pays nothing).
                        prop_assert!(
                            e == VenueError::ZeroOutput && out.is_zero(),
                            "native {e:?}, vault paid {out}"
                        );
                    }
                }
                Ok(())
            })
            .unwrap();
        tally.check(50, &["ok", "ZeroInput", "Paused", "OverReserves", "Overflow"]);
    }

    // ------------------------------------------------------------ state decoding over JSON-RPC

    /// `fetch` reads the vault, its reserve and the compliant supply in one batch at a pinned
    /// block, and the native quote equals the contract's own quote at that block.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetch_reads_a_vault_at_a_block() {
        use crate::venues::{fetch::FetchError, testkit::Node};
        let n = Node::spawn();
        let official = n.token("USDT", 6).await;
        let compliant = n.token("cUSDT", 6).await;
        let args = VaultContract::constructorCall {
            official_: official,
            compliant_: compliant,
            feeBps_: 4,
        }
        .abi_encode();
        let vault = n.deploy(&VaultContract::BYTECODE, args).await;
        n.send(compliant, &TestToken::setMinterCall { account: vault, allowed: true }).await;
        n.send(official, &TestToken::mintCall { to: n.me, amount: e6(1_000_000) }).await;
        n.send(official, &TestToken::approveCall { spender: vault, amount: U256::MAX }).await;
        n.send(vault, &VaultContract::mintCall { amount: e6(1_000_000) }).await;
        let block = n.block().await;

        assert_eq!(
            ReserveVault::fetch_tokens(&n.p, vault, block).await.unwrap(),
            (compliant, official)
        );
        let v = ReserveVault::fetch(&n.p, vault, compliant, block).await.unwrap();
        assert_eq!(
            v,
            ReserveVault {
                compliant,
                official,
                official_reserve: e6(1_000_000),
                compliant_supply: e6(999_600),
                fee_bps: 4,
                paused: false,
            }
        );
        let quoted = n.view(vault, &VaultContract::quoteRedeemCall { amount: e6(12_345) }).await;
        assert_eq!(v.redeem(e6(12_345)).unwrap().amount_out, quoted.amountOut);
        n.send(vault, &VaultContract::pauseCall {}).await;
        let paused = ReserveVault::fetch(&n.p, vault, compliant, n.block().await).await.unwrap();
        assert_eq!(paused.quote(Side::SellBase, e6(1), &CTX), Err(VenueError::Paused));

        let e = ReserveVault::fetch(&n.p, vault, official, block).await.unwrap_err();
        assert!(matches!(e, FetchError::Inconsistent { call: "compliant()", .. }), "{e}");
        let e = ReserveVault::fetch(&n.p, compliant, compliant, block).await.unwrap_err();
        assert!(matches!(e, FetchError::Reverted { call: "official()", .. }), "{e}");
        assert_eq!(e.venue(), compliant);
    }
}
