//! The audit: who is attached to whom, what each supernode counts, and whether every file on
//! the disks of live nodes can be found from elsewhere.
//!
//! Definitions (the README repeats them):
//! * **attached leaves of a supernode `s`**: live, answering nodes with role `leaf` whose
//!   status names `s` as their `supernode`.
//! * **ghost leaves**: summed over live supernodes, the leaves `s` counts (status `leaves`)
//!   beyond its attached leaves: `Σ max(0, leaves(s) − attached(s))`.
//! * **uncounted leaves**: the converse, leaves that say they are attached to `s` beyond what
//!   `s` counts: `Σ max(0, attached(s) − leaves(s))` (a leaf that believes it is attached to
//!   a supernode that has forgotten it).
//! * **unattached leaves**: live leaves whose status has no `supernode`; **stale uplinks**:
//!   leaves naming a supernode that is not a live supernode.
//! * **a file is found** when a search from another node returns its content id with the
//!   owning node among the providers. A pass searches the owner's tag word (a word only its
//!   file names contain) from one node, then, for what was missing, the tag and each missing
//!   content id from a second node (attached elsewhere if possible). The final audit counts
//!   a file **lost** only after searching its owner's tag from every other live node.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use kazoo_common::{ContentId, NodeId};
use kazoo_leaf::Status;

use crate::cluster::{self, lock, Shared, MAX_LEAVES};

/// Most results asked per search (the wire maximum).
const MAX_RESULTS: u32 = 200;

/// A node whose files are audited: index, id, tag word, files on disk (name, content id).
type Owner = (usize, NodeId, String, Vec<(String, ContentId)>);

/// A live supernode as the audit saw it.
pub struct SnView {
    pub node: usize,
    pub leaves: usize,
    pub attached: Vec<usize>,
    pub index_files: usize,
    pub peers: usize,
}

/// One node's files that were not found.
pub struct Lost {
    pub node: usize,
    pub on_disk: usize,
    pub names: Vec<String>,
}

#[derive(Default)]
pub struct Audit {
    pub live: usize,
    pub unresponsive: Vec<usize>,
    pub sns: Vec<SnView>,
    /// Live answering leaves.
    pub leaves: usize,
    pub unattached: Vec<usize>,
    pub stale_uplink: Vec<usize>,
    pub ghost: usize,
    pub uncounted: usize,
    /// Supernodes counting, or with attached, more than `max_leaves`.
    pub over_cap: usize,
    pub files: usize,
    pub lost: Vec<Lost>,
    /// Files no other node could search for (no node answered a search).
    pub unverifiable: usize,
    /// Files the control-socket searches missed but `kazoo search` found (should be 0: a
    /// non-zero count means the audit's own searches are suspect).
    pub found_by_cli: usize,
}

/// The content ids `kazoo --config CONFIG search --json --max 200 WORD` prints.
async fn cli_search(config: &std::path::Path, word: &str) -> HashSet<ContentId> {
    let run = tokio::process::Command::new(cluster::bin())
        .arg("--config")
        .arg(config)
        .args(["search", "--json", "--max", "200", word])
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    let Ok(Ok(out)) = tokio::time::timeout(std::time::Duration::from_secs(30), run).await else {
        return HashSet::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["hash"].as_str().and_then(|h| h.parse().ok()))
        .collect()
}

impl Audit {
    pub fn lost_files(&self) -> usize {
        self.lost.iter().map(|l| l.names.len()).sum()
    }

    pub fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.unverifiable == 0
            && self.ghost == 0
            && self.uncounted == 0
            && self.unattached.is_empty()
            && self.stale_uplink.is_empty()
            && self.unresponsive.is_empty()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} live, {} supernodes, {} leaves ({} unattached, {} stale), ghost {}, uncounted {}, lost {}/{} files{}",
            self.live,
            self.sns.len(),
            self.leaves,
            self.unattached.len(),
            self.stale_uplink.len(),
            self.ghost,
            self.uncounted,
            self.lost_files(),
            self.files,
            if self.unverifiable > 0 {
                format!(" ({} unverifiable)", self.unverifiable)
            } else {
                String::new()
            }
        )
    }
}

/// The supernode a node searches through (itself when a supernode).
fn home(status: &Status) -> Option<NodeId> {
    if status.role == "supernode" {
        Some(status.node_id)
    } else {
        status.supernode
    }
}

