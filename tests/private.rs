//! Private networks over real QUIC: only nodes with the same `network.secret` join, peer or
//! download; the others are refused with a clear error on both sides, and a proof is bound
//! to its TLS session (no replay).

mod common;

use common::{eventually, no_progress, raw_node, search_until, write, Net, DEADLINE};
use kazoo_common::config::{Config, RoleSetting};
use kazoo_common::transport::private::{check, Side};
use kazoo_common::transport::{self, NetworkKey, Timeouts, TransportError};
use kazoo_common::wire::{ErrorCode, Hello, Intent, Role};
use kazoo_common::ContentId;
use kazoo_leaf::Node;

const SECRET: &str = "correct horse battery staple";
const OTHER: &str = "another network's secret";

fn private(mut config: Config, secret: Option<&str>) -> Config {
    config.network.secret = secret.map(str::to_owned);
    config
}

/// Dials `node` from a raw endpoint with `key`, as `intent` (the endpoint must outlive the
/// link).
async fn raw_dial(
    node: &Node,
    key: Option<&NetworkKey>,
    intent: Intent,
) -> (Result<transport::Link, TransportError>, quinn::Endpoint) {
    let (identity, endpoint) = raw_node();
    let hello = Hello::new(identity.node_id(), Role::Leaf, intent);
    let link = transport::dial_private(
        &endpoint,
        &identity,
        node.listen_addr(),
        Some(node.node_id()),
        Timeouts::default(),
        hello,
        key,
    )
    .await;
    (link, endpoint)
}

