//! Poisoned tokens against the live engine (RELIABILITY.md test 13, the "salmonella" case): the
//! code of cUSDT, a token the engine trades in cUSDT/USDT and through the vault, is replaced on a
//! private devnet by a hostile twin with the same storage (`anvil_setCode`, balances kept). A dump
//! then opens what the native venue math sees as a profitable depeg; revm runs the real token and
//! proves it is not; the engine refuses with the reason, sends nothing, and the executor keeps
//! every token it had.

use std::{sync::atomic::Ordering, time::Duration};

use alloy::{
    primitives::{Address, B256, Bytes, U256, keccak256},
    providers::{Provider, ext::AnvilApi},
    sol,
    sol_types::SolValue,
};
use cantilever::{contracts::TestToken, devnet::deploy::confirm, ledger::Record};

use crate::engine::{Bot, devnet_bot, e6, records};

sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    FeeOnTransferToken,
    "fixtures/artifacts/FeeOnTransferToken.json"
);
sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    SellBlockedToken,
    "fixtures/artifacts/SellBlockedToken.json"
);

#[derive(Clone, Copy, Debug)]
enum Hostile {
    FeeOnTransfer,
    SellBlocked,
}

/// `isMinter[who]` of the TestToken layout (mapping at slot 6).
fn minter_slot(who: Address) -> U256 {
    U256::from_be_bytes(keccak256((who, U256::from(6u64)).abi_encode()).0)
}

/// Deploys the hostile twin (6 decimals, like cUSDT) and puts its runtime code at `token`.
async fn poison(bot: &Bot, token: Address, kind: Hostile) {
    let p = bot.deployer.clone();
    let pending = match kind {
        Hostile::FeeOnTransfer => {
            FeeOnTransferToken::deploy_builder(p.clone(), "x".into(), "x".into(), 6).send().await
        }
        Hostile::SellBlocked => {
            SellBlockedToken::deploy_builder(p.clone(), "x".into(), "x".into(), 6).send().await
        }
    }
    .expect("deploy sent");
    let twin = confirm(&p, pending, "deploy").await.expect("deployed").contract_address.unwrap();
    let code: Bytes = bot.node.get_code_at(twin).await.expect("code");
    assert!(!code.is_empty());
    bot.node.anvil_set_code(token, code).await.expect("setCode");
}

async fn balances(bot: &Bot, who: Address, tokens: &[Address]) -> Vec<U256> {
    let mut out = Vec::new();
    for t in tokens {
        out.push(TestToken::new(*t, &bot.node).balanceOf(who).call().await.expect("balance"));
    }
    out
}

async fn hostile_token_is_refused_by_simulation(kind: Hostile) {
    let bot = devnet_bot("0.05").await;
    let (usdt, cusdt) = (bot.chain.tokens["USDT"].address, bot.chain.tokens["cUSDT"].address);
    let pool = bot.pool("cUSDT/USDT");
    poison(&bot, cusdt, kind).await;
    if let Hostile::SellBlocked = kind {
        // Pools can pay it out (buys work); nobody else can send it (sells revert).
        for p in bot.chain.pmm_pools.iter().map(|p| p.address) {
            bot.node
                .anvil_set_storage_at(cusdt, minter_slot(p), B256::from(U256::from(1u64)))
                .await
                .expect("setStorageAt");
        }
    }
    let exec = bot.chain.executor;
    let before = balances(&bot, exec, &[usdt, cusdt]).await;
    let eth_before = bot.node.get_balance(bot.keys[2].address()).await.expect("eth");

    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    let dumped = bot.dump(pool, true, e6(200_000)).await;
    assert!(run.wait_settled(dumped, Duration::from_secs(30)), "engine processed the dump");
    let recs = records(&ledger, &bot.db());
    assert_eq!(run.stats.submitted.load(Ordering::Relaxed), 0, "nothing sent: {recs:#?}");
    assert!(!recs.iter().any(|r| matches!(r, Record::Submission(_))), "no submission row");

    // The native math saw a profitable depeg through cUSDT ...
    let opps: Vec<_> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Opportunity(o) if o.expected_profit > alloy::primitives::I256::ZERO => {
                Some(o.clone())
            }
            _ => None,
        })
        .collect();
    assert!(!opps.is_empty(), "the native math saw profit: {recs:#?}");
    // ... revm, running the real token, proved otherwise ...
    let proofs: Vec<_> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Simulation(s) if opps.iter().any(|o| o.id == s.opportunity_id) => Some(s),
            _ => None,
        })
        .collect();
    assert!(!proofs.is_empty(), "each candidate proven in revm: {recs:#?}");
    assert!(
        proofs.iter().all(|s| !s.success || s.profit <= alloy::primitives::I256::ZERO),
        "no proof shows a profit: {proofs:#?}"
    );
    // ... and the engine refused with a named reason.
    let refusals: Vec<_> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Decision(d) if !d.approved => {
                Some((d.refusal_kind.clone().unwrap_or_default(), d.reason.clone()))
            }
            Record::Decision(d) => panic!("approved a hostile route: {d:?}"),
            _ => None,
        })
        .collect();
    assert!(!refusals.is_empty(), "refused: {recs:#?}");
    // The revert is named: the honeypot's own message, or the executor's short hop (a fee on
    // transfer leaves less than the quote at the next hop: a `BALANCE` or `HopMinOut` revert).
    let named: &[&str] = match kind {
        Hostile::FeeOnTransfer => &["HopMinOut", "BALANCE"],
        Hostile::SellBlocked => &["SELL_BLOCKED"],
    };
    for (k, reason) in &refusals {
        assert_eq!(k, "containment:reverted", "{refusals:?}");
        let reason = reason.as_deref().unwrap_or_default();
        assert!(named.iter().any(|n| reason.contains(n)), "{kind:?}: {reason}");
    }

    // The executor never ends with a loss: its tokens and the operator's gas are untouched.
    assert_eq!(balances(&bot, exec, &[usdt, cusdt]).await, before);
    assert_eq!(bot.node.get_balance(bot.keys[2].address()).await.expect("eth"), eth_before);
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_on_transfer_token_is_refused_by_simulation() {
    hostile_token_is_refused_by_simulation(Hostile::FeeOnTransfer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sell_blocked_token_is_refused_by_simulation() {
    hostile_token_is_refused_by_simulation(Hostile::SellBlocked).await;
}