/// Runs one audit pass. `thorough`: a file missing after two searchers is searched from
/// every other live node before it counts as lost.
pub async fn audit(world: &Shared, thorough: bool) -> Audit {
    let statuses = cluster::refresh(world).await;
    let mut audit = Audit {
        live: statuses.len(),
        ..Audit::default()
    };
    let answering: BTreeMap<usize, Status> = statuses
        .iter()
        .filter_map(|(i, s)| s.clone().map(|s| (*i, s)))
        .collect();
    audit.unresponsive = statuses
        .iter()
        .filter(|(_, s)| s.is_none())
        .map(|(i, _)| *i)
        .collect();
    for (&i, s) in &answering {
        if s.role == "supernode" {
            audit.sns.push(SnView {
                node: i,
                leaves: s.leaves.unwrap_or(0),
                attached: Vec::new(),
                index_files: s.index_files.unwrap_or(0),
                peers: s.peers.unwrap_or(0),
            });
        }
    }
    for (&i, s) in &answering {
        if s.role == "supernode" {
            continue;
        }
        audit.leaves += 1;
        match s.supernode {
            None => audit.unattached.push(i),
            Some(sn) => match audit
                .sns
                .iter_mut()
                .find(|v| answering[&v.node].node_id == sn)
            {
                Some(view) => view.attached.push(i),
                None => audit.stale_uplink.push(i),
            },
        }
    }
    for view in &audit.sns {
        audit.ghost += view.leaves.saturating_sub(view.attached.len());
        audit.uncounted += view.attached.len().saturating_sub(view.leaves);
        if view.leaves.max(view.attached.len()) > MAX_LEAVES {
            audit.over_cap += 1;
        }
    }

    // Files: what each answering node has on disk, searched from elsewhere.
    let owners: Vec<Owner> = {
        let w = lock(world);
        answering
            .iter()
            .map(|(&i, s)| {
                (
                    i,
                    s.node_id,
                    w.nodes[i].tag.clone(),
                    w.nodes[i].files_on_disk(),
                )
            })
            .collect()
    };
    let data_of = |i: usize| -> PathBuf { lock(world).nodes[i].data.clone() };
    for (owner, owner_id, tag, files) in owners {
        audit.files += files.len();
        if files.is_empty() {
            continue;
        }
        let want: HashSet<ContentId> = files.iter().map(|(_, h)| *h).collect();
        let searchers: Vec<usize> = lock(world)
            .searchers(&[owner])
            .into_iter()
            .filter(|i| answering.contains_key(i))
            .collect();
        let mut found = HashSet::new();
        let mut first: Option<usize> = None;
        for &s in searchers.iter().take(3) {
            if let Ok(hits) =
                cluster::search(&data_of(s), std::slice::from_ref(&tag), MAX_RESULTS).await
            {
                found.extend(cluster::found_by(&hits, owner_id));
                first = Some(s);
                break;
            }
        }
        let Some(first) = first else {
            audit.unverifiable += files.len();
            continue;
        };
        let missing = |found: &HashSet<ContentId>| -> Vec<ContentId> {
            want.iter()
                .filter(|h| !found.contains(h))
                .copied()
                .collect()
        };
        if !missing(&found).is_empty() {
            // A second opinion, from a node with another supernode if there is one.
            let first_home = home(&answering[&first]);
            let mut second: Vec<usize> =
                searchers.iter().copied().filter(|&s| s != first).collect();
            second.sort_by_key(|s| home(&answering[s]) == first_home);
            if let Some(&s) = second.first() {
                let data = data_of(s);
                if let Ok(hits) =
                    cluster::search(&data, std::slice::from_ref(&tag), MAX_RESULTS).await
                {
                    found.extend(cluster::found_by(&hits, owner_id));
                }
                for h in missing(&found) {
                    if let Ok(hits) = cluster::search(&data, &[h.to_hex()], MAX_RESULTS).await {
                        found.extend(cluster::found_by(&hits, owner_id));
                    }
                }
            }
        }
        if thorough && !missing(&found).is_empty() {
            for &s in &searchers {
                if let Ok(hits) =
                    cluster::search(&data_of(s), std::slice::from_ref(&tag), MAX_RESULTS).await
                {
                    found.extend(cluster::found_by(&hits, owner_id));
                }
            }
            // A last cross-check through the real CLI (`kazoo search --json`, which shows no
            // providers: any hit for the content id counts) from two of those nodes.
            for &s in searchers.iter().take(2) {
                let config = lock(world).nodes[s].config.clone();
                let hashes = cli_search(&config, &tag).await;
                let by_cli: Vec<ContentId> = missing(&found)
                    .into_iter()
                    .filter(|h| hashes.contains(h))
                    .collect();
                audit.found_by_cli += by_cli.len();
                found.extend(by_cli);
            }
        }
        let lost: HashSet<ContentId> = missing(&found).into_iter().collect();
        if !lost.is_empty() {
            audit.lost.push(Lost {
                node: owner,
                on_disk: files.len(),
                names: files
                    .iter()
                    .filter(|(_, h)| lost.contains(h))
                    .map(|(n, _)| n.clone())
                    .collect(),
            });
        }
    }
    audit
}

