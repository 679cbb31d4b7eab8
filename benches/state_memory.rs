//! Memory of the fork cache (issue 4): RSS of a `ForkCache` holding N synthetic PMM pools,
//! N = 1,000 and 10,000, each measured in a fresh child process (this binary re-executed with
//! `--child N FIXTURE`) so the numbers are clean. Target: ≤ 256 MB RSS at 10,000 (asserted).
//!
//! A synthetic pool is a distinct address with the real `PmmPool`'s code (shared: the cache keeps
//! code once per hash) and the real pool's storage slots as the route's warm-up cached them, plus
//! its balance slot in each of the pool's two tokens (cUSDT, USDT). The real pool, its slots and the
//! tokens' layouts come from a private devnet with the bench route of `benches/sim.rs` warmed, and
//! are handed to the children in a fixture file.
//!
//! Also: the simulate time of that route against a cache that additionally holds 10,000 synthetic
//! pools vs none (same outcome asserted; lookups must not degrade).
//!
//! `cargo bench --bench state_memory`. `cargo test --benches` does not start anvil: without
//! `--bench` the binary returns at once.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{hint::black_box, io::Write, path::Path, process::Command, time::Duration};

use alloy::primitives::{Address, Bytes, U256};
use cantilever::state::{AccountRead, CacheLimits, CacheStats, ForkCache, StateKey};
use serde::{Deserialize, Serialize};
use support::{Rig, histogram, mean_p50, synthetic_address, timed};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts measured in child processes.
const COUNTS: [usize; 2] = [1_000, 10_000];
/// The RSS target at 10,000 pools.
const LIMIT_BYTES: u64 = 256 << 20;

/// What a child needs to build synthetic pools (written by the parent).
#[derive(Serialize, Deserialize)]
struct Fixture {
    /// The real pool's runtime code.
    pool_code: Bytes,
    /// The real pool's cached slots `(slot, value)`.
    pool_slots: Vec<(U256, U256)>,
    /// The pool's two tokens: address, code, and the real pool's balance in it.
    tokens: Vec<(Address, Bytes, U256)>,
    /// Synthetic pools: address and its balance slot in each token (in `tokens` order).
    pools: Vec<(Address, Vec<U256>)>,
}

impl Fixture {
    fn from_rig(rig: &Rig, n: usize) -> Self {
        let cache = &rig.cache;
        let pool_code = cache.account(&rig.pool).unwrap().code.as_ref().unwrap().original_bytes();
        let pool_slots: Vec<(U256, U256)> = cache
            .keys()
            .into_iter()
            .filter_map(|k| match k {
                StateKey::Slot(a, s) if a == rig.pool => Some((s, cache.storage(&a, &s).unwrap())),
                _ => None,
            })
            .collect();
        assert!(!pool_slots.is_empty(), "the warm-up cached the pool's slots");
        let layouts: Vec<_> =
            [rig.cusdt, rig.usdt].iter().map(|t| *rig.sim.layouts().get(t).unwrap()).collect();
        let tokens = [rig.cusdt, rig.usdt]
            .iter()
            .zip(&layouts)
            .map(|(t, l)| {
                let code = cache.account(t).unwrap().code.as_ref().unwrap().original_bytes();
                let balance = cache.storage(t, &l.balance_slot(rig.pool)).unwrap();
                (*t, code, balance)
            })
            .collect();
        let pools = (0..n as u64)
            .map(|i| {
                let a = synthetic_address(i);
                (a, layouts.iter().map(|l| l.balance_slot(a)).collect())
            })
            .collect();
        Self { pool_code, pool_slots, tokens, pools }
    }

    /// Inserts the token accounts (when absent) and the first `n` synthetic pools into `cache`.
    fn insert(&self, cache: &mut ForkCache, n: usize) {
        for (t, code, _) in &self.tokens {
            if cache.account(t).is_none() {
                let read = AccountRead {
                    address: *t,
                    nonce: 1,
                    code: Some(code.clone()),
                    ..Default::default()
                };
                cache.insert_raw(&[read], &[]);
            }
        }
        let mut slots = Vec::with_capacity(self.pool_slots.len() + self.tokens.len());
        for (pool, balance_slots) in &self.pools[..n] {
            slots.clear();
            slots.extend(self.pool_slots.iter().map(|(s, v)| (*pool, *s, *v)));
            for ((t, _, balance), slot) in self.tokens.iter().zip(balance_slots) {
                slots.push((*t, *slot, *balance));
            }
            let read = AccountRead {
                address: *pool,
                nonce: 1,
                code: Some(self.pool_code.clone()),
                ..Default::default()
            };
            cache.insert_raw(&[read], &slots);
        }
    }
}

/// Resident set size and its peak, from `/proc/self/status` (bytes).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One measurement, as a child prints it and the parent reads it.
#[derive(Debug, Serialize, Deserialize)]
struct Measured {
    n: usize,
    rss_before: u64,
    rss_after: u64,
    peak_after: u64,
    accounts: usize,
    slots: usize,
    codes: usize,
    build: Duration,
}

/// The child: the cache with `n` synthetic pools, RSS before and after, printed as JSON.
fn child(n: usize, fixture: &Path) {
    let fixture: Fixture = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    let (rss_before, _) = rss();
    let start = std::time::Instant::now();
    let mut cache = ForkCache::new(CacheLimits::default());
    fixture.insert(&mut cache, n);
    let build = start.elapsed();
    let (rss_after, peak_after) = rss();
    let CacheStats { accounts, slots, codes, .. } = black_box(&cache).stats();
    let m = Measured { n, rss_before, rss_after, peak_after, accounts, slots, codes, build };
    println!("{}", serde_json::to_string(&m).unwrap());
}

