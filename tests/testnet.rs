//! The many-host test network (`crates/testnet`): each NAT kind shown by UDP probes between
//! hosts in network namespaces, shaped links measured, cleanup checked, and the real `kazoo`
//! binary across NATs. Needs root (skipped with a notice otherwise; a failure under CI=true).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::kazoo_net::{KazooNode, NodeSpec, PORT};
use kazoo_testnet::{Home, Host, Link, Nat, Net, Proc};

/// How long a datagram that should arrive may take.
const DEADLINE: Duration = Duration::from_secs(10);

fn net(test: &str) -> Option<Net> {
    Net::new_or_skip(test)
}

fn sock(host: &Host) -> UdpSocket {
    let sock = host.udp_socket(0).expect("udp socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    sock
}

fn port(sock: &UdpSocket) -> u16 {
    sock.local_addr().unwrap().port()
}

/// Receives datagrams on `sock` until one equals `want` (failing after [`DEADLINE`]); returns
/// its source and whether `token` came first.
fn recv_until(sock: &UdpSocket, want: &[u8], token: &[u8]) -> (SocketAddr, bool) {
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 2048];
    let mut saw_token = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "no datagram {:?}",
            String::from_utf8_lossy(want)
        );
        if let Ok((len, from)) = sock.recv_from(&mut buf) {
            saw_token |= &buf[..len] == token;
            if &buf[..len] == want {
                return (from, saw_token);
            }
        }
    }
}

/// The outside address `inside` is seen at when it sends to `outside`.
fn mapping(inside: &UdpSocket, outside: &UdpSocket, to: SocketAddr) -> SocketAddr {
    let hello = format!("hello {}", port(inside));
    inside.send_to(hello.as_bytes(), to).unwrap();
    recv_until(outside, hello.as_bytes(), b"").0
}

/// Whether `token`, already sent towards `inside`, reached it. `control` is an endpoint
/// `inside` has sent to, seeing it at `seen_at`: its markers always get through and, sent
/// after the token along the same path, arrive after it; a round trip from `inside` between
/// two markers flushes anything still on the way.
fn arrived(
    inside: &UdpSocket,
    control: &UdpSocket,
    control_addr: SocketAddr,
    seen_at: SocketAddr,
    token: &[u8],
) -> bool {
    control.send_to(b"marker 1", seen_at).unwrap();
    let (_, mut saw) = recv_until(inside, b"marker 1", token);
    inside.send_to(b"ping", control_addr).unwrap();
    recv_until(control, b"ping", b"");
    control.send_to(b"marker 2", seen_at).unwrap();
    saw |= recv_until(inside, b"marker 2", token).1;
    saw
}

/// What one NAT kind did to a host's UDP socket.
#[derive(Debug, PartialEq)]
struct Seen {
    /// Where the first destination saw it is the router's address (or the host's own).
    address: std::net::IpAddr,
    /// The mapping kept the inside port.
    port_kept: bool,
    /// The same outside port towards three destinations.
    same_mapping: bool,
    /// A host it never sent to reached it (at the first mapping).
    unknown_host_in: bool,
    /// A new port of an address it sent to reached it.
    known_address_new_port_in: bool,
    /// The second destination, once sent to, reached it at the mapping it saw.
    contacted_in: bool,
    /// Anything reached a port it never sent from.
    unmapped_in: bool,
}

