//! Routing filters (after Gnutella's QRP): what an index may contain, as a set of positions.
//!
//! Every token and every content id in an index maps to a position in a space of
//! 2^[`FILTER_BITS`] by [`position`] (the first bytes of its BLAKE3 hash). A supernode tells
//! its peers the positions its own index covers (its *filter*), and the positions its peers'
//! filters cover folded into 2^[`REACH_BITS`] (its *reach*). A query may match an index only
//! if every query token's position (or the id's position) is in its filter: no false
//! negatives, a few false positives.

use std::collections::HashMap;

pub use kazoo_common::wire::{FILTER_BITS, MAX_FILTER_SET, MAX_REACH_SET, REACH_BITS};

/// Most positions a peer may advertise in its filter (the whole space).
pub const MAX_FILTER_POSITIONS: usize = 1 << FILTER_BITS;

/// Filter position of a token or content id.
pub fn position(key: &[u8]) -> u32 {
    let hash = blake3::hash(key);
    let b = hash.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & ((1 << FILTER_BITS) - 1)
}

/// Reach position of a filter position.
pub fn fold(position: u32) -> u32 {
    position & ((1 << REACH_BITS) - 1)
}

/// Counts keys per position and logs positions that appear or disappear, so a filter can be
/// sent to peers as incremental patches.
#[derive(Debug, Default)]
pub struct Tracker {
    counts: HashMap<u32, u32>,
    added: Vec<u32>,
    removed: Vec<u32>,
}

/// A change to a set of positions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patch {
    /// Positions now present.
    pub add: Vec<u32>,
    /// Positions now absent.
    pub remove: Vec<u32>,
}

impl Patch {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

impl Tracker {
    /// One more key at `pos`.
    pub fn bump(&mut self, pos: u32) {
        let count = self.counts.entry(pos).or_default();
        *count += 1;
        if *count == 1 {
            self.added.push(pos);
        }
    }

    /// One key fewer at `pos`.
    pub fn unbump(&mut self, pos: u32) {
        if let Some(count) = self.counts.get_mut(&pos) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&pos);
                self.removed.push(pos);
            }
        }
    }

    /// Whether `pos` is present.
    pub fn contains(&self, pos: u32) -> bool {
        self.counts.contains_key(&pos)
    }

    /// All present positions.
    pub fn positions(&self) -> Vec<u32> {
        self.counts.keys().copied().collect()
    }

    /// Number of present positions.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether no position is present.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// What changed since the last call: positions present now that appeared, and positions
    /// absent now that disappeared (possibly ones that also appeared in between, which a
    /// receiver may not have: removing them is a no-op).
    pub fn take_patch(&mut self) -> Patch {
        let mut add: Vec<u32> = std::mem::take(&mut self.added);
        let mut remove: Vec<u32> = std::mem::take(&mut self.removed);
        add.sort_unstable();
        add.dedup();
        remove.sort_unstable();
        remove.dedup();
        let present = |p: &u32| self.counts.contains_key(p);
        add.retain(present);
        remove.retain(|p| !present(p));
        Patch { add, remove }
    }
}

/// A bitmap over the reach space (2^18 bits, 32 KiB).
#[derive(Clone, Debug)]
pub struct ReachMap {
    words: Vec<u64>,
    /// Set bits in `words` (kept in step by `set` and `clear`).
    ones: usize,
}

impl Default for ReachMap {
    fn default() -> Self {
        ReachMap {
            words: vec![0; (1usize << REACH_BITS) / 64],
            ones: 0,
        }
    }
}

impl ReachMap {
    /// Sets or clears reach position `pos`.
    pub fn set(&mut self, pos: u32, on: bool) {
        let pos = fold(pos) as usize;
        let word = &mut self.words[pos / 64];
        let bit = 1u64 << (pos % 64);
        if on && *word & bit == 0 {
            *word |= bit;
            self.ones += 1;
        } else if !on && *word & bit != 0 {
            *word &= !bit;
            self.ones -= 1;
        }
    }

    /// Number of set positions.
    pub fn len(&self) -> usize {
        self.ones
    }

    /// Whether no position is set.
    pub fn is_empty(&self) -> bool {
        self.ones == 0
    }

    /// Whether filter position `pos` (folded) is set.
    pub fn contains(&self, pos: u32) -> bool {
        let pos = fold(pos) as usize;
        self.words[pos / 64] & (1 << (pos % 64)) != 0
    }

    /// Clears everything.
    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.ones = 0;
    }

    /// The set positions, ascending (a scan of 4,096 words, skipping empty ones).
    pub fn positions(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(i as u32 * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_report_net_changes() {
        let mut t = Tracker::default();
        t.bump(5);
        t.bump(5);
        t.bump(9);
        assert_eq!(
            t.take_patch(),
            Patch {
                add: vec![5, 9],
                remove: vec![]
            }
        );
        t.unbump(5);
        assert!(t.take_patch().is_empty());
        t.unbump(5);
        t.bump(7);
        t.unbump(7);
        // 7 came and went: removing it again is harmless for a receiver that never had it.
        assert_eq!(
            t.take_patch(),
            Patch {
                add: vec![],
                remove: vec![5, 7]
            }
        );
        let mut map = ReachMap::default();
        map.set(position(b"x"), true);
        map.set(position(b"x"), true);
        assert!(map.contains(position(b"x")));
        assert_eq!(
            map.positions().collect::<Vec<_>>(),
            vec![fold(position(b"x"))]
        );
        assert_eq!(map.len(), 1);
        map.set(position(b"x"), false);
        map.set(position(b"x"), false);
        assert!(!map.contains(position(b"x")));
        assert!(map.is_empty());
    }
}