fn measure(n: usize, fixture: &Path) -> Measured {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--child")
        .arg(n.to_string())
        .arg(fixture)
        .output()
        .unwrap();
    assert!(out.status.success(), "child {n}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

const MB: f64 = (1u64 << 20) as f64;

/// The route's simulate time on the plain cache and on the same cache plus 10,000 synthetic pools,
/// interleaved; the outcomes must be equal.
fn lookups(rig: &Rig, fixture: &Fixture, iterations: usize) {
    let plain = support::copy_cache(&rig.cache);
    let mut big = support::copy_cache(&rig.cache);
    fixture.insert(&mut big, fixture.pools.len());
    assert_eq!(big.stats().accounts, plain.stats().accounts + fixture.pools.len());
    let mut bs_plain = rig.sim.block(&plain, rig.head.hash, &rig.next).unwrap();
    let mut bs_big = rig.sim.block(&big, rig.head.hash, &rig.next).unwrap();
    let (mut h_plain, mut h_big) = (histogram(), histogram());
    for _ in 0..iterations / 10 + 1 {
        black_box(Rig::prove(&mut bs_plain, &rig.sim_tx, &rig.plan));
        black_box(Rig::prove(&mut bs_big, &rig.sim_tx, &rig.plan));
    }
    let mut last = None;
    for _ in 0..iterations {
        let a =
            timed(&mut h_plain, || Rig::prove(&mut bs_plain, black_box(&rig.sim_tx), &rig.plan));
        let b = timed(&mut h_big, || Rig::prove(&mut bs_big, black_box(&rig.sim_tx), &rig.plan));
        last = Some((a, b));
    }
    let (a, b) = last.unwrap();
    assert_eq!(a, b, "the synthetic pools change nothing the route reads");
    assert_eq!(a.1, rig.profit);
    let (pm, p50) = mean_p50(&h_plain);
    let (bm, b50) = mean_p50(&h_big);
    let big_stats = big.stats();
    println!(
        "simulate + containment of the route ({iterations} iterations, interleaved):\n  \
         cache of {} accounts / {} slots:   mean {pm:>9.2?}  p50 {p50:>9.2?}\n  \
         plus {} synthetic pools ({} accounts / {} slots): mean {bm:>9.2?}  p50 {b50:>9.2?}\n  \
         with/without = {:.2}× (mean), {:.2}× (p50)",
        plain.stats().accounts,
        plain.stats().slots,
        fixture.pools.len(),
        big_stats.accounts,
        big_stats.slots,
        bm.as_secs_f64() / pm.as_secs_f64(),
        b50.as_secs_f64() / p50.as_secs_f64(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(args[i + 1].parse().unwrap(), Path::new(&args[i + 2]));
        return;
    }
    if !support::bench_requested() {
        eprintln!(
            "state_memory: runs under `cargo bench --bench state_memory`; nothing to do here"
        );
        return;
    }
    let quick = support::quick_mode();
    let rig = Rig::start();
    let max = COUNTS[COUNTS.len() - 1];
    let fixture = Fixture::from_rig(&rig, max);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&serde_json::to_vec(&fixture).unwrap()).unwrap();
    file.flush().unwrap();

    println!(
        "synthetic PMM pool: {} code bytes (shared), {} pool slots + {} token balance slots",
        fixture.pool_code.len(),
        fixture.pool_slots.len(),
        fixture.tokens.len()
    );
    let mut previous: Option<(usize, u64)> = None;
    for n in COUNTS {
        let m = measure(n, file.path());
        assert_eq!(m.accounts, n + fixture.tokens.len());
        assert_eq!(m.slots, n * (fixture.pool_slots.len() + fixture.tokens.len()));
        let mut codes: Vec<&Bytes> = fixture.tokens.iter().map(|t| &t.1).collect();
        codes.push(&fixture.pool_code);
        codes.sort();
        codes.dedup();
        assert_eq!(m.codes, codes.len(), "every code stored once");
        let grown = m.rss_after.saturating_sub(m.rss_before);
        println!(
            "N = {n:>6}: RSS before {:.1} MB, after {:.1} MB (peak {:.1} MB), cache {:.1} MB = \
             {:.0} bytes per pool; {} accounts, {} slots, {} codes; built in {:.1?}",
            m.rss_before as f64 / MB,
            m.rss_after as f64 / MB,
            m.peak_after as f64 / MB,
            grown as f64 / MB,
            grown as f64 / n as f64,
            m.accounts,
            m.slots,
            m.codes,
            m.build,
        );
        if let Some((n0, grown0)) = previous {
            println!(
                "  marginal {n0} → {n}: {:.0} bytes per pool",
                grown.saturating_sub(grown0) as f64 / (n - n0) as f64
            );
        }
        previous = Some((n, grown));
        if n == 10_000 {
            assert!(
                m.rss_after <= LIMIT_BYTES,
                "RSS {:.1} MB at 10,000 pools exceeds 256 MB",
                m.rss_after as f64 / MB
            );
            println!("  target ≤ 256 MB RSS at 10,000 pools: met");
        }
    }
    lookups(&rig, &fixture, if quick { 20 } else { 3_000 });
}
