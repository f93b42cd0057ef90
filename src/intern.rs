//! Values that many long-lived owners hold equal copies of, stored once: an [`Interner`] hands
//! out one shared copy per distinct value for as long as someone holds it.
//!
//! The scheduler keeps every target's latest result until the next one, and targets of one
//! provider present the same certificate chain: its facts and its metric lines are the same
//! for all of them. At 10,000 targets each such copy costs kilobytes per target.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, Mutex, Weak};

/// Distinct values in use, each shared by all who asked for an equal one.
pub(crate) struct Interner<T> {
    table: Mutex<Table<T>>,
}

struct Table<T> {
    hasher: RandomState,
    /// By hash, the values with that hash (nearly always one).
    buckets: HashMap<u64, Vec<Weak<T>>>,
    entries: usize,
    /// The entry count at which entries nobody holds any more are dropped.
    prune_at: usize,
}

/// Pruning runs when the table reaches this many entries, then twice the size it pruned to, so
/// that each entry is visited a bounded number of times on average.
const PRUNE_AT_LEAST: usize = 1024;

impl<T: Hash + Eq> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            table: Mutex::new(Table {
                hasher: RandomState::new(),
                buckets: HashMap::new(),
                entries: 0,
                prune_at: PRUNE_AT_LEAST,
            }),
        }
    }
}

impl<T: Hash + Eq> Interner<T> {
    /// The shared copy of `value`: one already handed out and still held, or `value` itself,
    /// now shared.
    pub(crate) fn intern(&self, value: T) -> Arc<T> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let hash = table.hasher.hash_one(&value);
        let held = table.buckets.get(&hash).and_then(|bucket| {
            bucket
                .iter()
                .filter_map(Weak::upgrade)
                .find(|held| **held == value)
        });
        if let Some(held) = held {
            return held;
        }
        let shared = Arc::new(value);
        table
            .buckets
            .entry(hash)
            .or_default()
            .push(Arc::downgrade(&shared));
        table.entries += 1;
        if table.entries >= table.prune_at {
            table.buckets.retain(|_, bucket| {
                bucket.retain(|w| w.strong_count() > 0);
                !bucket.is_empty()
            });
            table.entries = table.buckets.values().map(Vec::len).sum();
            table.prune_at = (table.entries * 2).max(PRUNE_AT_LEAST);
        }
        shared
    }

    /// How many entries the table holds (some perhaps no longer held).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy_while_held() {
        let interner = Interner::default();
        let a = interner.intern(String::from("chain"));
        let b = interner.intern(String::from("chain"));
        assert!(Arc::ptr_eq(&a, &b));
        let c = interner.intern(String::from("other"));
        assert!(!Arc::ptr_eq(&a, &c));
        // Nobody holds the old copy any more: a new one is handed out.
        drop((a, b));
        let d = interner.intern(String::from("chain"));
        assert_eq!(*d, "chain");
    }

    #[test]
    fn values_nobody_holds_are_dropped_from_the_table() {
        let interner = Interner::default();
        for i in 0..10 * PRUNE_AT_LEAST {
            drop(interner.intern(i));
        }
        let held = interner.intern(usize::MAX);
        assert!(
            interner.entries() <= 2 * PRUNE_AT_LEAST,
            "{} entries",
            interner.entries()
        );
        assert!(Arc::ptr_eq(&held, &interner.intern(usize::MAX)));
    }
}
