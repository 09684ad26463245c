//! Failures are loud: a bootstrap that does not answer is in the log and in `status` within
//! a join round, and an `auto` node whose bootstrap entries never answered does not become a
//! network of its own before `network.bootstrap_wait_secs`, and then says why.

mod common;

use common::{eventually, Net};
use kazoo_common::config::RoleSetting;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_bootstrap_is_reported_and_an_auto_node_waits_for_it() {
    let net = Net::new();
    // A UDP port where nothing answers QUIC (a mistyped address, a host that is down).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let silent = silent.local_addr().unwrap();
    let mut config = net.config("patient", RoleSetting::Auto, Some(silent));
    config.network.bootstrap_wait_secs = 3600;
    let patient = net.start(config).await;
    let problem = eventually("the bootstrap problem in status", || {
        let problems = patient.status().problems;
        async move { problems.into_iter().find(|p| p.contains("bootstrap")) }
    })
    .await;
    assert!(
        problem.starts_with(&format!("bootstrap {silent} not answering since ")),
        "{problem}"
    );
    // Since when, in local time of day with its age, as `kazoo status` shows every time.
    let since = problem
        .split("since ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    let now = kazoo_common::clock::now();
    let clock_secs = |hms: &str| -> i64 {
        hms.split(':')
            .map(|n| n.parse::<i64>().unwrap())
            .fold(0, |acc, n| acc * 60 + n)
    };
    let local_now = kazoo_common::clock::local_short(now, now);
    let apart = (clock_secs(&local_now) - clock_secs(since)).rem_euclid(86_400);
    assert!(apart <= 60, "{problem} (local time now {local_now})");
    assert!(
        problem.contains("(just now)") || problem.contains(" s ago)"),
        "{problem}"
    );
    assert!(!problem.contains("UTC"), "{problem}");
    assert_eq!(patient.status().role, "leaf", "no network of its own yet");

    let mut config = net.config("hasty", RoleSetting::Auto, Some(silent));
    config.network.bootstrap_wait_secs = 1;
    let hasty = net.start(config).await;
    let reason = eventually("the node promotes after its bootstrap wait", || {
        let status = hasty.status();
        async move { (status.role == "supernode").then_some(status.reason) }
    })
    .await;
    assert!(reason.contains("no bootstrap entry answered"), "{reason}");
    assert_eq!(patient.status().role, "leaf");
    patient.shutdown().await;
    hasty.shutdown().await;
}

/// Two auto nodes that name each other: the one started first finds nobody and waits; the
/// second reaches it (a leaf, which refuses the join: the network exists) and is its first
/// supernode at once; the first then joins it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answering_bootstrap_that_is_no_supernode_lets_an_auto_node_start_the_network() {
    let net = Net::new();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let mut config = net.config(
        "first",
        RoleSetting::Auto,
        Some(silent.local_addr().unwrap()),
    );
    config.network.bootstrap_wait_secs = 3600;
    let first = net.start(config).await;
    let mut config = net.config("second", RoleSetting::Auto, Some(first.listen_addr()));
    config.network.bootstrap_wait_secs = 3600;
    let second = net.start(config).await;
    let reason = eventually("the second node promotes", || {
        let status = second.status();
        async move { (status.role == "supernode").then_some(status.reason) }
    })
    .await;
    assert!(reason.contains("first node of its network"), "{reason}");
    assert!(
        second.status().problems.is_empty(),
        "{:?}",
        second.status().problems
    );
    assert_eq!(first.status().role, "leaf");
    first.shutdown().await;
    second.shutdown().await;
}
