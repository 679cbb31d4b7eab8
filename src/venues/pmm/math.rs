//! DecimalMath and DODOMath in `U256`, step for step as the PMM contracts compute them (DOMAIN §1.1,
//! §1.3), so every result equals the contract's to the wei.
//!
//! Each function mirrors one Solidity function of `fixtures/contracts/pmm/lib/` (checked 0.8
//! arithmetic, same evaluation order). Wherever the contract reverts, these return an error:
//! - arithmetic overflow, underflow or division by zero (a Solidity panic): [`VenueError::Overflow`];
//! - `"TARGET_IS_ZERO"` (the paying side has no target, i.e. no liquidity): [`VenueError::NoLiquidity`];
//! - `"DODOMath: should not be zero"` (a degenerate quadratic): [`VenueError::ZeroOutput`].
//!
//! Nothing here panics on any input.

use alloy::primitives::U256;

use crate::venues::VenueError;

/// 1.0 in 18-decimal fixed point.
pub const ONE: U256 = U256::from_limbs([1_000_000_000_000_000_000, 0, 0, 0]);
/// 1.0 squared (1e36).
pub const ONE2: U256 = U256::from_limbs([0xb34b_9f10_0000_0000, 0x00c0_97ce_7bc9_0715, 0, 0]);

const TWO: U256 = U256::from_limbs([2, 0, 0, 0]);
const FOUR: U256 = U256::from_limbs([4, 0, 0, 0]);
const U112_MAX: U256 = U256::from_limbs([u64::MAX, (1 << 48) - 1, 0, 0]);

/// Result of a checked step.
pub type MathResult = Result<U256, VenueError>;

/// `a + b`, or [`VenueError::Overflow`] (limb-wise, always inlined).
#[inline(always)]
pub fn add(a: U256, b: U256) -> MathResult {
    let (x, y) = (a.as_limbs(), b.as_limbs());
    let mut out = [0u64; 4];
    let mut carry = false;
    for i in 0..4 {
        let (s1, c1) = x[i].overflowing_add(y[i]);
        let (s2, c2) = s1.overflowing_add(carry as u64);
        out[i] = s2;
        carry = c1 | c2;
    }
    if carry { Err(VenueError::Overflow) } else { Ok(U256::from_limbs(out)) }
}

/// `a − b`, or [`VenueError::Overflow`] on underflow (limb-wise, always inlined).
#[inline(always)]
pub fn sub(a: U256, b: U256) -> MathResult {
    let (x, y) = (a.as_limbs(), b.as_limbs());
    let mut out = [0u64; 4];
    let mut borrow = false;
    for i in 0..4 {
        let (d1, b1) = x[i].overflowing_sub(y[i]);
        let (d2, b2) = d1.overflowing_sub(borrow as u64);
        out[i] = d2;
        borrow = b1 | b2;
    }
    if borrow { Err(VenueError::Overflow) } else { Ok(U256::from_limbs(out)) }
}

/// `a · b`, or [`VenueError::Overflow`]. Operands below 2^128 (nearly every product here:
/// reserves are `uint112`, rates and k at most 1e18, i at most 1e36) take a four-multiply path
/// that cannot overflow; the rest use ruint's checked product.
#[inline(always)]
pub fn mul(a: U256, b: U256) -> MathResult {
    let (x, y) = (a.as_limbs(), b.as_limbs());
    if (x[2] | x[3] | y[2] | y[3]) == 0 {
        let (a0, a1, b0, b1) = (x[0] as u128, x[1] as u128, y[0] as u128, y[1] as u128);
        let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
        let mid = (p00 >> 64) + (p01 & LOW64) + (p10 & LOW64);
        let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
        return Ok(U256::from_limbs([p00 as u64, mid as u64, high as u64, (high >> 64) as u64]));
    }
    // One single-limb operand (k, fee rates, 1e18, 2(1−k), 4(1−k), ...): four multiply-adds.
    let (small, wide) = if (x[1] | x[2] | x[3]) == 0 {
        (x[0], y)
    } else if (y[1] | y[2] | y[3]) == 0 {
        (y[0], x)
    } else {
        return a.checked_mul(b).ok_or(VenueError::Overflow);
    };
    let mut out = [0u64; 4];
    let mut carry = 0u128;
    for (o, w) in out.iter_mut().zip(wide) {
        let t = (small as u128) * (*w as u128) + carry;
        *o = t as u64;
        carry = t >> 64;
    }
    if carry != 0 {
        return Err(VenueError::Overflow);
    }
    Ok(U256::from_limbs(out))
}

