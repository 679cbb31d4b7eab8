//! Soak: the live engine under steady flow for a while, with RSS, open files, tokio tasks and the
//! cache bounded. CI runs 20 s; the one-hour run is on demand:
//! `CANTILEVER_SOAK_SECS=3600 cargo test --release --test it soak:: -- --nocapture`.
//!
//! RSS is judged by its slope, not by two points: after a warm-up (the first quarter of the run,
//! at least [`WARM_UP_SECS`]) a least-squares line is fitted to RSS against blocks, and its slope
//! must stay under [`MAX_RSS_SLOPE_KB_PER_BLOCK`]. The test binary uses the bot's allocator
//! (mimalloc, as `main.rs`), so the numbers are the bot's.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::engine::{devnet_bot, e6, records};

/// Seconds of warm-up excluded from the slope (caches, connection pools and allocator pages fill
/// up in the first seconds).
const WARM_UP_SECS: f64 = 5.0;

/// The bound on RSS growth after warm-up, in kB per block: 1 kB/block is under 4 MB for an hour
/// of 1 s blocks. A leak of one small allocation per candidate or per head shows up well above.
const MAX_RSS_SLOPE_KB_PER_BLOCK: f64 = 1.0;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// One sample of the run.
#[derive(Clone, Copy, Debug)]
struct Sample {
    secs: f64,
    block: u64,
    rss_kb: u64,
    fds: usize,
    tasks: usize,
}

/// Least-squares slope of `y` against `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
    if den == 0.0 { 0.0 } else { num / den }
}

#[test]
fn slope_fits_a_line() {
    let pts: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 3.0 * f64::from(i) + 7.0)).collect();
    assert!((slope(&pts) - 3.0).abs() < 1e-12);
    assert_eq!(slope(&[(1.0, 5.0), (1.0, 9.0)]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_stays_bounded_under_steady_flow() {
    let secs: u64 =
        std::env::var("CANTILEVER_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let bot = devnet_bot("0.05").await;
    let ledger = bot.ledger();
    let run = bot.start(&ledger).await;
    let pools = [bot.pool("cUSDT/USDT"), bot.pool("cUSDC/USDC"), bot.pool("cUSDT/cUSDC")];
    let mut rng = fastrand::Rng::with_seed(0x50a4);
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut blocks = 0u64;
    let period = Duration::from_millis((secs * 1000 / 40).clamp(250, 30_000));
    let mut next_sample = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(secs) {
        let pool = pools[rng.usize(..pools.len())];
        let n = bot.dump(pool, rng.bool(), e6(rng.u64(1_000..40_000))).await;
        blocks = n;
        assert!(run.wait_settled(n, Duration::from_secs(30)), "engine keeps up at block {n}");
        if start.elapsed() >= next_sample {
            let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
            samples.push(Sample {
                secs: start.elapsed().as_secs_f64(),
                block: n,
                rss_kb: rss_kb(),
                fds: open_files(),
                tasks,
            });
            next_sample += period;
        }
    }
    let warm = WARM_UP_SECS.max(secs as f64 / 4.0);
    let steady: Vec<Sample> = samples.iter().copied().filter(|s| s.secs >= warm).collect();
    assert!(steady.len() >= 5, "enough samples after warm-up: {samples:?}");
    let per_block =
        slope(&steady.iter().map(|s| (s.block as f64, s.rss_kb as f64)).collect::<Vec<_>>());
    let max_rss = samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    eprintln!(
        "soak {secs} s, up to block {blocks}, {} submissions; RSS slope after {warm:.0} s: \
         {per_block:.3} kB/block (bound {MAX_RSS_SLOPE_KB_PER_BLOCK})",
        run.stats.submitted.load(Ordering::Relaxed)
    );
    for s in &samples {
        eprintln!(
            "  t={:>6.1}s block={:>6} rss={:>7.1} MB fds={:>4} tasks={:>4}",
            s.secs,
            s.block,
            s.rss_kb as f64 / 1024.0,
            s.fds,
            s.tasks
        );
    }
    let (first, last) = (steady[0], steady[steady.len() - 1]);
    assert!(
        per_block <= MAX_RSS_SLOPE_KB_PER_BLOCK,
        "RSS grows {per_block:.3} kB/block after warm-up (bound {MAX_RSS_SLOPE_KB_PER_BLOCK})"
    );
    assert!(max_rss < 512 * 1024, "RSS stayed under 512 MB (max {max_rss} kB)");
    assert!(last.fds <= first.fds + 16, "open files grew from {} to {}", first.fds, last.fds);
    assert!(
        last.tasks <= first.tasks + 16,
        "tokio tasks grew from {} to {}",
        first.tasks,
        last.tasks
    );
    assert!(run.stats.fresh.load(Ordering::Relaxed), "the cache is fresh at the end");
    let recs = records(&ledger, &bot.db());
    assert!(!recs.is_empty(), "the ledger recorded the run");
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}
