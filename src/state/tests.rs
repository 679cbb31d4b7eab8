use alloy::primitives::{Address, B256, Bytes, U256};

use super::*;

fn block(n: u64, tag: u8, parent: &BlockRef) -> BlockRef {
    BlockRef {
        number: n,
        hash: B256::repeat_byte(tag),
        parent_hash: parent.hash,
        timestamp: 1_000 + n,
        ..Default::default()
    }
}

fn slot_update(head: BlockRef, writes: &[(u8, u64, u64)]) -> StateUpdate {
    StateUpdate {
        head,
        slots: writes
            .iter()
            .map(|(a, s, v)| (Address::repeat_byte(*a), U256::from(*s), U256::from(*v)))
            .collect(),
        blocks: 1,
        ..Default::default()
    }
}

fn base() -> (ForkCache, BlockRef) {
    let mut c = ForkCache::new(CacheLimits { max_slots: 1_000, idle_blocks: 10, reorg_window: 4 });
    let genesis = BlockRef { number: 10, hash: B256::repeat_byte(10), ..Default::default() };
    let mut u = slot_update(genesis, &[(1, 1, 100), (1, 2, 200), (2, 1, 5)]);
    u.full = true;
    u.accounts = vec![AccountRead {
        address: Address::repeat_byte(1),
        balance: U256::from(7),
        nonce: 1,
        code: Some(Bytes::from_static(&[0x60, 0x00])),
    }];
    c.apply(&u).expect("full applies");
    (c, genesis)
}

fn get(c: &ForkCache, a: u8, s: u64) -> Option<u64> {
    c.storage(&Address::repeat_byte(a), &U256::from(s)).map(|v| v.to::<u64>())
}

#[test]
fn a_reorg_rolls_back_exactly_the_orphaned_writes() {
    let (mut c, g) = base();
    let b11 = block(11, 11, &g);
    let b12 = block(12, 12, &b11);
    c.apply(&slot_update(b11, &[(1, 1, 101), (3, 9, 9)])).expect("11");
    c.apply(&slot_update(b12, &[(1, 2, 202)])).expect("12");
    assert_eq!((get(&c, 1, 1), get(&c, 1, 2), get(&c, 3, 9)), (Some(101), Some(202), Some(9)));

    // A competing 11' on top of 10: the orphaned writes go, including the slot that only 11 added.
    let b11b = block(11, 0xb1, &g);
    let mut u = slot_update(b11b, &[(1, 1, 150)]);
    u.ancestor = Some(g);
    let out = c.apply(&u).expect("reorg applies");
    assert_eq!(out.rolled_back, 2);
    assert_eq!((get(&c, 1, 1), get(&c, 1, 2), get(&c, 3, 9)), (Some(150), Some(200), None));
    assert_eq!(c.stats().reorgs, 1);
    assert!(c.is_fresh_at(b11b.hash));
}

#[test]
fn an_update_that_does_not_extend_the_head_is_refused_and_marks_stale() {
    let (mut c, g) = base();
    let stranger = block(11, 11, &BlockRef { hash: B256::repeat_byte(0xee), ..g });
    let err = c.apply(&slot_update(stranger, &[(1, 1, 1)])).expect_err("refused");
    assert!(matches!(err, ApplyError::ParentMismatch { .. }));
    assert!(!c.is_fresh());
    assert_eq!(get(&c, 1, 1), Some(100), "nothing applied");
    assert_eq!(c.head().map(|h| h.number), Some(10));
}

#[test]
fn a_reorg_deeper_than_the_window_is_refused() {
    let (mut c, g) = base();
    let mut parent = g;
    for n in 11..=16 {
        let b = block(n, n as u8, &parent);
        c.apply(&slot_update(b, &[(1, 1, n)])).expect("applies");
        parent = b;
    }
    let mut u = slot_update(block(11, 0xb1, &g), &[]);
    u.ancestor = Some(g);
    assert!(matches!(c.apply(&u), Err(ApplyError::AncestorUnknown { .. })));
    assert!(!c.is_fresh());
}

#[test]
fn samples_that_differ_mark_the_cache_stale_until_a_full_read() {
    let (mut c, g) = base();
    let b11 = block(11, 11, &g);
    let mut u = slot_update(b11, &[]);
    u.samples = vec![(Address::repeat_byte(2), U256::from(1), U256::from(6))];
    let out = c.apply(&u).expect("applies");
    assert_eq!(out.divergences, 1);
    assert!(!c.is_fresh());
    let mut full = slot_update(block(12, 12, &b11), &[(2, 1, 6)]);
    full.full = true;
    c.apply(&full).expect("full");
    assert!(c.is_fresh());
}

