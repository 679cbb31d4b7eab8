//! The simulator bench (issue 4): a profitable two-hop flash route (ERC-3156 lender → PMM
//! cUSDT/USDT `sellQuote` → vault redeem cUSDT → USDT) proved by cantilever, against the same call
//! on bare revm over a warm in-memory database, and against the same call as `eth_call` to the
//! devnet's anvil on loopback, in one run.
//!
//! - `cantilever`: `BlockSim::simulate` + `check_containment` on a `BlockSim` built once (the
//!   per-candidate cost of the engine); `cantilever_with_block_setup` builds the `BlockSim` each
//!   iteration.
//! - `bare_revm`: revm 43 over `CacheDB<EmptyDB>` filled with exactly the accounts, code and slots of
//!   the fork cache, EVM built once, `transact` of the same `TxEnv`, no inspector, no measurement.
//! - `eth_call`: the same transaction as `eth_call` to anvil on 127.0.0.1 at the head block.
//!
//! After criterion, a summary from a fixed number of interleaved iterations of each (hdrhistogram
//! mean and p50) prints `cantilever/bare_revm` (target ≤ 1.2×) and `eth_call/cantilever` (expect
//! ≥ 8×), and asserts that the three paths agree: success, gas used (cantilever = bare revm), and
//! `eth_call`'s return data = revm's output.
//!
//! `cargo bench --bench sim` (`-- --test` runs each bench once). `cargo test --benches` does not
//! start anvil: without `--bench` the binary returns at once.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{future::IntoFuture, hint::black_box, time::Duration};

use alloy::{
    eips::BlockId,
    primitives::{Address, Bytes, I256},
    providers::Provider,
    rpc::types::TransactionRequest,
    sol_types::SolCall,
};
use cantilever::{contracts::TestToken, sim::NextBlock};
use criterion::Criterion;
use revm::{
    Context, ExecuteEvm, InspectEvm, Inspector, MainBuilder, MainContext,
    context::{BlockEnv, TxEnv, result::ExecutionResult},
    database::{CacheDB, EmptyDB},
    handler::{MainnetContext, MainnetEvm},
    interpreter::Interpreter,
    primitives::{U256, hardfork::SpecId},
};
use support::{Rig, histogram, mean_p50, timed};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BareEvm = MainnetEvm<MainnetContext<CacheDB<EmptyDB>>>;

/// The block environment cantilever's simulator uses for `next`.
fn block_env(next: &NextBlock) -> BlockEnv {
    BlockEnv {
        number: U256::from(next.number),
        timestamp: U256::from(next.timestamp),
        basefee: next.base_fee,
        beneficiary: next.coinbase,
        gas_limit: next.gas_limit,
        prevrandao: Some(next.prevrandao),
        difficulty: U256::ZERO,
        ..Default::default()
    }
}

/// Counts the opcodes each contract executes (diagnostics: where the EVM's time goes).
#[derive(Default)]
struct StepCount {
    by_contract: Vec<(Address, u64)>,
}

impl<CTX> Inspector<CTX> for StepCount {
    fn step(&mut self, interp: &mut Interpreter, _: &mut CTX) {
        let a = interp.input.target_address;
        match self.by_contract.iter_mut().find(|(c, _)| *c == a) {
            Some((_, n)) => *n += 1,
            None => self.by_contract.push((a, 1)),
        }
    }
}

/// The fork cache's contents as a `CacheDB<EmptyDB>`.
fn bare_db(rig: &Rig) -> CacheDB<EmptyDB> {
    let mut db = CacheDB::new(EmptyDB::default());
    let (accounts, slots) = support::contents(&rig.cache);
    for a in accounts {
        db.insert_account_info(a.address, rig.cache.account(&a.address).unwrap().clone());
    }
    for (a, s, v) in slots {
        db.insert_account_storage(a, s, v).unwrap();
    }
    db
}

fn bare_ctx(rig: &Rig) -> MainnetContext<CacheDB<EmptyDB>> {
    Context::mainnet()
        .modify_cfg_chained(|c| {
            c.set_spec_and_mainnet_gas_params(SpecId::PRAGUE);
            c.chain_id = support::CHAIN_ID;
        })
        .with_block(block_env(&rig.next))
        .with_db(bare_db(rig))
}

/// revm over a `CacheDB<EmptyDB>` holding exactly what the fork cache holds.
fn bare_evm(rig: &Rig) -> BareEvm {
    bare_ctx(rig).build_mainnet()
}