const LOW64: u128 = u64::MAX as u128;

/// 1e18 shifted left until its top bit is set (it has 60 significant bits).
const ONE_SHIFT: u32 = 1_000_000_000_000_000_000u64.leading_zeros();
const ONE_NORM: u64 = 1_000_000_000_000_000_000u64 << ONE_SHIFT;
/// The Möller–Granlund reciprocal of the normalised divisor: ⌊(2^128 − 1)/d⌋ − 2^64.
const ONE_RECIP: u64 = (u128::MAX / ONE_NORM as u128) as u64;

/// One step of Möller–Granlund division (MG10, algorithm 4): `(u1·2^64 + u0) / d` for a
/// normalised `d` with reciprocal `v`, given `u1 < d`. Returns quotient and remainder.
#[inline(always)]
const fn div_2x1(u1: u64, u0: u64, d: u64, v: u64) -> (u64, u64) {
    let q = (v as u128) * (u1 as u128);
    let q = q.wrapping_add(((u1 as u128) << 64) | u0 as u128);
    let mut q1 = ((q >> 64) as u64).wrapping_add(1);
    let q0 = q as u64;
    let mut r = u0.wrapping_sub(q1.wrapping_mul(d));
    if r > q0 {
        q1 = q1.wrapping_sub(1);
        r = r.wrapping_add(d);
    }
    if r >= d {
        q1 = q1.wrapping_add(1);
        r -= d;
    }
    (q1, r)
}

/// `⌊x / 1e18⌋` by limb-wise division with a precomputed reciprocal (no general division, no
/// reciprocal computed at run time). Equal to `x / ONE` for every `x` (property-tested).
#[inline(always)]
pub fn div_one(x: U256) -> U256 {
    let l = x.as_limbs();
    let s = ONE_SHIFT;
    // x · 2^s as five limbs n4..n0 (only the top ones can be zero).
    let n = [
        l[0] << s,
        (l[1] << s) | (l[0] >> (64 - s)),
        (l[2] << s) | (l[1] >> (64 - s)),
        (l[3] << s) | (l[2] >> (64 - s)),
        l[3] >> (64 - s),
    ];
    let mut q = [0u64; 4];
    // n4 < 2^s < d, so the quotient has four limbs; start below the top zero limbs.
    let top = if l[3] != 0 {
        4
    } else if l[2] != 0 {
        3
    } else if l[1] != 0 {
        2
    } else {
        1
    };
    let mut r = n[top];
    let mut idx = top;
    while idx > 0 {
        idx -= 1;
        let (qi, ri) = div_2x1(r, n[idx], ONE_NORM, ONE_RECIP);
        q[idx] = qi;
        r = ri;
    }
    U256::from_limbs(q)
}

/// `⌊a / b⌋`, or [`VenueError::Overflow`] when `b = 0` (Solidity's division panic).
#[inline(always)]
pub fn div(a: U256, b: U256) -> MathResult {
    a.checked_div(b).ok_or(VenueError::Overflow)
}

/// `⌈a / b⌉` on plain integers (DecimalMath.divCeilRaw).
#[inline(always)]
pub fn div_ceil_raw(a: U256, b: U256) -> MathResult {
    if b.is_zero() {
        return Err(VenueError::Overflow);
    }
    let (q, r) = a.div_rem(b);
    if r.is_zero() { Ok(q) } else { add(q, U256::ONE) }
}

/// `⌊a · b / 1e18⌋` (DecimalMath.mulFloor).
#[inline(always)]
pub fn mul_floor(a: U256, b: U256) -> MathResult {
    Ok(div_one(mul(a, b)?))
}

/// `⌈a · b / 1e18⌉` (DecimalMath.mulCeil).
#[inline]
pub fn mul_ceil(a: U256, b: U256) -> MathResult {
    div_ceil_raw(mul(a, b)?, ONE)
}

/// `⌊a · 1e18 / b⌋` (DecimalMath.divFloor).
#[inline(always)]
pub fn div_floor(a: U256, b: U256) -> MathResult {
    div(mul(a, ONE)?, b)
}