/// Probes a `nat` router from public hosts `p1` (two sockets) and `p2`.
fn probe(test: &str, nat: Nat) -> Option<(Seen, Home)> {
    let net = net(test)?;
    let p1 = net.public_host("p1", Link::new()).unwrap();
    let p2 = net.public_host("p2", Link::new()).unwrap();
    let home = net.home("home", nat, Link::new()).unwrap();
    let a = home.host("a").unwrap();
    let (inside, idle) = (sock(&a), sock(&a));
    let (s1, s1b, s2) = (sock(&p1), sock(&p1), sock(&p2));
    let at = |host: &Host, s: &UdpSocket| SocketAddr::from((host.addr(), port(s)));

    let m1 = mapping(&inside, &s1, at(&p1, &s1));
    let control = |token: &[u8]| arrived(&inside, &s1, at(&p1, &s1), m1, token);

    s2.send_to(b"unknown host", m1).unwrap();
    let unknown_host_in = control(b"unknown host");
    s1b.send_to(b"new port", m1).unwrap();
    let known_address_new_port_in = control(b"new port");
    let unmapped = SocketAddr::from((m1.ip(), port(&idle)));
    s2.send_to(b"unmapped", unmapped).unwrap();
    let unmapped_in = control(b"unmapped") || {
        // It may have reached the idle socket instead.
        let mut buf = [0u8; 64];
        idle.set_nonblocking(true).unwrap();
        idle.recv_from(&mut buf).is_ok()
    };

    let m2 = mapping(&inside, &s2, at(&p2, &s2));
    let m3 = mapping(&inside, &s1b, at(&p1, &s1b));
    s2.send_to(b"contacted", m2).unwrap();
    let contacted_in = control(b"contacted") || {
        let (mut buf, deadline) = ([0u8; 64], Instant::now() + DEADLINE);
        // Under a symmetric NAT it arrives (if at all) at m2, not m1: wait for it there.
        loop {
            match inside.recv_from(&mut buf) {
                Ok((len, _)) if &buf[..len] == b"contacted" => break true,
                _ if Instant::now() > deadline => break false,
                _ => {}
            }
        }
    };
    let seen = Seen {
        address: m1.ip(),
        port_kept: m1.port() == port(&inside),
        same_mapping: m1 == m2 && m2 == m3,
        unknown_host_in,
        known_address_new_port_in,
        contacted_in,
        unmapped_in,
    };
    // The network goes with the test; the home's handle only answers questions now.
    drop(net);
    Some((seen, home))
}

fn check_cone(test: &str, nat: Nat, cone_in: [bool; 2]) {
    let Some((seen, home)) = probe(test, nat) else {
        return;
    };
    let [unknown_host_in, known_address_new_port_in] = cone_in;
    assert_eq!(
        seen,
        Seen {
            address: home.wan_addr().into(),
            port_kept: true,
            same_mapping: true,
            unknown_host_in,
            known_address_new_port_in,
            contacted_in: true,
            unmapped_in: false,
        },
        "{nat:?}"
    );
}

#[test]
fn full_cone_keeps_one_mapping_open_to_everyone() {
    check_cone("full_cone", Nat::FullCone, [true, true]);
}

#[test]
fn cone_maps_one_port_of_two_hosts_apart() {
    let Some(net) = net("cone_shared_port") else {
        return;
    };
    let p1 = net.public_host("p1", Link::new()).unwrap();
    let p2 = net.public_host("p2", Link::new()).unwrap();
    let home = net.home("home", Nat::FullCone, Link::new()).unwrap();
    let fixed = 4710;
    let bind = |name: &str| {
        let sock = home.host(name).unwrap().udp_socket(fixed).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sock
    };
    let (a, b) = (bind("a"), bind("b"));
    let (s1, s2) = (sock(&p1), sock(&p2));
    let (to1, to2) = (
        SocketAddr::from((p1.addr(), port(&s1))),
        SocketAddr::from((p2.addr(), port(&s2))),
    );
    let a1 = mapping(&a, &s1, to1);
    // b's first flow goes where a's port is still free: plain NAT would reuse it.
    let b2 = mapping(&b, &s2, to2);
    let b1 = mapping(&b, &s1, to1);
    let a2 = mapping(&a, &s2, to2);
    assert_eq!((a1.port(), a2.port()), (fixed, fixed));
    assert_ne!(b1.port(), fixed);
    assert_eq!(b1, b2, "b keeps one mapping");
    // Each mapping leads to its own host.
    s2.send_to(b"to a", a1).unwrap();
    recv_until(&a, b"to a", b"");
    s1.send_to(b"to b", b1).unwrap();
    recv_until(&b, b"to b", b"");
}

