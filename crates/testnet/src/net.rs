//! The network: the public segment, its hosts and homes, and tearing it all down.

use std::collections::HashSet;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};

use crate::delay::DelayLink;
use crate::host::Host;
use crate::link::Link;
use crate::nat::Nat;
use crate::ns::{self, Namespace, PREFIX};
use crate::Error;

/// Public hosts one network holds (`198.18.1.2` to `198.18.63.251`, and
/// `2001:db8:6b7a::1:2` to `2001:db8:6b7a::3f:fb`).
pub const MAX_PUBLIC_HOSTS: u32 = 63 * 250;

/// Homes one network holds (WAN addresses `198.18.64.1` to `198.18.253.1`).
pub const MAX_HOMES: u32 = 190;

/// Hosts one home holds: each gets 2000 ephemeral ports of its own, from 20000 up, so that
/// an endpoint-independent NAT can keep every inside port.
pub const MAX_HOSTS_PER_HOME: u32 = 22;

/// Ephemeral ports per host behind a home router.
const PORTS_PER_HOST: u32 = 2000;
const FIRST_PORT: u32 = 20_000;

/// The public segment's own address, every public host's and router's default gateway.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// The public segment's IPv6 prefix length: `2001:db8:6b7a::/64`, in the documentation range
/// (RFC 3849), which is never routed anywhere.
const PREFIX6_LEN: u8 = 64;

/// The public segment's own IPv6 address, every public host's default IPv6 gateway; it
/// mirrors [`GATEWAY`] (the last two octets of a v4 address are the last two groups).
const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x6b7a, 0, 0, 0, 0, 1);

/// Networks made by this process so far (part of every name).
static NETS: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// A test network; everything in it is removed when it is dropped.
pub struct Net {
    inner: Arc<Inner>,
}

struct Inner {
    /// `kzt<pid>-<n>`: the prefix of every namespace name.
    id: String,
    inet: Arc<Namespace>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    namespaces: Vec<Arc<Namespace>>,
    delays: Vec<DelayLink>,
    names: HashSet<String>,
    public_hosts: u32,
    homes: u32,
    ports: u32,
    dir: Option<tempfile::TempDir>,
    torn_down: bool,
}

impl Net {
    /// Builds an empty network (the public segment only), or says why this machine cannot.
    pub fn new() -> Result<Net, Error> {
        check_tools()?;
        SWEEP.call_once(ns::sweep_stale);
        let id = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NETS.fetch_add(1, Ordering::Relaxed)
        );
        let inet = Namespace::create(&format!("{id}-inet")).map_err(|e| match e {
            Error::Command { stderr, .. } => Error::Unavailable(format!("ip netns add: {stderr}")),
            other => other,
        })?;
        let net = Net {
            inner: Arc::new(Inner {
                id,
                inet: Arc::new(inet),
                state: Mutex::new(State::default()),
            }),
        };
        let dir = tempfile::Builder::new()
            .prefix("kazoo-testnet-")
            .tempdir()
            .map_err(|source| Error::Io {
                what: "temporary directory".into(),
                source,
            })?;
        net.inner.state().dir = Some(dir);
        let inet = &net.inner.inet;
        forwarding(inet)?;
        inet.sysctl("net/ipv6/conf/all/forwarding", "1")?;
        // No multicast snooping: IPv6 neighbour discovery goes to solicited-node multicast
        // groups, flooded to every port like ARP's broadcasts, whatever MLD reports got lost.
        inet.ip(&[
            "link",
            "add",
            "br0",
            "address",
            &bridge_mac(0),
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        inet.ip(&["addr", "add", &format!("{GATEWAY}/16"), "dev", "br0"])?;
        inet.ip(&[
            "addr",
            "add",
            &format!("{GATEWAY6}/{PREFIX6_LEN}"),
            "dev",
            "br0",
            "nodad",
        ])?;
        inet.ip(&["link", "set", "br0", "up"])?;
        Ok(net)
    }

    /// [`Net::new`] for a test named `test`: `None` (after saying so on stderr) when this
    /// machine cannot make namespaces, unless under CI ([`crate::under_ci`]), where that
    /// panics; any other failure panics.
    pub fn new_or_skip(test: &str) -> Option<Net> {
        match Net::new() {
            Ok(net) => Some(net),
            Err(Error::Unavailable(why)) if !crate::under_ci() => {
                // Straight to stderr: the test harness captures `eprintln!` of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: the test network is unavailable ({why}); \
                     it runs as root with iproute2 and nftables, and CI=true makes this a failure"
                );
                None
            }
            Err(e) => panic!("{test}: cannot build the test network: {e}"),
        }
    }

    /// The prefix of every namespace of this network.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The public segment's gateway address.
    pub fn gateway(&self) -> Ipv4Addr {
        GATEWAY
    }

    /// The public segment's gateway IPv6 address.
    pub fn gateway6(&self) -> Ipv6Addr {
        GATEWAY6
    }

