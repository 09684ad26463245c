//! The supernode index: content id → (size, names, providers), token → content ids.
//!
//! Leaves are kept in slots ([`LeafKey`]); files in slots too, so posting lists hold 4-byte
//! slot numbers rather than 32-byte ids. A file exists while at least one leaf provides it;
//! when its last provider goes, its slot and postings go with it.
//!
//! Invariants:
//! * `files[s]` is `Some` iff `by_id` maps that file's id to `s` and some leaf's `shares`
//!   holds `s`;
//! * every token of every name a file is known by has `s` in its posting list, once;
//! * `providers` of a file lists exactly the leaves whose `shares` hold it.

use std::collections::HashMap;
use std::net::SocketAddr;

use kazoo_common::wire::{Hit, Provider, ShareEntry, MAX_NAME_LEN, MAX_PROVIDERS, MAX_RESULTS};
use kazoo_common::{ContentId, NodeId};

use crate::filter::{position, Patch, Tracker};
use crate::tokenize::tokens;

/// A leaf's slot in the index, with a generation so a stale key never names a slot's next
/// occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeafKey {
    slot: u32,
    generation: u32,
}

/// Why an index operation was refused. Nothing changes when an error is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// The leaf would exceed its entry limit.
    #[error("leaf would have {would_have} entries, limit is {limit}")]
    TooManyEntries {
        /// Entries after the request.
        would_have: usize,
        /// The limit.
        limit: usize,
    },
    /// A name is longer than [`MAX_NAME_LEN`].
    #[error("name of {0} bytes exceeds {MAX_NAME_LEN}")]
    NameTooLong(usize),
    /// A name is empty or has no searchable token.
    #[error("empty name")]
    EmptyName,
    /// The query has no usable word.
    #[error("query has no words")]
    EmptyQuery,
    /// The leaf key is unknown (already removed).
    #[error("unknown leaf")]
    UnknownLeaf,
}

#[derive(Debug)]
struct LeafRecord {
    generation: u32,
    node: NodeId,
    addr: SocketAddr,
    /// File slot → the name this leaf shares it under.
    shares: HashMap<u32, Box<str>>,
}

#[derive(Debug)]
struct FileRecord {
    id: ContentId,
    size: u64,
    /// Distinct names with how many providers use each.
    names: Vec<(Box<str>, u32)>,
    providers: Vec<LeafKey>,
}

/// The index of one supernode.
#[derive(Debug, Default)]
pub struct Index {
    leaves: Vec<Option<LeafRecord>>,
    free_leaves: Vec<u32>,
    files: Vec<Option<FileRecord>>,
    free_files: Vec<u32>,
    by_id: HashMap<ContentId, u32>,
    postings: HashMap<Box<str>, Vec<u32>>,
    entries: usize,
    generation: u32,
    /// Filter positions of every token and content id present (see [`crate::filter`]).
    filter: Tracker,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a leaf (its files follow through [`register`](Self::register)).
    pub fn add_leaf(&mut self, node: NodeId, addr: SocketAddr) -> LeafKey {
        self.generation = self.generation.wrapping_add(1);
        let record = LeafRecord {
            generation: self.generation,
            node,
            addr,
            shares: HashMap::new(),
        };
        let slot = match self.free_leaves.pop() {
            Some(slot) => {
                self.leaves[slot as usize] = Some(record);
                slot
            }
            None => {
                self.leaves.push(Some(record));
                self.leaves.len() as u32 - 1
            }
        };
        LeafKey {
            slot,
            generation: self.generation,
        }
    }

    /// Removes a leaf and all its entries; returns how many entries went.
    pub fn remove_leaf(&mut self, key: LeafKey) -> usize {
        if self.leaf(key).is_none() {
            return 0;
        }
        let Some(record) = self.leaves[key.slot as usize].take() else {
            return 0;
        };
        self.free_leaves.push(key.slot);
        let count = record.shares.len();
        for (slot, name) in record.shares {
            self.drop_provider(slot, key, &name);
        }
        count
    }

    /// Number of leaves.
    pub fn leaf_count(&self) -> usize {
        self.leaves.len() - self.free_leaves.len()
    }

    /// Number of (leaf, file) entries.
    pub fn entry_count(&self) -> usize {
        self.entries
    }

    /// Number of distinct files.
    pub fn file_count(&self) -> usize {
        self.by_id.len()
    }

