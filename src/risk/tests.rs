//! Unit tests of the gate: one per limit, plus the book updates.

use alloy::primitives::{Address, U256};
use smallvec::smallvec;

use super::*;
use crate::config::{RawAmount, RiskConfig, StabilizerConfig};

const NOW: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z
const GWEI: u128 = 1_000_000_000;

fn pool(n: u8) -> ChainAddress {
    ChainAddress::new(138, Address::repeat_byte(n))
}

fn usdt() -> ChainAddress {
    ChainAddress::new(138, Address::repeat_byte(0xaa))
}

/// NAV $1M with the defaults: route cap 25k, ramp from 1k ×5 after 3 clean fills, bucket A 30%,
/// per-block 10k, 3 failures, daily loss 2.5k, gas 100 gwei, slippage 30 bps, min profit $5.
fn gate() -> RiskGate {
    RiskGate::new(
        &RiskConfig::with_nav(1_000_000.0),
        &StabilizerConfig::default(),
        &[],
        Halt::in_memory(),
    )
}

fn cand(notional_usd: f64) -> Candidate {
    let pools = smallvec![pool(1), pool(2)];
    Candidate {
        route: RouteKey::from_pools(&pools),
        strategy: StrategyKind::Depeg,
        bucket: Bucket::A,
        pools,
        notional_usd,
        slippage_bps: 10,
        profit_token: usdt(),
        profit_raw: U256::from(20_000_000u64),
        profit_usd: 20.0,
        gas_price_wei: 10 * GWEI,
        exposure_change_usd: smallvec![],
    }
}

fn book(block: u64) -> BookState {
    BookState { block, unix_time: NOW, base_fee_wei: 5 * GWEI, ..Default::default() }
}

fn refused(g: &RiskGate, c: &Candidate, b: &BookState) -> Refusal {
    match g.check(c, b) {
        Err(r) => r,
        Ok(a) => panic!("expected a refusal, got {a:?}"),
    }
}

#[test]
fn clean_candidate_is_approved_with_the_ramp_cap() {
    let g = gate();
    let a = g.check(&cand(500.0), &book(10)).unwrap();
    assert_eq!(a, Approval { max_notional_usd: 1_000.0, binding: NotionalLimit::Ramp });
    assert_eq!(g.notional_cap(&cand(0.0), &book(10)), a);
}

#[test]
fn slippage_profit_and_gas_caps() {
    let g = gate();
    let b = book(10);
    let mut c = cand(500.0);
    c.slippage_bps = 31;
    let r = refused(&g, &c, &b);
    assert_eq!(r, Refusal::Slippage { slippage_bps: 31, max_bps: 30 });
    assert_eq!(r.kind(), "slippage");
    assert_eq!(r.to_string(), "slippage 31 bps above the cap of 30 bps");

    let mut c = cand(500.0);
    c.profit_usd = 4.99;
    assert_eq!(refused(&g, &c, &b).kind(), "min_profit_usd");

    let mut c = cand(500.0);
    c.gas_price_wei = 101 * GWEI;
    let r = refused(&g, &c, &b);
    assert_eq!(r.kind(), "gas_price");
    assert_eq!(r.to_string(), "gas price 101.000 gwei above the cap of 100.000 gwei");

    let mut hot = book(10);
    hot.base_fee_wei = 500 * GWEI;
    assert_eq!(refused(&g, &cand(500.0), &hot).kind(), "base_fee");
}

#[test]
fn raw_min_profit_per_token_from_config() {
    let mut risk = RiskConfig::with_nav(1_000_000.0);
    risk.min_profit.insert("cUSDT".into(), RawAmount(U256::from(25_000_000u64)));
    let chain: crate::config::ChainConfig = toml::from_str(&format!(
        r#"name = "c138"
        chain_id = 138
        ws_url = "ws://127.0.0.1:1"
        http_url = "http://127.0.0.1:1"
        block_time_ms = 1000
        submission = {{ mode = "public-rpc" }}
        tokens = [{{ symbol = "cUSDT", address = "{}", decimals = 6 }}]"#,
        usdt().address
    ))
    .unwrap();
    let g = RiskGate::new(&risk, &StabilizerConfig::default(), &[chain], Halt::in_memory());
    let mut c = cand(500.0);
    c.profit_usd = 1_000.0; // USD does not rescue a raw shortfall for a listed token
    let r = refused(&g, &c, &book(1));
    assert_eq!(
        r,
        Refusal::MinProfitRaw {
            profit_raw: U256::from(20_000_000u64),
            min_raw: U256::from(25_000_000u64)
        }
    );
    c.profit_raw = U256::from(25_000_000u64);
    c.profit_usd = 1.0; // listed token: the raw minimum decides
    assert!(g.check(&c, &book(1)).is_ok());
}