/// `⌈a · 1e18 / b⌉` (DecimalMath.divCeil).
#[inline(always)]
pub fn div_ceil(a: U256, b: U256) -> MathResult {
    div_ceil_raw(mul(a, ONE)?, b)
}

/// `⌊1e36 / a⌋`: the reciprocal of an 18-decimal value (DecimalMath.reciprocalFloor).
#[inline(always)]
pub fn reciprocal_floor(a: U256) -> MathResult {
    div(ONE2, a)
}

/// Whether `x` fits the contracts' `uint112` reserve and target slots.
#[inline]
pub fn fits_u112(x: U256) -> bool {
    x <= U112_MAX
}

/// The contract's square root, exactly as `DODOMath.sqrt` iterates it: Babylonian steps from
/// `z = x/2 + 1`. This is `⌊√x⌋` for every `x` except `x = 2`, where the iteration never moves and
/// returns 2. Up to ~130 divisions: the reference for [`sqrt`], not for the hot path.
pub fn sqrt_babylonian(x: U256) -> U256 {
    // No step overflows: z starts at x/2 + 1 and never falls below ⌊√x⌋, so x/z ≤ z + 1 and
    // x/z + z ≤ 2^255 + 1 at the largest x (ruint operators wrap; they never panic).
    let mut z = (x >> 1) + U256::ONE;
    let mut y = x;
    while z < y {
        y = z;
        z = ((x / z) + z) >> 1;
    }
    y
}

/// `DODOMath.sqrt(x)` computed fast: a seed from the top 128 bits (`u128::isqrt`, ≥ 63 correct
/// bits), one Newton step (≥ 126 bits, at most a few units above `⌊√x⌋`), then exact correction by
/// squaring. Equal to [`sqrt_babylonian`] for every input, including its `sqrt(2) = 2` quirk
/// (property-tested); one division instead of up to ~130.
#[inline(always)]
pub fn sqrt(x: U256) -> U256 {
    if x == TWO {
        return TWO; // the contract's iteration starts and stays at 2
    }
    let bits = x.bit_len();
    if bits <= 128 {
        return U256::from(x.to::<u128>().isqrt());
    }
    // Shift by an even amount so the top part has 127 or 128 bits; its root r has ≥ 63 bits and
    // ⌊√x⌋ ∈ [r·2^h, (r+1)·2^h), h = shift/2.
    let shift = (bits - 127) & !1;
    let r = (x >> shift).to::<u128>().isqrt();
    // From y0 = (r + 1)·2^h ≥ √x, one Newton step lands in [⌊√x⌋, ⌊√x⌋ + 3]: the seed's relative
    // error is below 2^-63, the step squares it, and √x < 2^128. ⌊x / y0⌋ = ⌊⌊x / 2^h⌋ / (r + 1)⌋
    // is a division by one limb (r + 1 ≤ 2^64).
    let h = shift / 2;
    let d = r + 1;
    let q = match u64::try_from(d) {
        Ok(d64) => (x >> h) / U256::from(d64),
        Err(_) => x >> (h + 64), // d = 2^64
    };
    let mut y: U256 = (q + (U256::from(d) << h)) >> 1usize;
    // y < 2^128 + 4: y² overflows only when y ≥ 2^128, which is too large anyway.
    while y.checked_mul(y).is_none_or(|sq| sq > x) {
        y -= U256::ONE;
    }
    y
}

/// GeneralIntegrate: the output when the V-side moves from `v2` up to `v1` (`v0 ≥ v1 ≥ v2 > 0`),
/// `i·(v1 − v2)·(1 − k + k·v0²/(v1·v2))`, rounded down (DOMAIN §1.3a).
///
/// # Errors
/// [`VenueError::NoLiquidity`] when `v0 = 0` ("TARGET_IS_ZERO"); [`VenueError::Overflow`] when a
/// checked step fails (including `v1 < v2` and `k > 1e18`).
#[inline(always)]
pub fn general_integrate(v0: U256, v1: U256, v2: U256, i: U256, k: U256) -> MathResult {
    if v0.is_zero() {
        return Err(VenueError::NoLiquidity);
    }
    let fair = mul(i, sub(v1, v2)?)?;
    if k.is_zero() {
        return Ok(div_one(fair));
    }
    let t = div_floor(div(mul(v0, v0)?, v1)?, v2)?;
    let penalty = mul_floor(k, t)?;
    // ⌊x / 1e36⌋ = ⌊⌊x / 1e18⌋ / 1e18⌋.
    Ok(div_one(div_one(mul(add(sub(ONE, k)?, penalty)?, fair)?)))
}