/// Diagnostic lines: per supernode, then for each node with lost files, unattached or stale
/// uplink: its status, its supernode's status, and the last lines of its log.
pub fn diagnose(world: &Shared, audit: &Audit, max_nodes: usize) -> Vec<String> {
    let w = lock(world);
    let mut out = Vec::new();
    for v in &audit.sns {
        let attached: Vec<&str> = v
            .attached
            .iter()
            .map(|&i| w.nodes[i].name.as_str())
            .collect();
        out.push(format!(
            "supernode {} ({}): counts {} leaves, {} attached [{}], {} peers, {} files indexed",
            w.nodes[v.node].name,
            w.nodes[v.node].id.map(|i| i.short()).unwrap_or_default(),
            v.leaves,
            v.attached.len(),
            attached.join(" "),
            v.peers,
            v.index_files
        ));
    }
    let describe = |i: usize, what: String, out: &mut Vec<String>| {
        let node = &w.nodes[i];
        let Some(s) = &node.status else {
            out.push(format!("{} {what}: no status", node.name));
            return;
        };
        let sn = match s.supernode {
            Some(id) => {
                let view = audit.sns.iter().find(|v| w.nodes[v.node].id == Some(id));
                match view {
                    Some(v) => format!(
                        "{} (live supernode counting {} leaves, {} attached)",
                        w.name_of(id),
                        v.leaves,
                        v.attached.len()
                    ),
                    None => format!("{} (not a live supernode)", w.name_of(id)),
                }
            }
            None => "none".into(),
        };
        out.push(format!(
            "{} ({}) {what}: role {} ({}), supernode {sn}, uplink {:?}, shared_files {}, on disk {}",
            node.name,
            s.node_id.short(),
            s.role,
            s.reason,
            s.uplink_reason.as_deref().unwrap_or("-"),
            s.shared_files,
            node.files_on_disk().len()
        ));
        for line in cluster::log_tail(&node.log, 5, None) {
            out.push(format!("    log: {}", truncate(&line, 220)));
        }
        // What its supernode logged about it.
        if let Some(sn) = s.supernode.and_then(|id| w.by_id(id)) {
            let short = s.node_id.short();
            for line in cluster::log_tail(&w.nodes[sn].log, 5, Some(&short)) {
                out.push(format!(
                    "    {} log: {}",
                    w.nodes[sn].name,
                    truncate(&line, 220)
                ));
            }
        }
    };
    for l in audit.lost.iter().take(max_nodes) {
        let what = format!(
            "lost {}/{} files (e.g. {:?})",
            l.names.len(),
            l.on_disk,
            l.names.first().map(String::as_str).unwrap_or("")
        );
        describe(l.node, what, &mut out);
    }
    if audit.lost.len() > max_nodes {
        out.push(format!(
            "... and {} more nodes with lost files",
            audit.lost.len() - max_nodes
        ));
    }
    for &i in audit.unattached.iter().take(max_nodes) {
        describe(i, "unattached".into(), &mut out);
    }
    for &i in audit.stale_uplink.iter().take(max_nodes) {
        describe(i, "stale uplink".into(), &mut out);
    }
    for &i in &audit.unresponsive {
        out.push(format!(
            "{}: alive but its control socket does not answer",
            w.nodes[i].name
        ));
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}