#[test]
fn exposure_per_token_is_capped_at_pct_of_nav() {
    let g = gate();
    let mut b = book(1);
    b.exposure_usd.insert(usdt(), 240_000.0);
    let mut c = cand(500.0);
    c.exposure_change_usd = smallvec![(usdt(), 20_000.0)];
    assert_eq!(
        refused(&g, &c, &b),
        Refusal::Exposure { token: usdt(), after_usd: 260_000.0, cap_usd: 250_000.0 }
    );
    // Reducing exposure is always allowed.
    c.exposure_change_usd = smallvec![(usdt(), -20_000.0)];
    assert!(g.check(&c, &b).is_ok());
}

#[test]
fn bucket_budgets() {
    let g = gate();
    let mut b = book(1);
    b.bucket_in_use_usd[Bucket::A.index()] = 299_800.0; // A is 30% of 1M
    let r = refused(&g, &cand(500.0), &b);
    assert_eq!(r.kind(), "bucket");
    assert!((r.allowed_notional_usd().unwrap() - 200.0).abs() < 1e-9);
    // Bucket E is never traded.
    let mut c = cand(500.0);
    c.bucket = Bucket::E;
    assert_eq!(
        refused(&g, &c, &book(1)),
        Refusal::Bucket { bucket: Bucket::E, notional_usd: 500.0, room_usd: 0.0 }
    );
}

#[test]
fn ramp_grows_after_clean_fills_and_shrinks_on_failure() {
    let mut risk = RiskConfig::with_nav(1_000_000.0);
    risk.per_block_volume_cap_usd = 100_000.0;
    let mut g = RiskGate::new(&risk, &StabilizerConfig::default(), &[], Halt::in_memory());
    let c = cand(2_000.0);
    let r = refused(&g, &c, &book(1));
    assert_eq!(r, Refusal::Ramp { notional_usd: 2_000.0, cap_usd: 1_000.0 });
    for _ in 0..2 {
        g.record_fill(c.route, 10.0, NOW).unwrap();
    }
    assert_eq!(g.ramp_cap_usd(c.route), 1_000.0);
    g.record_fill(c.route, 10.0, NOW).unwrap();
    assert_eq!(g.ramp_cap_usd(c.route), 5_000.0);
    assert!(g.check(&c, &book(2)).is_ok());
    for _ in 0..3 {
        g.record_fill(c.route, 10.0, NOW).unwrap();
    }
    // 25,000 is the per-route cap: growth stops there and the route cap binds.
    assert_eq!(g.ramp_cap_usd(c.route), 25_000.0);
    for _ in 0..3 {
        g.record_fill(c.route, 10.0, NOW).unwrap();
    }
    assert_eq!(g.ramp_cap_usd(c.route), 25_000.0);
    assert_eq!(refused(&g, &cand(30_000.0), &book(3)).kind(), "route_notional");
    // A miss shrinks it back to the start; other routes are untouched.
    g.record_miss(c.route, NOW).unwrap();
    assert_eq!(g.ramp_cap_usd(c.route), 1_000.0);
    assert_eq!(g.ramp_cap_usd(RouteKey(7)), 1_000.0);
}