/// Opcodes executed by the route, per contract (named from the manifest).
fn opcode_counts(rig: &Rig) -> (u64, Vec<(String, u64)>) {
    let mut evm = bare_ctx(rig).build_mainnet_with_inspector(StepCount::default());
    let out = evm.inspect_tx(rig.tx().clone()).unwrap();
    assert!(out.result.is_success());
    let chain = &rig.chain;
    let name = |a: Address| -> String {
        if a == chain.executor {
            return "executor".into();
        }
        if let Some((s, _)) = chain.tokens.iter().find(|(_, t)| t.address == a) {
            return format!("token {s}");
        }
        if let Some(p) = chain.pmm_pools.iter().find(|p| p.address == a) {
            return format!("pool {}", p.name);
        }
        if let Some(v) = chain.vaults.iter().find(|v| v.address == a) {
            return format!("vault {}", v.official);
        }
        if chain.lenders.iter().any(|l| l.address == a) {
            return "lender".into();
        }
        format!("other {a}")
    };
    let total = evm.inspector.by_contract.iter().map(|(_, n)| n).sum();
    let mut named: Vec<(String, u64)> =
        evm.inspector.by_contract.iter().map(|(a, n)| (name(*a), *n)).collect();
    named.sort_by_key(|b| std::cmp::Reverse(b.1));
    (total, named)
}

/// Output and gas of one bare execution (writes discarded).
fn bare(evm: &mut BareEvm, tx: &TxEnv) -> (Bytes, u64) {
    let out = evm.transact(tx.clone()).unwrap();
    let gas = out.result.tx_gas_used();
    match out.result {
        ExecutionResult::Success { output, .. } => (output.into_data(), gas),
        other => panic!("bare revm: the route did not succeed: {other:?}"),
    }
}

/// The route as an `eth_call` request.
fn call_request(tx: &TxEnv) -> TransactionRequest {
    let to = match tx.kind {
        alloy::primitives::TxKind::Call(to) => to,
        alloy::primitives::TxKind::Create => panic!("the route is a call"),
    };
    TransactionRequest::default()
        .from(tx.caller)
        .to(to)
        .input(tx.data.clone().into())
        .gas_limit(tx.gas_limit)
        .max_fee_per_gas(tx.gas_price)
        .max_priority_fee_per_gas(tx.gas_priority_fee.unwrap_or_default())
        .nonce(tx.nonce)
}

/// The cheapest useful `eth_call`: `USDT.balanceOf(executor)` (the RPC round trip's floor).
fn floor_request(rig: &Rig) -> TransactionRequest {
    let data = TestToken::balanceOfCall(rig.chain.executor).abi_encode();
    TransactionRequest::default().to(rig.usdt).input(data.into())
}

fn eth_call(rig: &Rig, req: &TransactionRequest) -> Bytes {
    rig.rt
        .block_on(rig.node.call(req.clone()).block(BlockId::number(rig.head.number)).into_future())
        .unwrap()
}

fn benches(c: &mut Criterion, rig: &Rig) {
    let (tx, plan) = (rig.tx(), &rig.plan);
    let mut bs = rig.sim.block(&rig.cache, rig.head.hash, &rig.next).unwrap();
    let mut evm = bare_evm(rig);
    let req = call_request(tx);

    let mut g = c.benchmark_group("two_hop_route");
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    g.bench_function("cantilever", |b| {
        b.iter(|| Rig::prove(&mut bs, black_box(&rig.sim_tx), plan))
    });
    g.bench_function("cantilever_with_block_setup", |b| {
        b.iter(|| {
            let mut bs = rig.sim.block(&rig.cache, rig.head.hash, &rig.next).unwrap();
            Rig::prove(&mut bs, black_box(&rig.sim_tx), plan)
        })
    });
    g.bench_function("bare_revm", |b| b.iter(|| bare(&mut evm, black_box(tx))));
    g.bench_function("eth_call", |b| b.iter(|| eth_call(rig, black_box(&req))));
    g.finish();
}