    /// Entries held for one leaf.
    pub fn leaf_entries(&self, key: LeafKey) -> usize {
        self.leaf(key).map_or(0, |l| l.shares.len())
    }

    fn leaf(&self, key: LeafKey) -> Option<&LeafRecord> {
        self.leaves
            .get(key.slot as usize)
            .and_then(Option::as_ref)
            .filter(|l| l.generation == key.generation)
    }

    fn leaf_mut(&mut self, key: LeafKey) -> Option<&mut LeafRecord> {
        self.leaves
            .get_mut(key.slot as usize)
            .and_then(Option::as_mut)
            .filter(|l| l.generation == key.generation)
    }

    /// Adds entries for a leaf, all or nothing. Returns the leaf's entry count after.
    pub fn register(
        &mut self,
        key: LeafKey,
        entries: &[ShareEntry],
        limit: usize,
    ) -> Result<usize, IndexError> {
        let leaf = self.leaf(key).ok_or(IndexError::UnknownLeaf)?;
        for entry in entries {
            if entry.name.len() > MAX_NAME_LEN {
                return Err(IndexError::NameTooLong(entry.name.len()));
            }
            if tokens(&entry.name).is_empty() {
                return Err(IndexError::EmptyName);
            }
        }
        let new = entries
            .iter()
            .filter(|e| {
                self.by_id
                    .get(&e.id)
                    .is_none_or(|slot| !leaf.shares.contains_key(slot))
            })
            .map(|e| e.id)
            .collect::<std::collections::HashSet<_>>()
            .len();
        let would_have = leaf.shares.len() + new;
        if would_have > limit {
            return Err(IndexError::TooManyEntries { would_have, limit });
        }
        for entry in entries {
            self.add_entry(key, entry);
        }
        Ok(self.leaf_entries(key))
    }

    fn add_entry(&mut self, key: LeafKey, entry: &ShareEntry) {
        let slot = match self.by_id.get(&entry.id) {
            Some(&slot) => slot,
            None => {
                let record = FileRecord {
                    id: entry.id,
                    size: entry.size,
                    names: Vec::new(),
                    providers: Vec::new(),
                };
                let slot = match self.free_files.pop() {
                    Some(slot) => {
                        self.files[slot as usize] = Some(record);
                        slot
                    }
                    None => {
                        self.files.push(Some(record));
                        self.files.len() as u32 - 1
                    }
                };
                self.by_id.insert(entry.id, slot);
                self.filter.bump(position(entry.id.as_bytes()));
                slot
            }
        };
        let Some(leaf) = self.leaf_mut(key) else {
            return;
        };
        if leaf.shares.contains_key(&slot) {
            return;
        }
        leaf.shares.insert(slot, entry.name.as_str().into());
        self.entries += 1;
        let Some(file) = self.files[slot as usize].as_mut() else {
            return;
        };
        file.providers.push(key);
        match file.names.iter_mut().find(|(n, _)| **n == *entry.name) {
            Some((_, count)) => *count += 1,
            None => {
                // The file's other names already put it in their tokens' posting lists
                // (checked here rather than by scanning lists that may hold 10^6 slots).
                let known: Vec<String> = file.names.iter().flat_map(|(n, _)| tokens(n)).collect();
                file.names.push((entry.name.as_str().into(), 1));
                for token in tokens(&entry.name) {
                    if known.contains(&token) {
                        continue;
                    }
                    if !self.postings.contains_key(token.as_str()) {
                        self.filter.bump(position(token.as_bytes()));
                    }
                    self.postings
                        .entry(token.into_boxed_str())
                        .or_default()
                        .push(slot);
                }
            }
        }
    }

    /// Removes entries of a leaf; unknown ids are ignored. Returns the leaf's count after.
    pub fn unregister(&mut self, key: LeafKey, ids: &[ContentId]) -> Result<usize, IndexError> {
        for id in ids {
            let Some(&slot) = self.by_id.get(id) else {
                continue;
            };
            let leaf = self.leaf_mut(key).ok_or(IndexError::UnknownLeaf)?;
            if let Some(name) = leaf.shares.remove(&slot) {
                self.drop_provider(slot, key, &name);
            }
        }
        Ok(self.leaf_entries(key))
    }