#[test]
fn address_restricted_cone_admits_only_contacted_addresses() {
    check_cone("address_restricted", Nat::AddressRestricted, [false, true]);
}

#[test]
fn port_restricted_cone_admits_only_contacted_endpoints() {
    check_cone("port_restricted", Nat::PortRestricted, [false, false]);
}

#[test]
fn symmetric_nat_maps_each_destination_apart() {
    let Some((seen, home)) = probe("symmetric", Nat::Symmetric) else {
        return;
    };
    assert_eq!(seen.address, std::net::IpAddr::from(home.wan_addr()));
    assert!(!seen.same_mapping, "{seen:?}");
    assert!(!seen.unknown_host_in, "{seen:?}");
    assert!(!seen.known_address_new_port_in, "{seen:?}");
    assert!(seen.contacted_in, "a reply at its own mapping: {seen:?}");
    assert!(!seen.unmapped_in, "{seen:?}");
}

#[test]
fn firewall_keeps_addresses_and_drops_unsolicited() {
    let Some((seen, home)) = probe("firewall", Nat::Firewall) else {
        return;
    };
    assert_ne!(seen.address, std::net::IpAddr::from(home.wan_addr()));
    assert_eq!(
        seen,
        Seen {
            address: seen.address,
            port_kept: true,
            same_mapping: true,
            unknown_host_in: false,
            known_address_new_port_in: false,
            contacted_in: true,
            unmapped_in: false,
        }
    );
}

#[test]
fn ipv6_reaches_public_hosts_and_nothing_else() {
    let Some(net) = net("ipv6") else { return };
    // One plain link and one through a delay link's TAP devices.
    let a = net.public_host("a", Link::new()).unwrap();
    let b = net
        .public_host("b", Link::new().delay(Duration::from_millis(5)))
        .unwrap();
    let home = net.home("home", Nat::Firewall, Link::new()).unwrap();
    assert_eq!(
        home.host("inside").unwrap().addr6(),
        None,
        "homes are v4-only"
    );
    assert_eq!(home.router().addr6(), None);
    let (a6, b6) = (a.addr6().unwrap(), b.addr6().unwrap());
    assert_ne!(a6, b6);
    for ip in [a6, b6, net.gateway6()] {
        assert_eq!(ip.segments()[..4], [0x2001, 0xdb8, 0x6b7a, 0], "{ip}");
    }
    let six = |host: &Host| {
        let sock = host.udp_socket6(0).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sock
    };
    // An echo on b, asked from a: the first datagram gets through (no address is tentative)
    // and each side sees the other at its v6 address.
    let (echo, client) = (six(&b), six(&a));
    let to = SocketAddr::from((b6, port(&echo)));
    client.send_to(b"ping six", to).unwrap();
    let (from, _) = recv_until(&echo, b"ping six", b"");
    assert_eq!(from, SocketAddr::from((a6, port(&client))));
    echo.send_to(b"pong six", from).unwrap();
    assert_eq!(recv_until(&client, b"pong six", b"").0, to);
    // The same dual-stack socket still takes IPv4, seen as v4-mapped.
    let four = sock(&a);
    four.send_to(b"ping four", SocketAddr::from((b.addr(), port(&echo))))
        .unwrap();
    let (from, _) = recv_until(&echo, b"ping four", b"");
    assert_eq!(from.ip(), std::net::IpAddr::from(a.addr().to_ipv6_mapped()));
    // Off the segment there is no route: the gateway says so (ICMPv6 "no route", which a
    // connected socket reports only with IPV6_RECVERR), and nothing leaves.
    let out = six(&a);
    out.connect("[2001:db8:ffff::1]:9").unwrap();
    kazoo_testnet::report_errors6(&out).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let refused = loop {
        assert!(Instant::now() < deadline, "no unreachable from the gateway");
        let _ = out.send(b"out");
        match out.recv(&mut [0u8; 16]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            other => break other,
        }
    };
    let kind = refused.as_ref().map_err(|e| e.kind());
    assert!(
        matches!(
            kind,
            Err(std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable)
        ),
        "{refused:?}"
    );
}

