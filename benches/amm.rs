//! Native venue math against revm executing the same contracts, in one run: the Uniswap-V2-style
//! pair, the reserve vault, the synthetic swap and the bridge leg.
//!
//! For each venue the native quote (`Venue::quote` through the `Pool` enum, as the engine calls
//! it) is timed next to revm running the contract call that realises it (a non-committing
//! `swap` / `redeem` / `mint` / `burn` / `lock` from a funded trader, on a reused EVM over the
//! local state). Every result is asserted equal to the wei after its bench, so a fast wrong change
//! cannot pass.
//!
//! `cargo bench --bench amm`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, time::Duration};

use alloy::{
    primitives::{Address, B256, Bytes, TxKind, U256, address},
    sol_types::{SolCall, SolConstructor},
};
use cantilever::{
    contracts::{
        Bridge, ReserveVault as VaultContract, SynthSwap, TestToken, UniV2Factory, UniV2Pair,
    },
    evm::LocalEvm,
    venues::{
        Pool, QuoteCtx, Side, Venue,
        bridge::{BridgeLeg, LegEnd},
        synth::SynthMarket,
        v2::{V2Pair, optimal_two_pool_input},
        vault::ReserveVault,
    },
};
use criterion::{Criterion, criterion_group, criterion_main};
use revm::{
    Context, ExecuteEvm, MainBuilder, MainContext,
    context::{BlockEnv, TxEnv},
    primitives::hardfork::SpecId,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TRADER: Address = address!("0x00000000000000000000000000000000000a11ce");
const RELAYER: Address = address!("0x0000000000000000000000000000000000000e1a");

fn pow10(n: u64) -> U256 {
    U256::from(10u64).pow(U256::from(n))
}

/// The deployed fixture contracts with state set by real transactions.
struct Fixture {
    evm: LocalEvm,
    pair66: Address,
    pair18: Address,
    v66: V2Pair,
    v18: V2Pair,
    vault: Address,
    native_vault: ReserveVault,
    synth: Address,
    market: SynthMarket,
    src_bridge: Address,
    leg: BridgeLeg,
}

fn token(evm: &mut LocalEvm, symbol: &str, decimals: u8) -> Address {
    let args = TestToken::constructorCall {
        name_: symbol.into(),
        symbol_: symbol.into(),
        decimals_: decimals,
    };
    evm.deploy(&TestToken::BYTECODE, &args.abi_encode()).unwrap()
}

fn send<C: SolCall>(evm: &mut LocalEvm, from: Address, to: Address, call: &C) -> C::Return {
    evm.send(from, to, call).unwrap()
}

fn setup() -> Fixture {
    let mut evm = LocalEvm::default();
    let owner = evm.sender;
    let mint = |evm: &mut LocalEvm, t: Address, to: Address, amount: U256| {
        send(evm, owner, t, &TestToken::mintCall { to, amount });
    };

    // Two V2 pairs: 1M/1M of 6-decimal stables, and 1M of an 18-decimal token against 2M of a
    // 6-decimal one (the u128 and the U256 paths of the native math).
    let u = token(&mut evm, "USDC", 6);
    let v = token(&mut evm, "USDT", 6);
    let w = token(&mut evm, "WETH", 18);
    let factory = evm.deploy(&UniV2Factory::BYTECODE, &[]).unwrap();
    let pair = |evm: &mut LocalEvm, a: Address, b: Address, ra: U256, rb: U256| {
        let p = send(evm, owner, factory, &UniV2Factory::createPairCall { tokenA: a, tokenB: b });
        mint(evm, a, p, ra);
        mint(evm, b, p, rb);
        send(evm, owner, p, &UniV2Pair::mintCall { to: owner });
        p
    };
    let pair66 = pair(&mut evm, u, v, pow10(12), pow10(12));
    let pair18 = pair(&mut evm, w, u, pow10(24), U256::from(2) * pow10(12));
    let read = |evm: &LocalEvm, p: Address| {
        let t0 = evm.view(owner, p, &UniV2Pair::token0Call {}).unwrap();
        let t1 = evm.view(owner, p, &UniV2Pair::token1Call {}).unwrap();
        let r = evm.view(owner, p, &UniV2Pair::getReservesCall {}).unwrap();
        V2Pair::new(t0, t1, r._reserve0.to(), r._reserve1.to())
    };
    let (v66, v18) = (read(&evm, pair66), read(&evm, pair18));
    // The trader's input is already in each pair: the revm baseline is the pair's `swap` itself.
    mint(&mut evm, v66.token0, pair66, pow10(10));
    mint(
        &mut evm,
        v18.token0,
        pair18,
        pow10(10) * if v18.token0 == w { pow10(12) } else { U256::ONE },
    );

    // Reserve vault, 4 bps, 1M official backing 999,600 compliant; the trader holds compliant.
    let official = token(&mut evm, "USDT", 6);
    let compliant = token(&mut evm, "cUSDT", 6);
    let args =
        VaultContract::constructorCall { official_: official, compliant_: compliant, feeBps_: 4 };
    let vault = evm.deploy(&VaultContract::BYTECODE, &args.abi_encode()).unwrap();
    send(&mut evm, owner, compliant, &TestToken::setMinterCall { account: vault, allowed: true });
    mint(&mut evm, official, TRADER, U256::from(2) * pow10(12));
    send(&mut evm, TRADER, official, &TestToken::approveCall { spender: vault, amount: U256::MAX });
    send(
        &mut evm,
        TRADER,
        compliant,
        &TestToken::approveCall { spender: vault, amount: U256::MAX },
    );
    send(&mut evm, TRADER, vault, &VaultContract::mintCall { amount: pow10(12) });
    let native_vault = ReserveVault {
        compliant,
        official,
        official_reserve: pow10(12),
        compliant_supply: U256::from(999_600u64) * pow10(6),
        fee_bps: 4,
        paused: false,
    };

    // Synthetic swap: gold at $2,000 against a 6-decimal base, 1M collateral, the trader holds
    // 10 xAU bought by a real mint and is past its lock.
    let base = token(&mut evm, "DUSD", 6);
    let synth = evm
        .deploy(&SynthSwap::BYTECODE, &SynthSwap::constructorCall { baseToken_: base }.abi_encode())
        .unwrap();
    let gold = B256::right_padding_from(b"xAU");
    let price = U256::from(2_000_000_000u64) * pow10(18);
    send(
        &mut evm,
        owner,
        synth,
        &SynthSwap::addAssetCall { asset: gold, price_: price, debtCap_: pow10(15) },
    );
    mint(&mut evm, base, TRADER, U256::from(2_000_000u64) * pow10(6));
    send(&mut evm, TRADER, base, &TestToken::approveCall { spender: synth, amount: U256::MAX });
    send(
        &mut evm,
        TRADER,
        synth,
        &SynthSwap::mintCall { asset: gold, baseIn: U256::from(20_060_181_000u64) },
    );
    mint(&mut evm, base, synth, U256::from(980_000u64) * pow10(6));
    evm.set_block(2, evm.timestamp() + 61);
    let supply = evm.view(owner, synth, &SynthSwap::supplyCall { asset: gold }).unwrap();
    let market = SynthMarket {
        venue: synth,
        asset: gold,
        base_token: base,
        price,
        debt_cap: pow10(15),
        supply,
        other_debt: U256::ZERO,
        collateral: evm.view(owner, synth, &SynthSwap::collateralCall {}).unwrap(),
        paused: false,
        trader: TRADER,
        locked_until: evm.view(owner, synth, &SynthSwap::lockedUntilCall(TRADER)).unwrap(),
        trader_balance: supply,
    };

    // Bridge source side: 5 bps, 50k capacity; the destination reserve is data here.
    let bridged = token(&mut evm, "cUSDC", 6);
    let args = Bridge::constructorCall { relayer_: RELAYER, feeBps_: 5, delaySeconds_: 30 };
    let src_bridge = evm.deploy(&Bridge::BYTECODE, &args.abi_encode()).unwrap();
    send(
        &mut evm,
        owner,
        src_bridge,
        &Bridge::setCapacityCall {
            token: bridged,
            maxPerTransfer: U256::from(50_000u64) * pow10(6),
        },
    );
    mint(&mut evm, bridged, TRADER, pow10(12));
    send(
        &mut evm,
        TRADER,
        bridged,
        &TestToken::approveCall { spender: src_bridge, amount: U256::MAX },
    );
    let leg = BridgeLeg {
        src: LegEnd { chain_id: 138, bridge: src_bridge, token: bridged },
        dst: LegEnd { chain_id: 651_940, bridge: Address::with_last_byte(0xdd), token: bridged },
        fee_bps: 5,
        capacity: U256::from(50_000u64) * pow10(6),
        dst_reserve: pow10(12),
        delay_seconds: 30,
    };

    Fixture { evm, pair66, pair18, v66, v18, vault, native_vault, synth, market, src_bridge, leg }
}

/// Decodes a call's return data.
fn ret<C: SolCall>(out: Option<Bytes>) -> Option<C::Return> {
    out.and_then(|o| C::abi_decode_returns(&o).ok())
}

fn bench_all(c: &mut Criterion) {
    let fx = setup();
    let ctx = QuoteCtx { timestamp: fx.evm.timestamp() };
    // revm on one reused EVM over the fixture's state: runs calldata from `from` without
    // committing; `None` when it reverts.
    let block = BlockEnv {
        number: U256::from(2u64),
        timestamp: U256::from(fx.evm.timestamp()),
        basefee: 0,
        gas_limit: 1_000_000_000,
        ..Default::default()
    };
    let mut evm = Context::mainnet()
        .modify_cfg_chained(|c| {
            c.set_spec_and_mainnet_gas_params(SpecId::PRAGUE);
            c.disable_nonce_check = true;
        })
        .with_block(block)
        .with_ref_db(fx.evm.db())
        .build_mainnet();
    let mut run = |from: Address, to: Address, data: &Bytes| -> Option<Bytes> {
        let tx = TxEnv::builder()
            .caller(from)
            .kind(TxKind::Call(to))
            .data(data.clone())
            .gas_limit(1_000_000)
            .gas_price(0)
            .chain_id(None)
            .build()
            .unwrap();
        let out = evm.transact(tx).unwrap();
        out.result.is_success().then(|| out.result.into_output().unwrap_or_default())
    };

    // ---------------------------------------------------------------- Uniswap V2
    let in66 = pow10(10);
    let in18 = if fx.v18.reserve0 > 1u128 << 70 { pow10(22) } else { pow10(10) };
    let p66 = Pool::V2(fx.v66.clone());
    let p18 = Pool::V2(fx.v18.clone());
    c.bench_function("v2/native_quote/6-6 (u128 path)", |b| {
        b.iter(|| black_box(&p66).quote(Side::SellBase, black_box(in66), &ctx))
    });
    c.bench_function("v2/native_quote/18-6 (U256 path)", |b| {
        b.iter(|| black_box(&p18).quote(Side::SellBase, black_box(in18), &ctx))
    });
    c.bench_function("v2/native_amount_out/6-6", |b| {
        b.iter(|| black_box(&fx.v66).amount_out(Side::SellBase, black_box(in66)))
    });
    c.bench_function("v2/native_amount_in_for/6-6", |b| {
        b.iter(|| black_box(&fx.v66).amount_in_for(Side::SellQuote, black_box(pow10(10))))
    });
    let skewed = V2Pair { reserve1: fx.v66.reserve1 * 101 / 100, ..fx.v66.clone() };
    c.bench_function("v2/native_optimal_two_pool_input", |b| {
        b.iter(|| {
            optimal_two_pool_input(
                black_box(&fx.v66),
                Side::SellBase,
                black_box(&skewed),
                Side::SellQuote,
            )
        })
    });
    let out66 = p66.quote(Side::SellBase, in66, &ctx).unwrap().amount_out;
    let out18 = p18.quote(Side::SellBase, in18, &ctx).unwrap().amount_out;
    let swap = |out: U256| -> Bytes {
        UniV2Pair::swapCall {
            amount0Out: U256::ZERO,
            amount1Out: out,
            to: TRADER,
            data: Bytes::new(),
        }
        .abi_encode()
        .into()
    };
    let (swap66, swap18) = (swap(out66), swap(out18));
    c.bench_function("v2/revm_swap/6-6", |b| {
        b.iter(|| ret::<UniV2Pair::swapCall>(run(TRADER, fx.pair66, black_box(&swap66))))
    });
    c.bench_function("v2/revm_swap/18-6", |b| {
        b.iter(|| ret::<UniV2Pair::swapCall>(run(TRADER, fx.pair18, black_box(&swap18))))
    });
    // The native output is the most the pair pays for the input already sent: out pays, out + 1
    // fails K.
    for (pair, out) in [(fx.pair66, out66), (fx.pair18, out18)] {
        assert!(ret::<UniV2Pair::swapCall>(run(TRADER, pair, &swap(out))).is_some());
        assert!(ret::<UniV2Pair::swapCall>(run(TRADER, pair, &swap(out + U256::ONE))).is_none());
    }
    assert_eq!(out66, U256::from(9_871_580_343u64));

    // ---------------------------------------------------------------- reserve vault
    let pv = Pool::Vault(fx.native_vault.clone());
    let x = U256::from(12_345_678_901u64);
    c.bench_function("vault/native_quote/redeem", |b| {
        b.iter(|| black_box(&pv).quote(Side::SellBase, black_box(x), &ctx))
    });
    let redeem: Bytes = VaultContract::redeemCall { amount: x }.abi_encode().into();
    c.bench_function("vault/revm_redeem", |b| {
        b.iter(|| ret::<VaultContract::redeemCall>(run(TRADER, fx.vault, black_box(&redeem))))
    });
    let native = pv.quote(Side::SellBase, x, &ctx).unwrap().amount_out;
    assert_eq!(ret::<VaultContract::redeemCall>(run(TRADER, fx.vault, &redeem)), Some(native));
    let mint_data: Bytes = VaultContract::mintCall { amount: x }.abi_encode().into();
    let native = pv.quote(Side::SellQuote, x, &ctx).unwrap().amount_out;
    assert_eq!(ret::<VaultContract::mintCall>(run(TRADER, fx.vault, &mint_data)), Some(native));

    // ---------------------------------------------------------------- synthetic swap
    let ps = Pool::Synth(fx.market.clone());
    let base_in = U256::from(1_234_567_890u64);
    let synth_in = pow10(18);
    c.bench_function("synth/native_quote/mint", |b| {
        b.iter(|| black_box(&ps).quote(Side::SellQuote, black_box(base_in), &ctx))
    });
    c.bench_function("synth/native_quote/burn", |b| {
        b.iter(|| black_box(&ps).quote(Side::SellBase, black_box(synth_in), &ctx))
    });
    let mint_call: Bytes = fx.market.mint_call(base_in).abi_encode().into();
    let burn_call: Bytes = fx.market.burn_call(synth_in).abi_encode().into();
    c.bench_function("synth/revm_mint", |b| {
        b.iter(|| ret::<SynthSwap::mintCall>(run(TRADER, fx.synth, black_box(&mint_call))))
    });
    c.bench_function("synth/revm_burn", |b| {
        b.iter(|| ret::<SynthSwap::burnCall>(run(TRADER, fx.synth, black_box(&burn_call))))
    });
    let native = ps.quote(Side::SellQuote, base_in, &ctx).unwrap().amount_out;
    assert_eq!(ret::<SynthSwap::mintCall>(run(TRADER, fx.synth, &mint_call)), Some(native));
    let native = ps.quote(Side::SellBase, synth_in, &ctx).unwrap().amount_out;
    assert_eq!(ret::<SynthSwap::burnCall>(run(TRADER, fx.synth, &burn_call)), Some(native));

    // ---------------------------------------------------------------- bridge leg (source side)
    let pb = Pool::Bridge(fx.leg.clone());
    let amount = U256::from(12_345_678_901u64);
    c.bench_function("bridge/native_quote/lock", |b| {
        b.iter(|| black_box(&pb).quote(Side::SellBase, black_box(amount), &ctx))
    });
    let lock: Bytes = fx.leg.lock_call(amount, TRADER).abi_encode().into();
    c.bench_function("bridge/revm_lock", |b| {
        b.iter(|| ret::<Bridge::lockCall>(run(TRADER, fx.src_bridge, black_box(&lock))))
    });
    assert!(ret::<Bridge::lockCall>(run(TRADER, fx.src_bridge, &lock)).is_some());
    let quoted = ret::<Bridge::quoteLockCall>(run(
        TRADER,
        fx.src_bridge,
        &Bridge::quoteLockCall { amount }.abi_encode().into(),
    ));
    assert_eq!(
        quoted.map(|q| q.net),
        Some(pb.quote(Side::SellBase, amount, &ctx).unwrap().amount_out)
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_all
}
criterion_main!(benches);
