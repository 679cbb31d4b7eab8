//! One chain's tradable world: tokens, venues (interned to dense indices), their native states,
//! flash sources, and every candidate route with the index of routes per pool.

use alloy::primitives::{Address, U256, map::AddressHashMap};
use smallvec::SmallVec;

use crate::{
    config::{ChainConfig, FlashLenderKind, VenueKind},
    contracts::{ReserveVault, TestToken, UniV2Pair},
    risk::{ChainAddress, RouteKey, StrategyKind},
    routes::{MAX_HOPS, Route, RouteHop},
    sim::{BlockSim, FlashPlan, SimError},
    venues::{
        Pool, Side, Venue,
        pmm::{IDodoV2Pool, PmmKind, assemble},
        v2::V2Pair,
        vault::ReserveVault as VaultState,
    },
};

/// Most routes through one pool ([`Market::enumerate_routes`]): bounds what a head touching
/// the pool screens, and makes the route count linear in the pools.
pub const MAX_ROUTES_PER_POOL: usize = 32;

/// A directed edge of the token graph: a pool traded one way.
#[derive(Clone, Copy, Debug)]
struct Edge {
    pool: usize,
    side: Side,
    inp: Address,
    out: Address,
}

impl Edge {
    const fn new(pool: usize, side: Side, inp: Address, out: Address) -> Self {
        Self { pool, side, inp, out }
    }
}

/// A token the chain trades.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenMeta {
    /// Symbol.
    pub symbol: String,
    /// Address.
    pub address: Address,
    /// Decimals.
    pub decimals: u8,
    /// Reference USD price of one whole token.
    pub usd_price: f64,
}

impl TokenMeta {
    /// `raw` in USD at the reference price.
    pub fn usd(&self, raw: U256) -> f64 {
        u256_f64(raw) / 10f64.powi(i32::from(self.decimals)) * self.usd_price
    }

    /// The raw amount worth `usd` (rounded down; 0 for a non-positive amount).
    pub fn raw_for_usd(&self, usd: f64) -> U256 {
        if !(usd.is_finite() && usd > 0.0) {
            return U256::ZERO;
        }
        let whole = usd / self.usd_price;
        let raw = whole * 10f64.powi(i32::from(self.decimals));
        if raw >= 1e38 { U256::from(10u64).pow(U256::from(38)) } else { U256::from(raw as u128) }
    }
}

/// A U256 as an f64 (for USD figures only; amounts stay integers).
pub fn u256_f64(v: U256) -> f64 {
    let limbs = v.as_limbs();
    limbs.iter().rev().fold(0.0, |acc, l| acc * 18_446_744_073_709_551_616.0 + *l as f64)
}

/// A venue as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VenueMeta {
    /// Name.
    pub name: String,
    /// Contract address.
    pub address: Address,
    /// Family.
    pub kind: VenueKind,
    /// Base token address (as configured).
    pub base: Address,
    /// Quote token address (as configured).
    pub quote: Address,
}

/// A flash source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LenderMeta {
    /// Interface.
    pub kind: FlashLenderKind,
    /// Contract.
    pub address: Address,
    /// Tokens it lends.
    pub tokens: Vec<Address>,
    /// Its fee on the borrowed amount, bps rounded up (read from the lender at start-up for
    /// ERC-3156; 0 for DODO pools; 31 for a V2 flash swap's 0.3% on the repayment).
    pub fee_bps: u32,
}

/// A candidate route with what the engine needs to trade it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    /// The cycle.
    pub route: Route,
    /// The strategy it belongs to.
    pub strategy: StrategyKind,
    /// How it is funded.
    pub flash: FlashPlan,
    /// A readable label (`USDT > cUSDT/USDT > cUSDT > vault > USDT`).
    pub label: String,
    /// Stable key for the size ramp and the ledger.
    pub key: RouteKey,
    /// The flash source's fee on the input, bps.
    pub flash_fee_bps: u32,
}

/// Why a venue could not be decoded from the cache.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The simulation failed (cold state names the keys).
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A view reverted.
    #[error("{venue}: {call} reverted")]
    Reverted {
        /// The venue.
        venue: String,
        /// The call.
        call: &'static str,
    },
    /// The answers cannot be a state.
    #[error("{venue}: {reason}")]
    Inconsistent {
        /// The venue.
        venue: String,
        /// What was wrong.
        reason: String,
    },
    /// The executor cannot trade this kind.
    #[error("{0}: venue kind not traded by the engine")]
    Unsupported(String),
}

