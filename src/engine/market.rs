//! One chain's tradable world: tokens, venues (interned to dense indices), their native states,
//! flash sources, and every candidate route with the index of routes per pool.

use alloy::primitives::{Address, U256, map::AddressHashMap};

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

    /// Enumerates every 2- and 3-hop cycle over the decoded venues (distinct venues, no token
    /// repeated inside the cycle), starting in a token some flash source lends, and indexes them by
    /// pool. `anchor` names the triangle strategy's anchor token. Call after the first decode.
    pub fn enumerate_routes(&mut self, anchor: Option<Address>) {
        self.routes.clear();
        self.by_pool = vec![Vec::new(); self.pools.len()];
        let edges: Vec<(usize, Side, Address, Address)> = (0..self.pools.len())
            .filter(|i| self.decoded[*i])
            .flat_map(|i| {
                let (b, q) = self.pools[i].tokens();
                [(i, Side::SellBase, b, q), (i, Side::SellQuote, q, b)]
            })
            .collect();
        let starts: Vec<Address> = self
            .tokens
            .iter()
            .map(|t| t.address)
            .filter(|t| self.lenders.iter().any(|l| l.tokens.contains(t)))
            .collect();
        let mut found: Vec<Vec<RouteHop>> = Vec::new();
        for s in &starts {
            for e1 in edges.iter().filter(|e| e.2 == *s) {
                for e2 in edges.iter().filter(|e| e.2 == e1.3 && e.0 != e1.0) {
                    if e2.3 == *s {
                        found.push(vec![RouteHop::new(e1.0, e1.1), RouteHop::new(e2.0, e2.1)]);
                        continue;
                    }
                    for e3 in edges
                        .iter()
                        .filter(|e| e.2 == e2.3 && e.3 == *s && e.0 != e1.0 && e.0 != e2.0)
                    {
                        found.push(vec![
                            RouteHop::new(e1.0, e1.1),
                            RouteHop::new(e2.0, e2.1),
                            RouteHop::new(e3.0, e3.1),
                        ]);
                    }
                }
            }
        }
        for hops in found {
            debug_assert!(hops.len() <= MAX_HOPS);
            let Ok(route) = Route::new(&self.pools, &hops) else { continue };
            let Some(flash) = self.flash_for(&route) else { continue };
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
                    .collect::<Vec<_>>(),
            );
            let idx = u32::try_from(self.routes.len()).unwrap_or(u32::MAX);
            for h in &hops {
                if !self.by_pool[h.pool].contains(&idx) {
                    self.by_pool[h.pool].push(idx);
                }
            }
            let flash_fee_bps = flash
                .source()
                .and_then(|a| self.lenders.iter().find(|l| l.address == a))
                .map_or(0, |l| l.fee_bps);
            self.routes.push(RouteEntry { route, strategy, flash, label, key, flash_fee_bps });
        }
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
