//! `cantilever quote` against the devnet: native math, the venue's code in revm, and the chain agree.

use alloy::primitives::{Address, U256};
use cantilever::{
    contracts::{PmmPool, TestToken, UniV2Pair},
    devnet::deploy::{asset_id, confirm},
    quote::{QuoteKind, QuoteRequest, QuoteSide, run},
    venues::Side,
};

use crate::harness::{fresh_account, fund, reader, shared};

fn amount_out(side: &QuoteSide) -> U256 {
    match side {
        QuoteSide::Out { amount_out, .. } => *amount_out,
        QuoteSide::Refused { reason } => panic!("refused: {reason}"),
    }
}

fn request(pool: Address, kind: QuoteKind, side: Side, amount: u64) -> QuoteRequest {
    QuoteRequest {
        rpc: shared().c138().http_url.clone(),
        pool,
        kind,
        side,
        amount: U256::from(amount),
        trader: Address::repeat_byte(0x42),
        block: None,
        asset: None,
    }
}

/// The PMM pool: native, revm and the node's own `querySellBase`/`querySellQuote` at the same block.
#[tokio::test]
async fn quote_pmm_agrees_with_the_on_chain_view() {
    let c = shared().c138();
    let pool = c.pmm_pools.iter().find(|p| p.name == "XAU/cUSDT").unwrap().address;
    let p = reader(&c.http_url);
    for (side, amount) in
        [(Side::SellBase, 3_000_000_000_000_000_000u64), (Side::SellQuote, 7_500_000_000)]
    {
        let report = run(request(pool, QuoteKind::DodoDsp, side, amount)).await.unwrap();
        assert!(report.agree, "{report:?}");
        let trader = Address::repeat_byte(0x42);
        let view = PmmPool::new(pool, &p);
        let on_chain = match side {
            Side::SellBase => {
                view.querySellBase(trader, U256::from(amount))
                    .block(report.block.into())
                    .call()
                    .await
                    .unwrap()
                    .receiveQuoteAmount
            }
            Side::SellQuote => {
                view.querySellQuote(trader, U256::from(amount))
                    .block(report.block.into())
                    .call()
                    .await
                    .unwrap()
                    .receiveBaseAmount
            }
        };
        assert_eq!(amount_out(&report.native), on_chain);
        assert_eq!(amount_out(&report.revm), on_chain);
    }
}

/// The V2 pair: the quoted output is exactly what the pair pays in a real swap, and one wei more is
/// refused by its K check.
#[tokio::test]
async fn quote_v2_agrees_with_a_real_swap() {
    let c = shared().c138();
    let pair = c.v2_pairs.iter().find(|p| p.name == "WETH/USDT").unwrap();
    let side = if pair.token0 == "USDT" { Side::SellBase } else { Side::SellQuote };
    let amount = 25_000_000_000u64; // 25,000 USDT
    let report = run(request(pair.address, QuoteKind::UniswapV2, side, amount)).await.unwrap();
    assert!(report.agree, "{report:?}");
    let out = amount_out(&report.native);

    let (key, p) = fresh_account(c).await;
    fund(c, "USDT", key.address(), U256::from(amount)).await;
    let usdt = TestToken::new(c.tokens["USDT"].address, &p);
    let (a0, a1) = if side == Side::SellBase { (U256::ZERO, out) } else { (out, U256::ZERO) };
    let too_much = if side == Side::SellBase {
        (U256::ZERO, out + U256::from(1))
    } else {
        (out + U256::from(1), U256::ZERO)
    };
    let pending =
        usdt.transfer(pair.address, U256::from(amount)).gas(200_000).send().await.unwrap();
    confirm(&p, pending, "transfer").await.unwrap();
    let pair_c = UniV2Pair::new(pair.address, &p);
    let err = pair_c
        .swap(too_much.0, too_much.1, key.address(), Default::default())
        .call()
        .await
        .unwrap_err();
    assert!(err.to_string().contains('K'), "one wei more must fail the K check: {err}");
    let pending =
        pair_c.swap(a0, a1, key.address(), Default::default()).gas(300_000).send().await.unwrap();
    confirm(&p, pending, "swap").await.unwrap();
    assert_eq!(
        TestToken::new(c.tokens["WETH"].address, &p).balanceOf(key.address()).call().await.unwrap(),
        out
    );
}

/// Vault and synthetic swap quotes agree with their contracts' code.
#[tokio::test]
async fn quote_vault_and_synth_agree() {
    let c = shared().c138();
    let vault = c.vaults[0].address;
    for side in [Side::SellBase, Side::SellQuote] {
        let report = run(request(vault, QuoteKind::Vault, side, 1_234_567_891)).await.unwrap();
        assert!(report.agree, "{report:?}");
    }
    let synth = c.synths[0].address;
    let mut req = request(synth, QuoteKind::Synth, Side::SellQuote, 10_000_000_000);
    req.asset = Some(asset_id("XAU"));
    let report = run(req).await.unwrap();
    assert!(report.agree, "{report:?}");
}

/// The binary prints JSON with both sides and the verdict.
#[test]
fn quote_command_prints_json() {
    let c = shared().c138();
    let pool = c.pmm_pools.iter().find(|p| p.name == "cUSDC/USDC").unwrap().address;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .args(["quote", "--rpc", &c.http_url, "--pool", &pool.to_string(), "--kind", "dodo-dsp"])
        .args(["--side", "sell-base", "--amount", "10000000000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["agree"], true, "{v}");
    // DOMAIN §1.10: raw 9,989,919,447 = net + LP fee (3 bps) at the scenario's starting state,
    // unless another test traded this pool first (none does).
    let native = &v["native"]["out"];
    let net: u64 = native["amount_out"].as_str().unwrap().parse().unwrap();
    let lp: u64 = native["lp_fee"].as_str().unwrap().parse().unwrap();
    assert_eq!(net + lp, 9_989_919_447);
}

/// A bad --rpc or an unknown pool is a clear error, not a panic.
#[test]
fn quote_command_reports_bad_input() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .args([
            "quote",
            "--rpc",
            "not a url",
            "--pool",
            "0x0000000000000000000000000000000000000001",
        ])
        .args(["--kind", "uniswap-v2", "--side", "sell-base", "--amount", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--rpc"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .args(["quote", "--rpc", "http://127.0.0.1:8545", "--pool", "0x01"])
        .args(["--kind", "uniswap-v2", "--side", "sell-base", "--amount", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--pool"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
