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
