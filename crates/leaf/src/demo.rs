//! `kazoo demo`: a three-node network on loopback in one process — a supernode and two
//! leaves, each with its own key and folders under a temporary directory. Leaf A shares a
//! generated file, leaf B searches for it, downloads it and checks its BLAKE3 hash.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kazoo_common::config::{BootstrapEntry, Config, RoleSetting};
use kazoo_common::ContentId;

use crate::node::{Node, StartOptions};

/// Size of the demo file.
const DEMO_FILE_SIZE: usize = 8 << 20;

fn config(root: &Path, name: &str, role: RoleSetting, bootstrap: Option<SocketAddr>) -> Config {
    let mut config = Config::default();
    config.node.role = role;
    config.node.listen = SocketAddr::from(([127, 0, 0, 1], 0)).into();
    config.node.data_dir = root.join(name).join("data");
    config.share.dirs = vec![root.join(name).join("shared")];
    config.share.download_dir = Some(root.join(name).join("downloads"));
    config.network.bootstrap = bootstrap
        .map(|addr| {
            vec![BootstrapEntry {
                node: None,
                addr: addr.into(),
            }]
        })
        .unwrap_or_default();
    config
}

/// Runs the demo, narrating to `out`.
pub async fn run(out: &mut impl Write) -> anyhow::Result<()> {
    let root = tempfile::tempdir().context("creating a temporary directory")?;
    let options = StartOptions {
        ..StartOptions::default()
    };
    let sn_config = config(root.path(), "supernode", RoleSetting::Supernode, None);
    let sn = Node::start(sn_config, options.clone()).await?;
    let sn_addr = sn.listen_addr();
    writeln!(
        out,
        "supernode {} listening on {sn_addr}",
        sn.node_id().short()
    )?;

    let a_config = config(root.path(), "leaf-a", RoleSetting::Leaf, Some(sn_addr));
    let shared = a_config.share.dirs[0].clone();
    std::fs::create_dir_all(&shared)?;
    let content: Vec<u8> = (0..DEMO_FILE_SIZE as u64)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let id = ContentId::from(blake3::hash(&content));
    std::fs::write(shared.join("kazoo demo song.ogg"), &content)?;
    let a = Node::start(a_config, options.clone()).await?;
    a.wait_ready(Duration::from_secs(10)).await?;
    writeln!(
        out,
        "leaf A {} joined; shares 'kazoo demo song.ogg' ({id})",
        a.node_id().short()
    )?;

    let b_config = config(root.path(), "leaf-b", RoleSetting::Leaf, Some(sn_addr));
    let b = Node::start(b_config, options).await?;
    b.wait_ready(Duration::from_secs(10)).await?;
    writeln!(out, "leaf B {} joined", b.node_id().short())?;

    let words = vec!["demo".to_string(), "SONG".to_string()];
    let deadline = Instant::now() + Duration::from_secs(10);
    let hit = loop {
        if let Some(hit) = b.search(&words, 10).await?.into_iter().next() {
            break hit;
        }
        if Instant::now() > deadline {
            bail!("the shared file never became searchable");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    writeln!(
        out,
        "leaf B searched 'demo SONG': {} ({} bytes, {} source)",
        hit.name, hit.size, hit.sources
    )?;

    let (progress, _) = tokio::sync::watch::channel(Default::default());
    let report = b.get(hit.id, None, progress).await?;
    let got = std::fs::read(&report.path)?;
    let verified = ContentId::from(blake3::hash(&got)) == id;
    writeln!(
        out,
        "leaf B downloaded {} bytes to {} in {:.3}s; BLAKE3 {}",
        report.bytes,
        report.path.display(),
        report.seconds,
        if verified { "matches" } else { "DIFFERS" }
    )?;
    for node in [&b, &a, &sn] {
        node.shutdown().await;
    }
    if !verified {
        bail!("downloaded file does not match its hash");
    }
    writeln!(out, "demo OK")?;
    Ok(())
}
