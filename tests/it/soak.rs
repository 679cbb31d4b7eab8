//! Soak: the live engine under steady flow for a while, with RSS, open files, tokio tasks and the
//! cache bounded. CI runs 20 s; the one-hour run is on demand:
//! `CANTILEVER_SOAK_SECS=3600 cargo test --release --test it soak:: -- --nocapture`.
//! Under `--features heap-profile` the run is profiled by dhat after its warm-up and
//! `dhat-heap.json` (in the working directory) lists, by call site, what the steady state
//! allocated and still holds: `CANTILEVER_SOAK_SECS=120 cargo test --features heap-profile --test
//! it soak:: -- --nocapture`.
//!
//! Memory is judged by slopes, not by two points: after a warm-up (the first quarter of the run,
//! at least [`WARM_UP_SECS`]) least-squares lines are fitted to the live Rust heap and to RSS
//! against blocks, and their slopes must stay under [`MAX_HEAP_SLOPE_KB_PER_BLOCK`] and
//! [`MAX_RSS_SLOPE_KB_PER_BLOCK`]. The test binary uses the bot's allocator (mimalloc, as
//! `main.rs`) wrapped in a live-bytes counter, which tells real growth from allocator warm-up.

#[cfg(not(feature = "heap-profile"))]
use std::{
    alloc::{GlobalAlloc, Layout},
    sync::atomic::AtomicIsize,
};
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::engine::{devnet_bot, e6, records};

/// Seconds of warm-up excluded from the slope (caches, connection pools and allocator pages fill
/// up in the first seconds).
const WARM_UP_SECS: f64 = 5.0;

/// The bound on the live Rust heap's growth after warm-up, in kB per block (least-squares slope
/// of the counting allocator's live bytes against blocks); 4 kB/block catches a leak of a few
/// hundred bytes per candidate. The heap does rise for the first few thousand blocks and then
/// stays flat: alloy keeps each subscription channel's first receiver unread, so the newHeads
/// and pending-transaction channels hold their last `capacity` notifications (64 + 2,048 by
/// default, about 2 MB on the devnet's flow). A 120 s run under `--features heap-profile` showed
/// the heap flat at 1.7 MB from block ~4,200 to 5,300, 1.5 MB of it those notifications.
const MAX_HEAP_SLOPE_KB_PER_BLOCK: f64 = 4.0;

/// The bound on RSS growth after warm-up, in kB per block. RSS moves in allocator segments
/// (mimalloc maps and purges 4 MB at a time), so its slope over a short run is noisy: this bound
/// only catches gross growth (8 kB/block is under 30 MB for an hour of 1 s blocks).
const MAX_RSS_SLOPE_KB_PER_BLOCK: f64 = 8.0;

/// The bot's allocator (mimalloc, as `main.rs`) counting the bytes live on the Rust heap, so the
/// soak tells real growth (live bytes rising) from allocator or page-cache warm-up (RSS rising
/// with live bytes flat). The whole test binary uses it.
#[cfg(not(feature = "heap-profile"))]
struct CountingMimalloc;

#[cfg(not(feature = "heap-profile"))]
static LIVE_HEAP_BYTES: AtomicIsize = AtomicIsize::new(0);

#[cfg(not(feature = "heap-profile"))]
#[global_allocator]
static GLOBAL: CountingMimalloc = CountingMimalloc;

/// With `--features heap-profile`: dhat's profiler, started after the soak's warm-up and stopped
/// before the engine, so `dhat-heap.json` holds what was allocated in between and is still live.
#[cfg(feature = "heap-profile")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