    /// A host on the public segment (reachable by everyone) at the next public address, and
    /// the IPv6 address that mirrors it ([`Host::addr6`]).
    pub fn public_host(&self, name: &str, link: Link) -> Result<Host, Error> {
        link.check()?;
        let index = {
            let mut state = self.inner.state();
            if state.public_hosts >= MAX_PUBLIC_HOSTS {
                return Err(Error::Spec(format!(
                    "more than {MAX_PUBLIC_HOSTS} public hosts"
                )));
            }
            state.public_hosts += 1;
            state.public_hosts - 1
        };
        let (high, low) = (1 + index / 250, 2 + index % 250);
        let addr = Ipv4Addr::new(198, 18, high as u8, low as u8);
        let addr6 = Ipv6Addr::new(0x2001, 0xdb8, 0x6b7a, 0, 0, 0, high as u16, low as u16);
        let (ns, dir) = self.inner.namespace(name)?;
        self.inner.attach(&ns, "eth0", link)?;
        ns.ip(&["addr", "add", &format!("{addr}/16"), "dev", "eth0"])?;
        ns.ip(&["route", "add", "default", "via", &GATEWAY.to_string()])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{addr6}/{PREFIX6_LEN}"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        ns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &GATEWAY6.to_string(),
        ])?;
        Ok(Host {
            name: name.to_owned(),
            addr,
            addr6: Some(addr6),
            ns,
            dir,
        })
    }

    /// A home: a router doing `nat` whose WAN side is on the public segment over `link`, and
    /// an empty LAN ([`Home::host`] adds hosts).
    pub fn home(&self, name: &str, nat: Nat, link: Link) -> Result<Home, Error> {
        link.check()?;
        let index = {
            let mut state = self.inner.state();
            if state.homes >= MAX_HOMES {
                return Err(Error::Spec(format!("more than {MAX_HOMES} homes")));
            }
            state.homes += 1;
            state.homes - 1
        };
        let wan = Ipv4Addr::new(198, 18, (64 + index) as u8, 1);
        let subnet = (index + 1) as u8;
        let lan = if nat.translates() {
            [192, 168, subnet]
        } else {
            [198, 19, subnet]
        };
        let gateway = Ipv4Addr::new(lan[0], lan[1], lan[2], 1);
        let (ns, dir) = self.inner.namespace(name)?;
        forwarding(&ns)?;
        self.inner.attach(&ns, "wan", link)?;
        ns.ip(&["addr", "add", &format!("{wan}/16"), "dev", "wan"])?;
        ns.ip(&["route", "add", "default", "via", &GATEWAY.to_string()])?;
        ns.ip(&[
            "link",
            "add",
            "lan",
            "address",
            &bridge_mac(1 + index),
            "type",
            "bridge",
        ])?;
        ns.ip(&["addr", "add", &format!("{gateway}/24"), "dev", "lan"])?;
        ns.ip(&["link", "set", "lan", "up"])?;
        ns.exec("nft", &["-f", "-"], Some(&nat.ruleset(wan)))?;
        if !nat.translates() {
            let subnet = format!("{}.{}.{}.0/24", lan[0], lan[1], lan[2]);
            self.inner
                .inet
                .ip(&["route", "add", &subnet, "via", &wan.to_string()])?;
        }
        Ok(Home {
            router: Host {
                name: name.to_owned(),
                addr: wan,
                addr6: None,
                ns,
                dir,
            },
            nat,
            lan,
            hosts: Mutex::new(0),
            net: Arc::clone(&self.inner),
        })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.inner.tear_down();
    }
}

/// A home router and its LAN.
pub struct Home {
    router: Host,
    nat: Nat,
    lan: [u8; 3],
    hosts: Mutex<u32>,
    net: Arc<Inner>,
}

impl Home {
    /// Its NAT kind.
    pub fn nat(&self) -> Nat {
        self.nat
    }

    /// The router's public (WAN) address: where a NATed host's traffic comes from.
    pub fn wan_addr(&self) -> Ipv4Addr {
        self.router.addr
    }

    /// The router itself (its address is the WAN address), e.g. to list its mappings with
    /// `nft list map ip kazoo_testnet ext`.
    pub fn router(&self) -> &Host {
        &self.router
    }