/// One chain's market. See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Market {
    /// Chain id.
    pub chain_id: u64,
    /// Tokens.
    pub tokens: Vec<TokenMeta>,
    /// Venues, by dense index.
    pub venues: Vec<VenueMeta>,
    /// Native states, by the same index (valid once `decoded[i]`).
    pub pools: Vec<Pool>,
    /// Whether `pools[i]` holds a decoded state.
    pub decoded: Vec<bool>,
    /// Flash sources.
    pub lenders: Vec<LenderMeta>,
    /// Candidate routes.
    pub routes: Vec<RouteEntry>,
    /// Routes through each pool.
    pub by_pool: Vec<Vec<u32>>,
    by_address: AddressHashMap<usize>,
}

impl Market {
    /// The market a chain's configuration declares (venues the engine trades: DODO, V2, vaults).
    pub fn from_config(chain: &ChainConfig) -> Self {
        let tokens: Vec<TokenMeta> = chain
            .tokens
            .iter()
            .map(|t| TokenMeta {
                symbol: t.symbol.clone(),
                address: t.address,
                decimals: t.decimals,
                usd_price: t.usd_price,
            })
            .collect();
        let addr =
            |s: &str| tokens.iter().find(|t| t.symbol == s).map_or(Address::ZERO, |t| t.address);
        let mut m = Self { chain_id: chain.chain_id, ..Default::default() };
        for v in &chain.venues {
            if !(v.kind.is_dodo() || matches!(v.kind, VenueKind::UniswapV2 | VenueKind::Vault)) {
                continue;
            }
            m.by_address.insert(v.address, m.venues.len());
            m.venues.push(VenueMeta {
                name: v.name.clone(),
                address: v.address,
                kind: v.kind,
                base: addr(&v.base),
                quote: addr(&v.quote),
            });
            m.pools.push(Pool::V2(V2Pair::default()));
            m.decoded.push(false);
        }
        m.lenders = chain
            .flash_lenders
            .iter()
            .map(|l| LenderMeta {
                kind: l.kind,
                address: l.address,
                tokens: l.tokens.iter().map(|s| addr(s)).collect(),
                fee_bps: match l.kind {
                    FlashLenderKind::UniswapV2 => 31,
                    _ => 0,
                },
            })
            .collect();
        m.tokens = tokens;
        m
    }

    /// Reads each ERC-3156 lender's fee (`flashFee(token, 10,000)` = the fee in bps, rounded up).
    ///
    /// # Errors
    /// [`SimError`] when the lender's state is not cached.
    pub fn read_lender_fees(&mut self, bs: &mut BlockSim<'_>) -> Result<(), SimError> {
        for l in &mut self.lenders {
            if l.kind != FlashLenderKind::Erc3156 {
                continue;
            }
            let Some(token) = l.tokens.first().copied() else { continue };
            let call = crate::contracts::FlashLender::flashFeeCall {
                token,
                amount: U256::from(10_000u32),
            };
            if let Ok(fee) = bs.call(l.address, &call)? {
                l.fee_bps = u32::try_from(fee).unwrap_or(10_000);
            }
        }
        Ok(())
    }

    /// The venue index of `address`.
    pub fn venue_index(&self, address: &Address) -> Option<usize> {
        self.by_address.get(address).copied()
    }

    /// The token with this address.
    pub fn token(&self, address: &Address) -> Option<&TokenMeta> {
        self.tokens.iter().find(|t| t.address == *address)
    }

    /// The token with this symbol.
    pub fn token_by_symbol(&self, symbol: &str) -> Option<&TokenMeta> {
        self.tokens.iter().find(|t| t.symbol == symbol)
    }