/// Fixed iterations of each path (cantilever and bare revm interleaved, so CPU contention from
/// other work hits both alike), the ratios, and the agreement of the three paths.
fn summary(rig: &Rig) {
    let quick = support::quick_mode();
    let (n_local, n_rpc) = if quick { (20, 5) } else { (5_000, 500) };
    let tx = rig.tx();
    let mut bs = rig.sim.block(&rig.cache, rig.head.hash, &rig.next).unwrap();
    let mut evm = bare_evm(rig);
    let req = call_request(tx);
    let (mut h_cl, mut h_setup, mut h_bare, mut h_rpc) =
        (histogram(), histogram(), histogram(), histogram());
    // Warm-up of every path.
    for _ in 0..n_local / 10 + 1 {
        black_box(Rig::prove(&mut bs, &rig.sim_tx, &rig.plan));
        black_box(bare(&mut evm, tx));
    }
    let mut last = None;
    for _ in 0..n_local {
        let cl = timed(&mut h_cl, || Rig::prove(&mut bs, black_box(&rig.sim_tx), &rig.plan));
        let br = timed(&mut h_bare, || bare(&mut evm, black_box(tx)));
        timed(&mut h_setup, || {
            let mut bs = rig.sim.block(&rig.cache, rig.head.hash, &rig.next).unwrap();
            black_box(Rig::prove(&mut bs, &rig.sim_tx, &rig.plan))
        });
        last = Some((cl, br));
    }
    let floor = floor_request(rig);
    let mut h_floor = histogram();
    let mut rpc_out = None;
    for _ in 0..n_rpc {
        rpc_out = Some(timed(&mut h_rpc, || eth_call(rig, black_box(&req))));
        timed(&mut h_floor, || eth_call(rig, black_box(&floor)));
    }
    let ((outcome, profit), (output, bare_gas)) = last.unwrap();
    let rpc_out = rpc_out.unwrap();

    // The three paths agree.
    assert!(outcome.success(), "cantilever: {:?}", outcome.status);
    assert_eq!(outcome.gas_used, bare_gas, "gas used: cantilever vs bare revm");
    assert_eq!(rpc_out, output, "eth_call return data vs revm output");
    let returned = U256::from_be_slice(&output);
    assert_eq!(I256::from_raw(returned), profit, "execute() returns the measured profit");
    assert_eq!(profit, rig.profit);

    let (cl, cl50) = mean_p50(&h_cl);
    let (st, st50) = mean_p50(&h_setup);
    let (br, br50) = mean_p50(&h_bare);
    let (rpc, rpc50) = mean_p50(&h_rpc);
    let (fl, fl50) = mean_p50(&h_floor);
    let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!();
    println!(
        "two_hop_route summary: flash {} USDT, profit {} raw USDT, gas {}; {n_local} iterations \
         (eth_call {n_rpc}), interleaved",
        rig.amount / U256::from(support::E6),
        profit,
        outcome.gas_used
    );
    for (name, mean, p50) in [
        ("cantilever", cl, cl50),
        ("cantilever_with_block_setup", st, st50),
        ("bare_revm", br, br50),
        ("eth_call", rpc, rpc50),
        ("eth_call floor (balanceOf)", fl, fl50),
    ] {
        println!("  {name:<28} mean {mean:>10.2?}  p50 {p50:>10.2?}");
    }
    let (ratio, ratio50) = (r(cl, br), r(cl50, br50));
    println!(
        "  cantilever/bare_revm = {ratio:.2}× (mean), {ratio50:.2}× (p50)   target ≤ 1.2: {}",
        if ratio50 <= 1.2 { "met" } else { "MISSED" }
    );
    let (speed, speed50) = (r(rpc, cl), r(rpc50, cl50));
    println!(
        "  eth_call/cantilever = {speed:.1}× (mean), {speed50:.1}× (p50)   expect ≥ 8: {}",
        if speed50 >= 8.0 { "met" } else { "MISSED" }
    );
    println!(
        "  agreement: success, gas {bare_gas} (cantilever = bare revm), eth_call output = revm"
    );
    // Where the time goes.
    let (ops, by) = opcode_counts(rig);
    println!(
        "  the route executes {ops} opcodes ({:.2} ns each on bare revm, p50): {}",
        br50.as_nanos() as f64 / ops as f64,
        by.iter().map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", ")
    );
    let exec = rpc50.saturating_sub(fl50);
    println!(
        "  eth_call p50 {rpc50:.2?} = round-trip floor {fl50:.2?} + anvil execution ≈ {exec:.2?}; \
         the ratio's ceiling here is ≈ 1 + floor/execution = {:.1}×",
        1.0 + fl50.as_secs_f64() / cl50.as_secs_f64()
    );
}

fn main() {
    if !support::bench_requested() {
        eprintln!("sim: benches run under `cargo bench --bench sim`; nothing to do here");
        return;
    }
    let rig = Rig::start();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &rig);
    c.final_summary();
    // `-- --profile-time N <filter>` is for perf: only the filtered bench runs.
    if !std::env::args().any(|a| a == "--profile-time") {
        summary(&rig);
    }
}