#[test]
fn a_full_read_writes_and_reports_only_what_changed() {
    let (mut c, g) = base();
    let b11 = block(11, 11, &g);
    // Slot (1,1) and account 1 as held; slot (2,1) moved; slot (3,1) new.
    let mut full = slot_update(b11, &[(1, 1, 100), (2, 1, 6), (3, 1, 1)]);
    full.full = true;
    full.accounts = vec![AccountRead {
        address: Address::repeat_byte(1),
        balance: U256::from(7),
        nonce: 1,
        code: Some(Bytes::from_static(&[0x60, 0x00])),
    }];
    let out = c.apply(&full).expect("full");
    assert_eq!(out.changed, vec![Address::repeat_byte(2), Address::repeat_byte(3)]);
    assert_eq!(out.written, 2);
    assert_eq!((get(&c, 1, 1), get(&c, 2, 1), get(&c, 3, 1)), (Some(100), Some(6), Some(1)));
    assert_eq!(c.head().map(|h| h.number), Some(11));
    // A new balance or code is a change too.
    let mut full = slot_update(block(12, 12, &b11), &[]);
    full.full = true;
    full.accounts = vec![AccountRead {
        address: Address::repeat_byte(1),
        balance: U256::from(8),
        nonce: 1,
        code: None,
    }];
    assert_eq!(c.apply(&full).expect("full").changed, vec![Address::repeat_byte(1)]);
    assert_eq!(c.account(&Address::repeat_byte(1)).map(|a| a.balance), Some(U256::from(8)));
    full.accounts[0].code = Some(Bytes::from_static(&[0x60, 0x01]));
    assert_eq!(c.apply(&full).expect("full").changed, vec![Address::repeat_byte(1)]);
    full.accounts[0].code = Some(Bytes::from_static(&[0x60, 0x01]));
    assert!(c.apply(&full).expect("full").changed.is_empty(), "same code, same balance");
}

#[test]
fn eviction_drops_idle_unpinned_accounts_and_respects_the_slot_cap() {
    let (mut c, g) = base();
    c.pin(Address::repeat_byte(1));
    let mut parent = g;
    for n in 11..=30 {
        let b = block(n, n as u8, &parent);
        c.apply(&slot_update(b, &[(0x40 + (n as u8 % 4), n, n)])).expect("applies");
        parent = b;
    }
    c.touch(&[Address::repeat_byte(0x40 + 2)], 30);
    let gone = c.evict();
    assert!(gone.contains(&Address::repeat_byte(2)), "idle since block 10");
    assert!(!gone.contains(&Address::repeat_byte(1)), "pinned");
    assert!(!gone.contains(&Address::repeat_byte(0x42)), "used at block 30");
    assert_eq!(
        c.stats().slots,
        c.keys().iter().filter(|k| matches!(k, StateKey::Slot(..))).count()
    );

    // Over the cap: least recently used first, pinned never.
    let mut tight =
        ForkCache::new(CacheLimits { max_slots: 3, idle_blocks: 1_000, reorg_window: 4 });
    let mut u = slot_update(g, &[(1, 1, 1), (1, 2, 2), (5, 1, 1), (6, 1, 1), (6, 2, 2)]);
    u.full = true;
    tight.apply(&u).expect("full");
    tight.pin(Address::repeat_byte(1));
    tight.touch(&[Address::repeat_byte(6)], 10);
    let gone = tight.evict();
    assert_eq!(gone.len(), 2);
    assert!(
        tight.stats().slots <= 3
            || tight.keys().iter().all(|k| k.address() == Address::repeat_byte(1))
    );
}

#[test]
fn the_view_reads_through_the_overlay_and_records_misses() {
    use revm::Database;
    let (c, _) = base();
    let mut v = c.view();
    let a = Address::repeat_byte(1);
    assert_eq!(v.storage(a, U256::from(1)), Ok(U256::from(100)));
    v.set_storage_override(a, U256::from(1), U256::from(5));
    assert_eq!(v.storage(a, U256::from(1)), Ok(U256::from(5)));
    assert!(matches!(v.storage(a, U256::from(99)), Err(StateError::Cold(_))));
    assert!(matches!(v.basic(Address::repeat_byte(9)), Err(StateError::Cold(_))));
    assert_eq!(v.misses().len(), 2);
    v.clear_overlay();
    assert_eq!(v.storage(a, U256::from(1)), Ok(U256::from(100)));
    v.set_discovery(true);
    assert_eq!(v.storage(a, U256::from(77)), Ok(U256::ZERO));
    assert_eq!(v.basic(Address::repeat_byte(8)), Ok(None));
    assert_eq!(v.take_misses().len(), 4);
    let info = v.basic(a).expect("held").expect("exists");
    assert_eq!((info.balance, info.nonce), (U256::from(7), 1));
    assert_eq!(v.code_by_hash(info.code_hash).map(|c| c.original_bytes().len()), Ok(2));
}