    /// Decodes venue `i` from the simulation's state (cache + overlay) with the venue's own views.
    ///
    /// # Errors
    /// [`DecodeError`] naming the venue.
    pub fn decode(
        &self,
        bs: &mut BlockSim<'_>,
        i: usize,
        trader: Address,
    ) -> Result<Pool, DecodeError> {
        let v = &self.venues[i];
        let a = v.address;
        let reverted = |call: &'static str| DecodeError::Reverted { venue: v.name.clone(), call };
        macro_rules! view {
            ($to:expr, $call:expr, $name:literal) => {
                bs.call($to, &$call)?.map_err(|_| reverted($name))?
            };
        }
        match v.kind {
            VenueKind::DodoDsp | VenueKind::DodoDvm | VenueKind::DodoDpp => {
                let kind = match v.kind {
                    VenueKind::DodoDvm => PmmKind::Dvm,
                    VenueKind::DodoDpp => PmmKind::Dpp,
                    _ => PmmKind::Dsp,
                };
                let state =
                    view!(a, IDodoV2Pool::getPMMStateForCallCall {}, "getPMMStateForCall()");
                let lp = view!(a, IDodoV2Pool::_LP_FEE_RATE_Call {}, "_LP_FEE_RATE_()");
                let fees =
                    view!(a, IDodoV2Pool::getUserFeeRateCall { user: trader }, "getUserFeeRate()");
                let base = view!(a, IDodoV2Pool::_BASE_TOKEN_Call {}, "_BASE_TOKEN_()");
                let quote = view!(a, IDodoV2Pool::_QUOTE_TOKEN_Call {}, "_QUOTE_TOKEN_()");
                let twap = match bs.call(a, &IDodoV2Pool::_IS_OPEN_TWAP_Call {})? {
                    Ok(true) => Some(view!(
                        a,
                        IDodoV2Pool::_BLOCK_TIMESTAMP_LAST_Call {},
                        "_BLOCK_TIMESTAMP_LAST_()"
                    )),
                    _ => None,
                };
                assemble(kind, a, &state, lp, fees.mtFeeRate, base, quote, twap)
                    .map(Pool::Pmm)
                    .map_err(|e| DecodeError::Inconsistent {
                        venue: v.name.clone(),
                        reason: e.to_string(),
                    })
            }
            VenueKind::UniswapV2 => {
                let t0 = view!(a, UniV2Pair::token0Call {}, "token0()");
                let t1 = view!(a, UniV2Pair::token1Call {}, "token1()");
                let r = view!(a, UniV2Pair::getReservesCall {}, "getReserves()");
                if t0 == t1 {
                    return Err(DecodeError::Inconsistent {
                        venue: v.name.clone(),
                        reason: "token0 equals token1".into(),
                    });
                }
                Ok(Pool::V2(V2Pair::new(
                    t0,
                    t1,
                    r._reserve0.saturating_to::<u128>(),
                    r._reserve1.saturating_to::<u128>(),
                )))
            }
            VenueKind::Vault => {
                let official = view!(a, ReserveVault::officialCall {}, "official()");
                let compliant = view!(a, ReserveVault::compliantCall {}, "compliant()");
                let fee_bps = view!(a, ReserveVault::feeBpsCall {}, "feeBps()");
                let paused = view!(a, ReserveVault::pausedCall {}, "paused()");
                let reserve = view!(a, ReserveVault::officialReserveCall {}, "officialReserve()");
                let supply = view!(compliant, TestToken::totalSupplyCall {}, "totalSupply()");
                Ok(Pool::Vault(VaultState {
                    compliant,
                    official,
                    official_reserve: reserve,
                    compliant_supply: supply,
                    fee_bps,
                    paused,
                }))
            }
            _ => Err(DecodeError::Unsupported(v.name.clone())),
        }
    }

    /// Enumerates the 2- and 3-hop cycles over the decoded venues (distinct venues, no token
    /// repeated inside the cycle), starting in a token some flash source lends, and indexes them
    /// by pool, with at most [`MAX_ROUTES_PER_POOL`] routes through any one pool. `anchor` names
    /// the triangle strategy's anchor token. Call after the first decode.
    pub fn enumerate_routes(&mut self, anchor: Option<Address>) {
        self.enumerate_routes_capped(anchor, MAX_ROUTES_PER_POOL);
    }

