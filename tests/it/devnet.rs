//! The devnet: both chains answer with their ids, and the default scenario's pools answer with the
//! DOMAIN §1.10 numbers at their starting state.

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};
use cantilever::contracts::PmmPool;

use crate::harness::{reader, shared};

#[tokio::test]
async fn both_chains_answer_their_chain_ids() {
    let s = shared();
    assert_eq!(reader(&s.c138().http_url).get_chain_id().await.unwrap(), 138);
    assert_eq!(reader(&s.alltra().http_url).get_chain_id().await.unwrap(), 651_940);
}

fn pool(chain: &cantilever::devnet::ChainManifest, name: &str) -> Address {
    chain.pmm_pools.iter().find(|p| p.name == name).unwrap().address
}

/// net = raw − ⌊raw·lp/1e18⌋ (maintainer fee 0 in the default scenario).
fn net_of(raw: u128, lp_fee_rate: U256) -> U256 {
    let raw = U256::from(raw);
    raw - raw * lp_fee_rate / U256::from(10u64).pow(U256::from(18))
}

#[tokio::test]
async fn default_pmm_pools_quote_the_domain_worked_examples() {
    let s = shared();
    let c = s.c138();
    let p = reader(&c.http_url);
    let trader = Address::repeat_byte(0x77);
    // DOMAIN §1.10, 6/6-decimal pool at R = ONE with 1e12 raw on each side:
    // 10,000e6 base → 9,999,949,495 raw at k = 0.0005 and 9,989,919,447 raw at k = 0.1, before fees.
    for (name, raw) in [("cUSDT/USDT", 9_999_949_495u128), ("cUSDC/USDC", 9_989_919_447u128)] {
        let info = c.pmm_pools.iter().find(|x| x.name == name).unwrap();
        let pool = PmmPool::new(pool(c, name), &p);
        let state = pool.getPMMStateForCall().call().await.unwrap();
        assert_eq!(state.B, U256::from(1_000_000_000_000u64), "{name} base reserve");
        assert_eq!(state.Q, U256::from(1_000_000_000_000u64), "{name} quote reserve");
        assert_eq!(state.R, U256::ZERO, "{name} starts at R = ONE");
        let q = pool.querySellBase(trader, U256::from(10_000_000_000u64)).call().await.unwrap();
        assert_eq!(q.receiveQuoteAmount, net_of(raw, info.lp_fee_rate), "{name} sell base");
        assert_eq!(q.mtFee, U256::ZERO);
        // i = 1 makes the set-up symmetric: selling quote gives the same raw base.
        let q = pool.querySellQuote(trader, U256::from(10_000_000_000u64)).call().await.unwrap();
        assert_eq!(q.receiveBaseAmount, net_of(raw, info.lp_fee_rate), "{name} sell quote");
    }
}
