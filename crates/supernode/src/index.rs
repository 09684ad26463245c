//! The supernode index: content id → (size, names, providers), token → content ids.
//!
//! Leaves are kept in slots ([`LeafKey`]); files and tokens in slots too, so posting lists
//! hold 4-byte file slots and files hold 4-byte token ids. A file exists while at least one
//! leaf provides it; when its last provider goes, its slot and postings go with it.
//!
//! Every operation costs in proportion to the entries it touches, never to the length of a
//! posting list: a file remembers where it sits in each of its tokens' posting lists, so
//! leaving one is a swap-remove. A leaf that leaves is first *detached* (at once: it stops
//! counting, its files stop naming it) and then *drained* in bounded steps
//! ([`Index::drain`]), so the caller never holds its lock for long. Searches scan at most
//! [`MAX_SEARCH_SCAN`] candidates and keep only the best `max`.
//!
//! A name is a path below the share root (see the wire spec): the tokens of its file name
//! and of its folders are indexed alike, each posting marked [`IN_NAME`] when the token is
//! in some name's file name, so a search ranks name matches above folder matches without
//! visiting files. Tokens are kept in order, so a prefix word finds its tokens as a range.
//!
//! Memory is bounded by [`Budget`] (entries and accounted bytes, checked before each
//! batch), by [`MAX_NAME_TOKENS`] tokens per file name and [`MAX_FOLDER_TOKENS`] per
//! folder path, and by [`MAX_NAMES_PER_FILE`] names per file.
//!
//! Invariants:
//! * `files[s]` is `Some` iff `by_id` maps that file's id to `s`, and then some leaf's
//!   `shares` (or a draining leaf's remaining shares) holds `s`;
//! * for every file `s` and every entry `FileToken { token, at }` of `files[s].tokens`,
//!   `tokens[token].files[at] == s`, and every slot in a posting list is found that way
//!   (each token of each live name of a file is in its `tokens` once);
//! * `providers` of a file lists exactly the leaves (detached ones included, until drained)
//!   whose shares hold it; a name's `count` is the number of those shares naming it;
//! * `entries` counts shares of attached and draining leaves alike.

use std::collections::hash_map;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;

use kazoo_common::wire::{Hit, Provider, ShareEntry, MAX_NAME_LEN, MAX_PROVIDERS, MAX_RESULTS};
use kazoo_common::{ContentId, NodeId};

use crate::filter::{position, Patch, Tracker};
use crate::query::{id_key, token_keys, Query, QueryError};
use crate::tokenize::{path_tokens, split_path};
pub use crate::tokenize::{MAX_FOLDER_TOKENS, MAX_NAME_TOKENS};

/// Flag of a posting (and of a file's note of it): the token is in a name's file name, not
/// only in its folders. File slots stay below it.
pub const IN_NAME: u32 = 1 << 31;
/// Most names of one file sent in answer to a search (each as its own hit after the first;
/// at most as many such extra hits as results, so an answer holds at most 2 × `max` hits).
pub const MAX_NAMES_PER_HIT: usize = 4;
/// Most distinct names one file is indexed under; a provider with yet another name is
/// listed under the file's first name.
pub const MAX_NAMES_PER_FILE: usize = 8;
/// Most candidates one search examines (from the shortest posting list of its words).
pub const MAX_SEARCH_SCAN: usize = 100_000;

/// Accounted bytes of one entry (a leaf's share record and its place among the providers).
const ENTRY_BYTES: usize = 48;
/// Accounted bytes of one file (its record, its id-map slot and its id-prefix entry), names
/// and tokens aside.
const FILE_BYTES: usize = 184;
/// Accounted bytes of one distinct name, beyond its text.
const NAME_BYTES: usize = 24;
/// Accounted bytes of one (file, token) pair: the posting and the file's note of it.
const POSTING_BYTES: usize = 12;
/// Accounted bytes of one distinct token, beyond twice its text.
const TOKEN_BYTES: usize = 64;

/// The network an address belongs to for provider diversity: its IPv4 /24 or IPv6 /48.
fn prefix(addr: SocketAddr) -> u64 {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4) >> 8),
        std::net::IpAddr::V6(v6) => (1 << 63) | (u128::from(v6) >> 80) as u64,
    }
}