    /// [`Market::enumerate_routes`] with the per-pool cap given.
    ///
    /// Pools join in index order (configured venues first, synthetic copies after them): pool
    /// `j` adds the cycles it closes with earlier pools that still have room, so every cycle of
    /// a market whose pools stay under the cap is found, a pool's routes (what a head touching
    /// it screens) stay bounded, and the total grows linearly in the pools. A pool with many
    /// copies of its pair (the bench's synthetic pools) trades against the copies that joined
    /// before it while they have room. The work is proportional to the routes found.
    pub fn enumerate_routes_capped(&mut self, anchor: Option<Address>, cap: usize) {
        self.routes.clear();
        self.by_pool = vec![Vec::new(); self.pools.len()];
        let starts: Vec<Address> = self
            .tokens
            .iter()
            .map(|t| t.address)
            .filter(|t| self.lenders.iter().any(|l| l.tokens.contains(t)))
            .collect();
        // Directed edges of the pools that joined and still have room: by input token, and by
        // (input, output).
        let mut by_in: AddressHashMap<Vec<Edge>> = AddressHashMap::default();
        let mut by_pair: std::collections::HashMap<(Address, Address), Vec<Edge>> =
            std::collections::HashMap::new();
        let mut count = vec![0usize; self.pools.len()];
        let mut cycles: Vec<SmallVec<[Edge; 3]>> = Vec::new();
        for j in 0..self.pools.len() {
            if !self.decoded[j] {
                continue;
            }
            let (b, q) = self.pools[j].tokens();
            cycles.clear();
            for e in [Edge::new(j, Side::SellBase, b, q), Edge::new(j, Side::SellQuote, q, b)] {
                // Two hops: back through one earlier pool of the pair.
                for g in by_pair.get(&(e.out, e.inp)).into_iter().flatten() {
                    cycles.push(SmallVec::from_slice(&[e, *g]));
                }
                // Three hops: e.out → t → e.inp through two earlier pools.
                for f in by_in.get(&e.out).into_iter().flatten() {
                    if f.out == e.inp {
                        continue;
                    }
                    for g in by_pair.get(&(f.out, e.inp)).into_iter().flatten() {
                        if g.pool != f.pool {
                            cycles.push(SmallVec::from_slice(&[e, *f, *g]));
                        }
                    }
                }
            }
            for cycle in &cycles {
                if cycle.iter().any(|e| count[e.pool] >= cap) {
                    continue;
                }
                // Every rotation that starts in a lent token is a route.
                for (r, first) in cycle.iter().enumerate() {
                    if !starts.contains(&first.inp) {
                        continue;
                    }
                    let hops: SmallVec<[RouteHop; 3]> = (0..cycle.len())
                        .map(|k| cycle[(r + k) % cycle.len()])
                        .map(|e| RouteHop::new(e.pool, e.side))
                        .collect();
                    if self.push_route(&hops, anchor) {
                        for e in cycle {
                            count[e.pool] += 1;
                        }
                    }
                }
                // Full pools take no more cycles: out of the edge lists (both directions).
                for e in cycle.iter().filter(|e| count[e.pool] >= cap && e.pool != j) {
                    let full = e.pool;
                    for (x, y) in [(e.inp, e.out), (e.out, e.inp)] {
                        by_in.entry(x).or_default().retain(|f| f.pool != full);
                        by_pair.entry((x, y)).or_default().retain(|f| f.pool != full);
                    }
                }
            }
            if count[j] < cap {
                for e in [Edge::new(j, Side::SellBase, b, q), Edge::new(j, Side::SellQuote, q, b)] {
                    by_in.entry(e.inp).or_default().push(e);
                    by_pair.entry((e.inp, e.out)).or_default().push(e);
                }
            }
        }
    }

    /// The routes through pool `i` (indices into [`Market::routes`]).
    pub fn routes_through(&self, i: usize) -> &[u32] {
        self.by_pool.get(i).map_or(&[], Vec::as_slice)
    }

    /// Builds, labels and indexes one route; false when it is not a valid, fundable cycle.
    fn push_route(&mut self, hops: &[RouteHop], anchor: Option<Address>) -> bool {
        debug_assert!(hops.len() <= MAX_HOPS);
        let Ok(route) = Route::new(&self.pools, hops) else { return false };
        let Some(flash) = self.flash_for(&route) else { return false };
        let strategy = if hops.iter().any(|h| matches!(self.pools[h.pool], Pool::Vault(_))) {
            StrategyKind::Depeg
        } else if anchor.is_some_and(|x| {
            hops.iter().any(|h| {
                let (b, q) = self.pools[h.pool].tokens();
                b == x || q == x
            })
        }) {
            StrategyKind::Triangle
        } else {
            StrategyKind::Depeg
        };
        let label = self.label(&route);
        let key = RouteKey::from_pools(
            &hops
                .iter()
                .map(|h| ChainAddress {
                    chain_id: self.chain_id,
                    address: self.venues[h.pool].address,
                })
                .collect::<SmallVec<[_; MAX_HOPS]>>(),
        );
        let idx = u32::try_from(self.routes.len()).unwrap_or(u32::MAX);
        // A cycle visits distinct pools, so each hop's pool gets the route once.
        for h in hops {
            self.by_pool[h.pool].push(idx);
        }
        let flash_fee_bps = flash
            .source()
            .and_then(|a| self.lenders.iter().find(|l| l.address == a))
            .map_or(0, |l| l.fee_bps);
        self.routes.push(RouteEntry { route, strategy, flash, label, key, flash_fee_bps });
        true
    }

