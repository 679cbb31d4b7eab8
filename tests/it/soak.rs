//! Soak: the live engine under steady flow for a while, with RSS, open files, tokio tasks and the
//! cache bounded. CI runs 20 s; the one-hour run is on demand:
//! `CANTILEVER_SOAK_SECS=3600 cargo test --release --test it soak:: -- --nocapture`.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::engine::{devnet_bot, e6, records};

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
    let mut samples: Vec<(f64, u64, usize, usize)> = Vec::new();
    let mut blocks = 0u64;
    let mut next_sample = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(secs) {
        let pool = pools[rng.usize(..pools.len())];
        let n = bot.dump(pool, rng.bool(), e6(rng.u64(1_000..40_000))).await;
        blocks = n;
        assert!(run.wait_settled(n, Duration::from_secs(30)), "engine keeps up at block {n}");
        if start.elapsed() >= next_sample {
            let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
            samples.push((start.elapsed().as_secs_f64(), rss_kb(), open_files(), tasks));
            next_sample += Duration::from_secs((secs / 10).max(1));
        }
    }
    let half = samples.len() / 2;
    let (first, last) = (&samples[half.min(samples.len() - 1)], &samples[samples.len() - 1]);
    let max_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    eprintln!(
        "soak {secs} s, up to block {blocks}, {} submissions",
        run.stats.submitted.load(Ordering::Relaxed)
    );
    for (t, rss, fds, tasks) in &samples {
        eprintln!(
            "  t={t:>6.1}s rss={:>7.1} MB fds={fds:>4} tasks={tasks:>4}",
            *rss as f64 / 1024.0
        );
    }
    // Bounded: no growth over the second half beyond noise; files and tasks do not accumulate.
    assert!(
        last.1 <= first.1 + 64 * 1024,
        "RSS grew from {} to {} kB in the second half",
        first.1,
        last.1
    );
    assert!(max_rss < 512 * 1024, "RSS stayed under 512 MB (max {max_rss} kB)");
    assert!(last.2 <= first.2 + 16, "open files grew from {} to {}", first.2, last.2);
    assert!(last.3 <= first.3 + 16, "tokio tasks grew from {} to {}", first.3, last.3);
    assert!(run.stats.fresh.load(Ordering::Relaxed), "the cache is fresh at the end");
    let recs = records(&ledger, &bot.db());
    assert!(!recs.is_empty(), "the ledger recorded the run");
    run.stop(Duration::from_secs(5)).await;
    ledger.close().expect("close");
}