/// Throughput of `bytes` sent over TCP from `from` to `to`, in bytes/s, timed from before the
/// sender connects until the receiver has read the last byte. The time includes the connection
/// set-up and any delay in scheduling either end, so the rate can only err low: timed from the
/// receiver's first read instead, a receiver scheduled late would find bytes already queued
/// and the rate would look higher than the link let through.
fn tcp_rate(from: &Host, to: &Host, bytes: usize) -> f64 {
    use std::io::{Read, Write};
    let listener = to.tcp_listener(0).unwrap();
    let addr = SocketAddr::from((to.addr(), listener.local_addr().unwrap().port()));
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut got = 0;
        while got < bytes {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {got} bytes");
            got += n;
        }
        (got, Instant::now())
    });
    let started = Instant::now();
    let mut conn = from.tcp_connect(addr).unwrap();
    conn.write_all(&vec![7u8; bytes]).unwrap();
    let (got, done) = receiver.join().unwrap();
    got as f64 / done.duration_since(started).as_secs_f64()
}

#[test]
fn tbf_caps_throughput_both_ways() {
    let Some(net) = net("tbf") else { return };
    let cap_mbit = 16;
    let capped = net
        .public_host("capped", Link::new().rate_mbit(cap_mbit))
        .unwrap();
    let free = net.public_host("free", Link::new()).unwrap();
    let other = net.public_host("other", Link::new()).unwrap();
    let cap = f64::from(cap_mbit) * 1e6 / 8.0;
    let ceiling = tcp_rate(&free, &other, 8 << 20);
    let up = tcp_rate(&capped, &free, 2 << 20);
    let down = tcp_rate(&free, &capped, 2 << 20);
    println!(
        "cap {:.1} MB/s: up {:.2}× cap, down {:.2}× cap; uncapped {:.1}× cap",
        cap / 1e6,
        up / cap,
        down / cap,
        ceiling / cap
    );
    for rate in [up, down] {
        // TCP payload below the cap (headers count against it), never above: the bytes past
        // the bucket's burst (20 KB, 1 % of 2 MiB) cannot arrive faster than the cap, and the
        // time counts from before the connection.
        assert!(rate <= cap * 1.05, "{rate} B/s over the cap {cap}");
        // 2 MiB take about 1.1 s at the cap; half the cap leaves a second for connecting and
        // scheduling.
        assert!(rate >= cap * 0.5, "{rate} B/s far below the cap {cap}");
    }
    assert!(ceiling > cap * 3.0, "uncapped {ceiling} B/s");
}