/// A state source answering every key with zero, recording what it was asked.
#[derive(Debug, Default)]
struct MemSource {
    blocks: Vec<BlockInfo>,
    reads: std::sync::Mutex<Vec<ReadRequest>>,
}

impl StateSource for MemSource {
    async fn block(&self, hash: B256) -> Result<BlockInfo, SourceError> {
        self.blocks.iter().find(|b| b.block.hash == hash).cloned().ok_or_else(|| {
            SourceError::UnknownBlock { block: hash.to_string(), detail: "not in the test".into() }
        })
    }

    async fn latest(&self) -> Result<BlockInfo, SourceError> {
        Ok(self.blocks[0].clone())
    }

    async fn read(&self, _at: B256, req: &ReadRequest) -> Result<ReadSet, SourceError> {
        self.reads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(req.clone());
        Ok(ReadSet {
            accounts: req
                .accounts
                .iter()
                .map(|(a, code)| AccountRead {
                    address: *a,
                    code: code.then(Bytes::new),
                    ..Default::default()
                })
                .collect(),
            slots: req.slots.iter().map(|(a, s)| (*a, *s, U256::ZERO)).collect(),
        })
    }
}

/// A head that touches a token re-reads the balance slots of the holders its logs name, the
/// token's other slots and the balances of holders it cannot place, and skips the balances of
/// declared holders it does not name; a block recorded without named holders is read whole.
#[test]
fn a_token_touched_by_a_head_rereads_only_the_holders_its_logs_name() {
    let (token, named, quiet, victim) = (
        Address::repeat_byte(0x70),
        Address::repeat_byte(1),
        Address::repeat_byte(2),
        Address::repeat_byte(3),
    );
    let slot_of = |h: Address| U256::from_be_bytes(alloy::primitives::keccak256(h).0);
    let supply = U256::from(2);
    let genesis = BlockRef { number: 1, hash: B256::repeat_byte(1), ..Default::default() };
    let b2 = block(2, 2, &genesis);
    let b3 = block(3, 3, &b2);
    let info = |block: BlockRef, touched: Vec<Address>, names_holders: bool| BlockInfo {
        block,
        touched,
        names_holders,
    };
    let source = MemSource {
        blocks: vec![
            info(genesis, vec![], true),
            info(b2, vec![named, token], true),
            info(b3, vec![token], false),
        ],
        ..Default::default()
    };
    let cfg = RefresherConfig { samples_per_block: 0, ..RefresherConfig::default() };
    let mut r = Refresher::new(source, cfg);
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        r.start().await.expect("start");
        r.watch([
            StateKey::Account(token),
            StateKey::Slot(token, supply),
            StateKey::Slot(token, slot_of(named)),
            StateKey::Slot(token, slot_of(quiet)),
            StateKey::Slot(token, slot_of(victim)),
            StateKey::Account(named),
            StateKey::Account(quiet),
        ]);
        r.map_balances(token, [named, quiet], slot_of);
        assert_eq!(r.mapped_balances(), 2);
        r.prefetch().await.expect("prefetch");
        let slots_read = |r: &Refresher<MemSource>| -> Vec<U256> {
            let reads = r.source().reads.lock().expect("reads");
            let mut s: Vec<U256> =
                reads.last().expect("a read").slots.iter().map(|k| k.1).collect();
            s.sort_unstable();
            s
        };
        let mut want = vec![supply, slot_of(named), slot_of(victim)];
        want.sort_unstable();
        let u = r.on_head(b2.hash).await.expect("b2").expect("an update");
        assert!(u.touched.contains(&named));
        assert_eq!(slots_read(&r), want, "the quiet holder's balance is not re-read");
        r.on_head(b3.hash).await.expect("b3").expect("an update");
        let mut all = vec![supply, slot_of(named), slot_of(quiet), slot_of(victim)];
        all.sort_unstable();
        assert_eq!(slots_read(&r), all, "a block without named holders is read whole");
    });
}

/// A block's touched addresses include the holders its logs name in indexed topics (a
/// `Transfer`'s `from` and `to`), not the event signature or a zero topic, and the block says so.
#[test]
fn block_info_names_the_holders_of_its_logs() {
    use alloy::primitives::{LogData, b256};
    let transfer = b256!("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
    let (token, from, to) =
        (Address::repeat_byte(0x70), Address::repeat_byte(1), Address::repeat_byte(2));
    let log = alloy::rpc::types::Log {
        inner: alloy::primitives::Log {
            address: token,
            data: LogData::new_unchecked(
                vec![transfer, from.into_word(), to.into_word(), B256::ZERO],
                Bytes::new(),
            ),
        },
        ..Default::default()
    };
    let block = alloy::rpc::types::Block::<alloy::rpc::types::Transaction>::default();
    let info = super::source::block_info(&block, &[log]);
    assert!(info.names_holders);
    assert_eq!(info.touched, vec![from, to, token]);
}