/// SolveQuadraticForTrade: the output `v1 − v2` when `delta` of the other asset is sold at price `i`
/// and the V-side falls from `v1` to `v2`, with `i·delta = (v1 − v2)·(1 − k + k·v0²/(v1·v2))`
/// (DOMAIN §1.3b). `v2` is rounded up so the output rounds down; a root above `v1` gives 0.
/// `k = 0` gives `min(mulFloor(i, delta), v1)`; `k = 1e18` the closed form `v1·t/(t + 1e18)`.
///
/// # Errors
/// [`VenueError::NoLiquidity`] when `v0 = 0`; [`VenueError::ZeroOutput`] when the numerator of the
/// root is 0 ("DODOMath: should not be zero"); [`VenueError::Overflow`] when a checked step fails.
#[inline(always)]
pub fn solve_quadratic_for_trade(v0: U256, v1: U256, delta: U256, i: U256, k: U256) -> MathResult {
    if v0.is_zero() {
        return Err(VenueError::NoLiquidity);
    }
    if delta.is_zero() {
        return Ok(U256::ZERO);
    }
    if k.is_zero() {
        let flat = mul_floor(i, delta)?;
        return Ok(flat.min(v1));
    }
    if k == ONE {
        let idelta = mul(i, delta)?;
        let t = if idelta.is_zero() {
            U256::ZERO
        } else {
            match mul(idelta, v1) {
                Ok(prod) => div(prod, mul(v0, v0)?)?,
                Err(_) => div(mul(div(mul(delta, v1)?, v0)?, i)?, v0)?,
            }
        };
        return div(mul(v1, t)?, add(t, ONE)?);
    }

    // ⌊k·V0 / V1⌋ is k itself when V0 = V1 (R = ONE): skip the division, keep the overflow check.
    let kv0 = mul(k, v0)?;
    let kv0_v1 = if v0 == v1 { k } else { div(kv0, v1)? };
    let part2 = add(mul(kv0_v1, v0)?, mul(i, delta)?)?;
    let one_minus_k = sub(ONE, k)?;
    let mut b_abs = mul(one_minus_k, v1)?;
    let b_positive = if b_abs >= part2 {
        b_abs -= part2;
        false
    } else {
        b_abs = part2 - b_abs;
        true
    };
    b_abs = div_one(b_abs);

    let four_ac = mul_floor(mul(FOUR, one_minus_k)?, mul(mul_floor(k, v0)?, v0)?)?;
    let sq = sqrt(add(mul(b_abs, b_abs)?, four_ac)?);
    let numerator = if b_positive { sub(sq, b_abs)? } else { add(b_abs, sq)? };
    if numerator.is_zero() {
        return Err(VenueError::ZeroOutput);
    }
    let v2_new = div_ceil(numerator, mul(TWO, one_minus_k)?)?;
    Ok(v1.checked_sub(v2_new).unwrap_or(U256::ZERO))
}

/// SolveQuadraticForTarget: the target `v0` such that selling `delta` at price `i` brings the
/// V-side from `v1` back to `v0`: `v1·(1 + (√(1 + 4k·i·delta/v1) − 1)/(2k))` (DOMAIN §1.3c).
/// `k = 0` gives `v1 + mulFloor(i, delta)`; otherwise `v1 = 0` gives 0. When `4k·i·delta` overflows,
/// `(4k·i / v1)·delta` is used, as the contract does.
///
/// # Errors
/// [`VenueError::Overflow`] when a checked step fails.
#[inline(always)]
pub fn solve_quadratic_for_target(v1: U256, delta: U256, i: U256, k: U256) -> MathResult {
    if k.is_zero() {
        return add(v1, mul_floor(i, delta)?);
    }
    if v1.is_zero() {
        return Ok(U256::ZERO);
    }
    let ki = mul(mul(FOUR, k)?, i)?;
    let sq = if ki.is_zero() {
        ONE
    } else {
        match mul(ki, delta) {
            Ok(prod) => sqrt(add(prod / v1, ONE2)?),
            Err(_) => sqrt(add(mul(ki / v1, delta)?, ONE2)?),
        }
    };
    let premium = add(div_floor(sub(sq, ONE)?, mul(k, TWO)?)?, ONE)?;
    mul_floor(v1, premium)
}