    /// Detaches `key` from file `slot` (shared under `name`), dropping the file if orphaned.
    fn drop_provider(&mut self, slot: u32, key: LeafKey, name: &str) {
        self.entries -= 1;
        let Some(file) = self.files[slot as usize].as_mut() else {
            return;
        };
        file.providers.retain(|&p| p != key);
        let mut gone_names = Vec::new();
        if let Some(pos) = file.names.iter().position(|(n, _)| **n == *name) {
            file.names[pos].1 -= 1;
            if file.names[pos].1 == 0 {
                gone_names.push(file.names.swap_remove(pos).0);
            }
        }
        let orphaned = file.providers.is_empty();
        if orphaned {
            gone_names.extend(file.names.drain(..).map(|(n, _)| n));
        }
        let kept: Vec<String> = file.names.iter().flat_map(|(n, _)| tokens(n)).collect();
        for gone in gone_names {
            for token in tokens(&gone) {
                if kept.contains(&token) {
                    continue;
                }
                if let Some(list) = self.postings.get_mut(token.as_str()) {
                    list.retain(|&s| s != slot);
                    if list.is_empty() {
                        self.postings.remove(token.as_str());
                        self.filter.unbump(position(token.as_bytes()));
                    }
                }
            }
        }
        if orphaned {
            if let Some(file) = self.files[slot as usize].take() {
                self.by_id.remove(&file.id);
                self.filter.unbump(position(file.id.as_bytes()));
            }
            self.free_files.push(slot);
        }
    }

    /// The routing filter of this index.
    pub fn filter(&self) -> &Tracker {
        &self.filter
    }

    /// Filter changes since the last call.
    pub fn take_filter_patch(&mut self) -> Patch {
        self.filter.take_patch()
    }

    /// Sources of a content id (at most [`MAX_PROVIDERS`]).
    pub fn providers(&self, id: &ContentId) -> Vec<Provider> {
        self.by_id
            .get(id)
            .and_then(|&slot| self.files[slot as usize].as_ref())
            .map(|file| self.provider_list(file))
            .unwrap_or_default()
    }

    fn provider_list(&self, file: &FileRecord) -> Vec<Provider> {
        file.providers
            .iter()
            .filter_map(|&key| self.leaf(key))
            .take(MAX_PROVIDERS)
            .map(|leaf| Provider {
                node: leaf.node,
                addr: leaf.addr,
            })
            .collect()
    }

    fn hit(&self, file: &FileRecord) -> Hit {
        let name = file
            .names
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(n, _)| n.to_string())
            .unwrap_or_default();
        Hit {
            id: file.id,
            size: file.size,
            name,
            sources: file.providers.len() as u32,
            providers: self.provider_list(file),
        }
    }

    /// Answers a query: every word's tokens must all appear in one of a file's names (AND,
    /// case-insensitive). A lone 64-hex-digit word also matches that content id. Results are
    /// ranked by source count, then name, and capped at `max` (≤ [`MAX_RESULTS`]).
    pub fn search(&self, words: &[String], max: usize) -> Result<Vec<Hit>, IndexError> {
        let max = max.min(MAX_RESULTS);
        if let [word] = words {
            if let Ok(id) = word.parse::<ContentId>() {
                return Ok(self
                    .by_id
                    .get(&id)
                    .and_then(|&slot| self.files[slot as usize].as_ref())
                    .map(|file| self.hit(file))
                    .into_iter()
                    .take(max)
                    .collect());
            }
        }
        let mut wanted: Vec<String> = words.iter().flat_map(|w| tokens(w)).collect();
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Err(IndexError::EmptyQuery);
        }
        let mut lists = Vec::with_capacity(wanted.len());
        for token in &wanted {
            match self.postings.get(token.as_str()) {
                Some(list) => lists.push(list),
                None => return Ok(Vec::new()),
            }
        }
        lists.sort_by_key(|l| l.len());
        let mut matches: Vec<&FileRecord> = lists[0]
            .iter()
            .filter_map(|&slot| self.files[slot as usize].as_ref())
            .filter(|file| {
                file.names.iter().any(|(name, _)| {
                    let have = tokens(name);
                    wanted.iter().all(|t| have.contains(t))
                })
            })
            .collect();
        // Only the best `max` become hits (building a hit copies names and providers).
        matches.sort_by_key(|file| std::cmp::Reverse(file.providers.len()));
        let mut hits: Vec<Hit> = matches.into_iter().take(max).map(|f| self.hit(f)).collect();
        hits.sort_by(|a, b| b.sources.cmp(&a.sources).then_with(|| a.name.cmp(&b.name)));
        hits.truncate(max);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests;