#[test]
fn an_orphaned_fill_is_taken_back() {
    let mut risk = RiskConfig::with_nav(1_000_000.0);
    risk.per_block_volume_cap_usd = 100_000.0;
    let mut g = RiskGate::new(&risk, &StabilizerConfig::default(), &[], Halt::in_memory());
    let route = RouteKey(5);
    // Two clean fills, one reorged out: the third clean fill does not grow the ramp yet.
    g.record_fill(route, 10.0, NOW).unwrap();
    g.record_fill(route, 10.0, NOW).unwrap();
    g.record_orphaned(route, 10.0, NOW);
    g.record_fill(route, 10.0, NOW).unwrap();
    assert_eq!(g.ramp_cap_usd(route), 1_000.0, "only two clean fills count");
    g.record_fill(route, 10.0, NOW).unwrap();
    assert_eq!(g.ramp_cap_usd(route), 5_000.0);
    // A losing fill reorged out no longer counts toward the day's loss.
    g.record_fill(route, -400.0, NOW).unwrap();
    assert_eq!(g.loss_today_usd(NOW), 400.0);
    g.record_orphaned(route, -400.0, NOW);
    assert_eq!(g.loss_today_usd(NOW), 0.0);
    // Bad numbers change nothing.
    g.record_orphaned(route, f64::NAN, NOW);
    assert_eq!(g.loss_today_usd(NOW), 0.0);
}

#[test]
fn per_block_volume_cap() {
    let mut g = gate();
    let route = RouteKey(1);
    for _ in 0..6 {
        g.record_fill(route, 1.0, NOW).unwrap(); // ramp to 25k
    }
    let mut c = cand(6_000.0);
    c.route = route;
    assert!(g.check(&c, &book(5)).is_ok());
    g.record_submission(&c, 5);
    let r = refused(&g, &c, &book(5));
    assert_eq!(r, Refusal::BlockVolume { notional_usd: 6_000.0, room_usd: 4_000.0 });
    // The next block starts fresh.
    assert!(g.check(&c, &book(6)).is_ok());
}

#[test]
fn stabilizer_min_blocks_and_block_cap() {
    let mut risk = RiskConfig::with_nav(1_000_000.0);
    risk.ramp.initial_notional_usd = 25_000.0;
    let stab = StabilizerConfig { min_blocks: 4, per_block_cap_usd: 3_000.0, ..Default::default() };
    let mut g = RiskGate::new(&risk, &stab, &[], Halt::in_memory());
    let mut c = cand(2_000.0);
    c.strategy = StrategyKind::Stabilizer;
    c.bucket = Bucket::B;
    assert!(g.check(&c, &book(100)).is_ok());
    g.record_submission(&c, 100);
    // Its own per-block cap, below the desk's 10k (another pool, so MIN_BLOCKS does not apply).
    let mut other = c.clone();
    other.pools = smallvec![pool(7)];
    assert_eq!(
        refused(&g, &other, &book(100)),
        Refusal::StabilizerVolume { notional_usd: 2_000.0, room_usd: 1_000.0 }
    );
    // MIN_BLOCKS = 4: blocks 101–103 refused, 104 allowed.
    for block in 101..104 {
        assert_eq!(
            refused(&g, &c, &book(block)),
            Refusal::MinBlocks { pool: pool(1), last_block: 100, block, min_blocks: 4 }
        );
    }
    assert!(g.check(&c, &book(104)).is_ok());
    // Other strategies are not held by MIN_BLOCKS.
    let mut d = c.clone();
    d.strategy = StrategyKind::Depeg;
    assert!(g.check(&d, &book(101)).is_ok());
}

#[test]
fn consecutive_failures_trip_the_persistent_halt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cantilever.halt");
    let mut g = RiskGate::new(
        &RiskConfig::with_nav(1_000_000.0),
        &StabilizerConfig::default(),
        &[],
        Halt::load(&path),
    );
    let route = RouteKey(9);
    assert_eq!(g.record_revert(route, 1.0, NOW).unwrap(), None);
    assert_eq!(g.record_miss(route, NOW).unwrap(), None);
    // A fill ends the run.
    g.record_fill(route, 1.0, NOW).unwrap();
    assert_eq!(g.consecutive_failures(), 0);
    g.record_miss(route, NOW).unwrap();
    g.record_revert(route, 1.0, NOW).unwrap();
    let trip = g.record_miss(route, NOW).unwrap();
    assert_eq!(trip, Some(Trip::ConsecutiveFailures { count: 3 }));
    let r = refused(&g, &cand(100.0), &book(1));
    assert_eq!(r.kind(), "halted");
    assert!(r.to_string().contains("3 consecutive"), "{r}");

    // Restart: a new gate over the same file is still halted.
    drop(g);
    let mut g = RiskGate::new(
        &RiskConfig::with_nav(1_000_000.0),
        &StabilizerConfig::default(),
        &[],
        Halt::load(&path),
    );
    assert!(g.is_halted());
    assert_eq!(refused(&g, &cand(100.0), &book(1)).kind(), "halted");
    g.rearm().unwrap();
    assert!(!path.exists());
    assert!(g.check(&cand(100.0), &book(1)).is_ok());
}

