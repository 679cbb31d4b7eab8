//! `fetch` against a real anvil: the fixture pools deployed and traded, read back in one batch,
//! and the native quote of the fetched state equals the contract's view; failures name the pool
//! and the call.

use alloy::{
    eips::BlockId,
    primitives::{Address, U256},
    providers::Provider,
};

use super::pow10;
use crate::{
    contracts::{FeeRateModel, PmmPool as PmmPoolContract, TestToken},
    devnet::{AnvilNode, AnvilOptions, deploy::signing_provider},
    venues::{
        QuoteCtx, Side, Venue,
        fetch::FetchError,
        pmm::{PmmKind, RState, dvm_fixture::DvmPool, fetch},
    },
};

/// Sends a contract call and requires a successful receipt.
macro_rules! confirm {
    ($what:expr, $call:expr) => {{
        let receipt = $call.send().await.unwrap().get_receipt().await.unwrap();
        assert!(receipt.status(), "{} reverted", $what);
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_reads_deployed_pools_in_one_batch() {
    let node = AnvilNode::spawn(&AnvilOptions::default()).expect("anvil (never skipped)");
    let deployer = node.keys()[0].clone();
    let me = deployer.address();
    let trader = node.keys()[1].address();
    let p = signing_provider(&node.http_url(), deployer).unwrap();

    let base = TestToken::deploy(&p, "BASE".into(), "BASE".into(), 18).await.unwrap();
    let quote = TestToken::deploy(&p, "QUOTE".into(), "QUOTE".into(), 6).await.unwrap();
    let model = FeeRateModel::deploy(&p, pow10(15)).await.unwrap();
    confirm!("setTraderRate", model.setTraderRate(trader, pow10(14) * U256::from(5u64)));
    let k = pow10(17);
    let dsp = PmmPoolContract::deploy(
        &p,
        me,
        *base.address(),
        *quote.address(),
        pow10(15),
        *model.address(),
        pow10(18),
        k,
        true,
    )
    .await
    .unwrap();
    let dvm = DvmPool::deploy(
        &p,
        me,
        *base.address(),
        *quote.address(),
        pow10(15),
        *model.address(),
        pow10(18),
        k,
        false,
    )
    .await
    .unwrap();
    let liquidity = pow10(24);
    for pool in [*dsp.address(), *dvm.address()] {
        confirm!("mint base", base.mint(pool, liquidity));
        confirm!("mint quote", quote.mint(pool, liquidity));
    }
    confirm!("dsp buyShares", dsp.buyShares(me));
    confirm!("dvm buyShares", dvm.buyShares(me));
    // Move the DSP to BELOW_ONE.
    confirm!("mint trade", base.mint(*dsp.address(), pow10(22)));
    confirm!("sellBase", dsp.sellBase(me));

    let block = BlockId::number(p.get_block_number().await.unwrap());
    let got = fetch(&p, *dsp.address(), PmmKind::Dsp, trader, block).await.unwrap();
    assert_eq!((got.base, got.quote), (*base.address(), *quote.address()));
    assert_eq!(got.r, RState::BelowOne);
    assert_eq!((got.lp_fee_rate, got.mt_fee_rate), (pow10(15), pow10(14) * U256::from(5u64)));
    assert!(got.twap_timestamp_last.is_some());
    let ctx = QuoteCtx { timestamp: u64::MAX };
    for amount in [pow10(6), pow10(21), pow10(23)] {
        let view = dsp.querySellBase(trader, amount).block(block).call().await.unwrap();
        assert_eq!(
            got.quote(Side::SellBase, amount, &ctx).unwrap().amount_out,
            view.receiveQuoteAmount
        );
        let view = dsp.querySellQuote(trader, amount).block(block).call().await.unwrap();
        assert_eq!(
            got.quote(Side::SellQuote, amount, &ctx).unwrap().amount_out,
            view.receiveBaseAmount
        );
    }

    let got = fetch(&p, *dvm.address(), PmmKind::Dvm, trader, block).await.unwrap();
    assert_eq!(got.twap_timestamp_last, None);
    for amount in [pow10(6), pow10(21), pow10(23)] {
        let view = dvm.querySellBase(trader, amount).block(block).call().await.unwrap();
        assert_eq!(
            got.quote(Side::SellBase, amount, &ctx).unwrap().amount_out,
            view.receiveQuoteAmount
        );
        let view = dvm.querySellQuote(trader, amount).block(block).call().await.unwrap();
        assert_eq!(
            got.quote(Side::SellQuote, amount, &ctx).unwrap().amount_out,
            view.receiveBaseAmount
        );
    }

    // A DSP away from R = ONE is not a DVM.
    let err = fetch(&p, *dsp.address(), PmmKind::Dvm, trader, block).await.unwrap_err();
    assert!(matches!(err, FetchError::Inconsistent { .. }), "{err}");
    assert_eq!(err.venue(), *dsp.address());

    // No code at the address: the error names the pool and the call.
    let nowhere = Address::with_last_byte(0x42);
    let err = fetch(&p, nowhere, PmmKind::Dsp, trader, block).await.unwrap_err();
    assert_eq!((err.venue(), err.call()), (nowhere, "getPMMStateForCall()"));
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("getPMMStateForCall()"), "{err}");

    // A token is not a pool: its call reverts.
    let err = fetch(&p, *base.address(), PmmKind::Dsp, trader, block).await.unwrap_err();
    assert_eq!(err.venue(), *base.address());
    assert_eq!(err.call(), "getPMMStateForCall()");
}