/// The most an index may hold; a `register` that would pass it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Most (leaf, file) entries.
    pub max_entries: usize,
    /// Most accounted bytes (an estimate of the heap the index uses, within ~1.5×).
    pub max_bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_entries: usize::MAX,
            max_bytes: usize::MAX,
        }
    }
}

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
    /// The whole index is at its [`Budget`].
    #[error(
        "supernode index is full ({entries} entries, {mib} MiB accounted); try another supernode"
    )]
    IndexFull {
        /// Entries held now.
        entries: usize,
        /// Accounted MiB now.
        mib: usize,
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
    /// The query does not parse (an unknown type, a bad size range).
    #[error("{0}")]
    BadQuery(String),
    /// The leaf key is unknown (removed, or replaced by a newer session).
    #[error("unknown leaf")]
    UnknownLeaf,
}

#[derive(Debug)]
struct LeafRecord {
    generation: u32,
    node: NodeId,
    addr: SocketAddr,
    /// File slot → index of the name (in the file's `names`) this leaf shares it under.
    shares: HashMap<u32, u32>,
    /// Left: no longer counted or listed as a provider; its entries are being drained.
    detached: bool,
    /// Its listen address answered the supernode's dial back: listed before unverified
    /// providers (sybils at addresses that never answer cannot crowd it out).
    verified: bool,
}

#[derive(Debug)]
struct NameRecord {
    name: Box<str>,
    /// Providers sharing the file under this name (0: a free slot).
    count: u32,
}

#[derive(Clone, Copy, Debug)]
struct FileToken {
    token: u32,
    /// Position of this file in the token's posting list.
    at: u32,
    /// The token is in a name's file name (its posting carries [`IN_NAME`]).
    in_name: bool,
    /// The token is in a name's folders.
    in_folder: bool,
}

#[derive(Debug)]
struct FileRecord {
    id: ContentId,
    size: u64,
    names: Vec<NameRecord>,
    providers: Vec<LeafKey>,
    tokens: Vec<FileToken>,
}

#[derive(Debug)]
struct TokenRecord {
    text: Box<str>,
    /// Posting list: file slots, each with [`IN_NAME`] when the token is in a file name.
    files: Vec<u32>,
}

/// The index of one supernode.
#[derive(Debug, Default)]
pub struct Index {
    leaves: Vec<Option<LeafRecord>>,
    free_leaves: Vec<u32>,
    detached: usize,
    files: Vec<Option<Box<FileRecord>>>,
    /// Provider count of each file slot, beside `files` so a one-word search ranks a long
    /// posting list without visiting each file.
    sources: Vec<u32>,
    free_files: Vec<u32>,
    by_id: HashMap<ContentId, u32>,
    /// (first 4 bytes of the id, big-endian; slot): for hash-prefix searches.
    by_prefix: BTreeSet<(u32, u32)>,
    /// In token order, so the tokens a prefix matches are a range.
    token_ids: BTreeMap<Box<str>, u32>,
    tokens: Vec<TokenRecord>,
    free_tokens: Vec<u32>,
    entries: usize,
    bytes: usize,
    generation: u32,
    budget: Budget,
    /// Detached leaves whose entries are still to go, oldest first.
    draining: VecDeque<(LeafKey, hash_map::IntoIter<u32, u32>)>,
    /// Filter positions of every token and content id present (see [`crate::filter`]).
    filter: Tracker,
}

impl Index {
    /// An empty index with no budget.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the most the index may hold (see [`Budget`]).
    pub fn set_budget(&mut self, budget: Budget) {
        self.budget = budget;
    }