    /// A host on this home's LAN at the next LAN address, with its default route through the
    /// router and, behind a cone NAT, ephemeral ports `20000 + 2000·i` to `+1999` for the
    /// `i`-th host, so that no two hosts contend for one outside port.
    pub fn host(&self, name: &str) -> Result<Host, Error> {
        let index = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            if *hosts >= MAX_HOSTS_PER_HOME {
                return Err(Error::Spec(format!(
                    "more than {MAX_HOSTS_PER_HOME} hosts in one home"
                )));
            }
            *hosts += 1;
            *hosts - 1
        };
        let [a, b, c] = self.lan;
        let addr = Ipv4Addr::new(a, b, c, (2 + index) as u8);
        let (ns, dir) = self.net.namespace(name)?;
        let port = format!("h{index}");
        let router = &self.router.ns;
        ns.veth("eth0", &port, router)?;
        router.ip(&["link", "set", &port, "master", "lan", "up"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &Ipv4Addr::new(a, b, c, 1).to_string(),
        ])?;
        let first = FIRST_PORT + PORTS_PER_HOST * index;
        ns.sysctl(
            "net/ipv4/ip_local_port_range",
            &format!("{first} {}", first + PORTS_PER_HOST - 1),
        )?;
        Ok(Host {
            name: name.to_owned(),
            addr,
            addr6: None,
            ns,
            dir,
        })
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new namespace for host `name` (a short unique name) and its scratch directory.
    fn namespace(&self, name: &str) -> Result<(Arc<Namespace>, PathBuf), Error> {
        let valid = !name.is_empty()
            && name.len() <= 24
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid || name == "inet" {
            return Err(Error::Spec(format!(
                "host name {name:?}: 1–24 of a-z, 0-9, _ (and not \"inet\")"
            )));
        }
        let dir = {
            let mut state = self.state();
            if state.torn_down {
                return Err(Error::Spec("the network is already torn down".into()));
            }
            if !state.names.insert(name.to_owned()) {
                return Err(Error::Spec(format!("two hosts named {name:?}")));
            }
            let root = state.dir.as_ref().map(|d| d.path().join(name));
            root.ok_or_else(|| Error::Spec("the network has no directory".into()))?
        };
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: format!("create {}", dir.display()),
            source,
        })?;
        let ns = Arc::new(Namespace::create(&format!("{}-{name}", self.id))?);
        self.state().namespaces.push(Arc::clone(&ns));
        Ok((ns, dir))
    }

    /// Connects device `dev` of `ns` to the public bridge over `link`.
    fn attach(&self, ns: &Arc<Namespace>, dev: &str, link: Link) -> Result<(), Error> {
        let port = {
            let mut state = self.state();
            state.ports += 1;
            format!("p{}", state.ports)
        };
        if link.delay.is_zero() {
            ns.veth(dev, &port, &self.inet)?;
        } else {
            let delay = DelayLink::start(
                Arc::clone(ns),
                dev,
                Arc::clone(&self.inet),
                &port,
                link.delay,
            )?;
            self.state().delays.push(delay);
        }
        self.inet
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        ns.ip(&["link", "set", dev, "up"])?;
        link.shape(ns, dev)?;
        link.shape(&self.inet, &port)?;
        Ok(())
    }

    /// Kills every process, stops every delay thread, removes every namespace and the
    /// directory. Runs once.
    fn tear_down(&self) {
        let (namespaces, delays, dir) = {
            let mut state = self.state();
            if state.torn_down {
                return;
            }
            state.torn_down = true;
            (
                std::mem::take(&mut state.namespaces),
                std::mem::take(&mut state.delays),
                state.dir.take(),
            )
        };
        drop(delays);
        for ns in namespaces.iter().rev() {
            ns.destroy();
        }
        self.inet.destroy();
        drop(dir);
    }
}

/// A fixed, locally administered MAC address for bridge number `n`. A bridge made without
/// one takes the lowest MAC address among its ports, so adding a host could change the
/// gateway's MAC address under the hosts that cached it. Their next ARP probe, sent to the
/// old address, is then dropped. A host whose only route back is through that gateway
/// (the [`Nat::Firewall`] LANs are routed through the public segment's gateway) lost every
/// packet for seconds, sometimes for good.
fn bridge_mac(n: u32) -> String {
    format!("02:6b:7a:{:02x}:{:02x}:01", (n >> 8) & 0xff, n & 0xff)
}

/// Turns `ns` into a router that sends no redirects (hosts on one segment reach each other
/// through it); before its devices are made, so that they inherit `default`.
fn forwarding(ns: &Namespace) -> Result<(), Error> {
    ns.sysctl("net/ipv4/ip_forward", "1")?;
    ns.sysctl("net/ipv4/conf/all/send_redirects", "0")?;
    ns.sysctl("net/ipv4/conf/default/send_redirects", "0")
}

/// Fails with [`Error::Unavailable`] unless we are root with `ip`, `tc`, `nft` and IPv6.
fn check_tools() -> Result<(), Error> {
    // SAFETY: a plain system call.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::Unavailable("needs root".into()));
    }
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        return Err(Error::Unavailable("the kernel has no IPv6".into()));
    }
    for (tool, arg, package) in [
        ("ip", "-V", "iproute2"),
        ("tc", "-V", "iproute2"),
        ("nft", "--version", "nftables"),
    ] {
        let found = std::process::Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|out| out.status.success());
        if !found {
            return Err(Error::Unavailable(format!(
                "`{tool}` not found (apt-get install {package})"
            )));
        }
    }
    Ok(())
}
