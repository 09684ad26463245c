//! `kazoo status`: the running node's status, as a table a person reads (times in local
//! time with their age, a few leaves and peers) or as JSON (`--json`: everything, lists in
//! full).

use std::io::Write;

use kazoo_common::text::escape_for_terminal;
use kazoo_leaf::Status;

use crate::human;
use kazoo_common::clock;

/// Rows of a list (leaves, peers, uploads) the human output shows; `--json` has them all.
const SHOWN: usize = 5;

/// Writes `status` for a person.
pub fn render(out: &mut impl Write, status: &Status) -> std::io::Result<()> {
    let now = clock::now();
    writeln!(
        out,
        "role:          {} since {}: {}",
        status.role,
        clock::since(status.since, now),
        escape_for_terminal(&status.reason)
    )?;
    writeln!(out, "node_id:       {}", status.node_id)?;
    writeln!(out, "listen:        {}", status.listen)?;
    if status.role == "leaf" {
        leaf(out, status)?;
    }
    if let Some(leaves) = &status.leaf_list {
        let count = status.leaves.unwrap_or(leaves.len());
        writeln!(out, "leaves:        {count}")?;
        for l in leaves.iter().take(SHOWN) {
            writeln!(
                out,
                "  {}  {:<21}  {:>6} files  {}  since {}",
                l.node.short(),
                l.addr,
                l.entries,
                if l.reachable {
                    "reachable  "
                } else {
                    "unreachable"
                },
                clock::since(l.since, now)
            )?;
        }
        more(out, leaves.len())?;
    }
    if let Some(peers) = &status.peer_list {
        let count = status.peers.unwrap_or(peers.len());
        writeln!(out, "peers:         {count}")?;
        for p in peers.iter().take(SHOWN) {
            let load = p
                .load
                .map(|l| format!("{}/{} leaves", l.leaves, l.max_leaves))
                .unwrap_or_else(|| "load unknown".into());
            writeln!(
                out,
                "  {}  {:<21}  {load}  since {}",
                p.node.short(),
                p.addr,
                clock::since(p.since, now)
            )?;
        }
        more(out, peers.len())?;
    }
    if let Some(known) = status.known_supernodes {
        writeln!(out, "known supernodes: {known}")?;
    }
    if let (Some(entries), Some(files)) = (status.index_entries, status.index_files) {
        writeln!(out, "index:         {entries} entries, {files} files")?;
    }
    if let Some(relay) = status.relay {
        writeln!(
            out,
            "relay:         {} circuits open, {} relayed",
            relay.circuits,
            human(relay.relayed_bytes)
        )?;
    }
    let bytes: u64 = status.folders.iter().map(|f| f.bytes).sum();
    writeln!(
        out,
        "shared files:  {} ({})",
        status.shared_files,
        human(bytes)
    )?;
    for folder in &status.folders {
        let path = if folder.path.as_os_str().is_empty() {
            "(saved elsewhere)".into()
        } else {
            escape_for_terminal(&folder.path.to_string_lossy()).into_owned()
        };
        match &folder.problem {
            Some(problem) => writeln!(out, "  {path}: {}", escape_for_terminal(problem))?,
            None => writeln!(
                out,
                "  {path}: {} files, {}",
                folder.files,
                human(folder.bytes)
            )?,
        }
    }
    if status.uploads.is_empty() {
        writeln!(out, "uploads:       none")?;
    } else {
        writeln!(out, "uploads:       {}", status.uploads.len())?;
        for u in status.uploads.iter().take(SHOWN) {
            writeln!(
                out,
                "  to {}  {}  {} of {}  {}/s",
                u.peer.short(),
                escape_for_terminal(&u.name),
                human(u.bytes),
                human(u.size),
                human(u.rate)
            )?;
        }
        more(out, status.uploads.len())?;
    }
    for problem in &status.problems {
        writeln!(out, "warning:       {}", escape_for_terminal(problem))?;
    }
    if let Some(last) = &status.last_error {
        writeln!(
            out,
            "last error:    {} (at {}, {})",
            escape_for_terminal(&last.message),
            clock::local_short(last.at, now),
            clock::age(last.at, now)
        )?;
    }
    Ok(())
}

/// A leaf's supernode, succession and reachability.
fn leaf(out: &mut impl Write, status: &Status) -> std::io::Result<()> {
    match (status.supernode, status.supernode_addr) {
        (Some(sn), Some(addr)) => {
            writeln!(out, "supernode:     {sn} at {addr}")?;
            if let Some(reason) = &status.uplink_reason {
                writeln!(out, "               ({})", escape_for_terminal(reason))?;
            }
            let heirs: Vec<String> = status
                .succession
                .iter()
                .flatten()
                .map(|n| n.short())
                .collect();
            if heirs.is_empty() {
                writeln!(out, "succession:    none yet")?;
            } else {
                writeln!(out, "succession:    {}", heirs.join(", "))?;
            }
        }
        _ => writeln!(out, "supernode:     none (joining)")?,
    }
    match &status.reachability {
        Some(r) => writeln!(
            out,
            "reachability:  {} (seen at {})",
            r.class.describe(),
            r.observed
        ),
        None => writeln!(out, "reachability:  not known yet"),
    }
}

/// "… and N more" under a list cut at [`SHOWN`].
fn more(out: &mut impl Write, len: usize) -> std::io::Result<()> {
    if len > SHOWN {
        writeln!(out, "  … and {} more (--json lists them all)", len - SHOWN)?;
    }
    Ok(())
}