    /// The venues whose decoded state `touched` (addresses a block touched) may have changed:
    /// the venues at those addresses, and the vaults whose tokens they include (a vault's state
    /// is partly its tokens': the compliant supply, the official reserve). A pool's own reserves
    /// live in its own storage, so a transfer of its tokens elsewhere does not change it.
    /// Sorted, without duplicates.
    pub fn venues_touched(&self, touched: &[Address]) -> Vec<usize> {
        let mut out: Vec<usize> = touched
            .iter()
            .filter_map(|a| self.venue_index(a))
            .chain(self.venues.iter().enumerate().filter_map(|(i, v)| {
                (v.kind == VenueKind::Vault
                    && (touched.binary_search(&v.base).is_ok()
                        || touched.binary_search(&v.quote).is_ok()))
                .then_some(i)
            }))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The route's pools and venue addresses as tables of their own (hop `k` names entry `k`),
    /// with the route re-indexed into them: what [`build_route`](crate::sim::build_route) needs,
    /// without copying the whole pool table.
    pub fn local_tables(&self, route: &Route) -> Option<(Vec<Pool>, Vec<Address>, Route)> {
        let pools: Vec<Pool> =
            route.hops().iter().map(|h| self.pools.get(h.pool).cloned()).collect::<Option<_>>()?;
        let addresses = route.hops().iter().map(|h| self.venues[h.pool].address).collect();
        let hops: SmallVec<[RouteHop; MAX_HOPS]> =
            route.hops().iter().enumerate().map(|(k, h)| RouteHop::new(k, h.side)).collect();
        let local = Route::new(&pools, &hops).ok()?;
        Some((pools, addresses, local))
    }

    /// The flash source for a route: an ERC-3156 lender of its token, else a DODO pool or V2 pair
    /// not on the route that lends it, else none.
    fn flash_for(&self, route: &Route) -> Option<FlashPlan> {
        let token = route.token();
        let on_route = |a: &Address| route.hops().iter().any(|h| self.venues[h.pool].address == *a);
        let lends = |l: &&LenderMeta| l.tokens.contains(&token) && !on_route(&l.address);
        let pick = |k: FlashLenderKind| self.lenders.iter().filter(lends).find(|l| l.kind == k);
        if let Some(l) = pick(FlashLenderKind::Erc3156) {
            return Some(FlashPlan::Erc3156(l.address));
        }
        if let Some(l) = pick(FlashLenderKind::Dodo) {
            return Some(FlashPlan::Dodo(l.address));
        }
        pick(FlashLenderKind::UniswapV2).map(|l| FlashPlan::UniV2(l.address))
    }

    fn label(&self, route: &Route) -> String {
        let sym = |a: Address| self.token(&a).map_or_else(|| a.to_string(), |t| t.symbol.clone());
        let mut s = sym(route.token());
        for h in route.hops() {
            let (b, q) = self.pools[h.pool].tokens();
            let out = if h.side == Side::SellBase { q } else { b };
            s.push_str(&format!(" > {} > {}", self.venues[h.pool].name, sym(out)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn tok(n: u8) -> Address {
        Address::with_last_byte(n)
    }

    /// Tokens 1..=4 (all lent), pools over `pairs` (V2 pairs at par), in order.
    fn market(pairs: &[(u8, u8)]) -> Market {
        let mut m = Market { chain_id: 1, ..Market::default() };
        m.tokens = (1..=4)
            .map(|n| TokenMeta {
                symbol: format!("T{n}"),
                address: tok(n),
                decimals: 18,
                usd_price: 1.0,
            })
            .collect();
        m.lenders = vec![LenderMeta {
            kind: FlashLenderKind::Erc3156,
            address: tok(0xfe),
            tokens: (1..=4).map(tok).collect(),
            fee_bps: 5,
        }];
        for (i, (b, q)) in pairs.iter().enumerate() {
            let address = Address::from_word(alloy::primitives::keccak256(i.to_be_bytes()));
            m.by_address.insert(address, m.venues.len());
            m.venues.push(VenueMeta {
                name: format!("p{i}"),
                address,
                kind: VenueKind::UniswapV2,
                base: tok(*b),
                quote: tok(*q),
            });
            m.pools.push(Pool::V2(V2Pair::new(tok(*b), tok(*q), 10u128.pow(24), 10u128.pow(24))));
            m.decoded.push(true);
        }
        m
    }

    /// Every directed 2- and 3-hop cycle over distinct pools starting in a lent token, by brute
    /// force (what the enumeration finds when no pool reaches the cap).
    fn brute(m: &Market) -> BTreeSet<Vec<(usize, bool)>> {
        let edges: Vec<(usize, Side, Address, Address)> = (0..m.pools.len())
            .flat_map(|i| {
                let (b, q) = m.pools[i].tokens();
                [(i, Side::SellBase, b, q), (i, Side::SellQuote, q, b)]
            })
            .collect();
        let key = |es: &[&(usize, Side, Address, Address)]| {
            es.iter().map(|e| (e.0, e.1 == Side::SellBase)).collect::<Vec<_>>()
        };
        let mut out = BTreeSet::new();
        for s in (1..=4).map(tok) {
            for e1 in edges.iter().filter(|e| e.2 == s) {
                for e2 in edges.iter().filter(|e| e.2 == e1.3 && e.0 != e1.0) {
                    if e2.3 == s {
                        out.insert(key(&[e1, e2]));
                        continue;
                    }
                    for e3 in edges
                        .iter()
                        .filter(|e| e.2 == e2.3 && e.3 == s && e.0 != e1.0 && e.0 != e2.0)
                    {
                        out.insert(key(&[e1, e2, e3]));
                    }
                }
            }
        }
        out
    }

    fn found(m: &Market) -> BTreeSet<Vec<(usize, bool)>> {
        m.routes
            .iter()
            .map(|r| r.route.hops().iter().map(|h| (h.pool, h.side == Side::SellBase)).collect())
            .collect()
    }

    #[test]
    fn under_the_cap_every_cycle_is_found_once() {
        // A triangle 1-2-3 with a second 1/2 pool and a 3/4 spur.
        let mut m = market(&[(1, 2), (2, 3), (3, 1), (1, 2), (3, 4), (2, 1)]);
        m.enumerate_routes(None);
        let expect = brute(&m);
        assert_eq!(found(&m), expect);
        assert_eq!(m.routes.len(), expect.len(), "no duplicates");
        for (i, r) in m.routes.iter().enumerate() {
            for h in r.route.hops() {
                assert!(m.routes_through(h.pool).contains(&(i as u32)));
            }
        }
        let indexed: usize = m.by_pool.iter().map(Vec::len).sum();
        let hops: usize = m.routes.iter().map(|r| r.route.hops().len()).sum();
        assert_eq!(indexed, hops);
    }

    #[test]
    fn copies_of_a_pair_grow_the_routes_linearly_with_a_bounded_index() {
        let base = [(1u8, 2u8), (2, 3), (3, 1)];
        let sizes: Vec<(usize, usize)> = [100usize, 1_000, 4_000]
            .iter()
            .map(|copies| {
                let mut pairs = base.to_vec();
                pairs.extend(std::iter::repeat_n((1, 2), *copies));
                let mut m = market(&pairs);
                m.enumerate_routes(None);
                assert!(
                    m.by_pool.iter().all(|r| r.len() <= MAX_ROUTES_PER_POOL + 3),
                    "per-pool routes bounded"
                );
                // Every copy trades: it joins cycles with the copies before it.
                assert!(m.by_pool.iter().all(|r| !r.is_empty()));
                // The real triangle is still there.
                let triangle = brute(&market(&base));
                assert!(triangle.is_subset(&found(&m)));
                (m.pools.len(), m.routes.len())
            })
            .collect();
        for (pools, routes) in &sizes {
            assert!(*routes <= pools * MAX_ROUTES_PER_POOL, "{sizes:?}");
        }
        // Linear: 40× the pools, about 40× the routes (not 1,600×).
        let ratio = sizes[2].1 as f64 / sizes[0].1 as f64;
        let pools_ratio = sizes[2].0 as f64 / sizes[0].0 as f64;
        assert!(ratio < pools_ratio * 1.5, "{sizes:?}");
    }

    #[test]
    fn a_token_transfer_touches_only_the_vaults_of_that_token() {
        let mut m = market(&[(1, 2), (2, 3)]);
        m.venues.push(VenueMeta {
            name: "vault".into(),
            address: tok(0xaa),
            kind: VenueKind::Vault,
            base: tok(2),
            quote: tok(3),
        });
        m.by_address.insert(tok(0xaa), 2);
        let mut touched = vec![tok(2), m.venues[0].address];
        touched.sort();
        assert_eq!(m.venues_touched(&touched), vec![0, 2]);
        assert_eq!(m.venues_touched(&[tok(9)]), Vec::<usize>::new());
    }
}
