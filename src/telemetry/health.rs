//! Readiness: shared atomics per chain plus the halt flag. See the module docs for the rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// Head lag budget used by [`Health::with_default_budget`], in blocks.
pub const DEFAULT_MAX_HEAD_LAG_BLOCKS: u64 = 2;

#[derive(Debug)]
struct ChainState {
    name: String,
    max_head_lag_blocks: u64,
    connected: AtomicBool,
    head_lag_blocks: AtomicU64,
    cache_fresh: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    chains: Vec<ChainState>,
    halted: AtomicBool,
}

/// The health every stage reports into and `/health` reads. Cloning shares it. A chain starts
/// disconnected with a stale cache, so the process is not ready until ingest says otherwise.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

/// One chain's setters, for its ingest task and the engine.
#[derive(Debug, Clone)]
pub struct ChainHealth {
    health: Health,
    index: usize,
}

/// One chain in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainStatus {
    /// The chain's configured name.
    pub chain: String,
    /// The WS subscription is up.
    pub connected: bool,
    /// Blocks between the node's head and the head the engine has applied.
    pub head_lag_blocks: u64,
    /// The budget for `head_lag_blocks`.
    pub max_head_lag_blocks: u64,
    /// The fork cache holds the state of the current head.
    pub cache_fresh: bool,
    /// All three hold.
    pub ready: bool,
}

/// What `/health` answers (as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// Every chain ready and not halted.
    pub ready: bool,
    /// The kill switch is engaged.
    pub halted: bool,
    /// Per chain.
    pub chains: Vec<ChainStatus>,
    /// Why not ready, one line each (empty when ready).
    pub reasons: Vec<String>,
}

impl Health {
    /// Health for `chains`, each `(name, max head lag in blocks)`.
    pub fn new<'a>(chains: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let chains = chains
            .into_iter()
            .map(|(name, max_head_lag_blocks)| ChainState {
                name: name.to_owned(),
                max_head_lag_blocks,
                connected: AtomicBool::new(false),
                head_lag_blocks: AtomicU64::new(0),
                cache_fresh: AtomicBool::new(false),
            })
            .collect();
        Self { inner: Arc::new(Inner { chains, halted: AtomicBool::new(false) }) }
    }

    /// Health for `names` with a head lag budget of [`DEFAULT_MAX_HEAD_LAG_BLOCKS`].
    pub fn with_default_budget<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self::new(names.into_iter().map(|n| (n, DEFAULT_MAX_HEAD_LAG_BLOCKS)))
    }

    /// The setters of chain `name`; `None` if it was not registered.
    pub fn chain(&self, name: &str) -> Option<ChainHealth> {
        let index = self.inner.chains.iter().position(|c| c.name == name)?;
        Some(ChainHealth { health: self.clone(), index })
    }

    /// Engages (`true`) or re-arms (`false`) the halt flag.
    pub fn set_halted(&self, halted: bool) {
        self.inner.halted.store(halted, Ordering::Relaxed);
    }

    /// Whether the halt flag is engaged.
    pub fn is_halted(&self) -> bool {
        self.inner.halted.load(Ordering::Relaxed)
    }

    /// The current state and, when not ready, every reason.
    pub fn report(&self) -> HealthReport {
        let halted = self.is_halted();
        let mut reasons = Vec::new();
        if self.inner.chains.is_empty() {
            reasons.push("no chains registered".to_owned());
        }
        if halted {
            reasons.push("halted: the kill switch is engaged".to_owned());
        }
        let chains = self
            .inner
            .chains
            .iter()
            .map(|c| {
                let connected = c.connected.load(Ordering::Relaxed);
                let head_lag_blocks = c.head_lag_blocks.load(Ordering::Relaxed);
                let cache_fresh = c.cache_fresh.load(Ordering::Relaxed);
                if !connected {
                    reasons.push(format!("{}: not connected", c.name));
                }
                if head_lag_blocks > c.max_head_lag_blocks {
                    reasons.push(format!(
                        "{}: {head_lag_blocks} blocks behind head (budget {})",
                        c.name, c.max_head_lag_blocks
                    ));
                }
                if !cache_fresh {
                    reasons.push(format!("{}: state cache stale", c.name));
                }
                ChainStatus {
                    chain: c.name.clone(),
                    connected,
                    head_lag_blocks,
                    max_head_lag_blocks: c.max_head_lag_blocks,
                    cache_fresh,
                    ready: connected && head_lag_blocks <= c.max_head_lag_blocks && cache_fresh,
                }
            })
            .collect();
        HealthReport { ready: reasons.is_empty(), halted, chains, reasons }
    }
}

impl ChainHealth {
    fn state(&self) -> &ChainState {
        &self.health.inner.chains[self.index]
    }

    /// The WS subscription came up (`true`) or went down (`false`).
    pub fn set_connected(&self, connected: bool) {
        self.state().connected.store(connected, Ordering::Relaxed);
    }

    /// Blocks between the node's head and the head the engine has applied.
    pub fn set_head_lag_blocks(&self, lag: u64) {
        self.state().head_lag_blocks.store(lag, Ordering::Relaxed);
    }

    /// The fork cache holds (`true`) or no longer holds (`false`) the current head's state.
    pub fn set_cache_fresh(&self, fresh: bool) {
        self.state().cache_fresh.store(fresh, Ordering::Relaxed);
    }

    /// The chain's name.
    pub fn name(&self) -> &str {
        &self.state().name
    }
}
