//! `kazoo browse NODE`: another node's shared files, through the running node (or a
//! short-lived one when none runs).

use std::io::Write;

use anyhow::{bail, Context};
use kazoo_common::config::Config;
use kazoo_common::text::escape_for_terminal;
use kazoo_leaf::control::{ControlEvent, ControlRequest};
use kazoo_leaf::node::browse::{BrowseTarget, Listing};

use crate::human;

/// Lists `target`'s files (at most `max`) as a table, or as one JSON object.
pub async fn run(config: Config, json: bool, max: u32, target: BrowseTarget) -> anyhow::Result<()> {
    let request = ControlRequest::Browse { target, max };
    let listing = match crate::ask(&config, &request).await? {
        Some(events) => {
            let mut listing = None;
            for event in events {
                match event {
                    ControlEvent::Listing { listing: l } => listing = Some(l),
                    ControlEvent::Error { message } => bail!("{message}"),
                    _ => {}
                }
            }
            listing.context("the node sent no listing")?
        }
        None => {
            // A node id alone is looked up through a supernode; an address needs none.
            let node = if target.addr.is_none() {
                crate::short_lived_leaf(config).await?
            } else {
                crate::short_lived_node(config).await?
            };
            let listing = node.browse(target, max as usize).await;
            node.shutdown().await;
            listing?
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        let files: Vec<_> = listing
            .files
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "size": f.size, "hash": f.id}))
            .collect();
        let line = serde_json::json!({
            "node": listing.node, "addr": listing.addr, "total": listing.total, "files": files,
        });
        writeln!(out, "{line}")?;
        return Ok(());
    }
    table(&mut out, &listing)
}

/// The listing as a table: path (escaped for the terminal), size, hash.
fn table(out: &mut impl Write, listing: &Listing) -> anyhow::Result<()> {
    writeln!(
        out,
        "node {} at {}: {} files shared",
        listing.node, listing.addr, listing.total
    )?;
    let names: Vec<String> = listing
        .files
        .iter()
        .map(|f| escape_for_terminal(&f.name).into_owned())
        .collect();
    let width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 80);
    writeln!(out, "{:<width$}  {:>10}  HASH", "PATH", "SIZE")?;
    for (file, name) in listing.files.iter().zip(&names) {
        writeln!(out, "{name:<width$}  {:>10}  {}", human(file.size), file.id)?;
    }
    let shown = listing.files.len();
    if (shown as u64) < u64::from(listing.total) {
        writeln!(
            out,
            "showing the first {shown} of {}: use --max N for more",
            listing.total
        )?;
    }
    Ok(())
}
