//! Venue benches: the cost of quoting our PMM pool by executing its code in revm (the reference the
//! native math of the venue layer is measured against). The result is asserted after the bench so a
//! fast wrong change cannot pass.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use alloy::{
    primitives::{Address, Bytes, TxKind, U256, address},
    sol_types::{SolCall, SolConstructor},
};
use cantilever::contracts::{FeeRateModel, PmmPool, TestToken};
use criterion::{Criterion, criterion_group, criterion_main};
use revm::{
    Context, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext,
    context::TxEnv,
    database::{CacheDB, EmptyDB},
    state::AccountInfo,
};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEPLOYER: Address = address!("0x00000000000000000000000000000000000d0d0d");

struct Chain {
    db: CacheDB<EmptyDB>,
    nonce: u64,
}

impl Chain {
    fn new() -> Self {
        let mut db = CacheDB::<EmptyDB>::default();
        db.insert_account_info(
            DEPLOYER,
            AccountInfo { balance: U256::from(10u64).pow(U256::from(24)), ..Default::default() },
        );
        Self { db, nonce: 0 }
    }

    fn send(&mut self, kind: TxKind, data: Vec<u8>) -> Option<Address> {
        let created = matches!(kind, TxKind::Create).then(|| DEPLOYER.create(self.nonce));
        let mut evm = Context::mainnet().with_db(&mut self.db).build_mainnet();
        let tx = TxEnv::builder()
            .caller(DEPLOYER)
            .nonce(self.nonce)
            .kind(kind)
            .data(Bytes::from(data))
            .gas_limit(10_000_000)
            .gas_price(0)
            .build()
            .unwrap();
        let res = evm.transact_commit(tx).unwrap();
        assert!(res.is_success(), "setup tx failed: {res:?}");
        self.nonce += 1;
        created
    }

    fn deploy(&mut self, code: &Bytes, args: Vec<u8>) -> Address {
        let mut data = code.to_vec();
        data.extend(args);
        self.send(TxKind::Create, data).unwrap()
    }
}

fn pmm_quote(c: &mut Criterion) {
    let mut chain = Chain::new();
    let e6 = U256::from(1_000_000u64);
    let token = |chain: &mut Chain, s: &str| {
        let args = TestToken::constructorCall { name_: s.into(), symbol_: s.into(), decimals_: 6 }
            .abi_encode();
        chain.deploy(&TestToken::BYTECODE, args)
    };
    let base = token(&mut chain, "cUSDT");
    let quote = token(&mut chain, "USDT");
    let model = chain.deploy(
        &FeeRateModel::BYTECODE,
        FeeRateModel::constructorCall { initialDefaultRate: U256::ZERO }.abi_encode(),
    );
    let one = U256::from(10u64).pow(U256::from(18));
    let pool = chain.deploy(
        &PmmPool::BYTECODE,
        PmmPool::constructorCall {
            maintainer: DEPLOYER,
            baseTokenAddress: base,
            quoteTokenAddress: quote,
            lpFeeRate: U256::ZERO,
            mtFeeRateModel: model,
            i: one,
            k: one / U256::from(10u64),
            isOpenTWAP: false,
        }
        .abi_encode(),
    );
    let liquidity = U256::from(1_000_000u64) * e6;
    for t in [base, quote] {
        chain.send(
            TxKind::Call(t),
            TestToken::mintCall { to: pool, amount: liquidity }.abi_encode(),
        );
    }
    chain.send(TxKind::Call(pool), PmmPool::buySharesCall { to: DEPLOYER }.abi_encode());

    let calldata: Bytes =
        PmmPool::querySellBaseCall { trader: DEPLOYER, payBaseAmount: U256::from(10_000u64) * e6 }
            .abi_encode()
            .into();
    let mut evm = Context::mainnet()
        .modify_cfg_chained(|cfg| cfg.disable_nonce_check = true)
        .with_ref_db(&chain.db)
        .build_mainnet();
    let mut quote_once = || -> U256 {
        let tx = TxEnv::builder()
            .caller(DEPLOYER)
            .kind(TxKind::Call(pool))
            .data(calldata.clone())
            .gas_limit(1_000_000)
            .gas_price(0)
            .build()
            .unwrap();
        let out = evm.transact(tx).unwrap();
        let ret = out.result.output().unwrap();
        PmmPool::querySellBaseCall::abi_decode_returns(ret).unwrap().receiveQuoteAmount
    };
    c.bench_function("pmm/querySellBase/revm_reused_evm", |b| b.iter(|| black_box(quote_once())));
    // DOMAIN §1.10: 6/6 pool, k = 0.1, 10,000 base → 9,989,919,447 raw quote.
    assert_eq!(quote_once(), U256::from(9_989_919_447u64));
}

criterion_group!(benches, pmm_quote);
criterion_main!(benches);
