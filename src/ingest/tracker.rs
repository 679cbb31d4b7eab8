//! [`HeadTracker`]: pure head-chain logic. It decides what to emit and what to fetch; a driver
//! performs the fetches and feeds the results back.

use std::collections::VecDeque;

use alloy::primitives::B256;

use super::{BlockRef, Event, Head, ResyncReason};

/// Default number of recent block hashes kept.
pub const DEFAULT_WINDOW: usize = 128;

/// What the driver must do after feeding the tracker: emit `events` in order, then, when `fetch`
/// is set, fetch the block with that hash and pass the result to [`HeadTracker::on_fetched`].
#[derive(Debug, Default)]
pub struct Step {
    /// Events to emit now, in order.
    pub events: Vec<Event>,
    /// A block to fetch by hash (the parent of the branch being resolved).
    pub fetch: Option<B256>,
    /// How many of the heads in `events` came from fetches (gap or branch backfill).
    pub backfilled: u32,
    /// The head fed in was already known and was dropped.
    pub duplicate: bool,
}

/// Follows one chain's canonical heads as the node reports them.
///
/// Heads may arrive duplicated, out of order, with gaps or on a fork. The tracker keeps the last
/// `window` blocks of the chain it has emitted (contiguous, oldest first) and, for each new head:
/// - drops it when its hash is already known (duplicate, or an older head arriving late);
/// - extends the chain when its parent is the tip;
/// - otherwise walks back from it, asking for each missing parent by hash, until a parent is on
///   its chain: if that ancestor is the tip it was a gap, and the fetched blocks are emitted in
///   order before the new head; if it is below the tip it was a reorg, and it emits
///   [`Event::Reorg`] (depth and common ancestor) and then the new branch in order;
/// - emits [`Event::Resync`] and restarts from the new head when the branch does not join within
///   the window (a deep reorg), a gap is longer than the window, or a parent cannot be fetched.
///
/// The newest head reported by the node is taken as canonical, whatever its number.
#[derive(Debug, Clone)]
pub struct HeadTracker {
    chain_id: u64,
    window: usize,
    chain: VecDeque<BlockRef>,
    /// Branch being resolved, newest first.
    branch: Vec<Head>,
    fetched: u32,
}

impl HeadTracker {
    /// A tracker for `chain_id` keeping `window` hashes (at least 2), with no history: the first
    /// head is accepted as is.
    pub fn new(chain_id: u64, window: usize) -> Self {
        Self {
            chain_id,
            window: window.max(2),
            chain: VecDeque::new(),
            branch: Vec::new(),
            fetched: 0,
        }
    }

    /// A tracker that resumes after `last`, the last head emitted before a restart: the next head
    /// backfills everything after it.
    pub fn resume(chain_id: u64, window: usize, last: BlockRef) -> Self {
        let mut t = Self::new(chain_id, window);
        t.chain.push_back(last);
        t
    }

    /// The chain id.
    pub const fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The last head emitted.
    pub fn tip(&self) -> Option<BlockRef> {
        self.chain.back().copied()
    }

    /// The hash emitted at `number`, if still in the window.
    pub fn hash_at(&self, number: u64) -> Option<B256> {
        let front = self.chain.front()?.number;
        let i = usize::try_from(number.checked_sub(front)?).ok()?;
        self.chain.get(i).map(|b| b.hash)
    }

    /// Whether a fetch is outstanding.
    pub fn is_resolving(&self) -> bool {
        !self.branch.is_empty()
    }

    /// Feeds a head from the subscription (or a "latest" poll). A resolution still in progress is
    /// abandoned: the new head walks back on its own.
    pub fn on_head(&mut self, head: Head) -> Step {
        self.branch.clear();
        self.fetched = 0;
        if self.hash_at(head.number) == Some(head.hash) {
            return Step { duplicate: true, ..Step::default() };
        }
        self.branch.push(head);
        self.resolve()
    }

    /// Feeds the block fetched for the hash of the last [`Step::fetch`]; `None` when it could not
    /// be fetched (unknown to the node, or errors after retries), which ends in a resync.
    pub fn on_fetched(&mut self, block: Option<Head>) -> Step {
        let Some(wanted) = self.branch.last().map(|h| h.parent_hash) else {
            return Step::default();
        };
        match block {
            Some(b) if b.hash == wanted => {
                self.fetched += 1;
                self.branch.push(b);
                self.resolve()
            }
            _ => self.restart(ResyncReason::BackfillFailed { hash: wanted }),
        }
    }

    fn resolve(&mut self) -> Step {
        let Some(oldest) = self.branch.last() else {
            return Step::default();
        };
        let (Some(tip), Some(front)) = (self.chain.back().copied(), self.chain.front().copied())
        else {
            // No history: accept the branch as it is.
            return self.accept(None);
        };
        let Some(parent_number) = oldest.number.checked_sub(1) else {
            return self.restart(ResyncReason::DeepReorg { below: front.number });
        };
        if self.hash_at(parent_number) == Some(oldest.parent_hash) {
            let ancestor = BlockRef { number: parent_number, hash: oldest.parent_hash };
            return self.accept(Some((ancestor, tip)));
        }
        if parent_number > tip.number {
            // A gap above the tip.
            let missing = parent_number - tip.number;
            if missing > self.window as u64 {
                return self
                    .restart(ResyncReason::GapTooLarge { from: tip.number, to: oldest.number });
            }
        } else if parent_number < front.number || self.branch.len() > self.window {
            // The branch forks below everything we remember.
            return self.restart(ResyncReason::DeepReorg { below: front.number });
        }
        Step { fetch: Some(oldest.parent_hash), ..Step::default() }
    }

    /// Emits the resolved branch on top of `ancestor` (`None`: no history).
    fn accept(&mut self, joined: Option<(BlockRef, BlockRef)>) -> Step {
        let mut events = Vec::with_capacity(self.branch.len() + 1);
        if let Some((ancestor, tip)) = joined
            && ancestor.number < tip.number
        {
            while self.chain.back().is_some_and(|b| b.number > ancestor.number) {
                self.chain.pop_back();
            }
            events.push(Event::Reorg {
                chain_id: self.chain_id,
                depth: tip.number - ancestor.number,
                common_ancestor: ancestor,
            });
        }
        for head in self.branch.drain(..).rev() {
            self.chain.push_back(head.block_ref());
            events.push(Event::Head(head));
        }
        while self.chain.len() > self.window {
            self.chain.pop_front();
        }
        let backfilled = std::mem::take(&mut self.fetched);
        Step { events, fetch: None, backfilled, duplicate: false }
    }

    /// Forgets the history and restarts from the newest head of the branch.
    fn restart(&mut self, reason: ResyncReason) -> Step {
        self.chain.clear();
        self.fetched = 0;
        let newest = if self.branch.is_empty() { None } else { Some(self.branch.swap_remove(0)) };
        self.branch.clear();
        let mut events = vec![Event::Resync { chain_id: self.chain_id, reason }];
        if let Some(h) = newest {
            self.chain.push_back(h.block_ref());
            events.push(Event::Head(h));
        }
        Step { events, ..Step::default() }
    }
}