#[test]
fn daily_loss_cap_resets_at_utc_midnight() {
    let mut g = gate();
    let route = RouteKey(3);
    assert_eq!(g.record_fill(route, -1_000.0, NOW).unwrap(), None);
    let trip = g.record_fill(route, -1_500.0, NOW + 10).unwrap();
    assert_eq!(trip, Some(Trip::DailyLoss { loss_usd: 2_500.0, cap_usd: 2_500.0 }));
    assert_eq!(refused(&g, &cand(100.0), &book(1)).kind(), "halted");
    g.rearm().unwrap();
    // Re-armed, but the day's loss still caps trading until UTC midnight.
    let mut b = book(1);
    b.unix_time = NOW + 20;
    assert_eq!(
        refused(&g, &cand(100.0), &b),
        Refusal::DailyLoss { loss_usd: 2_500.0, cap_usd: 2_500.0 }
    );
    let midnight = (NOW / 86_400 + 1) * 86_400;
    b.unix_time = midnight;
    assert_eq!(g.loss_today_usd(midnight), 0.0);
    assert!(g.check(&cand(100.0), &b).is_ok());
    b.unix_time = midnight - 1;
    assert_eq!(refused(&g, &cand(100.0), &b).kind(), "daily_loss");
}

#[test]
fn manual_halt_and_bad_numbers() {
    let mut g = gate();
    g.halt("operator", NOW).unwrap();
    assert_eq!(
        refused(&g, &cand(1.0), &book(1)),
        Refusal::Halted { reason: "operator".into(), since_unix: NOW }
    );
    g.rearm().unwrap();
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        assert_eq!(refused(&g, &cand(bad), &book(1)).kind(), "invalid_candidate");
    }
    let mut c = cand(1.0);
    c.profit_usd = f64::NAN;
    assert_eq!(refused(&g, &c, &book(1)), Refusal::InvalidCandidate { field: "profit_usd" });
    assert_eq!(Refusal::Containment("loan not repaid".into()).kind(), "containment");
}

#[test]
fn route_keys_are_stable_and_order_sensitive() {
    let a = RouteKey::from_pools(&[pool(1), pool(2)]);
    assert_eq!(a, RouteKey::from_pools(&[pool(1), pool(2)]));
    assert_ne!(a, RouteKey::from_pools(&[pool(2), pool(1)]));
    assert_ne!(a, RouteKey::from_pools(&[ChainAddress::new(1, pool(1).address), pool(2)]));
}

#[test]
fn reconfigure_changes_limits_and_keeps_the_book() {
    let mut g = gate();
    let b = book(10);
    let mut c = cand(500.0);
    c.profit_usd = 4.0;
    assert_eq!(refused(&g, &c, &b).kind(), "min_profit_usd");
    g.halt("desk", NOW).expect("halt");
    let mut risk = RiskConfig::with_nav(1_000_000.0);
    risk.min_profit_usd = 1.0;
    let change = g.reconfigure(&risk, &StabilizerConfig::default(), &[]);
    assert!(change.contains("min_profit_usd: 1.0"), "{change}");
    assert_eq!(refused(&g, &c, &b).kind(), "halted", "the halt survives a reload");
    g.rearm().expect("rearm");
    assert!(g.check(&c, &b).is_ok(), "the new minimum applies");
    assert_eq!(g.reconfigure(&risk, &StabilizerConfig::default(), &[]), "unchanged");
}
