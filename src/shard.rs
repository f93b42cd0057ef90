//! Sharding of scheduled mode (`--scheduler.shard=I/N`): N identical instances that read one
//! configuration split its targets among themselves without a coordinator. Instance I runs the
//! targets whose name hashes to I, so every target is probed by exactly one instance.
//!
//! The hash is the first eight bytes of the SHA-256 of the target's name, read big-endian,
//! modulo N: the same on every machine and in every version, so a target stays on its shard
//! across restarts and upgrades (and moves only when N changes).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// One shard of N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a `--scheduler.shard` value is not a shard.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `I/N` with two whole numbers.
    #[error("expected I/N (this instance's shard I of N, counted from 0), e.g. 0/3")]
    Syntax,
    /// N is 0.
    #[error("the number of shards must be at least 1")]
    NoShards,
    /// I is not below N.
    #[error("shard {index} does not exist among {count} (shards are 0 to {last})", last = count - 1)]
    OutOfRange {
        /// I.
        index: u32,
        /// N.
        count: u32,
    },
}

impl Shard {
    /// The only shard of one: every target.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        if index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// I, counted from 0.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// N.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The shard a target of this name belongs to, among `count`.
    pub fn of(name: &str, count: u32) -> u32 {
        let digest = Sha256::digest(name.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
    }

    /// Whether this shard runs the target named `name`.
    pub fn owns(&self, name: &str) -> bool {
        self.count == 1 || Shard::of(name, self.count) == self.index
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let (index, count) = s.trim().split_once('/').ok_or(ShardError::Syntax)?;
        let number = |n: &str| -> Result<u32, ShardError> {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ShardError::Syntax);
            }
            n.parse().map_err(|_| ShardError::Syntax)
        };
        Shard::new(number(index)?, number(count)?)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_i_of_n_and_rejects_the_rest() {
        assert_eq!("1/3".parse(), Shard::new(1, 3));
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard::ALL));
        assert_eq!("2/3".parse::<Shard>().unwrap().to_string(), "2/3");
        assert_eq!(
            "3/3".parse::<Shard>(),
            Err(ShardError::OutOfRange { index: 3, count: 3 })
        );
        assert_eq!("0/0".parse::<Shard>(), Err(ShardError::NoShards));
        for bad in [
            "",
            "1",
            "1/",
            "/3",
            "-1/3",
            "1/3/4",
            "a/3",
            "1 / 3",
            "+1/3",
            "1/99999999999",
        ] {
            assert_eq!(bad.parse::<Shard>(), Err(ShardError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn every_name_belongs_to_exactly_one_shard() {
        let names: Vec<String> = (0..3000).map(|i| format!("target-{i}")).collect();
        for count in [1, 2, 3, 7] {
            let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
            let mut sizes = vec![0usize; count as usize];
            for name in &names {
                let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns(name)).collect();
                assert_eq!(owners.len(), 1, "{name} among {count}");
                sizes[owners[0].index() as usize] += 1;
            }
            // Evenly spread: each shard within 15% of its share.
            let share = names.len() / count as usize;
            for size in sizes {
                assert!(
                    size.abs_diff(share) * 100 <= share * 15,
                    "{size} vs {share}"
                );
            }
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // Pinned (computed with Python's hashlib): a change would move targets to other shards
        // on upgrade.
        assert_eq!(
            ["o365-submission", "mx-primary", "alerts-smtps", "a", ""].map(|n| Shard::of(n, 5)),
            [4, 1, 1, 0, 2]
        );
    }
}