fn refused_for_network(
    (result, _endpoint): (Result<transport::Link, TransportError>, quinn::Endpoint),
) -> String {
    match result {
        Err(TransportError::Refused {
            code: ErrorCode::WrongNetwork,
            reason,
            ..
        }) => reason,
        Err(TransportError::WrongNetwork(reason)) => reason,
        other => panic!("expected a wrong-network refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_secret_join_download_and_peer() {
    let net = Net::new();
    let sn = net
        .start(private(
            net.config("sn", RoleSetting::Supernode, None),
            Some(SECRET),
        ))
        .await;
    let data = common::bytes(300_000, 7);
    write(&net.share_dir("alice"), "private mix.ogg", &data);
    let id = ContentId::from(blake3::hash(&data));
    let boot = Some(sn.listen_addr());
    let alice = net
        .start(private(
            net.config("alice", RoleSetting::Leaf, boot),
            Some(SECRET),
        ))
        .await;
    alice.wait_ready(DEADLINE).await.expect("alice joins");
    let bob = net
        .start(private(
            net.config("bob", RoleSetting::Leaf, boot),
            Some(SECRET),
        ))
        .await;
    bob.wait_ready(DEADLINE).await.expect("bob joins");
    search_until(&bob, &["private"], |h| h.len() == 1).await;
    let report = bob
        .get(id, None, no_progress())
        .await
        .expect("bob downloads");
    assert_eq!(std::fs::read(&report.path).unwrap(), data);

    // No secret, or another one: no join, and the reason is in the joiner's status.
    for (name, secret, why) in [
        (
            "open",
            None,
            "network.secret is set on the accepting node only",
        ),
        ("stranger", Some(OTHER), "different network.secret"),
    ] {
        let node = net
            .start(private(net.config(name, RoleSetting::Leaf, boot), secret))
            .await;
        let problem = eventually("the refusal in status", || {
            let problems = node.status().problems;
            async move { problems.into_iter().find(|p| p.contains("not answering")) }
        })
        .await;
        assert!(problem.contains(why), "{name}: {problem}");
        assert!(node.status().supernode.is_none());
        node.shutdown().await;
    }

    // No download from alice, no peering with the supernode, without the secret; the open
    // side is told as clearly.
    let stranger = NetworkKey::from_secret(OTHER);
    let reason = refused_for_network(raw_dial(&alice, None, Intent::Fetch).await);
    assert!(
        reason.contains("network.secret is set on the accepting node only"),
        "{reason}"
    );
    let reason = refused_for_network(raw_dial(&alice, Some(&stranger), Intent::Fetch).await);
    assert!(reason.contains("different network.secret"), "{reason}");
    let reason = refused_for_network(raw_dial(&sn, Some(&stranger), Intent::Peer).await);
    assert!(reason.contains("different network.secret"), "{reason}");
    let open_sn = net.supernode("open-sn").await;
    let key = NetworkKey::from_secret(SECRET);
    let reason = refused_for_network(raw_dial(&open_sn, Some(&key), Intent::Peer).await);
    assert!(
        reason.contains("network.secret is set on the dialling node only"),
        "{reason}"
    );
    // A private supernode bootstrapping from both peers with the private one only.
    let mut config = private(
        net.config("sn2", RoleSetting::Supernode, None),
        Some(SECRET),
    );
    config.network.bootstrap = [sn.listen_addr(), open_sn.listen_addr()]
        .map(|addr| kazoo_common::config::BootstrapEntry {
            node: None,
            addr: addr.into(),
        })
        .to_vec();
    let sn2 = net.start(config).await;
    eventually("the two private supernodes peer", || {
        let peers = sn2.status().peers;
        async move { (peers == Some(1)).then_some(()) }
    })
    .await;
    assert_eq!(sn2.status().peers, Some(1));
    assert_eq!(open_sn.status().peers, Some(0));

    // The proof is bound to its TLS session: one connection's proof fails on another.
    let (a, _ea) = raw_dial(&alice, Some(&key), Intent::Fetch).await;
    let (b, _eb) = raw_dial(&alice, Some(&key), Intent::Fetch).await;
    let (a, b) = (a.expect("dial"), b.expect("dial"));
    let proof = key.proof(&a.conn, Side::Dialler);
    assert!(check(Some(&key), &a.conn, Side::Dialler, proof).is_ok());
    assert!(
        check(Some(&key), &b.conn, Side::Dialler, proof).is_err(),
        "replayed"
    );
    assert!(
        check(Some(&key), &a.conn, Side::Acceptor, proof).is_err(),
        "reflected"
    );

    for node in [sn2, open_sn, bob, alice, sn] {
        node.shutdown().await;
    }
}

/// The real binary: a node configured with the secret joins and downloads; a node without it,
/// or with another network's, is refused, and its own `kazoo status` says why.
#[test]
fn from_the_binary_only_nodes_with_the_secret_join_and_the_others_are_told_why() {
    use common::bin::{json, listen, node_config, run, spawn, until};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let network = |secret: Option<&str>| {
        secret
            .map(|s| format!("secret = \"{s}\"\n"))
            .unwrap_or_default()
    };
    let sn_cfg = node_config(dir, "sn", "supernode", &network(Some(SECRET)), "");
    let _sn = spawn(&sn_cfg);
    let boot = format!("bootstrap = [\"{}\"]\n", listen(&sn_cfg));
    let with_boot = |name: &str, secret: Option<&str>, extra: &str| {
        node_config(dir, name, "leaf", &(network(secret) + &boot), extra)
    };
    std::fs::create_dir_all(dir.join("alice/share")).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(dir.join("alice/share/club minutes.pdf"), &data).unwrap();
    let hash = blake3::hash(&data).to_hex().to_string();
    let share = "[share]\ndirs = [\"alice/share\"]\nrescan_secs = 1\n";
    let alice_cfg = with_boot("alice", Some(SECRET), share);
    let bob_cfg = with_boot("bob", Some(SECRET), "");
    let eve_cfg = with_boot("eve", None, "");
    let mallory_cfg = with_boot("mallory", Some(OTHER), "");
    let _nodes = [&alice_cfg, &bob_cfg, &eve_cfg, &mallory_cfg].map(|c| spawn(c));

    let joined = |o: &std::process::Output| o.status.success() && !json(o)["supernode"].is_null();
    until(&alice_cfg, &["status", "--json"], |o| {
        joined(o) && json(o)["shared_files"] == 1
    });
    until(&bob_cfg, &["status", "--json"], joined);
    let got = until(&bob_cfg, &["get", "--json", &hash], |o| o.status.success());
    let path = json(&got)["path"].as_str().unwrap().to_owned();
    assert_eq!(std::fs::read(path).unwrap(), data, "bob's download");

    for outsider in [&eve_cfg, &mallory_cfg] {
        let status = json(&until(outsider, &["status", "--json"], |o| {
            json(o)["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("not the same network"))
        }));
        assert!(status["supernode"].is_null(), "{status}");
        // Nor does it get alice's file some other way.
        let get = run(outsider, &["search", "--json", "club"]);
        assert!(
            !String::from_utf8_lossy(&get.stdout).contains(&hash),
            "an outsider found the file"
        );
    }
}