/// Sends `count` numbered datagrams from `from` to `to` and returns how many arrived.
fn delivered(from: &Host, to: &Host, count: u32) -> u32 {
    let rx = to.udp_socket(0).unwrap();
    // Room for every datagram, so the socket itself never drops one.
    kazoo_testnet::force_recv_buffer(&rx, 32 << 20).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let target = SocketAddr::from((to.addr(), port(&rx)));
    let tx = from.udp_socket(0).unwrap();
    for i in 0..count {
        tx.send_to(&i.to_be_bytes(), target).unwrap();
        if i % 50 == 49 {
            // Paced, so no queue on the way overflows.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Datagrams of one socket along one path stay in order: once an end marker (resent until
    // one survives the loss) is in, every earlier datagram that survived is in too.
    let mut seen = std::collections::HashSet::new();
    let mut buf = [0u8; 16];
    let deadline = Instant::now() + DEADLINE;
    loop {
        tx.send_to(b"end", target).unwrap();
        assert!(Instant::now() < deadline, "no end marker");
        match rx.recv_from(&mut buf) {
            Ok((3, _)) if &buf[..3] == b"end" => break,
            Ok((4, _)) => {
                seen.insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
            _ => {}
        }
    }
    // Anything queued before the first end marker was read already or is still in the
    // buffer (in order): drain without waiting.
    rx.set_nonblocking(true).unwrap();
    while let Ok((len, _)) = rx.recv_from(&mut buf) {
        if len == 4 {
            seen.insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
        }
    }
    seen.len() as u32
}

#[test]
fn loss_drops_the_configured_fraction_each_way() {
    let Some(net) = net("loss") else { return };
    let lossy = net
        .public_host("lossy", Link::new().loss_pct(10.0))
        .unwrap();
    let clean = net.public_host("clean", Link::new()).unwrap();
    let count = 4000;
    let mut rates = Vec::new();
    for (from, to) in [(&lossy, &clean), (&clean, &lossy)] {
        let lost = 1.0 - f64::from(delivered(from, to, count)) / f64::from(count);
        // 10 % of 4000: one standard deviation is 0.47 %, these bounds are over 6.
        assert!((0.07..=0.13).contains(&lost), "lost {:.1} %", lost * 100.0);
        rates.push(lost);
    }
    // And a clean link loses nothing.
    let other = net.public_host("other", Link::new()).unwrap();
    assert_eq!(delivered(&clean, &other, count), count);
    println!(
        "10 % loss link: lost {:.1} % up, {:.1} % down",
        rates[0] * 100.0,
        rates[1] * 100.0
    );
}

/// The smallest of 10 UDP round trips from `from` to an echo on `to`.
fn min_rtt(from: &Host, to: &Host) -> Duration {
    let echo = sock(to);
    let target = SocketAddr::from((to.addr(), port(&echo)));
    let client = sock(from);
    (0..10u8)
        .map(|i| {
            let start = Instant::now();
            client.send_to(&[i], target).unwrap();
            // Answered where it came from (behind NAT: its mapping).
            let (client_addr, _) = recv_until(&echo, &[i], b"");
            echo.send_to(&[i], client_addr).unwrap();
            recv_until(&client, &[i], b"");
            start.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn delay_links_add_their_round_trip() {
    let Some(net) = net("delay") else { return };
    let slow = Link::new().delay(Duration::from_millis(30));
    let slower = Link::new().delay(Duration::from_millis(10)).rate_mbit(50);
    let a = net.public_host("a", slow).unwrap();
    let b = net.public_host("b", slower).unwrap();
    let c = net.public_host("c", Link::new()).unwrap();
    let d = net.public_host("d", Link::new()).unwrap();
    let home = net.home("home", Nat::FullCone, slow).unwrap();
    let e = home.host("e").unwrap();
    let plain = min_rtt(&c, &d);
    // A delay link never delivers early: the lower bounds are hard; the upper ones generous.
    for (from, to, added) in [
        (&a, &c, slow.rtt()),
        (&a, &b, slow.rtt() + slower.rtt()),
        (&e, &c, slow.rtt()),
    ] {
        let rtt = min_rtt(from, to);
        println!(
            "{} → {}: {rtt:?} (adds {added:?}; plain {plain:?})",
            from.name(),
            to.name()
        );
        assert!(rtt >= added, "{rtt:?} < {added:?}");
        assert!(rtt < added + Duration::from_millis(150), "{rtt:?}");
    }
}

#[test]
fn dropping_the_network_removes_everything_even_on_panic() {
    let Some(net) = net("cleanup") else { return };
    let id = net.id().to_owned();
    let host = net
        .public_host("h", Link::new().delay(Duration::from_millis(5)))
        .unwrap();
    let home = net.home("home", Nat::Symmetric, Link::new()).unwrap();
    let inside = home.host("inside").unwrap();
    // A process in the host that would outlive the test, and one the test forgets.
    let mut sleeper = host.command("sleep");
    sleeper.arg("600");
    let child = Proc::spawn(&mut sleeper).unwrap();
    let mut forgotten = inside.command("sleep");
    let forgotten = std::mem::ManuallyDrop::new(Proc::spawn(forgotten.arg("600")).unwrap());
    let pids = [child.id(), forgotten.id()];
    let dir = host.dir().to_owned();
    assert!(dir.exists());
    let namespaces = || {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with(&format!("{id}-")))
            .count()
    };
    assert_eq!(namespaces(), 4, "inet, h, home, inside");
    let panicked = std::thread::spawn(move || {
        let _net = net;
        let _child = child;
        panic!("a test fails with the network up");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(namespaces(), 0);
    assert!(!dir.exists(), "{} left behind", dir.display());
    for pid in pids {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for this process to reap it.
        assert!(
            state.is_empty() || state.contains(") Z "),
            "pid {pid} still running: {state}"
        );
    }
}

/// A file of `len` bytes that differs per `seed`.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8 ^ seed).collect()
}

#[test]
fn kazoo_leaves_behind_nat_join_share_and_search() {
    let Some(net) = net("kazoo_nat") else { return };
    let wan = Link::new().delay(Duration::from_millis(10)).rate_mbit(100);
    let sn_host = net.public_host("sn", wan).unwrap();
    let cone = net.home("cone", Nat::FullCone, wan).unwrap();
    let sym = net.home("sym", Nat::Symmetric, wan).unwrap();
    let (a, b) = (cone.host("a").unwrap(), sym.host("b").unwrap());
    let sn_addr = SocketAddr::from((sn_host.addr(), PORT));

    let sn = KazooNode::start(&sn_host, NodeSpec::supernode(vec![]));
    let sn_id = sn.status()["node_id"].as_str().unwrap().to_owned();
    let files = [content(700_000, 1), content(900_000, 2)];
    let hashes: Vec<String> = files
        .iter()
        .map(|f| blake3::hash(f).to_hex().to_string())
        .collect();
    let leaf = |host: &Host, name: &str, data: &[u8]| {
        KazooNode::start(
            host,
            NodeSpec::leaf(vec![sn_addr], vec![(name.to_owned(), data.to_vec())]),
        )
    };
    let la = leaf(&a, "alpha cone.bin", &files[0]);
    let lb = leaf(&b, "beta symmetric.bin", &files[1]);
    la.wait_joined(&sn_id, 1);
    lb.wait_joined(&sn_id, 1);
    let sn_status = sn.status_until(|s| s["leaves"] == 2 && s["index_files"] == 2);
    assert_eq!(sn_status["role"], "supernode");

    // Each finds the other's file, through its NAT, by name.
    let hit = la.search_until(&["beta"], &hashes[1]);
    assert_eq!(hit["name"], "beta symmetric.bin");
    assert_eq!(hit["size"], files[1].len());
    let hit = lb.search_until(&["alpha", "cone"], &hashes[0]);
    assert_eq!(hit["name"], "alpha cone.bin");

    // A full-cone NAT keeping the inside port forwards the advertised port: the leaf behind
    // the symmetric NAT downloads from it, verified.
    let got = lb.get(&hashes[0]);
    assert!(
        got.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&got.stderr),
        la.log_tail()
    );
    let report = common::kazoo_net::json(&got);
    let path = std::path::PathBuf::from(report["path"].as_str().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), files[0]);
    assert_eq!(report["sources"][0]["reached"], "direct", "{report}");

    // Each knows what its supernode's dial back found: the cone keeps the listen port open
    // to all; the symmetric NAT maps it anew per destination and filters.
    let seen = |node: &KazooNode| node.status_until(|s| !s["reachability"].is_null());
    assert_eq!(seen(&la)["reachability"]["class"], "reachable");
    let b_seen = seen(&lb);
    assert_eq!(b_seen["reachability"]["class"], "nat", "{b_seen}");
    assert_eq!(
        b_seen["reachability"]["observed"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some(sym.wan_addr().to_string().as_str()),
        "seen at its router's public address"
    );

    // Nobody can dial the leaf behind the symmetric NAT: asked through the supernode, it
    // dials the downloader back (a reverse connection), and the file verifies.
    let got = la.get(&hashes[1]);
    assert!(
        got.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&got.stderr),
        lb.log_tail()
    );
    let report = common::kazoo_net::json(&got);
    let path = std::path::PathBuf::from(report["path"].as_str().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), files[1]);
    assert_eq!(report["sources"][0]["reached"], "reverse", "{report}");
}