#[allow(
    unsafe_code,
    clippy::cast_possible_wrap,
    reason = "a counting wrapper around the global allocator (test binary only); sizes are far below isize::MAX"
)]
// SAFETY: every call is forwarded unchanged to mimalloc; only a counter is added.
#[cfg(not(feature = "heap-profile"))]
unsafe impl GlobalAlloc for CountingMimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            LIVE_HEAP_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_HEAP_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        LIVE_HEAP_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`.
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_HEAP_BYTES
                .fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[cfg(not(feature = "heap-profile"))]
fn live_heap_kb() -> i64 {
    LIVE_HEAP_BYTES.load(Ordering::Relaxed) as i64 / 1024
}

/// Whether the heap profiler runs (its statistics exist only then).
#[cfg(feature = "heap-profile")]
static PROFILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Bytes allocated since the profiler started and still live (0 before it starts).
#[cfg(feature = "heap-profile")]
fn live_heap_kb() -> i64 {
    if PROFILING.load(Ordering::Relaxed) {
        dhat::HeapStats::get().curr_bytes as i64 / 1024
    } else {
        0
    }
}

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
    heap_kb: i64,
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
    let warm = WARM_UP_SECS.max(secs as f64 / 4.0);
    #[cfg(feature = "heap-profile")]
    let mut profiler = None;
    while start.elapsed() < Duration::from_secs(secs) {
        #[cfg(feature = "heap-profile")]
        if profiler.is_none() && start.elapsed().as_secs_f64() >= warm {
            profiler = Some(dhat::Profiler::builder().trim_backtraces(Some(24)).build());
            PROFILING.store(true, Ordering::Relaxed);
        }
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
                heap_kb: live_heap_kb(),
                fds: open_files(),
                tasks,
            });
            next_sample += period;
        }
    }
    #[cfg(feature = "heap-profile")]
    {
        // Written now, with the engine running: what the steady state allocated and kept.
        PROFILING.store(false, Ordering::Relaxed);
        drop(profiler.take());
    }
    let steady: Vec<Sample> = samples.iter().copied().filter(|s| s.secs >= warm).collect();
    assert!(steady.len() >= 5, "enough samples after warm-up: {samples:?}");
    let per_block =
        slope(&steady.iter().map(|s| (s.block as f64, s.rss_kb as f64)).collect::<Vec<_>>());
    let heap_per_block =
        slope(&steady.iter().map(|s| (s.block as f64, s.heap_kb as f64)).collect::<Vec<_>>());
    eprintln!(
        "live heap slope after warm-up: {heap_per_block:.3} kB/block (bound {MAX_HEAP_SLOPE_KB_PER_BLOCK})"
    );
    if let Some(c) = run.stats.ingest.get() {
        eprintln!(
            "feed: pending emitted {} dropped {}; engine examined {}; queued now {}",
            c.pending.load(Ordering::Relaxed),
            c.dropped_pending.load(Ordering::Relaxed),
            run.stats.pending.load(Ordering::Relaxed),
            run.queued()
        );
    }
    let max_rss = samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    eprintln!(
        "soak {secs} s, up to block {blocks}, {} submissions; RSS slope after {warm:.0} s: \
         {per_block:.3} kB/block (bound {MAX_RSS_SLOPE_KB_PER_BLOCK})",
        run.stats.submitted.load(Ordering::Relaxed)
    );
    for s in &samples {
        eprintln!(
            "  t={:>6.1}s block={:>6} rss={:>7.1} MB heap={:>7.1} MB fds={:>4} tasks={:>4}",
            s.secs,
            s.block,
            s.rss_kb as f64 / 1024.0,
            s.heap_kb as f64 / 1024.0,
            s.fds,
            s.tasks
        );
    }
    let (first, last) = (steady[0], steady[steady.len() - 1]);
    assert!(
        per_block <= MAX_RSS_SLOPE_KB_PER_BLOCK,
        "RSS grows {per_block:.3} kB/block after warm-up (bound {MAX_RSS_SLOPE_KB_PER_BLOCK})"
    );
    assert!(
        heap_per_block <= MAX_HEAP_SLOPE_KB_PER_BLOCK,
        "the live heap grows {heap_per_block:.3} kB/block after warm-up (bound {MAX_HEAP_SLOPE_KB_PER_BLOCK})"
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