    /// Adds a leaf (its files follow through [`register`](Self::register)).
    pub fn add_leaf(&mut self, node: NodeId, addr: SocketAddr) -> LeafKey {
        self.generation = self.generation.wrapping_add(1);
        let record = LeafRecord {
            generation: self.generation,
            node,
            addr,
            shares: HashMap::new(),
            detached: false,
            verified: false,
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

    /// Detaches a leaf at once: it no longer counts, is no longer listed as a provider, and
    /// its requests are refused as [`IndexError::UnknownLeaf`]. Its entries go in later
    /// [`drain`](Self::drain) steps. Returns how many entries it had (0 if unknown).
    pub fn detach_leaf(&mut self, key: LeafKey) -> usize {
        let Some(leaf) = self.leaf_mut(key) else {
            return 0;
        };
        leaf.detached = true;
        let shares = std::mem::take(&mut leaf.shares);
        let count = shares.len();
        self.detached += 1;
        self.draining.push_back((key, shares.into_iter()));
        count
    }

    /// Removes up to about `budget` entries of detached leaves (a popular file's provider
    /// list counts as one unit per 16 providers). Returns whether work is left.
    pub fn drain(&mut self, budget: usize) -> bool {
        let mut work = 0;
        while work < budget {
            let Some((key, shares)) = self.draining.front_mut() else {
                return false;
            };
            let key = *key;
            match shares.next() {
                Some((slot, name)) => work += 1 + self.drop_provider(slot, key, name),
                None => {
                    self.draining.pop_front();
                    self.leaves[key.slot as usize] = None;
                    self.free_leaves.push(key.slot);
                    self.detached -= 1;
                    self.give_back();
                }
            }
        }
        !self.draining.is_empty()
    }

    /// Whether detached leaves still have entries to drain.
    pub fn is_draining(&self) -> bool {
        !self.draining.is_empty()
    }

    /// Removes a leaf and all its entries at once (detach, then drain everything); returns
    /// how many entries it had. Costs in proportion to the entries: for small leaves and
    /// tests; the node runtime detaches and drains in steps.
    pub fn remove_leaf(&mut self, key: LeafKey) -> usize {
        let count = self.detach_leaf(key);
        while self.drain(usize::MAX) {}
        count
    }

    /// Number of attached leaves.
    pub fn leaf_count(&self) -> usize {
        self.leaves.len() - self.free_leaves.len() - self.detached
    }

    /// Number of (leaf, file) entries, draining leaves' included.
    pub fn entry_count(&self) -> usize {
        self.entries
    }

    /// Accounted bytes (see [`Budget::max_bytes`]).
    pub fn accounted_bytes(&self) -> usize {
        self.bytes
    }

    /// Number of distinct files.
    pub fn file_count(&self) -> usize {
        self.by_id.len()
    }

    /// Entries held for one attached leaf.
    pub fn leaf_entries(&self, key: LeafKey) -> usize {
        self.leaf(key).map_or(0, |l| l.shares.len())
    }

    /// An attached leaf's record.
    fn leaf(&self, key: LeafKey) -> Option<&LeafRecord> {
        self.leaves
            .get(key.slot as usize)
            .and_then(Option::as_ref)
            .filter(|l| l.generation == key.generation && !l.detached)
    }

    fn leaf_mut(&mut self, key: LeafKey) -> Option<&mut LeafRecord> {
        self.leaves
            .get_mut(key.slot as usize)
            .and_then(Option::as_mut)
            .filter(|l| l.generation == key.generation && !l.detached)
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
            if path_tokens(&entry.name).0.is_empty() {
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
        if new > 0
            && (self.entries + new > self.budget.max_entries || self.bytes >= self.budget.max_bytes)
        {
            return Err(IndexError::IndexFull {
                entries: self.entries,
                mib: self.bytes >> 20,
            });
        }
        for entry in entries {
            self.add_entry(key, entry);
        }
        Ok(self.leaf_entries(key))
    }

    fn add_entry(&mut self, key: LeafKey, entry: &ShareEntry) {
        let slot = match self.by_id.get(&entry.id) {
            Some(&slot) => slot,
            None => self.add_file(entry.id, entry.size),
        };
        match self.leaf(key) {
            Some(leaf) if !leaf.shares.contains_key(&slot) => {}
            _ => return,
        }
        let name = self.add_name(slot, &entry.name);
        if let Some(leaf) = self.leaf_mut(key) {
            leaf.shares.insert(slot, name);
        }
        if let Some(file) = self.file_mut(slot) {
            file.providers.push(key);
            self.sources[slot as usize] = file.providers.len() as u32;
        }
        self.entries += 1;
        self.bytes += ENTRY_BYTES;
    }

    fn add_file(&mut self, id: ContentId, size: u64) -> u32 {
        let record = Box::new(FileRecord {
            id,
            size,
            names: Vec::new(),
            providers: Vec::new(),
            tokens: Vec::new(),
        });
        let slot = match self.free_files.pop() {
            Some(slot) => {
                self.files[slot as usize] = Some(record);
                slot
            }
            None => {
                self.files.push(Some(record));
                self.sources.push(0);
                self.files.len() as u32 - 1
            }
        };
        self.by_id.insert(id, slot);
        self.by_prefix
            .insert((u32::from_be_bytes(id_key(&id)), slot));
        self.filter.bump(position(&id_key(&id)));
        self.bytes += FILE_BYTES;
        slot
    }

    fn file(&self, slot: u32) -> Option<&FileRecord> {
        self.files.get(slot as usize).and_then(|f| f.as_deref())
    }

    fn file_mut(&mut self, slot: u32) -> Option<&mut FileRecord> {
        self.files
            .get_mut(slot as usize)
            .and_then(|f| f.as_deref_mut())
    }

    /// Counts one more provider of file `slot` under `name`; returns the name's index.
    /// A new name's tokens join their posting lists (unless the file has too many names:
    /// then it counts as the file's first live name).
    fn add_name(&mut self, slot: u32, name: &str) -> u32 {
        let Some(file) = self.file_mut(slot) else {
            return 0;
        };
        if let Some(i) = file
            .names
            .iter()
            .position(|n| n.count > 0 && *n.name == *name)
        {
            file.names[i].count += 1;
            return i as u32;
        }
        let live = file.names.iter().filter(|n| n.count > 0).count();
        if live >= MAX_NAMES_PER_FILE {
            let first = file.names.iter().position(|n| n.count > 0).unwrap_or(0);
            file.names[first].count += 1;
            return first as u32;
        }
        let record = NameRecord {
            name: name.into(),
            count: 1,
        };
        let index = match file.names.iter().position(|n| n.count == 0) {
            Some(i) => {
                file.names[i] = record;
                i
            }
            None => {
                file.names.push(record);
                file.names.len() - 1
            }
        };
        self.bytes += NAME_BYTES + name.len();
        let (in_name, in_folder) = path_tokens(name);
        let tagged = in_name
            .into_iter()
            .map(|t| (t, true))
            .chain(in_folder.into_iter().map(|t| (t, false)));
        for (token, named) in tagged {
            let id = self.intern(token);
            let Some(file) = self.files[slot as usize].as_deref_mut() else {
                break;
            };
            if let Some(t) = file.tokens.iter_mut().find(|t| t.token == id) {
                if named && !t.in_name {
                    t.in_name = true;
                    self.tokens[id as usize].files[t.at as usize] |= IN_NAME;
                }
                t.in_folder |= !named;
                continue;
            }
            let list = &mut self.tokens[id as usize].files;
            file.tokens.push(FileToken {
                token: id,
                at: list.len() as u32,
                in_name: named,
                in_folder: !named,
            });
            list.push(if named { slot | IN_NAME } else { slot });
            self.bytes += POSTING_BYTES;
        }
        index as u32
    }

    /// The id of `token`, added if new.
    fn intern(&mut self, token: String) -> u32 {
        if let Some(&id) = self.token_ids.get(token.as_str()) {
            return id;
        }
        for key in token_keys(&token) {
            self.filter.bump(position(key.as_bytes()));
        }
        self.bytes += TOKEN_BYTES + 2 * token.len();
        let text: Box<str> = token.into_boxed_str();
        let record = TokenRecord {
            text: text.clone(),
            files: Vec::new(),
        };
        let id = match self.free_tokens.pop() {
            Some(id) => {
                self.tokens[id as usize] = record;
                id
            }
            None => {
                self.tokens.push(record);
                self.tokens.len() as u32 - 1
            }
        };
        self.token_ids.insert(text, id);
        id
    }

    /// Removes entries of a leaf; unknown ids are ignored. Returns the leaf's count after.
    pub fn unregister(&mut self, key: LeafKey, ids: &[ContentId]) -> Result<usize, IndexError> {
        self.leaf(key).ok_or(IndexError::UnknownLeaf)?;
        for id in ids {
            let Some(&slot) = self.by_id.get(id) else {
                continue;
            };
            let removed = self.leaf_mut(key).and_then(|l| l.shares.remove(&slot));
            if let Some(name) = removed {
                self.drop_provider(slot, key, name);
            }
        }
        Ok(self.leaf_entries(key))
    }

    /// Detaches `key` from file `slot` (shared under name index `name`), dropping the name's
    /// tokens if it was the last to use it and the file if orphaned. Returns extra work
    /// units spent (a long provider list).
    fn drop_provider(&mut self, slot: u32, key: LeafKey, name: u32) -> usize {
        self.entries -= 1;
        self.bytes -= ENTRY_BYTES;
        let Some(file) = self.files[slot as usize].as_deref_mut() else {
            return 0;
        };
        let work = file.providers.len() / 16;
        if let Some(at) = file.providers.iter().position(|&p| p == key) {
            file.providers.swap_remove(at);
        }
        self.sources[slot as usize] = file.providers.len() as u32;
        let mut name_died = false;
        if let Some(record) = file.names.get_mut(name as usize) {
            record.count = record.count.saturating_sub(1);
            if record.count == 0 {
                name_died = true;
                self.bytes -= NAME_BYTES + record.name.len();
                record.name = "".into();
            }
        }
        if file.providers.is_empty() {
            let gone = std::mem::take(&mut file.tokens);
            for t in gone {
                self.remove_posting(slot, t);
            }
            if let Some(file) = self.files[slot as usize].take() {
                for record in file.names.iter().filter(|n| n.count > 0) {
                    self.bytes -= NAME_BYTES + record.name.len();
                }
                self.by_id.remove(&file.id);
                self.by_prefix
                    .remove(&(u32::from_be_bytes(id_key(&file.id)), slot));
                self.filter.unbump(position(&id_key(&file.id)));
                self.bytes -= FILE_BYTES;
            }
            self.free_files.push(slot);
        } else if name_died {
            // Keep only the tokens some live name still has (≤ MAX_NAMES_PER_FILE names),
            // each marked in-name only while a live name has it in its file name.
            let mut live: HashMap<u32, (bool, bool)> = HashMap::new();
            for n in file.names.iter().filter(|n| n.count > 0) {
                let (in_name, in_folder) = path_tokens(&n.name);
                let tagged = in_name
                    .iter()
                    .map(|t| (t, true))
                    .chain(in_folder.iter().map(|t| (t, false)));
                for (t, named) in tagged {
                    if let Some(&id) = self.token_ids.get(t.as_str()) {
                        let (in_name, in_folder) = live.entry(id).or_default();
                        *in_name |= named;
                        *in_folder |= !named;
                    }
                }
            }
            let mut gone = Vec::new();
            let tokens = &mut self.tokens;
            file.tokens.retain_mut(|t| match live.get(&t.token) {
                None => {
                    gone.push(*t);
                    false
                }
                Some(&(named, in_folder)) => {
                    if t.in_name && !named {
                        t.in_name = false;
                        tokens[t.token as usize].files[t.at as usize] &= !IN_NAME;
                    }
                    t.in_folder = in_folder;
                    true
                }
            });
            for t in gone {
                self.remove_posting(slot, t);
            }
        }
        work
    }

    /// Takes file `slot` out of the posting list of `t.token` (a swap-remove: the file moved
    /// into its place learns its new position); a list left empty frees its token.
    fn remove_posting(&mut self, slot: u32, t: FileToken) {
        self.bytes -= POSTING_BYTES;
        let record = &mut self.tokens[t.token as usize];
        let list = &mut record.files;
        let at = t.at as usize;
        if list.get(at).map(|p| p & !IN_NAME) != Some(slot) {
            return;
        }
        list.swap_remove(at);
        if let Some(&moved) = list.get(at) {
            if let Some(file) = self.files[(moved & !IN_NAME) as usize].as_deref_mut() {
                if let Some(mt) = file.tokens.iter_mut().find(|m| m.token == t.token) {
                    mt.at = t.at;
                }
            }
        }
        if list.is_empty() {
            let text = std::mem::take(&mut record.text);
            record.files = Vec::new();
            self.token_ids.remove(&text);
            for key in token_keys(&text) {
                self.filter.unbump(position(key.as_bytes()));
            }
            self.bytes -= TOKEN_BYTES + 2 * text.len();
            self.free_tokens.push(t.token);
        } else if list.capacity() > 64 && list.len() < list.capacity() / 4 {
            list.shrink_to(list.len() * 2);
        }
    }

    /// Returns memory to the allocator after a large drain (maps at under a quarter full).
    fn give_back(&mut self) {
        fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
            if map.capacity() > 1024 && map.len() < map.capacity() / 4 {
                map.shrink_to(map.len() * 2);
            }
        }
        shrink(&mut self.by_id);
    }

    /// The routing filter of this index.
    pub fn filter(&self) -> &Tracker {
        &self.filter
    }

    /// Filter changes since the last call.
    pub fn take_filter_patch(&mut self) -> Patch {
        self.filter.take_patch()
    }

    /// Sources of a content id (at most [`MAX_PROVIDERS`]): verified ones first, round-robin
    /// over address prefixes.
    pub fn providers(&self, id: &ContentId) -> Vec<Provider> {
        self.by_id
            .get(id)
            .and_then(|&slot| self.file(slot))
            .map(|file| self.provider_list(file))
            .unwrap_or_default()
    }

    /// A file's providers, at most [`MAX_PROVIDERS`], most trustworthy first: those whose
    /// address answered a dial back before those that did not, and within each, round-robin
    /// over address prefixes (IPv4 /24, IPv6 /48): every network's first provider, then every
    /// network's second, … — so many sources from a few networks cannot crowd out the
    /// others. The list is bounded by the leaves joined.
    fn provider_list(&self, file: &FileRecord) -> Vec<Provider> {
        self.provider_list_where(file, |_| true)
    }

    /// [`Self::provider_list`] of the providers `keep` accepts.
    fn provider_list_where(
        &self,
        file: &FileRecord,
        keep: impl Fn(&LeafRecord) -> bool,
    ) -> Vec<Provider> {
        let mut per_prefix: HashMap<(bool, u64), usize> = HashMap::new();
        let mut ranked: Vec<(bool, usize, &LeafRecord)> = Vec::new();
        for leaf in file
            .providers
            .iter()
            .filter_map(|&key| self.leaf(key))
            .filter(|l| keep(l))
        {
            let seen = per_prefix
                .entry((leaf.verified, prefix(leaf.addr)))
                .or_default();
            ranked.push((!leaf.verified, *seen, leaf));
            *seen += 1;
        }
        ranked.sort_by_key(|(unverified, round, _)| (*unverified, *round));
        ranked
            .into_iter()
            .take(MAX_PROVIDERS)
            .map(|(_, _, leaf)| Provider::new(leaf.node, leaf.addr))
            .collect()
    }

    /// Marks leaf `key` as answering a dial back at `addr`, the address it is listed at from
    /// now on (see [`Self::providers`]).
    pub fn set_verified(&mut self, key: LeafKey, addr: SocketAddr) {
        if let Some(leaf) = self.leaf_mut(key) {
            leaf.verified = true;
            leaf.addr = addr;
        }
    }

    /// Where leaf `key` is listed (none: not a live leaf).
    pub fn leaf_addr(&self, key: LeafKey) -> Option<SocketAddr> {
        self.leaf(key).filter(|l| !l.detached).map(|l| l.addr)
    }

    /// Lists leaf `key` at `addr` from now on, unless a dial back has verified its address.
    pub fn set_address(&mut self, key: LeafKey, addr: SocketAddr) {
        if let Some(leaf) = self.leaf_mut(key).filter(|leaf| !leaf.verified) {
            leaf.addr = addr;
        }
    }

    /// A file as a search result under its name `name` (an index into `names`), listing the
    /// providers sharing it under that name (`only_name`) or all of them; `None` while it
    /// has no attached provider.
    fn hit(&self, slot: u32, file: &FileRecord, name: usize, only_name: bool) -> Option<Hit> {
        let record = file.names.get(name).filter(|n| n.count > 0)?;
        let mut providers = self.provider_list_where(file, |leaf| {
            !only_name || leaf.shares.get(&slot) == Some(&(name as u32))
        });
        providers.truncate(MAX_PROVIDERS);
        if providers.is_empty() {
            return None;
        }
        Some(Hit {
            id: file.id,
            size: file.size,
            name: record.name.to_string(),
            sources: if only_name {
                record.count
            } else {
                file.providers.len() as u32
            },
            providers,
        })
    }

    /// Answers a query given as wire words (see [`Query::parse`] and
    /// [`search_query`](Self::search_query)).
    pub fn search(&self, words: &[String], max: usize) -> Result<Vec<Hit>, IndexError> {
        let query = Query::parse(words).map_err(|e| match e {
            QueryError::NoWords => IndexError::EmptyQuery,
            e => IndexError::BadQuery(e.to_string()),
        })?;
        Ok(self.search_query(&query, max))
    }

    /// Answers a query: every word must match a token of a file's names (file name or
    /// folders; prefix rules in [`crate::query`]), no excluded token may appear, the filters
    /// must pass; or, for a hash query, the content id starts with the hash. At most `max`
    /// files (≤ [`MAX_RESULTS`]), best first: hash matches, then files with every word in a
    /// file name, then the rest, each by source count. Each file comes first under its
    /// best-matching, most common name; up to [`MAX_NAMES_PER_HIT`] − 1 other names of it
    /// follow after all files, as further hits with the same id (at most `max` of them).
    ///
    /// At most [`MAX_SEARCH_SCAN`] candidates are examined (the postings of the word with
    /// the fewest, a prefix's tokens together), so a search for a word in every file costs
    /// a bounded scan and a `max`-sized heap.
    pub fn search_query(&self, query: &Query, max: usize) -> Vec<Hit> {
        let max = max.min(MAX_RESULTS);
        if max == 0 {
            return Vec::new();
        }
        // Min-heap of the best `max`: (tier, sources, lower slot first).
        type Key = std::cmp::Reverse<(u8, u32, std::cmp::Reverse<u32>)>;
        let mut best: std::collections::BinaryHeap<Key> =
            std::collections::BinaryHeap::with_capacity(max + 1);
        let consider = |best: &mut std::collections::BinaryHeap<Key>, tier, sources, slot| {
            best.push(std::cmp::Reverse((tier, sources, std::cmp::Reverse(slot))));
            if best.len() > max {
                best.pop();
            }
        };
        let mut seen: HashSet<u32> = HashSet::new();
        if let Some(id) = query.exact_id() {
            if let Some(&slot) = self.by_id.get(&id) {
                consider(&mut best, TIER_ID, self.sources[slot as usize], slot);
            }
        } else if query.hash.is_some() {
            let prefix = query
                .hash
                .as_deref()
                .and_then(|h| h.get(..8))
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            if let Some(prefix) = prefix {
                for &(_, slot) in self
                    .by_prefix
                    .range((prefix, 0)..=(prefix, u32::MAX))
                    .take(MAX_SEARCH_SCAN)
                {
                    if self.file(slot).is_some_and(|f| query.id_matches(&f.id)) && self.live(slot) {
                        seen.insert(slot);
                        consider(&mut best, TIER_ID, self.sources[slot as usize], slot);
                    }
                }
            }
        }
        if let Some(generator) = self.generator(query) {
            let fast = query.terms.len() == 1
                && query.exclude.is_empty()
                && query.size.is_none()
                && query.kind.is_none()
                && !query.terms[0].folder_only
                && self.detached == 0
                && generator.len() == 1;
            let dedupe = generator.len() > 1 || !seen.is_empty();
            let mut scanned = 0;
            'scan: for token in &generator {
                for &posting in &self.tokens[*token as usize].files {
                    if scanned == MAX_SEARCH_SCAN {
                        break 'scan;
                    }
                    scanned += 1;
                    let slot = posting & !IN_NAME;
                    let sources = self.sources[slot as usize];
                    let beaten = |best: &std::collections::BinaryHeap<Key>, tier: u8| {
                        best.len() == max
                            && best
                                .peek()
                                .is_some_and(|w| (tier, sources, std::cmp::Reverse(slot)) <= w.0)
                    };
                    if beaten(&best, TIER_NAME) || (dedupe && !seen.insert(slot)) {
                        continue;
                    }
                    let tier = if fast {
                        if posting & IN_NAME != 0 {
                            TIER_NAME
                        } else {
                            TIER_FOLDER
                        }
                    } else {
                        match self.file(slot).and_then(|f| self.matches(query, slot, f)) {
                            Some(tier) => tier,
                            None => continue,
                        }
                    };
                    if !beaten(&best, tier) {
                        consider(&mut best, tier, sources, slot);
                    }
                }
            }
        }
        let mut ranked: Vec<(u8, u32, u32)> = best
            .into_iter()
            .map(
                |std::cmp::Reverse((tier, sources, std::cmp::Reverse(slot)))| (tier, sources, slot),
            )
            .collect();
        ranked.sort_by_key(|&(tier, sources, slot)| {
            (std::cmp::Reverse(tier), std::cmp::Reverse(sources), slot)
        });
        let mut hits = Vec::with_capacity(ranked.len());
        let mut extra = Vec::new();
        for (_, _, slot) in ranked {
            let Some(file) = self.file(slot) else {
                continue;
            };
            let mut names: Vec<(u8, u32, usize)> = file
                .names
                .iter()
                .enumerate()
                .filter(|(_, n)| n.count > 0)
                .map(|(i, n)| (query.rank(&file.id, &n.name), n.count, i))
                .collect();
            names.sort_by(|a, b| {
                b.0.cmp(&a.0)
                    .then(b.1.cmp(&a.1))
                    .then_with(|| file.names[a.2].name.cmp(&file.names[b.2].name))
            });
            let Some(&(_, _, first)) = names.first() else {
                continue;
            };
            let Some(hit) = self.hit(slot, file, first, false) else {
                continue;
            };
            hits.push(hit);
            for &(_, _, other) in names.iter().skip(1).take(MAX_NAMES_PER_HIT - 1) {
                if extra.len() < max {
                    extra.extend(self.hit(slot, file, other, true));
                }
            }
        }
        hits.extend(extra);
        hits
    }

    /// Whether file `slot` has an attached provider.
    fn live(&self, slot: u32) -> bool {
        self.file(slot)
            .is_some_and(|f| f.providers.iter().any(|&k| self.leaf(k).is_some()))
    }

    /// The tokens whose postings a query scans: those of its term with the fewest postings
    /// (a prefix term's tokens together, counted up to [`MAX_SEARCH_SCAN`]); `None` when
    /// some term matches no token (nothing can match).
    fn generator(&self, query: &Query) -> Option<Vec<u32>> {
        let mut best: Option<(usize, Vec<u32>)> = None;
        for term in &query.terms {
            let mut ids = Vec::new();
            let mut postings = 0;
            if term.prefix {
                for (text, &id) in self
                    .token_ids
                    .range::<str, _>((Bound::Included(term.text.as_str()), Bound::Unbounded))
                {
                    if !text.starts_with(term.text.as_str()) || postings > MAX_SEARCH_SCAN {
                        break;
                    }
                    postings += self.tokens[id as usize].files.len();
                    ids.push(id);
                }
            } else if let Some(&id) = self.token_ids.get(term.text.as_str()) {
                postings = self.tokens[id as usize].files.len();
                ids.push(id);
            }
            if ids.is_empty() {
                return None;
            }
            if best.as_ref().is_none_or(|(n, _)| postings < *n) {
                best = Some((postings, ids));
            }
        }
        best.map(|(_, ids)| ids)
    }

    /// Whether file `slot` matches `query` (every term, no exclusion, the filters, an
    /// attached provider), and how well: [`TIER_NAME`] when every plain word is in a file
    /// name, else [`TIER_FOLDER`].
    fn matches(&self, query: &Query, slot: u32, file: &FileRecord) -> Option<u8> {
        let text = |t: &FileToken| &*self.tokens[t.token as usize].text;
        let mut tier = TIER_NAME;
        for term in &query.terms {
            let mut found = false;
            let mut named = false;
            for t in file.tokens.iter().filter(|t| term.matches(text(t))) {
                if term.folder_only {
                    found |= t.in_folder;
                } else {
                    found = true;
                    named |= t.in_name;
                }
            }
            if !found {
                return None;
            }
            if !term.folder_only && !named {
                tier = TIER_FOLDER;
            }
        }
        if file
            .tokens
            .iter()
            .any(|t| query.exclude.iter().any(|x| **x == *text(t)))
        {
            return None;
        }
        let passes = file
            .names
            .iter()
            .filter(|n| n.count > 0)
            .any(|n| query.passes(split_path(&n.name).0, file.size));
        (passes && self.live(slot)).then_some(tier)
    }
}

/// Rank of a hash match.
const TIER_ID: u8 = 3;
/// Rank of a file with every plain word in a file name.
const TIER_NAME: u8 = 2;
/// Rank of a file matched through its folders.
const TIER_FOLDER: u8 = 1;

#[cfg(test)]
mod tests;
